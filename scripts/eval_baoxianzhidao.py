#!/usr/bin/env python
"""baoxianzhidao (Chinese insurance questions -> answers): BM25 figures with the standard analyzer.

    python scripts/eval_baoxianzhidao.py                 # BM25 only, qrels/test.tsv
    python scripts/eval_baoxianzhidao.py --qrels test_graded
    python scripts/eval_baoxianzhidao.py --dense --limit 500   # + kNN/hybrid with MiniLM (see below)

The standard analyzer splits Chinese into single characters, so BM25 here is a unigram
character model. Dense and hybrid retrieval for Chinese need a multilingual embedding model
(the default Qwen3-Embedding-0.6B is one; it cannot be downloaded on the build machines).
``--dense`` runs anyway with all-MiniLM-L6-v2, an ENGLISH model: its figures are labelled as
such and say nothing about a real multilingual model. Prints ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from es_semantic.evaluation import format_table, index_beir_corpus, load_beir, run_eval

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "baoxianzhidao"
MAPPING = {"properties": {"text": {"type": "text", "analyzer": "standard"}, "title": {"type": "text"}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--qrels", default="test", choices=("test", "test_graded"))
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N queries")
    parser.add_argument("--dense", action="store_true", help="also kNN/hybrid with MiniLM (English model!)")
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if not (args.data / "corpus.jsonl").exists():
        log(f"dataset not found at {args.data}")
        return 2
    from elasticsearch import Elasticsearch

    from es_semantic.config import SemanticConfig
    from es_semantic.mappings import install_mappings
    from es_semantic.testing import start_server

    dataset = load_beir(args.data, args.qrels)
    queries = dict(list(dataset.queries.items())[: args.limit]) if args.limit else dataset.queries
    qrels = {q: dataset.qrels[q] for q in queries}
    docs = list(dataset.corpus())
    model = "none (BM25 only)"
    figures: dict = {}
    with start_server() as server:
        es = Elasticsearch(server.url, request_timeout=300)
        es.indices.create(index="bxzd", mappings=MAPPING, settings={"number_of_shards": 1})
        vectors = None
        if args.dense:
            sys.path.insert(0, str(ROOT / "scripts"))
            from eval_scifact import embed_corpus, minilm_path

            model = "all-MiniLM-L6-v2 (English-only model: NOT representative for Chinese)"
            config = SemanticConfig(model=minilm_path(), dims=384, text_fields=("text",), index_options={"type": "flat"})
            vectors = embed_corpus(docs, config, config.model, log)
        else:
            # BM25 only: the index still needs a configuration for hybrid_search to read.
            config = SemanticConfig(model="none", dims=384, text_fields=("text",), index_options={"type": "flat"})
        install_mappings(es, "bxzd", config)
        started = time.perf_counter()
        index_beir_corpus(es, "bxzd", docs, vectors=vectors)
        figures["load_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        legs = ("bm25", "knn") if args.dense else ("bm25",)
        results = run_eval(es, "bxzd", queries, qrels, window=args.window, legs=legs)
        figures["eval_s"] = round(time.perf_counter() - started, 1)
    log(format_table(results))
    print(json.dumps({"dataset": "baoxianzhidao", "qrels": args.qrels, "queries": len(qrels), "docs": len(docs),
                      "analyzer": "standard", "model": model, **figures,
                      "results": {n: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                                  for n, r in results.items()}}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
