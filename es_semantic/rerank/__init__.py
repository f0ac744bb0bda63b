"""Second-stage reranking: :class:`Reranker` scores (query, document) pairs.

Local models (Qwen3-Reranker, sentence-transformers cross-encoders) or a served ``/rerank`` API
(vLLM, TEI, Infinity) behind one ``score(query, documents)``; :func:`rerank_result` reorders the
top of a :class:`~es_semantic.search.SearchResult`. Importing this package does not import torch.
"""

from es_semantic.rerank.base import Reranker
from es_semantic.rerank.results import es_rerank_retriever, get_reranker, rerank_result, resolve_rerank

__all__ = ["Reranker", "es_rerank_retriever", "get_reranker", "rerank_result", "resolve_rerank"]
