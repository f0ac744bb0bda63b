"""Fusion formulas, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from es_semantic.search.fusion import explain, fuse, linear, normalize, rrf

LEGS = {
    "bm25": [("a", 10.0), ("b", 6.0), ("c", 2.0)],
    "knn": [("c", 0.9), ("a", 0.8), ("d", 0.5)],
}


def test_rrf_hand_computed():
    fused = rrf(LEGS, rank_constant=60)
    scores = {f.id: f.score for f in fused}
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [f.id for f in fused] == ["a", "c", "b", "d"]
    a = fused[0]
    assert a.ranks == {"bm25": 1, "knn": 2}
    assert a.scores == {"bm25": 10.0, "knn": 0.8}


def test_rrf_weights_and_window():
    # knn weight 4, window 2: d (knn rank 3) and c's bm25 rank 3 fall outside.
    fused = rrf(LEGS, rank_constant=1, weights={"knn": 4}, window=2)
    scores = {f.id: f.score for f in fused}
    assert set(scores) == {"a", "b", "c"}
    assert scores["c"] == pytest.approx(4 / 2)  # knn rank 1 only
    assert scores["a"] == pytest.approx(1 / 2 + 4 / 3)
    assert scores["b"] == pytest.approx(1 / 3)
    assert [f.id for f in fused] == ["c", "a", "b"]
    assert fused[0].ranks["bm25"] is None


def test_normalizers_hand_computed():
    assert normalize([4.0, 2.0, 1.0], "minmax") == pytest.approx([1.0, 1 / 3, 0.0])
    assert normalize([3.0, 4.0], "l2_norm") == pytest.approx([0.6, 0.8])
    # mean 2, population std sqrt(2/3)
    z = normalize([1.0, 2.0, 3.0], "zscore")
    assert z == pytest.approx([-1 / math.sqrt(2 / 3), 0.0, 1 / math.sqrt(2 / 3)])
    assert normalize([5.0, 5.0], "minmax") == [1.0, 1.0]
    assert normalize([2.0, 2.0], "zscore") == [0.0, 0.0]
    assert normalize([0.0, 0.0], "l2_norm") == [0.0, 0.0]
    assert normalize([7.0], "none") == [7.0]
    with pytest.raises(ValueError):
        normalize([1.0], "softmax")


def test_linear_minmax_hand_computed():
    fused = linear(LEGS, weights={"bm25": 0.25, "knn": 0.75}, normalizer="minmax")
    scores = {f.id: f.score for f in fused}
    # bm25 minmax: a 1, b 0.5, c 0 ; knn minmax over [.9,.8,.5]: c 1, a 0.75, d 0
    assert scores["a"] == pytest.approx(0.25 * 1 + 0.75 * 0.75)
    assert scores["c"] == pytest.approx(0.25 * 0 + 0.75 * 1)
    assert scores["b"] == pytest.approx(0.25 * 0.5)
    assert scores["d"] == pytest.approx(0.0)
    assert [f.id for f in fused] == ["a", "c", "b", "d"]
    assert fused[0].normalized == pytest.approx({"bm25": 1.0, "knn": 0.75})


def test_linear_l2_and_zscore_missing_leg():
    legs = {"bm25": [("x", 3.0), ("y", 4.0)], "knn": [("y", 1.0), ("z", 1.0)]}
    l2 = {f.id: f.score for f in linear(legs, normalizer="l2_norm")}
    assert l2["y"] == pytest.approx(0.8 + 1 / math.sqrt(2))
    assert l2["x"] == pytest.approx(0.6)
    assert l2["z"] == pytest.approx(1 / math.sqrt(2))
    z = {f.id: f.score for f in linear({"bm25": [("x", 1.0), ("y", 3.0)], "knn": [("y", 0.5)]}, normalizer="zscore")}
    # bm25 z: x -1, y +1; knn one score -> 0; missing knn for x counts as the knn minimum (0)
    assert z["y"] == pytest.approx(1.0)
    assert z["x"] == pytest.approx(-1.0)


def test_linear_per_leg_normalizer_and_errors():
    fused = linear(LEGS, normalizer={"bm25": "minmax", "knn": "none"}, weights={"bm25": 1, "knn": 1})
    scores = {f.id: f.score for f in fused}
    assert scores["c"] == pytest.approx(0 + 0.9)
    with pytest.raises(ValueError):
        linear(LEGS, weights={"sparse": 1.0})
    with pytest.raises(ValueError):
        rrf(LEGS, weights={"knn": -1})
    with pytest.raises(ValueError):
        fuse(LEGS, "max")


def test_duplicates_in_a_leg_count_once():
    fused = rrf({"bm25": [("a", 2.0), ("a", 1.0), ("b", 0.5)]}, rank_constant=10)
    assert {f.id: f.ranks["bm25"] for f in fused} == {"a": 1, "b": 2}


def test_ties_break_on_best_rank_then_id():
    legs = {"bm25": [("b", 1.0), ("a", 0.5)], "knn": [("a", 1.0), ("b", 0.5)]}
    fused = rrf(legs, rank_constant=60)
    assert fused[0].score == pytest.approx(fused[1].score)
    assert [f.id for f in fused] == ["a", "b"]


def test_explain_shows_the_numbers():
    fused = rrf(LEGS, rank_constant=60)
    text = explain(fused[0], "rrf", rank_constant=60)
    assert "1/(60+1)" in text and "1/(60+2)" in text and "bm25 rank 1" in text
    d = next(f for f in fused if f.id == "d")
    assert "bm25: not in window" in explain(d, "rrf")
    lin = linear(LEGS, weights={"bm25": 0.25, "knn": 0.75})
    text = explain(lin[0], "linear", weights={"bm25": 0.25, "knn": 0.75})
    assert "0.25*minmax(10)=0.25*1" in text and "0.75*minmax(0.8)=0.75*0.75" in text
