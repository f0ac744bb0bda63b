"""Blue/green reindex against the test server: new versioned index, catch-up, atomic alias swap."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from elasticsearch import ApiError

from es_semantic.errors import ConfigError
from es_semantic.mappings import read_config
from es_semantic.reindex import ReindexOptions, reindex
from test_reindex_e2e import _EditingEmbedder
from test_reindex_support import (  # noqa: F401 - fixtures
    DIMS, add_docs, all_sources, assert_vectors_match, embedder, make_doc, make_index, tiny_model, without,
)


@pytest.fixture(scope="module")
def small_embedder(tiny_model: Any) -> Any:
    """The same model truncated to 32 dims (Matryoshka): a configuration change needing a new index."""
    from es_semantic.embedding import Embedder

    return Embedder(str(tiny_model), dims=32, device="cpu")


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


def test_blue_green_needs_an_alias_and_says_how_to_migrate(es_client, tiny_model, small_embedder):
    es = es_client
    make_index(es, "plain", tiny_model, 2)
    with pytest.raises(ConfigError) as err:
        reindex(es, "plain", embedder=small_embedder, options=ReindexOptions(dims=32, new_index=True))
    message = str(err.value)
    assert "plain-v1" in message and "_aliases" in message and "_reindex" in message


def test_delete_old(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model, 5)
    report = reindex(es, "faq", embedder=embedder, options=ReindexOptions(new_index=True, delete_old=True))
    assert report.blue_green["old_index_deleted"] and not es.indices.exists(index="faq-v1")
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2"]


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
