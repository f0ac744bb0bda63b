"""Hybrid (BM25 + kNN) search over an index configured by ``install-mappings``.

``hybrid_search(es, query, index=...)`` / ``async_hybrid_search`` return a ``SearchResult`` of
``Hit`` objects with the fused score and both sub-scores; their options are the fields of
``SearchOptions``; ``fusion`` holds the pure formulas.
"""

from .hybrid import (
    Hit,
    SearchFailed,
    SearchResult,
    async_hybrid_search,
    clear_caches,
    hybrid_search,
)
from .options import DEFAULTS, Defaults, SearchOptionError, SearchOptions

__all__ = [
    "DEFAULTS",
    "Defaults",
    "Hit",
    "SearchFailed",
    "SearchOptionError",
    "SearchOptions",
    "SearchResult",
    "async_hybrid_search",
    "clear_caches",
    "hybrid_search",
]
