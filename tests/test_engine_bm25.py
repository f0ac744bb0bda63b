"""BM25 of the test server against Lucene's formula, computed independently here."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest

from es_semantic.testing import bm25
from es_semantic.testing.search_engine import run_search
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc


def _target(sources: list[dict], mappings: dict) -> list[SearchTarget]:
    docs = [StoredDoc(str(i), s, i, 1, 1, i) for i, s in enumerate(sources)]
    return [SearchTarget(IndexSnapshot("idx", mappings, {}, docs))]


def _representable_lengths() -> list[int]:
    # Lucene's one-byte norm keeps 0..23 exactly; above that, 24 + a 4-bit-mantissa number
    # (values < 8 exactly, then (8 | m) << shift).
    values = set(range(24)) | {24 + v for v in range(8)}
    for shift in range(28):
        for m in range(8):
            values.add(24 + ((8 | m) << shift))
    return sorted(values)


_LENGTHS = _representable_lengths()


def _expected_lossy(length: int) -> int:
    return _LENGTHS[bisect.bisect_right(_LENGTHS, length) - 1]


def _lucene_score(tf: int, dl: int, avgdl: float, df: int, n: int, boost: float = 1.0) -> float:
    # Elasticsearch (LegacyBM25Similarity): (k1 + 1) * boost * idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return 2.2 * boost * idf * tf / (tf + 1.2 * (0.25 + 0.75 * _expected_lossy(dl) / avgdl))


@pytest.mark.parametrize(
    ("length", "decoded"),
    [(0, 0), (23, 23), (24, 24), (30, 30), (31, 31), (40, 40), (41, 40), (100, 96), (1000, 984), (5000, 4632)],
)
def test_norm_round_trip_hand_computed(length, decoded):
    assert bm25.lossy_length(length) == decoded


def test_norm_round_trip_matches_independent_table():
    for length in list(range(3000)) + [10**5, 123_456, 2**20 + 17]:
        assert bm25.lossy_length(length) == _expected_lossy(length), length
    assert bm25.int_to_byte4(2**31 - 1) == 255


def test_idf_hand_computed():
    assert float(bm25.idf(1, 3)) == pytest.approx(math.log(1 + 2.5 / 1.5), rel=1e-7)
    assert float(bm25.idf(10, 10)) == pytest.approx(math.log(1 + 0.5 / 10.5), rel=1e-7)


def test_term_scores_match_lucene_including_lossy_long_documents():
    filler = [f"w{i}" for i in range(2000)]
    docs = [
        {"body": "apple banana"},
        {"body": "apple apple apple " + " ".join(filler[:97])},  # 100 tokens -> norm length 96
        {"body": "apple " + " ".join(filler[:999])},  # 1000 tokens -> norm length 984
        {"body": "banana cherry"},
    ]
    lengths = [2, 100, 1000, 2]
    tfs = [1, 3, 1, 0]
    target = _target(docs, {"properties": {"body": {"type": "text"}}})
    res = run_search(target, {"query": {"match": {"body": "apple"}}}, {})
    avgdl = sum(lengths) / len(lengths)
    got = {h["_id"]: h["_score"] for h in res["hits"]["hits"]}
    assert set(got) == {"0", "1", "2"}
    for i in (0, 1, 2):
        expected = _lucene_score(tfs[i], lengths[i], avgdl, df=3, n=4)
        assert got[str(i)] == pytest.approx(expected, rel=2e-6), i
        assert got[str(i)] == float(np.float32(got[str(i)]))  # a float32 value, as Lucene's
    # the lossy norm matters: with the exact length 1000 the score would differ visibly
    exact = 2.2 * math.log(1 + 1.5 / 3.5) / (1 + 1.2 * (0.25 + 0.75 * 1000 / avgdl))
    assert abs(got["2"] - exact) > 1e-4


def test_multi_term_match_sums_term_scores_and_boost_scales():
    docs = [{"t": "red fox"}, {"t": "red red dog"}, {"t": "blue fox jumps high"}]
    target = _target(docs, {"properties": {"t": {"type": "text"}}})
    res = run_search(target, {"query": {"match": {"t": {"query": "red fox", "boost": 2.0}}}}, {})
    got = {h["_id"]: h["_score"] for h in res["hits"]["hits"]}
    avgdl = (2 + 3 + 4) / 3
    expected0 = _lucene_score(1, 2, avgdl, 2, 3, 2.0) + _lucene_score(1, 2, avgdl, 2, 3, 2.0)
    expected1 = _lucene_score(2, 3, avgdl, 2, 3, 2.0)
    expected2 = _lucene_score(1, 4, avgdl, 2, 3, 2.0)
    assert got["0"] == pytest.approx(expected0, rel=2e-6)
    assert got["1"] == pytest.approx(expected1, rel=2e-6)
    assert got["2"] == pytest.approx(expected2, rel=2e-6)
    assert [h["_id"] for h in res["hits"]["hits"]] == ["0", "1", "2"]


def test_field_statistics_count_only_documents_with_the_field():
    docs = [{"t": "alpha beta"}, {"other": 1}, {"t": "gamma"}, {"t": ""}]
    target = _target(docs, {"properties": {"t": {"type": "text"}, "other": {"type": "long"}}})
    res = run_search(target, {"query": {"match": {"t": "gamma"}}}, {})
    # docCount = 2 (doc 3 has no tokens), sumTotalTermFreq = 3 -> avgdl 1.5
    assert res["hits"]["hits"][0]["_score"] == pytest.approx(_lucene_score(1, 1, 1.5, 1, 2), rel=2e-6)


def test_keyword_term_score_is_bm25_without_norms():
    docs = [{"k": "a"}, {"k": "b"}, {"k": "a"}, {"k": "c"}]
    target = _target(docs, {"properties": {"k": {"type": "keyword"}}})
    res = run_search(target, {"query": {"term": {"k": "a"}}}, {})
    idf = math.log(1 + (4 - 2 + 0.5) / 2.5)
    assert [h["_score"] for h in res["hits"]["hits"]] == pytest.approx([idf, idf], rel=2e-6)


def _bm25(tf, dl, avgdl, df, n, k1, b):
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return (k1 + 1) * idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_custom_bm25_parameters_boolean_similarity_and_disabled_norms():
    settings = {"index": {"similarity": {"tuned": {"type": "BM25", "k1": 2.0, "b": 0.3}}}}
    mappings = {
        "properties": {
            "a": {"type": "text", "similarity": "tuned"},
            "bo": {"type": "text", "similarity": "boolean"},
            "nn": {"type": "text", "norms": False},
        }
    }
    docs = [
        {"a": "x y z", "bo": "x x y", "nn": "x y z w"},
        {"a": "x", "bo": "y", "nn": "x"},
        {"a": "q", "bo": "q", "nn": "q"},
    ]
    stored = [StoredDoc(str(i), s, i, 1, 1, i) for i, s in enumerate(docs)]
    target = [SearchTarget(IndexSnapshot("idx", mappings, settings, stored))]
    got = {h["_id"]: h["_score"] for h in run_search(target, {"query": {"match": {"a": "x"}}}, {})["hits"]["hits"]}
    avgdl = 5 / 3
    assert got["0"] == pytest.approx(_bm25(1, 3, avgdl, 2, 3, 2.0, 0.3), rel=2e-6)
    assert got["1"] == pytest.approx(_bm25(1, 1, avgdl, 2, 3, 2.0, 0.3), rel=2e-6)
    got = {
        h["_id"]: h["_score"]
        for h in run_search(target, {"query": {"match": {"bo": {"query": "x y", "boost": 3}}}}, {})["hits"]["hits"]
    }
    assert got == {"0": 6.0, "1": 3.0}
    got = {h["_id"]: h["_score"] for h in run_search(target, {"query": {"match": {"nn": "x"}}}, {})["hits"]["hits"]}
    # no norms: every document has length 1 in the formula; avgdl is still sumTotalTermFreq / docCount = 2
    assert got["0"] == pytest.approx(got["1"]) == pytest.approx(_bm25(1, 1, 2.0, 2, 3, 1.2, 0.75), rel=2e-6)
