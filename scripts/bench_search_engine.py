"""Speed of the test server's search engine on one 10k-document snapshot (in-process, no HTTP).

Builds 10,000 documents with a 1024-dim unit vector, a 50-word text and a keyword, then times
(median of repeated runs, milliseconds): exact kNN, a BM25 match, a hybrid query + knn, an rrf
retriever, a keyword sort page and a full point-in-time walk with ``search_after``. The first
query on a field also builds its memoised structure (vector matrix, postings): reported separately.
Prints ONE JSON line.

    python scripts/bench_search_engine.py [--docs 10000] [--dims 1024]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from es_semantic.testing.search_engine import run_search
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc


def _ms(fn: Any, repeat: int = 10) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=1024)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.docs, args.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = [f"w{i}" for i in range(5000)]
    docs = [
        StoredDoc(str(i), {"v": vectors[i].tolist(), "t": " ".join(rng.choice(words, 50)), "k": f"k{i % 97}"}, i, 1, 1, i)
        for i in range(args.docs)
    ]
    mappings = {
        "properties": {
            "v": {"type": "dense_vector", "dims": args.dims, "similarity": "cosine"},
            "t": {"type": "text"},
            "k": {"type": "keyword"},
        }
    }
    target = [SearchTarget(IndexSnapshot("bench", mappings, {}, docs))]
    q = vectors[7].tolist()
    knn = {"field": "v", "query_vector": q, "k": 10, "num_candidates": 100}
    text = {"match": {"t": "w1 w2 w3 w4 w5"}}

    def search(body: dict, **kw: Any) -> dict:
        return run_search(target, {"_source": False, **body}, {}, **kw)

    start = time.perf_counter()
    search({"knn": knn})
    build_vectors = round((time.perf_counter() - start) * 1000, 1)
    start = time.perf_counter()
    search({"query": text})
    build_postings = round((time.perf_counter() - start) * 1000, 1)

    def walk() -> None:
        after = None
        while True:
            body: dict[str, Any] = {"size": 500, "sort": [{"_shard_doc": "asc"}], "track_total_hits": False}
            if after:
                body["search_after"] = after
            hits = search(body, pit=True)["hits"]["hits"]
            if not hits:
                return
            after = hits[-1]["sort"]

    rrf = {"retriever": {"rrf": {"retrievers": [{"standard": {"query": text}}, {"knn": knn}]}}}
    out = {
        "docs": args.docs,
        "dims": args.dims,
        "first_knn_with_matrix_build_ms": build_vectors,
        "first_match_with_postings_build_ms": build_postings,
        "knn_ms": _ms(lambda: search({"knn": knn})),
        "bm25_match_ms": _ms(lambda: search({"query": text})),
        "hybrid_query_plus_knn_ms": _ms(lambda: search({"query": text, "knn": knn})),
        "rrf_retriever_ms": _ms(lambda: search(rrf)),
        "keyword_sort_page_ms": _ms(lambda: search({"sort": [{"k": "asc"}, {"_id": "desc"}], "size": 100})),
        "pit_walk_all_docs_ms": _ms(walk, repeat=3),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
