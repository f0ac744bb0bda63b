"""Retrievers (standard, knn, rrf, linear) and the legacy rank option, with hand-computed fusion."""

from __future__ import annotations

import pytest

from es_semantic.testing.errors import EsError
from es_semantic.testing.retrievers import normalize
from es_semantic.testing.search_engine import run_search
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc

MAPPINGS = {
    "properties": {
        "v": {"type": "dense_vector", "dims": 1, "similarity": "l2_norm"},
        "kw": {"type": "keyword"},
        "n": {"type": "long"},
    }
}
# doc i has vector [i+1] and kw "k{i+1}"; knn from [4] ranks 3,2,4,1 ... (ids are 1-based)
DOCS = [
    {"v": [1.0], "kw": "one", "n": 1},
    {"v": [2.0], "kw": "two", "n": 2},
    {"v": [3.0], "kw": "three", "n": 3},
    {"v": [4.0], "kw": "four", "n": 4},
]


def _t() -> list[SearchTarget]:
    stored = [StoredDoc(str(i + 1), s, i, 1, 1, i) for i, s in enumerate(DOCS)]
    return [SearchTarget(IndexSnapshot("idx", MAPPINGS, {}, stored))]


def _cs(value: str, boost: float) -> dict:
    return {"constant_score": {"filter": {"term": {"kw": value}}, "boost": boost}}


STD = {"standard": {"query": {"bool": {"should": [_cs("one", 10), _cs("two", 9), _cs("three", 5)]}}}}
KNN = {"knn": {"field": "v", "query_vector": [4.0], "k": 2, "num_candidates": 4}}


def _hits(res) -> list[tuple[str, float]]:
    return [(h["_id"], h["_score"]) for h in res["hits"]["hits"]]


def test_standard_and_knn_retrievers_equal_plain_search():
    t = _t()
    a = run_search(t, {"retriever": {"standard": {"query": {"range": {"n": {"gte": 2}}}, "sort": [{"n": "desc"}]}}}, {})
    b = run_search(t, {"query": {"range": {"n": {"gte": 2}}}, "sort": [{"n": "desc"}]}, {})
    assert a["hits"] == b["hits"]
    a = run_search(t, {"retriever": {"standard": {"query": {"match_all": {}}, "filter": {"term": {"kw": "two"}}}}}, {})
    assert [h["_id"] for h in a["hits"]["hits"]] == ["2"]
    k = run_search(t, {"retriever": KNN}, {})
    assert [h["_id"] for h in k["hits"]["hits"]] == ["4", "3"]


def test_rrf_hand_computed():
    body = {"retriever": {"rrf": {"retrievers": [STD, KNN], "rank_constant": 1, "rank_window_size": 10}}}
    res = run_search(_t(), body, {})
    # STD ranks 1,2,3 ; KNN ranks 4,3
    expected = {"1": 1 / 2, "2": 1 / 3, "3": 1 / 4 + 1 / 3, "4": 1 / 2}
    got = dict(_hits(res))
    assert got == pytest.approx(expected, rel=1e-6)
    assert [h for h, _ in _hits(res)] == ["3", "1", "4", "2"]  # ties (1, 4) in index order
    assert res["hits"]["total"]["value"] == 4


def test_rrf_weighted_form_window_filter_and_paging():
    body = {
        "retriever": {
            "rrf": {
                "retrievers": [{"retriever": STD, "weight": 2.0}, {"retriever": KNN, "weight": 1.0}],
                "rank_window_size": 10,
            }
        },
        "size": 2,
        "from": 1,
    }
    got = _hits(run_search(_t(), body, {}))
    scores = {"1": 2 / 61, "2": 2 / 62, "3": 2 / 63 + 1 / 62, "4": 1 / 61}
    order = sorted(scores, key=lambda d: -scores[d])
    assert [d for d, _ in got] == order[1:3]
    filtered = {"retriever": {"rrf": {"retrievers": [STD, KNN], "filter": {"range": {"n": {"lte": 2}}}}}}
    res = run_search(_t(), filtered, {})
    # knn child is pre-filtered: its top 2 are now docs 2 and 1
    got = dict(_hits(res))
    assert got == pytest.approx({"1": 1 / 61 + 1 / 62, "2": 1 / 62 + 1 / 61})
    assert res["hits"]["total"]["value"] == 2


def test_linear_minmax_and_weights_match_elasticsearch_yaml_case():
    body = {
        "retriever": {
            "linear": {
                "retrievers": [
                    {"retriever": STD, "weight": 10.0, "normalizer": "minmax"},
                    {
                        "retriever": {"knn": {"field": "v", "query_vector": [4.0], "k": 1, "num_candidates": 1}},
                        "weight": 2.0,
                    },
                ]
            }
        }
    }
    res = run_search(_t(), body, {})
    assert _hits(res) == [
        ("1", pytest.approx(10.0)),
        ("2", pytest.approx(8.0)),
        ("4", pytest.approx(2.0)),
        ("3", pytest.approx(0.0)),
    ]
    # rank_window_size cuts each child before normalising
    body["retriever"]["linear"]["rank_window_size"] = 2
    body["size"] = 2
    assert [d for d, _ in _hits(run_search(_t(), body, {}))] == ["1", "4"]


def test_normalizers_hand_computed():
    assert normalize([10, 9, 5], "minmax") == pytest.approx([1.0, 0.8, 0.0])
    assert normalize([3.0], "minmax") == [1.0]
    assert normalize([3, 4], "l2_norm") == pytest.approx([0.6, 0.8])
    assert normalize([0, 0], "l2_norm") == [0.0, 0.0]
    assert normalize([2, 1], "none") == [2, 1]
    with pytest.raises(EsError, match=r"Unknown normalizer \[aardvark\]"):
        normalize([1], "aardvark")


@pytest.mark.parametrize(
    ("retriever", "size", "fragment"),
    [
        ({"linear": {"retrievers": [{"retriever": STD, "weight": -1}]}}, 10, "[weight] must be non-negative"),
        (
            {"linear": {"retrievers": [{"retriever": STD}], "rank_window_size": 2}},
            10,
            "[linear] requires [rank_window_size: 2] be greater than or equal to [size: 10]",
        ),
        (
            {"rrf": {"retrievers": [STD, KNN], "rank_window_size": -10}},
            10,
            "[rank_window_size] parameter cannot be negative, found [-10]",
        ),
        (
            {"rrf": {"retrievers": [STD, KNN], "rank_constant": 0}},
            10,
            "[rank_constant] must be greater or equal to [1] for [rrf]",
        ),
    ],
)
def test_retriever_errors(retriever, size, fragment):
    with pytest.raises(EsError) as exc:
        run_search(_t(), {"retriever": retriever, "size": size}, {})
    assert exc.value.status == 400 and fragment in exc.value.reason


def test_nested_rrf():
    inner = {"rrf": {"retrievers": [STD, KNN], "rank_constant": 1}}
    outer = {
        "retriever": {
            "rrf": {"retrievers": [inner, {"knn": {"field": "v", "query_vector": [1.0], "k": 1}}], "rank_constant": 1}
        }
    }
    got = dict(_hits(run_search(_t(), outer, {})))
    # inner order: 3, 1, 4, 2 ; outer knn: 1
    assert got == pytest.approx({"3": 1 / 2, "1": 1 / 3 + 1 / 2, "4": 1 / 4, "2": 1 / 5})


def test_legacy_rank_rrf_sets_rank():
    body = {
        "query": {"bool": {"should": [_cs("one", 10), _cs("two", 9)]}},
        "knn": {"field": "v", "query_vector": [4.0], "k": 2, "num_candidates": 2},
        "rank": {"rrf": {"rank_window_size": 10, "rank_constant": 1}},
    }
    res = run_search(_t(), body, {})
    assert [(h["_id"], h["_rank"]) for h in res["hits"]["hits"]] == [("1", 1), ("4", 2), ("2", 3), ("3", 4)]
    with pytest.raises(EsError, match=r"\[rank\] requires \[rank_window_size: 2\]"):
        run_search(_t(), {**body, "rank": {"rrf": {"rank_window_size": 2}}}, {})
