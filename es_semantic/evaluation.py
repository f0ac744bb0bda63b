"""Retrieval evaluation: BEIR-layout loading, metrics as pure functions, and the eval runner.

Metrics follow trec_eval / BEIR (pytrec_eval) definitions:

* ``ndcg_at(ranked, qrels, 10)``: DCG = sum_{i=1..k} gain_i / log2(i + 1) with the graded
  relevance as gain (trec_eval's linear gain), divided by the DCG of the ideal ordering of all
  judged-relevant documents cut at k.
* ``mrr_at(ranked, qrels, 10)``: 1 / rank of the first relevant document within k, else 0.
* ``recall_at(ranked, qrels, k)``: relevant documents found in the top k / all relevant documents.
* ``top1(ranked, qrels)``: 1 if the first hit is relevant (FAQ "Top-1 accuracy").

A document is relevant when its judgment is > 0. Queries without any relevant judgment are
skipped (as trec_eval does). Figures are means over the evaluated queries.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .search.options import DEFAULTS, Defaults, SearchOptions

log = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]  # query id -> doc id -> graded relevance

#: The metrics every report shows, in this order.
METRICS = ("ndcg@10", "mrr@10", "recall@3", "recall@10", "recall@100", "top1")


# ---------------------------------------------------------------- loading


def _lines(path: str | Path) -> Iterable[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (a BOM is ignored; line ends kept); undecodable
    bytes are a ConfigError naming the line, not a traceback."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}:{number}: not UTF-8 ({exc.reason} at byte {exc.start} of the line); save the file as UTF-8"
                ) from None
            yield number, line.removeprefix("\ufeff") if number == 1 else line


def read_jsonl(path: str | Path) -> Iterable[dict[str, Any]]:
    """Yield one JSON object per non-blank line of a JSON-lines file."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object like {{\"_id\": ..., \"text\": ...}}, "
                              f"got {type(row).__name__}")
        yield row


def load_queries(path: str | Path, ids: Iterable[str] | None = None) -> dict[str, str]:
    """``{"_id": ..., "text": ...}`` lines -> ``{query id: text}`` (only ``ids`` when given)."""
    wanted = set(ids) if ids is not None else None
    queries: dict[str, str] = {}
    for row in read_jsonl(path):
        qid = str(row.get("_id", row.get("id", "")))
        if not qid:
            raise ConfigError(f"{path}: a query has no _id")
        if wanted is None or qid in wanted:
            queries[qid] = str(row.get("text", ""))
    return queries


def load_corpus(path: str | Path) -> Iterable[dict[str, Any]]:
    """Yield BEIR corpus rows as documents: ``{"_id", "title", "text", ...}`` (metadata dropped)."""
    for row in read_jsonl(path):
        doc = {k: v for k, v in row.items() if k != "metadata"}
        doc["_id"] = str(doc.get("_id", ""))
        yield doc


def load_qrels(path: str | Path) -> Qrels:
    """Read a BEIR/TREC qrels file: ``query-id<TAB>corpus-id<TAB>score`` with an optional header,
    CRLF or LF line endings; the 4-column TREC form (``qid 0 docid rel``) is accepted too."""
    qrels: Qrels = {}
    for number, raw in _lines(path):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) == 4:
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise ConfigError(f"{path}:{number}: expected 'query-id, corpus-id, score', got {line!r}")
        qid, did, score = (p.strip() for p in parts)
        try:
            grade = int(float(score))
        except ValueError:
            if number == 1 and _HEADER_WORD.search(score):  # a header like "query-id corpus-id score"
                continue
            raise ConfigError(f"{path}:{number}: score {score!r} is not a number") from None
        qrels.setdefault(qid, {})[did] = grade
    return qrels


#: How the score column of a qrels header is named (a first line with another word is a bad judgment).
_HEADER_WORD = re.compile(r"^(score|rel|relevance|label|grade|judg(e)?ment)s?$", re.IGNORECASE)


@dataclass
class Dataset:
    """A BEIR-layout collection: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

    root: Path
    queries: dict[str, str]
    qrels: Qrels

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"

    def corpus(self) -> Iterable[dict[str, Any]]:
        return load_corpus(self.corpus_path)


def load_beir(root: str | Path, split: str = "test") -> Dataset:
    """Load the queries judged in ``qrels/<split>.tsv`` and their judgments."""
    root = Path(root)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not path.exists():
            raise ConfigError(f"{path} is missing; expected a BEIR layout (corpus.jsonl, queries.jsonl, qrels/*.tsv)")
    qrels = load_qrels(qrels_path)
    queries = load_queries(root / "queries.jsonl", qrels)
    return Dataset(root, queries, {q: r for q, r in qrels.items() if q in queries})


# ---------------------------------------------------------------- metrics


def _relevant(judged: Mapping[str, int]) -> dict[str, int]:
    return {d: g for d, g in judged.items() if g > 0}


def dcg(gains: Sequence[float]) -> float:
    """sum gain_i / log2(i + 1), i from 1."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    relevant = _relevant(judged)
    if not relevant:
        return 0.0
    ideal = dcg(sorted(relevant.values(), reverse=True)[:k])
    return dcg([relevant.get(d, 0) for d in ranked[:k]]) / ideal


def mrr_at(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    relevant = _relevant(judged)
    for i, doc_id in enumerate(ranked[:k], start=1):
        if doc_id in relevant:
            return 1.0 / i
    return 0.0


def recall_at(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = _relevant(judged)
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant.keys()) / len(relevant)


def top1(ranked: Sequence[str], judged: Mapping[str, int]) -> float:
    return 1.0 if ranked and judged.get(ranked[0], 0) > 0 else 0.0


def _dedupe(ranked: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    return [d for d in ranked if not (d in seen or seen.add(d))]


def query_metrics(ranked: Sequence[str], judged: Mapping[str, int]) -> dict[str, float]:
    """All of :data:`METRICS` for one query's ranking."""
    ranked = _dedupe(ranked)
    return {
        "ndcg@10": ndcg_at(ranked, judged, 10),
        "mrr@10": mrr_at(ranked, judged, 10),
        "recall@3": recall_at(ranked, judged, 3),
        "recall@10": recall_at(ranked, judged, 10),
        "recall@100": recall_at(ranked, judged, 100),
        "top1": top1(ranked, judged),
    }


def evaluate_run(run: Mapping[str, Sequence[str]], qrels: Qrels) -> dict[str, float]:
    """Mean metrics over the judged queries with at least one relevant document.

    A query missing from ``run`` counts as an empty ranking (all zeros), never as skipped.
    """
    totals = dict.fromkeys(METRICS, 0.0)
    count = 0
    for qid, judged in qrels.items():
        if not _relevant(judged):
            continue
        count += 1
        for name, value in query_metrics(run.get(qid, ()), judged).items():
            totals[name] += value
    if count == 0:
        raise ConfigError("no judged query has a relevant document; check the qrels file and the query ids")
    return {name: total / count for name, total in totals.items()} | {"queries": count}


# ---------------------------------------------------------------- the runner


@dataclass
class LegRuns:
    """Both legs' windows for every query, fetched once; every fusion variant is computed from them."""

    bm25: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    knn: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    #: Query ids not searched because their text is empty (after removing control characters).
    skipped: list[str] = field(default_factory=list)

    def legs(self, qid: str) -> dict[str, list[tuple[str, float]]]:
        return {"bm25": self.bm25.get(qid, []), "knn": self.knn.get(qid, [])}


#: Queries whose legs travel in one ``_msearch`` (2 searches each).
BATCH_QUERIES = 32


def fetch_legs(
    es: Any,
    queries: Mapping[str, str],
    *,
    index: str,
    window: int | None = None,
    options: SearchOptions | None = None,
    legs: Sequence[str] = ("bm25", "knn"),
    embedder: Any = None,
    defaults: Defaults = DEFAULTS,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = BATCH_QUERIES,
    **keywords: Any,
) -> LegRuns:
    """Run ``legs`` for every query: ``batch_size`` queries per ``_msearch``, queries embedded in batches.

    ``options`` (and ``keywords``, ``window``: fields of :class:`SearchOptions`) give the window,
    fields, filter and kNN candidates. A query whose text is empty is skipped (listed in
    ``LegRuns.skipped``) instead of failing the whole evaluation."""
    from .search.hybrid import fetch_legs_batch, get_embedder, index_info, prefill_query_cache

    chosen = SearchOptions.of(options, **keywords, **({"window": window} if window is not None else {}))
    runs = LegRuns()
    usable = _searchable(queries, runs.skipped)
    if "knn" in legs:
        embedder = embedder or get_embedder(index_info(es, index).config)
    step = max(1, batch_size)
    for start in range(0, len(usable), step):
        chunk = usable[start: start + step]
        # Embedded per chunk: the vectors of one chunk are held here, never the whole query set.
        vectors = prefill_query_cache(embedder, [t for _, t in chunk]) if "knn" in legs else None
        results = fetch_legs_batch(es, [t for _, t in chunk], index=index, options=chosen, legs=legs,
                                   embedder=embedder, vectors=vectors, defaults=defaults)
        for (qid, _), result in zip(chunk, results):
            runs.bm25[qid] = result.get("bm25", [])
            runs.knn[qid] = result.get("knn", [])
        if progress is not None:
            progress(start + len(chunk), len(usable))
    return runs


def _searchable(queries: Mapping[str, str], skipped: list[str]) -> list[tuple[str, str]]:
    """The (id, text) of the queries with some text to search; the others' ids go to ``skipped``."""
    from .search.hybrid import clean_query

    usable = []
    for qid, text in queries.items():
        try:
            clean_query(text)
        except ConfigError:
            skipped.append(qid)
        else:
            usable.append((qid, text))
    if skipped:
        log.info("skipping %d queries with empty text, e.g. %s", len(skipped), skipped[:3])
    return usable


@dataclass(frozen=True)
class Variant:
    """One way of ranking: a single leg, or a fusion with its parameters."""

    name: str
    method: str  # "bm25" | "knn" | "rrf" | "linear"
    weights: tuple[tuple[str, float], ...] = ()
    rank_constant: float = 60
    normalizer: str = "minmax"
    window: int = 100

    def describe(self) -> str:
        if self.method in ("bm25", "knn"):
            return self.method
        w = ",".join(f"{k}={v:g}" for k, v in self.weights)
        if self.method == "rrf":
            return f"rrf(k={self.rank_constant:g}, window={self.window}, {w})"
        return f"linear({self.normalizer}, window={self.window}, {w})"

    def search_flags(self) -> list[str]:
        """The ``es-semantic search`` options that rank the way this variant does."""
        flags = ["--method", self.method, "--window", str(self.window)]
        if self.method in ("bm25", "knn"):
            return flags
        if self.method == "rrf":
            flags += ["--rank-constant", f"{self.rank_constant:g}"]
        else:
            flags += ["--normalizer", self.normalizer]
        for leg, weight in self.weights:
            flags += [f"--{leg}-weight", f"{weight:g}"]
        return flags

    def rank(self, legs: Mapping[str, Sequence[tuple[str, float]]], k: int = 100) -> list[str]:
        from .search.fusion import fuse

        if self.method in ("bm25", "knn"):
            return [d for d, _ in legs[self.method][:k]]
        fused = fuse(legs, self.method, rank_constant=self.rank_constant, weights=dict(self.weights),
                     normalizer=self.normalizer, window=self.window)
        return [f.id for f in fused[:k]]


def evaluate_variants(runs: LegRuns, qrels: Qrels, variants: Iterable[Variant]) -> dict[str, dict[str, float]]:
    """Metrics for each variant, computed from the same fetched legs."""
    results: dict[str, dict[str, float]] = {}
    for variant in variants:
        run = {qid: variant.rank(runs.legs(qid)) for qid in qrels}
        results[variant.name] = evaluate_run(run, qrels) | {  # type: ignore[operator]
            "config": variant.describe(), "search_flags": " ".join(variant.search_flags())}
    return results


def default_variants(window: int = 100) -> list[Variant]:
    """BM25 alone, kNN alone, and both fusions with the library defaults."""
    return [
        Variant("bm25", "bm25", window=window),
        Variant("knn", "knn", window=window),
        Variant("hybrid rrf", "rrf", tuple(DEFAULTS.rrf_weights.items()), DEFAULTS.rank_constant, window=window),
        Variant("hybrid linear", "linear", tuple(DEFAULTS.linear_weights.items()),
                normalizer=DEFAULTS.normalizer, window=window),
    ]


def sweep_variants(window: int = 100) -> list[Variant]:
    """A grid of rank constants, weights and normalisers for ``eval --sweep``."""
    variants: list[Variant] = []
    for c in (1, 5, 10, 20, 40, 60, 100):
        for wk in (0.5, 1.0, 1.5, 2.0, 3.0):
            variants.append(Variant(f"rrf k={c} knn_w={wk}", "rrf", (("bm25", 1.0), ("knn", wk)), c, window=window))
    for norm in ("minmax", "l2_norm", "zscore"):
        for alpha in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
            weights = (("bm25", round(1 - alpha, 2)), ("knn", alpha))
            variants.append(Variant(f"linear {norm} knn_w={alpha}", "linear", weights, normalizer=norm, window=window))
    return variants


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width table: one row per variant, one column per metric."""
    name_width = max([len("method")] + [len(n) for n in results])
    header = "method".ljust(name_width) + "".join(f"{m:>11}" for m in METRICS)
    lines = [header, "-" * len(header)]
    for name, figures in results.items():
        lines.append(name.ljust(name_width) + "".join(f"{figures[m]:>11.4f}" for m in METRICS))
    return "\n".join(lines)


# ---------------------------------------------------------------- whole-collection runs


def missing_documents(es: Any, index: str, ids: Iterable[str], *, batch_size: int = 1000) -> list[str]:
    """The ``ids`` that no document of ``index`` has (an ``ids`` query per batch; aliases over
    several indices included). A judged document missing from the index can never be found, so the
    figures count it as a miss: usually the qrels' corpus ids are not the documents' ``_id``."""
    wanted = sorted(set(ids))
    missing: list[str] = []
    for start in range(0, len(wanted), batch_size):
        batch = wanted[start:start + batch_size]
        response = es.search(index=index, query={"ids": {"values": batch}}, size=len(batch), source=False)
        found = {hit["_id"] for hit in response["hits"]["hits"]}
        missing += [doc for doc in batch if doc not in found]
    return missing



def run_eval(
    es: Any,
    index: str,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    sweep: bool = False,
    window: int = 100,
    progress: Callable[[int, int], None] | None = None,
    **search_options: Any,
) -> dict[str, dict[str, Any]]:
    """BM25 alone, kNN alone, hybrid rrf and hybrid linear (defaults), plus the sweep grid if asked.

    Both legs are fetched once per query; every variant is fused from the same legs with the
    formulas of :mod:`es_semantic.search.fusion` (the client-side path of ``hybrid_search``).
    Each variant's figures include ``queries`` (evaluated) and ``skipped`` (queries with empty
    text, left out of the means).
    """
    runs = fetch_legs(es, judged_queries(queries, qrels), index=index, window=window, progress=progress,
                      **search_options)
    return evaluate_legs(runs, qrels, sweep=sweep, window=window,
                         bm25_only=tuple(search_options.get("legs", ("bm25", "knn"))) == ("bm25",))


def judged_queries(queries: Mapping[str, str], qrels: Qrels) -> dict[str, str]:
    """The texts of the queries judged in ``qrels``; a ConfigError if any of them has none."""
    judged = {qid: text for qid, text in queries.items() if qid in qrels}
    missing = set(qrels) - set(judged)
    if missing:
        raise ConfigError(f"{len(missing)} judged queries are not in the queries file "
                          f"(e.g. {', '.join(sorted(missing)[:3])}); leave them out of the qrels")
    return judged


def evaluate_legs(runs: LegRuns, qrels: Qrels, *, sweep: bool = False, window: int = 100,
                  bm25_only: bool = False) -> dict[str, dict[str, Any]]:
    """:func:`run_eval`'s figures from legs already fetched (queries of ``runs`` not in ``qrels``
    are ignored, so the same legs can also serve :func:`es_semantic.calibration.calibrate_legs`)."""
    variants = default_variants(window) + (sweep_variants(window) if sweep else [])
    if bm25_only:
        variants = [v for v in variants if v.method == "bm25"]
    # Queries that could not be searched (empty text) are left out of the means and counted.
    skipped = set(runs.skipped)
    evaluated = {qid: judged_docs for qid, judged_docs in qrels.items() if qid not in skipped}
    results = evaluate_variants(runs, evaluated, variants)
    for figures in results.values():
        figures["skipped"] = len(skipped & set(qrels))
    return results


def index_beir_corpus(
    es: Any,
    index: str,
    docs: Iterable[Mapping[str, Any]],
    *,
    vectors: Mapping[str, Sequence[float]] | None = None,
    vector_field: str = "embedding",
    chunk_size: int = 500,
) -> int:
    """Bulk-load BEIR documents (``_id`` becomes the document id), optionally with their vectors."""
    from elasticsearch import helpers

    def actions() -> Iterable[dict[str, Any]]:
        for doc in docs:
            source = {k: v for k, v in doc.items() if k != "_id"}
            if vectors is not None and doc["_id"] in vectors:
                source[vector_field] = [float(x) for x in vectors[doc["_id"]]]
            yield {"_index": index, "_id": doc["_id"], "_source": source}

    count, errors = helpers.bulk(es.options(request_timeout=300), actions(), chunk_size=chunk_size,
                                 raise_on_error=False)
    if errors:
        raise ConfigError(f"{len(errors)} documents failed to load, e.g. {errors[0]}")
    es.indices.refresh(index=index)
    return count


# ---------------------------------------------------------------- evaluating an index from files


@dataclass
class Judged:
    """The queries an evaluation scores: judged in the qrels and present in the queries file."""

    queries: dict[str, str]
    qrels: Qrels
    in_file: int  # queries in the queries file
    textless: list[str] = field(default_factory=list)  # judged, but not in the queries file: left out

    @property
    def unjudged(self) -> int:
        """Queries of the file the qrels do not judge (not scored)."""
        return self.in_file - len(self.queries)


def load_judged(queries_path: str | Path, qrels_path: str | Path) -> Judged:
    """The judged queries of a queries file and a qrels file; judged queries without a text are
    left out and listed (a ConfigError when that leaves none)."""
    qrels = load_qrels(qrels_path)
    all_queries = load_queries(queries_path)
    textless = sorted(qid for qid in qrels if qid not in all_queries)
    qrels = {qid: judged for qid, judged in qrels.items() if qid in all_queries}
    if textless and not qrels:
        raise ConfigError(f"none of the {len(textless)} queries judged in {qrels_path} is in {queries_path}; check "
                          "that both files come from the same data set (their query ids must match)")
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return Judged(queries, qrels, len(all_queries), textless)


@dataclass
class EvalReport:
    """What ``evaluate_index`` found: the figures per variant, the calibration (if asked) and what
    was left out of them."""

    index: str
    window: int
    judged: Judged
    results: dict[str, dict[str, Any]]
    missing: list[str]  # judged-relevant documents the index does not have
    relevant: int  # judged-relevant documents
    calibration: Any = None  # a calibration.Calibration when calibrating

    @property
    def skipped(self) -> int:
        return next(iter(self.results.values()), {}).get("skipped", 0)

    @property
    def scored(self) -> int:
        return next(iter(self.results.values()), {}).get("queries", 0)

    def best(self) -> tuple[str, dict[str, Any]]:
        """The variant with the best nDCG@10."""
        return max(self.results.items(), key=lambda item: item[1]["ndcg@10"])

    def warnings(self) -> list[str]:
        """What makes the figures less than they seem, one line each."""
        lines = []
        if self.judged.textless:
            lines.append(f"{len(self.judged.textless)} judged queries are not in the queries file "
                         f"(e.g. {', '.join(self.judged.textless[:3])}); left out of the figures")
        if self.results and all(figures["recall@100"] == 0 for figures in self.results.values()):
            lines.append("no search found any judged document; check that the qrels' corpus ids are the "
                         f"documents' _id in {self.index!r}")
        if self.missing:
            lines.append(f"{len(self.missing)} of {self.relevant} judged documents are not in index {self.index!r}; "
                         f"scores count them as misses (e.g. {', '.join(map(repr, self.missing[:3]))})")
        if self.skipped:
            lines.append(f"skipped {self.skipped} queries with empty text (left out of the figures)")
        return lines

    def coverage(self) -> str:
        """``scored N of M queries (skipped: ...)``: which queries the figures cover."""
        unscored = len(self.judged.queries) - self.skipped - self.scored
        left_out = [f"{self.judged.unjudged} without judgements in the qrels" if self.judged.unjudged else "",
                    f"{self.skipped} with empty text" if self.skipped else "",
                    f"{unscored} without a relevant judgement" if unscored else ""]
        left_out = [part for part in left_out if part]
        textless = len(self.judged.textless)
        return (f"scored {self.scored} of {self.judged.in_file} queries"
                + (f" (skipped: {', '.join(left_out)})" if left_out else "")
                + (f"; {textless} judged queries not in the queries file were left out" if textless else ""))

    def to_dict(self) -> dict[str, Any]:
        if self.calibration is None:
            return self.results
        return {"eval": self.results, "calibration": self.calibration.to_dict()}


def evaluate_index(
    es: Any,
    index: str,
    judged: Judged,
    *,
    options: SearchOptions | None = None,
    sweep: bool = False,
    calibrate: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Evaluate ``index`` on ``judged`` queries: every variant of :func:`run_eval` (from one fetch
    of the legs with ``options``' window, fields and filter), and with ``calibrate`` (the keywords
    of :func:`es_semantic.calibration.evaluate_and_calibrate`) the "no good match" threshold too.
    With a reranker (``options.rerank``, by default the index's), the default fusion reranked is one more
    variant (``"<variant> + rerank"``)."""
    from .calibration import evaluate_and_calibrate
    from .rerank.evaluation import eval_reranker, rerank_figures

    options = options or SearchOptions()
    window = options.window or DEFAULTS.window
    reranker, rerank_window, config = eval_reranker(es, index, options, calibrating=calibrate is not None)
    found = None
    if calibrate is not None:
        results, found = evaluate_and_calibrate(es, index, judged.queries, judged.qrels, window=window, sweep=sweep,
                                                progress=progress, options=options, **calibrate)
    elif reranker is None:
        results = run_eval(es, index, judged.queries, judged.qrels, sweep=sweep, window=window, progress=progress,
                           options=options)
    else:
        runs = fetch_legs(es, judged_queries(judged.queries, judged.qrels), index=index, options=options,
                          progress=progress)
        results = evaluate_legs(runs, judged.qrels, sweep=sweep, window=window)
        results.update(rerank_figures(es, index, config, judged.queries, judged.qrels, runs, reranker,
                                      method=options.resolved().method, window=window, rerank_window=rerank_window))
    relevant = {doc for docs in judged.qrels.values() for doc, grade in docs.items() if grade > 0}
    return EvalReport(index, window, judged, results, missing_documents(es, index, relevant), len(relevant), found)
