"""Cumulative embedding counters (no torch)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class EmbedStats:
    """Counters over the life of an :class:`~es_semantic.embedding.Embedder`.

    ``tokens`` counts real (unpadded) tokens fed to the model, special tokens included;
    ``padded_tokens`` what the batches really cost; ``truncated`` texts cut at ``max_length``;
    ``seconds`` wall time spent inside embedding calls. Safe to read from another thread (a
    progress bar); increments go through :meth:`add`.
    """

    texts: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    truncated: int = 0
    batches: int = 0
    oom_retries: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def snapshot(self) -> EmbedStats:
        with self._lock:
            return EmbedStats(**self.as_dict())
