"""An in-memory, Elasticsearch-compatible TEST server (not a production search engine).

It speaks enough of Elasticsearch 9.3's REST API for the official ``elasticsearch`` client (8.x and
9.x) to run this project's end-to-end tests without a real cluster: indices, mappings, aliases,
documents, ``_bulk``, near-real-time refresh, search (BM25, kNN, retrievers), aggregations, point in
time, scroll, update/delete by query, plus fault injection. Data lives in memory and is lost on stop.

Aggregations (:mod:`es_semantic.testing.aggregations`): ``terms``, ``filter``, ``filters``, ``range``,
``histogram``, ``date_histogram``, ``missing``, ``global``, ``min``, ``max``, ``avg``, ``sum``,
``value_count``, ``cardinality`` (exact, where Elasticsearch is approximate above
``precision_threshold``), ``stats`` and ``top_hits``, nested to any depth; pipeline aggregations,
scripts and the other types answer a 400 that says they are not supported.

    from es_semantic.testing import start_server

    with start_server() as server:          # port 0: a free port
        es = Elasticsearch(server.url)
        server.faults.reject("_bulk", times=1)

pytest users add ``pytest_plugins = ["es_semantic.testing.pytest_plugin"]`` to a conftest and get
the ``es_server`` (session) and ``es_client`` (per test, cleaned up) fixtures.
"""

from __future__ import annotations

from es_semantic.testing.server_runtime import TestServer, start_server

__all__ = ["TestServer", "es_client", "es_server", "start_server"]


def __getattr__(name: str):  # fixtures re-exported lazily so importing this package never needs pytest
    if name in ("es_server", "es_client"):
        from es_semantic.testing import pytest_plugin

        return getattr(pytest_plugin, name)
    raise AttributeError(name)
