"""The reindex pipeline: reader thread -> bounded queue -> embedder -> bounded queue -> writer threads.

Reading (Elasticsearch), embedding (CPU/GPU) and writing (Elasticsearch) overlap, so the model
never waits on the cluster while a page is prefetched and earlier vectors are being written.
Both queues are bounded: a slow cluster pushes back on the embedder, a slow embedder on the
reader, and memory stays flat whatever the size of the index. Errors in any thread stop all of
them and are raised in the caller's thread.
"""

from __future__ import annotations

import copy
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..config import SemanticConfig
from ..embedding.model_config import legacy_folder_digest
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


def weights_digest_of(embedder: Any) -> str | None:
    """The embedder's ``weights_digest`` (a local model's content digest), or None when it has none."""
    digest = getattr(embedder, "weights_digest", None)
    return digest if isinstance(digest, str) and digest else None


def digest_kind(digest: str | None) -> str:
    """The algorithm tag of a weights digest (``"w2:"``), "" for the earlier, untagged one. Digests
    of two algorithms never compare: a vector recording the earlier one is checked as one that
    records none (by its fingerprint)."""
    match = re.match(r"w\d+:", digest or "")
    return match.group(0) if match else ""


def legacy_digest_of(embedder: Any) -> str | None:
    """The digest the earlier algorithm gives the embedder's model folder (what the fingerprints of
    vectors recording it were made with); None when it has no folder or already uses that one."""
    path = getattr(getattr(embedder, "spec", None), "path", None)
    # only an embedder holding its own digest (not a wrapper delegating to one) can be re-digested
    if path is None or "_digest" not in getattr(embedder, "__dict__", {}) or not digest_kind(weights_digest_of(embedder)):
        return None
    try:
        return legacy_folder_digest(path)
    except OSError:
        return None


def legacy_settings_fingerprint(embedder: Any) -> str | None:
    """The settings fingerprint ``embedder`` had under the earlier weights digest: what the vectors
    written before the current digest algorithm carry. None when there is no such earlier one."""
    legacy = legacy_digest_of(embedder)
    if legacy is None or not hasattr(embedder, "_digest"):
        return None
    twin = copy.copy(embedder)  # shares the loaded model; only the digest differs
    twin._digest = legacy
    return str(twin.settings_fingerprint())


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
        #: the digest of the model weights, recorded next to each vector (None: remote, nothing to record)
        self.weights_digest: str | None = weights_digest_of(embedder)
        self._fingerprinters: dict[int, Fingerprinter] = {}
        self._legacy: dict[int, Fingerprinter | None] = {}
        #: whether a fingerprint made with the earlier weights digest makes a vector current: only
        #: once such vectors were found to be this model's (``job.check_legacy_vectors``)
        self.accept_legacy = False

    def fingerprinter(self, config: SemanticConfig) -> Fingerprinter:
        key = id(config)
        if key not in self._fingerprinters:
            self._fingerprinters[key] = Fingerprinter(self.embedder.settings_fingerprint(), config)
        return self._fingerprinters[key]

    def is_current(self, config: SemanticConfig, info: Any, text: str, fingerprint: str) -> bool:
        """Whether the stored ``info`` says the vector was made from ``text`` with these settings.

        A vector written before the current weights digest algorithm carries a fingerprint made
        with the earlier digest: it is current when that one matches and such vectors were found to
        be what the model makes of their texts (``accept_legacy``), so an upgrade does not re-embed
        every document. Re-embedded, it records the current one."""
        stored = info.get("fingerprint")
        if stored == fingerprint:
            return True
        if not stored or not self.accept_legacy or digest_kind(info.get("weights")):
            return False  # (a vector that records the current digest must match the current fingerprint)
        key = id(config)
        if key not in self._legacy:
            legacy = legacy_settings_fingerprint(self.embedder)
            self._legacy[key] = Fingerprinter(legacy, config) if legacy else None
        fp = self._legacy[key]
        return fp is not None and fp(text) == stored

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
            current = (self.is_current(config, info, text, fingerprint)
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
        if target_info is not None and not self.options.full and self.is_current(config, target_info, text,
                                                                                  fingerprint):
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
        if self.weights_digest:  # which weights made the vector: tells a copy of the model from another one
            info["weights"] = self.weights_digest
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
        """Vectors for the items that need one (None for the others), in order."""
        texts = [it.text for it in items if it.embed]
        vectors: list[Any] = [None] * len(items)
        if texts:
            before = self.embedder.stats.tokens
            start = time.perf_counter()
            matrix = self.embedder.embed_documents(texts)
            self.report.add(tokens=int(self.embedder.stats.tokens - before))
            with self.report._mutex:
                self.report.embed_seconds += time.perf_counter() - start
            rows = iter(matrix)
            vectors = [next(rows) if it.embed else None for it in items]
        return vectors

    # ------------------------------------------------------------------ one pass
    def run(self, plan: Plan, *, slice_id: int = 0, slices: int = 1, pit_id: str | None = None,
            keep_alive: str | None = None) -> PassResult:
        """Read, embed and write every document of ``plan.read_index`` (of slice ``slice_id`` of the
        shared point in time ``pit_id`` when sliced); returns the conflicts."""
        opts = self.options
        fp = self.fingerprinter(plan.config)
        stop = threading.Event()
        errors: list[BaseException] = []
        to_embed: queue.Queue[Any] = queue.Queue(maxsize=opts.queue_pages)
        to_write: queue.Queue[Any] = queue.Queue(maxsize=opts.writers * 2)
        conflicts: list[Item] = []
        mutex = threading.Lock()

        def put(q: queue.Queue[Any], value: Any) -> None:
            while True:
                if stop.is_set():
                    raise _Stopped
                try:
                    q.put(value, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def get(q: queue.Queue[Any]) -> Any:
            while True:
                try:
                    return q.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        raise _Stopped from None

        def fail(exc: BaseException) -> None:
            errors.append(exc)
            stop.set()

        def reader() -> None:
            pages = read_pages(
                self.es, plan.read_index, source_includes=plan.source_includes,
                source_excludes=plan.source_excludes, query=plan.query,
                vector_field=plan.config.vector_field if plan.mode == "update" else None,
                slice_id=slice_id, slices=slices, page_size=opts.page_size, keep_alive=keep_alive or opts.keep_alive,
                retry=self.retry, pit_id=pit_id,
            )
            chunk: list[Item] = []
            chunk_target = opts.embed_chunk or int(getattr(self.embedder, "chunk_size_hint", 256))
            try:
                for page in pages:
                    self.check()
                    infos = self._target_infos(plan, page)
                    self.report.add(read=len(page))
                    for doc in page:
                        item = self.classify(plan, doc, infos.get(doc.id), fp)
                        if item is None:
                            continue
                        if (plan.respect_limit and opts.limit is not None and item.embed
                                and self.report.to_embed >= opts.limit):
                            self.report.limit_reached = True
                            break
                        if item.embed:
                            self.report.add(to_embed=1)
                        if not opts.dry_run:
                            chunk.append(item)
                            if len(chunk) >= chunk_target:
                                put(to_embed, chunk)
                                chunk = []
                    self._tick()
                    if self.report.limit_reached:
                        break
                if chunk:
                    put(to_embed, chunk)
                put(to_embed, _DONE)
            except _Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                fail(exc)
            finally:
                pages.close()

        def writer() -> None:
            try:
                while True:
                    ops = get(to_write)
                    if ops is _DONE:
                        return
                    self.record(self.writer.send(ops), conflicts, mutex)
                    self._tick()
            except _Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001
                fail(exc)

        threads = [threading.Thread(target=reader, name="reindex-reader", daemon=True)]
        if not opts.dry_run:
            threads += [threading.Thread(target=writer, name=f"reindex-writer-{i}", daemon=True)
                        for i in range(opts.writers)]
        for t in threads:
            t.start()
        try:
            if not opts.dry_run:
                self._embed_loop(plan, get, put, to_embed, to_write)
                for _ in range(opts.writers):
                    put(to_write, _DONE)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            fail(exc)
        finally:
            while True:
                try:
                    if errors:
                        stop.set()
                    for t in threads:
                        while t.is_alive():
                            t.join(timeout=0.2)
                            if errors:
                                stop.set()
                    break
                except BaseException as exc:  # noqa: BLE001 - a signal while waiting: stop the threads first
                    fail(exc)
        if errors:
            # An interrupt (Ctrl-C, SIGTERM) wins over what it caused in the threads.
            raise next((e for e in errors if not isinstance(e, Exception)), errors[0])
        self._tick()
        return PassResult(conflicts)

    def _embed_loop(self, plan: Plan, get: Callable[..., Any], put: Callable[..., None],
                    to_embed: queue.Queue[Any], to_write: queue.Queue[Any]) -> None:
        opts = self.options
        pending: list[WriteOp] = []
        pending_bytes = 0
        while True:
            chunk = get(to_embed)
            if chunk is _DONE:
                break
            self.check()
            vectors = self.embed(chunk)
            for item, vector in zip(chunk, vectors, strict=True):
                op = self.build_op(plan, item, vector)
                if pending and (len(pending) >= opts.bulk_max_docs or pending_bytes + op.size > opts.bulk_max_bytes):
                    put(to_write, pending)
                    pending, pending_bytes = [], 0
                pending.append(op)
                pending_bytes += op.size
            self._tick()
        if pending:
            put(to_write, pending)

    # ------------------------------------------------------------------ conflicts
    def resolve_conflicts(self, plan: Plan, conflicts: list[Item]) -> None:
        """Documents edited after they were read: re-read each, rebuild its text, re-embed and
        write again with the new version; bounded by ``conflict_retries`` rounds, the rest is
        deferred to the next run."""
        fp = self.fingerprinter(plan.config)
        config = plan.config
        includes = plan.source_includes
        for _ in range(self.options.conflict_retries):
            if not conflicts:
                return
            self.check()
            fresh: list[Item] = []
            for old in conflicts:
                try:
                    routing = {"routing": old.doc.routing} if old.doc.routing is not None else {}
                    got = self.retry.call(self.writer._client.get, index=old.doc.index, id=old.doc.id,
                                          source_includes=includes, **routing).body
                except Exception as exc:  # noqa: BLE001
                    if getattr(getattr(exc, "meta", None), "status", None) == 404:
                        self.report.add(deleted_meanwhile=1)  # nothing left to embed
                        continue
                    self.report.add_failure(old.doc.id, old.doc.index, f"re-reading after a conflict failed: {exc}")
                    continue
                doc = SourceDoc(got["_id"], got["_index"], got.get("_source") or {}, got.get("_seq_no"),
                                got.get("_primary_term"), None, got.get("_routing", old.doc.routing))
                text = config.build_text(doc.source)
                fingerprint = fp(text)
                info = stored_info(doc.source, config)
                if info.get("fingerprint") == fingerprint:
                    # Already current: our own write landed before a dropped connection hid the
                    # answer (it is ours: same bookkeeping, to the millisecond), or another job
                    # wrote it -- that is no work of this job: current, like any skipped document.
                    ours = old.written is not None and fingerprint == old.fingerprint and all(
                        info.get(k) == old.written.get(k) for k in ("fingerprint", "embedded_at", "model"))
                    if not ours:
                        self.report.add(skipped=1)
                    elif old.embed:
                        self.report.add(embedded=1)
                    else:
                        self.report.add(empty=1)
                    continue
                if not text.strip() and not info:
                    self.report.add(empty=1)
                    continue
                fresh.append(Item(doc, text, fingerprint, embed=bool(text.strip())))
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


