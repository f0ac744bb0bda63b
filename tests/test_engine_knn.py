"""Exact kNN of the test server: score transforms, k/num_candidates, filters, errors, hybrid sum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from es_semantic.testing.errors import EsError
from es_semantic.testing.search_engine import run_search
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc
from es_semantic.vector_codec import encode_vector

VECS = [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]


def _target(similarity: str, vecs=VECS, alias_filter=None, base64: bool = False) -> list[SearchTarget]:
    mappings = {
        "properties": {
            "v": {"type": "dense_vector", "dims": 3, "similarity": similarity},
            "tag": {"type": "keyword"},
            "t": {"type": "text"},
        }
    }
    docs = []
    for i, v in enumerate(vecs):
        src = {"v": encode_vector(v) if base64 else v, "tag": "even" if i % 2 == 0 else "odd", "t": f"doc {i}"}
        docs.append(StoredDoc(str(i), src, i, 1, 1, i))
    docs.append(StoredDoc("novec", {"tag": "even", "t": "doc without vector"}, 9, 1, 1, len(docs)))
    return [SearchTarget(IndexSnapshot("idx", mappings, {}, docs), alias_filter)]


def _scores(res) -> dict[str, float]:
    return {h["_id"]: h["_score"] for h in res["hits"]["hits"]}


Q = [0.8, 0.6, 0.0]


def _expected(similarity: str, v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(Q, v))
    if similarity == "cosine":
        return (1 + dot / (math.hypot(*Q) * math.hypot(*v))) / 2
    if similarity == "dot_product":
        return (1 + dot) / 2
    if similarity == "l2_norm":
        return 1 / (1 + sum((a - b) ** 2 for a, b in zip(Q, v)))
    return 1 / (1 - dot) if dot < 0 else dot + 1


@pytest.mark.parametrize("similarity", ["cosine", "dot_product", "l2_norm", "max_inner_product"])
@pytest.mark.parametrize("base64", [False, True])
def test_score_transforms(similarity, base64):
    res = run_search(_target(similarity, base64=base64), {"knn": {"field": "v", "query_vector": Q, "k": 10}}, {})
    got = _scores(res)
    assert set(got) == {"0", "1", "2", "3"}  # the doc without a vector is never a hit
    for i, v in enumerate(VECS):
        assert got[str(i)] == pytest.approx(_expected(similarity, v), rel=1e-6)
    assert res["hits"]["total"]["value"] == 4


def test_k_defaults_to_size_and_ordering():
    res = run_search(_target("l2_norm"), {"knn": {"field": "v", "query_vector": Q}, "size": 2}, {})
    assert [h["_id"] for h in res["hits"]["hits"]] == ["1", "0"]
    assert res["hits"]["total"]["value"] == 2


def test_similarity_threshold_is_on_raw_similarity():
    # l2 distances from Q: doc1 0.283, doc0 0.632, doc2 0.894, doc3 1.414
    res = run_search(_target("l2_norm"), {"knn": {"field": "v", "query_vector": Q, "k": 4, "similarity": 0.7}}, {})
    assert set(_scores(res)) == {"0", "1"}
    # cosine similarity threshold 0.5: cos(doc0)=0.8, cos(doc1)=0.96, cos(doc2)=0.6, cos(doc3)=0
    res = run_search(_target("cosine"), {"knn": {"field": "v", "query_vector": Q, "k": 4, "similarity": 0.7}}, {})
    assert set(_scores(res)) == {"0", "1"}


def test_filter_and_alias_filter_are_prefilters():
    body = {"knn": {"field": "v", "query_vector": Q, "k": 1, "filter": {"term": {"tag": "even"}}}}
    assert list(_scores(run_search(_target("l2_norm"), body, {}))) == ["0"]
    body = {"knn": {"field": "v", "query_vector": Q, "k": 1, "filter": [{"term": {"tag": "odd"}}]}}
    assert list(_scores(run_search(_target("l2_norm"), body, {}))) == ["1"]
    aliased = _target("l2_norm", alias_filter={"term": {"tag": "even"}})
    res = run_search(aliased, {"knn": {"field": "v", "query_vector": Q, "k": 2}}, {})
    assert list(_scores(res)) == ["0", "2"]


def test_knn_plus_query_sums_scores_and_counts_union():
    t = _target("l2_norm")
    knn = {"field": "v", "query_vector": Q, "k": 2}
    q = {"match": {"t": "without"}}
    k_only = _scores(run_search(t, {"knn": knn}, {}))
    q_only = _scores(run_search(t, {"query": q}, {}))
    both = run_search(t, {"knn": knn, "query": q}, {})
    assert both["hits"]["total"]["value"] == 3
    got = _scores(both)
    for doc_id in set(k_only) | set(q_only):
        assert got[doc_id] == pytest.approx(k_only.get(doc_id, 0) + q_only.get(doc_id, 0), rel=1e-6)


def test_multiple_knn_sum_and_boost_and_named():
    t = _target("l2_norm")
    res = run_search(
        t,
        {
            "knn": [
                {"field": "v", "query_vector": Q, "k": 1, "boost": 2.0, "_name": "a"},
                {"field": "v", "query_vector": [0, 1, 0], "k": 1, "_name": "b"},
            ]
        },
        {},
    )
    got = _scores(res)
    assert got["1"] == pytest.approx(2 * _expected("l2_norm", VECS[1]), rel=1e-6)
    assert got["2"] == pytest.approx(1.0)
    assert {h["_id"]: h["matched_queries"] for h in res["hits"]["hits"]} == {"1": ["a"], "2": ["b"]}


def test_knn_query_clause_k_and_num_candidates():
    t = _target("l2_norm")
    res = run_search(t, {"query": {"knn": {"field": "v", "query_vector": Q, "num_candidates": 3}}, "size": 2}, {})
    assert res["hits"]["total"]["value"] == 3 and len(res["hits"]["hits"]) == 2
    res = run_search(t, {"query": {"knn": {"field": "v", "query_vector": Q, "k": 2}}}, {})
    assert res["hits"]["total"]["value"] == 2
    # a parent bool filter is a pre-filter of the knn query
    res = run_search(
        t,
        {
            "query": {
                "bool": {"filter": {"term": {"tag": "odd"}}, "must": {"knn": {"field": "v", "query_vector": Q, "k": 1}}}
            }
        },
        {},
    )
    assert list(_scores(res)) == ["1"]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"k": 0}, "[k] must be greater than 0"),
        ({"k": 5, "num_candidates": 3}, "[num_candidates] cannot be less than [k]"),
        ({"k": 5, "num_candidates": 10_001}, "[num_candidates] cannot exceed [10000]"),
        ({"query_vector": [1, 2]}, "different number of dimensions [2]"),
    ],
)
def test_knn_parameter_errors(spec, fragment):
    body = {"knn": {"field": "v", "query_vector": Q, **spec}}
    with pytest.raises(EsError) as exc:
        run_search(_target("l2_norm"), body, {})
    assert exc.value.status == 400
    assert fragment in exc.value.reason or fragment in (exc.value.caused_by or {}).get("reason", "")


def test_knn_on_unmapped_or_non_vector_fields():
    t = _target("l2_norm")
    assert run_search(t, {"knn": {"field": "nope", "query_vector": Q, "k": 2}}, {})["hits"]["hits"] == []
    with pytest.raises(EsError):
        run_search(t, {"knn": {"field": "tag", "query_vector": Q, "k": 2}}, {})
    with pytest.raises(EsError) as exc:
        run_search(t, {"knn": {"field": "v", "query_vector": Q}}, {"search_type": "query_then_fetch"})
    assert "cannot set [search_type] when using [knn] search" in exc.value.reason


def test_vector_matrix_is_memoised_per_snapshot():
    t = _target("cosine")
    run_search(t, {"knn": {"field": "v", "query_vector": Q, "k": 2}}, {})
    cache = t[0].snapshot.cache
    data = next(iter(cache.values()))
    col = data.vectors["v"]
    assert col.matrix.dtype == np.float32 and col.matrix.shape == (4, 3)
    run_search(t, {"knn": {"field": "v", "query_vector": Q, "k": 2}}, {})
    assert data.vectors["v"] is col


def test_top_level_knn_keeps_global_top_k_across_indices():
    a, b = _target("l2_norm")[0], _target("l2_norm", vecs=[[0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])[0]
    b = SearchTarget(IndexSnapshot("other", b.snapshot.mappings, {}, b.snapshot.docs))
    res = run_search([a, b], {"knn": {"field": "v", "query_vector": Q, "k": 2}}, {})
    assert [(h["_index"], h["_id"]) for h in res["hits"]["hits"]] == [("other", "0"), ("idx", "1")]
    assert res["hits"]["total"]["value"] == 2
    # the knn query clause keeps k per index (per shard), like Elasticsearch
    res = run_search([a, b], {"query": {"knn": {"field": "v", "query_vector": Q, "k": 2}}}, {})
    assert res["hits"]["total"]["value"] == 4
