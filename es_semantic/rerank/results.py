"""Reranking a search result: pure functions over a ``SearchResult``, plus the model cache.

``hybrid_search(rerank=...)`` asks for the top ``rerank_window`` of the fused list with sources,
hands it to :func:`rerank_result`, and gets back the page: the window reordered by rerank score
(ties keep the fused order), ``min_score`` held against the rerank score, then ``from_``/``k``
cut out, so pages never change the scores. ``rerank="es:<inference_id>"`` instead wraps the
fused retriever in Elasticsearch's ``text_similarity_reranker`` (:func:`es_rerank_retriever`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from es_semantic.errors import ConfigError, InvalidValue
from es_semantic.rerank.base import Reranker, TextReranker

if TYPE_CHECKING:
    from es_semantic.config import SemanticConfig
    from es_semantic.search.hybrid import SearchResult

#: ``rerank=FROM_INDEX`` (the default): the reranker named in the index ``_meta``, if any.
FROM_INDEX = "index"
#: ``rerank="es:<inference_id>"``: Elasticsearch's ``text_similarity_reranker`` with that endpoint.
ES_PREFIX = "es:"
DEFAULT_WINDOW = 50

_CACHE: dict[str, Reranker] = {}
_LOCK = threading.Lock()


def get_reranker(model: str) -> Reranker:
    """One local :class:`Reranker` per model name in the process (loading one takes seconds)."""
    with _LOCK:
        reranker = _CACHE.get(model)
        if reranker is None:
            reranker = _CACHE[model] = Reranker(model)
        return reranker


def resolve_rerank(rerank: Any, config: SemanticConfig) -> TextReranker | str | None:
    """What ``rerank=`` asks for: a reranker, an inference id (``"es:<id>"``), or None (off)."""
    if rerank is None or isinstance(rerank, TextReranker):
        return rerank
    if isinstance(rerank, os.PathLike):
        rerank = os.fspath(rerank)
    if not isinstance(rerank, str) or not rerank.strip():
        raise InvalidValue("rerank", rerank, f"a Reranker, a model name or path, 'es:<inference_id>', "
                                             f"{FROM_INDEX!r} or None")
    if rerank == FROM_INDEX:
        return get_reranker(config.reranker) if config.reranker else None
    if rerank.startswith(ES_PREFIX):
        inference_id = rerank[len(ES_PREFIX):].strip()
        if not inference_id:
            raise InvalidValue("rerank", rerank, "'es:<inference_id>' with the id of an inference endpoint")
        return rerank
    return get_reranker(rerank)


def check_window(rerank_window: Any, window: int, from_: int, k: int) -> int:
    """``rerank_window`` as an int that holds the page and fits the fusion window."""
    if isinstance(rerank_window, bool) or not isinstance(rerank_window, int) or rerank_window < 1:
        raise InvalidValue("rerank_window", rerank_window, "a whole number, 1 or more")
    if rerank_window > window:
        raise InvalidValue("rerank_window", rerank_window, f"at most the fusion window ({window})")
    if from_ + k > rerank_window:
        raise InvalidValue("rerank_window", rerank_window,
                           f"at least from + k ({from_ + k}): pages are cut from the reranked window")
    return rerank_window


def is_es_rerank(rerank: Any) -> bool:
    """Whether ``rerank`` asks Elasticsearch to rerank (``"es:<inference_id>"``)."""
    return isinstance(rerank, str) and rerank.startswith(ES_PREFIX)


def first_stage(options: Any, reranker: TextReranker | str | None) -> tuple[Any, int]:
    """The search options the fusion runs with, and the rerank window, for ``reranker`` (resolved) and
    ``options`` (resolved: method and window known).

    A local or served reranker needs the top of the fused list with its texts: the fusion returns
    the whole rerank window from its top, with sources and no threshold (``min_score`` applies to the
    rerank score afterwards). ``"es:<id>"`` keeps the options: Elasticsearch reranks and pages.
    """
    if reranker is None:
        return replace(options, rerank=None), 0  # min_score is a cosine similarity again: checked as one
    default = min(DEFAULT_WINDOW, options.window)
    window = check_window(default if options.rerank_window is None else options.rerank_window, options.window,
                          options.from_, options.k)
    if isinstance(reranker, str):
        if options.method in ("bm25", "knn") or options.execution == "client":
            why = (f"method {options.method} has none: use method rrf or linear"
                   if options.execution != "client" else "execution 'client' fuses here: use auto or server")
            raise ConfigError(f"rerank {reranker!r} runs in Elasticsearch over a fused retriever; {why}",
                              option="rerank", value=reranker)
        return replace(options, execution="server", rerank_window=window), window
    if options.source not in (True, False):
        raise InvalidValue("source", options.source, "True or False with a reranker (it reads the hits' text)")
    return replace(options, rerank=None, k=window, from_=0, min_score=None, source=True), window


def rerank_page(result: SearchResult, reranker: TextReranker, options: Any, config: SemanticConfig,
                window: int) -> SearchResult:
    """The page ``options`` asks for, reranked from ``result`` (the fused top ``window`` with sources).
    A number ``min_score`` holds against the rerank score; the index's stored threshold is a cosine
    similarity, so ``"index"`` means none here."""
    min_score = None if isinstance(options.min_score, str) else options.min_score
    page = rerank_result(result, reranker, result.query, window, text=config.build_text, from_=options.from_,
                         k=options.k, min_score=min_score)
    if options.source is False:
        page.hits = [replace(hit, source=None) for hit in page.hits]
    return page


def rerank_result(result: SearchResult, reranker: TextReranker, query: str, window: int, *,
                  text: Callable[[Mapping[str, Any]], str], from_: int = 0, k: int = 10,
                  min_score: float | None = None) -> SearchResult:
    """The page ``[from_, from_ + k)`` of ``result``'s top ``window`` hits reordered by ``reranker``.

    ``result`` holds the fused list from its top with sources; ``text`` turns a source into the text
    to score (``SemanticConfig.build_text``). Every hit of the window gets ``rerank_score``; ties keep
    the fused order; hits under ``min_score`` (a rerank score) are dropped before paging.
    """
    candidates = result.hits[:window]
    scores = reranker.score(query, [text(hit.source or {}) for hit in candidates])
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])  # stable: ties keep the fused order
    ranked = [replace(candidates[i], rerank_score=float(scores[i])) for i in order]
    kept = ranked if min_score is None else [hit for hit in ranked if hit.rerank_score >= min_score]
    params = {**result.params, "rerank": reranker.model_id, "rerank_window": window}
    return replace(result, hits=kept[from_:from_ + k], min_score=min_score,
                   no_match=min_score is not None and not kept, params=params)


def es_rerank_retriever(retriever: Mapping[str, Any], *, inference_id: str, field: str, text: str,
                        window: int, min_score: float | None = None) -> dict[str, Any]:
    """``retriever`` wrapped in Elasticsearch's ``text_similarity_reranker`` (inference endpoint
    ``inference_id`` scoring ``field`` against ``text`` over the top ``window``)."""
    body: dict[str, Any] = {"retriever": dict(retriever), "field": field, "inference_id": inference_id,
                            "inference_text": text, "rank_window_size": window}
    if min_score is not None:
        body["min_score"] = min_score
    return {"text_similarity_reranker": body}
