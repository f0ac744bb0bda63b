"""The same end-to-end flow against a real Elasticsearch node (``real_es``: ES_URL or a
testcontainers container); skipped with the reason where neither is available."""

from __future__ import annotations

import uuid

import pytest

from es_semantic.mappings import read_config
from es_semantic.reindex import ReindexOptions, index_status, reindex
from test_reindex_support import (  # noqa: F401 - fixtures
    all_sources, assert_vectors_match, embedder, make_doc, make_index, tiny_model, without,
)

pytestmark = pytest.mark.real_es


@pytest.fixture
def prefix(real_es):
    name = f"es-semantic-test-{uuid.uuid4().hex[:8]}"
    yield name
    real_es.options(ignore_status=404).indices.delete(index=f"{name}*")
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
