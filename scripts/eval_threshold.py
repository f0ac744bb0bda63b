#!/usr/bin/env python
"""The "no good match" threshold on BEIR SciFact: chosen on the train split, checked on the test split.

SciFact has no out-of-scope questions, so unanswerable ones are made by hold-out: a seeded share of
the judged queries has its relevant documents removed from its own results (the index is
untouched), as ``es-semantic eval --calibrate`` does without ``--no-answer-queries``. The
threshold is calibrated on the train queries (seed 0) and then applied, unchanged, to the test
queries (seed 1, another hold-out): the test figures are what a user would see.

    python scripts/eval_threshold.py                  # hybrid linear (the default method)
    python scripts/eval_threshold.py --method knn --holdout 0.5

Prints tables on stderr and ONE JSON line on stdout. Builds the index like eval_scifact.py
(all-MiniLM-L6-v2, vectors cached in $TMPDIR/es_semantic_eval).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_scifact import DEFAULT_DATA, build_index, minilm_path

from es_semantic.calibration import calibrate_legs, variant_for
from es_semantic.evaluation import fetch_legs, load_beir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--method", default=None, choices=("linear", "rrf", "knn"))
    parser.add_argument("--holdout", type=float, default=0.3)
    parser.add_argument("--target-precision", type=float, default=None)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if not (args.data / "corpus.jsonl").exists():
        log(f"dataset not found at {args.data}")
        return 2
    from elasticsearch import Elasticsearch

    from es_semantic.testing import start_server

    train, test = load_beir(args.data, "train"), load_beir(args.data, "test")
    variant = variant_for(args.method, args.window)
    with start_server() as server:
        es = Elasticsearch(server.url, request_timeout=300)
        figures = build_index(es, "scifact", args.data, minilm_path(), log, use_reindex=True)
        started = time.perf_counter()
        runs = fetch_legs(es, train.queries | test.queries, index="scifact", window=args.window)
        figures["fetch_s"] = round(time.perf_counter() - started, 1)

    def calibrate(dataset, seed):
        return calibrate_legs(runs, dataset.qrels, variant, similarity="cosine", holdout=args.holdout, seed=seed,
                              target_precision=args.target_precision)

    chosen = calibrate(train, 0)
    log(f"--- train ({len(train.qrels)} queries, {len(chosen.held_out)} held out): {chosen.objective}")
    log(chosen.table())
    # The test split, with its own hold-out, at the threshold chosen on train (and, for reference,
    # at the threshold that would have been best on test itself).
    on_test = calibrate(test, 1)
    applied = on_test.at(chosen.min_score)
    log(f"--- test ({len(test.qrels)} queries, {len(on_test.held_out)} held out)")
    log(on_test.table())
    log(f"train-chosen min_score {chosen.min_score:g} on test: accuracy {applied.accuracy:.4f}, precision "
        f"{applied.precision:.4f}, false answers {applied.false_answer_rate:.4f}; no threshold: accuracy "
        f"{on_test.no_threshold.accuracy:.4f}, precision {on_test.no_threshold.precision:.4f}; "
        f"best on test itself {on_test.min_score:g} (accuracy {on_test.recommended.accuracy:.4f})")

    def brief(row):
        d = row.to_dict()
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}

    out = {"dataset": "scifact", "model": "all-MiniLM-L6-v2", "method": variant.name, "holdout": args.holdout,
           "objective": chosen.objective, "min_score": chosen.min_score, **figures,
           "train": {"chosen": brief(chosen.recommended), "no_threshold": brief(chosen.no_threshold)},
           "test": {"at_train_min_score": brief(applied), "no_threshold": brief(on_test.no_threshold),
                    "best_on_test": brief(on_test.recommended)}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
