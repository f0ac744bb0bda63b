"""Choosing the "no good match" threshold (``min_score``) from judged queries.

``hybrid_search(min_score=t)`` answers a query with the first fused hit whose cosine similarity to
the query reaches ``t``, and says "no good match" when none does. Which ``t`` is right depends on
the model (similarities of one model mean nothing for another) and on the collection, so it is
measured, not guessed:

* an *answerable* query has a relevant document in the index (a judgment > 0 in the qrels);
* an *unanswerable* query has none: queries from a separate file of out-of-scope questions, judged
  queries whose judgments are all 0, and -- when no such queries are given -- a seeded *hold-out*
  of answerable queries whose relevant documents are taken out of their own results (the index is
  not touched: it simulates a question the FAQ does not cover).

For every candidate threshold each query ends one of five ways: answerable -> ``correct`` (the
answer is relevant), ``wrong``, or ``missed`` (no answer); unanswerable -> ``false_answer`` or
``abstained``. The recommended threshold maximises *accuracy* -- the share of queries that end
well (``correct`` + ``abstained``) -- or, with ``target_precision``, is the lowest threshold whose
answers are right at least that often (the most answers at that precision). It sits in the middle
of the gap between two observed similarities, so it does not hinge on one query's exact score.

Pure functions over the legs :func:`es_semantic.evaluation.fetch_legs` returns; no I/O here but in
:func:`run_calibration`.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError
from .evaluation import (
    LegRuns,
    Qrels,
    Variant,
    default_variants,
    evaluate_legs,
    evaluate_variants,
    fetch_legs,
    judged_queries,
)

#: Default share of answerable queries held out as unanswerable when no out-of-scope queries are given.
DEFAULT_HOLDOUT = 0.3
#: Step of the printed threshold grid (the recommendation itself is exact, not on the grid).
GRID_STEP = 0.05
#: Share of the judged queries held out from choosing the fusion: the figures it is reported on.
FUSION_HOLDOUT = 0.5
#: Fewer judged queries to choose on than this, and the library defaults stay.
MIN_FUSION_QUERIES = 20
#: A fusion replaces the better single leg only when its mean per-query nDCG@10 gain on the
#: queries it is chosen on is above this many standard errors (else the leg alone is the default).
FUSION_MARGIN_SE = 2.0
FUSION_METHODS = ("linear", "rrf", "bm25", "knn")


@dataclass(frozen=True)
class ThresholdRow:
    """How every query ends at one threshold (``None``: no threshold)."""

    threshold: float | None
    correct: int = 0
    wrong: int = 0
    missed: int = 0
    false_answers: int = 0
    abstained: int = 0

    @property
    def answerable(self) -> int:
        return self.correct + self.wrong + self.missed

    @property
    def unanswerable(self) -> int:
        return self.false_answers + self.abstained

    @property
    def answered(self) -> int:
        return self.correct + self.wrong + self.false_answers

    @property
    def accuracy(self) -> float:
        """Share of all queries that end well: a relevant answer, or none where none exists."""
        total = self.answerable + self.unanswerable
        return (self.correct + self.abstained) / total if total else 0.0

    @property
    def precision(self) -> float:
        """Share of the answers given that are right (1.0 when none is given)."""
        return self.correct / self.answered if self.answered else 1.0

    @property
    def top1(self) -> float:
        """Top-1 accuracy on the answerable queries, counting a withheld answer as a miss."""
        return self.correct / self.answerable if self.answerable else 0.0

    @property
    def false_answer_rate(self) -> float:
        """Share of the unanswerable queries that still got an answer."""
        return self.false_answers / self.unanswerable if self.unanswerable else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "accuracy": self.accuracy, "precision": self.precision, "top1": self.top1,
            "false_answer_rate": self.false_answer_rate, "answered": self.answered,
        }


@dataclass(frozen=True)
class _Query:
    steps: tuple[tuple[float, str], ...]
    top: str | None  # the fused top hit (what is answered with no threshold at all)
    relevant: frozenset[str]  # empty: unanswerable


@dataclass
class Calibration:
    """The threshold table and the recommendation."""

    method: str
    similarity: str
    objective: str  # "accuracy" | "precision>=0.9"
    recommended: ThresholdRow
    no_threshold: ThresholdRow
    rows: list[ThresholdRow] = field(default_factory=list)  # the printed grid, ascending
    held_out: list[str] = field(default_factory=list)  # answerable queries turned unanswerable
    note: str = ""
    queries: tuple[_Query, ...] = field(default=(), repr=False)
    fusion: FusionChoice | None = None  # set by evaluate_and_calibrate

    @property
    def min_score(self) -> float | None:
        return self.recommended.threshold

    def at(self, threshold: float | None) -> ThresholdRow:
        """How the same queries end at another threshold (e.g. one chosen on other queries)."""
        return _row(self.queries, threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "similarity": self.similarity, "objective": self.objective,
            "min_score": self.min_score, "recommended": self.recommended.to_dict(),
            "no_threshold": self.no_threshold.to_dict(), "rows": [r.to_dict() for r in self.rows],
            "held_out": len(self.held_out), "note": self.note,
            "fusion": self.fusion.to_dict() if self.fusion is not None else None,
        }

    def table(self) -> str:
        header = (f"{'min_score':>9}  {'accuracy':>8}  {'precision':>9}  {'top1':>6}  {'false ans':>9}  "
                  f"{'correct':>7}  {'wrong':>5}  {'missed':>6}  {'false':>5}  {'abstain':>7}")
        lines = [header, "-" * len(header)]
        grid = [r for r in self.rows if r.threshold != self.recommended.threshold]
        rows = [self.no_threshold, *sorted([*grid, self.recommended], key=lambda r: r.threshold or 0.0)]
        for row in rows:
            label = "none" if row.threshold is None else f"{row.threshold:.6g}"
            mark = "  <- recommended" if row is self.recommended else ""
            lines.append(
                f"{label:>9}  {row.accuracy:>8.4f}  {row.precision:>9.4f}  {row.top1:>6.4f}  "
                f"{row.false_answer_rate:>9.4f}  {row.correct:>7}  {row.wrong:>5}  {row.missed:>6}  "
                f"{row.false_answers:>5}  {row.abstained:>7}{mark}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------- pure parts


def answer_steps(ranked: Sequence[str], similarities: Mapping[str, float]) -> list[tuple[float, str]]:
    """The answer as a step function of the threshold: ``[(similarity, doc), ...]``, similarities rising.

    ``hybrid_search`` answers with the first hit in ``ranked`` (fused order) whose similarity reaches
    the threshold; hits without a similarity (not in the kNN window) never qualify. So the answer at
    threshold ``t`` is the first step whose similarity is ``>= t``; above the last step, none.
    """
    steps: list[tuple[float, str]] = []
    best = -math.inf
    for doc_id in ranked:
        sim = similarities.get(doc_id)
        if sim is not None and sim > best:
            steps.append((sim, doc_id))
            best = sim
    return steps


def answer_at(steps: Sequence[tuple[float, str]], threshold: float) -> str | None:
    """The answer under ``threshold``: the first step whose similarity reaches it, else None."""
    at = bisect.bisect_left([s for s, _ in steps], threshold)
    return steps[at][1] if at < len(steps) else None


_OUTCOMES = ("correct", "wrong", "missed", "false_answers", "abstained")


def _outcome(q: _Query, answer: str | None) -> str:
    if q.relevant:
        return "missed" if answer is None else "correct" if answer in q.relevant else "wrong"
    return "abstained" if answer is None else "false_answers"


def _row(queries: Iterable[_Query], threshold: float | None) -> ThresholdRow:
    counts = dict.fromkeys(_OUTCOMES, 0)
    for q in queries:
        counts[_outcome(q, q.top if threshold is None else answer_at(q.steps, threshold))] += 1
    return ThresholdRow(threshold, **counts)


def _rows_between_cuts(queries: Sequence[_Query], cuts: Sequence[float], thresholds: Sequence[float]) -> list[ThresholdRow]:
    """The row for each threshold, where ``thresholds[i]`` lies in ``(cuts[i-1], cuts[i]]`` (the last
    one above every cut): one pass over the steps with difference arrays, not queries x thresholds."""
    n = len(thresholds)
    where = {cut: i for i, cut in enumerate(cuts)}
    diff = {key: [0] * (n + 1) for key in _OUTCOMES}
    for q in queries:
        start = 0
        for sim, doc in q.steps:  # answer ``doc`` for thresholds in (previous step, sim]
            end = where[sim]
            key = _outcome(q, doc)
            diff[key][start] += 1
            diff[key][end + 1] -= 1
            start = end + 1
        key = _outcome(q, None)  # above the last step: no answer
        diff[key][start] += 1
        diff[key][n] -= 1
    rows = []
    running = dict.fromkeys(_OUTCOMES, 0)
    for i, threshold in enumerate(thresholds):
        for key in _OUTCOMES:
            running[key] += diff[key][i]
        rows.append(ThresholdRow(threshold, **running))
    return rows


def _counts(row: ThresholdRow) -> tuple[int, ...]:
    return tuple(getattr(row, key) for key in _OUTCOMES)


def _widest_best(queries: Sequence[_Query], cuts: Sequence[float], rows: Sequence[ThresholdRow]) -> ThresholdRow:
    """The best-accuracy row, its threshold moved to the middle of the widest run of thresholds that
    share that accuracy: the choice least sensitive to a small shift of the similarities."""
    top = max(row.accuracy for row in rows)
    bounds = [-math.inf, *cuts, math.inf]  # rows[i] holds for thresholds in (bounds[i], bounds[i + 1]]
    runs: list[tuple[int, int]] = []
    for i, row in enumerate(rows):
        if row.accuracy != top:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))

    def width(run: tuple[int, int]) -> float:
        low, high = bounds[run[0]], bounds[run[1] + 1]
        return high - low if math.isfinite(low) and math.isfinite(high) else 0.0

    first, last = max(runs, key=width)
    if first == last or not math.isfinite(bounds[first]) or not math.isfinite(bounds[last + 1]):
        return rows[first if math.isfinite(bounds[last + 1]) else last]
    return _row(queries, _between(bounds[first], bounds[last + 1]))


def _between(low: float, high: float) -> float:
    """A round threshold in (low, high]: the midpoint, cut to as few decimals as stay inside."""
    mid = (low + high) / 2 if math.isfinite(low) else high - 0.005
    for digits in (2, 3, 4, 5, 6):
        value = round(mid, digits)
        if low < value <= high:
            return value
    return mid


def _candidates(cuts: Sequence[float]) -> list[float]:
    """One threshold per gap between the similarities ``cuts`` (ascending), each in [-1, 1]: what
    ``min_score`` can store. The gap above the highest one (no answer at all) is a candidate only
    where a threshold fits between that similarity and 1."""
    lows = [-math.inf, *cuts[:-1]]
    candidates = [max(-1.0, _between(low, high)) for low, high in zip(lows, cuts)]
    if not cuts:
        return [0.0]
    if cuts[-1] < 1.0:
        candidates.append(_between(cuts[-1], min(1.0, cuts[-1] + 0.01)))
    return candidates


def calibrate_queries(
    ranked: Mapping[str, Sequence[str]],
    similarities: Mapping[str, Mapping[str, float]],
    relevant: Mapping[str, Iterable[str]],
    *,
    method: str = "linear",
    similarity: str = "cosine",
    target_precision: float | None = None,
    held_out: Sequence[str] = (),
    grid_step: float = GRID_STEP,
) -> Calibration:
    """The threshold table and recommendation for queries given as fused rankings.

    ``ranked``: query id -> fused ranking; ``similarities``: query id -> doc id -> cosine similarity
    (the kNN leg's window); ``relevant``: query id -> relevant doc ids (empty for unanswerable).
    """
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise ConfigError(f"target precision must be in (0, 1], got {target_precision}")
    queries = []
    for qid, ranking in ranked.items():
        steps = answer_steps(ranking, similarities.get(qid, {}))
        queries.append(_Query(tuple(steps), ranking[0] if ranking else None, frozenset(relevant.get(qid, ()))))
    if not queries:
        raise ConfigError("no queries to calibrate on")
    n_answerable = sum(1 for q in queries if q.relevant)
    if target_precision is None and n_answerable == len(queries):
        raise ConfigError(
            "calibrating for accuracy needs unanswerable queries: give --no-answer-queries, or a --holdout "
            "share above 0, or ask for --target-precision instead"
        )
    # Every distinct similarity a possible answer has is a candidate; between two of them nothing changes.
    cuts = sorted({s for q in queries for s, _ in q.steps})
    candidates = _candidates(cuts)
    evaluated = _rows_between_cuts(queries, cuts, candidates)
    no_threshold = _row(queries, None)

    note = ""
    if target_precision is not None:
        objective = f"precision>={target_precision:g}"
        meeting = [row for row in evaluated if row.answered and row.precision >= target_precision]
        if meeting:
            best = min(meeting, key=lambda r: r.threshold)
        else:
            answering = [row for row in evaluated if row.answered] or evaluated[:1]
            best = max(answering, key=lambda r: (r.precision, r.answered))
            note = (f"no threshold reaches precision {target_precision:g}; the best is {best.precision:.4f} "
                    f"at min_score {best.threshold:g}")
    else:
        objective = "accuracy"
        best = _widest_best(queries, cuts, evaluated)
    lowest = math.floor(min(cuts) / grid_step) * grid_step if cuts else 0.0
    highest = math.ceil(max(cuts) / grid_step) * grid_step if cuts else 1.0
    grid = [round(lowest + i * grid_step, 6) for i in range(round((highest - lowest) / grid_step) + 1)]
    rows = []
    for row in (_row(queries, t) for t in grid):  # a row only where something changes
        if not rows or _counts(row) != _counts(rows[-1]):
            rows.append(row)
    return Calibration(method, similarity, objective, best, no_threshold, rows, list(held_out), note, tuple(queries))


def hold_out(qrels: Qrels, share: float, *, seed: int = 0) -> list[str]:
    """A seeded sample of the answerable queries (``share`` of them) to treat as unanswerable."""
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"hold-out share must be in [0, 1), got {share}")
    answerable = sorted(q for q, judged in qrels.items() if any(g > 0 for g in judged.values()))
    count = round(share * len(answerable))
    return sorted(random.Random(seed).sample(answerable, count)) if count else []


def calibrate_legs(
    runs: LegRuns,
    qrels: Qrels,
    variant: Variant,
    *,
    similarity: str,
    unanswerable: Iterable[str] = (),
    holdout: float = 0.0,
    seed: int = 0,
    target_precision: float | None = None,
) -> Calibration:
    """:func:`calibrate_queries` over fetched legs: judged queries of ``qrels`` plus ``unanswerable``
    query ids (out of scope), with a ``holdout`` share of answerable queries turned unanswerable."""
    from .search.hybrid import knn_similarity

    held = set(hold_out(qrels, holdout, seed=seed)) if holdout else set()
    skipped = set(runs.skipped)
    relevant: dict[str, set[str]] = {}
    for qid, judged in qrels.items():
        if qid not in skipped:
            relevant[qid] = {d for d, g in judged.items() if g > 0}
    for qid in unanswerable:
        if qid not in skipped:
            relevant.setdefault(qid, set())
    ranked: dict[str, list[str]] = {}
    sims: dict[str, dict[str, float]] = {}
    for qid, docs in relevant.items():
        legs = runs.legs(qid)
        if qid in held:
            # The question stays; its answers leave the index (for this query's results only).
            legs = {leg: [(d, s) for d, s in hits if d not in docs] for leg, hits in legs.items()}
            relevant[qid] = set()
        ranked[qid] = variant.rank(legs, k=variant.window)
        # clipped to [-1, 1]: rounding can put a unit vector's cosine a hair outside
        sims[qid] = {d: max(-1.0, min(1.0, knn_similarity(s, similarity))) for d, s in legs["knn"]}
    return calibrate_queries(ranked, sims, relevant, method=variant.name, similarity=similarity,
                             target_precision=target_precision, held_out=sorted(held))


# ---------------------------------------------------------------- the runner


def variant_for(method: str | None, window: int = 100) -> Variant:
    """The library-default variant of ``method`` (default: ``hybrid_search``'s default method)."""
    from .search.hybrid import DEFAULTS

    method = method or DEFAULTS.method
    if method == "bm25":
        raise ConfigError("min_score thresholds the kNN similarity; calibrate with method linear, rrf or knn")
    for variant in default_variants(window):
        if variant.method == method:
            return variant
    raise ConfigError(f"unknown method {method!r}; use linear, rrf or knn")


def run_calibration(
    es: Any,
    index: str,
    queries: Mapping[str, str],
    qrels: Qrels,
    **options: Any,
) -> Calibration:
    """Fetch both legs for the judged and the out-of-scope queries, and calibrate
    (:func:`evaluate_and_calibrate` without the retrieval figures)."""
    return evaluate_and_calibrate(es, index, queries, qrels, **options)[1]


def evaluate_and_calibrate(
    es: Any,
    index: str,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    no_answer_queries: Mapping[str, str] | None = None,
    holdout: float | None = None,
    seed: int = 0,
    target_precision: float | None = None,
    method: str | None = None,
    window: int = 100,
    sweep: bool = False,
    progress: Callable[[int, int], None] | None = None,
    fusion_holdout: float = FUSION_HOLDOUT,
    **search_options: Any,
) -> tuple[dict[str, dict[str, Any]], Calibration]:
    """:func:`es_semantic.evaluation.run_eval`'s figures and the calibration, from one fetch of the legs:
    the fusion (:func:`choose_fusion`, in ``Calibration.fusion``), then the threshold for it (for
    ``variant_for(method)`` where the chosen fusion has no kNN leg to threshold).

    ``holdout`` defaults to :data:`DEFAULT_HOLDOUT` without ``no_answer_queries`` and to 0 with them.
    """
    no_answer_queries = dict(no_answer_queries or {})
    queries_to_fetch = calibration_queries(queries, qrels, no_answer_queries)
    runs = fetch_legs(es, queries_to_fetch, index=index, window=window, progress=progress, **search_options)
    results = evaluate_legs(runs, qrels, sweep=sweep, window=window)
    choice = choose_fusion(runs, qrels, holdout=fusion_holdout, seed=seed, window=window, method=method)
    variant = choice.chosen if choice.chosen is not None and choice.chosen.method != "bm25" else variant_for(method, window)
    found = calibrate_legs(runs, qrels, variant, similarity=index_similarity(es, index),
                           unanswerable=no_answer_queries, holdout=default_holdout(holdout, no_answer_queries),
                           seed=seed, target_precision=target_precision)
    found.fusion = choice
    return results, found


def save_calibration(es: Any, index: str, found: Calibration) -> Any:
    """Store the calibrated ``min_score`` and fusion in the ``_meta`` of ``index`` (every index behind
    an alias); returns the new configuration."""
    from .mappings import update_stored_config

    fusion = found.fusion.fusion if found.fusion is not None else None
    return update_stored_config(es, index, min_score=found.min_score, fusion=fusion)


def calibration_queries(queries: Mapping[str, str], qrels: Qrels, no_answer_queries: Mapping[str, str]) -> dict[str, str]:
    """The judged queries and the out-of-scope ones, checked not to overlap."""
    clash = set(no_answer_queries) & set(qrels)
    if clash:
        raise ConfigError(f"{len(clash)} out-of-scope query ids are also judged in the qrels, e.g. {sorted(clash)[:3]}")
    return judged_queries(queries, qrels) | dict(no_answer_queries)


def default_holdout(holdout: float | None, no_answer_queries: Mapping[str, str]) -> float:
    return (0.0 if no_answer_queries else DEFAULT_HOLDOUT) if holdout is None else holdout


def index_similarity(es: Any, index: str) -> str:
    """The vector similarity configured for ``index`` (how kNN scores turn into cosine)."""
    from .search.hybrid import index_info

    return index_info(es, index).config.similarity


# ---------------------------------------------------------------- the fusion of each index



def check_fusion(value: Any) -> dict[str, Any]:
    """A stored ``fusion`` as a clean dict, or a ConfigError saying what is wrong with it:
    ``{"method": "linear", "weights": {"bm25": w, "knn": w}, "normalizer": n}``,
    ``{"method": "rrf", "weights": {...}, "rank_constant": k}``, ``{"method": "bm25"}`` or ``{"method": "knn"}``."""
    from .search.fusion import NORMALIZERS

    if not isinstance(value, Mapping) or value.get("method") not in FUSION_METHODS:
        raise ConfigError(f"fusion must name a method ({', '.join(FUSION_METHODS)}), got {value!r}")
    method = value["method"]
    keys = {"linear": {"weights", "normalizer"}, "rrf": {"weights", "rank_constant"}}.get(method, set())
    unknown = set(value) - keys - {"method"}
    if unknown:
        raise ConfigError(f"fusion {method!r} has unknown settings {sorted(unknown)}; it takes {sorted(keys)}")
    clean: dict[str, Any] = {"method": method}
    if "weights" in keys:
        weights = value.get("weights")
        if not isinstance(weights, Mapping) or set(weights) != {"bm25", "knn"} or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                for w in weights.values()):
            raise ConfigError(f"fusion weights must be {{'bm25': w, 'knn': w}} with w >= 0, got {weights!r}")
        clean["weights"] = {"bm25": float(weights["bm25"]), "knn": float(weights["knn"])}
    if method == "linear":
        if value.get("normalizer") not in NORMALIZERS:
            raise ConfigError(f"fusion normalizer must be one of {', '.join(NORMALIZERS)}, got {value.get('normalizer')!r}")
        clean["normalizer"] = value["normalizer"]
    if method == "rrf":
        constant = value.get("rank_constant")
        if isinstance(constant, bool) or not isinstance(constant, (int, float)) or constant != int(constant) or constant < 1:
            raise ConfigError(f"fusion rank_constant must be a whole number >= 1, got {constant!r}")
        clean["rank_constant"] = int(constant)
    return clean


def fusion_of(variant: Variant) -> dict[str, Any]:
    """The ``fusion`` to store for an evaluated variant."""
    fusion: dict[str, Any] = {"method": variant.method}
    if variant.method in ("linear", "rrf"):
        fusion["weights"] = dict(variant.weights)
    if variant.method == "linear":
        fusion["normalizer"] = variant.normalizer
    if variant.method == "rrf":
        fusion["rank_constant"] = int(variant.rank_constant)
    return check_fusion(fusion)


def index_defaults(config: Any, defaults: Any) -> Any:
    """``hybrid_search``'s ``Defaults`` as an index's ``_meta`` sets them: its calibrated ``fusion``, and
    BM25 summing a field's and its language sub-fields' scores where it records ``languages``."""
    from dataclasses import replace

    from .languages import SUM_PER_FIELD

    if config.languages is not None:
        defaults = replace(defaults, multi_match_type=SUM_PER_FIELD)
    return fusion_defaults(config.fusion, defaults)


def fusion_defaults(fusion: Mapping[str, Any] | None, defaults: Any) -> Any:
    """``hybrid_search``'s ``Defaults`` with an index's stored ``fusion`` in place (unchanged for None)."""
    from dataclasses import replace

    if not fusion:
        return defaults
    changes: dict[str, Any] = {"method": fusion["method"]}
    if fusion["method"] == "linear":
        changes.update(linear_weights=dict(fusion["weights"]), normalizer=fusion["normalizer"])
    elif fusion["method"] == "rrf":
        changes.update(rrf_weights=dict(fusion["weights"]), rank_constant=fusion["rank_constant"])
    return replace(defaults, **changes)


@dataclass
class FusionChoice:
    """The fusion chosen for an index, and the figures that chose it and report it."""

    chosen: Variant | None  # None: too few queries, the library defaults stay
    choose_ids: list[str]
    report_ids: list[str]
    choose_figures: dict[str, dict[str, Any]]  # variant name -> metrics on the queries chosen on
    report_figures: dict[str, dict[str, Any]]  # the same on the held-out queries
    note: str = ""

    @property
    def fusion(self) -> dict[str, Any] | None:
        return fusion_of(self.chosen) if self.chosen is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"fusion": self.fusion, "chosen": self.chosen.name if self.chosen else None,
                "chosen_on": len(self.choose_ids), "reported_on": len(self.report_ids),
                "choose_figures": self.choose_figures, "report_figures": self.report_figures, "note": self.note}

    def describe(self, index: str, *, saved: bool) -> str:
        """The report ``eval --calibrate`` prints: the table, the choice and where it went."""
        if self.chosen is None:
            return f"fusion: {self.note}"
        head = (f"fusion for {index!r}, chosen on {len(self.choose_ids)} judged queries and reported on the other "
                f"{len(self.report_ids)} (seeded split):")
        lines = [head, self.table(), f"chosen: {self.chosen.describe()}"]
        if self.note:
            lines.append(f"note: {self.note}")
        lines.append(f"stored in the _meta of {index!r}: hybrid_search() and search use it by default"
                     if saved else "store it with --save")
        return "\n".join(lines)

    def table(self) -> str:
        """nDCG@10 and Top-1 of the legs, the library defaults and the chosen fusion, on both parts."""
        lines = [f"{'ranking':<32} {'nDCG@10 chosen on':>17} {'nDCG@10 held out':>16} {'top1 held out':>13}"]
        for name, report in self.report_figures.items():
            chosen = self.choose_figures.get(name, {})
            lines.append(f"{name:<32} {chosen.get('ndcg@10', float('nan')):>17.4f} {report['ndcg@10']:>16.4f} "
                         f"{report['top1']:>13.4f}")
        return "\n".join(lines)


def split_queries(qids: Iterable[str], holdout: float, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """A seeded split of ``qids`` into the part to choose on and the ``holdout`` share to report on."""
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"the fusion hold-out share must be in (0, 1), got {holdout}")
    ordered = sorted(qids)
    report = set(random.Random(seed).sample(ordered, round(holdout * len(ordered))))
    return [q for q in ordered if q not in report], sorted(report)


def _per_query_ndcg(runs: LegRuns, qrels: Qrels, variant: Variant, qids: Sequence[str]) -> list[float]:
    from .evaluation import ndcg_at

    return [ndcg_at(variant.rank(runs.legs(qid)), qrels[qid], 10) for qid in qids]


def _fusion_candidates(window: int, method: str | None) -> list[Variant]:
    from .evaluation import sweep_variants

    candidates = default_variants(window) + sweep_variants(window)
    if method is not None:  # the caller fixed the method: choose its parameters (or a leg alone)
        candidates = [v for v in candidates if v.method in (method, "bm25", "knn")]
    return candidates


def _beats(gains: Sequence[float]) -> bool:
    """Whether per-query gains are positive beyond ``FUSION_MARGIN_SE`` standard errors of their mean."""
    n = len(gains)
    mean = sum(gains) / n
    spread = math.sqrt(sum((g - mean) ** 2 for g in gains) / max(1, n - 1)) / math.sqrt(n)
    return mean > FUSION_MARGIN_SE * spread and mean > 0


def choose_fusion(runs: LegRuns, qrels: Qrels, *, holdout: float = FUSION_HOLDOUT, seed: int = 0,
                  window: int = 100, method: str | None = None) -> FusionChoice:
    """Choose the fusion for an index on its judged queries: the best nDCG@10 of the legs alone, the
    library defaults and the sweep grid on a seeded part of the queries, where a fusion must beat the
    better leg by a clear margin (:data:`FUSION_MARGIN_SE`); reported on the ``holdout`` rest."""
    skipped = set(runs.skipped)
    judged = [q for q, docs in qrels.items() if q not in skipped and any(g > 0 for g in docs.values())]
    choose_ids, report_ids = split_queries(judged, holdout, seed=seed)
    if len(choose_ids) < MIN_FUSION_QUERIES or not report_ids:
        return FusionChoice(None, choose_ids, report_ids, {}, {},
                            f"{len(judged)} judged queries are too few to choose a fusion on (split {holdout:g} "
                            f"held out, at least {MIN_FUSION_QUERIES} to choose on): the library defaults stay")
    candidates = _fusion_candidates(window, method)
    scores = {v.name: _per_query_ndcg(runs, qrels, v, choose_ids) for v in candidates}
    by_name = {v.name: v for v in candidates}
    best_leg = max(("bm25", "knn"), key=lambda name: sum(scores[name]))
    best = max(candidates, key=lambda v: sum(scores[v.name]))
    note = ""
    if best.method not in ("bm25", "knn"):
        gains = [f - leg for f, leg in zip(scores[best.name], scores[best_leg])]
        if not _beats(gains):
            note = (f"the best fusion ({best.describe()}) does not beat {best_leg} alone by a clear margin on the "
                    f"{len(choose_ids)} queries chosen on: {best_leg} alone is the default")
            best = by_name[best_leg]
    shown = [by_name[n] for n in ("bm25", "knn", "hybrid rrf", "hybrid linear") if n in by_name]
    shown += [best] if best not in shown else []
    figures = {}
    for part, ids in (("choose", choose_ids), ("report", report_ids)):
        subset = {q: qrels[q] for q in ids}
        figures[part] = evaluate_variants(runs, subset, shown)
    for part in figures.values():  # the chosen one under a name that says so
        part[f"chosen: {best.name}"] = part[best.name]
    return FusionChoice(best, choose_ids, report_ids, figures["choose"], figures["report"], note)
