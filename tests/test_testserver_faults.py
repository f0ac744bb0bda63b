"""Test server: fault injection (429, 503, dropped connections, delays, rejected bulk items)."""

from __future__ import annotations

import time

import pytest
from elasticsearch import ApiError, ConnectionError, Elasticsearch
from elasticsearch.helpers import streaming_bulk


def _no_retry(server) -> Elasticsearch:
    return Elasticsearch(server.url, max_retries=0, retry_on_timeout=False)


def test_reject_next_n_then_recover_with_retries(es_server, es_client: Elasticsearch) -> None:
    es_server.faults.reject("_search", times=2)
    client = _no_retry(es_server)
    with pytest.raises(ApiError) as err:
        client.search()
    assert err.value.meta.status == 429
    assert err.value.body["error"]["type"] == "es_rejected_execution_exception"
    assert err.value.body["status"] == 429
    retrying = Elasticsearch(es_server.url, retry_on_status=(429,), max_retries=3)
    assert "hits" in retrying.search()  # second rejection absorbed by a retry
    assert es_server.faults.counts["reject"] == 2


def test_unavailable_matches_method_and_path(es_server, es_client: Elasticsearch) -> None:
    es_server.faults.unavailable(r"^/docs/_doc/", method="PUT", times=1)
    client = _no_retry(es_server)
    assert client.indices.create(index="docs")["acknowledged"]  # not matched
    with pytest.raises(ApiError) as err:
        client.index(index="docs", id="1", document={"a": 1})
    assert err.value.meta.status == 503
    assert client.index(index="docs", id="1", document={"a": 1})["result"] == "created"
    assert es_server.faults.counts["unavailable"] == 1


def test_dropped_connection_and_client_retry(es_server, es_client: Elasticsearch) -> None:
    es_server.faults.drop_connection("_count", times=1)
    with pytest.raises(ConnectionError):
        _no_retry(es_server).count()
    es_server.faults.drop_connection("_count", times=1)
    assert Elasticsearch(es_server.url, max_retries=2).count()["count"] == 0
    assert es_server.faults.counts["drop"] == 2


def test_delay(es_server, es_client: Elasticsearch) -> None:
    es_server.faults.delay("^/$", ms=300, times=1)
    started = time.perf_counter()
    es_client.info()
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    es_client.info()
    assert time.perf_counter() - started < 0.3


def test_probabilistic_faults_are_seeded(es_server, es_client: Elasticsearch) -> None:
    def pattern() -> list[int]:
        es_server.faults.clear()
        es_server.faults.reject("^/$", p=0.5)
        client = _no_retry(es_server)
        out = []
        for _ in range(20):
            try:
                client.info()
                out.append(200)
            except ApiError as exc:
                out.append(exc.meta.status)
        return out

    first, second = pattern(), pattern()
    assert first == second and 200 in first and 429 in first


def test_rejected_bulk_items_are_not_applied(es_server, es_client: Elasticsearch) -> None:
    es_server.faults.reject_bulk_items(0.3)
    ops = [{"_index": "docs", "_id": str(i), "n": i} for i in range(200)]
    results = list(streaming_bulk(es_client, ops, raise_on_error=False, chunk_size=50, refresh=True))
    rejected = [item["index"] for ok, item in results if not ok]
    assert 30 < len(rejected) < 90
    assert all(r["status"] == 429 and r["error"]["type"] == "es_rejected_execution_exception" for r in rejected)
    assert es_server.faults.counts["bulk_item_reject"] == len(rejected)
    assert es_client.count(index="docs")["count"] == 200 - len(rejected)
    rejected_ids = {r["_id"] for r in rejected}
    assert not any(es_client.exists(index="docs", id=i) for i in list(rejected_ids)[:10])


def test_streaming_bulk_retries_rejected_items(es_server, es_client: Elasticsearch) -> None:
    es_server.faults.reject_bulk_items(0.5, times=40)
    ops = [{"_index": "docs", "_id": str(i), "n": i} for i in range(100)]
    # raise_on_error=False: the helper only retries 429 items when it is not raising on item errors
    results = list(streaming_bulk(es_client, ops, chunk_size=25, max_retries=10, initial_backoff=0.01,
                                  max_backoff=0.02, raise_on_error=False))
    assert all(ok for ok, _ in results)
    es_client.indices.refresh(index="docs")
    assert es_client.count(index="docs")["count"] == 100
    assert es_server.faults.counts["bulk_item_reject"] == 40


def test_clear_removes_rules(es_server, es_client: Elasticsearch) -> None:
    es_server.faults.reject()
    es_server.faults.clear()
    assert es_client.info()["version"]["number"] == "9.3.0"
    assert not es_server.faults.counts
