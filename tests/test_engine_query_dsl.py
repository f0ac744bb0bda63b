"""Query DSL semantics of the test server's search engine."""

from __future__ import annotations

import pytest

from es_semantic.testing.errors import EsError
from es_semantic.testing.search_engine import (
    count,
    matching_docs,
    run_search,
    validate_query,
)
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc

MAPPINGS = {
    "properties": {
        "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "body": {"type": "text", "analyzer": "english"},
        "tag": {"type": "keyword"},
        "n": {"type": "long"},
        "price": {"type": "double"},
        "when": {"type": "date"},
        "ok": {"type": "boolean"},
        "meta": {"properties": {"author": {"type": "keyword"}}},
    }
}

DOCS = [
    {
        "title": "Quick brown fox",
        "body": "The foxes were running",
        "tag": "animal",
        "n": 1,
        "price": 1.5,
        "when": "2024-01-01",
        "ok": True,
        "meta": {"author": "ann"},
    },
    {
        "title": "Lazy brown dog",
        "body": "A dog sleeps all day",
        "tag": "Animal",
        "n": 5,
        "price": 10.0,
        "when": "2024-06-15T12:00:00Z",
        "ok": False,
        "meta": {"author": "bob"},
    },
    {
        "title": "Quick quick rabbit",
        "body": "Rabbits run quickly",
        "tag": ["animal", "fast"],
        "n": 10,
        "when": 1718000000000,
        "meta": {"author": "ann"},
    },
    {"title": "Stock market news", "body": "Markets ran higher", "tag": "finance", "n": 7, "price": 99.0},
]


def _target(docs=DOCS, mappings=MAPPINGS, settings=None, alias_filter=None) -> list[SearchTarget]:
    stored = [StoredDoc(str(i), s, i, 1, 1, i) for i, s in enumerate(docs)]
    return [SearchTarget(IndexSnapshot("idx", mappings, settings or {}, stored), alias_filter)]


def _ids(query, **kw) -> list[str]:
    body = {"query": query, "size": 100, **kw}
    return [h["_id"] for h in run_search(_target(), body, {})["hits"]["hits"]]


def _idset(query) -> set[str]:
    return set(_ids(query))


def test_match_operator_and_minimum_should_match():
    assert _idset({"match": {"title": "quick fox"}}) == {"0", "2"}
    assert _idset({"match": {"title": {"query": "quick fox", "operator": "and"}}}) == {"0"}
    assert _idset({"match": {"title": {"query": "quick brown fox", "minimum_should_match": 2}}}) == {"0"}
    assert _idset({"match": {"title": {"query": "quick brown fox", "minimum_should_match": "67%"}}}) == {"0"}
    assert _idset({"match": {"title": {"query": "quick brown fox", "minimum_should_match": "-1"}}}) == {"0"}


def test_match_uses_field_analyzer_and_missing_field_matches_nothing():
    # "run" is stemmed at index and search time with the english analyzer
    assert _idset({"match": {"body": "running"}}) == {"0", "2"}
    assert _idset({"match": {"nope": "fox"}}) == set()
    assert _idset({"term": {"nope": "fox"}}) == set()


def test_term_on_keyword_text_and_case_insensitive():
    assert _idset({"term": {"tag": "animal"}}) == {"0", "2"}
    assert _idset({"term": {"tag": {"value": "ANIMAL", "case_insensitive": True}}}) == {"0", "1", "2"}
    assert _idset({"term": {"title": "quick"}}) == {"0", "2"}
    assert _idset({"term": {"title": "Quick"}}) == set()  # text terms are lower-cased at index time
    assert _idset({"term": {"title.raw": "Quick brown fox"}}) == {"0"}
    assert _idset({"term": {"meta.author": "ann"}}) == {"0", "2"}


def test_numeric_date_boolean_terms_and_ranges():
    assert _idset({"term": {"n": 5}}) == {"1"}
    assert _idset({"term": {"n": "5"}}) == {"1"}
    assert _idset({"terms": {"n": [1, 7, 99]}}) == {"0", "3"}
    assert _idset({"range": {"n": {"gte": 5, "lt": 10}}}) == {"1", "3"}
    assert _idset({"range": {"price": {"gt": 1.5}}}) == {"1", "3"}
    assert _idset({"range": {"when": {"gte": "2024-06-01", "lte": "2024-06-30"}}}) == {"1", "2"}
    assert _idset({"range": {"when": {"gte": "01/06/2024", "format": "dd/MM/yyyy"}}}) == {"1", "2"}
    assert _idset({"range": {"tag": {"gte": "b", "lt": "g"}}}) == {"3", "2"}
    assert _idset({"term": {"ok": True}}) == {"0"}
    assert _idset({"term": {"ok": "false"}}) == {"1"}


def test_exists_prefix_ids_wildcard():
    assert _idset({"exists": {"field": "price"}}) == {"0", "1", "3"}
    assert _idset({"exists": {"field": "meta.author"}}) == {"0", "1", "2"}
    assert _idset({"prefix": {"tag": "fin"}}) == {"3"}
    assert _idset({"prefix": {"tag": {"value": "ANI", "case_insensitive": True}}}) == {"0", "1", "2"}
    assert _idset({"ids": {"values": ["1", 3, "nope"]}}) == {"1", "3"}
    assert _idset({"wildcard": {"tag": "f*"}}) == {"2", "3"}


def test_bool_semantics_and_scores():
    q = {"bool": {"must": [{"match": {"title": "quick"}}], "must_not": [{"term": {"n": 10}}]}}
    assert _idset(q) == {"0"}
    # should-only: at least one should must match
    assert _idset({"bool": {"should": [{"term": {"n": 1}}, {"term": {"n": 7}}]}}) == {"0", "3"}
    # with a filter, should clauses are optional and only add score
    res = run_search(
        _target(),
        {"query": {"bool": {"filter": [{"term": {"tag": "animal"}}], "should": [{"match": {"title": "rabbit"}}]}}},
        {},
    )
    hits = res["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["2", "0"]
    assert hits[1]["_score"] == 0.0
    # filter-only bool scores 0; must_not-only bool scores 1
    res = run_search(_target(), {"query": {"bool": {"filter": {"term": {"tag": "finance"}}}}}, {})
    assert res["hits"]["hits"][0]["_score"] == 0.0
    res = run_search(_target(), {"query": {"bool": {"must_not": {"term": {"tag": "finance"}}}}}, {})
    assert {h["_score"] for h in res["hits"]["hits"]} == {1.0}
    # bool msm
    q = {
        "bool": {
            "should": [{"term": {"tag": "animal"}}, {"term": {"tag": "fast"}}, {"term": {"n": 10}}],
            "minimum_should_match": 2,
        }
    }
    assert _idset(q) == {"2"}


def test_bool_score_is_sum_of_must_and_should():
    t = _target()
    a = run_search(t, {"query": {"match": {"title": "quick"}}}, {})["hits"]["hits"]
    b = run_search(t, {"query": {"term": {"tag": "animal"}}}, {})["hits"]["hits"]
    both = run_search(
        t, {"query": {"bool": {"must": {"match": {"title": "quick"}}, "should": {"term": {"tag": "animal"}}}}}, {}
    )["hits"]["hits"]
    sa = {h["_id"]: h["_score"] for h in a}
    sb = {h["_id"]: h["_score"] for h in b}
    for h in both:
        assert h["_score"] == pytest.approx(sa[h["_id"]] + sb.get(h["_id"], 0.0), rel=1e-6)


def test_constant_score_and_boost():
    res = run_search(_target(), {"query": {"constant_score": {"filter": {"term": {"tag": "animal"}}, "boost": 3}}}, {})
    assert [h["_score"] for h in res["hits"]["hits"]] == [3.0, 3.0]


def test_multi_match_best_fields_most_fields_and_boosts():
    t = _target()
    s_title = {
        h["_id"]: h["_score"] for h in run_search(t, {"query": {"match": {"title": "quick dog"}}}, {})["hits"]["hits"]
    }
    s_body = {
        h["_id"]: h["_score"] for h in run_search(t, {"query": {"match": {"body": "quick dog"}}}, {})["hits"]["hits"]
    }
    best = run_search(
        t, {"query": {"multi_match": {"query": "quick dog", "fields": ["title", "body^2"], "tie_breaker": 0.3}}}, {}
    )["hits"]["hits"]
    for h in best:
        a, b = s_title.get(h["_id"], 0.0), 2 * s_body.get(h["_id"], 0.0)
        assert h["_score"] == pytest.approx(max(a, b) + 0.3 * min(a, b), rel=1e-5)
    most = run_search(
        t, {"query": {"multi_match": {"query": "quick dog", "fields": ["title", "body"], "type": "most_fields"}}}, {}
    )["hits"]["hits"]
    for h in most:
        assert h["_score"] == pytest.approx(s_title.get(h["_id"], 0) + s_body.get(h["_id"], 0), rel=1e-5)


def test_match_phrase_uses_positions_and_slop():
    assert _idset({"match_phrase": {"title": "quick brown"}}) == {"0"}
    assert _idset({"match_phrase": {"title": "brown quick"}}) == set()
    assert _idset({"match_phrase": {"title": {"query": "quick fox", "slop": 1}}}) == {"0"}
    assert _idset({"match_phrase": {"title": "quick fox"}}) == set()


def test_named_queries_reported_per_hit():
    res = run_search(
        _target(),
        {
            "query": {
                "bool": {
                    "should": [
                        {"term": {"tag": {"value": "animal", "_name": "is_animal"}}},
                        {"range": {"n": {"gte": 7, "_name": "big"}}},
                    ]
                }
            }
        },
        {},
    )
    got = {h["_id"]: h.get("matched_queries") for h in res["hits"]["hits"]}
    assert got == {"0": ["is_animal"], "2": ["big", "is_animal"], "3": ["big"]}


def test_errors_have_elasticsearch_types():
    with pytest.raises(EsError) as exc:
        run_search(_target(), {"query": {"bogus": {}}}, {})
    assert (exc.value.status, exc.value.type, exc.value.reason) == (400, "parsing_exception", "unknown query [bogus]")
    with pytest.raises(EsError) as exc:
        run_search(_target(settings={"index": {"max_result_window": 2}}), {"query": {"ids": {"values": [1, 2, 3]}}}, {})
    assert exc.value.type == "query_shard_exception"
    assert exc.value.reason == "failed to create query: Too many ids specified, allowed max result window is [2]"
    with pytest.raises(EsError) as exc:
        run_search(_target(), {"query": {"term": {"n": "abc"}}}, {})
    assert exc.value.status == 400


def test_count_matching_docs_validate_and_alias_filter():
    t = _target()
    assert count(t, {"term": {"tag": "animal"}}) == 2
    assert count(t, None) == 4
    filtered = _target(alias_filter={"term": {"meta.author": "ann"}})
    assert [d.id for d in matching_docs(filtered[0], {"match_all": {}})] == ["0", "2"]
    assert count(filtered, {"range": {"n": {"gt": 1}}}) == 1
    validate_query({"match": {"title": "x"}}, MAPPINGS)
    with pytest.raises(EsError):
        validate_query({"nope": {}}, MAPPINGS)


def test_function_score_weights_filters_and_modes():
    t = _target()
    body = {
        "query": {
            "function_score": {
                "query": {"constant_score": {"filter": {"exists": {"field": "n"}}, "boost": 2}},
                "functions": [
                    {"filter": {"term": {"tag": "animal"}}, "weight": 10},
                    {"filter": {"term": {"tag": "fast"}}, "weight": 3},
                ],
                "boost_mode": "multiply",
            }
        }
    }
    got = {h["_id"]: h["_score"] for h in run_search(t, body, {})["hits"]["hits"]}
    # score_mode multiply over matching functions; docs matching none keep factor 1
    assert got == {"0": 20.0, "1": 2.0, "2": 60.0, "3": 2.0}
    body["query"]["function_score"]["score_mode"] = "sum"
    body["query"]["function_score"]["boost_mode"] = "replace"
    got = {h["_id"]: h["_score"] for h in run_search(t, body, {})["hits"]["hits"]}
    assert got == {"0": 10.0, "1": 1.0, "2": 13.0, "3": 1.0}
    fvf = {
        "query": {
            "function_score": {
                "field_value_factor": {"field": "n", "factor": 2, "modifier": "sqrt"},
                "boost_mode": "replace",
            }
        }
    }
    got = {h["_id"]: h["_score"] for h in run_search(t, fvf, {})["hits"]["hits"]}
    assert got == pytest.approx({"0": 2**0.5, "1": 10**0.5, "2": 20**0.5, "3": 14**0.5})


def test_minimum_should_match_percentages_round_down():
    from es_semantic.testing.query_dsl import min_should_match

    assert min_should_match("60%", 3) == 1
    assert min_should_match("-34%", 3) == 2
    assert min_should_match("3<90%", 5) == 4
    assert min_should_match("3<90%", 3) == 3
    assert min_should_match(-1, 4) == 3


def test_script_score_subset_and_errors():
    t = _target()
    body = {
        "query": {
            "script_score": {
                "query": {"exists": {"field": "n"}},
                "script": {"source": "Math.pow(doc['n'].value, 2) + params.a", "params": {"a": 1}},
            }
        }
    }
    got = {h["_id"]: h["_score"] for h in run_search(t, body, {})["hits"]["hits"]}
    assert got == {"0": 2.0, "1": 26.0, "2": 101.0, "3": 50.0}
    body = {"query": {"script_score": {"query": {"match_all": {}}, "script": "$('price', 0) * 2"}}}
    got = {h["_id"]: h["_score"] for h in run_search(t, body, {})["hits"]["hits"]}
    assert got == {"0": 3.0, "1": 20.0, "2": 0.0, "3": 198.0}
    for source in ("import os", "doc['n'].value.getClass()", "x = 1; return x"):
        with pytest.raises(EsError) as exc:
            run_search(t, {"query": {"script_score": {"query": {"match_all": {}}, "script": {"source": source}}}}, {})
        assert exc.value.status == 400
    with pytest.raises(EsError, match="non-negative"):
        run_search(t, {"query": {"script_score": {"query": {"match_all": {}}, "script": "0 - doc['n'].value"}}}, {})


def test_script_score_vector_functions():
    mappings = {"properties": {"v": {"type": "dense_vector", "dims": 2, "similarity": "cosine"}}}
    t = _target([{"v": [1.0, 0.0]}, {"v": [3.0, 4.0]}], mappings)
    q = [0.6, 0.8]
    for source, expected in (
        ("cosineSimilarity(params.q, 'v') + 1.0", [1.6, 2.0]),
        ("dotProduct(params.q, 'v') + 10", [10.6, 15.0]),
        ("1 / (1 + l2norm(params.q, 'v'))", [1 / (1 + 0.8**0.5), 1 / (1 + 4.0)]),
        ("l1norm(params.q, 'v')", [1.2, 5.6]),
    ):
        body = {
            "query": {"script_score": {"query": {"match_all": {}}, "script": {"source": source, "params": {"q": q}}}}
        }
        got = {h["_id"]: h["_score"] for h in run_search(t, body, {})["hits"]["hits"]}
        assert [got["0"], got["1"]] == pytest.approx(expected, rel=1e-6), source


def test_keyword_normalizer_applies_at_index_and_search_time():
    settings = {
        "index": {"analysis": {"normalizer": {"fold": {"type": "custom", "filter": ["lowercase", "asciifolding"]}}}}
    }
    mappings = {
        "properties": {
            "k": {"type": "keyword", "normalizer": "fold"},
            "l": {"type": "keyword", "normalizer": "lowercase"},
        }
    }
    t = _target([{"k": "Café", "l": "ABC"}, {"k": "cafe", "l": "abc"}, {"k": "tea", "l": "x"}], mappings, settings)
    ids = lambda q: {h["_id"] for h in run_search(t, {"query": q}, {})["hits"]["hits"]}
    assert ids({"term": {"k": "CAFE"}}) == {"0", "1"}
    assert ids({"match": {"l": "Abc"}}) == {"0", "1"}
    res = run_search(t, {"sort": [{"k": "asc"}]}, {})
    assert [h["sort"] for h in res["hits"]["hits"]] == [["cafe"], ["cafe"], ["tea"]]


@pytest.mark.parametrize("spec", ["title^abc", "title^"])
def test_multi_match_bad_field_boost_is_a_400(spec):
    with pytest.raises(EsError) as ei:
        run_search(_target(), {"query": {"multi_match": {"query": "quick", "fields": [spec]}}}, {})
    assert ei.value.status == 400 and ei.value.type == "number_format_exception"


def test_simple_query_string_splits_terms_before_analysis():
    # on a keyword field each whitespace-separated term is looked up whole, as in Elasticsearch
    assert _idset({"simple_query_string": {"query": "finance fast", "fields": ["tag"]}}) == {"2", "3"}
    assert _idset({"simple_query_string": {"query": "quick fox", "fields": ["title"],
                                           "default_operator": "and"}}) == {"0"}
    assert _idset({"simple_query_string": {"query": "quick fox rabbit", "fields": ["title"],
                                           "minimum_should_match": 2}}) == {"0", "2"}
    assert _idset({"simple_query_string": {"query": "   ", "fields": ["title"]}}) == set()
