"""Shared fixtures.

``real_es`` is a client for a real Elasticsearch node: ``ES_URL`` when set (with ES_API_KEY /
ES_USERNAME / ES_PASSWORD / ES_CA_CERTS), otherwise a throw-away container through testcontainers.
Where neither is possible (no Docker engine, as on this project's build machines) the tests that use
it skip with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# test_reindex_support: the tiny_model and embedder fixtures the reindex and search tests share
pytest_plugins = ["es_semantic.testing.pytest_plugin", "test_reindex_support"]

REAL_ES_IMAGE = os.environ.get("ES_SEMANTIC_TEST_ES_IMAGE", "docker.elastic.co/elasticsearch/elasticsearch:9.3.0")
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


def _docker_unavailable_reason() -> str | None:
    try:
        import docker  # installed with testcontainers
    except ImportError:
        return "the docker package is not installed (pip install -e '.[dev]')"
    try:
        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no usable engine
        return f"no Docker engine reachable ({type(exc).__name__}); set ES_URL to test against a running node"
    return None


def real_es_target() -> str:
    """Where the real-node tests run, for the report header and the fixture's own line."""
    if os.environ.get("ES_URL"):
        from es_semantic.config import redact_url

        return (f"the cluster at ES_URL={redact_url(os.environ['ES_URL'])} (es-semantic-test-* indices are "
                "created and deleted there; unset ES_URL to keep off it)")
    return f"a throw-away {REAL_ES_IMAGE} container, where Docker is available (else they skip)"


def pytest_report_header(config: pytest.Config) -> str:
    return f"real-node tests: {real_es_target()}"


@pytest.fixture(scope="session")
def real_es(request: pytest.FixtureRequest) -> Iterator[object]:
    """A client for a real Elasticsearch node, or skip with the reason."""
    from elasticsearch import Elasticsearch

    from es_semantic.client import connect
    from es_semantic.config import ConnectionSettings

    if os.environ.get("ES_URL"):
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\nreal-node tests run against {real_es_target()}", yellow=True)
        es = connect(ConnectionSettings.from_env())
        yield es
        es.close()
        return
    reason = _docker_unavailable_reason()
    if reason:
        pytest.skip(f"needs a real Elasticsearch node: {reason}")
    from testcontainers.elasticsearch import ElasticSearchContainer

    container = ElasticSearchContainer(REAL_ES_IMAGE, mem_limit="2g")
    container.with_env("xpack.security.enabled", "false")
    with container:
        es = Elasticsearch(container.get_url(), request_timeout=60)
        yield es
        es.close()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout (datasets, Elasticsearch REST tests); skip when absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared material not found at {SHARED_DIR}")
    return SHARED_DIR
