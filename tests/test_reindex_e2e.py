"""End-to-end: the reindex job against the test server, with the tiny Qwen3 model."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from test_reindex_support import (
    DIMS,
    all_sources,
    assert_vectors_match,
    make_doc,
    make_index,
    without,
)

from es_semantic.errors import ConfigError, LockHeld
from es_semantic.reindexing import ReindexOptions, reindex
from es_semantic.reindexing.lock import JobLock

FAST = {"retry_initial_s": 0.01, "retry_max_s": 0.05}


def versions(es: Any, index: str, n: int) -> dict[str, int]:
    """Each document's _version (goes up by one per write of that document)."""
    docs = es.mget(index=index, ids=[str(i) for i in range(n)], source=False)["docs"]
    return {d["_id"]: d["_version"] for d in docs}


def test_full_run_rerun_and_edits(es_client, tiny_model, embedder):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 120)
    seen: list[int] = []
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(page_size=50, embed_chunk=32, bulk_max_docs=25),
                     progress=lambda r: seen.append(r.done))
    assert (report.read, report.embedded, report.skipped, report.failed) == (120, 120, 0, 0)
    assert report.total == 120 and seen[-1] == 120 and seen == sorted(seen)
    assert report.bulk_requests >= 120 // 25
    sources = all_sources(es, "faq")
    assert len(sources) == 120
    assert_vectors_match(sources, cfg, embedder)
    # Every original field unchanged, types included (1.0 stays a float, 2**53+i an exact int).
    for i in range(120):
        assert without(sources[str(i)], "embedding", "embedding_info") == without(make_doc(i))
        info = sources[str(i)]["embedding_info"]
        assert info["model"] == str(tiny_model) and len(info["fingerprint"]) == 32 and info["embedded_at"]

    again = reindex(es, "faq", embedder=embedder)
    assert (again.embedded, again.skipped) == (0, 120)

    es.update(index="faq", id="7", doc={"question": "A brand new question"})
    es.update(index="faq", id="8", doc={"category": "other"})  # not a text field: no re-embed
    es.update(index="faq", id="9", doc={"answer": ["two", "lines"]})
    es.indices.refresh(index="faq")
    third = reindex(es, "faq", embedder=embedder)
    assert (third.embedded, third.skipped) == (2, 118)
    sources = all_sources(es, "faq")
    assert_vectors_match(sources, cfg, embedder, ids=[7, 9])
    assert sources["8"]["category"] == "other"

    full = reindex(es, "faq", embedder=embedder, options=ReindexOptions(full=True))
    assert full.embedded == 120


def test_vector_lost_by_an_application_rewrite_is_restored(es_client, tiny_model, embedder):
    # An app that GETs a document (vectors excluded on 9.2+) and PUTs it back keeps the info
    # object but drops the vector: the fingerprint alone would call it current.
    es = es_client
    make_index(es, "faq", tiny_model, 10)
    reindex(es, "faq", embedder=embedder)
    src = all_sources(es, "faq")["3"]
    src.pop("embedding")
    es.index(index="faq", id="3", document=src, refresh=True)
    report = reindex(es, "faq", embedder=embedder)
    assert (report.embedded, report.skipped) == (1, 9)
    assert "embedding" in all_sources(es, "faq")["3"]


def test_documents_without_text(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 5)
    es.index(index="faq", id="blank", document={"question": "  ", "answer": None, "category": "x"}, refresh=True)
    report = reindex(es, "faq", embedder=embedder)
    assert (report.embedded, report.empty) == (5, 1)
    assert "embedding" not in all_sources(es, "faq")["blank"]
    # A document whose text is emptied loses its (now wrong) vector.
    es.update(index="faq", id="2", doc={"question": "", "answer": ""}, refresh=True)
    report = reindex(es, "faq", embedder=embedder)
    assert report.empty == 2
    src = all_sources(es, "faq")["2"]
    assert src.get("embedding") is None and src["embedding_info"]["fingerprint"]
    last = reindex(es, "faq", embedder=embedder)
    assert (last.skipped, last.empty, last.embedded) == (5, 1, 0)


def test_fault_storm_every_document_embedded_once_and_correctly(es_client, es_server, tiny_model, embedder):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 150)
    before = versions(es, "faq", 150)
    faults = es_server.faults
    faults.reject("_bulk", p=0.3)
    faults.unavailable("_search", p=0.3)
    faults.unavailable("_bulk", p=0.1)
    faults.drop_connection("_bulk", p=0.15)
    faults.drop_connection("_search", p=0.1)
    faults.reject_bulk_items(0.3)
    options = ReindexOptions(page_size=20, bulk_max_docs=15, embed_chunk=16, writers=3, max_retries=30, **FAST)
    report = reindex(es, "faq", embedder=embedder, options=options)
    fired = dict(faults.counts)
    faults.clear()
    assert sum(fired.values()) > 10 and len(fired) >= 3, fired
    assert report.failed == 0 and report.deferred == 0, report.failures
    assert report.embedded == 150 and report.retries > 0
    sources = all_sources(es, "faq")
    assert_vectors_match(sources, cfg, embedder)
    after = versions(es, "faq", 150)
    # Written once each, except where a dropped connection hid a write that had landed (its
    # retry then answered 409 and was recognised as already done, not written again).
    assert all(after[i] - before[i] == 1 for i in before), {i: after[i] - before[i] for i in before if after[i] - before[i] != 1}
    assert reindex(es, "faq", embedder=embedder).skipped == 150


def test_items_failing_for_good_are_reported_and_do_not_stop_the_job(es_client, es_server, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 40)
    es_server.faults.reject_bulk_items(0.25)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(max_retries=0, **FAST))
    es_server.faults.clear()
    assert report.failed > 0 and report.embedded + report.failed == 40
    assert all(f["reason"].startswith("429 es_rejected_execution_exception") for f in report.failures)
    assert {f["id"] for f in report.failures}.isdisjoint(
        {i for i, s in all_sources(es, "faq").items() if "embedding" in s})
    # The next run picks up exactly the failed ones.
    assert reindex(es, "faq", embedder=embedder).embedded == report.failed


class _EditingEmbedder:
    """The real embedder, plus a hook that edits documents between the read and the write."""

    def __init__(self, inner: Any, hook: Any) -> None:
        self._inner = inner
        self._hook = hook
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_documents(self, texts: Any, **kw: Any) -> np.ndarray:
        self.calls += 1
        self._hook(self.calls)
        return self._inner.embed_documents(texts, **kw)


def test_document_edited_during_the_run_gets_the_vector_of_its_new_text(es_client, tiny_model, embedder):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 30)

    def edit(call: int) -> None:
        if call == 1:  # read already happened (with the old seq_no); the write has not
            es.update(index="faq", id="4", doc={"question": "edited while the job ran"})

    report = reindex(es, "faq", embedder=_EditingEmbedder(embedder, edit))
    assert report.conflicts == 1 and report.embedded == 30 and report.failed == 0
    sources = all_sources(es, "faq")
    assert sources["4"]["question"] == "edited while the job ran"
    assert_vectors_match(sources, cfg, embedder)


def test_document_edited_over_and_over_is_deferred(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 10)

    def edit(call: int) -> None:
        es.update(index="faq", id="1", doc={"question": f"edit {call}"})

    report = reindex(es, "faq", embedder=_EditingEmbedder(embedder, edit),
                     options=ReindexOptions(conflict_retries=2))
    assert report.deferred == 1 and report.embedded == 9 and report.failed == 0
    assert reindex(es, "faq", embedder=embedder).embedded == 1


def test_three_slices_in_three_threads_cover_every_document_once(es_client, tiny_model, embedder):
    from es_semantic.embedding import Embedder

    es = es_client
    cfg = make_index(es, "faq", tiny_model, 90)
    before = versions(es, "faq", 90)
    reports: list[Any] = [None] * 3

    def run(i: int) -> None:
        own = Embedder(str(tiny_model), dims=DIMS, device="cpu")
        reports[i] = reindex(es, "faq", embedder=own, options=ReindexOptions(slices=3, slice_id=i, page_size=10))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in reports)
    assert sum(r.read for r in reports) == 90 and sum(r.embedded for r in reports) == 90
    assert all(r.embedded > 0 for r in reports)
    after = versions(es, "faq", 90)
    assert all(after[i] == before[i] + 1 for i in before)  # each written exactly once
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)


def test_dry_run_limit_and_query(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 30)
    dry = reindex(es, "faq", embedder=embedder, options=ReindexOptions(dry_run=True))
    assert (dry.to_embed, dry.embedded) == (30, 0)
    assert not any("embedding" in s for s in all_sources(es, "faq").values())
    limited = reindex(es, "faq", embedder=embedder, options=ReindexOptions(limit=7, page_size=5))
    assert limited.embedded == 7 and limited.limit_reached
    billing = reindex(es, "faq", embedder=embedder, options=ReindexOptions(query={"term": {"category": "billing"}}))
    assert billing.read == 10  # ids 0, 3, ..., 27
    sources = all_sources(es, "faq")
    assert all("embedding" in sources[str(i)] for i in range(0, 30, 3))
    dry = reindex(es, "faq", embedder=embedder, options=ReindexOptions(dry_run=True))
    assert dry.to_embed == 30 - len([i for i, s in sources.items() if "embedding" in s])


def test_bad_query_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        ReindexOptions(query='{"term": ')
    with pytest.raises(ConfigError, match="JSON object"):
        ReindexOptions(query="[1, 2]")


def test_lock_held_then_stale_lock_taken_over(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 5)
    holder = JobLock(es, "faq", lock_index="es-semantic-locks", ttl_s=1.0, owner="otherhost:42").acquire()
    with pytest.raises(LockHeld, match="otherhost:42"):
        reindex(es, "faq", embedder=embedder)
    holder._stop.set()  # the holder dies: no more heartbeats, no release
    holder._thread.join()
    import time

    time.sleep(1.2)
    report = reindex(es, "faq", embedder=embedder)
    assert report.embedded == 5 and report.lock["took_over"]
    assert not es.exists(index="es-semantic-locks", id="faq")  # released at the end


def test_changing_the_dims_of_an_index_holding_vectors_needs_a_new_index(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    reindex(es, "faq", embedder=embedder)
    with pytest.raises(ConfigError, match="--new-index"):
        reindex(es, "faq", embedder=embedder, options=ReindexOptions(dims=32))


def test_cluster_gone_for_good_stops_the_job_with_a_connection_error(es_client, es_server, tiny_model, embedder):
    from es_semantic.errors import ConnectionFailed

    es = es_client
    make_index(es, "faq", tiny_model, 20)
    es_server.faults.unavailable("_bulk")
    with pytest.raises(ConnectionFailed, match="run the job again") as err:
        reindex(es, "faq", embedder=embedder, options=ReindexOptions(max_retries=2, **FAST))
    es_server.faults.clear()
    assert err.value.report.embedded == 0  # type: ignore[attr-defined]  # the report travels with the error
    assert not es.exists(index="es-semantic-locks", id="faq")  # the lock is released
    assert reindex(es, "faq", embedder=embedder).embedded == 20


def test_document_deleted_between_read_and_write_is_not_a_failure(es_client, tiny_model, embedder):
    es = es_client
    make_index(es, "faq", tiny_model, 20)

    def delete(call: int) -> None:
        if call == 1:  # read already happened; the update of this document now finds nothing
            es.delete(index="faq", id="3", refresh=True)

    report = reindex(es, "faq", embedder=_EditingEmbedder(embedder, delete))
    assert report.failed == 0 and report.ok and report.failures == []
    assert report.deleted_meanwhile == 1 and report.embedded == 19
    assert report.done == 20 and "1 deleted during the run" in report.summary()
    assert "3" not in all_sources(es, "faq")  # the update did not bring it back


class _ShardFailingClient:
    """The real client; its second search page reports a failed shard (as a cluster with a shard
    going down mid-scan would when partial results are allowed). Records the search requests."""

    def __init__(self, es: Any) -> None:
        self._es = es
        self.searches: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._es, name)

    def options(self, **kw: Any) -> _ShardFailingClient:
        return self

    def search(self, **kw: Any) -> Any:
        self.searches.append(kw)
        response = self._es.search(**kw)
        if len(self.searches) == 2:
            response.body["_shards"] = {"total": 2, "successful": 1, "skipped": 0, "failed": 1,
                                        "failures": [{"shard": 1, "reason": {"type": "x", "reason": "node left"}}]}
            response.body["hits"]["hits"] = []  # the failed shard's documents are missing
        return response


def test_a_failed_shard_stops_the_scan_instead_of_ending_it(es_client, tiny_model, embedder):
    from es_semantic.errors import EsSemanticError
    from es_semantic.reindexing.reader import read_pages

    es = es_client
    make_index(es, "faq", tiny_model, 25)
    client = _ShardFailingClient(es)
    with pytest.raises(EsSemanticError) as err:
        for _ in read_pages(client, "faq", page_size=10):
            pass
    assert "1 of 2 shards" in str(err.value) and "node left" in str(err.value)
    assert all(s.get("allow_partial_search_results") is False for s in client.searches)


def test_a_document_another_job_embedded_meanwhile_is_not_counted_as_embedded(es_client, tiny_model, embedder):
    from es_semantic.reindexing.fingerprint import Fingerprinter

    es = es_client
    cfg = make_index(es, "faq", tiny_model, 10)
    fp = Fingerprinter(embedder.settings_fingerprint(), cfg)

    def other_job(call: int) -> None:
        if call == 1:  # after our read: another job writes the current vector of document 4
            text = cfg.build_text(es.get(index="faq", id="4")["_source"])
            vector = embedder.embed_documents([text])[0]
            es.update(index="faq", id="4", doc={"embedding": vector.tolist(), "embedding_info": {
                "model": str(tiny_model), "fingerprint": fp(text), "embedded_at": "2024-01-01T00:00:00.000Z"}})

    report = reindex(es, "faq", embedder=_EditingEmbedder(embedder, other_job))
    assert (report.embedded, report.skipped, report.conflicts, report.failed) == (9, 1, 0, 0)
    assert all_sources(es, "faq")["4"]["embedding_info"]["embedded_at"] == "2024-01-01T00:00:00.000Z"


def test_point_in_time_expiring_under_back_pressure_is_read_again(es_client, tiny_model, embedder):
    import time

    es = es_client
    cfg = make_index(es, "faq", tiny_model, 30)
    before = versions(es, "faq", 30)

    def slow_second_chunk(call: int) -> None:
        if call == 2:  # the reader, blocked on the full queue, outlives the 1s keep-alive
            time.sleep(2.5)

    options = ReindexOptions(keep_alive="1s", page_size=5, embed_chunk=5, queue_pages=1, bulk_max_docs=5)
    report = reindex(es, "faq", embedder=_EditingEmbedder(embedder, slow_second_chunk), options=options)
    assert report.pit_reopened == 1
    # every document counted once, whichever attempt wrote it
    assert (report.read, report.embedded, report.skipped, report.failed) == (30, 30, 0, 0)
    after = versions(es, "faq", 30)
    assert all(after[i] == before[i] + 1 for i in before)  # none embedded twice
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)


def test_point_in_time_expiring_again_and_again_gives_a_clear_error(es_client, es_server, tiny_model, embedder):
    from es_semantic.reindexing.reader import PitExpired

    es = es_client
    make_index(es, "faq", tiny_model, 20)

    def expire_all(report: Any) -> None:
        for pit_id in list(es_server.store.pits):
            es.close_point_in_time(id=pit_id)

    with pytest.raises(PitExpired, match="3 times.*--keep-alive") as err:
        reindex(es, "faq", embedder=embedder, options=ReindexOptions(page_size=5), progress=expire_all)
    assert err.value.report.pit_reopened == 2 and err.value.exit_code == 2
    assert not es.exists(index="es-semantic-locks", id="faq")
