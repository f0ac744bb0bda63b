"""``ReindexReport``: what a run did, live while it runs (progress bars) and as JSON at the end."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def iso_time(epoch: float) -> str:
    """``epoch`` seconds as ISO 8601 in UTC with milliseconds: ``2026-12-07T05:30:00.123+00:00``."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


#: Failures kept in the report with their reason; beyond that only counted (memory stays flat).
MAX_FAILURES_LISTED = 1000


@dataclass
class ReindexReport:
    """Counters and outcome of one reindex run.

    ``read`` documents were looked at; each ends up ``embedded`` (vector written), ``skipped``
    (fingerprint current), ``empty`` (no text to embed), ``failed`` (listed in ``failures`` with
    the reason), ``deferred`` (edited again and again while the job ran: the next run takes
    them) or ``deleted_meanwhile`` (deleted after it was read: nothing to write). ``conflicts`` counts documents edited while the job ran that were re-read and
    re-embedded from their new text. With ``dry_run``, ``to_embed`` says how many would be embedded.
    ``started_at`` and ``finished_at`` are epoch seconds here and ISO 8601 (UTC) in ``to_dict()``.
    """

    index: str
    model: str = ""
    target_index: str | None = None
    dry_run: bool = False
    total: int | None = None
    read: int = 0
    to_embed: int = 0
    vectors_made: int = 0  # by the embedder, batch by batch (``embedded`` counts them once written)
    embedded: int = 0
    skipped: int = 0
    empty: int = 0
    conflicts: int = 0
    deferred: int = 0
    deleted_meanwhile: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    bulk_requests: int = 0
    retries: int = 0
    limit_reached: bool = False
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    embed_seconds: float = 0.0
    setup_seconds: float = 0.0  # reading the configuration, taking the lock, loading the model
    settings_restored: dict[str, Any] = field(default_factory=dict)
    #: a dry run: settings a dead job left changed, which it does not restore (a real run does)
    settings_left_to_restore: dict[str, Any] = field(default_factory=dict)
    blue_green: dict[str, Any] = field(default_factory=dict)
    lock: dict[str, Any] = field(default_factory=dict)
    shared_pit: dict[str, Any] = field(default_factory=dict)  # a sliced run's shared point in time
    #: how the loaded model was found to be (or not) the one the stored vectors were made with
    model_check: dict[str, Any] = field(default_factory=dict)
    #: tokens per text the embedder cuts to (None: unknown); ``max_length_capped`` when --max-length
    #: asked for more than the model takes: {"asked": N, "used": limit}
    max_length: int | None = None
    max_length_capped: dict[str, int] = field(default_factory=dict)
    pit_reopened: int = 0  # times the scan's point in time expired and the documents were read again
    #: text field -> documents read whose value there held an object, which adds no text (see build_text)
    non_text_values: dict[str, int] = field(default_factory=dict)
    #: things the user should act on although the run went through (printed as warnings)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # why the run stopped early, if it did
    exit_code: int | None = None  # what the command exited with (set by the CLI)
    # written without a vector (part of ``empty``): what a re-read after an expired point in time
    # sees as current
    _written_empty: int = field(default=0, repr=False, compare=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # -- updates (thread-safe: reader, embedder and writer threads all report here) --
    def add(self, **deltas: int) -> None:
        with self._mutex:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)

    def add_non_text(self, fields: set[str]) -> None:
        with self._mutex:
            for name in fields:
                self.non_text_values[name] = self.non_text_values.get(name, 0) + 1

    def add_failure(self, doc_id: str, index: str, reason: str) -> None:
        with self._mutex:
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append({"id": doc_id, "index": index, "reason": reason})

    # -- derived figures --
    @property
    def done(self) -> int:
        """Documents finished one way or another (what a progress bar counts)."""
        return self.embedded + self.skipped + self.empty + self.failed + self.deferred + self.deleted_meanwhile + (
            self.to_embed if self.dry_run else 0
        )

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    @property
    def docs_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        with self._mutex:
            data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
            data["failures"] = list(self.failures)
        data["started_at"] = iso_time(self.started_at)
        data["finished_at"] = iso_time(self.finished_at) if self.finished_at is not None else None
        data["seconds"] = round(self.seconds, 3)
        data["docs_per_second"] = round(self.docs_per_second, 2)
        data["tokens_per_second"] = round(self.tokens / self.embed_seconds, 1) if self.embed_seconds else 0.0
        data["failures_not_listed"] = max(0, self.failed - len(data["failures"]))
        return data

    def write_json(self, path: str | os.PathLike[str], *, redact: Callable[[str], str] | None = None) -> None:
        """Write the report as JSON (atomically: a scheduler never reads half a file); ``redact``, where
        given, removes secrets from the text first."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
        tmp.write_text(redact(text) if redact is not None else text, "utf-8")
        os.replace(tmp, target)

    def summary(self) -> str:
        """One line for humans."""
        if self.dry_run:
            head = f"dry run on {self.index!r}: {self.to_embed} would be embedded"
        else:
            verb = "stopped reindexing" if self.error else "reindexed"
            head = f"{verb} {self.target_index or self.index!r}: {self.embedded} embedded"
        parts = [head, f"{self.skipped} current", f"{self.empty} without text"]
        if self.conflicts:
            parts.append(f"{self.conflicts} edited during the run (re-embedded)")
        if self.deferred:
            parts.append(f"{self.deferred} deferred to the next run")
        if self.deleted_meanwhile:
            parts.append(f"{self.deleted_meanwhile} deleted during the run")
        parts.append(f"{self.failed} failed")
        line = ", ".join(parts) + f" in {self.seconds:.1f}s ({self.docs_per_second:.1f} docs/s)"
        if self.limit_reached:
            line += "; stopped at --limit"
        if self.blue_green.get("alias_swapped"):
            line += f"; alias {self.blue_green['alias']!r} now points at {self.blue_green['new_index']!r}"
        if self.blue_green.get("alias_swapped") and self.blue_green.get("config_carried"):
            carried = ", ".join(f"{k} {v!r}" for k, v in sorted(self.blue_green["config_carried"].items()))
            line += f"; set on the old index during the copy and carried over: {carried}"
        if self.blue_green.get("owner_block_carried"):
            line += (f"; {self.blue_green['new_index']!r} keeps the write block {self.blue_green['old_index']!r} had "
                     f"({', '.join(sorted(self.blue_green['owner_block_carried']))})")
        if self.blue_green.get("write_block_s") is not None:
            line += (f"; writes to {self.blue_green['old_index']!r} were blocked for "
                     f"{self.blue_green['write_block_s'] * 1000:.0f} ms")
        return line
