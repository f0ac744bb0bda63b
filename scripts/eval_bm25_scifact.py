"""BM25 quality check of the test server's search engine on BEIR SciFact.

Loads ../shared/datasets/scifact (BEIR layout) into a test-server index, runs a ``multi_match``
over ``title`` and ``text`` for the 300 test queries with the ``standard`` analyzer, the ``english``
analyzer, and ``english`` with ``tie_breaker: 0.5`` (BEIR's Elasticsearch setting), and prints ONE
JSON line with nDCG@10 and Recall@100 next to the published BM25 figures (Elasticsearch in the
BEIR paper: 0.665; Anserini: 0.679).

    python scripts/eval_bm25_scifact.py            # through the HTTP test server and the official client
    python scripts/eval_bm25_scifact.py --direct   # the engine in-process (no HTTP), same numbers
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

# The project's own BEIR loading and metrics; re-exported here for the tests that load this script.
from es_semantic.evaluation import load_qrels, ndcg_at, read_jsonl, recall_at

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scifact"
PUBLISHED = {"elasticsearch_beir_ndcg@10": 0.665, "anserini_ndcg@10": 0.679}
INDEX = "scifact"


def mappings_for(analyzer: str) -> dict[str, Any]:
    return {
        "properties": {"title": {"type": "text", "analyzer": analyzer}, "text": {"type": "text", "analyzer": analyzer}}
    }


def query_body(text: str, size: int = 100, tie_breaker: float = 0.0) -> dict[str, Any]:
    mm: dict[str, Any] = {"query": text, "fields": ["title", "text"]}
    if tie_breaker:
        mm["tie_breaker"] = tie_breaker  # BEIR's Elasticsearch runs used best_fields with tie_breaker 0.5
    return {"size": size, "_source": False, "query": {"multi_match": mm}}


def _score(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    ids = [q for q in qrels if q in runs]
    return {
        "ndcg@10": round(sum(ndcg_at(runs[q], qrels[q]) for q in ids) / len(ids), 4),
        "recall@100": round(sum(recall_at(runs[q], qrels[q], 100) for q in ids) / len(ids), 4),
        "queries": len(ids),
    }


def evaluate_direct(root: Path, analyzer: str, tie_breaker: float = 0.0) -> dict[str, float]:
    """Drive the search engine in-process on an IndexSnapshot (no HTTP)."""
    from es_semantic.testing.search_engine import run_search
    from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc

    docs = [
        StoredDoc(d["_id"], {"title": d.get("title", ""), "text": d.get("text", "")}, i, 1, 1, i)
        for i, d in enumerate(read_jsonl(root / "corpus.jsonl"))
    ]
    snapshot = IndexSnapshot(INDEX, mappings_for(analyzer), {}, docs)
    target = [SearchTarget(snapshot)]
    queries = {q["_id"]: q["text"] for q in read_jsonl(root / "queries.jsonl")}
    qrels = load_qrels(root / "qrels" / "test.tsv")
    runs = {}
    for qid in qrels:
        res = run_search(target, query_body(queries[qid], tie_breaker=tie_breaker), {})
        runs[qid] = [h["_id"] for h in res["hits"]["hits"]]
    return _score(runs, qrels)


def evaluate_server(root: Path, analyzer: str, tie_breaker: float = 0.0) -> dict[str, float]:
    """Index through the HTTP test server with the official client, then search."""
    from elasticsearch import Elasticsearch, helpers

    from es_semantic.testing import start_server

    queries = {q["_id"]: q["text"] for q in read_jsonl(root / "queries.jsonl")}
    qrels = load_qrels(root / "qrels" / "test.tsv")
    with start_server() as server:
        es = Elasticsearch(server.url, request_timeout=120)
        es.indices.create(index=INDEX, mappings=mappings_for(analyzer))
        actions = (
            {"_index": INDEX, "_id": d["_id"], "_source": {"title": d.get("title", ""), "text": d.get("text", "")}}
            for d in read_jsonl(root / "corpus.jsonl")
        )
        helpers.bulk(es, actions, chunk_size=1000)
        es.indices.refresh(index=INDEX)
        runs = {}
        for qid in qrels:
            res = es.search(index=INDEX, body=query_body(queries[qid], tie_breaker=tie_breaker))
            runs[qid] = [h["_id"] for h in res["hits"]["hits"]]
    return _score(runs, qrels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--direct", action="store_true", help="call the engine in-process instead of over HTTP")
    args = parser.parse_args(argv)
    if not (args.root / "corpus.jsonl").exists():
        print(json.dumps({"error": f"dataset not found at {args.root}"}))
        return 2
    run = evaluate_direct if args.direct else evaluate_server
    out: dict[str, Any] = {
        "dataset": "scifact",
        "split": "test",
        "query": "multi_match(title,text)",
        "mode": "direct" if args.direct else "http",
    }
    for label, analyzer, tie in (
        ("standard", "standard", 0.0),
        ("english", "english", 0.0),
        ("english_tie_breaker_0.5", "english", 0.5),
    ):
        start = time.perf_counter()
        scores = run(args.root, analyzer, tie)
        out[label] = {**scores, "seconds": round(time.perf_counter() - start, 1)}
    out["published"] = PUBLISHED
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
