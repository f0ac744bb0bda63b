"""Documents with custom routing on a multi-shard index that requires it: the reindex job and
hybrid_search must carry each document's routing to every get, mget and write (without it
Elasticsearch answers routing_missing_exception, or looks on the wrong shard)."""

from __future__ import annotations

import pytest
from test_reindex_support import DIMS, make_doc

from es_semantic.config import SemanticConfig
from es_semantic.mappings import install_mappings
from es_semantic.reindexing import reindex
from es_semantic.search import clear_caches, hybrid_search
from es_semantic.search.hybrid import register_embedder


@pytest.fixture
def routed(es_client, tiny_model, embedder):
    es = es_client
    es.indices.create(index="tenants", settings={"number_of_shards": 3},
                      mappings={"_routing": {"required": True},
                                "properties": {"question": {"type": "text"}, "answer": {"type": "text"}}})
    config = SemanticConfig(model=str(tiny_model), dims=DIMS, index_options={"type": "flat"})
    install_mappings(es, "tenants", config)
    ops = []
    for i in range(24):
        ops += [{"index": {"_index": "tenants", "_id": str(i), "routing": f"tenant-{i % 4}"}}, make_doc(i)]
    assert not es.bulk(operations=ops, refresh=True)["errors"]
    clear_caches()
    register_embedder(config, embedder)
    yield es
    clear_caches()


def test_reindex_and_hybrid_search_carry_routing(routed, embedder):
    es = routed
    report = reindex(es, "tenants", embedder=embedder)
    assert report.embedded == 24 and report.failed == 0, report.failures[:3]
    # every document got its vector on its own shard (a get needs the routing)
    for i in range(24):
        doc = es.get(index="tenants", id=str(i), routing=f"tenant-{i % 4}", source_excludes=["embedding"])
        assert doc["_source"]["embedding_info"]["fingerprint"]
    for execution in ("client", "server"):
        for min_score in (None, -1.0):  # with a threshold the server path fetches the page with _mget too
            result = hybrid_search(es, "How do I change setting number 5?", index="tenants", k=5,
                                   execution=execution, min_score=min_score)
            assert len(result.hits) == 5
            assert all(h.source is not None and h.routing == f"tenant-{int(h.id) % 4}" for h in result.hits), \
                (execution, min_score, [(h.id, h.routing, h.source is None) for h in result.hits])
            assert result.hits[0].id == "5"
