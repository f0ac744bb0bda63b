"""pytest fixtures for the test server.

Enable with ``pytest_plugins = ["es_semantic.testing.pytest_plugin"]`` in a ``conftest.py``:

* ``es_server``: one running :class:`~es_semantic.testing.TestServer` for the session.
* ``es_client``: an ``Elasticsearch`` client connected to it; after each test every index, point in
  time and scroll is deleted and injected faults are cleared, so tests stay independent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from es_semantic.testing.server_runtime import TestServer, start_server


@pytest.fixture(scope="session")
def es_server() -> Iterator[TestServer]:
    """A test server running for the whole session."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def es_client(es_server: TestServer) -> Iterator[object]:
    """An official ``Elasticsearch`` client for ``es_server``; the server is wiped after the test."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_server.url, request_timeout=30)
    try:
        yield client
    finally:
        client.close()
        es_server.reset()
