"""Test server: search plumbing, point in time, scroll, update/delete by query (through the client)."""

from __future__ import annotations

import time

import pytest
from elasticsearch import (
    AuthorizationException,
    BadRequestError,
    ConflictError,
    Elasticsearch,
    NotFoundError,
)
from elasticsearch.helpers import scan


def _fill(es: Elasticsearch, index: str, n: int, **settings: object) -> None:
    es.indices.create(index=index, settings=settings or None)
    es.bulk(index=index, refresh=True,
            operations=[x for i in range(n) for x in ({"index": {"_id": str(i)}}, {"n": i, "tag": f"t{i % 3}"})])


def test_search_targets_names_wildcards_aliases(es_client: Elasticsearch) -> None:
    _fill(es_client, "logs-a", 2)
    _fill(es_client, "logs-b", 3)
    es_client.indices.put_alias(index="logs-b", name="only-b")
    assert es_client.search(index="logs-*")["hits"]["total"]["value"] == 5
    assert es_client.search(index="logs-a,logs-b")["hits"]["total"]["value"] == 5
    assert es_client.search(index="_all")["hits"]["total"]["value"] == 5
    assert es_client.search()["hits"]["total"]["value"] == 5
    assert es_client.search(index="only-b")["hits"]["total"]["value"] == 3
    assert es_client.count(index="logs-a")["count"] == 2
    resp = es_client.search(index="logs-a", query={"ids": {"values": ["1"]}})
    assert [h["_id"] for h in resp["hits"]["hits"]] == ["1"] and resp["_shards"]["failed"] == 0
    with pytest.raises(NotFoundError):
        es_client.search(index="missing")


def test_filtered_alias_applies_its_filter(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 6)
    es_client.indices.update_aliases(actions=[{"add": {"index": "docs", "alias": "low",
                                                       "filter": {"ids": {"values": ["0", "1"]}}}}])
    assert es_client.count(index="low")["count"] == 2
    assert es_client.search(index="low")["hits"]["total"]["value"] == 2


def test_pit_snapshot_isolation_and_expiry(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 5)
    pit = es_client.open_point_in_time(index="docs", keep_alive="1m")["id"]
    es_client.index(index="docs", id="new", document={"n": 99}, refresh=True)
    es_client.delete(index="docs", id="0", refresh=True)
    resp = es_client.search(pit={"id": pit, "keep_alive": "1m"}, size=100)
    assert resp["pit_id"] == pit
    assert sorted(h["_id"] for h in resp["hits"]["hits"]) == ["0", "1", "2", "3", "4"]
    assert es_client.count(index="docs")["count"] == 5  # live view: +new -0
    with pytest.raises(BadRequestError):
        es_client.search(index="docs", pit={"id": pit})
    assert es_client.close_point_in_time(id=pit)["succeeded"]
    with pytest.raises(NotFoundError):
        es_client.search(pit={"id": pit})
    short = es_client.open_point_in_time(index="docs", keep_alive="100ms")["id"]
    time.sleep(0.3)
    with pytest.raises(NotFoundError):
        es_client.search(pit={"id": short})


def test_pit_slices_are_disjoint_and_cover_everything(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 57)
    pit = es_client.open_point_in_time(index="docs", keep_alive="1m")["id"]
    seen: list[str] = []
    for slice_id in range(4):
        after = None
        while True:
            body = {"pit": {"id": pit}, "slice": {"id": slice_id, "max": 4}, "size": 7, "sort": ["_shard_doc"]}
            if after:
                body["search_after"] = after
            hits = es_client.search(body=body)["hits"]["hits"]
            if not hits:
                break
            seen += [h["_id"] for h in hits]
            after = hits[-1]["sort"]
    assert len(seen) == 57 and set(seen) == {str(i) for i in range(57)}


def test_scroll_pages_snapshot_and_clear(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 25)
    first = es_client.search(index="docs", scroll="1m", size=10, sort=["n"])
    sid = first["_scroll_id"]
    es_client.index(index="docs", id="late", document={"n": -1}, refresh=True)
    ids = [h["_id"] for h in first["hits"]["hits"]]
    while True:
        page = es_client.scroll(scroll_id=sid, scroll="1m")
        if not page["hits"]["hits"]:
            break
        ids += [h["_id"] for h in page["hits"]["hits"]]
    assert ids == [str(i) for i in range(25)]  # sorted by n, "late" invisible
    assert page["hits"]["total"]["value"] == 25
    assert es_client.clear_scroll(scroll_id=sid)["num_freed"] == 1
    with pytest.raises(NotFoundError):
        es_client.scroll(scroll_id=sid, scroll="1m")


def test_scan_helper_and_sliced_scroll(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 30)
    assert sorted(int(h["_id"]) for h in scan(es_client, index="docs", size=7)) == list(range(30))
    seen = []
    for slice_id in range(3):
        resp = es_client.search(index="docs", scroll="1m", size=100, slice={"id": slice_id, "max": 3})
        seen += [h["_id"] for h in resp["hits"]["hits"]]
    assert sorted(seen, key=int) == [str(i) for i in range(30)]


def test_scroll_expires(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 3)
    sid = es_client.search(index="docs", scroll="100ms", size=1)["_scroll_id"]
    time.sleep(0.3)
    with pytest.raises(NotFoundError):
        es_client.scroll(scroll_id=sid)


def test_update_by_query_bumps_versions_and_reports(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 5)
    resp = es_client.update_by_query(index="docs", query={"ids": {"values": ["1", "2"]}}, refresh=True)
    assert (resp["total"], resp["updated"], resp["version_conflicts"], resp["failures"]) == (2, 2, 0, [])
    assert es_client.get(index="docs", id="1")["_version"] == 2
    assert es_client.get(index="docs", id="3")["_version"] == 1
    assert es_client.update_by_query(index="docs", max_docs=3)["updated"] == 3


def test_update_by_query_conflicts_abort_and_proceed(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 3, refresh_interval="-1")
    es_client.index(index="docs", id="1", document={"n": 100})  # not refreshed: the scan sees the old one
    with pytest.raises(ConflictError) as err:
        es_client.update_by_query(index="docs")
    body = err.value.body
    assert body["version_conflicts"] == 1 and body["failures"][0]["id"] == "1"
    assert body["failures"][0]["cause"]["type"] == "version_conflict_engine_exception"
    es_client.indices.refresh(index="docs")
    es_client.index(index="docs", id="2", document={"n": 200})
    resp = es_client.update_by_query(index="docs", conflicts="proceed")
    assert resp["version_conflicts"] == 1 and resp["updated"] == 2 and resp["failures"] == []


def test_delete_by_query(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 9)
    resp = es_client.delete_by_query(index="docs", query={"ids": {"values": ["0", "1", "2"]}}, refresh=True)
    assert resp["deleted"] == 3 and resp["total"] == 3
    assert es_client.count(index="docs")["count"] == 6
    assert es_client.delete_by_query(index="docs", query={"match_all": {}}, max_docs=2)["deleted"] == 2


def test_msearch_mixes_results_and_errors(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 4)
    resp = es_client.msearch(searches=[{"index": "docs"}, {"query": {"match_all": {}}},
                                       {"index": "missing"}, {"query": {"match_all": {}}}])
    ok, missing = resp["responses"]
    assert ok["status"] == 200 and ok["hits"]["total"]["value"] == 4
    assert missing["status"] == 404 and missing["error"]["type"] == "index_not_found_exception"


def test_scroll_over_more_than_the_result_window(es_client):
    """A scroll walks every document even past index.max_result_window (10,000 by default)."""
    from elasticsearch import helpers

    es_client.indices.create(index="big", settings={"index": {"max_result_window": 50}})
    helpers.bulk(es_client, ({"_index": "big", "_id": str(i), "n": i} for i in range(120)), refresh=True)
    seen = [hit["_id"] for hit in helpers.scan(es_client, index="big", size=40, scroll="1m")]
    assert sorted(seen, key=int) == [str(i) for i in range(120)]


def test_by_query_on_a_write_blocked_index_fails_and_changes_nothing(es_client: Elasticsearch) -> None:
    _fill(es_client, "docs", 4)
    es_client.indices.put_alias(index="docs", name="docs-alias")
    es_client.indices.put_settings(index="docs", settings={"index.blocks.write": True})
    reason = "index [docs] blocked by: [FORBIDDEN/8/index write (api)];"
    for call in (lambda: es_client.update_by_query(index="docs-alias", conflicts="proceed"),
                 lambda: es_client.delete_by_query(index="docs", query={"match_all": {}})):
        with pytest.raises(AuthorizationException) as err:
            call()
        body = err.value.body
        assert err.value.meta.status == 403 and len(body["failures"]) == 4
        assert body["failures"][0]["status"] == 403 and body["failures"][0]["index"] == "docs"
        assert body["failures"][0]["cause"] == {"type": "cluster_block_exception", "reason": reason}
        assert body.get("updated", 0) == 0 and body.get("deleted", 0) == 0
    assert es_client.count(index="docs")["count"] == 4
    assert all(es_client.get(index="docs", id=str(i))["_version"] == 1 for i in range(4))
    # Nothing matching: nothing to write, nothing refused.
    assert es_client.delete_by_query(index="docs", query={"ids": {"values": ["nope"]}})["failures"] == []
