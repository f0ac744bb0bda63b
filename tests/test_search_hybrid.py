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
from es_semantic.search.options import SearchOptionError, SearchOptions

CONFIG = SemanticConfig(model="/models/m", dims=3)
FIELD_TYPES = {"question": "text", "question.english": "text", "answer": "text", "category": "keyword",
               "embedding": "dense_vector"}
INFO = IndexInfo(CONFIG, {"question": ("english",), "answer": ()}, field_types=FIELD_TYPES)
ES93 = ServerInfo((9, 3, 0))


def plan(**kw):
    index, server = kw.pop("index", "faq"), kw.pop("server", ES93)
    return make_plan("reset password", INFO, server, SearchOptions(**kw), index=index)


@pytest.mark.parametrize("hostile", [
    '{"query": {"match_all": {}}}',
    "title:x OR *",
    "question:* AND answer:(a OR b) ^10 ~2 \\",
    '"}]}, "size": 10000, "x": [{"',
])
@pytest.mark.parametrize("execution", ["server", "client"])
def test_query_text_only_reaches_es_as_match_text(hostile, execution):
    p = plan(execution=execution)
    p.text = clean_query(hostile)
    p.vector = [0.1, 0.2, 0.3]
    needle = json.dumps(p.text)[1:-1]  # the text as it appears inside a JSON string
    bodies = msearch_body(p)[1::2]
    assert len(bodies) == (3 if execution == "server" else 2)
    bm25, knn = bodies[-2:]
    # the BM25 leg: exactly once, as the multi_match query text
    assert bm25["query"]["multi_match"]["query"] == p.text == hostile.strip()
    assert json.dumps(bm25).count(needle) == 1
    # the kNN leg never carries the text; the retriever search carries it once, in its standard leg
    assert json.dumps(knn).count(needle) == 0
    if execution == "server":
        retriever = bodies[0]["retriever"]["linear"]["retrievers"][0]["retriever"]
        assert retriever["standard"]["query"]["multi_match"]["query"] == p.text
        assert json.dumps(bodies[0]).count(needle) == 1
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


@pytest.mark.parametrize("option,value", [
    ("rank_constant", float("nan")), ("rank_constant", float("inf")),
    ("bm25_weight", float("nan")), ("bm25_weight", float("inf")), ("knn_weight", float("-inf")),
    ("knn_weight", float("nan")), ("min_score", float("nan")), ("min_score", float("inf")),
    ("window", float("nan")),
])
def test_non_finite_numbers_are_config_errors_naming_the_option(option, value):
    with pytest.raises(SearchOptionError, match=f"^{option}=.*: must be a finite number") as caught:
        plan(method="rrf", **{option: value})
    assert isinstance(caught.value, ConfigError) and caught.value.option == option


@pytest.mark.parametrize("option,value", [("window", 0), ("window", -5), ("num_candidates", 0),
                                          ("num_candidates", -1)])
def test_zero_or_negative_sizes_are_rejected_not_defaulted(option, value):
    with pytest.raises(SearchOptionError) as caught:
        plan(**{option: value})
    assert caught.value.option == option and caught.value.value == value


def test_one_field_as_a_string_is_one_field():
    p = plan(fields="question^2", execution="client")
    assert p.fields == ["question^2"]
    p.vector = [0.0, 0.0, 1.0]
    assert msearch_body(p)[1]["query"]["multi_match"]["fields"] == ["question^2"]


def test_legs_carry_no_sources_and_the_page_is_fetched_with_mget():
    from es_semantic.search.hybrid import attach_sources, mget_body

    client = plan(method="rrf", execution="client", k=2, source=["question"])
    client.vector = [1.0, 0.0, 0.0]
    assert [b["_source"] for b in msearch_body(client)[1::2]] == [False, False]
    result = build_result(client, [_resp([("a", 5.0), ("b", 3.0), ("c", 1.0)]), _resp([("b", 0.9), ("d", 0.7)])])
    assert [h.id for h in result] == ["b", "a"] and all(h.source is None for h in result)
    # one _mget for the k hits of the page, with the caller's source filter
    assert mget_body(client, result) == {"docs": [{"_index": "faq", "_id": "b", "_source": ["question"]},
                                                  {"_index": "faq", "_id": "a", "_source": ["question"]}]}
    attach_sources(result, {"docs": [{"_index": "faq", "_id": "a", "found": True, "_source": {"question": "A"}},
                                     {"_index": "faq", "_id": "b", "found": False}]})
    assert [h.source for h in result] == [None, {"question": "A"}]
    assert mget_body(plan(method="rrf", execution="client", source=False), result) is None

    server = plan(method="rrf", k=2)
    server.vector = [1.0, 0.0, 0.0]
    bodies = msearch_body(server)[1::2]
    # the page, with its sources but not the vector and its bookkeeping (most of the bytes, read by nobody)
    assert bodies[0]["_source"] == {"excludes": ["embedding", "embedding_info"]} and bodies[0]["size"] == 2
    assert [b["_source"] for b in bodies[1:]] == [False, False]
    assert mget_body(server, result) is None
    thresholded = plan(method="rrf", k=2, min_score=0.5)
    thresholded.vector = [1.0, 0.0, 0.0]
    fused = msearch_body(thresholded)[1]
    assert fused["size"] == 100 and fused["_source"] is False  # the window as ids only
    no_vectors = {"excludes": ["embedding", "embedding_info"]}
    assert mget_body(thresholded, result) == {"docs": [{"_index": "faq", "_id": "b", "_source": no_vectors},
                                                       {"_index": "faq", "_id": "a", "_source": no_vectors}]}


def test_custom_routing_travels_from_the_legs_to_the_mget():
    from es_semantic.search.hybrid import mget_body

    client = plan(method="rrf", execution="client", k=2)
    client.vector = [1.0, 0.0, 0.0]
    bm25 = {"hits": {"hits": [{"_id": "a", "_score": 2.0, "_index": "faq-v1", "_routing": "tenant-1"},
                              {"_id": "b", "_score": 1.0, "_index": "faq-v1"}]}}
    knn = {"hits": {"hits": [{"_id": "a", "_score": 0.9, "_index": "faq-v1", "_routing": "tenant-1"}]}}
    result = build_result(client, [bm25, knn])
    assert [(h.id, h.routing) for h in result] == [("a", "tenant-1"), ("b", None)]
    docs = mget_body(client, result)["docs"]
    assert docs[0]["routing"] == "tenant-1" and "routing" not in docs[1]


class _VectorModel:
    """A deterministic stand-in model: the vector depends on the model id, dims and text."""

    def __init__(self, model_id="m", dims=3, prefix=""):
        self.model_id, self.dims, self._prefix, self.calls = model_id, dims, prefix, 0

    def query_prefix(self):
        return self._prefix

    def embed_query(self, text):
        self.calls += 1
        return [float(len(self.model_id) + i) for i in range(self.dims)]

    def embed_queries(self, texts):
        return [self.embed_query(t) for t in texts]


def test_query_cache_key_is_what_determines_the_vector_not_the_object_id():
    from es_semantic.search import hybrid

    hybrid.clear_caches()
    first = _VectorModel(dims=3)
    assert len(hybrid.embed_query(first, "q")) == 3
    # An equal model (another object) reuses the vector; different dims or prompt never do.
    twin = _VectorModel(dims=3)
    assert hybrid.embed_query(twin, "q") == [1.0, 2.0, 3.0] and twin.calls == 0
    assert len(hybrid.embed_query(_VectorModel(dims=2), "q")) == 2
    prompted = _VectorModel(dims=3, prefix="query: ")
    hybrid.embed_query(prompted, "q")
    assert prompted.calls == 1
    hybrid.clear_caches()


def test_prefill_keeps_the_query_cache_bounded(monkeypatch):
    from es_semantic.search import hybrid

    hybrid.clear_caches()
    monkeypatch.setattr(hybrid, "QUERY_CACHE_SIZE", 5)
    vectors = hybrid.prefill_query_cache(_VectorModel(), [f"query {i}" for i in range(12)], batch_size=4)
    assert len(vectors) == 12 and vectors["query 11"] == [1.0, 2.0, 3.0]
    assert len(hybrid._QUERY_CACHE) == 5
    assert [key[-1] for key in hybrid._QUERY_CACHE] == [f"query {i}" for i in range(7, 12)]
    hybrid.clear_caches()


def test_clear_caches_takes_the_query_cache_lock():
    import threading

    from es_semantic.search import hybrid

    done = threading.Event()
    with hybrid._EMBED_LOCK:  # e.g. embed_query between get() and move_to_end()
        worker = threading.Thread(target=lambda: (hybrid.clear_caches(), done.set()))
        worker.start()
        assert not done.wait(0.3)  # clear_caches waits for the lock
    worker.join(5)
    assert done.is_set()


def test_a_model_load_does_not_block_cached_searches_or_other_models(monkeypatch):
    import threading

    from es_semantic.embedding import embedder as embedder_module
    from es_semantic.search import hybrid

    release = threading.Event()
    started = threading.Event()
    loads = []

    class SlowLoadingEmbedder(_VectorModel):
        def __init__(self, model, dims=None, query_instruction=None):
            loads.append(model)
            started.set()
            assert release.wait(10)
            super().__init__(model, dims)

    monkeypatch.setattr(embedder_module, "Embedder", SlowLoadingEmbedder)
    hybrid.clear_caches()
    ready = SemanticConfig(model="/models/ready", dims=3)
    loaded = _VectorModel("/models/ready")
    hybrid.register_embedder(ready, loaded)
    hybrid.embed_query(loaded, "cached query")
    slow = SemanticConfig(model="/models/slow", dims=3)
    got = []
    loaders = [threading.Thread(target=lambda: got.append(hybrid.get_embedder(slow))) for _ in range(2)]
    for t in loaders:
        t.start()
    assert started.wait(5)
    try:
        # While /models/slow loads: another model and a cached query answer at once.
        quick = []
        probe = threading.Thread(target=lambda: quick.append(
            (hybrid.get_embedder(ready), hybrid.embed_query(loaded, "cached query"))))
        probe.start()
        probe.join(2)
        assert quick and quick[0][0] is loaded
    finally:
        release.set()
        for t in loaders:
            t.join(10)
    assert len(loads) == 1 and got[0] is got[1]  # two callers, one load
    with hybrid._EMBED_LOCK:
        hybrid._EMBEDDERS.pop(hybrid._embedder_key(slow), None)
        hybrid._EMBEDDERS.pop(hybrid._embedder_key(ready), None)
    hybrid.clear_caches()


def test_search_package_exports_the_result_types():
    import typing

    from es_semantic import search
    from es_semantic.search.hybrid import Hit, SearchFailed, SearchResult

    assert (search.Hit, search.SearchFailed, search.SearchResult) == (Hit, SearchFailed, SearchResult)
    assert {"Hit", "SearchFailed", "SearchResult"} <= set(search.__all__)
    assert typing.get_args(typing.get_type_hints(SearchResult.__iter__)["return"]) == (Hit,)
    # the client and embedder types are imported for type checkers only: read the annotations
    assert search.hybrid_search.__annotations__["es"] == "Elasticsearch"
    assert search.hybrid_search.__annotations__["embedder"] == "Embedder | None"
    assert search.async_hybrid_search.__annotations__["es"] == "AsyncElasticsearch"
