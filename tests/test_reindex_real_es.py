"""The same end-to-end flow against a real Elasticsearch node (``real_es``: ES_URL or a
testcontainers container); skipped with the reason where neither is available."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from test_reindex_support import (
    all_sources,
    assert_vectors_match,
    make_doc,
    make_index,
    without,
)

from es_semantic.mappings import read_config
from es_semantic.reindexing import ReindexOptions, index_status, reindex

pytestmark = pytest.mark.real_es


@pytest.fixture
def prefix(real_es):
    name = f"es-semantic-test-{uuid.uuid4().hex[:8]}"
    yield name
    # By name: Elasticsearch 8+ refuses wildcard deletes (action.destructive_requires_name).
    made = real_es.options(ignore_status=404).indices.get(index=f"{name}*", expand_wildcards="all").body
    for index in made:
        real_es.options(ignore_status=404).indices.delete(index=index)
    real_es.options(ignore_status=404).delete(index="es-semantic-locks", id=name)


def test_reindex_rerun_edit_and_blue_green_on_a_real_node(real_es, prefix, tiny_model, embedder):
    from es_semantic.embedding import Embedder

    es = real_es
    v1 = f"{prefix}-v1"
    cfg = make_index(es, v1, tiny_model, 60)
    es.indices.put_alias(index=v1, name=prefix)
    report = reindex(es, prefix, embedder=embedder, options=ReindexOptions(page_size=25, bulk_max_docs=20))
    assert (report.embedded, report.failed) == (60, 0)
    sources = all_sources(es, prefix)
    assert_vectors_match(sources, cfg, embedder)
    for i in range(60):
        assert without(sources[str(i)], "embedding", "embedding_info") == without(make_doc(i))
    assert reindex(es, prefix, embedder=embedder).skipped == 60
    es.update(index=prefix, id="3", doc={"answer": "a different answer"}, refresh=True)
    assert reindex(es, prefix, embedder=embedder).embedded == 1
    assert index_status(es, prefix, embedder=embedder).current == 60

    small = Embedder(str(tiny_model), dims=32, device="cpu")
    bg = reindex(es, prefix, embedder=small, options=ReindexOptions(dims=32, new_index=True))
    assert bg.blue_green["alias_swapped"] and bg.blue_green["new_index"] == f"{prefix}-v2"
    assert list(es.indices.get_alias(name=prefix).body) == [f"{prefix}-v2"] and es.indices.exists(index=v1)
    assert read_config(es, prefix).dims == 32
    assert_vectors_match(all_sources(es, prefix), read_config(es, prefix), small)
    knn = es.search(index=prefix, knn={"field": "embedding", "query_vector": small.embed_documents(["x"])[0].tolist(),
                                       "k": 5, "num_candidates": 20})
    assert len(knn["hits"]["hits"]) == 5


def test_blue_green_with_block_writes_on_a_real_node(real_es, prefix, tiny_model, monkeypatch):
    from elasticsearch import ApiError

    from es_semantic.embedding import Embedder
    from es_semantic.reindexing.bluegreen import BlueGreen

    es = real_es
    v1 = f"{prefix}-v1"
    make_index(es, v1, tiny_model, 20)
    es.indices.put_alias(index=v1, name=prefix)
    seen: list[Any] = []
    original = BlueGreen.catch_up

    def catch_up(self: Any, plan: Any) -> dict[str, int]:
        if len(seen) == 0:
            seen.append(None)
            return original(self, plan)
        # The final pass: a write through the alias is refused with Elasticsearch's own 403.
        try:
            es.index(index=prefix, id="during", document={"question": "refused"})
            seen.append("accepted")
        except ApiError as exc:
            seen.append(exc)
        return original(self, plan)

    monkeypatch.setattr(BlueGreen, "catch_up", catch_up)
    report = reindex(es, prefix, embedder=Embedder(str(tiny_model), dims=32, device="cpu"),
                     options=ReindexOptions(dims=32, new_index=True, block_writes=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["write_block"] == "lifted" and bg["write_block_s"] > 0
    assert len(seen) == 2
    refused = seen[1]
    assert isinstance(refused, ApiError) and refused.meta.status == 403 and refused.error == "cluster_block_exception"
    assert f"index [{v1}] blocked by: [FORBIDDEN/8/index write (api)];" in str(refused.body)
    assert "index.blocks.write" not in es.indices.get_settings(index=v1, flat_settings=True)[v1]["settings"]
    es.index(index=v1, id="after", document={"question": "writable again"}, refresh=True)


def test_a_concrete_index_is_replaced_by_an_alias_on_a_real_node(real_es, prefix, tiny_model):
    # add + remove_index in one update_aliases: Elasticsearch runs remove_index first, so the alias
    # can take the deleted index's name in the same request.
    from es_semantic.embedding import Embedder

    es = real_es
    make_index(es, prefix, tiny_model, 15)
    small = Embedder(str(tiny_model), dims=32, device="cpu")
    report = reindex(es, prefix, embedder=small,
                     options=ReindexOptions(dims=32, new_index=True, delete_old=True, block_writes=True))
    bg = report.blue_green
    assert bg["alias_swapped"] and bg["old_index_deleted"] and bg["write_block"] == "deleted with the index"
    assert es.indices.get_alias(name=prefix).body == {f"{prefix}-v1": {"aliases": {prefix: {"is_write_index": True}}}}
    assert es.count(index=prefix)["count"] == 15 and read_config(es, prefix).dims == 32
    assert_vectors_match(all_sources(es, prefix), read_config(es, prefix), small)
