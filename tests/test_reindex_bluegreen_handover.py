"""What a blue/green run hands from the old index to the new one at the swap: the owner's write
block, configuration changed through the alias during the copy, and every write (catch-up passes
until the counts agree, or a clear stop when writers never let them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ApiError
from test_reindex_bluegreen import _aliased, _flat
from test_reindex_e2e import _EditingEmbedder
from test_reindex_support import add_docs, all_sources, assert_vectors_match, make_doc, make_index

from es_semantic.mappings import configure, install_mappings, read_config, set_min_score
from es_semantic.reindexing import ReindexOptions, reindex
from es_semantic.reindexing.bluegreen import CATCH_UP_PASSES, BlueGreen, ConfigChangedDuringCopy, CopyNotConverged


def _refused(es: Any, index: str) -> bool:
    try:
        es.index(index=index, id="probe", document=make_doc(500))
    except ApiError as exc:
        assert exc.meta.status == 403 and exc.error == "cluster_block_exception"
        return True
    es.delete(index=index, id="probe")
    return False


# -- the owner's write block ------------------------------------------------------------------------

@pytest.mark.parametrize("block_writes", [False, True])
def test_an_owners_write_block_is_carried_to_the_new_index(es_client, tiny_model, small_embedder, block_writes):
    es = es_client
    _aliased(es, tiny_model, 12)
    es.indices.add_block(index="faq-v1", block="write")
    report = reindex(es, "faq", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, block_writes=block_writes))
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["owner_block_carried"] == {"index.blocks.write": "true"}
    assert _flat(es, "faq-v2")["index.blocks.write"] == "true" and _flat(es, "faq-v1")["index.blocks.write"] == "true"
    assert _refused(es, "faq")  # writes through the alias stay refused, as the owner wanted
    assert "keeps the write block" in report.summary()
    assert not es.exists(index="es-semantic-locks", id="faq")  # nothing of it left to undo


def test_an_owners_write_block_survives_the_replacement_of_a_concrete_index(es_client, tiny_model, small_embedder):
    es = es_client
    make_index(es, "plain", tiny_model, 8)
    es.indices.add_block(index="plain", block="write")
    report = reindex(es, "plain", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True))
    assert report.blue_green["alias_swapped"] and report.blue_green["write_block"] == "already blocked"
    assert list(es.indices.get_alias(name="plain").body) == ["plain-v1"]
    assert _flat(es, "plain-v1")["index.blocks.write"] == "true" and _refused(es, "plain")


def test_a_read_only_block_is_carried_as_the_owner_set_it(es_client, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 6)
    es.indices.put_settings(index="faq-v1", settings={"index.blocks.read_only": True})
    report = reindex(es, "faq", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    assert report.blue_green["owner_block_carried"] == {"index.blocks.read_only": "true"}
    flat = _flat(es, "faq-v2")
    assert flat["index.blocks.read_only"] == "true" and "index.blocks.write" not in flat  # no block of ours left
    assert es.indices.get_mapping(index="faq-v2")["faq-v2"]["mappings"]["_meta"]["es_semantic_bluegreen"][
        "state"] == "done"  # set before the read-only block
    # The old index refuses alias changes while read-only (as on a real node, the test server checks
    # it): the swap traded its block for a write block for that moment, and put it back as it was.
    old = _flat(es, "faq-v1")
    assert old["index.blocks.read_only"] == "true" and "index.blocks.write" not in old
    assert not es.exists(index="es-semantic-locks", id="faq")


def test_a_read_only_old_index_is_deleted_with_delete_old(es_client, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 6)
    es.indices.put_settings(index="faq-v1", settings={"index.blocks.read_only": True})
    report = reindex(es, "faq", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True))
    assert report.blue_green["alias_swapped"] and report.blue_green["old_index_deleted"]
    assert not es.indices.exists(index="faq-v1")
    assert _flat(es, "faq-v2")["index.blocks.read_only"] == "true"


def test_a_failed_swap_lifts_the_block_put_on_the_new_index(es_client, es_server, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 6)
    es.indices.add_block(index="faq-v1", block="write")
    es_server.faults.unavailable(r"^/_aliases$", method="POST")
    options = ReindexOptions(dims=32, new_index=True, max_retries=0)
    try:
        with pytest.raises(ApiError):
            reindex(es, "faq", embedder=small_embedder, options=options)
    finally:
        es_server.faults.clear()
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]
    assert "index.blocks.write" not in _flat(es, "faq-v2")  # the unfinished copy stays writable for the rerun
    assert not es.exists(index="es-semantic-locks", id="faq")
    report = reindex(es, "faq", embedder=small_embedder, options=options)
    assert report.blue_green["resumed"] and report.blue_green["alias_swapped"]
    assert _flat(es, "faq-v2")["index.blocks.write"] == "true"


# -- configuration changed through the alias during the copy ----------------------------------------

def _during_copy(embedder: Any, change: Any) -> Any:
    """The embedder, making ``change`` once the copy is under way."""
    def hook(call: int) -> None:
        if call == 1:
            change()
    return _EditingEmbedder(embedder, hook)


def test_min_score_set_during_the_copy_is_carried_when_the_vectors_compare(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model, 20)
    report = reindex(es, "faq", embedder=_during_copy(embedder, lambda: set_min_score(es, "faq", 0.42)),
                     options=ReindexOptions(new_index=True, index_options={"type": "hnsw"}, embed_chunk=5))
    assert report.blue_green["alias_swapped"] and report.blue_green["config_carried"] == {"min_score": 0.42}
    cfg = read_config(es, "faq")
    assert cfg.min_score == 0.42 and cfg.index_options["type"] == "hnsw"


def test_a_query_instruction_set_during_the_copy_is_carried(es_client, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 20)
    set_min_score(es, "faq", 0.3)

    def change() -> None:
        install_mappings(es, "faq", configure(es, "faq", query_instruction="Find the FAQ entry"))

    report = reindex(es, "faq", embedder=_during_copy(small_embedder, change),
                     options=ReindexOptions(dims=32, new_index=True, embed_chunk=5))
    assert report.blue_green["alias_swapped"]
    cfg = read_config(es, "faq")
    assert cfg.query_instruction == "Find the FAQ entry" and cfg.dims == 32
    assert cfg.min_score is None  # measured for the other dims: not carried


def test_min_score_of_another_model_is_not_carried(es_client, tiny_model, small_embedder):
    es = es_client
    _aliased(es, tiny_model, 20)
    report = reindex(es, "faq", embedder=_during_copy(small_embedder, lambda: set_min_score(es, "faq", 0.42)),
                     options=ReindexOptions(dims=32, new_index=True, embed_chunk=5))
    assert report.blue_green["alias_swapped"] and "config_carried" not in report.blue_green
    assert read_config(es, "faq").min_score is None and read_config(es, "faq-v1").min_score == 0.42


def test_a_text_field_change_during_the_copy_stops_the_swap_and_a_rerun_resumes(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model, 20)

    def change() -> None:
        install_mappings(es, "faq", configure(es, "faq", text_fields=("question",)))

    with pytest.raises(ConfigChangedDuringCopy) as err:
        reindex(es, "faq", embedder=_during_copy(embedder, change),
                options=ReindexOptions(new_index=True, embed_chunk=5))
    message = str(err.value)
    assert "changed while it was being copied (text_fields ('question', 'answer') -> ('question',))" in message
    assert "NOT moved" in message and "the copy resumes" in message
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]
    assert not es.exists(index="es-semantic-locks", id="faq")
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    bg = report.blue_green
    # the install-mappings of the change also recorded the languages it detected in the documents
    assert bg["resumed"] and bg["alias_swapped"] and bg["resumed_with_changed_config"] == ["languages", "text_fields"]
    assert report.embedded == 20  # every vector was made from both fields: all embedded again
    cfg = read_config(es, "faq")
    assert cfg.text_fields == ("question",)
    assert_vectors_match(all_sources(es, "faq-v2"), cfg, embedder)


# -- catch-up passes until the counts agree -----------------------------------------------------------

def _busy_writer(monkeypatch: Any, es: Any, passes_with_writes: int) -> list[dict[str, int]]:
    """A writer that adds a document to the old index right after each of the first
    ``passes_with_writes`` catch-up passes (after the pass read it, before the counts are compared)."""
    return _writes_after_pass(monkeypatch, es, lambda n: add_docs(es, "faq-v1", [2000 + n]), passes_with_writes)


def test_catch_up_passes_repeat_until_the_counts_agree(es_client, tiny_model, embedder, monkeypatch):
    es = es_client
    _aliased(es, tiny_model, 10)
    passes = _busy_writer(monkeypatch, es, 2)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    bg = report.blue_green
    assert len(passes) == 3 and bg["catch_up_passes"] == 3 and bg["catch_up"]["changed"] == 2
    assert bg["alias_swapped"] and bg["counts"] == {"old": 12, "new": 12}
    assert {"2001", "2002"} <= set(all_sources(es, "faq"))


def test_writers_too_busy_for_an_exact_swap_stop_the_job_with_a_clear_error(es_client, es_server, tiny_model,
                                                                             monkeypatch, tmp_path: Path):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    es = es_client
    _aliased(es, tiny_model, 10)
    passes = _busy_writer(monkeypatch, es, 100)
    report_file = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["--es-url", es_server.url, "reindex", "--index", "faq", "--new-index",
                                      "--no-progress", "--report", str(report_file)])
    assert result.exit_code == 75, result.output
    assert len(passes) == CATCH_UP_PASSES
    assert "writers are too busy for an exact swap" in result.output and "--block-writes" in result.output
    assert "the alias 'faq' was NOT moved" in result.output
    data = json.loads(report_file.read_text())
    assert data["exit_code"] == 75 and "CopyNotConverged" in data["error"]
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]
    # As advised: with the write block the rerun resumes the copy and swaps.
    monkeypatch.undo()
    report = reindex(es, "faq", options=ReindexOptions(new_index=True, block_writes=True))
    assert report.blue_green["resumed"] and report.blue_green["alias_swapped"]
    assert report.blue_green["counts"]["old"] == report.blue_green["counts"]["new"] == 10 + CATCH_UP_PASSES


def test_copy_not_converged_is_not_a_usage_error():
    assert CopyNotConverged.exit_code == 75 and ConfigChangedDuringCopy.exit_code == 2


@pytest.mark.parametrize("marker", [True, False], ids=["write marker", "no write marker"])
def test_a_write_the_old_index_has_not_refreshed_yet_is_not_taken_for_copied(es_client, tiny_model, embedder,
                                                                             monkeypatch, marker):
    # Writers do not refresh, and a busy index may refresh rarely: the counts before the swap must
    # see such a write, or the alias moves (exit 0) and the write stays in the old index only.
    es = es_client
    if not marker:
        _no_write_marker(monkeypatch)
    _aliased(es, tiny_model, 10)
    es.indices.put_settings(index="faq-v1", settings={"index.refresh_interval": "-1"})
    original = BlueGreen.catch_up
    passes: list[dict[str, int]] = []

    def catch_up(self: Any, plan: Any) -> dict[str, int]:
        counts = original(self, plan)
        passes.append(counts)
        if len(passes) == 1:
            es.index(index="faq-v1", id="unrefreshed", document=make_doc(777))  # no ?refresh, as an app writes
        return counts

    monkeypatch.setattr(BlueGreen, "catch_up", catch_up)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and len(passes) >= 2
    assert bg["counts"] == {"old": 11, "new": 11}
    assert es.exists(index="faq-v2", id="unrefreshed")


def _writes_after_pass(monkeypatch: Any, es: Any, write: Any, passes_with_writes: int = 1) -> list[dict[str, int]]:
    """``write(pass_number)`` right after each of the first ``passes_with_writes`` catch-up passes:
    after the pass read the old index, before the job judges whether the copy has caught up."""
    original = BlueGreen.catch_up
    passes: list[dict[str, int]] = []

    def catch_up(self: Any, plan: Any) -> dict[str, int]:
        counts = original(self, plan)
        passes.append(counts)
        if len(passes) <= passes_with_writes:
            write(len(passes))
        return counts

    monkeypatch.setattr(BlueGreen, "catch_up", catch_up)
    return passes


def _no_write_marker(monkeypatch: Any) -> None:
    """As on a cluster whose index stats cannot be read: no sequence numbers to compare."""
    monkeypatch.setattr(BlueGreen, "_write_marker", lambda self: None)


@pytest.mark.parametrize("write", ["edit", "add and delete"])
def test_a_write_that_leaves_the_counts_equal_is_caught_up_before_the_swap(es_client, tiny_model, embedder,
                                                                           monkeypatch, write):
    # An edit (or an addition balanced by a deletion) made after the last pass read the old index
    # leaves both counts equal: judged by counts alone, the alias moved without it.
    es = es_client
    _aliased(es, tiny_model, 10)

    def change(_: int) -> None:
        if write == "edit":
            es.update(index="faq-v1", id="3", doc={"question": "edited during the catch-up"})
        else:
            es.index(index="faq-v1", id="added", document=make_doc(778))
            es.delete(index="faq-v1", id="4")

    passes = _writes_after_pass(monkeypatch, es, change)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and len(passes) == 2 and bg["catch_up_passes"] == 2
    assert bg["counts"] == {"old": 10, "new": 10}
    sources = all_sources(es, "faq")
    old = all_sources(es, "faq-v1")
    assert {i: (d["question"], d["answer"]) for i, d in sources.items()} == {
        i: (d["question"], d["answer"]) for i, d in old.items()}
    if write == "edit":
        assert sources["3"]["question"] == "edited during the catch-up"
    else:
        assert "added" in sources and "4" not in sources
    assert_vectors_match(sources, read_config(es, "faq"), embedder)


def test_without_a_write_marker_a_pass_must_find_nothing_to_do(es_client, tiny_model, embedder, monkeypatch):
    # Index stats unreadable: the job swaps only after a pass that found nothing to bring over.
    es = es_client
    _aliased(es, tiny_model, 10)
    _no_write_marker(monkeypatch)

    def edit(n: int) -> None:  # during the copy's catch-up: the next pass brings it over
        es.update(index="faq-v1", id="3", doc={"question": f"edit {n}"}, refresh=True)

    original = BlueGreen.catch_up
    seen: list[dict[str, int]] = []

    def catch_up(self: Any, plan: Any) -> dict[str, int]:
        if not seen:
            edit(1)  # before the first pass reads: found by it
        counts = original(self, plan)
        seen.append(counts)
        return counts

    monkeypatch.setattr(BlueGreen, "catch_up", catch_up)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    bg = report.blue_green
    assert seen == [{"changed": 1, "deleted": 0}, {"changed": 0, "deleted": 0}]
    assert bg["alias_swapped"] and bg["catch_up_passes"] == 2
    assert all_sources(es, "faq")["3"]["question"] == "edit 1"
    # the weaker check is said, with what closes the gap
    assert bg["write_check"] == "quiet pass"
    assert len(report.warnings) == 1 and "could not be read" in report.warnings[0]
    assert "--block-writes closes that gap" in report.warnings[0]


def test_stats_that_fail_after_a_pass_are_not_taken_for_writes(es_client, tiny_model, embedder, monkeypatch):
    es = es_client
    _aliased(es, tiny_model, 10)
    original = BlueGreen._write_marker
    calls: list[int] = []

    def flaky(self: Any) -> Any:  # readable before each pass, unreadable after it
        calls.append(1)
        return original(self) if len(calls) % 2 else None

    monkeypatch.setattr(BlueGreen, "_write_marker", flaky)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    assert report.blue_green["alias_swapped"], report.blue_green
    assert report.blue_green["write_check"] == "quiet pass"


def test_edits_during_every_pass_stop_the_job_although_the_counts_agree(es_client, tiny_model, embedder,
                                                                         monkeypatch):
    es = es_client
    _aliased(es, tiny_model, 10)

    def edit(n: int) -> None:
        es.update(index="faq-v1", id="3", doc={"question": f"edit {n}"})

    passes = _writes_after_pass(monkeypatch, es, edit, passes_with_writes=100)
    with pytest.raises(CopyNotConverged, match="the counts agree .10. but 'faq-v1' was written to during each pass"):
        reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True))
    assert len(passes) == CATCH_UP_PASSES
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]


def test_a_read_only_concrete_index_is_replaced_and_its_block_kept(es_client, tiny_model, small_embedder):
    es = es_client
    make_index(es, "plain", tiny_model, 6)
    es.indices.put_settings(index="plain", settings={"index.blocks.read_only": True})
    report = reindex(es, "plain", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True))
    assert report.blue_green["alias_swapped"] and list(es.indices.get_alias(name="plain").body) == ["plain-v1"]
    assert _flat(es, "plain-v1")["index.blocks.read_only"] == "true"
    assert not es.exists(index="es-semantic-locks", id="plain")
