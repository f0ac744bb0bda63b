"""Blue/green from a concrete index: ``reindex --index X --new-index --delete-old`` copies X into X-v1
and replaces the index X by an alias X over the copy in one ``update_aliases`` request
(``remove_index``); and the README's main flow (install-mappings, then a blue/green reindex later)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
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

from es_semantic.cli.main import cli
from es_semantic.errors import ConfigError, EsSemanticError
from es_semantic.mappings import read_config
from es_semantic.reindexing import ReindexOptions, reindex


def _flat(es: Any, index: str) -> dict[str, Any]:
    return es.indices.get_settings(index=index, flat_settings=True)[index]["settings"]


def _concrete(es: Any, model: Any, n: int, name: str = "plain") -> None:
    make_index(es, name, model, n)  # a plain index, as before install-mappings created aliases
    es.indices.put_settings(index=name, settings={"index.number_of_replicas": 2, "index.refresh_interval": "2s"})


def _untouched(es: Any, name: str, n: int) -> None:
    """``name`` is still the concrete index it was, with its documents, and nothing was built."""
    assert list(es.indices.get(index=name).body) == [name] and not es.indices.exists_alias(name=name)
    assert es.count(index=name)["count"] == n
    assert not es.indices.exists(index=f"{name}-v1")


# -- the test server's update_aliases, as Elasticsearch does it --------------------------------------

@pytest.mark.parametrize("order", ["add first", "remove_index first"])
def test_remove_index_and_an_alias_of_its_name_in_one_request(es_client, order):
    es = es_client
    es.indices.create(index="old")
    es.indices.create(index="new")
    es.index(index="new", id="1", document={"x": 1}, refresh=True)
    actions = [{"add": {"index": "new", "alias": "old"}}, {"remove_index": {"index": "old"}}]
    es.indices.update_aliases(actions=actions if order == "add first" else actions[::-1])
    assert es.indices.get_alias(name="old").body == {"new": {"aliases": {"old": {}}}}
    assert es.count(index="old")["count"] == 1


def test_remove_index_refuses_an_alias_and_a_failed_request_changes_nothing(es_client):
    es = es_client
    es.indices.create(index="a-v1", aliases={"a": {}})
    es.indices.create(index="b")
    with pytest.raises(ApiError) as err:
        es.indices.update_aliases(actions=[{"remove_index": {"index": "a"}}])
    assert err.value.meta.status == 400 and "matches an alias, specify the corresponding concrete indices" in str(err.value)
    # Adding an alias to an index the same request deletes: 404, and nothing of the request applies.
    with pytest.raises(ApiError) as err:
        es.indices.update_aliases(actions=[{"remove_index": {"index": "b"}}, {"add": {"index": "b", "alias": "c"}}])
    assert err.value.meta.status == 404
    assert es.indices.exists(index="a-v1") and es.indices.exists(index="b")
    assert list(es.indices.get_alias(name="a").body) == ["a-v1"]
    # Without remove_index, an alias cannot take an index's name.
    with pytest.raises(ApiError) as err:
        es.indices.update_aliases(actions=[{"add": {"index": "a-v1", "alias": "b"}}])
    assert err.value.meta.status == 400 and err.value.error == "invalid_alias_name_exception"


# -- reindex --new-index on a concrete index -------------------------------------------------------

def test_a_concrete_index_needs_delete_old_and_is_told_the_command(es_client, tiny_model, small_embedder):
    es = es_client
    _concrete(es, tiny_model, 6)
    with pytest.raises(ConfigError) as err:
        reindex(es, "plain", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    message = str(err.value)
    assert "'plain' is a concrete index" in message and "replaced by an alias of its name" in message
    assert "es-semantic reindex --index plain --new-index --delete-old --dims 32" in message
    assert "deletes the index 'plain'" in message
    _untouched(es, "plain", 6)
    assert not es.exists(index="es-semantic-locks", id="plain")


def test_a_concrete_index_is_replaced_by_an_alias_over_its_copy(es_client, tiny_model, small_embedder):
    es = es_client
    _concrete(es, tiny_model, 30)

    def edit(call: int) -> None:
        if call == 1:  # during the copy, through the name everybody uses
            es.update(index="plain", id="5", doc={"question": "rewritten during the copy"})
            es.delete(index="plain", id="6")
            add_docs(es, "plain", [1000])

    report = reindex(es, "plain", embedder=_EditingEmbedder(small_embedder, edit),
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True, page_size=10, embed_chunk=8))
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["old_index_deleted"] and bg["replaces_concrete_index"]
    assert bg["old_index"] == "plain" and bg["new_index"] == "plain-v1" and bg["counts"] == {"old": 30, "new": 30}
    assert bg["catch_up"]["changed"] >= 2 and bg["catch_up"]["deleted"] == 1 and report.failed == 0
    # 'plain' is now an alias (the write index) over the copy; the concrete index is gone.
    assert es.indices.get_alias(name="plain").body == {"plain-v1": {"aliases": {"plain": {"is_write_index": True}}}}
    assert list(es.indices.get(index="plain").body) == ["plain-v1"]
    sources = all_sources(es, "plain")
    assert len(sources) == 30 and "6" not in sources and "1000" in sources
    assert sources["5"]["question"] == "rewritten during the copy"
    for i in set(range(30)) - {5, 6}:
        assert without(sources[str(i)], "embedding", "embedding_info") == without(make_doc(i))
    cfg = read_config(es, "plain")
    assert cfg.dims == 32
    assert_vectors_match(sources, cfg, small_embedder)
    flat = _flat(es, "plain-v1")  # the bulk-load settings were put back to the old index's
    assert flat["index.number_of_replicas"] == "2" and flat["index.refresh_interval"] == "2s"
    assert not es.exists(index="es-semantic-locks", id="plain")
    # Writes through the name land in the copy; in-place runs and the next blue/green work on the alias.
    es.index(index="plain", id="new", document=make_doc(2000), refresh=True)
    assert es.get(index="plain", id="new")["_index"] == "plain-v1"
    assert reindex(es, "plain", embedder=small_embedder).embedded == 1
    again = reindex(es, "plain", embedder=small_embedder, options=ReindexOptions(new_index=True))
    assert again.blue_green["old_index"] == "plain-v1" and again.blue_green["new_index"] == "plain-v2"
    assert list(es.indices.get_alias(name="plain").body) == ["plain-v2"]
    assert es.indices.exists(index="plain-v1")  # an alias's old index is kept without --delete-old


def _gap_write(monkeypatch: Any, es: Any, *, blocked: bool) -> list[Any]:
    """A write through 'plain' right after the first catch-up pass (the moment before the swap);
    with the block, the final pass first checks that writes are refused."""
    from es_semantic.reindexing.bluegreen import BlueGreen

    original = BlueGreen.catch_up
    refused: list[Any] = []

    def catch_up(self: Any, plan: Any) -> dict[str, int]:
        if blocked and refused == [] and getattr(self, "_passes", 0) == 1:
            with pytest.raises(ApiError) as err:
                es.index(index="plain", id="refused", document=make_doc(77))
            refused.append(err.value)
        counts = original(self, plan)
        self._passes = getattr(self, "_passes", 0) + 1
        if self._passes == 1:
            es.update(index="plain", id="3", doc={"question": "written in the gap"})
        return counts

    monkeypatch.setattr(BlueGreen, "catch_up", catch_up)
    return refused


def test_block_writes_on_a_concrete_index_loses_no_write(es_client, tiny_model, small_embedder, monkeypatch):
    es = es_client
    _concrete(es, tiny_model, 12)
    refused = _gap_write(monkeypatch, es, blocked=True)
    report = reindex(es, "plain", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True, block_writes=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["write_block"] == "deleted with the index" and 0 <= bg["write_block_s"] < 10
    assert bg["final_pass"]["changed"] == 1 and "note" not in bg, bg.get("note")
    assert refused and refused[0].meta.status == 403 and refused[0].error == "cluster_block_exception"
    doc = es.get(index="plain", id="3")
    assert doc["_index"] == "plain-v1" and doc["_source"]["question"] == "written in the gap"
    assert_vectors_match(all_sources(es, "plain"), read_config(es, "plain"), small_embedder)
    assert "index.blocks.write" not in _flat(es, "plain-v1")  # the copy never had a block
    es.index(index="plain", id="after", document=make_doc(99))  # writers get through (to the copy)
    assert not es.exists(index="es-semantic-locks", id="plain")  # nothing left to restore
    assert "were blocked for" in report.summary()


def test_a_concrete_index_is_write_blocked_for_the_swap_even_without_the_flag(es_client, tiny_model, small_embedder,
                                                                               monkeypatch):
    # The old index is deleted by the swap: a write landing before it would be gone for good, so
    # its writes are blocked for the final pass and the swap whether or not --block-writes is given.
    es = es_client
    _concrete(es, tiny_model, 12)
    refused = _gap_write(monkeypatch, es, blocked=True)
    report = reindex(es, "plain", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["write_block"] == "deleted with the index"
    assert refused and refused[0].meta.status == 403
    assert es.get(index="plain", id="3")["_source"]["question"] == "written in the gap"


def test_a_concrete_index_with_other_aliases_is_refused_before_anything_is_built(es_client, tiny_model,
                                                                                 small_embedder):
    es = es_client
    _concrete(es, tiny_model, 6)
    es.indices.put_alias(index="plain", name="plain-reporting")
    with pytest.raises(ConfigError) as err:
        reindex(es, "plain", embedder=small_embedder,
                options=ReindexOptions(dims=32, new_index=True, delete_old=True))
    message = str(err.value)
    assert "other aliases point at ('plain-reporting')" in message and "nothing was changed" in message
    assert '{"remove": {"index": "plain", "alias": "plain-reporting"}}' in message
    assert list(es.indices.get_alias(name="plain-reporting").body) == ["plain"]
    assert es.count(index="plain")["count"] == 6 and not es.indices.exists(index="plain-v1")


def test_an_alias_added_during_the_copy_stops_the_swap_and_a_rerun_finishes(es_client, tiny_model,
                                                                              small_embedder):
    es = es_client
    _concrete(es, tiny_model, 20)

    def add_alias(call: int) -> None:
        if call == 1:
            es.indices.put_alias(index="plain", name="plain-late")

    with pytest.raises(EsSemanticError, match="other aliases point at \\('plain-late'\\)"):
        reindex(es, "plain", embedder=_EditingEmbedder(small_embedder, add_alias),
                options=ReindexOptions(dims=32, new_index=True, delete_old=True, embed_chunk=5))
    assert list(es.indices.get(index="plain").body) == ["plain"] and es.count(index="plain")["count"] == 20
    assert list(es.indices.get_alias(name="plain-late").body) == ["plain"]
    es.indices.delete_alias(index="plain", name="plain-late")
    report = reindex(es, "plain", embedder=small_embedder,
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True))
    assert report.blue_green["resumed"] and report.blue_green["alias_swapped"] and report.skipped == 20
    assert list(es.indices.get_alias(name="plain").body) == ["plain-v1"]


def test_a_failed_swap_of_a_concrete_index_keeps_it_and_lifts_the_block(es_client, es_server, tiny_model,
                                                                         small_embedder):
    es = es_client
    _concrete(es, tiny_model, 8)
    es_server.faults.unavailable(r"^/_aliases$", method="POST")
    options = ReindexOptions(dims=32, new_index=True, delete_old=True, block_writes=True, max_retries=0)
    try:
        with pytest.raises(ApiError):
            reindex(es, "plain", embedder=small_embedder, options=options)
    finally:
        es_server.faults.clear()
    assert list(es.indices.get(index="plain").body) == ["plain"] and es.count(index="plain")["count"] == 8
    assert "index.blocks.write" not in _flat(es, "plain")
    es.index(index="plain", id="after", document=make_doc(50), refresh=True)  # writable again
    report = reindex(es, "plain", embedder=small_embedder, options=options)
    assert report.blue_green["resumed"] and report.blue_green["alias_swapped"]
    assert report.blue_green["counts"] == {"old": 9, "new": 9}
    assert list(es.indices.get_alias(name="plain").body) == ["plain-v1"]


def test_cli_concrete_index(es_client, es_server, tiny_model):
    es = es_client
    _concrete(es, tiny_model, 5)
    base = ["--es-url", es_server.url, "reindex", "--index", "plain", "--dims", "32", "--new-index", "--no-progress"]
    refused = CliRunner().invoke(cli, base)
    assert refused.exit_code == 2, refused.output
    assert "es-semantic reindex --index plain --new-index --delete-old --dims 32" in refused.output
    assert "Traceback" not in refused.output
    done = CliRunner().invoke(cli, [*base, "--delete-old"])
    assert done.exit_code == 0, done.output
    assert "alias 'plain' now points at 'plain-v1'" in done.output
    assert list(es.indices.get(index="plain").body) == ["plain-v1"]


# -- the README's main flow --------------------------------------------------------------------------

def test_readme_flow_install_then_blue_green_later(es_client, es_server, tiny_model):
    es = es_client

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["--es-url", es_server.url, *args])
        assert result.exit_code == 0, result.output
        return result

    created = run("install-mappings", "--index", "faq", "--text-fields", "question,answer", "--model",
                  str(tiny_model), "--dims", str(DIMS))
    assert "created index 'faq-v1' behind alias 'faq'" in created.output
    add_docs(es, "faq", range(10))  # the application writes to 'faq'
    assert "10 embedded" in run("reindex", "--index", "faq", "--no-progress").output
    moved = run("reindex", "--index", "faq", "--new-index", "--dims", "32", "--no-progress")
    assert "alias 'faq' now points at 'faq-v2'" in moved.output
    assert read_config(es, "faq").dims == 32 and es.count(index="faq")["count"] == 10


# -- advice that leads somewhere: each "cannot change in place" error gives a command that works ------

def _advised(message: str) -> list[str]:
    """The es-semantic command an error message advises, as arguments (without 'es-semantic')."""
    import shlex

    start = message.index("es-semantic reindex")
    ends = [i for i in (message.find(sep, start) for sep in (" (", "; ", ". ", "\n")) if i >= 0]
    words = shlex.split(message[start:min(ends)] if ends else message[start:])
    assert words[0] == "es-semantic"
    return words[1:]


@pytest.mark.parametrize("kind", ["alias", "concrete"])
def test_reindex_with_changed_options_advises_a_command_that_works(es_client, es_server, tiny_model, embedder,
                                                                   kind):
    es = es_client
    if kind == "alias":
        make_index(es, "faq-v1", tiny_model, 6)
        es.indices.put_alias(index="faq-v1", name="faq")
        name, expected = "faq", "es-semantic reindex --index faq --new-index --dims 32"
    else:
        make_index(es, "faq", tiny_model, 6)
        name, expected = "faq", "es-semantic reindex --index faq --new-index --delete-old --dims 32"
    reindex(es, name, embedder=embedder)  # vectors to protect
    refused = CliRunner().invoke(cli, ["--es-url", es_server.url, "reindex", "--index", name, "--dims", "32",
                                       "--no-progress"])
    assert refused.exit_code == 2 and expected in refused.output, refused.output
    if kind == "concrete":
        assert "replaced by an alias of its name" in refused.output
    done = CliRunner().invoke(cli, ["--es-url", es_server.url, *_advised(refused.output), "--no-progress"])
    assert done.exit_code == 0, done.output
    assert read_config(es, "faq").dims == 32 and es.count(index="faq")["count"] == 6
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2" if kind == "alias" else "faq-v1"]


@pytest.mark.parametrize("alias", [True, False])
def test_install_mappings_conflict_advises_a_command_that_works(es_client, es_server, tiny_model, alias):
    es = es_client

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--es-url", es_server.url, *args])

    first = ["install-mappings", "--index", "faq", "--model", str(tiny_model), "--dims", str(DIMS)]
    assert run(*first, *([] if alias else ["--no-alias"])).exit_code == 0
    add_docs(es, "faq", range(5))
    assert run("reindex", "--index", "faq", "--no-progress").exit_code == 0  # vectors to protect
    refused = run("install-mappings", "--index", "faq", "--dims", "32", "--similarity", "dot_product",
                  "--text-fields", "question")
    assert refused.exit_code == 2, refused.output
    command = " ".join(["es-semantic", *_advised(refused.output)])
    assert command == ("es-semantic reindex --index faq --new-index " + ("" if alias else "--delete-old ")
                       + "--dims 32 --similarity dot_product")
    assert "the other changes (text_fields) apply in place" in refused.output
    done = run(*_advised(refused.output), "--no-progress")
    assert done.exit_code == 0, done.output
    config = read_config(es, "faq")
    assert (config.dims, config.similarity) == (32, "dot_product")
    assert run("install-mappings", "--index", "faq", "--text-fields", "question").exit_code == 0
    assert read_config(es, "faq").text_fields == ("question",)


def test_the_index_behind_an_alias_is_pointed_to_its_alias(es_client, tiny_model, embedder, small_embedder):
    from es_semantic.mappings import install_mappings

    es = es_client
    install_mappings(es, "faq2", read_config_like(tiny_model))  # faq2-v1 behind the alias faq2
    es.index(index="faq2", id="1", document={"question": "q", "answer": "a"}, refresh=True)
    reindex(es, "faq2", embedder=embedder)  # a vector to protect
    for delete_old in (False, True):
        with pytest.raises(ConfigError) as info:
            reindex(es, "faq2-v1", embedder=small_embedder,
                    options=ReindexOptions(dims=32, new_index=True, delete_old=delete_old))
        message = str(info.value)
        assert "'faq2-v1' is behind the alias 'faq2'" in message
        assert "es-semantic reindex --index faq2 --new-index --dims 32" in message
    with pytest.raises(ConfigError, match=r"behind the alias 'faq2': build a new index behind the alias instead: "
                                          r"es-semantic reindex --index faq2 --new-index --dims 32"):
        reindex(es, "faq2-v1", embedder=small_embedder, options=ReindexOptions(dims=32))
    assert sorted(es.indices.get_alias(name="faq2").body) == ["faq2-v1"]  # nothing moved


def read_config_like(tiny_model):
    from es_semantic.config import SemanticConfig

    return SemanticConfig(model=str(tiny_model), dims=DIMS, index_options={"type": "flat"})
