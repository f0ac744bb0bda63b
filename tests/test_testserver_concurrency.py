"""Test server: concurrent writers, a server in another process, the CLI command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch


def test_concurrent_writers_from_threads(es_server, es_client: Elasticsearch) -> None:
    es_client.indices.create(index="docs")

    def writer(worker: int) -> list[int]:
        client = Elasticsearch(es_server.url)
        seqs = []
        for i in range(40):
            seqs.append(client.index(index="docs", id=f"{worker}-{i}", document={"w": worker, "i": i})["_seq_no"])
            if i % 10 == 0:
                resp = client.bulk(index="docs", operations=[{"update": {"_id": f"{worker}-0"}}, {"doc": {"i": i, "touched": True}}])
                seqs.append(resp["items"][0]["update"]["_seq_no"])
        return seqs

    with ThreadPoolExecutor(8) as pool:
        all_seqs = [s for seqs in pool.map(writer, range(8)) for s in seqs]
    assert len(all_seqs) == len(set(all_seqs)) == 8 * 44  # every write got its own seq_no
    es_client.indices.refresh(index="docs")
    assert es_client.count(index="docs")["count"] == 320
    assert es_client.get(index="docs", id="3-0")["_version"] == 5


def test_concurrent_occ_updates_lose_nothing(es_server, es_client: Elasticsearch) -> None:
    es_client.index(index="counter", id="c", document={"n": 0})
    from elasticsearch import ConflictError

    def bump(_: int) -> int:
        client = Elasticsearch(es_server.url)
        conflicts = 0
        while True:
            doc = client.get(index="counter", id="c")
            try:
                client.index(index="counter", id="c", document={"n": doc["_source"]["n"] + 1},
                             if_seq_no=doc["_seq_no"], if_primary_term=doc["_primary_term"])
                return conflicts
            except ConflictError:
                conflicts += 1

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(bump, range(30)))
    assert es_client.get(index="counter", id="c")["_source"]["n"] == 30


def test_cli_help_has_example() -> None:
    from es_semantic.cli.testserver import test_server

    result = CliRunner().invoke(test_server, ["--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "Example" in result.output and "docs/testing.md" in result.output


@pytest.mark.slow
def test_server_in_another_process() -> None:
    env = {**os.environ, "ES_SEMANTIC_TEST_SERVER_PORT": "0"}
    proc = subprocess.Popen([sys.executable, "-c", "from es_semantic.cli.testserver import test_server; test_server()"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"http://\S+", line).group(0)
        client = Elasticsearch(url)
        deadline = time.monotonic() + 10
        while not client.ping():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        client.index(index="x", id="1", document={"a": 1}, refresh=True)
        assert client.count(index="x")["count"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_searches_during_writes_see_consistent_snapshots(es_server, es_client: Elasticsearch) -> None:
    es_client.indices.create(index="live", settings={"refresh_interval": "50ms"})
    stop = False

    def reader(_: int) -> list[int]:
        client = Elasticsearch(es_server.url)
        counts = []
        while not stop:
            resp = client.search(index="live", size=0, track_total_hits=True)
            counts.append(resp["hits"]["total"]["value"])
        return counts

    with ThreadPoolExecutor(3) as pool:
        readers = [pool.submit(reader, n) for n in range(2)]
        for start in range(0, 300, 50):
            es_client.bulk(index="live", operations=[x for i in range(start, start + 50)
                                                      for x in ({"index": {"_id": str(i)}}, {"i": i})])
        es_client.indices.refresh(index="live")
        time.sleep(0.1)
        stop = True
        for future in readers:
            counts = future.result()
            assert counts == sorted(counts)  # a refresh never goes back in time
            assert counts and counts[-1] <= 300
    assert es_client.count(index="live")["count"] == 300
