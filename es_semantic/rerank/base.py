"""The one reranking entry point: ``Reranker(model).score(query, documents)``.

``Reranker(model)`` loads a local model (:class:`~es_semantic.rerank.local.LocalReranker`);
``Reranker(model, base_url=...)`` talks to a served one (:class:`~es_semantic.rerank.remote.RemoteReranker`).
Both check their input here and return one float32 score per document, higher = more relevant.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from es_semantic.embedding.embedder import check_texts
from es_semantic.embedding.stats import EmbedStats
from es_semantic.errors import EmbeddingError, InvalidValue, RerankError


@runtime_checkable
class TextReranker(Protocol):
    """What ``hybrid_search(rerank=...)`` and ``eval`` need of a reranker: :class:`Reranker` implements
    it, and so can any object of the caller's with these members."""

    model_id: str

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """One float32 score per document, higher = more relevant."""


class Reranker(ABC):
    """Scores documents against a query (second stage, after retrieval).

    >>> reranker = Reranker("Qwen/Qwen3-Reranker-0.6B")            # local, device chosen automatically
    >>> reranker.score("capital of France", ["Paris is ...", "Berlin is ..."])   # float32 array, shape (2,)
    >>> served = Reranker("BAAI/bge-reranker-v2-m3", base_url="http://localhost:8080")

    ``Reranker(...)`` returns a :class:`LocalReranker` or, with ``base_url``, a :class:`RemoteReranker`;
    the keyword arguments are theirs. ``stats`` counts pairs, tokens, batches, requests and retries.
    """

    model_id: str
    stats: EmbedStats

    # returns an instance of the chosen subclass, whose __init__ then takes the same arguments
    def __new__(cls, *args: Any, base_url: str | None = None, **kwargs: Any) -> Reranker:  # noqa: PYI034
        if cls is Reranker:
            if base_url:
                from es_semantic.rerank.remote import RemoteReranker as chosen
            else:
                from es_semantic.rerank.local import LocalReranker as chosen  # type: ignore[assignment]
            return super().__new__(chosen)
        return super().__new__(cls)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """One float32 relevance score per document, in input order (higher = more relevant)."""
        if not isinstance(query, str):
            raise RerankError(f"query must be a str, got {'None' if query is None else type(query).__name__}")
        if isinstance(documents, (str, bytes)):
            raise RerankError(f"documents must be a list of strings, not a single {type(documents).__name__}")
        try:
            items = check_texts(documents, "documents")
        except EmbeddingError as exc:
            raise RerankError(str(exc)) from None
        if not items:
            return np.zeros(0, dtype=np.float32)
        started = time.perf_counter()
        scores = np.asarray(self._score(query, items), dtype=np.float32)
        self.stats.add(seconds=time.perf_counter() - started)
        if scores.shape != (len(items),) or not np.isfinite(scores).all():
            raise RerankError(f"reranker {self.model_id!r} gave scores of shape {scores.shape} with "
                              f"{int((~np.isfinite(scores)).sum())} not finite for {len(items)} documents")
        return scores

    @abstractmethod
    def _score(self, query: str, documents: list[str]) -> np.ndarray:
        """Scores for checked input (at least one document)."""

    @property
    @abstractmethod
    def backend(self) -> str:
        """``"local"`` or ``"remote"``."""


def model_name(model: str | os.PathLike[str] | None) -> str:
    """``model`` as a non-empty string (a hub id, a folder, or a served model's name)."""
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str) or not model.strip():
        raise InvalidValue("model", model, "a hub id, a folder path or a served model's name")
    return model
