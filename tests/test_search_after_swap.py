"""A long-running application keeps searching an alias while a blue/green reindex moves it to an
index with other dims or another model: the very next search after the swap must work, with the
new configuration (``hybrid_search`` caches the index configuration for ``CONFIG_TTL_S``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_reindex_support import make_index

from es_semantic.reindexing import ReindexOptions, reindex
from es_semantic.search import clear_caches, hybrid_search
from es_semantic.search.hybrid import register_embedder


@pytest.fixture
def aliased(es_client, tiny_model, embedder):
    make_index(es_client, "faq-v1", tiny_model, 30)
    es_client.indices.put_alias(index="faq-v1", name="faq")
    reindex(es_client, "faq", embedder=embedder)
    clear_caches()
    yield es_client
    clear_caches()


def test_next_search_after_a_dims_change_works(aliased, tiny_model, embedder):
    from es_semantic.embedding import Embedder

    es = aliased
    register_embedder(_config(es), embedder)
    before = hybrid_search(es, "setting number 3", index="faq", k=3)  # caches the 64-dim configuration
    assert {h.index for h in before} == {"faq-v1"}
    small = Embedder(str(tiny_model), dims=32, device="cpu")
    reindex(es, "faq", embedder=small, options=ReindexOptions(dims=32, new_index=True))
    register_embedder(_config(es), small)
    after = hybrid_search(es, "setting number 3", index="faq", k=3)  # within the cache's lifetime
    assert {h.index for h in after} == {"faq-v2"}
    assert after.hits[0].similarity == pytest.approx(_cos(small, "setting number 3", es, after.hits[0].id), abs=1e-4)


def test_next_search_after_a_model_change_uses_the_new_model(aliased, tmp_path, embedder):
    from es_semantic.embedding import Embedder
    from es_semantic.testing.models import make_tiny_qwen3

    es = aliased
    register_embedder(_config(es), embedder)
    hybrid_search(es, "setting number 3", index="faq", k=3)
    other_dir = make_tiny_qwen3(tmp_path / "other", seed=7)
    other = Embedder(str(other_dir), device="cpu")
    reindex(es, "faq", embedder=other, options=ReindexOptions(model=str(other_dir), new_index=True))
    register_embedder(_config(es), other)
    after = hybrid_search(es, "setting number 3", index="faq", k=3)  # same dims: no error to notice
    assert {h.index for h in after} == {"faq-v2"}
    # the kNN similarities are the new model's, not the old query vector against new document vectors
    assert after.hits[0].similarity == pytest.approx(_cos(other, "setting number 3", es, after.hits[0].id), abs=1e-4)


def _config(es):
    from es_semantic.mappings import read_config

    return read_config(es, "faq")


def _cos(model, query, es, doc_id):
    config = _config(es)
    source = es.get(index="faq", id=doc_id)["_source"]
    q = model.embed_queries([query])[0]
    d = model.embed_documents([config.build_text(source)])[0]
    return float(np.dot(q, d))
