"""Second-stage reranking: :class:`Reranker` scores (query, document) pairs.

Local models (Qwen3-Reranker, sentence-transformers cross-encoders) or a served ``/rerank`` API
(vLLM, TEI, Infinity) behind one ``score(query, documents)``; :func:`rerank_result` reorders the
top of a :class:`~es_semantic.search.SearchResult`. Importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from es_semantic.rerank.base import Reranker, TextReranker
from es_semantic.rerank.results import es_rerank_retriever, get_reranker, rerank_result, resolve_rerank

__all__ = ["LocalReranker", "RemoteReranker", "Reranker", "TextReranker", "es_rerank_retriever", "get_reranker", "rerank_result",
           "resolve_rerank"]

if TYPE_CHECKING:  # pragma: no cover
    from es_semantic.rerank.local import LocalReranker
    from es_semantic.rerank.remote import RemoteReranker

_LAZY = {"LocalReranker": "es_semantic.rerank.local", "RemoteReranker": "es_semantic.rerank.remote"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:  # the local one imports torch: only when asked for
        raise AttributeError(f"module 'es_semantic.rerank' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
