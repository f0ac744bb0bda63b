"""Test server: nested fields, the nested query with inner_hits, kNN over nested vectors."""

from __future__ import annotations

import pytest
from elasticsearch import ApiError, Elasticsearch

MAPPINGS = {"properties": {
    "title": {"type": "keyword"},
    "comments": {"type": "nested", "properties": {
        "author": {"type": "keyword"},
        "text": {"type": "text"},
        "v": {"type": "dense_vector", "dims": 2, "similarity": "l2_norm"},
    }},
}}


@pytest.fixture
def es(es_client: Elasticsearch) -> Elasticsearch:
    es_client.indices.create(index="n", mappings=MAPPINGS)
    es_client.index(index="n", id="1", document={"title": "a", "comments": [
        {"author": "x", "text": "hello world", "v": [0, 0]}, {"author": "y", "text": "bye", "v": [5, 5]}]})
    es_client.index(index="n", id="2", document={"title": "b", "comments": [
        {"author": "x", "text": "bye", "v": [1, 1]}]}, refresh=True)
    return es_client


def test_nested_query_matches_within_one_object(es: Elasticsearch) -> None:
    both = {"bool": {"must": [{"term": {"comments.author": "x"}}, {"match": {"comments.text": "bye"}}]}}
    hits = es.search(index="n", query={"nested": {"path": "comments", "query": both}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["2"]  # doc 1 has x and bye, but in two different comments


def test_nested_fields_are_invisible_outside_a_nested_query(es: Elasticsearch) -> None:
    assert es.count(index="n", query={"term": {"comments.author": "x"}})["count"] == 0


def test_inner_hits_name_the_matching_objects(es: Elasticsearch) -> None:
    query = {"nested": {"path": "comments", "query": {"term": {"comments.author": "y"}},
                        "inner_hits": {"_source": False, "fields": ["comments.author"]}}}
    (hit,) = es.search(index="n", query=query)["hits"]["hits"]
    inner = hit["inner_hits"]["comments"]["hits"]
    assert inner["total"] == {"value": 1, "relation": "eq"}
    assert inner["hits"][0]["_nested"] == {"field": "comments", "offset": 1}
    assert inner["hits"][0]["fields"] == {"comments": [{"author": ["y"]}]}
    assert "_source" not in inner["hits"][0]


@pytest.mark.parametrize(("mode", "expected"), [("sum", 2.0), ("max", 1.0), ("avg", 1.0), ("none", 0.0)])
def test_score_mode_combines_the_children(es: Elasticsearch, mode: str, expected: float) -> None:
    query = {"nested": {"path": "comments", "score_mode": mode,
                        "query": {"constant_score": {"filter": {"exists": {"field": "comments.author"}}}}}}
    scores = {h["_id"]: h["_score"] for h in es.search(index="n", query=query)["hits"]["hits"]}
    assert scores["1"] == pytest.approx(expected)


def test_knn_on_nested_vectors_returns_parents_by_best_child(es: Elasticsearch) -> None:
    knn = {"field": "comments.v", "query_vector": [4, 4], "k": 2, "num_candidates": 10,
           "inner_hits": {"size": 1, "_source": False, "fields": ["comments.author"]}}
    hits = es.search(index="n", knn=knn)["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["1", "2"]
    assert hits[0]["_score"] == pytest.approx(1 / (1 + 2))  # l2 distance² 2 to [5, 5]
    best = hits[0]["inner_hits"]["comments"]["hits"]["hits"][0]
    assert best["_nested"]["offset"] == 1 and best["fields"] == {"comments": [{"author": ["y"]}]}


def test_knn_over_nested_vectors_counts_parents_not_children(es: Elasticsearch) -> None:
    query = {"nested": {"path": "comments", "query": {"knn": {"field": "comments.v", "query_vector": [0, 0],
                                                               "k": 1}}}}
    response = es.search(index="n", query=query)
    assert response["hits"]["total"]["value"] == 1
    assert response["hits"]["hits"][0]["_id"] == "1"


def test_unknown_path_is_a_query_shard_error(es: Elasticsearch) -> None:
    with pytest.raises(ApiError) as err:
        es.search(index="n", query={"nested": {"path": "title", "query": {"match_all": {}}}})
    assert err.value.body["error"]["root_cause"][0]["reason"] == \
        "[nested] failed to find nested object under path [title]"
    ignored = {"nested": {"path": "nope", "query": {"match_all": {}}, "ignore_unmapped": True}}
    assert es.search(index="n", query=ignored)["hits"]["total"]["value"] == 0
