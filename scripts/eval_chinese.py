#!/usr/bin/env python
"""Language sub-fields and per-index fusion, measured the way a user gets them (issue 15).

    python scripts/eval_chinese.py baoxianzhidao             # BM25: standard index, then install-mappings
    python scripts/eval_chinese.py baoxianzhidao --dense     # + all-MiniLM-L6-v2, eval --calibrate --save
    python scripts/eval_chinese.py scifact --dense           # a plain English index, the same steps

Each run starts the test server, creates a *plain* index (every text field with the standard
analyzer, as users have it), loads the corpus, then runs ``install_mappings`` (what
``es-semantic install-mappings`` runs): the languages are detected from a sample of the documents,
the language sub-fields added and the documents filled in place (``_update_by_query`` task). With
``--dense`` the vectors are written by ``reindex`` (from the cache ``eval_scifact.py`` keeps).

Queries: baoxianzhidao has test judgments only, so its judged queries are split (seeded, the split
``eval --calibrate`` uses: :func:`es_semantic.calibration.split_queries`) into a part to choose on
("train") and a part to report ("held out"). SciFact has its own train and test splits.

Tables on stderr, ONE JSON line on stdout: BM25 (standard only = before, the index defaults after
install-mappings, and the alternatives the default was chosen from), then with ``--dense`` the
legs and the library's default fusions on both parts (what ``hybrid_search`` gives before any
calibration: "hybrid linear" is its default), and ``hybrid_search`` with the index defaults after
``eval --calibrate --save`` on the held-out part, query by query.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from es_semantic.calibration import FUSION_HOLDOUT, split_queries
from es_semantic.evaluation import evaluate_run, format_table, index_beir_corpus, load_beir, run_eval

DATASETS = {"baoxianzhidao": ("text",), "scifact": ("title", "text")}
INDEX = "plain"


def parts(args: argparse.Namespace) -> dict[str, tuple[dict, dict]]:
    """name -> (queries, qrels) of the part chosen on ("train") and the part reported ("held out")."""
    root = ROOT.parent / "shared" / "datasets" / args.dataset
    if args.dataset == "scifact":
        train, test = load_beir(root, "train"), load_beir(root, "test")
        return {"train": (train.queries, train.qrels), "held out": (test.queries, test.qrels)}
    data = load_beir(root, "test")
    choose, report = split_queries(data.qrels, FUSION_HOLDOUT, seed=args.seed)
    return {name: ({q: data.queries[q] for q in ids}, {q: data.qrels[q] for q in ids})
            for name, ids in (("train", choose), ("held out", report))}


def build(es, args: argparse.Namespace, log) -> dict:
    """Plain index, corpus, install-mappings (languages detected, sub-fields filled), vectors by reindex."""
    from es_semantic.config import SemanticConfig
    from es_semantic.mappings import install_mappings

    fields = DATASETS[args.dataset]
    root = ROOT.parent / "shared" / "datasets" / args.dataset
    docs = list(load_beir(root, "test").corpus())
    es.indices.create(index=INDEX, settings={"number_of_shards": 1}, mappings={"properties": {
        name: {"type": "text", "analyzer": "standard"} for name in fields}})
    index_beir_corpus(es, INDEX, docs)
    model = model_path() if args.dense else "none"
    started = time.perf_counter()
    result = install_mappings(es, INDEX, SemanticConfig(model=model, dims=384, text_fields=fields,
                                                        index_options={"type": "flat"}, max_length=args.max_length))
    log(result.summary())
    figures = {"docs": len(docs), "install_s": round(time.perf_counter() - started, 1)}
    if args.dense:
        figures.update(write_vectors(es, docs, model, fields, args.max_length, log))
    return figures


def model_path() -> str:
    from eval_scifact import minilm_path

    return minilm_path()


def write_vectors(es, docs: list, model: str, fields: tuple, max_length: int | None, log) -> dict:
    """``reindex`` with vectors from the cache of ``eval_scifact.py`` (same texts, same model and length)."""
    import hashlib

    import numpy as np
    from eval_scifact import CACHE, CachedEmbedder, _old_key

    from es_semantic.config import SemanticConfig
    from es_semantic.embedding.embedder import Embedder
    from es_semantic.reindexing import reindex

    config = SemanticConfig(model=model, dims=384, text_fields=fields, index_options={"type": "flat"})
    length = "" if max_length is None else f"|{max_length}"
    path = CACHE / f"texts-{hashlib.sha256(f'{model}|384{length}'.encode()).hexdigest()[:16]}.npz"
    embedder = CachedEmbedder(Embedder(model, dims=384, **({"max_length": max_length} if max_length else {})), path)
    old = CACHE / f"vectors-{_old_key(docs, config, model)}.npy"
    if old.exists() and max_length is None:
        embedder.cache.update({CachedEmbedder.key(config.build_text(d)): row for d, row in zip(docs, np.load(old))})
    started = time.perf_counter()
    report = reindex(es, INDEX, embedder=embedder)
    embedder.save()
    es.indices.refresh(index=INDEX)
    log(f"reindex: {report.summary()}")
    return {"reindex_s": round(time.perf_counter() - started, 1), "cached_vectors": embedder.hits}


def bm25_tables(es, split: dict, log) -> dict:
    """BM25 on each part: standard only (before), the index defaults, and the alternatives."""
    from es_semantic.languages import SUM_PER_FIELD
    from es_semantic.mappings import install_mappings
    from es_semantic.search.hybrid import DEFAULTS, index_info

    info = index_info(es, INDEX, fresh=True)
    text_fields = list(info.config.text_fields)
    # the alternatives need every language sub-field: add those detection left out (documents filled)
    install_mappings(es, INDEX, replace(info.config, languages=("en", "zh")))
    install_mappings(es, INDEX, info.config)  # the detected languages back in _meta (sub-fields stay)
    setups = {"standard only (before)": {"fields": text_fields, "defaults": replace(DEFAULTS, english_subfields=False)},
              f"index defaults (languages {','.join(info.config.languages or ())})": {}}
    for sub in ("cjk", "english"):
        with_sub = text_fields + [f"{name}.{sub}" for name in text_fields]
        for kind in ("best_fields", "most_fields"):
            setups[f"{kind} standard+{sub}"] = {"fields": with_sub, "defaults": replace(DEFAULTS, multi_match_type=kind)}
    every = text_fields + [f"{name}.{s}" for name in text_fields for s in ("cjk", "english")]
    for kind in ("most_fields", SUM_PER_FIELD):
        setups[f"{kind} standard+cjk+english"] = {"fields": every, "defaults": replace(DEFAULTS, multi_match_type=kind)}
    tables = {}
    for part, (queries, qrels) in split.items():
        rows = {}
        for name, options in setups.items():
            rows[name] = run_eval(es, INDEX, queries, qrels, legs=("bm25",), **options)["bm25"]
        log(f"--- BM25, {part} part ({len(qrels)} queries)")
        log(format_table(rows))
        tables[part] = rows
    return tables


def hybrid_defaults(es, queries: dict, qrels: dict) -> dict:
    """nDCG@10 etc. of ``hybrid_search`` with every ranking option left to the index defaults, query by
    query (client-side fusion: the same ranking as the server path, one search fewer per query)."""
    from es_semantic.search.hybrid import clear_caches, get_embedder, hybrid_search, index_info, prefill_query_cache

    clear_caches()
    prefill_query_cache(get_embedder(index_info(es, INDEX).config), list(queries.values()))
    run = {}
    for qid, text in queries.items():
        result = hybrid_search(es, text, index=INDEX, k=10, min_score=None, source=False, execution="client")
        run[qid] = [hit.id for hit in result]
    return evaluate_run(run, qrels)


def dense_tables(es, split: dict, log, *, dataset: str, calibrate_seed: int) -> dict:
    """The legs and the library's fusions on each part (``eval``), then ``eval --calibrate --save`` and
    ``hybrid_search`` with the index defaults on the held-out part.

    baoxianzhidao: calibrated on all its judged queries, as ``eval --calibrate`` runs on a qrels file;
    the calibration chooses on the same seeded part this script calls "train" and holds the other
    out. SciFact: calibrated on its train split (split again inside), reported on test."""
    from es_semantic.calibration import evaluate_and_calibrate, save_calibration

    tables: dict = {part: run_eval(es, INDEX, queries, qrels) for part, (queries, qrels) in split.items()}
    parts_used = list(split.values()) if dataset == "baoxianzhidao" else [split["train"]]
    queries = {q: t for part_queries, _ in parts_used for q, t in part_queries.items()}
    qrels = {q: j for _, part_qrels in parts_used for q, j in part_qrels.items()}
    started = time.perf_counter()
    _, found = evaluate_and_calibrate(es, INDEX, queries, qrels, seed=calibrate_seed)
    config = save_calibration(es, INDEX, found)
    log(found.fusion.describe(INDEX, saved=True) if found.fusion else "no fusion chosen")
    log(f"stored: fusion {config.fusion}, min_score {config.min_score}")
    held_queries, held_qrels = split["held out"]
    tables["held out"]["hybrid_search defaults (calibrated)"] = hybrid_defaults(es, held_queries, held_qrels)
    for part, rows in tables.items():
        log(f"--- legs and fusions, {part} part")
        log(format_table(rows))
    return {"tables": tables, "calibrate_s": round(time.perf_counter() - started, 1), "fusion": config.fusion,
            "min_score": config.min_score, "calibration_note": found.fusion.note if found.fusion else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--dense", action="store_true", help="also kNN and fusion with all-MiniLM-L6-v2")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baoxianzhidao query split")
    parser.add_argument("--no-bm25-table", action="store_true",
                        help="skip the BM25 alternatives (the --dense tables have BM25 with the index defaults)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens embedded per text (install-mappings/reindex --max-length; default: the model's)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from elasticsearch import Elasticsearch

    from es_semantic.mappings import read_config
    from es_semantic.testing import start_server

    split = parts(args)
    with start_server() as server:
        es = Elasticsearch(server.url, request_timeout=600)
        figures = build(es, args, log)
        config = read_config(es, INDEX)
        out = {"dataset": args.dataset, "languages": config.languages,
               "parts": {part: len(qrels) for part, (_, qrels) in split.items()}, **figures,
               "bm25": {} if args.no_bm25_table else bm25_tables(es, split, log)}
        if args.dense:
            out["dense"] = dense_tables(es, split, log, dataset=args.dataset, calibrate_seed=args.seed)
    print(json.dumps(out, ensure_ascii=False, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
