"""Compound retrievers (``rrf``, ``linear``) and the legacy ``rank: {rrf: ...}`` option.

Each child retriever is run as its own search over all targets (a ``standard`` child as a query
with its sort, a ``knn`` child as a top-level kNN search, a compound child recursively), and its
first ``rank_window_size`` results are fused:

* ``rrf``: ``score(d) = sum_i weight_i / (rank_constant + rank_i(d))`` with 1-based ranks
  (``weight_i`` is 1 unless given in the ``{retriever, weight}`` form);
* ``linear``: ``score(d) = sum_i weight_i * normalize_i(score_i(d))`` with the ``none``,
  ``minmax`` or ``l2_norm`` normalizer computed over the child's window.

The fused list is sorted by score (ties in index order) and cut to ``rank_window_size``;
``hits.total`` counts the union of every child's matches. A compound retriever's ``filter``
is applied to every child (as a pre-filter for kNN children).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from es_semantic.testing.errors import EsError
from es_semantic.testing.snapshot import SearchTarget

DEFAULT_RANK_WINDOW_SIZE = 10
DEFAULT_RANK_CONSTANT = 60


def _illegal(reason: str) -> EsError:
    return EsError(400, "illegal_argument_exception", reason)


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


class Ranked:
    """A child's ordered results and the set of everything it matched."""

    def __init__(
        self, items: list[tuple[int, int, float]], matched: set[tuple[int, int]], named: list[dict[str, np.ndarray]]
    ):
        self.items = items  # (target, doc, score), best first
        self.matched = matched
        self.named = named


def _merge_named(into: list[dict[str, np.ndarray]], other: list[dict[str, np.ndarray]]) -> None:
    for mine, theirs in zip(into, other):
        for name, mask in theirs.items():
            mine[name] = mask.copy() if name not in mine else (mine[name] | mask)


def standard_body(spec: dict, filters: list[dict]) -> dict:
    """The search body equivalent to a ``standard`` retriever (plus inherited filters)."""
    if not isinstance(spec, dict):
        raise EsError(400, "parsing_exception", "[standard] retriever malformed")
    for key in spec:
        if key not in (
            "query",
            "filter",
            "sort",
            "search_after",
            "terminate_after",
            "min_score",
            "collapse",
            "_name",
            "rank_window_size",
        ):
            raise EsError(400, "x_content_parse_exception", f"[standard] unknown field [{key}]")
    all_filters = _as_list(spec.get("filter")) + list(filters)
    query = spec.get("query")
    if all_filters:
        bool_q: dict[str, Any] = {"filter": all_filters}
        if query is not None:
            bool_q["must"] = [query]
        query = {"bool": bool_q}
    body: dict[str, Any] = {}
    if query is not None:
        body["query"] = query
    for key in ("sort", "search_after", "terminate_after", "min_score", "collapse"):
        if spec.get(key) is not None:
            body[key] = spec[key]
    return body


def knn_body(spec: dict, filters: list[dict]) -> dict:
    if not isinstance(spec, dict):
        raise EsError(400, "parsing_exception", "[knn] retriever malformed")
    knn = {k: v for k, v in spec.items() if k not in ("_name", "rescore_vector")}
    if filters:
        knn["filter"] = _as_list(knn.get("filter")) + list(filters)
    return {"knn": knn}


def _run_simple(targets: list[SearchTarget], body: dict, size: int) -> Ranked:
    from es_semantic.testing.search_engine import collect

    res = collect(targets, body, size, pit=False)
    items = [(c.target, c.doc, c.score) for c in res.candidates]
    return Ranked(items, {(t, d) for t, d, _ in items}, res.named)


def retrieve(
    spec: dict, targets: list[SearchTarget], size: int, filters: list[dict], *, top: bool = False, from_: int = 0
) -> Ranked:
    """Run one retriever; compound retrievers return their fused list cut to their window."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise EsError(400, "parsing_exception", "retriever malformed, expected exactly one retriever type")
    ((kind, body),) = spec.items()
    if kind == "standard":
        return _run_simple(targets, standard_body(body, filters), size)
    if kind == "knn":
        return _run_simple(targets, knn_body(body, filters), size)
    if kind in ("rrf", "linear"):
        return _compound(kind, body, targets, size, filters, top=top, from_=from_)
    raise EsError(400, "x_content_parse_exception", f"unknown retriever [{kind}]")


def _window(kind: str, body: dict, size: int, top: bool) -> int:
    window = body.get("rank_window_size", DEFAULT_RANK_WINDOW_SIZE)
    window = int(window)
    if window < 0:
        raise _illegal(f"[rank_window_size] parameter cannot be negative, found [{window}]")
    if top and window < size:
        raise _illegal(f"[{kind}] requires [rank_window_size: {window}] be greater than or equal to [size: {size}]")
    return window


def _children(kind: str, body: dict) -> list[tuple[dict, float, str | None]]:
    entries = body.get("retrievers")
    if not isinstance(entries, list) or not entries:
        raise EsError(400, "x_content_parse_exception", f"[{kind}] requires [retrievers]")
    out = []
    for entry in entries:
        if isinstance(entry, dict) and "retriever" in entry:
            weight = float(entry.get("weight", 1.0))
            if weight < 0:
                raise _illegal("[weight] must be non-negative")
            out.append((entry["retriever"], weight, entry.get("normalizer")))
        else:
            out.append((entry, 1.0, None))
    return out


def normalize(scores: list[float], normalizer: str | None) -> list[float]:
    """Score normalizers of the linear retriever, over one child's window."""
    if normalizer in (None, "none"):
        return list(scores)
    if normalizer == "minmax":
        if not scores:
            return []
        lo, hi = min(scores), max(scores)
        if hi - lo <= 0:
            return [1.0 for _ in scores]  # a single doc (or all equal) normalises to 1
        return [(s - lo) / (hi - lo) for s in scores]
    if normalizer == "l2_norm":
        norm = math.sqrt(sum(s * s for s in scores))
        if norm <= 0:
            return [0.0 for _ in scores]
        return [s / norm for s in scores]
    raise _illegal(f"Unknown normalizer [{normalizer}]")


def _compound(
    kind: str, body: dict, targets: list[SearchTarget], size: int, filters: list[dict], *, top: bool, from_: int
) -> Ranked:
    if not isinstance(body, dict):
        raise EsError(400, "parsing_exception", f"[{kind}] retriever malformed")
    window = _window(kind, body, size, top)
    rank_constant = int(body.get("rank_constant", DEFAULT_RANK_CONSTANT))
    if kind == "rrf" and rank_constant < 1:
        raise _illegal("[rank_constant] must be greater or equal to [1] for [rrf]")
    top_normalizer = body.get("normalizer")
    if top_normalizer is not None:
        normalize([], top_normalizer)  # validates the name
    child_filters = list(filters) + _as_list(body.get("filter"))
    fused: dict[tuple[int, int], float] = {}
    matched: set[tuple[int, int]] = set()
    named: list[dict[str, np.ndarray]] = [{} for _ in targets]
    for child, weight, normalizer in _children(kind, body):
        if normalizer is not None:
            normalize([], normalizer)
        res = retrieve(child, targets, window, child_filters)
        matched |= res.matched
        _merge_named(named, res.named)
        items = res.items[:window]
        if kind == "rrf":
            for rank, (t, d, _) in enumerate(items, start=1):
                fused[(t, d)] = fused.get((t, d), 0.0) + weight / (rank_constant + rank)
        else:
            normed = normalize([s for _, _, s in items], normalizer or top_normalizer)
            for (t, d, _), s in zip(items, normed):
                fused[(t, d)] = fused.get((t, d), 0.0) + weight * s
    ordered = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:window]
    return Ranked([(t, d, float(np.float32(s))) for (t, d), s in ordered], matched, named)


def legacy_rank_retriever(body: dict) -> dict:
    """Translate ``query`` / ``sub_searches`` / ``knn`` + ``rank: {rrf: ...}`` to an rrf retriever."""
    rank = body.get("rank") or {}
    rrf = rank.get("rrf")
    if rrf is None:
        raise _illegal(f"unknown rank type {list(rank)}")
    children: list[dict] = []
    if body.get("query") is not None:
        children.append({"standard": {"query": body["query"]}})
    for sub in _as_list(body.get("sub_searches")):
        children.append({"standard": {"query": sub.get("query")}})
    knn = body.get("knn")
    for spec in _as_list(knn):
        children.append({"knn": spec})
    out = {"retrievers": children}
    for key in ("rank_window_size", "window_size", "rank_constant"):
        if key in rrf:
            out["rank_window_size" if key == "window_size" else key] = rrf[key]
    return {"rrf": out}


def run_ranked(targets: list[SearchTarget], body: dict, size: int, from_: int):
    """Run ``body['retriever']`` (or legacy ``rank``); returns (candidates, named, total, max_score, matched).

    ``matched`` is every (target, doc) any child retriever matched: ``hits.total`` counts it, and
    aggregations run over it (not limited by ``rank_window_size``), as in Elasticsearch."""
    from es_semantic.testing.search_engine import Candidate

    legacy = "retriever" not in body
    spec = legacy_rank_retriever(body) if legacy else body["retriever"]
    if legacy:
        window = int(spec["rrf"].get("rank_window_size", DEFAULT_RANK_WINDOW_SIZE))
        if window < size:
            raise _illegal(f"[rank] requires [rank_window_size: {window}] be greater than or equal to [size: {size}]")
    res = retrieve(spec, targets, size, [], top=True, from_=from_)
    cands = []
    # Hits of a compound retriever (rrf, linear, legacy rank) carry their `_rank`, 1-based over the
    # whole ranking (from + position), as Elasticsearch's RankDocs do.
    compound = legacy or next(iter(spec)) in ("rrf", "linear")
    for pos, (t, d, s) in enumerate(res.items, start=1):
        c = Candidate(t, d, s)
        if compound:
            c.rank = pos
        cands.append(c)
    max_score = cands[0].score if cands else None
    return cands, res.named, len(res.matched), max_score, res.matched
