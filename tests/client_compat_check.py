"""The main flows with whatever ``elasticsearch`` client is first on the path (run by
``test_client_compat.py`` with an 8.x client on PYTHONPATH): CLI install-mappings, bulk load, CLI
reindex (sliced PIT), status, blue/green to a new index, hybrid_search (every method, sync and
async), the stored min_score. Prints one JSON line of what it saw; any failure raises.

    python tests/client_compat_check.py SERVER_VERSION MODEL_DIR
"""

from __future__ import annotations

import asyncio
import json
import sys

import elasticsearch
from elasticsearch import AsyncElasticsearch, Elasticsearch, helpers

from es_semantic.cli.demo import load_sample
from es_semantic.cli.main import main
from es_semantic.mappings import read_config, set_min_score
from es_semantic.search import async_hybrid_search, clear_caches, hybrid_search
from es_semantic.testing import start_server


def cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run(version: str, model: str) -> dict:
    seen: dict = {"client": elasticsearch.__versionstr__, "server": version}
    with start_server(version=version) as server:
        url = server.url
        es = Elasticsearch(url, request_timeout=60)
        # creates faq-v1 behind the alias faq
        assert cli("--es-url", url, "install-mappings", "--index", "faq", "--model", model, "--dims", "384",
                   "--text-fields", "question,answer", "--index-options", "flat") == 0
        assert sorted(es.indices.get_alias(name="faq").body) == ["faq-v1"]
        docs = [{"_index": "faq", "_id": d["id"], **{k: v for k, v in d.items() if k != "id"}} for d in load_sample()]
        ok, errors = helpers.bulk(es, docs, refresh=True)
        assert ok == len(docs) and not errors, errors
        # two slices of a sliced point in time, as two machines would run them
        for slice_id in ("0", "1"):
            code = cli("--es-url", url, "reindex", "--index", "faq", "--slices", "2", "--slice-id", slice_id,
                       "--no-progress")
            assert code == 0, code
        es.indices.refresh(index="faq")
        embedded = es.count(index="faq", query={"exists": {"field": "embedding"}})["count"]
        assert embedded == len(docs), (embedded, len(docs))
        assert cli("--es-url", url, "status", "--index", "faq", "--no-model") == 0
        # blue/green: a new index, filled, and the alias moved
        assert cli("--es-url", url, "reindex", "--index", "faq", "--new-index", "--no-progress") == 0
        behind = sorted(es.indices.get_alias(name="faq").body)
        assert behind == ["faq-v2"], behind
        seen["alias"] = behind[0]

        clear_caches()
        seen["execution"] = {}
        for method in ("linear", "rrf", "knn", "bm25"):
            result = hybrid_search(es, "I forgot my password", index="faq", k=3, method=method)
            assert result.hits and result.hits[0].id == "faq-001", (method, [h.id for h in result.hits])
            seen["execution"][method] = result.execution

        async def search_async():
            async with AsyncElasticsearch(url) as aes:
                return await async_hybrid_search(aes, "can I get my money back after buying a yearly plan?",
                                                 index="faq", k=1)

        assert asyncio.run(search_async()).hits[0].id == "faq-012"
        set_min_score(es, "faq", 0.5)
        clear_caches()
        assert read_config(es, "faq").min_score == 0.5
        assert hybrid_search(es, "best recipe for chocolate cake", index="faq").no_match
        es.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2])))
