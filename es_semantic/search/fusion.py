"""Score fusion as pure functions: reciprocal rank fusion and normalised linear combination.

These are the formulas Elasticsearch's ``rrf`` and ``linear`` retrievers apply, so the client-side
path (both legs in one ``_msearch``, fused here) ranks exactly like the server-side path:

* ``rrf``:    ``score(d) = sum_leg weight_leg / (rank_constant + rank_leg(d))`` over the legs that
  returned ``d`` within the window; ranks are 1-based.
* ``linear``: ``score(d) = sum_leg weight_leg * norm_leg(score_leg(d))``; a leg that missed ``d``
  contributes 0 (Elasticsearch's rule).

Normalisers (applied to one leg's window of scores):

* ``minmax``  ``(s - min) / (max - min)``; all scores equal -> every one becomes 1.0.
* ``l2_norm`` ``s / sqrt(sum s_i^2)``; a zero norm leaves the scores unchanged.
* ``zscore``  ``(s - mean) / std`` (population std); ``std == 0`` -> 0. Not available in
  Elasticsearch's linear retriever, so it always runs client-side. A leg that missed ``d`` contributes
  the leg's lowest z-score instead of 0 (0 would be the *mean*: a miss must not beat a weak hit).
* ``none``    raw scores.

Ties are broken by the best rank the document had in any leg, then by id, so results are
deterministic (Elasticsearch breaks ties by internal doc id; ties are rare with real scores).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

NORMALIZERS = ("minmax", "l2_norm", "zscore", "none")
#: Normalisers Elasticsearch's linear retriever implements (the others run client-side).
SERVER_NORMALIZERS = ("minmax", "l2_norm", "none")
METHODS = ("rrf", "linear")
_EPSILON = 1e-6

#: One leg's results in rank order: (document id, score) pairs, best first.
LegResults = Sequence[tuple[str, float]]


@dataclass
class Fused:
    """One document after fusion, with everything needed to explain its score."""

    id: str
    score: float
    ranks: dict[str, int | None] = field(default_factory=dict)  # 1-based rank per leg, None = missed
    scores: dict[str, float | None] = field(default_factory=dict)  # raw leg score, None = missed
    normalized: dict[str, float | None] = field(default_factory=dict)  # linear only
    contributions: dict[str, float] = field(default_factory=dict)  # what each leg added to ``score``

    @property
    def best_rank(self) -> int:
        ranks = [r for r in self.ranks.values() if r is not None]
        return min(ranks) if ranks else 1 << 30


def _window(leg: LegResults, window: int | None) -> list[tuple[str, float]]:
    """The first ``window`` results of a leg, without repeated ids (first occurrence wins)."""
    seen: set[str] = set()
    out: list[tuple[str, float]] = []
    for doc_id, score in leg:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        out.append((doc_id, float(score)))
        if window is not None and len(out) >= window:
            break
    return out


def _weights(legs: Mapping[str, LegResults], weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict(weights or {})
    unknown = set(weights) - set(legs)
    if unknown:
        raise ValueError(f"weights given for unknown legs {sorted(unknown)}; legs are {sorted(legs)}")
    out = {name: float(weights.get(name, 1.0)) for name in legs}
    for name, w in out.items():
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weight of leg {name!r} must be a finite number >= 0, got {w}")
    return out


def _sorted(docs: dict[str, Fused]) -> list[Fused]:
    return sorted(docs.values(), key=lambda f: (-f.score, f.best_rank, f.id))


def rrf(
    legs: Mapping[str, LegResults],
    *,
    rank_constant: float = 60,
    weights: Mapping[str, float] | None = None,
    window: int | None = None,
) -> list[Fused]:
    """Reciprocal rank fusion of ranked legs (``{"bm25": [(id, score), ...], "knn": [...]}``).

    >>> [(f.id, round(f.score, 6)) for f in rrf({"a": [("x", 9), ("y", 3)], "b": [("y", .9)]}, rank_constant=1)]
    [('y', 0.833333), ('x', 0.5)]
    """
    if rank_constant < 1:
        raise ValueError(f"rank_constant must be >= 1, got {rank_constant}")
    w = _weights(legs, weights)
    docs: dict[str, Fused] = {}
    for name, leg in legs.items():
        for rank, (doc_id, score) in enumerate(_window(leg, window), start=1):
            fused = docs.get(doc_id)
            if fused is None:
                fused = docs[doc_id] = Fused(doc_id, 0.0, {n: None for n in legs}, {n: None for n in legs})
            fused.ranks[name] = rank
            fused.scores[name] = score
            contribution = w[name] / (rank_constant + rank)
            fused.contributions[name] = contribution
            fused.score += contribution
    return _sorted(docs)


def normalize(scores: Sequence[float], method: str = "minmax") -> list[float]:
    """Normalise one leg's scores (see the module docstring for each formula).

    >>> normalize([4.0, 2.0, 1.0], "minmax")
    [1.0, 0.3333333333333333, 0.0]
    """
    values = [float(s) for s in scores]
    if method not in NORMALIZERS:
        raise ValueError(f"unknown normaliser {method!r}; use one of {', '.join(NORMALIZERS)}")
    if not values or method == "none":
        return values
    if method == "minmax":
        lo, hi = min(values), max(values)
        if hi - lo < _EPSILON:
            return [1.0] * len(values)
        return [(v - lo) / (hi - lo) for v in values]
    if method == "l2_norm":
        norm = math.sqrt(sum(v * v for v in values))
        if norm < _EPSILON:
            return values
        return [v / norm for v in values]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if std < _EPSILON:
        return [0.0] * len(values)
    return [(v - mean) / std for v in values]


def linear(
    legs: Mapping[str, LegResults],
    *,
    weights: Mapping[str, float] | None = None,
    normalizer: str | Mapping[str, str] = "minmax",
    window: int | None = None,
) -> list[Fused]:
    """Weighted sum of per-leg normalised scores; ``normalizer`` may differ per leg (a mapping).

    >>> [(f.id, f.score) for f in linear({"a": [("x", 4.0), ("y", 2.0)], "b": [("y", .8), ("z", .4)]})]
    [('x', 1.0), ('y', 1.0), ('z', 0.0)]
    """
    w = _weights(legs, weights)
    norms = {name: (normalizer if isinstance(normalizer, str) else normalizer.get(name, "minmax")) for name in legs}
    docs: dict[str, Fused] = {}
    floor: dict[str, float] = {}
    for name, leg in legs.items():
        results = _window(leg, window)
        normalized = normalize([s for _, s in results], norms[name])
        # What a miss contributes: 0 as in Elasticsearch, except z-scores (0 is their mean).
        floor[name] = min(normalized) if normalized and norms[name] == "zscore" else 0.0
        for rank, ((doc_id, score), value) in enumerate(zip(results, normalized), start=1):
            fused = docs.get(doc_id)
            if fused is None:
                fused = docs[doc_id] = Fused(
                    doc_id, 0.0, {n: None for n in legs}, {n: None for n in legs}, {n: None for n in legs}
                )
            fused.ranks[name] = rank
            fused.scores[name] = score
            fused.normalized[name] = value
    for fused in docs.values():
        for name in legs:
            value = fused.normalized[name]
            contribution = w[name] * (value if value is not None else floor[name])
            fused.contributions[name] = contribution
            fused.score += contribution
    return _sorted(docs)


def fuse(
    legs: Mapping[str, LegResults],
    method: str,
    *,
    rank_constant: float = 60,
    weights: Mapping[str, float] | None = None,
    normalizer: str | Mapping[str, str] = "minmax",
    window: int | None = None,
) -> list[Fused]:
    """Dispatch to :func:`rrf` or :func:`linear`."""
    if method == "rrf":
        return rrf(legs, rank_constant=rank_constant, weights=weights, window=window)
    if method == "linear":
        return linear(legs, weights=weights, normalizer=normalizer, window=window)
    raise ValueError(f"unknown fusion method {method!r}; use one of {', '.join(METHODS)}")


def _num(value: float) -> str:
    return f"{value:.6g}"


def explain(
    fused: Fused,
    method: str,
    *,
    rank_constant: float = 60,
    weights: Mapping[str, float] | None = None,
    normalizer: str | Mapping[str, str] = "minmax",
) -> str:
    """The formula of one fused score with its numbers, e.g.
    ``rrf 0.0325 = 1*1/(60+2) [bm25 rank 2, score 7.1] + 1*1/(60+1) [knn rank 1, score 0.93]``."""
    w = {name: float((weights or {}).get(name, 1.0)) for name in fused.ranks}
    parts = []
    for name, rank in fused.ranks.items():
        if method == "rrf":
            if rank is None:
                parts.append(f"0 [{name}: not in window]")
            else:
                parts.append(
                    f"{_num(w[name])}*1/({_num(rank_constant)}+{rank}) "
                    f"[{name} rank {rank}, score {_num(fused.scores[name] or 0.0)}]"
                )
        else:
            norm = normalizer if isinstance(normalizer, str) else normalizer.get(name, "minmax")
            if rank is None:
                parts.append(f"{_num(fused.contributions.get(name, 0.0))} [{name}: not in window]")
            else:
                parts.append(
                    f"{_num(w[name])}*{norm}({_num(fused.scores[name] or 0.0)})="
                    f"{_num(w[name])}*{_num(fused.normalized.get(name) or 0.0)} [{name} rank {rank}]"
                )
    return f"{method} {_num(fused.score)} = " + " + ".join(parts)
