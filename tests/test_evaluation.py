"""Metrics against hand-computed values, and BEIR loading (CRLF, header, TREC form)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from es_semantic.errors import ConfigError
from es_semantic.evaluation import (
    LegRuns,
    Variant,
    evaluate_run,
    evaluate_variants,
    format_table,
    load_beir,
    load_qrels,
    mrr_at,
    ndcg_at,
    recall_at,
    top1,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def test_ndcg_binary_hand_computed():
    # relevant d1, d2; ranked d3 d1 d4 d2: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at(["d3", "d1", "d4", "d2"], {"d1": 1, "d2": 1}, 10) == pytest.approx(expected)
    assert ndcg_at(["d1", "d2"], {"d1": 1, "d2": 1}) == pytest.approx(1.0)
    assert ndcg_at(["x"], {"d1": 1}) == 0.0


def test_ndcg_graded_and_cutoff():
    # gains: d1=2, d2=1; ranked d2 d1 -> DCG = 1 + 2/log2(3); IDCG = 2 + 1/log2(3)
    assert ndcg_at(["d2", "d1"], {"d1": 2, "d2": 1}) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # cut at 1: only d2 counts; ideal at 1 is 2
    assert ndcg_at(["d2", "d1"], {"d1": 2, "d2": 1}, 1) == pytest.approx(0.5)
    # zero-graded judgments are not relevant
    assert ndcg_at(["d0", "d1"], {"d0": 0, "d1": 1}) == pytest.approx(1 / math.log2(3))


def test_mrr_recall_top1():
    judged = {"a": 1, "b": 1, "c": 1, "z": 0}
    ranked = ["z", "x", "b", "a", "y"]
    assert mrr_at(ranked, judged, 10) == pytest.approx(1 / 3)
    assert mrr_at(ranked, judged, 2) == 0.0
    assert recall_at(ranked, judged, 3) == pytest.approx(1 / 3)
    assert recall_at(ranked, judged, 100) == pytest.approx(2 / 3)
    assert top1(ranked, judged) == 0.0
    assert top1(["c"], judged) == 1.0
    assert top1([], judged) == 0.0


def test_evaluate_run_means_and_missing_queries():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    figures = evaluate_run({"q1": ["a", "x"], "q3": ["c"]}, qrels)
    # q3 has nothing relevant: skipped; q2 missing from the run: zeros.
    assert figures["queries"] == 2
    assert figures["ndcg@10"] == pytest.approx(0.5)
    assert figures["top1"] == pytest.approx(0.5)
    assert figures["mrr@10"] == pytest.approx(0.5)
    # duplicates in a ranking count once
    assert evaluate_run({"q1": ["x", "x", "a"], "q2": ["b"]}, qrels)["mrr@10"] == pytest.approx((0.5 + 1) / 2)


def test_load_qrels_crlf_header_and_trec(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_bytes(b"query-id\tcorpus-id\tscore\r\n1\t10\t1\r\n1\t11\t2\r\n2\t12\t0\r\n\r\n")
    assert load_qrels(path) == {"1": {"10": 1, "11": 2}, "2": {"12": 0}}
    trec = tmp_path / "t.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\n")
    assert load_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\td1\t1\nq1\td2\tmaybe\n")
    with pytest.raises(ConfigError, match="not a number"):
        load_qrels(bad)


def test_evaluate_variants_from_legs():
    runs = LegRuns(bm25={"q": [("a", 5.0), ("b", 1.0)]}, knn={"q": [("b", 0.9), ("c", 0.1)]})
    qrels = {"q": {"b": 1}}
    results = evaluate_variants(runs, qrels, [Variant("bm25", "bm25"), Variant("knn", "knn"),
                                             Variant("rrf", "rrf", rank_constant=60)])
    assert results["bm25"]["top1"] == 0.0 and results["knn"]["top1"] == 1.0
    # rrf: b = 1/62 + 1/61 beats a = 1/61
    assert results["rrf"]["top1"] == 1.0
    assert "rrf" in format_table(results)


@pytest.mark.skipif(not (SHARED / "datasets" / "scifact").exists(), reason="shared scifact dataset not present")
def test_load_scifact_splits():
    test = load_beir(SHARED / "datasets" / "scifact", "test")
    assert len(test.queries) == 300 and len(test.qrels) == 300
    assert sum(len(v) for v in test.qrels.values()) == 339
    train = load_beir(SHARED / "datasets" / "scifact", "train")
    assert len(train.queries) == 809
    assert not set(train.queries) & set(test.queries)


def test_bad_input_files_give_one_line_errors(tmp_path):
    from es_semantic.errors import ConfigError
    from es_semantic.evaluation import load_qrels, load_queries

    arr = tmp_path / "q.jsonl"
    arr.write_text('{"_id": "q1", "text": "x"}\n[1, 2]\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:2: expected a JSON object .* got list"):
        load_queries(arr)
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes(b"q1\tfaq-001\t1\nq\xe9\tfaq-002\t1\n")
    with pytest.raises(ConfigError, match=r"latin1.tsv:2: not UTF-8"):
        load_qrels(latin1)
    # a bad score on line 1 is a bad judgment, not a header to skip silently
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1\tfaq-001\tabc\nq2\tfaq-002\t1\n")
    with pytest.raises(ConfigError, match=r"bad.tsv:1: score 'abc' is not a number"):
        load_qrels(bad)
    # headers, a BOM and CRLF are fine
    ok = tmp_path / "ok.tsv"
    ok.write_bytes("\ufeffquery-id\tcorpus-id\tscore\r\nq1\tfaq-001\t1\r\n".encode())
    assert load_qrels(ok) == {"q1": {"faq-001": 1}}
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes('\ufeff{"_id": "q1", "text": "x"}\n'.encode())
    assert load_queries(bom) == {"q1": "x"}


def _files(tmp_path, queries: dict[str, str], qrels: str):
    import json

    q = tmp_path / "queries.jsonl"
    q.write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()), encoding="utf-8")
    r = tmp_path / "qrels.tsv"
    r.write_text(qrels, encoding="utf-8")
    return q, r


def test_load_judged_keeps_judged_queries_with_text_and_lists_the_rest(tmp_path):
    from es_semantic.evaluation import load_judged

    q, r = _files(tmp_path, {"1": "a", "2": "b", "3": "c"}, "1\td1\t1\n2\td2\t0\n9\td9\t1\n")
    judged = load_judged(q, r)
    assert judged.queries == {"1": "a", "2": "b"} and set(judged.qrels) == {"1", "2"}
    assert (judged.in_file, judged.unjudged, judged.textless) == (3, 1, ["9"])
    q, r = _files(tmp_path, {"1": "a"}, "9\td9\t1\n")
    with pytest.raises(ConfigError, match="none of the 1 queries judged in .* is in "):
        load_judged(q, r)


def test_eval_report_says_what_the_figures_leave_out(tmp_path):
    from es_semantic.evaluation import EvalReport, Judged

    judged = Judged({"1": "a", "2": "b", "3": " "}, {"1": {"d1": 1}, "2": {"d2": 0}, "3": {"d3": 1}}, 5, ["9"])
    figures = {"ndcg@10": 0.5, "recall@100": 1.0, "queries": 1, "skipped": 1, "config": "bm25"}
    report = EvalReport("faq", 50, judged, {"bm25": figures, "knn": {**figures, "ndcg@10": 0.7}}, ["d3"], 2)
    assert report.best()[0] == "knn"
    assert report.coverage() == ("scored 1 of 5 queries (skipped: 2 without judgements in the qrels, 1 with empty "
                                 "text, 1 without a relevant judgement); 1 judged queries not in the queries file "
                                 "were left out")
    warnings = report.warnings()
    assert warnings[0].startswith("1 judged queries are not in the queries file (e.g. 9)")
    assert "1 of 2 judged documents are not in index 'faq'" in warnings[1]
    assert warnings[2] == "skipped 1 queries with empty text (left out of the figures)"
    assert report.to_dict() == report.results
    nothing = EvalReport("faq", 50, judged, {"bm25": {**figures, "recall@100": 0.0}}, [], 2)
    assert any("no search found any judged document" in w for w in nothing.warnings())
