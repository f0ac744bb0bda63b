"""Evaluating a reranker: rerank the top of each query's fused ranking, as ``hybrid_search`` would.

``eval --rerank MODEL`` ranks every judged query with a fusion variant, then reranks its top
``window`` documents with the texts read back from the index (one ``_mget`` per batch of queries,
text fields only), so the figures with and without the reranker come from the same first stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from es_semantic.rerank.base import Reranker

log = logging.getLogger(__name__)

BATCH_QUERIES = 32


def fetch_texts(es: Any, index: str, ids: Sequence[str], config: Any) -> dict[str, str]:
    """The text each document was embedded from (``config.build_text``), by id; missing ids left out."""
    if not ids:
        return {}
    response = es.mget(index=index, ids=list(ids), source_includes=list(config.text_fields))
    return {doc["_id"]: config.build_text(doc.get("_source") or {})
            for doc in response.body.get("docs", []) if doc.get("found")}


def rerank_run(es: Any, index: str, config: Any, queries: Mapping[str, str], run: Mapping[str, Sequence[str]],
               reranker: Reranker, window: int, *,
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
