"""The reindex pipeline: read stage (a thread) -> bounded queue -> embed stage -> bounded queue -> write
stage (writer threads).

Reading (Elasticsearch), embedding (CPU/GPU) and writing (Elasticsearch) overlap, so the model
never waits on the cluster while a page is prefetched and earlier vectors are being written.
Both queues are bounded: a slow cluster pushes back on the embedder, a slow embedder on the
reader, and memory stays flat whatever the size of the index. Errors in any thread stop all of
them and are raised in the caller's thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..config import SemanticConfig
from .fingerprint import Fingerprinter, stored_info
from .options import ReindexOptions
from .reader import SourceDoc, mget_docs, read_pages
from .report import ReindexReport
from .retry import RetryPolicy
from .writer import BulkWriter, WriteOp, chunk_ops, index_op, update_op, vector_value

log = logging.getLogger(__name__)

_DONE = object()  # end-of-stream marker on the queues


@dataclass
class Item:
    """A document on its way through the pipeline."""

    doc: SourceDoc
    text: str
    fingerprint: str
    embed: bool = True  # False: written without a vector (no text)
    #: the bookkeeping object of the write built for it (tells our own write from another job's)
    written: dict[str, Any] | None = None


@dataclass
class Plan:
    """What one pipeline pass does: where it reads, where and how it writes."""

    read_index: str
    config: SemanticConfig  # the configuration the vectors are made for
    model_label: str  # stored in <vector_field>_info.model
    mode: str = "update"  # "update" (in place, OCC) | "copy" (whole documents into target_index)
    target_index: str | None = None
    source_includes: list[str] | None = None
    source_excludes: list[str] | None = None
    #: copy mode: look up which documents the target already has current (resuming a crashed copy)
    lookup_target: bool = False
    base64_vectors: bool = False
    #: copy mode: ids to restrict the pass to (catch-up passes), None = all
    query: dict[str, Any] | None = None
    respect_limit: bool = True


@dataclass
class PassResult:
    conflicts: list[Item] = field(default_factory=list)


class _Stopped(Exception):
    pass


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Pipeline:
    """Runs passes of the reindex for one job (shares the embedder, writer and report)."""

    def __init__(self, es: Any, embedder: Any, options: ReindexOptions, report: ReindexReport,
                 progress: Callable[[ReindexReport], None] | None = None,
                 check: Callable[[], None] | None = None) -> None:
        self.es = es
        self.embedder = embedder
        self.options = options
        self.report = report
        self.progress = progress
        self.check = check or (lambda: None)
        self.retry = RetryPolicy(options.max_retries, options.retry_initial_s, options.retry_max_s,
                                 on_retry=lambda exc: report.add(retries=1))
        self.writer = BulkWriter(es, self.retry)
        self._fingerprinters: dict[int, Fingerprinter] = {}

    def fingerprinter(self, config: SemanticConfig) -> Fingerprinter:
        key = id(config)
        if key not in self._fingerprinters:
            self._fingerprinters[key] = Fingerprinter(self.embedder.settings_fingerprint(), config)
        return self._fingerprinters[key]

    def _tick(self) -> None:
        if self.progress is not None:
            try:
                self.progress(self.report)
            except Exception as exc:  # noqa: BLE001 - a broken progress display never stops the job
                log.debug("progress callback failed: %s", exc)

    # ------------------------------------------------------------------ deciding
    def classify(self, plan: Plan, doc: SourceDoc, target_info: dict[str, Any] | None,
                 fp: Fingerprinter) -> Item | None:
        """The item to write for ``doc``, or None when it is current (counted as skipped/empty)."""
        config = plan.config
        objects: set[str] = set()
        text = config.build_text(doc.source, objects)
        if objects:
            self.report.add_non_text(objects)
        fingerprint = fp(text)
        has_text = bool(text.strip())
        if plan.mode == "update":
            info = stored_info(doc.source, config)
            current = (info.get("fingerprint") == fingerprint
                       and (doc.has_vector is not False or not has_text))
            if current and not self.options.full:
                self.report.add(skipped=1)
                return None
            if not has_text:
                if not info:  # never embedded and nothing to embed: leave the document alone
                    self.report.add(empty=1)
                    return None
                return Item(doc, text, fingerprint, embed=False)  # drop the vector of the old text
            return Item(doc, text, fingerprint)
        # copy mode: every document goes to the target; resumed copies skip what is there already
        if target_info is not None and not self.options.full and target_info.get("fingerprint") == fingerprint:
            self.report.add(skipped=1)
            return None
        return Item(doc, text, fingerprint, embed=has_text)

    def _target_infos(self, plan: Plan, docs: list[SourceDoc]) -> dict[str, dict[str, Any]]:
        """Copy mode, resuming: the info objects the target index already holds for these ids."""
        if not plan.lookup_target or not docs:
            return {}
        response = self.retry.call(self.writer._client.mget, index=plan.target_index,
                                   source_includes=[plan.config.info_field], **mget_docs(docs)).body
        infos: dict[str, dict[str, Any]] = {}
        for entry in response.get("docs", []):
            if entry.get("found"):
                infos[entry["_id"]] = stored_info(entry.get("_source") or {}, plan.config)  # type: ignore[assignment]
        return infos

    # ------------------------------------------------------------------ writing
    def build_op(self, plan: Plan, item: Item, vector: Any) -> WriteOp:
        config = plan.config
        info: dict[str, Any] = {"model": plan.model_label, "fingerprint": item.fingerprint}
        info["embedded_at"] = utc_now()
        item.written = info
        value = vector_value(vector, plan.base64_vectors) if vector is not None else None
        if plan.mode == "update":
            return update_op(item.doc.id, item.doc.index, {config.vector_field: value, config.info_field: info},
                             item.doc.seq_no, item.doc.primary_term, tag=item, routing=item.doc.routing)
        source = {k: v for k, v in item.doc.source.items() if k not in (config.vector_field, config.info_field)}
        if value is not None:
            source[config.vector_field] = value
        source[config.info_field] = info
        assert plan.target_index is not None
        return index_op(item.doc.id, plan.target_index, source, tag=item, routing=item.doc.routing)

    def record(self, outcome: Any, conflicts: list[Item], mutex: threading.Lock) -> None:
        embedded = sum(1 for op in outcome.written if op.tag.embed)
        self.report.add(embedded=embedded, empty=len(outcome.written) - embedded,
                        _written_empty=len(outcome.written) - embedded,
                        deleted_meanwhile=len(outcome.deleted), bulk_requests=outcome.requests,
                        retries=outcome.retries)
        for op, reason in outcome.failures:
            self.report.add_failure(op.doc_id, op.index, reason)
        if outcome.conflicts:
            with mutex:
                conflicts.extend(op.tag for op in outcome.conflicts)

    def embed(self, items: list[Item]) -> list[Any]:
        """Vectors for the items that need one (None for the others), in order; the report's
        embedding figures move with every batch the embedder finishes."""
        texts = [it.text for it in items if it.embed]
        if not texts:
            return [None] * len(items)
        meter = _EmbedMeter(self.report, self.embedder.stats, self._tick)
        matrix = self.embedder.embed_documents(texts, progress=meter.batch)
        meter.batch(0)  # tokens and time since the last batch
        rows = iter(matrix)
        return [next(rows) if it.embed else None for it in items]

    # ------------------------------------------------------------------ one pass
    def run(self, plan: Plan, *, slice_id: int = 0, slices: int = 1, pit_id: str | None = None,
            keep_alive: str | None = None) -> PassResult:
        """Read, embed and write every document of ``plan.read_index`` (of slice ``slice_id`` of the
        shared point in time ``pit_id`` when sliced); returns the conflicts. Three stages connected
        by bounded queues: ``read_stage`` (a thread), ``embed_stage`` (this thread), ``write_stage``
        (``options.writers`` threads)."""
        opts = self.options
        lanes = _Lanes(opts.queue_pages, opts.writers * 2)

        def pages() -> Any:
            return read_pages(
                self.es, plan.read_index, source_includes=plan.source_includes,
                source_excludes=plan.source_excludes, query=plan.query,
                vector_field=plan.config.vector_field if plan.mode == "update" else None,
                slice_id=slice_id, slices=slices, page_size=opts.page_size, keep_alive=keep_alive or opts.keep_alive,
                retry=self.retry, pit_id=pit_id)

        threads = [lanes.thread("reindex-reader", lambda: self.read_stage(plan, lanes, pages()))]
        if not opts.dry_run:
            threads += [lanes.thread(f"reindex-writer-{i}", lambda: self.write_stage(lanes))
                        for i in range(opts.writers)]
            lanes.guard(lambda: self.embed_stage(plan, lanes))
        lanes.join(threads)
        self._tick()
        return PassResult(lanes.conflicts)

    def read_stage(self, plan: Plan, lanes: _Lanes, pages: Any) -> None:
        """Read pages, keep the documents that need work, hand them to ``embed_stage`` in chunks
        of about the embedder's ``chunk_size_hint``."""
        fp = self.fingerprinter(plan.config)
        chunk: list[Item] = []
        size = self.options.embed_chunk or int(self.embedder.chunk_size_hint)
        try:
            for page in pages:
                self.check()
                infos = self._target_infos(plan, page)
                self.report.add(read=len(page))
                for item in self._work_in(plan, page, infos, fp):
                    chunk.append(item)
                    if len(chunk) >= size:
                        lanes.put(lanes.to_embed, chunk)
                        chunk = []
                self._tick()
                if self.report.limit_reached:
                    break
            if chunk:
                lanes.put(lanes.to_embed, chunk)
            lanes.put(lanes.to_embed, _DONE)
        finally:
            pages.close()

    def _work_in(self, plan: Plan, page: list[SourceDoc], infos: dict[str, dict[str, Any]],
                 fp: Fingerprinter) -> Iterator[Item]:
        """The documents of ``page`` to embed or write (counted; a dry run counts only), up to ``--limit``."""
        opts = self.options
        for doc in page:
            item = self.classify(plan, doc, infos.get(doc.id), fp)
            if item is None:
                continue
            if plan.respect_limit and opts.limit is not None and item.embed and self.report.to_embed >= opts.limit:
                self.report.limit_reached = True
                return
            if item.embed:
                self.report.add(to_embed=1)
            if not opts.dry_run:
                yield item

    def embed_stage(self, plan: Plan, lanes: _Lanes) -> None:
        """Embed each chunk from ``read_stage``; cut the write operations into bulk requests
        (``bulk_max_docs``, ``bulk_max_bytes``) for ``write_stage``."""
        opts = self.options
        pending: list[WriteOp] = []
        pending_bytes = 0
        while (chunk := lanes.get(lanes.to_embed)) is not _DONE:
            self.check()
            for item, vector in zip(chunk, self.embed(chunk), strict=True):
                op = self.build_op(plan, item, vector)
                if pending and (len(pending) >= opts.bulk_max_docs or pending_bytes + op.size > opts.bulk_max_bytes):
                    lanes.put(lanes.to_write, pending)
                    pending, pending_bytes = [], 0
                pending.append(op)
                pending_bytes += op.size
            self._tick()
        if pending:
            lanes.put(lanes.to_write, pending)
        for _ in range(opts.writers):
            lanes.put(lanes.to_write, _DONE)

    def write_stage(self, lanes: _Lanes) -> None:
        """Send each bulk request (optimistic concurrency: a document edited since it was read is a
        conflict, kept for ``resolve_conflicts``) and record its outcome."""
        while (ops := lanes.get(lanes.to_write)) is not _DONE:
            self.record(self.writer.send(ops), lanes.conflicts, lanes.mutex)
            self._tick()

    # ------------------------------------------------------------------ conflicts
    def resolve_conflicts(self, plan: Plan, conflicts: list[Item]) -> None:
        """Documents edited after they were read: re-read each, rebuild its text, re-embed and
        write again with the new version; bounded by ``conflict_retries`` rounds, the rest is
        deferred to the next run."""
        for _ in range(self.options.conflict_retries):
            if not conflicts:
                return
            self.check()
            fresh = [item for item in (self._reread(plan, old) for old in conflicts) if item is not None]
            if not fresh:
                return
            vectors = self.embed(fresh)
            ops = [self.build_op(plan, item, vec) for item, vec in zip(fresh, vectors, strict=True)]
            conflicts = []
            mutex = threading.Lock()
            before = self.report.embedded + self.report.empty
            for chunk in chunk_ops(ops, self.options.bulk_max_docs, self.options.bulk_max_bytes):
                self.record(self.writer.send(chunk), conflicts, mutex)
            self.report.add(conflicts=(self.report.embedded + self.report.empty) - before)
            self._tick()
        if conflicts:
            self.report.add(deferred=len(conflicts))
            log.warning("%d documents kept changing while being embedded; the next run takes them", len(conflicts))

    def _reread(self, plan: Plan, old: Item) -> Item | None:
        """The conflicting document as it is now, to embed again; None when there is nothing to
        do (deleted, failed to read, current already: counted)."""
        config = plan.config
        try:
            routing = {"routing": old.doc.routing} if old.doc.routing is not None else {}
            got = self.retry.call(self.writer._client.get, index=old.doc.index, id=old.doc.id,
                                  source_includes=plan.source_includes, **routing).body
        except Exception as exc:  # noqa: BLE001
            if getattr(getattr(exc, "meta", None), "status", None) == 404:
                self.report.add(deleted_meanwhile=1)  # nothing left to embed
            else:
                self.report.add_failure(old.doc.id, old.doc.index, f"re-reading after a conflict failed: {exc}")
            return None
        doc = SourceDoc(got["_id"], got["_index"], got.get("_source") or {}, got.get("_seq_no"),
                        got.get("_primary_term"), None, got.get("_routing", old.doc.routing))
        text = config.build_text(doc.source)
        fingerprint = self.fingerprinter(config)(text)
        info = stored_info(doc.source, config)
        if info.get("fingerprint") == fingerprint:
            # Already current: our own write landed before a dropped connection hid the answer (it
            # is ours: same bookkeeping, to the millisecond), or another job wrote it -- that is no
            # work of this job: current, like any skipped document.
            ours = old.written is not None and fingerprint == old.fingerprint and all(
                info.get(k) == old.written.get(k) for k in ("fingerprint", "embedded_at", "model"))
            self.report.add(**{"skipped" if not ours else "embedded" if old.embed else "empty": 1})
            return None
        if not text.strip() and not info:
            self.report.add(empty=1)
            return None
        return Item(doc, text, fingerprint, embed=bool(text.strip()))


class _EmbedMeter:
    """Moves the report's embedding figures with each batch the embedder finishes: vectors made,
    tokens, seconds spent embedding (a progress display reads them live)."""

    def __init__(self, report: ReindexReport, stats: Any, tick: Callable[[], None]) -> None:
        self.report, self.stats, self.tick = report, stats, tick
        self.tokens = stats.tokens
        self.at = time.perf_counter()
        self.mutex = threading.Lock()  # batches finish on one thread per device

    def batch(self, rows: int) -> None:
        with self.mutex:
            now, tokens = time.perf_counter(), self.stats.tokens
            self.report.add(vectors_made=rows, tokens=int(tokens - self.tokens))
            with self.report._mutex:
                self.report.embed_seconds += now - self.at
            self.tokens, self.at = tokens, now
        if rows:
            self.tick()


class _Lanes:
    """What the stages of one pass share: the two bounded queues, the stop signal, the first
    errors (an interrupt first), and the conflicts the writers found."""

    def __init__(self, to_embed: int, to_write: int) -> None:
        self.to_embed: queue.Queue[Any] = queue.Queue(maxsize=to_embed)
        self.to_write: queue.Queue[Any] = queue.Queue(maxsize=to_write)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.conflicts: list[Item] = []
        self.mutex = threading.Lock()

    def put(self, q: queue.Queue[Any], value: Any) -> None:
        """Put, waiting for room (back-pressure) unless the pass is stopping."""
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped from None

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()

    def guard(self, stage: Callable[[], None]) -> None:
        """Run ``stage``; its error stops every stage and is raised by ``join``."""
        try:
            stage()
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.fail(exc)

    def thread(self, name: str, stage: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=self.guard, args=(stage,), name=name, daemon=True)
        t.start()
        return t

    def join(self, threads: list[threading.Thread]) -> None:
        """Wait for the threads (a signal while waiting stops them first), then raise the first
        error, an interrupt (Ctrl-C, SIGTERM) before what it caused in the threads."""
        while True:
            try:
                for t in threads:
                    while t.is_alive():
                        t.join(timeout=0.2)
                        if self.errors:
                            self.stop.set()
                break
            except BaseException as exc:  # noqa: BLE001 - a signal while waiting
                self.fail(exc)
        if self.errors:
            raise next((e for e in self.errors if not isinstance(e, Exception)), self.errors[0])
