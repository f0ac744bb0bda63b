"""Evaluating a reranker: rerank the top of each query's fused ranking, as ``hybrid_search`` would.

``eval --rerank MODEL`` ranks every judged query with a fusion variant, then reranks its top
``window`` documents with the texts read back from the index (one ``_mget`` per batch of queries,
text fields only), so the figures with and without the reranker come from the same first stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from es_semantic.errors import ConfigError
from es_semantic.rerank.base import TextReranker
from es_semantic.rerank.results import DEFAULT_WINDOW, FROM_INDEX, check_window, resolve_rerank

log = logging.getLogger(__name__)

BATCH_QUERIES = 32


def eval_reranker(es: Any, index: str, options: Any, *, calibrating: bool) -> tuple[TextReranker | None, int, Any]:
    """The reranker an evaluation of ``index`` adds a variant for (None for none), its window, and the
    index configuration. A calibration leaves the index's reranker out: rerank-score thresholds are
    not calibrated (a given reranker is refused there)."""
    from es_semantic.search.hybrid import index_info

    config = index_info(es, index).config
    if calibrating and options.rerank == FROM_INDEX:
        return None, 0, config
    reranker = resolve_rerank(options.rerank, config)
    if reranker is None:
        return None, 0, config
    if isinstance(reranker, str):
        raise ConfigError(f"rerank {reranker!r} runs in Elasticsearch, which an evaluation from the fetched legs "
                          "cannot reproduce; evaluate a local or served reranker", option="rerank", value=reranker)
    if calibrating:
        raise ConfigError("min_score thresholds for rerank scores are not calibrated; calibrate without rerank",
                          option="rerank", value=options.rerank)
    window = options.window or 100
    default = min(DEFAULT_WINDOW, window)
    return reranker, check_window(default if options.rerank_window is None else options.rerank_window,
                                  window, 0, 1), config


def fetch_texts(es: Any, index: str, ids: Sequence[str], config: Any) -> dict[str, str]:
    """The text each document was embedded from (``config.build_text``), by id; missing ids left out."""
    if not ids:
        return {}
    response = es.mget(index=index, ids=list(ids), source_includes=list(config.text_fields))
    return {doc["_id"]: config.build_text(doc.get("_source") or {})
            for doc in response.body.get("docs", []) if doc.get("found")}


def rerank_run(es: Any, index: str, config: Any, queries: Mapping[str, str], run: Mapping[str, Sequence[str]],
               reranker: TextReranker, window: int, *,
               progress: Callable[[int, int], None] | None = None) -> dict[str, list[str]]:
    """``run`` (query id -> ranked ids) with each query's top ``window`` reordered by ``reranker``;
    the rest of the ranking follows unchanged. Ties keep the first stage's order."""
    reranked: dict[str, list[str]] = {}
    qids = [qid for qid in run if qid in queries]
    for start in range(0, len(qids), BATCH_QUERIES):
        chunk = qids[start:start + BATCH_QUERIES]
        wanted = list(dict.fromkeys(doc for qid in chunk for doc in run[qid][:window]))
        texts = fetch_texts(es, index, wanted, config)
        for qid in chunk:
            top = list(run[qid][:window])
            scores = reranker.score(queries[qid], [texts.get(doc, "") for doc in top])
            order = sorted(range(len(top)), key=lambda i: -scores[i])
            reranked[qid] = [top[i] for i in order] + list(run[qid][window:])
        if progress is not None:
            progress(start + len(chunk), len(qids))
    return reranked


def rerank_figures(es: Any, index: str, config: Any, queries: Mapping[str, str], qrels: Mapping[str, Any],
                   runs: Any, reranker: TextReranker, *, method: str, window: int, rerank_window: int,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, Any]]:
    """The figures of ``method``'s default variant with its top ``rerank_window`` reranked, from legs
    already fetched (``runs``, an ``evaluation.LegRuns``), named ``"<variant> + rerank"``."""
    import shlex

    from es_semantic.evaluation import default_variants, evaluate_run

    variant = next(v for v in default_variants(window) if v.method == method)
    skipped = set(runs.skipped)
    evaluated = {qid: judged for qid, judged in qrels.items() if qid not in skipped}
    run = {qid: variant.rank(runs.legs(qid)) for qid in evaluated}
    reranked = rerank_run(es, index, config, queries, run, reranker, rerank_window, progress=progress)
    flags = [*variant.search_flags(), "--rerank", shlex.quote(reranker.model_id), "--rerank-window", str(rerank_window)]
    return {f"{variant.name} + rerank": evaluate_run(reranked, evaluated) | {
        "config": f"{variant.describe()} + rerank({reranker.model_id}, top {rerank_window})",
        "search_flags": " ".join(flags), "skipped": len(skipped & set(qrels))}}
