"""The options of one hybrid search, declared and checked in one place.

``SearchOptions`` is what ``hybrid_search``/``async_hybrid_search`` take as keywords (or as
``options=``), what the ``search`` command builds from its flags and what ``eval`` fetches its legs
with. ``None`` means "the default"; ``resolved(defaults)`` fills in the defaults of what the method
uses (the library's :data:`DEFAULTS`, or an index's own). Every check runs in ``__post_init__``, on
what is known: on construction the values given, after ``resolved()`` the whole set. The checks
that need the index mapping (field names and types, the stored ``min_score``) run when the search
is planned (``hybrid.make_plan``).

A second stage (a reranker) adds its options as fields here and its checks as one more
``_check_*`` call in ``__post_init__``; ``hybrid.make_plan`` and ``build_result`` then read them
from ``plan.options``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import ConfigError
from .fusion import NORMALIZERS

METHODS = ("rrf", "linear", "bm25", "knn")
EXECUTIONS = ("auto", "server", "client")
#: ``min_score=FROM_INDEX`` (the default): the threshold stored in the index ``_meta``, if any.
FROM_INDEX = "index"
#: The most hits one leg can return: Elasticsearch's limit on kNN ``num_candidates`` (and so ``k``),
#: and the default ``index.max_result_window`` that bounds ``from + size`` of the BM25 leg.
MAX_WINDOW = 10_000


@dataclass(frozen=True)
class Defaults:
    """The defaults ``hybrid_search`` uses; chosen on the SciFact *train* split (docs/search.md)."""

    method: str = "linear"
    window: int = 100
    rank_constant: int = 5
    rrf_weights: Mapping[str, float] = field(default_factory=lambda: {"bm25": 1.0, "knn": 1.0})
    linear_weights: Mapping[str, float] = field(default_factory=lambda: {"bm25": 0.5, "knn": 0.5})
    normalizer: str = "minmax"
    # Add a text field's ``.english`` multi-field (stemmed, stop words) to BM25 when the mapping has one.
    english_subfields: bool = True
    multi_match_type: str = "best_fields"


DEFAULTS = Defaults()


class SearchOptionError(ConfigError):
    """A search option with a value it cannot take: ``option`` (its keyword), ``value`` and ``reason``."""

    def __init__(self, option: str, value: Any, reason: str, *, index: str | None = None) -> None:
        super().__init__(f"{option}={value!r}: {reason}", option=option, value=value)
        self.value = value  # None included
        self.reason, self.index = reason, index


@dataclass(frozen=True)
class SearchOptions:
    """Every option of a hybrid search (``None``: the default); checked on construction."""

    k: int = 10  # hits on the page
    from_: int = 0  # offset of the page within the fused list
    method: str | None = None  # "linear" (default) | "rrf" | "bm25" | "knn" (one leg alone)
    fields: Sequence[str] | None = None  # BM25 fields with boosts, ["question^2", "answer"]; default: the text fields
    filter: Any = None  # a query DSL filter (or a list of them) applied to both legs
    num_candidates: int | None = None  # kNN candidates per shard (default: 2 x window, at least 100)
    window: int | None = None  # per-leg fusion window (rank_window_size); the page must fit in it
    rank_constant: int | None = None  # rrf
    bm25_weight: float | None = None  # rrf and linear
    knn_weight: float | None = None  # rrf and linear
    normalizer: str | None = None  # linear: "minmax" (default) | "l2_norm" | "zscore" | "none"
    # cosine similarity in [-1, 1] (with a reranker: a rerank score); "index": the stored one; None
    min_score: float | str | None = FROM_INDEX
    explain: bool = False  # the formula of the fused score on every hit
    execution: str = "auto"  # where the fusion runs: "auto" | "server" (a retriever) | "client"
    source: Any = True  # _source filtering of the hits; False: ids and scores only
    rerank: Any = FROM_INDEX  # a Reranker, a model name or path, "es:<inference_id>", "index" (the stored one) or None
    rerank_window: int | None = None  # how many of the fused list's top are reranked (default 50, within the window)

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_unused(self)
        _check_sizes(self)
        _check_fusion(self)
        _check_min_score(self)
        _check_fields(self)
        _check_rerank(self)

    @classmethod
    def of(cls, options: SearchOptions | None = None, **changes: Any) -> SearchOptions:
        """``options`` (default: all defaults) with ``changes``; an unknown keyword is a TypeError
        naming the known ones."""
        unknown = sorted(set(changes) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown search option {', '.join(unknown)}; the options are: "
                            f"{', '.join(f.name for f in fields(cls))}")
        base = options if options is not None else cls()
        return replace(base, **changes) if changes else base

    @property
    def legs(self) -> tuple[str, ...]:
        """The legs the (resolved) method searches."""
        return (self.method,) if self.method in ("bm25", "knn") else ("bm25", "knn")

    @property
    def weights(self) -> dict[str, float | None]:
        """The legs' weights (fusions only; a single leg has none)."""
        return {} if self.method in ("bm25", "knn") else {"bm25": self.bm25_weight, "knn": self.knn_weight}

    def resolved(self, defaults: Defaults = DEFAULTS) -> SearchOptions:
        """These options with ``defaults`` filled in for what the method uses, checked again now that
        every value that matters is known."""
        method = self.method or defaults.method
        window = defaults.window if self.window is None else self.window
        changes: dict[str, Any] = {"method": method, "window": window}
        if method != "bm25":
            changes["num_candidates"] = (min(MAX_WINDOW, max(100, 2 * window)) if self.num_candidates is None
                                         else self.num_candidates)
        if method in ("rrf", "linear"):
            base = defaults.rrf_weights if method == "rrf" else defaults.linear_weights
            changes["bm25_weight"] = float(base["bm25"]) if self.bm25_weight is None else self.bm25_weight
            changes["knn_weight"] = float(base["knn"]) if self.knn_weight is None else self.knn_weight
        if method == "rrf":
            changes["rank_constant"] = defaults.rank_constant if self.rank_constant is None else self.rank_constant
        if method == "linear":
            changes["normalizer"] = self.normalizer or defaults.normalizer
        return replace(self, **changes)


# ---------------------------------------------------------------- the checks, one concern each


def _set(options: SearchOptions, name: str, value: Any) -> None:
    object.__setattr__(options, name, value)  # normalise a field of the frozen instance


def _number(name: str, value: Any) -> float:
    """``value`` as a finite float (bools, nan and inf refused)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SearchOptionError(name, value, "must be a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise SearchOptionError(name, value, "must be a finite number")
    return number


def _whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (a float with no fraction is accepted)."""
    number = _number(name, value)
    if number != int(number):
        raise SearchOptionError(name, value, "must be a whole number")
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"{low} or more"
        raise SearchOptionError(name, value, f"must be {bounds}")
    return int(number)


def _check_choices(o: SearchOptions) -> None:
    for name, choices in (("method", METHODS), ("execution", EXECUTIONS), ("normalizer", NORMALIZERS)):
        value = getattr(o, name)
        if value is not None and value not in choices:
            raise SearchOptionError(name, value, f"use one of {', '.join(choices)}")
    if not isinstance(o.explain, bool):
        raise SearchOptionError("explain", o.explain, "must be True or False")
    if o.filter is not None and not (isinstance(o.filter, dict) or (
            isinstance(o.filter, (list, tuple)) and all(isinstance(f, dict) for f in o.filter))):
        raise SearchOptionError("filter", o.filter, "must be a query DSL object (dict) or a list of them")


def _check_sizes(o: SearchOptions) -> None:
    if isinstance(o.k, bool) or not isinstance(o.k, int):
        raise SearchOptionError("k", o.k, "must be a whole number, 1 or more")
    _set(o, "k", _whole("k", o.k, 1))
    if isinstance(o.from_, bool) or not isinstance(o.from_, int):
        raise SearchOptionError("from_", o.from_, "must be a whole number, 0 or more")
    _set(o, "from_", _whole("from_", o.from_, 0))
    if o.window is not None:
        _set(o, "window", _whole("window", o.window, 1, MAX_WINDOW))
    if o.num_candidates is not None:
        _set(o, "num_candidates", _whole("num_candidates", o.num_candidates, 1, MAX_WINDOW))
    end = o.from_ + o.k
    if end > MAX_WINDOW:
        name = "k" if o.k >= o.from_ else "from_"  # the one that pushed the page out
        raise SearchOptionError(name, getattr(o, name), f"the page would end at {end} (from + k), beyond {MAX_WINDOW}, "
                                "the most hits a kNN search returns (and the default index.max_result_window)")
    if o.window is None:
        return  # the rest is checked once the default window is known (resolved())
    if end > o.window:
        # scores are computed over the window, so pages never change them
        raise SearchOptionError("window", o.window, f"the page ends at {end} (from + k), beyond the fusion window; "
                                                    f"make the window {end} or more")
    if o.num_candidates is not None and o.num_candidates < o.window:
        raise SearchOptionError("num_candidates", o.num_candidates, f"must be at least the window ({o.window})")


def _check_fusion(o: SearchOptions) -> None:
    if o.rank_constant is not None:
        _set(o, "rank_constant", _whole("rank_constant", o.rank_constant, 1))  # Elasticsearch: an integer >= 1
    for name in ("bm25_weight", "knn_weight"):
        value = getattr(o, name)
        if value is not None:
            _set(o, name, _number(name, value))
            if getattr(o, name) < 0:
                raise SearchOptionError(name, value, "must be 0 or more")
    if o.bm25_weight == 0 and o.knn_weight == 0:
        raise SearchOptionError("bm25_weight", o.bm25_weight, "both legs would weigh 0 and every fused score be 0; "
                                                              "give one leg a weight above 0")


def _check_min_score(o: SearchOptions) -> None:
    if o.min_score is None or o.min_score == FROM_INDEX:
        return
    if isinstance(o.min_score, str):
        raise SearchOptionError("min_score", o.min_score, f"must be a number, None or {FROM_INDEX!r}")
    value = _number("min_score", o.min_score)
    if o.rerank is not None and o.rerank != FROM_INDEX:  # a given reranker: it thresholds the rerank score
        _set(o, "min_score", value)
        return
    if o.method == "bm25":
        raise SearchOptionError("min_score", o.min_score, "thresholds the kNN similarity, which method bm25 has not; "
                                                          "use method rrf, linear or knn, or no min_score")
    if not -1.0 <= value <= 1.0:
        raise SearchOptionError("min_score", o.min_score, "is a cosine similarity, between -1 and 1")
    _set(o, "min_score", value)


def parse_field(entry: Any) -> tuple[str, float]:
    """``"question^2"`` -> ``("question", 2.0)``; an empty name or a boost that is not a finite
    number >= 0 is a SearchOptionError naming the entry (Elasticsearch refuses negative boosts)."""
    if not isinstance(entry, str):
        raise SearchOptionError("fields", entry, "a field is a name, optionally with ^boost")
    name, caret, boost = entry.strip().rpartition("^") if "^" in entry else (entry.strip(), "", "")
    if not name:
        raise SearchOptionError("fields", entry, "the field name is empty")
    if not caret:
        return name, 1.0
    try:
        number = float(boost)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0 or math.copysign(1.0, number) < 0:
        raise SearchOptionError("fields", entry, f"the boost {boost!r} is not a finite number >= 0")
    return name, number


def _check_fields(o: SearchOptions) -> None:
    if o.fields is None:
        return
    entries = (o.fields,) if isinstance(o.fields, str) else o.fields  # one field, not its characters
    if not isinstance(entries, (list, tuple)) or not entries:
        raise SearchOptionError("fields", o.fields, "give a list of field names (or leave it out for the defaults)")
    for entry in entries:
        parse_field(entry)
    _set(o, "fields", tuple(entry.strip() for entry in entries))


def _check_rerank(o: SearchOptions) -> None:
    from ..rerank import TextReranker

    if o.rerank_window is not None:
        _set(o, "rerank_window", _whole("rerank_window", o.rerank_window, 1, MAX_WINDOW))
    if isinstance(o.rerank, os.PathLike):  # a local model folder given as a Path
        _set(o, "rerank", os.fspath(o.rerank))
    if o.rerank is None or isinstance(o.rerank, TextReranker):
        return
    if not isinstance(o.rerank, str) or not o.rerank.strip():
        raise SearchOptionError("rerank", o.rerank, f"use a Reranker, a model name or path, 'es:<inference_id>', "
                                                    f"{FROM_INDEX!r} or None")


def _check_unused(o: SearchOptions) -> None:
    """Refuse options the method does not use, rather than ignore them (once the method is known)."""
    method = o.method
    if method is None:
        return
    unused = {
        "fields": method == "knn", "num_candidates": method == "bm25",
        "bm25_weight": method in ("bm25", "knn"), "knn_weight": method in ("bm25", "knn"),
        "normalizer": method != "linear", "rank_constant": method != "rrf",
    }
    for name, is_unused in unused.items():
        if is_unused and getattr(o, name) is not None:
            raise SearchOptionError(name, getattr(o, name), f"method {method} does not use it; leave it out")
    if method in ("bm25", "knn") and o.execution == "server":
        raise SearchOptionError("execution", o.execution, f"method {method} is one leg alone, with no fusion "
                                                          "to run server-side")
