"""Test server: aggregations through the official client.

Every expected number below was worked out by hand from the six documents of ``DOCS``.
"""

from __future__ import annotations

import pytest
from elasticsearch import ApiError, BadRequestError, Elasticsearch

MAPPINGS = {
    "properties": {
        "category": {"type": "keyword"},
        "tags": {"type": "keyword"},
        "price": {"type": "double"},
        "qty": {"type": "integer"},
        "sold": {"type": "date"},
        "day": {"type": "date", "format": "yyyy-MM-dd"},
        "in_stock": {"type": "boolean"},
        "rating": {"type": "float"},
        "title": {"type": "text"},
        "vec": {"type": "dense_vector", "dims": 2, "index": True, "similarity": "l2_norm"},
    }
}
DOCS = {
    "1": {"category": "book", "tags": ["new", "sale", "new"], "price": 10.0, "qty": 3, "sold": "2024-01-05T10:00:00Z",
          "day": "2024-01-05", "in_stock": True, "rating": 0.1, "title": "red apple book", "vec": [1.0, 0.0]},
    "2": {"category": "book", "tags": ["sale"], "price": 20.0, "qty": 1, "sold": "2024-01-20T08:00:00Z",
          "day": "2024-01-05", "in_stock": False, "title": "green book", "vec": [0.9, 0.1]},
    "3": {"category": "toy", "tags": ["new"], "price": 5.0, "qty": 10, "sold": "2024-02-03T12:00:00Z",
          "day": "2024-02-03", "in_stock": True, "title": "red ball", "vec": [0.0, 1.0]},
    "4": {"category": "toy", "tags": [], "price": 15.0, "qty": 2, "sold": "2024-03-15T00:00:00Z", "in_stock": True,
          "title": "blue car", "vec": [0.1, 0.9]},
    "5": {"category": "game", "tags": ["sale", "new"], "price": 40.0, "qty": 2, "sold": "2024-03-31T23:30:00Z",
          "in_stock": False, "title": "red game", "vec": [0.5, 0.5]},
    "6": {"category": "book", "qty": 4, "in_stock": True, "title": "old book", "vec": [1.0, 1.0]},
}  # fmt: skip

JAN, FEB, MAR, APR = 1704067200000, 1706745600000, 1709251200000, 1711929600000  # 2024-0N-01T00:00Z
HOUR = 3_600_000


@pytest.fixture
def es(es_client: Elasticsearch) -> Elasticsearch:
    es_client.indices.create(index="shop", mappings=MAPPINGS)
    ops = [x for i, d in DOCS.items() for x in ({"index": {"_id": i}}, d)]
    es_client.bulk(index="shop", refresh=True, operations=ops)
    return es_client


def aggs(es: Elasticsearch, spec: dict, **kw: object) -> dict:
    return es.search(index="shop", size=0, aggs=spec, **kw)["aggregations"]


def keys_counts(agg: dict) -> list[tuple]:
    return [(b["key"], b["doc_count"]) for b in agg["buckets"]]


# --- terms -----------------------------------------------------------------------------------------


def test_terms_default_order_is_count_desc_then_key_asc_with_size_and_other_count(es: Elasticsearch) -> None:
    res = aggs(es, {"c": {"terms": {"field": "category"}}, "top": {"terms": {"field": "category", "size": 2}}})
    assert res["c"] == {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": 0,
        "buckets": [{"key": "book", "doc_count": 3}, {"key": "toy", "doc_count": 2}, {"key": "game", "doc_count": 1}],
    }
    assert keys_counts(res["top"]) == [("book", 3), ("toy", 2)]
    assert res["top"]["sum_other_doc_count"] == 1


def test_terms_orders_by_key_count_and_sub_metric(es: Elasticsearch) -> None:
    res = aggs(es, {
        "by_key": {"terms": {"field": "category", "order": {"_key": "desc"}}},
        "rare_first": {"terms": {"field": "category", "order": {"_count": "asc"}}},
        "by_avg": {"terms": {"field": "category", "order": {"avg_price": "desc"}},
                   "aggs": {"avg_price": {"avg": {"field": "price"}}}},
        "by_max_qty": {"terms": {"field": "category", "order": [{"qty_stats.max": "asc"}]},
                       "aggs": {"qty_stats": {"stats": {"field": "qty"}}}},
    })  # fmt: skip
    assert [b["key"] for b in res["by_key"]["buckets"]] == ["toy", "game", "book"]
    assert keys_counts(res["rare_first"]) == [("game", 1), ("toy", 2), ("book", 3)]
    # avg price: game 40, book (10+20)/2 = 15 (doc 6 has no price), toy (5+15)/2 = 10
    assert [(b["key"], b["avg_price"]["value"]) for b in res["by_avg"]["buckets"]] == [
        ("game", 40.0), ("book", 15.0), ("toy", 10.0)]
    # max qty: game 2, book max(3, 1, 4) = 4, toy max(10, 2) = 10
    assert [b["key"] for b in res["by_max_qty"]["buckets"]] == ["game", "book", "toy"]


def test_terms_multi_valued_field_counts_each_value_once_per_document(es: Elasticsearch) -> None:
    res = aggs(es, {"t": {"terms": {"field": "tags"}}, "n": {"value_count": {"field": "tags"}}})
    # new: docs 1 (listed twice), 3, 5; sale: docs 1, 2, 5 -> tie, key ascending
    assert keys_counts(res["t"]) == [("new", 3), ("sale", 3)]
    assert res["n"] == {"value": 6}  # 2 + 1 + 1 + 0 + 2 distinct keywords


def test_terms_min_doc_count_missing_include_exclude(es: Elasticsearch) -> None:
    res = aggs(es, {
        "min2": {"terms": {"field": "category", "min_doc_count": 2}},
        "untagged": {"terms": {"field": "tags", "missing": "untagged"}},
        "inc": {"terms": {"field": "category", "include": ["book", "game"]}},
        "exc": {"terms": {"field": "category", "exclude": ["book"]}},
        "rx": {"terms": {"field": "category", "include": "b.*|g.*", "exclude": "g.*"}},
    })  # fmt: skip
    assert keys_counts(res["min2"]) == [("book", 3), ("toy", 2)]
    assert keys_counts(res["untagged"]) == [("new", 3), ("sale", 3), ("untagged", 2)]  # docs 4 and 6
    assert keys_counts(res["inc"]) == [("book", 3), ("game", 1)]
    assert keys_counts(res["exc"]) == [("toy", 2), ("game", 1)]
    assert keys_counts(res["rx"]) == [("book", 3)]


def test_terms_min_doc_count_zero_lists_terms_outside_the_match_set(es: Elasticsearch) -> None:
    resp = es.search(index="shop", size=0, query={"term": {"category": "toy"}},
                     aggs={"c": {"terms": {"field": "category", "min_doc_count": 0},
                                 "aggs": {"m": {"max": {"field": "price"}}}}})  # fmt: skip
    buckets = resp["aggregations"]["c"]["buckets"]
    assert [(b["key"], b["doc_count"], b["m"]["value"]) for b in buckets] == [
        ("toy", 2, 15.0), ("book", 0, None), ("game", 0, None)]


def test_terms_numeric_boolean_date_and_float_keys(es: Elasticsearch) -> None:
    res = aggs(es, {
        "qty": {"terms": {"field": "qty"}},
        "stock": {"terms": {"field": "in_stock"}},
        "day": {"terms": {"field": "day"}},
        "rating": {"terms": {"field": "rating"}},
    })  # fmt: skip
    assert keys_counts(res["qty"]) == [(2, 2), (1, 1), (3, 1), (4, 1), (10, 1)]
    assert all(type(b["key"]) is int and "key_as_string" not in b for b in res["qty"]["buckets"])
    assert res["stock"]["buckets"] == [
        {"key": 1, "key_as_string": "true", "doc_count": 4},
        {"key": 0, "key_as_string": "false", "doc_count": 2},
    ]
    # dates: epoch millis keys, key_as_string in the field's format
    assert res["day"]["buckets"] == [
        {"key": JAN + 4 * 86_400_000, "key_as_string": "2024-01-05", "doc_count": 2},
        {"key": FEB + 2 * 86_400_000, "key_as_string": "2024-02-03", "doc_count": 1},
    ]
    # a float field aggregates its stored float32 value: 0.1f widened to a double
    assert keys_counts(res["rating"]) == [(0.10000000149011612, 1)]


def test_terms_on_unmapped_field_is_empty_and_mixed_numeric_types_merge_as_doubles(es: Elasticsearch) -> None:
    res = aggs(es, {"u": {"terms": {"field": "nope"}}, "m": {"avg": {"field": "nope"}}})
    assert res["u"] == {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": []}
    assert res["m"] == {"value": None}
    es.indices.create(index="n1", mappings={"properties": {"n": {"type": "long"}}})
    es.indices.create(index="n2", mappings={"properties": {"n": {"type": "double"}}})
    es.bulk(refresh=True, operations=[{"index": {"_index": "n1"}}, {"n": 3}, {"index": {"_index": "n2"}}, {"n": 3.0},
                                      {"index": {"_index": "n2"}}, {"n": 2.5}])  # fmt: skip
    resp = es.search(index="n1,n2", size=0, aggs={"n": {"terms": {"field": "n"}}})
    assert keys_counts(resp["aggregations"]["n"]) == [(3.0, 2), (2.5, 1)]
    assert all(type(b["key"]) is float for b in resp["aggregations"]["n"]["buckets"])


# --- metrics -----------------------------------------------------------------------------------------


def test_metrics_over_all_matches(es: Elasticsearch) -> None:
    res = aggs(es, {
        "min": {"min": {"field": "price"}}, "max": {"max": {"field": "price"}},
        "avg": {"avg": {"field": "price"}}, "sum": {"sum": {"field": "price"}},
        "count": {"value_count": {"field": "price"}}, "card": {"cardinality": {"field": "category"}},
        "qty": {"stats": {"field": "qty"}},
        "first": {"min": {"field": "sold"}}, "last": {"max": {"field": "sold"}},
    })  # fmt: skip
    # prices 10, 20, 5, 15, 40 (doc 6 has none)
    assert res["min"] == {"value": 5.0} and res["max"] == {"value": 40.0}
    assert res["avg"] == {"value": 18.0} and res["sum"] == {"value": 90.0}
    assert res["count"] == {"value": 5} and res["card"] == {"value": 3}
    # qty 3, 1, 10, 2, 2, 4
    assert res["qty"] == {"count": 6, "min": 1.0, "max": 10.0, "avg": 3.6666666666666665, "sum": 22.0}
    assert res["first"] == {"value": 1704448800000.0, "value_as_string": "2024-01-05T10:00:00.000Z"}
    assert res["last"] == {"value": 1711927800000.0, "value_as_string": "2024-03-31T23:30:00.000Z"}


def test_metrics_on_empty_match_set(es: Elasticsearch) -> None:
    resp = es.search(index="shop", size=0, query={"term": {"category": "none"}}, aggs={
        "min": {"min": {"field": "price"}}, "max": {"max": {"field": "price"}}, "avg": {"avg": {"field": "price"}},
        "sum": {"sum": {"field": "price"}}, "count": {"value_count": {"field": "price"}},
        "card": {"cardinality": {"field": "price"}}, "stats": {"stats": {"field": "price"}},
    })  # fmt: skip
    assert resp["aggregations"] == {
        "min": {"value": None}, "max": {"value": None}, "avg": {"value": None}, "sum": {"value": 0.0},
        "count": {"value": 0}, "card": {"value": 0},
        "stats": {"count": 0, "min": None, "max": None, "avg": None, "sum": 0.0},
    }  # fmt: skip


def test_top_hits_per_bucket_with_sort_and_source_filtering(es: Elasticsearch) -> None:
    res = aggs(es, {"c": {"terms": {"field": "category"}, "aggs": {
        "best": {"top_hits": {"size": 1, "sort": [{"price": "desc"}], "_source": ["price"]}}}}})
    book = res["c"]["buckets"][0]["best"]["hits"]
    assert book["total"] == {"value": 3, "relation": "eq"} and book["max_score"] is None
    assert book["hits"] == [{"_index": "shop", "_id": "2", "_score": None, "_source": {"price": 20.0}, "sort": [20.0]}]
    assert [b["best"]["hits"]["hits"][0]["_id"] for b in res["c"]["buckets"]] == ["2", "4", "5"]
    resp = es.search(index="shop", size=0, query={"match": {"title": "red"}}, aggs={"t": {"top_hits": {}}})
    hits = resp["aggregations"]["t"]["hits"]
    assert {h["_id"] for h in hits["hits"]} == {"1", "3", "5"}  # default size 3
    assert hits["max_score"] == hits["hits"][0]["_score"] > 0


# --- other bucket aggregations -------------------------------------------------------------------------


def test_filter_filters_missing_global(es: Elasticsearch) -> None:
    resp = es.search(index="shop", size=0, query={"term": {"category": "toy"}}, aggs={
        "everything": {"global": {}, "aggs": {"c": {"terms": {"field": "category"}}}},
        "cheap_toys": {"filter": {"range": {"price": {"lt": 10}}}},
    })  # fmt: skip
    res = resp["aggregations"]
    assert res["everything"]["doc_count"] == 6
    assert keys_counts(res["everything"]["c"]) == [("book", 3), ("toy", 2), ("game", 1)]
    assert res["cheap_toys"] == {"doc_count": 1}
    res = aggs(es, {
        "stock": {"filter": {"term": {"in_stock": True}}, "aggs": {"p": {"avg": {"field": "price"}}}},
        "keyed": {"filters": {"other_bucket": True, "filters": {
            "cheap": {"range": {"price": {"lt": 12}}}, "books": {"term": {"category": "book"}}}}},
        "anon": {"filters": {"filters": [{"term": {"category": "toy"}}, {"term": {"category": "game"}}],
                             "other_bucket_key": "rest"}},
        "no_price": {"missing": {"field": "price"}}, "no_tags": {"missing": {"field": "tags"}},
    })  # fmt: skip
    assert res["stock"] == {"doc_count": 4, "p": {"value": 10.0}}  # docs 1, 3, 4, 6: (10 + 5 + 15) / 3
    assert list(res["keyed"]["buckets"]) == ["books", "cheap", "_other_"]  # sorted by key, other last
    assert res["keyed"]["buckets"] == {"books": {"doc_count": 3}, "cheap": {"doc_count": 2},
                                       "_other_": {"doc_count": 2}}  # fmt: skip
    assert res["anon"]["buckets"] == [{"doc_count": 2}, {"doc_count": 1}, {"doc_count": 3}]
    assert res["no_price"] == {"doc_count": 1} and res["no_tags"] == {"doc_count": 2}


def test_range_sorts_ranges_and_formats_keys(es: Elasticsearch) -> None:
    res = aggs(es, {
        "p": {"range": {"field": "price", "ranges": [{"from": 20}, {"to": 10}, {"from": 10, "to": 20}]}},
        "k": {"range": {"field": "price", "keyed": True, "ranges": [{"key": "low", "to": 10}, {"from": 10}]}},
        "d": {"range": {"field": "sold", "ranges": [{"from": "2024-02-01", "to": "2024-04-01"}]}},
    })  # fmt: skip
    assert res["p"]["buckets"] == [
        {"key": "*-10.0", "to": 10.0, "doc_count": 1},
        {"key": "10.0-20.0", "from": 10.0, "to": 20.0, "doc_count": 2},
        {"key": "20.0-*", "from": 20.0, "doc_count": 2},
    ]
    assert res["k"]["buckets"] == {"low": {"to": 10.0, "doc_count": 1}, "10.0-*": {"from": 10.0, "doc_count": 4}}
    assert res["d"]["buckets"] == [{
        "key": "2024-02-01T00:00:00.000Z-2024-04-01T00:00:00.000Z", "from": float(FEB),
        "from_as_string": "2024-02-01T00:00:00.000Z", "to": float(APR), "to_as_string": "2024-04-01T00:00:00.000Z",
        "doc_count": 3}]  # fmt: skip


def test_histogram_fills_gaps_and_honours_min_doc_count_offset_and_extended_bounds(es: Elasticsearch) -> None:
    res = aggs(es, {
        "h": {"histogram": {"field": "price", "interval": 10}},
        "dense": {"histogram": {"field": "price", "interval": 10, "min_doc_count": 1}},
        "off": {"histogram": {"field": "price", "interval": 10, "offset": 5}},
        "ext": {"histogram": {"field": "price", "interval": 10, "extended_bounds": {"min": 0, "max": 60}}},
    })  # fmt: skip
    assert res["h"]["buckets"] == [{"key": 0.0, "doc_count": 1}, {"key": 10.0, "doc_count": 2},
                                   {"key": 20.0, "doc_count": 1}, {"key": 30.0, "doc_count": 0},
                                   {"key": 40.0, "doc_count": 1}]  # fmt: skip
    assert keys_counts(res["dense"]) == [(0.0, 1), (10.0, 2), (20.0, 1), (40.0, 1)]
    assert keys_counts(res["off"]) == [(5.0, 2), (15.0, 2), (25.0, 0), (35.0, 1)]
    assert [b["key"] for b in res["ext"]["buckets"]] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


def test_date_histogram_calendar_fixed_time_zone_and_format(es: Elasticsearch) -> None:
    res = aggs(es, {
        "month": {"date_histogram": {"field": "sold", "calendar_interval": "month"}},
        "month_cet": {"date_histogram": {"field": "sold", "calendar_interval": "1M", "time_zone": "+01:00"}},
        "week": {"date_histogram": {"field": "sold", "calendar_interval": "week", "min_doc_count": 1}},
        "day": {"date_histogram": {"field": "sold", "fixed_interval": "1d", "format": "yyyy-MM-dd",
                                   "min_doc_count": 1}},
        "year": {"date_histogram": {"field": "sold", "calendar_interval": "year"}},
        "keyed": {"date_histogram": {"field": "sold", "calendar_interval": "quarter", "keyed": True}},
    })  # fmt: skip
    assert res["month"]["buckets"] == [
        {"key_as_string": "2024-01-01T00:00:00.000Z", "key": JAN, "doc_count": 2},
        {"key_as_string": "2024-02-01T00:00:00.000Z", "key": FEB, "doc_count": 1},
        {"key_as_string": "2024-03-01T00:00:00.000Z", "key": MAR, "doc_count": 2},
    ]
    # at +01:00 doc 5 (2024-03-31T23:30Z) is already April
    assert [(b["key_as_string"], b["key"], b["doc_count"]) for b in res["month_cet"]["buckets"]] == [
        ("2024-01-01T00:00:00.000+01:00", JAN - HOUR, 2), ("2024-02-01T00:00:00.000+01:00", FEB - HOUR, 1),
        ("2024-03-01T00:00:00.000+01:00", MAR - HOUR, 1), ("2024-04-01T00:00:00.000+01:00", APR - HOUR, 1)]
    # weeks start on Monday: Fri Jan 5, Sat Jan 20, Sat Feb 3, Fri Mar 15, Sun Mar 31
    assert [b["key_as_string"][:10] for b in res["week"]["buckets"]] == [
        "2024-01-01", "2024-01-15", "2024-01-29", "2024-03-11", "2024-03-25"]
    assert [b["key_as_string"] for b in res["day"]["buckets"]] == [
        "2024-01-05", "2024-01-20", "2024-02-03", "2024-03-15", "2024-03-31"]
    assert res["year"]["buckets"] == [{"key_as_string": "2024-01-01T00:00:00.000Z", "key": JAN, "doc_count": 5}]
    assert res["keyed"]["buckets"] == {
        "2024-01-01T00:00:00.000Z": {"key_as_string": "2024-01-01T00:00:00.000Z", "key": JAN, "doc_count": 5}}


def test_sub_aggregations_nest_to_any_depth(es: Elasticsearch) -> None:
    res = aggs(es, {"c": {"terms": {"field": "category"}, "aggs": {
        "s": {"terms": {"field": "in_stock"}, "aggs": {"q": {"stats": {"field": "qty"}}}}}}})
    book = res["c"]["buckets"][0]
    assert book["key"] == "book"
    # book: in stock docs 1 (qty 3) and 6 (qty 4); not in stock doc 2 (qty 1)
    assert book["s"]["buckets"] == [
        {"key": 1, "key_as_string": "true", "doc_count": 2,
         "q": {"count": 2, "min": 3.0, "max": 4.0, "avg": 3.5, "sum": 7.0}},
        {"key": 0, "key_as_string": "false", "doc_count": 1,
         "q": {"count": 1, "min": 1.0, "max": 1.0, "avg": 1.0, "sum": 1.0}},
    ]  # fmt: skip


# --- how aggregations see the request ------------------------------------------------------------------


def test_size_zero_post_filter_and_meta(es: Elasticsearch) -> None:
    resp = es.search(index="shop", size=0, aggs={"c": {"terms": {"field": "category"}, "meta": {"ui": "facet"}}})
    assert resp["hits"]["hits"] == [] and resp["hits"]["total"]["value"] == 6
    assert resp["aggregations"]["c"]["meta"] == {"ui": "facet"}
    resp = es.search(index="shop", post_filter={"term": {"category": "toy"}},
                     aggs={"c": {"terms": {"field": "category"}}})
    assert sorted(h["_id"] for h in resp["hits"]["hits"]) == ["3", "4"]
    assert keys_counts(resp["aggregations"]["c"]) == [("book", 3), ("toy", 2), ("game", 1)]  # post_filter ignored


def test_aggregations_see_every_match_not_only_the_page(es: Elasticsearch) -> None:
    resp = es.search(index="shop", size=1, from_=1, sort=[{"qty": "asc"}], aggs={"s": {"sum": {"field": "qty"}}})
    assert len(resp["hits"]["hits"]) == 1 and resp["aggregations"]["s"] == {"value": 22.0}


def test_knn_aggregates_the_union_of_top_k_and_query_matches(es: Elasticsearch) -> None:
    knn = {"field": "vec", "query_vector": [1.0, 0.0], "k": 2, "num_candidates": 10}
    resp = es.search(index="shop", knn=knn, size=0, aggs={"c": {"terms": {"field": "category"}}})
    assert keys_counts(resp["aggregations"]["c"]) == [("book", 2)]  # nearest: doc 1 [1, 0], doc 2 [0.9, 0.1]
    resp = es.search(index="shop", knn=knn, query={"term": {"category": "toy"}}, size=0,
                     aggs={"c": {"terms": {"field": "category"}}})
    assert resp["hits"]["total"]["value"] == 4
    assert keys_counts(resp["aggregations"]["c"]) == [("book", 2), ("toy", 2)]


def test_retrievers_msearch_scroll_and_typed_keys(es: Elasticsearch) -> None:
    rrf = {"rrf": {"retrievers": [{"standard": {"query": {"term": {"category": "toy"}}}},
                                  {"standard": {"query": {"term": {"category": "game"}}}}]}}
    resp = es.search(index="shop", retriever=rrf, aggs={"c": {"terms": {"field": "category"}}})
    assert keys_counts(resp["aggregations"]["c"]) == [("toy", 2), ("game", 1)]
    resp = es.search(index="shop", retriever={"standard": {"query": {"term": {"category": "book"}}}},
                     aggs={"p": {"max": {"field": "price"}}})
    assert resp["aggregations"]["p"] == {"value": 20.0}
    body = {"size": 0, "aggs": {"p": {"sum": {"field": "price"}}}}
    out = es.msearch(searches=[{"index": "shop"}, body, {"index": "shop"},
                               {**body, "query": {"term": {"category": "book"}}}])
    assert [r["aggregations"]["p"]["value"] for r in out["responses"]] == [90.0, 30.0]
    page = es.search(index="shop", scroll="1m", size=2, aggs={"c": {"cardinality": {"field": "tags"}}})
    assert page["aggregations"]["c"] == {"value": 2} and len(page["hits"]["hits"]) == 2
    es.clear_scroll(scroll_id=page["_scroll_id"])
    typed = aggs(es, {"c": {"terms": {"field": "category"}, "aggs": {"p": {"avg": {"field": "price"}}}},
                      "q": {"terms": {"field": "qty"}}, "h": {"histogram": {"field": "price", "interval": 50}}},
                 typed_keys=True)  # fmt: skip
    assert set(typed) == {"sterms#c", "lterms#q", "histogram#h"}
    assert "avg#p" in typed["sterms#c"]["buckets"][0]


# --- errors ----------------------------------------------------------------------------------------


def _error(es: Elasticsearch, spec: dict) -> ApiError:
    with pytest.raises(ApiError) as exc:
        es.search(index="shop", aggs=spec)
    return exc.value


def test_aggregating_a_text_field_needs_fielddata(es: Elasticsearch) -> None:
    err = _error(es, {"t": {"terms": {"field": "title"}}})
    assert isinstance(err, BadRequestError) and err.meta.status == 400
    error = err.body["error"]
    assert error["type"] == "search_phase_execution_exception" and error["reason"] == "all shards failed"
    assert error["root_cause"][0]["type"] == "illegal_argument_exception"
    assert error["root_cause"][0]["reason"] == (
        "Fielddata is disabled on [title] in [shop]. Text fields are not optimised for operations that require "
        "per-document field data like aggregations and sorting, so these operations are disabled by default. Please "
        "use a keyword field instead. Alternatively, set fielddata=true on [title] in order to load field data by "
        "uninverting the inverted index. Note that this can use significant memory."
    )
    assert error["failed_shards"][0]["index"] == "shop"
    es.indices.create(index="fd", mappings={"properties": {"t": {"type": "text", "fielddata": True}}})
    es.index(index="fd", document={"t": "Red red apple"}, refresh=True)
    resp = es.search(index="fd", size=0, aggs={"t": {"terms": {"field": "t"}}})
    assert keys_counts(resp["aggregations"]["t"]) == [("apple", 1), ("red", 1)]  # analysed terms


def test_request_errors(es: Elasticsearch) -> None:
    err = _error(es, {"x": {"term": {"field": "category"}}})
    assert (err.meta.status, err.error) == (400, "parsing_exception")
    assert err.body["error"]["reason"] == "Unknown aggregation type [term] did you mean [terms]?"
    err = _error(es, {"x": {"terms": {"size": 3}}})
    assert (err.meta.status, err.error) == (400, "illegal_argument_exception")
    assert err.body["error"]["reason"] == "Required one of fields [field, script], but none were specified. "
    err = _error(es, {"x": {"date_histogram": {"field": "sold"}}})
    assert err.body["error"]["reason"] == "Invalid interval specified, must be non-null and non-empty"
    err = _error(es, {"x": {"filters": {"filters": {}}}})
    assert err.body["error"]["reason"] == "[filters] cannot be empty."
    err = _error(es, {"x": {"terms": {"field": "category", "size": 0}}})
    assert err.error == "x_content_parse_exception"
    assert err.body["error"]["caused_by"]["reason"] == "[size] must be greater than 0. Found [0] in [x]"
    err = _error(es, {"x": {"terms": {"feild": "category"}}})
    assert err.body["error"]["reason"] == "[terms] unknown field [feild] did you mean [field]?"
    err = _error(es, {"x": {"avg": {"field": "price"}, "aggs": {"y": {"max": {"field": "price"}}}}})
    assert err.meta.status == 500 and err.error == "aggregation_initialization_exception"
    assert err.body["error"]["reason"] == "Aggregator [x] of type [avg] cannot accept sub-aggregations"


def test_shard_level_errors(es: Elasticsearch) -> None:
    err = _error(es, {"x": {"avg": {"field": "category"}}})
    assert (err.meta.status, err.error) == (400, "search_phase_execution_exception")
    assert err.body["error"]["root_cause"][0]["reason"] == (
        "Field [category] of type [keyword] is not supported for aggregation [avg]")
    err = _error(es, {"x": {"histogram": {"field": "price", "interval": 0.0001}}})  # 350,001 buckets
    cause = err.body["error"]["root_cause"][0]
    assert (err.meta.status, cause["type"], cause["max_buckets"]) == (400, "too_many_buckets_exception", 65536)
    assert cause["reason"].startswith("Trying to create too many buckets. Must be less than or equal to: [65536]")
    err = _error(es, {"x": {"terms": {"field": "category", "order": {"nope": "desc"}}}})
    assert (err.meta.status, err.error) == (400, "search_phase_execution_exception")
    assert err.body["error"]["root_cause"][0]["reason"] == (
        "Invalid aggregation order path [nope]. The provided aggregation [nope] either does not exist, or is a "
        "pipeline aggregation and cannot be used to sort the buckets.")
