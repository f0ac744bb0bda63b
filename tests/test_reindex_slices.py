"""Sliced runs share one point in time: every document is read by exactly one slice job.

Elasticsearch partitions a sliced point in time by Lucene document id, and an update gives a
document a new one, so slice jobs on points in time of their own would miss documents and read
others twice. The test server slices the same way, which these tests rely on: with per-slice
points in time, the first test fails (10 of 40 documents missed).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from test_reindex_support import add_docs, all_sources, assert_vectors_match, make_index

from es_semantic.mappings import read_config
from es_semantic.reindexing import ReindexOptions, reindex
from es_semantic.reindexing.options import DEFAULT_LOCK_INDEX
from es_semantic.reindexing.slices import SharedScan, scan_key

N = 40


def versions(es: Any, index: str) -> dict[str, int]:
    es.indices.refresh(index=index)
    resp = es.search(index=index, size=1000, version=True, source=False)
    return {hit["_id"]: hit["_version"] for hit in resp["hits"]["hits"]}


def slice_options(slice_id: int, slices: int = 2, **kw: Any) -> ReindexOptions:
    return ReindexOptions(slices=slices, slice_id=slice_id, page_size=7, embed_chunk=8, **kw)


def coordination(es: Any, index: str = "faq", slices: int = 2) -> dict[str, Any] | None:
    if not es.indices.exists(index=DEFAULT_LOCK_INDEX):
        return None
    got = es.options(ignore_status=404).get(index=DEFAULT_LOCK_INDEX, id=scan_key(index, slices, None))
    return got.body.get("_source") if got.body.get("found") else None


def test_slices_run_one_after_the_other_cover_every_document_once(es_client, es_server, tiny_model, embedder):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, N)
    first = reindex(es, "faq", embedder=embedder, options=slice_options(0))
    assert first.shared_pit["opened"] and coordination(es)["done"] == [0]
    second = reindex(es, "faq", embedder=embedder, options=slice_options(1))
    assert not second.shared_pit["opened"]  # it joined the first slice's point in time
    assert first.embedded + second.embedded == N and first.embedded > 0 and second.embedded > 0
    # written exactly once each: created (version 1), one vector update (version 2)
    assert set(versions(es, "faq").values()) == {2}
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)
    # the last slice closed the point in time and removed the coordination document
    assert coordination(es) is None
    assert not es_server.store.pits


def test_concurrent_slices_cover_every_document_once(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, N)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run(slice_id: int) -> None:
        try:
            reports.append(reindex(es, "faq", embedder=embedder, options=slice_options(slice_id, 3)))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.embedded for r in reports) == N
    assert sum(r.shared_pit["opened"] for r in reports) == 1  # one point in time for the run
    assert set(versions(es, "faq").values()) == {2}
    assert coordination(es, slices=3) is None


def test_a_slice_coming_back_starts_the_next_run(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, N)
    reindex(es, "faq", embedder=embedder, options=slice_options(0))
    first_round = coordination(es)["round"]
    add_docs(es, "faq", range(N, N + 10))  # new documents since that point in time
    # slice 0 runs again before slice 1 ever did (slice 1's machine is down): a new run, a new view
    again = reindex(es, "faq", embedder=embedder, options=slice_options(0))
    assert again.shared_pit["opened"] and not again.shared_pit["replaced_expired"]
    assert coordination(es)["round"] != first_round and coordination(es)["done"] == [0]
    late = reindex(es, "faq", embedder=embedder, options=slice_options(1))
    assert not late.shared_pit["opened"]
    # everything is embedded, the new documents included, none twice
    assert set(versions(es, "faq").values()) == {2}
    assert len(versions(es, "faq")) == N + 10


def test_an_expired_shared_point_in_time_is_replaced(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, N)
    reindex(es, "faq", embedder=embedder, options=slice_options(0))
    es.close_point_in_time(id=coordination(es)["pit_id"])  # as if its keep-alive ran out
    late = reindex(es, "faq", embedder=embedder, options=slice_options(1))
    assert late.shared_pit == {"key": scan_key("faq", 2, None), "opened": True, "replaced_expired": True}
    # slice 1 of the new view: it may differ from slice 1 of the old one, but a third run finishes it
    reindex(es, "faq", embedder=embedder, options=slice_options(0))
    reindex(es, "faq", embedder=embedder, options=slice_options(1))
    assert len(versions(es, "faq")) == N
    sources = all_sources(es, "faq")
    assert all("embedding" in s for s in sources.values())


def test_point_in_time_expiring_mid_scan_is_read_again(es_client, tiny_model, embedder):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, N)
    closed: list[str] = []

    def close_once(report: Any) -> None:
        # after the first page, the shared point in time disappears under the running slice
        doc = coordination(es)
        if doc and not closed and report.read:
            es.close_point_in_time(id=doc["pit_id"])
            closed.append(doc["pit_id"])

    first = reindex(es, "faq", embedder=embedder, options=slice_options(0), progress=close_once)
    assert closed and first.shared_pit["replaced_expired"]
    reindex(es, "faq", embedder=embedder, options=slice_options(1))
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)


def test_scan_key_separates_runs_that_must_not_share():
    assert scan_key("faq", 2, None) == scan_key("faq", 2, None)
    assert len({scan_key("faq", 2, None), scan_key("faq", 3, None), scan_key("faq2", 2, None),
                scan_key("faq", 2, {"term": {"category": "billing"}})}) == 4


def test_join_is_refused_politely_when_nothing_can_be_agreed(es_client, tiny_model, monkeypatch):
    from elasticsearch import ConflictError

    from es_semantic.errors import EsSemanticError

    es = es_client
    make_index(es, "faq", tiny_model, 3)
    scan = SharedScan(es, "faq", slices=2, slice_id=0, query=None, lock_index=DEFAULT_LOCK_INDEX)

    def always_conflict(*args: Any, **kwargs: Any) -> Any:
        raise ConflictError("version_conflict_engine_exception", meta=type("M", (), {"status": 409})(), body={})

    monkeypatch.setattr(scan._es, "create", always_conflict)
    with pytest.raises(EsSemanticError, match="could not agree on a shared point in time"):
        scan.join()
    assert not es.options(ignore_status=404).get(index=DEFAULT_LOCK_INDEX, id=scan.key).body.get("found")


def _aliased(es: Any, model: Any, n: int = N) -> Any:
    cfg = make_index(es, "faq-v1", model, n)
    es.indices.put_alias(index="faq-v1", name="faq")
    return cfg


def test_slices_given_the_alias_and_its_index_are_one_run(es_client, es_server, tiny_model, embedder):
    es = es_client
    cfg = _aliased(es, tiny_model)
    first = reindex(es, "faq", embedder=embedder, options=slice_options(0))
    assert first.shared_pit["key"] == scan_key("faq-v1", 2, None)
    second = reindex(es, "faq-v1", embedder=embedder, options=slice_options(1))
    assert not second.shared_pit["opened"]  # joined the point in time slice 0 published through the alias
    assert first.embedded + second.embedded == N
    assert set(versions(es, "faq-v1").values()) == {2}  # every document written exactly once
    assert_vectors_match(all_sources(es, "faq-v1"), cfg, embedder)
    assert coordination(es, "faq-v1") is None and not es_server.store.pits


def test_a_slice_after_a_blue_green_swap_starts_a_new_run_on_the_new_index(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model)
    reindex(es, "faq", embedder=embedder, options=slice_options(0))  # slice 1 of that run never comes...
    reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))  # ...before the swap
    for i in range(N):
        es.update(index="faq", id=str(i), doc={"answer": f"edited after the swap {i}"})
    es.indices.refresh(index="faq")
    old_versions = versions(es, "faq-v1")
    late = reindex(es, "faq", embedder=embedder, options=slice_options(1))
    assert late.shared_pit["key"] == scan_key("faq-v2", 2, None) and late.shared_pit["opened"]
    assert versions(es, "faq-v1") == old_versions  # not one write into the index the alias left
    assert 0 < late.embedded < N
    assert coordination(es, "faq-v2")["indices"] == ["faq-v2"]
    other = reindex(es, "faq", embedder=embedder, options=slice_options(0))  # the new run's other slice
    assert not other.shared_pit["opened"] and late.embedded + other.embedded == N
    assert_vectors_match(all_sources(es, "faq-v2"), read_config(es, "faq"), embedder)


def test_a_slice_whose_alias_moved_under_it_stops(es_client, tiny_model):
    from es_semantic.errors import EsSemanticError

    es = es_client
    _aliased(es, tiny_model, 3)
    scan = SharedScan(es, "faq", slices=2, slice_id=0, query=None, lock_index=DEFAULT_LOCK_INDEX)
    assert scan.indices == ["faq-v1"]
    make_index(es, "faq-v2", tiny_model, 3)
    es.indices.update_aliases(actions=[{"remove": {"index": "faq-v1", "alias": "faq"}},
                                       {"add": {"index": "faq-v2", "alias": "faq"}}])
    with pytest.raises(EsSemanticError, match="'faq' now points at faq-v2 instead of faq-v1"):
        scan.join()


def test_a_dry_run_counts_only_its_slice(es_client, es_server, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, N)
    whole = reindex(es, "faq", embedder=embedder, options=ReindexOptions(dry_run=True))
    dry = [reindex(es, "faq", embedder=embedder, options=slice_options(i, slices=3, dry_run=True)) for i in range(3)]
    assert whole.read == whole.to_embed == N
    assert sum(r.read for r in dry) == N and sum(r.to_embed for r in dry) == N
    assert all(0 < r.read < N for r in dry), [r.read for r in dry]
    # nothing written: no vector, no shared-scan record, no point in time left open
    assert set(versions(es, "faq").values()) == {1}
    assert coordination(es, slices=3) is None and not es_server.store.pits
