"""hybrid_search: pure request building and response handling (no server)."""

from __future__ import annotations

import json

import pytest

from es_semantic.client import ServerInfo
from es_semantic.config import SemanticConfig
from es_semantic.errors import ConfigError
from es_semantic.search.hybrid import (
    IndexInfo,
    bm25_query,
    build_result,
    clean_query,
    knn_similarity,
    make_plan,
    msearch_body,
    parse_mapping_response,
    server_supports,
)

CONFIG = SemanticConfig(model="/models/m", dims=3)
INFO = IndexInfo(CONFIG, {"question": ("english",), "answer": ()})
ES93 = ServerInfo((9, 3, 0))


def plan(**kw):
    kw.setdefault("index", "faq")
    return make_plan("reset password", INFO, kw.pop("server", ES93), **kw)


@pytest.mark.parametrize("hostile", [
    '{"query": {"match_all": {}}}',
    "title:x OR *",
    "question:* AND answer:(a OR b) ^10 ~2 \\",
    '"}]}, "size": 10000, "x": [{"',
])
def test_query_text_only_reaches_es_as_match_text(hostile):
    p = plan()
    p.text = clean_query(hostile)
    p.vector = [0.1, 0.2, 0.3]
    for body in msearch_body(p):
        encoded = json.dumps(body)
        if hostile.strip() and "query" in body and "multi_match" in json.dumps(body["query"]):
            mm = body["query"]["multi_match"]
            assert mm["query"] == hostile.strip()
        # the hostile text appears exactly once per body, as one JSON string value
        assert encoded.count(json.dumps(p.text)[1:-1]) <= 1
    assert set(bm25_query(p.text, ["a"])) == {"multi_match"}


def test_clean_query_controls_and_length():
    assert clean_query("a\x00b\x1b[31mc\r\n d\t") == "a b [31mc d"
    assert len(clean_query("x" * 100_000)) == 2048
    with pytest.raises(ConfigError):
        clean_query("\x00 \n\t")
    with pytest.raises(ConfigError):
        clean_query(None)  # type: ignore[arg-type]


def test_default_fields_and_filter_applied_to_both_legs():
    p = plan(filter={"term": {"category": "billing"}}, execution="client")
    p.vector = [0.0, 0.0, 1.0]
    bodies = msearch_body(p)[1::2]
    assert len(bodies) == 2
    bm25, knn = bodies
    assert bm25["query"]["bool"]["filter"] == [{"term": {"category": "billing"}}]
    assert bm25["query"]["bool"]["must"][0]["multi_match"]["fields"] == ["question", "answer", "question.english"]
    assert knn["knn"]["filter"] == [{"term": {"category": "billing"}}]
    assert knn["knn"]["k"] == 100 and knn["knn"]["num_candidates"] == 200


def test_server_path_sends_retriever_and_legs_in_one_msearch():
    p = plan(method="rrf", bm25_weight=1, knn_weight=1, k=5, from_=5, window=50)
    p.vector = [1.0, 0.0, 0.0]
    assert p.execution == "server"
    bodies = msearch_body(p)
    assert len(bodies) == 6
    fused = bodies[1]
    assert fused["retriever"]["rrf"]["rank_window_size"] == 50
    assert fused["from"] == 5 and fused["size"] == 5
    assert bodies[3]["size"] == 50 and bodies[3]["_source"] is False
    lin = plan(method="linear", bm25_weight=0.3, knn_weight=0.7, normalizer="l2_norm")
    lin.vector = [1.0, 0.0, 0.0]
    retrievers = msearch_body(lin)[1]["retriever"]["linear"]["retrievers"]
    assert [(r["weight"], r["normalizer"]) for r in retrievers] == [(0.3, "l2_norm"), (0.7, "l2_norm")]


def test_execution_falls_back_where_the_server_cannot():
    assert plan(method="linear", normalizer="zscore").execution == "client"
    assert plan(method="rrf", server=ServerInfo((8, 15, 0))).execution == "client"
    assert plan(method="linear", server=ServerInfo((8, 17, 0))).execution == "client"
    assert server_supports(ServerInfo((9, 1, 0)), "rrf", {"bm25": 2, "knn": 1}, "minmax") is not None
    assert server_supports(ServerInfo((9, 0, 0)), "linear", {}, "l2_norm") is not None
    with pytest.raises(ConfigError, match="server-side"):
        plan(method="linear", normalizer="zscore", execution="server")


def test_option_validation():
    with pytest.raises(ConfigError, match="window"):
        plan(k=10, from_=95, window=100)
    with pytest.raises(ConfigError):
        plan(method="max")
    with pytest.raises(ConfigError):
        plan(k=0)
    with pytest.raises(ConfigError):
        plan(num_candidates=10, window=100)
    with pytest.raises(ConfigError, match="kNN similarity"):
        plan(method="bm25", min_score=0.5)
    with pytest.raises(ConfigError):
        plan(bm25_weight=-1)


def test_knn_similarity_inverts_es_scores():
    assert knn_similarity((1 + 0.6) / 2, "cosine") == pytest.approx(0.6)
    assert knn_similarity((1 - 0.2) / 2, "dot_product") == pytest.approx(-0.2)
    # unit vectors with cos 0.5: d^2 = 1, score = 1/2
    assert knn_similarity(0.5, "l2_norm") == pytest.approx(0.5)
    assert knn_similarity(1.3, "max_inner_product") == pytest.approx(0.3)
    assert knn_similarity(1 / 1.5, "max_inner_product") == pytest.approx(-0.5)


def _resp(hits, source=False):
    return {"hits": {"hits": [{"_id": i, "_score": s, "_index": "faq", **({"_source": {"q": i}} if source else {})}
                              for i, s in hits]}}


def test_build_result_client_path_pages_and_min_score():
    p = plan(method="rrf", execution="client", k=2, from_=0, min_score=0.5, explain=True, rank_constant=60)
    bm25 = _resp([("a", 5.0), ("b", 3.0), ("c", 1.0)], source=True)
    knn = _resp([("b", 0.9), ("d", 0.7)], source=True)  # cos 0.8, 0.4
    result = build_result(p, [bm25, knn])
    # rrf: b = 1/62 + 1/61 first, a = 1/61 second -> a has no kNN score: below min_score, dropped
    assert [h.id for h in result] == ["b"]
    hit = result[0]
    assert (hit.bm25_rank, hit.knn_rank, hit.bm25_score) == (2, 1, 3.0)
    assert hit.similarity == pytest.approx(0.8)
    assert hit.source == {"q": "b"}
    assert "1/(60+2)" in hit.explanation
    assert result.best_similarity == pytest.approx(0.8) and not result.no_match
    page2 = build_result(plan(method="rrf", execution="client", k=2, from_=2), [bm25, knn])
    assert [h.id for h in page2] == ["d", "c"]
    none = build_result(plan(method="rrf", execution="client", min_score=0.95), [bm25, knn])
    assert none.no_match and len(none) == 0


def test_build_result_server_path_keeps_server_order_with_leg_scores():
    p = plan(method="linear")
    fused = _resp([("d", 0.9), ("a", 0.5)], source=True)
    result = build_result(p, [fused, _resp([("a", 5.0)]), _resp([("d", 0.8), ("a", 0.6)])])
    assert [(h.id, h.score) for h in result] == [("d", 0.9), ("a", 0.5)]
    assert result[0].bm25_rank is None and result[0].knn_rank == 1
    assert result[1].bm25_score == 5.0 and result[1].knn_rank == 2
    assert result.execution == "server"


def test_build_result_reports_a_failed_leg():
    from es_semantic.search import SearchFailed

    p = plan(method="rrf", execution="client")
    error = {"error": {"type": "x", "reason": "field [embedding] is not a dense_vector"}, "status": 400}
    with pytest.raises(SearchFailed, match="knn search failed with status 400"):
        build_result(p, [_resp([]), error])


def test_parse_mapping_response():
    mapping = {"faq": {"mappings": {
        "properties": {"question": {"type": "text", "fields": {"english": {"type": "text"}}}},
        "_meta": {"es_semantic": CONFIG.to_meta()}}}}
    info = parse_mapping_response(mapping, "faq")
    assert info.config == CONFIG
    assert info.default_fields() == ["question", "answer", "question.english"]
    from es_semantic.errors import IndexNotFound, NotConfigured

    with pytest.raises(IndexNotFound):
        parse_mapping_response({}, "faq")
    with pytest.raises(NotConfigured):
        parse_mapping_response({"faq": {"mappings": {}}}, "faq")
