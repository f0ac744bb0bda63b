"""Blue/green reindex against the test server: new versioned index, catch-up, atomic alias swap."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from elasticsearch import ApiError
from test_reindex_e2e import _EditingEmbedder
from test_reindex_support import (
    DIMS,
    add_docs,
    all_sources,
    assert_vectors_match,
    make_doc,
    make_index,
    without,
)

from es_semantic.errors import ConfigError
from es_semantic.mappings import read_config
from es_semantic.reindexing import ReindexOptions, reindex


def _aliased(es: Any, model: Any, n: int) -> None:
    make_index(es, "faq-v1", model, n)
    es.indices.put_settings(index="faq-v1", settings={"index.number_of_replicas": 2, "index.refresh_interval": "2s"})
    es.indices.put_alias(index="faq-v1", name="faq")


def test_blue_green_swaps_the_alias_and_searches_never_fail(es_client, tiny_model, embedder, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 80)
    reindex(es, "faq", embedder=embedder)
    results: list[Any] = []
    stop = threading.Event()

    def search_continuously() -> None:
        from elasticsearch import Elasticsearch

        client = Elasticsearch(es.transport.node_pool.get().base_url)
        while not stop.is_set():
            try:
                resp = client.search(index="faq", query={"match": {"question": "setting"}}, size=1)
                results.append(resp["hits"]["total"]["value"])
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                results.append(exc)

    searcher = threading.Thread(target=search_continuously)
    searcher.start()
    try:
        report = reindex(es, "faq", embedder=small_embedder,
                         options=ReindexOptions(dims=32, new_index=True, page_size=20, bulk_max_docs=10))
    finally:
        stop.set()
        searcher.join()
    assert len(results) > 3
    assert all(r == 80 for r in results), [r for r in results if r != 80][:3]
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["old_index"] == "faq-v1" and bg["new_index"] == "faq-v2"
    assert bg["counts"] == {"old": 80, "new": 80} and report.embedded == 80 and report.failed == 0
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2"]
    assert es.indices.exists(index="faq-v1")  # the old index is kept
    cfg = read_config(es, "faq")
    assert cfg.dims == 32 and read_config(es, "faq-v1").dims == DIMS
    new_sources = all_sources(es, "faq-v2")
    assert_vectors_match(new_sources, cfg, small_embedder)
    for i in range(80):
        assert without(new_sources[str(i)], "embedding", "embedding_info") == without(make_doc(i))
    # Bulk-load settings were put back to the old index's values.
    settings = es.indices.get_settings(index="faq-v2", flat_settings=True)["faq-v2"]["settings"]
    assert settings["index.number_of_replicas"] == "2" and settings["index.refresh_interval"] == "2s"
    assert report.settings_restored["faq-v2"]["index.number_of_replicas"] == "2"
    # The mapping of the old index came along (text fields with their analyzers and sub-fields).
    props = es.indices.get_mapping(index="faq-v2")["faq-v2"]["mappings"]["properties"]
    assert props["question"]["fields"]["english"]["analyzer"] == "english"
    assert props["embedding"]["dims"] == 32
    # A rerun in place finds everything current.
    assert reindex(es, "faq", embedder=small_embedder).skipped == 80


def test_edits_during_the_copy_are_caught_up(es_client, tiny_model, embedder, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 40)

    def edit(call: int) -> None:
        if call == 1:
            es.update(index="faq", id="5", doc={"question": "rewritten during the copy"})
            es.delete(index="faq", id="6")
            add_docs(es, "faq", [1000])

    report = reindex(es, "faq", embedder=_EditingEmbedder(small_embedder, edit),
                     options=ReindexOptions(dims=32, new_index="faq-next", page_size=10, embed_chunk=8))
    assert report.blue_green["alias_swapped"] and report.blue_green["new_index"] == "faq-next"
    assert report.blue_green["catch_up"]["changed"] >= 2 and report.blue_green["catch_up"]["deleted"] == 1
    sources = all_sources(es, "faq")
    assert len(sources) == 40 and "6" not in sources and "1000" in sources
    assert sources["5"]["question"] == "rewritten during the copy"
    assert_vectors_match(sources, read_config(es, "faq"), small_embedder)


def test_a_crashed_copy_is_resumed_and_its_settings_restored(es_client, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 50)

    class Crash(Exception):
        pass

    def crash(call: int) -> None:
        if call == 3:
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        reindex(es, "faq", embedder=_EditingEmbedder(small_embedder, crash),
                options=ReindexOptions(dims=32, new_index=True, embed_chunk=10, page_size=10, writers=1,
                                       bulk_max_docs=10))
    # Settings are restored even though the job failed; the alias did not move.
    settings = es.indices.get_settings(index="faq-v2", flat_settings=True)["faq-v2"]["settings"]
    assert settings["index.refresh_interval"] == "2s"
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]
    es.indices.refresh(index="faq-v2")
    copied = es.count(index="faq-v2")["count"]
    assert 0 < copied < 50
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    assert report.blue_green["resumed"] and report.blue_green["alias_swapped"]
    assert report.skipped == copied and report.embedded == 50 - copied
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2"]


def test_blue_green_of_a_concrete_index_needs_delete_old_and_says_so(es_client, tiny_model, small_embedder):
    # (the whole concrete-index flow: tests/test_reindex_bluegreen_concrete.py)
    es = es_client
    make_index(es, "plain", tiny_model, 2)
    with pytest.raises(ConfigError) as err:
        reindex(es, "plain", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    message = str(err.value)
    assert "plain-v1" in message and "es-semantic reindex --index plain --new-index --delete-old --dims 32" in message
    assert not es.indices.exists(index="plain-v1")


def test_delete_old(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model, 5)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True, delete_old=True))
    assert report.blue_green["old_index_deleted"] and not es.indices.exists(index="faq-v1")
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2"]


def test_delete_old_keeps_an_old_index_that_other_aliases_point_at(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model, 5)
    es.indices.put_alias(index="faq-v1", name="faq-reporting")  # another application's alias
    es.indices.put_alias(index="faq-v1", name="faq-archive", filter={"term": {"category": "billing"}})
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True, delete_old=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and not bg["old_index_deleted"]
    assert bg["old_index_kept_for_aliases"] == ["faq-archive", "faq-reporting"]
    assert "kept the old index 'faq-v1'" in bg["note"] and "'faq-reporting'" in bg["note"]
    assert "curl -X DELETE '<ES_URL>/faq-v1'" in bg["note"]
    # The old index and its other aliases are untouched; only 'faq' moved.
    assert es.indices.exists(index="faq-v1")
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2"]
    assert list(es.indices.get_alias(name="faq-reporting").body) == ["faq-v1"]
    assert es.count(index="faq-reporting")["count"] == 5
    archive = es.indices.get_alias(name="faq-archive")["faq-v1"]["aliases"]["faq-archive"]
    assert archive["filter"] == {"term": {"category": "billing"}}


def test_cli_delete_old_says_why_the_old_index_is_kept(es_client, es_server, tiny_model):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    es = es_client
    _aliased(es, tiny_model, 4)
    es.indices.put_alias(index="faq-v1", name="faq-reporting")
    done = CliRunner().invoke(cli, ["--es-url", es_server.url, "reindex", "--index", "faq", "--new-index",
                                    "--delete-old", "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "alias 'faq' now points at 'faq-v2'" in done.output
    assert "kept the old index 'faq-v1'" in done.output and "'faq-reporting'" in done.output
    assert es.indices.exists(index="faq-v1")


def test_an_unfinished_copy_for_another_configuration_is_not_resumed(es_client, tiny_model, embedder,
                                                                      small_embedder):
    es = es_client
    _aliased(es, tiny_model, 30)

    class Crash(Exception):
        pass

    def crash(call: int) -> None:
        if call == 2:
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        reindex(es, "faq", embedder=_EditingEmbedder(small_embedder, crash),
                options=ReindexOptions(dims=32, new_index=True, embed_chunk=10, page_size=10, writers=1,
                                       bulk_max_docs=10))
    # A second run for the original configuration (DIMS) must not resume the 32-dim copy.
    with pytest.raises(ConfigError) as err:
        reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    message = str(err.value)
    assert "faq-v2" in message and "DELETE" in message and "32" in message
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]
    assert read_config(es, "faq-v2").dims == 32
    # The same configuration as the crashed run still resumes it.
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    assert report.blue_green["resumed"] and report.blue_green["alias_swapped"]


def test_settings_left_unrestored_by_a_failing_cluster_are_restored_by_the_next_run(
        es_client, es_server, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 12)
    es_server.faults.unavailable(r"^/faq-v2/_settings", method="PUT")  # restoring fails, even retried
    try:
        with pytest.raises(ApiError):
            reindex(es, "faq", embedder=small_embedder,
                    options=ReindexOptions(dims=32, new_index=True, max_retries=1, retry_initial_s=0.01,
                                           retry_max_s=0.02))
    finally:
        es_server.faults.clear()
    flat = es.indices.get_settings(index="faq-v2", flat_settings=True)["faq-v2"]["settings"]
    assert flat["index.refresh_interval"] == "-1"  # still the bulk-load value
    # The lock is left behind, expired, with what is still to restore.
    held = es.get(index="es-semantic-locks", id="faq")["_source"]
    assert held["pending_restore"]["faq-v2"]["index.refresh_interval"] == "2s"
    # The next run (into another index) takes it over at once, restores faq-v2, and reports both.
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(dims=32, new_index="faq-other"))
    assert report.lock["took_over"] and report.blue_green["alias_swapped"]
    flat = es.indices.get_settings(index="faq-v2", flat_settings=True)["faq-v2"]["settings"]
    assert flat["index.refresh_interval"] == "2s" and flat["index.number_of_replicas"] == "2"
    assert set(report.settings_restored) == {"faq-v2", "faq-other"}
    assert not es.exists(index="es-semantic-locks", id="faq")


# -- --block-writes: no write lost between the last catch-up and the swap --------------------------

BLOCKED_V1 = "index [faq-v1] blocked by: [FORBIDDEN/8/index write (api)];"


def _flat(es: Any, index: str) -> dict[str, Any]:
    return es.indices.get_settings(index=index, flat_settings=True)[index]["settings"]


class _Writer(threading.Thread):
    """Indexes, updates and deletes documents through the alias until stopped, and remembers the
    outcome of each write: the expected sources after every write that succeeded (``state``), the
    same for the writes that landed in the old index (``old_state``), and every failure."""

    def __init__(self, url: str, n: int, kinds: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        from elasticsearch import Elasticsearch

        self.client = Elasticsearch(url)
        initial = {str(i): make_doc(i) for i in range(n)}
        self.state: dict[str, dict[str, Any]] = dict(initial)
        self.old_state: dict[str, dict[str, Any]] = dict(initial)
        self.kinds = kinds
        self.landed: dict[str, int] = {}  # successful writes per concrete index
        self.written_after_swap: set[str] = set()
        self.failures: list[Exception] = []
        self.saw_block = threading.Event()
        self.stop = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        import random

        rng = random.Random(7)
        n = 0
        while not self.stop.is_set():
            n += 1
            live = sorted(self.state)
            kind = rng.choice(self.kinds if len(live) > 10 else ("index",))
            doc_id = f"w{n}" if kind == "index" else rng.choice(live)
            try:
                if kind == "update":
                    fields = {"answer": f"edited by write {n}"}
                    resp = self.client.update(index="faq", id=doc_id, doc=fields)
                    source: dict[str, Any] | None = {**self.state[doc_id], **fields}
                elif kind == "index":
                    source = make_doc(1000 + n)
                    resp = self.client.index(index="faq", id=doc_id, document=source)
                else:
                    resp = self.client.delete(index="faq", id=doc_id)
                    source = None
            except Exception as exc:  # noqa: BLE001 - each failure is asserted on below
                self.failures.append(exc)
                if getattr(exc, "error", None) == "cluster_block_exception":
                    self.saw_block.set()
                time.sleep(0.002)  # what a writer does after a 403: wait a moment, go on
                continue
            if resp["_index"] != "faq-v1":
                self.written_after_swap.add(doc_id)
            for state in ([self.state, self.old_state] if resp["_index"] == "faq-v1" else [self.state]):
                if source is None:
                    state.pop(doc_id)
                else:
                    state[doc_id] = source
            with self._cond:
                self.landed[resp["_index"]] = self.landed.get(resp["_index"], 0) + 1
                self._cond.notify_all()
            time.sleep(0.001)

    def wait_landed(self, index: str, more: int, timeout: float = 10.0) -> None:
        """Wait until ``more`` further writes have landed in ``index``."""
        with self._cond:
            target = self.landed.get(index, 0) + more
            assert self._cond.wait_for(lambda: self.landed.get(index, 0) >= target, timeout), self.landed

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        self.client.close()


def _with_writer(es: Any, url: str, monkeypatch: Any, embedder: Any, *, block_writes: bool,
                 kinds: tuple[str, ...] = ("update", "update", "index", "delete")) -> tuple[Any, _Writer]:
    """A blue/green run of faq (40 documents) while a writer keeps writing through the alias. Hooks
    make sure writes land in the gap between the catch-up and the swap (what --block-writes closes)
    and, with the block, that the writer meets it."""
    from es_semantic.reindexing.bluegreen import BlueGreen

    original = BlueGreen.catch_up
    passes: list[int] = []

    def catch_up(self: Any, plan: Any) -> dict[str, int]:
        passes.append(1)
        if len(passes) == 2:  # the final pass, writes blocked: the writer runs into the block
            assert writer.saw_block.wait(10)
        counts = original(self, plan)
        if len(passes) == 1:  # writes that land now are after the catch-up, before the swap
            writer.wait_landed("faq-v1", 5)
        return counts

    monkeypatch.setattr(BlueGreen, "catch_up", catch_up)
    writer = _Writer(url, 40, kinds)
    writer.start()
    try:
        writer.wait_landed("faq-v1", 5)  # writes during the copy too
        report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(
            dims=32, new_index=True, block_writes=block_writes, page_size=10, bulk_max_docs=10))
        writer.wait_landed("faq-v2", 5)  # and after the swap, through the alias to the new index
    finally:
        writer.finish()
    assert len(passes) == 2
    return report, writer


def _sources(es: Any, index: str) -> dict[str, str]:
    return {i: without(s, "embedding", "embedding_info") for i, s in all_sources(es, index).items()}


def _expected(state: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {i: without(s) for i, s in state.items()}


def test_block_writes_loses_no_write_of_a_busy_writer(es_client, es_server, tiny_model, small_embedder,
                                                      monkeypatch):
    es = es_client
    _aliased(es, tiny_model, 40)
    report, writer = _with_writer(es, es_server.url, monkeypatch, small_embedder, block_writes=True)
    bg = report.blue_green
    assert bg["alias_swapped"] and report.failed == 0 and bg["write_block"] == "lifted"
    assert 0 < bg["write_block_s"] < 10 and bg["final_pass"]["changed"] >= 1
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2"]
    # Every write the writer saw succeed is in the new index, none lost; the old index holds
    # exactly the writes that landed in it before the swap.
    assert _sources(es, "faq-v2") == _expected(writer.state)
    assert _sources(es, "faq-v1") == _expected(writer.old_state)
    # Every write that failed was refused by the block, with Elasticsearch's 403 (none else failed).
    assert writer.failures
    for exc in writer.failures:
        assert isinstance(exc, ApiError) and exc.meta.status == 403, exc
        assert exc.error == "cluster_block_exception" and exc.body["error"]["reason"] == BLOCKED_V1
    # The block is gone (the setting back to unset), and so is the lock with nothing left to restore.
    assert "index.blocks.write" not in _flat(es, "faq-v1")
    es.index(index="faq-v1", id="after", document={"question": "direct writes work again"})
    assert not es.exists(index="es-semantic-locks", id="faq")
    # Every document the job copied (all but those the writer wrote after the swap) has the vector
    # of its current text.
    copied = {i: s for i, s in all_sources(es, "faq-v2").items() if i not in writer.written_after_swap}
    assert copied and all("embedding" in s for s in copied.values())
    assert_vectors_match(copied, read_config(es, "faq"), small_embedder)
    assert "writes to 'faq-v1' were blocked for" in report.summary()


def test_without_block_writes_a_write_in_the_instant_before_the_swap_is_lost(es_client, tiny_model,
                                                                             small_embedder, monkeypatch):
    # What --block-writes is for (the README's caveat): without it, a write that lands after the
    # last catch-up pass was found quiet and before the swap stays in the old index only. (Writes
    # during or just after a pass are caught by the next one: see test_reindex_bluegreen_handover.)
    from es_semantic.reindexing.bluegreen import BlueGreen

    es = es_client
    _aliased(es, tiny_model, 40)
    original = BlueGreen._swap

    def swap(self: Any, name: str) -> None:
        es.update(index="faq-v1", id="3", doc={"question": "landed just before the swap"}, refresh=True)
        original(self, name)

    monkeypatch.setattr(BlueGreen, "_swap", swap)
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    assert report.blue_green["alias_swapped"] and "write_block" not in report.blue_green
    assert es.get(index="faq-v1", id="3")["_source"]["question"] == "landed just before the swap"
    assert es.get(index="faq", id="3")["_source"]["question"] == make_doc(3)["question"]


def test_a_rerun_after_the_swap_does_not_bring_over_a_write_the_swap_missed(es_client, tiny_model, embedder):
    # What the docs say instead of "rerun later, it catches up": after the swap the alias points at
    # the new index, so a rerun copies that one and never reads the old index again.
    es = es_client
    _aliased(es, tiny_model, 6)
    reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    es.update(index="faq-v1", id="3", doc={"question": "landed in the old index just before the swap"}, refresh=True)
    again = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    assert again.blue_green["old_index"] == "faq-v2" and again.blue_green["new_index"] == "faq-v3"
    assert not again.blue_green["resumed"]
    assert es.get(index="faq", id="3")["_source"]["question"] == make_doc(3)["question"]
    assert es.get(index="faq-v1", id="3")["_source"]["question"] == "landed in the old index just before the swap"


def test_block_writes_leaves_an_already_blocked_index_blocked(es_client, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 12)
    es.indices.put_settings(index="faq-v1", settings={"index.blocks.write": True})
    report = reindex(es, "faq", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, block_writes=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["write_block"] == "already blocked" and "write_block_s" not in bg
    assert bg["counts"] == {"old": 12, "new": 12}
    assert _flat(es, "faq-v1")["index.blocks.write"] == "true"  # not ours to lift
    with pytest.raises(ApiError) as err:
        es.index(index="faq-v1", id="x", document={"question": "still blocked"})
    assert err.value.meta.status == 403
    assert "blocked for" not in report.summary()


@pytest.mark.parametrize("where", ["final pass", "swap"])
def test_a_failure_while_blocked_lifts_the_block_and_keeps_the_alias(es_client, es_server, tiny_model,
                                                                     small_embedder, monkeypatch, where):
    from es_semantic.reindexing.bluegreen import BlueGreen

    es = es_client
    _aliased(es, tiny_model, 12)
    es.indices.put_settings(index="faq-v1", settings={"index.blocks.write": False})  # explicit: restored as is
    options = ReindexOptions(dims=32, new_index=True, block_writes=True, max_retries=0)
    if where == "swap":
        es_server.faults.unavailable(r"^/_aliases$", method="POST")
        expected: type[Exception] = ApiError
    else:
        original = BlueGreen.catch_up
        passes: list[int] = []

        def catch_up(self: Any, plan: Any) -> dict[str, int]:
            passes.append(1)
            if len(passes) == 2:
                assert _flat(es, "faq-v1")["index.blocks.write"] == "true"  # blocked during the pass
                raise RuntimeError("final pass failed")
            return original(self, plan)

        monkeypatch.setattr(BlueGreen, "catch_up", catch_up)
        expected = RuntimeError
    with pytest.raises(expected):
        reindex(es, "faq", embedder=small_embedder, options=options)
    es_server.faults.clear()
    monkeypatch.undo()
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]
    assert _flat(es, "faq-v1")["index.blocks.write"] == "false"
    es.index(index="faq", id="after", document=make_doc(99), refresh=True)  # writers get through again
    assert not es.exists(index="es-semantic-locks", id="faq")  # nothing left for a next run to lift
    # A rerun resumes the copy (with the new document) and swaps.
    report = reindex(es, "faq", embedder=small_embedder, options=options)
    assert report.blue_green["resumed"] and report.blue_green["alias_swapped"]
    assert report.blue_green["counts"] == {"old": 13, "new": 13}
    assert _flat(es, "faq-v1")["index.blocks.write"] == "false"


class Died(BaseException):
    """The process is gone: nothing after this point runs (no lifting, no lock release)."""


def _blocked_by_a_dead_job(es: Any, tiny_model: Any, embedder: Any, small_embedder: Any, monkeypatch: Any) -> None:
    """faq -> faq-v1 embedded, then left write-blocked by a --block-writes job that died in its final pass."""
    _aliased(es, tiny_model, 12)
    reindex(es, "faq", embedder=embedder)
    _die_while_blocked(es, small_embedder, monkeypatch)
    assert _flat(es, "faq-v1")["index.blocks.write"] == "true"


def _die_while_blocked(es: Any, embedder: Any, monkeypatch: Any) -> dict[str, Any]:
    """A --block-writes run through the alias faq that dies in its final pass, as a SIGKILL leaves it;
    returns the lock document it left."""
    from es_semantic.reindexing.bluegreen import BlueGreen
    from es_semantic.reindexing.lock import JobLock

    original = BlueGreen.catch_up
    passes: list[int] = []

    def catch_up(self: Any, plan: Any) -> dict[str, int]:
        passes.append(1)
        if len(passes) == 2:
            raise Died()
        return original(self, plan)

    with monkeypatch.context() as patched:
        patched.setattr(BlueGreen, "catch_up", catch_up)
        patched.setattr(BlueGreen, "_lift_block", lambda self, previous, started: None)
        patched.setattr(JobLock, "release", lambda self: self._stop.set())  # heartbeat stops, lock stays
        with pytest.raises(Died):
            reindex(es, "faq", embedder=embedder,
                    options=ReindexOptions(dims=32, new_index=True, block_writes=True, lock_ttl_s=1.0))
    held = es.get(index="es-semantic-locks", id="faq")["_source"]
    assert held["pending_restore"] == {"faq-v1": {"index.blocks.write": None}}
    time.sleep(max(0.0, held["expires_ms"] / 1000 - time.time()) + 0.05)
    return held


@pytest.mark.parametrize("slices", [1, 2])
def test_a_block_left_by_a_dead_job_through_the_alias_is_lifted_by_a_job_on_the_index(es_client, tiny_model,
                                                                                      embedder, small_embedder,
                                                                                      monkeypatch, slices):
    es = es_client
    _blocked_by_a_dead_job(es, tiny_model, embedder, small_embedder, monkeypatch)
    # The next job is given the concrete index (its own lock there expired too): it finds the
    # alias's lock, which holds the block, adopts it and lifts the block.
    report = reindex(es, "faq-v1", embedder=embedder, options=ReindexOptions(slices=slices))
    assert report.lock["adopted"] == ["faq"]
    assert report.settings_restored["faq-v1"] == {"index.blocks.write": None}
    assert "index.blocks.write" not in _flat(es, "faq-v1")
    es.index(index="faq", id="after", document=make_doc(99), refresh=True)  # writes through the alias work again
    assert not es.exists(index="es-semantic-locks", id="faq")  # adopted, emptied, deleted
    if slices == 1:  # a slice job leaves the dead job's expired lock on faq-v1 (nothing in it) alone
        assert not es.exists(index="es-semantic-locks", id="faq-v1")
    # Nothing is restored twice: a later job through the alias finds nothing left to do.
    assert reindex(es, "faq", embedder=embedder).settings_restored == {}


@pytest.mark.parametrize("failure", ["model load", "dims mismatch"])
def test_a_job_that_fails_early_still_lifts_a_block_a_dead_job_left(es_client, tiny_model, embedder,
                                                                     small_embedder, monkeypatch, tmp_path, failure):
    # Restored right after the lock is taken, before the model is loaded and checked: a job that
    # stops there (model not found, refused, dims mismatch) must not leave the index write-blocked.
    from es_semantic.errors import EsSemanticError

    es = es_client
    _blocked_by_a_dead_job(es, tiny_model, embedder, small_embedder, monkeypatch)
    if failure == "model load":
        kwargs: dict[str, Any] = {"options": ReindexOptions(model=str(tmp_path / "no-such-model"))}
    else:
        kwargs = {"embedder": small_embedder}  # 32 dims for an index of 64
    with pytest.raises(EsSemanticError) as err:
        reindex(es, "faq-v1", **kwargs)
    assert err.value.report.settings_restored["faq-v1"] == {"index.blocks.write": None}  # type: ignore[attr-defined]
    assert "index.blocks.write" not in _flat(es, "faq-v1")
    es.index(index="faq", id="after", document=make_doc(99), refresh=True)  # writes through the alias work again
    assert not es.exists(index="es-semantic-locks", id="faq")
    assert not es.exists(index="es-semantic-locks", id="faq-v1")


def test_a_dry_run_names_the_settings_a_dead_job_left_and_how_to_restore_them(es_client, tiny_model, embedder,
                                                                                small_embedder, monkeypatch, caplog):
    import logging

    es = es_client
    _blocked_by_a_dead_job(es, tiny_model, embedder, small_embedder, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="es_semantic.reindexing.job"):
        report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(dry_run=True))
    assert report.settings_left_to_restore == {"faq-v1": {"index.blocks.write": None}}
    assert report.settings_restored == {}
    assert "faq-v1: index.blocks.write=null" in caplog.text
    assert "Run without --dry-run to restore them" in caplog.text and "es-semantic reindex --index faq" in caplog.text
    # A dry run changes nothing: the block and the lock holding it stay for the real run.
    assert _flat(es, "faq-v1")["index.blocks.write"] == "true"
    assert es.get(index="es-semantic-locks", id="faq")["_source"]["pending_restore"]
    assert reindex(es, "faq", embedder=embedder).settings_restored == {"faq-v1": {"index.blocks.write": None}}


def test_a_job_that_dies_while_blocked_has_the_block_lifted_by_the_next_run(es_client, tiny_model, small_embedder,
                                                                            monkeypatch):
    es = es_client
    _aliased(es, tiny_model, 12)
    _die_while_blocked(es, small_embedder, monkeypatch)  # its lock holds the block, and has expired
    # Left behind as a SIGKILL would leave it: blocked, the alias unmoved, the lock holding the block.
    assert _flat(es, "faq-v1")["index.blocks.write"] == "true"
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]
    # The next run (even one without --block-writes) takes the expired lock over and lifts the block.
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    assert report.lock["took_over"] and report.blue_green["alias_swapped"]
    assert report.settings_restored["faq-v1"] == {"index.blocks.write": None}
    assert "index.blocks.write" not in _flat(es, "faq-v1")
    assert not es.exists(index="es-semantic-locks", id="faq")


def test_a_block_that_cannot_be_lifted_is_reported_and_lifted_by_the_next_run(es_client, es_server, tiny_model,
                                                                              small_embedder):
    es = es_client
    _aliased(es, tiny_model, 12)
    es_server.faults.unavailable(r"^/faq-v1/_settings$", method="PUT")  # lifting fails, even retried
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(
        dims=32, new_index=True, block_writes=True, max_retries=1, retry_initial_s=0.01, retry_max_s=0.02))
    es_server.faults.clear()
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["write_block"] == "set" and "write_block_s" not in bg
    assert "could not lift the write block on 'faq-v1'" in bg["note"] and "index.blocks.write" in bg["note"]
    assert _flat(es, "faq-v1")["index.blocks.write"] == "true"
    held = es.get(index="es-semantic-locks", id="faq")["_source"]  # left expired, with what to undo
    assert held["expires_ms"] == 0 and held["pending_restore"] == {"faq-v1": {"index.blocks.write": None}}
    # Any next run on the alias (here an in-place one) takes the lock over at once and lifts it.
    again = reindex(es, "faq", embedder=small_embedder)
    assert again.lock["took_over"] and again.settings_restored == {"faq-v1": {"index.blocks.write": None}}
    assert "index.blocks.write" not in _flat(es, "faq-v1")


def test_block_writes_needs_new_index():
    with pytest.raises(ConfigError, match="block_writes only applies"):
        ReindexOptions(block_writes=True)


def test_cli_block_writes_flag_env_and_help(es_client, es_server, tiny_model):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    es = es_client
    _aliased(es, tiny_model, 8)
    base = ["--es-url", es_server.url, "reindex", "--index", "faq", "--dims", "32", "--new-index", "--no-progress"]
    done = CliRunner().invoke(cli, [*base, "--block-writes"])
    assert done.exit_code == 0, done.output
    assert "alias 'faq' now points at 'faq-v2'" in done.output
    assert "writes to 'faq-v1' were blocked for" in done.output
    assert "index.blocks.write" not in _flat(es, "faq-v1")
    # The same through the environment (ES_SEMANTIC_<COMMAND>_<OPTION>), on the next version.
    again = CliRunner().invoke(cli, base, env={"ES_SEMANTIC_REINDEX_BLOCK_WRITES": "1"})
    assert again.exit_code == 0, again.output
    assert "writes to 'faq-v2' were blocked for" in again.output
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v3"]
    usage = CliRunner().invoke(cli, ["--es-url", es_server.url, "reindex", "--index", "faq", "--block-writes"])
    assert usage.exit_code == 2 and "block_writes only applies to a blue/green reindex (new_index) (--block-writes)" in usage.output
    helped = CliRunner().invoke(cli, ["reindex", "--help"])
    assert helped.exit_code == 0
    assert "--block-writes" in helped.output


def test_a_job_on_the_half_built_new_index_restores_what_the_dead_copy_left(es_client, tiny_model, embedder,
                                                                             small_embedder, monkeypatch):
    # faq-v2 is not under the alias yet; its _meta names the copy's source, whose lock holds the
    # dead job's pending restore (the old index's write block, the new one's bulk-load settings).
    es = es_client
    _blocked_by_a_dead_job(es, tiny_model, embedder, small_embedder, monkeypatch)
    report = reindex(es, "faq-v2", embedder=small_embedder)
    assert report.lock["adopted"] == ["faq"]
    assert report.settings_restored["faq-v1"] == {"index.blocks.write": None}
    assert "index.blocks.write" not in _flat(es, "faq-v1")
    assert _flat(es, "faq-v2").get("index.refresh_interval") != "-1"
    es.index(index="faq", id="after", document=make_doc(99), refresh=True)
    assert not es.exists(index="es-semantic-locks", id="faq")


def test_an_application_vector_field_survives_the_copy_and_the_catch_up(es_client, tiny_model, embedder,
                                                                        small_embedder):
    # Elasticsearch 9.2+ leaves dense_vector values out of _source unless a read asks for them: a copy
    # of "the whole _source" that does not ask would drop the application's own vectors.
    es = es_client
    _aliased(es, tiny_model, 12)
    es.indices.put_mapping(index="faq-v1", properties={"image_vec": {"type": "dense_vector", "dims": 3}})
    for i in range(12):
        es.update(index="faq-v1", id=str(i), doc={"image_vec": [float(i), 1.0, 0.5]})
    es.indices.refresh(index="faq-v1")

    def edit(call: int) -> None:
        if call == 1:
            es.update(index="faq", id="3", doc={"image_vec": [9.0, 9.0, 9.0]})

    reindex(es, "faq", embedder=embedder)
    report = reindex(es, "faq", embedder=_EditingEmbedder(small_embedder, edit),
                     options=ReindexOptions(dims=32, new_index=True, page_size=4, embed_chunk=4))
    assert report.blue_green["alias_swapped"]
    sources = all_sources(es, report.blue_green["new_index"])
    assert sources["3"]["image_vec"] == [9.0, 9.0, 9.0]
    assert all(sources[str(i)]["image_vec"] == [float(i), 1.0, 0.5] for i in range(12) if i != 3)
