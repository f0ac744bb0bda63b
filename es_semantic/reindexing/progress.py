"""Showing a running reindex: a bar on a terminal, a line every 30 s in a log.

Both count documents done (current already, or embedded and written), move with every batch the
embedder finishes, and show the embedding rate (documents and tokens per second) and an ETA from
it: what is left to embed, estimated from the share of documents read so far that needed it.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from .report import ReindexReport

#: Seconds between two progress lines when stderr is not a terminal.
LOG_EVERY_S = 30.0


def figures(report: ReindexReport) -> dict[str, Any]:
    """The live figures of a run: documents done, the embedding rates and the seconds left (None:
    not known yet)."""
    with report._mutex:
        made, written = report.vectors_made, report.embedded
        settled = report.skipped + report.empty + report.deferred + report.deleted_meanwhile
        done = settled + max(made, written + report.failed)
        read, to_embed, total = report.read, report.to_embed, report.total
        tokens, embed_seconds = report.tokens, report.embed_seconds
    seconds = report.seconds
    rate = made / seconds if seconds > 0 else 0.0
    eta = None
    if rate > 0 and read:
        unread = max(0, (total or read) - read)
        left = max(0.0, to_embed + unread * to_embed / read - made)
        eta = left / rate
    return {"done": min(done, total) if total else done, "total": total, "embedded": made, "written": written,
            "skipped": report.skipped, "failed": report.failed, "docs_per_s": rate,
            "tokens_per_s": tokens / embed_seconds if embed_seconds > 0 else 0.0, "eta_s": eta}


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(report: ReindexReport) -> str:
    """One line: ``1200/5000 documents done, 900 embedded (800 written), 45.0 docs/s, 1800 tok/s, eta 1:24``."""
    f = figures(report)
    of = f"/{f['total']}" if f["total"] is not None else ""
    if report.dry_run:
        return f"{report.read}{of} documents read, {report.to_embed} to embed, {report.skipped} current"
    return (f"{f['done']}{of} documents done, {f['embedded']} embedded ({f['written']} written), "
            f"{f['skipped']} current, {f['failed']} failed, {f['docs_per_s']:.1f} docs/s, "
            f"{f['tokens_per_s']:.0f} tok/s, eta {_clock(f['eta_s'])}")


class ProgressBar:
    """A tqdm bar: documents done of the total; embedded, written, rates and ETA after it."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: Any = None
        self._mutex = threading.Lock()

    def __call__(self, report: ReindexReport) -> None:
        from tqdm import tqdm

        f = figures(report)
        with self._mutex:
            if self._bar is None:
                self._bar = tqdm(total=f["total"], unit="doc", file=self.stream, dynamic_ncols=True,
                                 desc="dry run" if report.dry_run else "reindex",
                                 bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
            self._bar.n = report.read if report.dry_run else f["done"]
            postfix = {"to_embed": report.to_embed, "current": report.skipped} if report.dry_run else {
                "embedded": f["embedded"], "written": f["written"], "docs/s": f"{f['docs_per_s']:.1f}",
                "tok/s": f"{f['tokens_per_s']:.0f}", "eta": _clock(f["eta_s"])}
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        with self._mutex:
            if self._bar is not None:
                self._bar.close()


class ProgressLog:
    """A progress line on ``stream`` every ``every_s`` seconds (for logs: no bar, no carriage returns)."""

    def __init__(self, stream: IO[str] | None = None, every_s: float = LOG_EVERY_S) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = time.monotonic()
        self._mutex = threading.Lock()

    def __call__(self, report: ReindexReport) -> None:
        with self._mutex:
            now = time.monotonic()
            if now - self._last < self.every_s:
                return
            self._last = now
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        print(f"{stamp} progress {report.index}: {progress_line(report)}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


def progress_for(stream: IO[str] | None = None) -> ProgressBar | ProgressLog:
    """A bar when ``stream`` (stderr by default) is a terminal, else a periodic line."""
    stream = stream or sys.stderr
    return ProgressBar(stream) if stream.isatty() else ProgressLog(stream)
