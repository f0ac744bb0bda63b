"""What the reindex job, ``hybrid_search`` and the CLI need of an embedder: :class:`TextEmbedder`.

:class:`~es_semantic.embedding.LocalEmbedder` (torch/transformers) and
:class:`~es_semantic.embedding.RemoteEmbedder` (an OpenAI-compatible server) implement it; so can
any object of the caller's with these members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from es_semantic.embedding.stats import EmbedStats


@runtime_checkable
class TextEmbedder(Protocol):
    """Turns texts into unit vectors and says what decides them."""

    model_id: str
    #: tokens a text is cut to (a remote server applies its own limit)
    max_length: int
    stats: EmbedStats

    @property
    def dims(self) -> int: ...

    @property
    def native_dims(self) -> int | None:
        """The dims the model makes before Matryoshka truncation; None when unknown (a server)."""

    @property
    def weights_digest(self) -> str | None:
        """sha256 over the model's files; None when there are no files here (a server)."""

    @property
    def length_limit(self) -> int | None:
        """The most tokens the model takes; None when unknown."""

    @property
    def chunk_size_hint(self) -> int:
        """Texts to hand :meth:`embed_documents` per call for full batches."""

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False,
                        progress: Callable[[int], None] | None = None) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str], *, instruction: str | None = None) -> np.ndarray: ...

    def embed_query(self, text: str, *, instruction: str | None = None) -> np.ndarray: ...

    def query_prefix(self, instruction: str | None = None) -> str: ...

    def settings_fingerprint(self) -> str:
        """Short string of everything that changes document vectors (the weights digest included)."""

    def describe(self) -> str:
        """One line naming the model and where it runs, with no credential in it."""
