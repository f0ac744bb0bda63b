"""Benchmark the test server: bulk ingest (float arrays vs base64) and exact kNN query speed.

Starts the server in another process (the ``test-server`` command), ingests N documents with
1024-dim vectors through ``elasticsearch.helpers.streaming_bulk``, then runs kNN queries
(k=10, num_candidates=100). Prints ONE JSON line.

    python scripts/bench_test_server.py [--docs 10000] [--dims 1024] [--queries 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
from elasticsearch import Elasticsearch
from elasticsearch.helpers import streaming_bulk

from es_semantic.vector_codec import encode_vector


def start_server_process() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "ES_SEMANTIC_TEST_SERVER_PORT": "0"}
    code = "from es_semantic.cli.testserver import test_server; test_server()"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(0)


def ingest(es: Elasticsearch, index: str, vectors: np.ndarray, base64: bool) -> float:
    es.indices.create(index=index, mappings={"properties": {
        "title": {"type": "text"},
        "vec": {"type": "dense_vector", "dims": vectors.shape[1], "similarity": "cosine"}}})

    def actions():
        for i, vec in enumerate(vectors):
            yield {"_index": index, "_id": str(i), "title": f"document {i}",
                   "vec": encode_vector(vec) if base64 else vec.tolist()}

    started = time.perf_counter()
    for ok, item in streaming_bulk(es, actions(), chunk_size=500, max_chunk_bytes=50 * 1024 * 1024):
        if not ok:
            raise SystemExit(f"bulk item failed: {item}")
    elapsed = time.perf_counter() - started
    es.indices.refresh(index=index)
    return len(vectors) / elapsed


def ingest_preserialized(es: Elasticsearch, index: str, vectors: np.ndarray, chunk: int = 500) -> float:
    """Server-side rate: bulk bodies serialised before the clock starts (isolates the server)."""
    import orjson

    es.indices.create(index=index, mappings={"properties": {
        "vec": {"type": "dense_vector", "dims": vectors.shape[1], "similarity": "cosine"}}})
    bodies = []
    for start in range(0, len(vectors), chunk):
        lines = []
        for i in range(start, min(start + chunk, len(vectors))):
            lines.append(orjson.dumps({"index": {"_index": index, "_id": str(i)}}))
            lines.append(orjson.dumps({"title": f"document {i}", "vec": vectors[i].tolist()}))
        bodies.append(b"\n".join(lines) + b"\n")
    started = time.perf_counter()
    for body in bodies:
        if es.bulk(operations=body)["errors"]:
            raise SystemExit("bulk failed")
    return len(vectors) / (time.perf_counter() - started)


def knn_latencies(es: Elasticsearch, index: str, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        started = time.perf_counter()
        resp = es.search(index=index, knn={"field": "vec", "query_vector": q.tolist(), "k": 10,
                                           "num_candidates": 100}, source=False)
        out.append(time.perf_counter() - started)
        assert len(resp["hits"]["hits"]) == 10
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.docs, args.dims), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dims), dtype=np.float32)
    proc, url = start_server_process()
    try:
        try:  # the client's default json.dumps of 10M floats would dominate the float-array figure
            from elasticsearch.serializer import OrjsonSerializer

            es, client_serializer = Elasticsearch(url, request_timeout=300, serializer=OrjsonSerializer()), "orjson"
        except ImportError:
            es, client_serializer = Elasticsearch(url, request_timeout=300), "json"
        float_rate = ingest(es, "bench-float", vectors, base64=False)
        b64_rate = ingest(es, "bench-b64", vectors, base64=True)
        try:
            server_rate = round(ingest_preserialized(es, "bench-raw", vectors), 1)
        except ImportError:
            server_rate = None
        es.indices.delete(index="bench-raw")
        started = time.perf_counter()
        knn_latencies(es, "bench-float", queries[:1])  # first query builds the engine's vector matrix
        first_query_s = time.perf_counter() - started
        lat = knn_latencies(es, "bench-float", queries)
        lat_b64 = knn_latencies(es, "bench-b64", queries[:1])
        print(json.dumps({
            "docs": args.docs, "dims": args.dims, "client_serializer": client_serializer,
            "ingest_float_docs_per_s": round(float_rate, 1),
            "ingest_base64_docs_per_s": round(b64_rate, 1),
            "base64_vs_float_ingest_ratio": round(b64_rate / float_rate, 2),
            "server_only_float_docs_per_s": server_rate,
            "knn_first_query_s": round(first_query_s, 3),
            "knn_queries_per_s": round(len(lat) / sum(lat), 1),
            "knn_p50_ms": round(statistics.median(lat) * 1000, 2),
            "knn_p95_ms": round(sorted(lat)[int(0.95 * len(lat)) - 1] * 1000, 2),
            "knn_base64_first_query_s": round(lat_b64[0], 3),
        }))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
