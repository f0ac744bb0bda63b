"""One job per index: a lock document in a small dedicated index.

The lock is taken with ``op_type=create`` (only one creator wins), kept alive by a heartbeat
thread that rewrites it with optimistic concurrency (``if_seq_no``), and deleted at the end. A
lock whose ``expires`` time has passed belongs to a job that died (SIGKILL, lost machine): the
next job takes it over, again with optimistic concurrency so that two jobs racing for a stale
lock cannot both win. The lock document also carries ``pending_restore``: index settings a
blue/green job changed and must put back (bulk-load settings of the new index, the write block of
the old one with ``--block-writes``), so a job that died mid-way has them restored by the next one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from elasticsearch import ConflictError, NotFoundError

from ..errors import EsSemanticError, LockHeld
from .retry import RetryPolicy, no_transport_retries

log = logging.getLogger(__name__)


class LockLost(EsSemanticError):
    """Another job took the lock over (this job's heartbeat stopped for longer than the TTL)."""

    exit_code = 3


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_lock_index(es: Any, lock_index: str, retry: RetryPolicy) -> None:
    """Create the small index that holds lock (and shared-scan) documents, unless it exists."""
    try:
        exists = retry.call(es.indices.exists, index=lock_index)
    except Exception:  # noqa: BLE001 - create below will say what is wrong
        exists = False
    if exists:
        return
    try:
        retry.call(
            es.indices.create,
            index=lock_index,
            settings={"number_of_shards": 1, "auto_expand_replicas": "0-1"},
            mappings={"dynamic": False, "properties": {
                "key": {"type": "keyword"}, "owner": {"type": "keyword"},
                "expires_ms": {"type": "long"}, "started": {"type": "date"}}},
        )
    except Exception as exc:
        if "resource_already_exists" not in str(exc):
            raise


def held_message(key: str, held: dict[str, Any], lock_index: str, why: str = "") -> LockHeld:
    """``LockHeld`` saying who holds the lock ``key`` (in ``lock_index``) and until when."""
    return LockHeld(
        f"another job holds the lock on {key!r}{why}: owner {held.get('owner')}, started {held.get('started')}, "
        f"last heartbeat {held.get('heartbeat')}, expires {held.get('expires_at')}",
        key=key, lock_index=lock_index, owner=held.get("owner"),
    )


class JobLock:
    """The lock on ``key`` (usually the index name) in ``lock_index``.

    Use as a context manager, or ``acquire()`` / ``release()``. ``previous`` is the stale lock
    document taken over, if any (its ``pending_restore`` says what a dead job left to undo).
    """

    def __init__(self, es: Any, key: str, *, lock_index: str, ttl_s: float = 300.0, owner: str | None = None,
                 job: str = "reindex", retry: RetryPolicy | None = None) -> None:
        self._es = no_transport_retries(es)
        self.key = key
        self.lock_index = lock_index
        self.ttl_s = ttl_s
        self.owner = owner or default_owner()
        self.job = job
        self._retry = retry or RetryPolicy(max_retries=5)
        self._seq: tuple[int, int] | None = None
        self._doc: dict[str, Any] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()
        self.previous: dict[str, Any] | None = None
        #: monotonic time of the last write of the lock that is known to have landed
        self._last_ok: float | None = None

    # -- document --
    def _document(self, now: float) -> dict[str, Any]:
        doc = dict(self._doc)
        doc.update({
            "key": self.key,
            "owner": self.owner,
            "job": self.job,
            "heartbeat": _iso(now),
            "expires_at": _iso(now + self.ttl_s),
            "expires_ms": int((now + self.ttl_s) * 1000),
            "ttl_s": self.ttl_s,
            # Unique per write: after a dropped connection, a 409 on the retry is recognised as
            # our own first attempt having landed (see _own_write).
            "token": uuid.uuid4().hex,
        })
        doc.setdefault("started", _iso(now))
        return doc

    # -- taking and giving back --
    def acquire(self) -> JobLock:
        """Take the lock, or raise ``LockHeld`` saying who holds it and until when."""
        ensure_lock_index(self._es, self.lock_index, self._retry)
        now = time.time()
        doc = self._document(now)
        try:
            resp = self._retry.call(self._es.create, index=self.lock_index, id=self.key, document=doc,
                                    refresh="wait_for")
            self._taken(resp.body, doc)
            return self
        except ConflictError:
            pass
        current = self._retry.call(self._es.get, index=self.lock_index, id=self.key)
        held = current.body.get("_source") or {}
        if held.get("token") == doc["token"]:  # our create landed; only its answer was lost
            self._taken(current.body, doc)
            return self
        if held.get("expires_ms", 0) > now * 1000:
            raise held_message(self.key, held, self.lock_index)
        # Stale: take it over, but only if nobody else did in between (OCC on what we read).
        self.previous = held
        doc["pending_restore"] = held.get("pending_restore") or {}
        try:
            resp = self._retry.call(self._es.index, index=self.lock_index, id=self.key, document=doc,
                                    if_seq_no=current.body["_seq_no"], if_primary_term=current.body["_primary_term"],
                                    refresh="wait_for")
        except ConflictError:
            mine = self._own_write(doc)
            if mine is None:
                raise LockHeld(f"another job took over the expired lock on {self.key!r} at the same time",
                               key=self.key, lock_index=self.lock_index) from None
            resp_body: dict[str, Any] = mine
        else:
            resp_body = resp.body
        log.warning("took over the expired lock on %r held by %s", self.key, held.get("owner"))
        self._taken(resp_body, doc)
        return self

    def _own_write(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """After a 409: the stored lock (with its ``_seq_no``) if it is ``doc`` itself, i.e. an
        earlier attempt of this very write landed and only its answer was lost; else None."""
        try:
            current = self._retry.call(self._es.get, index=self.lock_index, id=self.key).body
        except NotFoundError:
            return None
        held = current.get("_source") or {}
        if held.get("owner") == self.owner and held.get("token") == doc["token"]:
            return dict(current)
        return None

    def _taken(self, body: Any, doc: dict[str, Any]) -> None:
        self._seq = (body["_seq_no"], body["_primary_term"])
        self._last_ok = time.monotonic()
        self._doc = {k: v for k, v in doc.items() if k in ("started", "pending_restore")}
        self._thread = threading.Thread(target=self._heartbeat, name=f"lock-heartbeat-{self.key}", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        """Rewrite the lock (new heartbeat/expiry, current fields) if we still own it."""
        with self._mutex:
            if self._seq is None or self.lost.is_set():
                return
            doc = self._document(time.time())
            try:
                resp = self._retry.call(self._es.index, index=self.lock_index, id=self.key, document=doc,
                                        if_seq_no=self._seq[0], if_primary_term=self._seq[1])
                body = resp.body
            except ConflictError:
                mine = self._own_write(doc)
                if mine is None:
                    log.error("lost the lock on %r: another job took it over", self.key)
                    self.lost.set()
                    return
                body = mine
            except NotFoundError:
                log.error("lost the lock on %r: it was deleted", self.key)
                self.lost.set()
                return
            self._seq = (body["_seq_no"], body["_primary_term"])
            self._last_ok = time.monotonic()

    def _heartbeat(self) -> None:
        interval = max(self.ttl_s / 3.0, 0.05)
        while not self._stop.wait(interval):
            try:
                self._write()
            except Exception as exc:  # noqa: BLE001 - keep beating; the next beat may get through
                log.warning("lock heartbeat failed: %s", exc)

    def set_field(self, name: str, value: Any) -> None:
        """Store ``value`` durably in the lock document (e.g. settings to restore after a crash)."""
        with self._mutex:
            self._doc[name] = value
        self._write()
        self.check()

    def check(self) -> None:
        """Raise ``LockLost`` if another job took the lock over, or if the lock has not been
        renewed for most of its TTL (heartbeats failing): another job may take it any moment, so
        stop before two jobs write the same index."""
        if self.lost.is_set():
            raise LockLost(f"lost the lock on {self.key!r}: another job took it over (this one stalled for "
                           f"longer than the lock TTL of {self.ttl_s:g}s); stopping")
        if self._last_ok is not None and self._seq is not None:
            age = time.monotonic() - self._last_ok
            if age > 0.9 * self.ttl_s:
                raise LockLost(f"the lock on {self.key!r} was last renewed {age:.1f}s ago (TTL {self.ttl_s:g}s): "
                               "its heartbeats keep failing, so another job could take it over; stopping. "
                               "Rerun when the cluster is healthy: finished documents are skipped")

    def release(self) -> None:
        """Stop the heartbeat and delete the lock (only if it is still ours).

        When settings are still to be restored (``pending_restore`` not empty: restoring them
        failed), the lock is instead left behind already expired, so the next job takes it over
        at once and restores them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._mutex:
            if self._seq is None or self.lost.is_set():
                return
            try:
                if self._doc.get("pending_restore"):
                    doc = self._document(time.time())
                    doc.update({"expires_ms": 0, "expires_at": _iso(0), "released": True})
                    self._retry.call(self._es.index, index=self.lock_index, id=self.key, document=doc,
                                     if_seq_no=self._seq[0], if_primary_term=self._seq[1], refresh="wait_for")
                    log.warning("settings of %s are still to be restored; left the expired lock on %r for the "
                                "next job to restore them", sorted(self._doc["pending_restore"]), self.key)
                else:
                    self._retry.call(self._es.delete, index=self.lock_index, id=self.key,
                                     if_seq_no=self._seq[0], if_primary_term=self._seq[1], refresh="wait_for")
            except (ConflictError, NotFoundError):
                pass
            except Exception as exc:  # noqa: BLE001 - it expires by itself
                log.warning("could not release the lock on %r (%s); it expires at its TTL", self.key, exc)
            self._seq = None

    def __enter__(self) -> JobLock:  # noqa: PYI034 - Self needs Python 3.11
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def slice_key(index: str, slice_id: int, slices: int) -> str:
    """The lock key of one slice job of a sliced run over the concrete ``index``."""
    return f"{index}#slice-{slice_id}-of-{slices}"


def concrete_indices(es: Any, name: str) -> list[str]:
    """The concrete indices behind ``name`` (itself, an alias's indices, a pattern's matches)."""
    from ..errors import IndexNotFound

    try:
        found = sorted(es.indices.get_mapping(index=name).body)
    except NotFoundError:
        found = []
    if not found:
        raise IndexNotFound(name)
    return found


class IndexLock:
    """The locks of one job on an index, taken together (all or none), keyed on the concrete
    indices behind the name given, so that a job through an alias and one on the index itself
    exclude each other.

    An unsliced job locks each concrete index (and the name given when it is an alias or a
    pattern: a blue/green job keeps what it must restore there, where the next run on that alias
    finds it); a slice job locks ``<index>#slice-<i>-of-<n>``. The two kinds exclude each other: a
    slice job refuses while a job over the whole index holds its lock, an unsliced job refuses while
    any slice lock of the index is live, and slice jobs of runs with different slice counts refuse
    each other. Each side takes its own lock before it looks for the other, so of two jobs
    starting at once at least one sees the other. Same interface as ``JobLock``; the first key
    is the primary one, which carries ``pending_restore``.

    Settings a dead job left to restore are found whichever name the next job is given: besides
    its own (expired) locks, it adopts the expired lock documents of the other names over its
    indices (the aliases on them, for a slice job the index itself, and for the half-built index of
    an unfinished blue/green copy the alias and index it copies, from its ``_meta``) that still hold
    ``pending_restore`` -- e.g. the write block of a ``--block-writes`` job through the alias that
    died, found by a job on the concrete index. What they held moves to this job's primary lock
    (``pending_restore``), and they are deleted.
    """

    def __init__(self, es: Any, name: str, *, lock_index: str, slices: int = 1, slice_id: int = 0,
                 ttl_s: float = 300.0, owner: str | None = None, retry: RetryPolicy | None = None) -> None:
        self._es = no_transport_retries(es)
        self._retry = retry or RetryPolicy(max_retries=5)
        self.name = name
        self.lock_index = lock_index
        self.slices = slices
        self.slice_id = slice_id
        self.ttl_s = ttl_s
        self.owner = owner or default_owner()
        self.indices = concrete_indices(es, name)
        if slices > 1:
            keys = [slice_key(index, slice_id, slices) for index in self.indices]
        else:
            keys = ([] if name in self.indices else [name]) + self.indices
        self.keys = keys
        self.key = keys[0]
        self.locks = [JobLock(es, key, lock_index=lock_index, ttl_s=ttl_s, owner=self.owner, retry=self._retry)
                      for key in keys]
        self.previous: dict[str, Any] | None = None
        #: what dead jobs left to restore (from our own expired locks and the adopted ones)
        self.pending_restore: dict[str, Any] = {}
        #: keys of the expired lock documents of other names adopted for their pending_restore
        self.adopted: list[str] = []

    @property
    def primary(self) -> JobLock:
        return self.locks[0]

    def acquire(self) -> IndexLock:
        """Take every lock, or none: ``LockHeld`` says who holds the one in the way."""
        taken: list[JobLock] = []
        adopted: list[JobLock] = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
            self._refuse_other_kind()
            adopted = self._adopt_orphans()
            pending: dict[str, Any] = {}
            for lock in [*self.locks, *adopted]:
                pending.update(lock._doc.get("pending_restore") or {})
            previous = [lock.previous for lock in self.locks if lock.previous is not None]
            if previous:
                self.previous = {**previous[0], "pending_restore": pending}
            self.pending_restore = pending
            # Whatever the dead job(s) left to restore now lives in the primary lock only (written
            # there before it is removed elsewhere: a crash in between restores it twice, never not).
            if pending != (self.primary._doc.get("pending_restore") or {}):
                self.primary.set_field("pending_restore", pending)
            for lock in [*self.locks[1:], *adopted]:
                if lock._doc.get("pending_restore"):
                    lock.set_field("pending_restore", {})
        except BaseException:
            for lock in reversed([*taken, *adopted]):
                lock.release()
            raise
        for lock in adopted:
            lock.release()  # nothing left in it: deleted
        self.adopted = [lock.key for lock in adopted]
        return self

    def left_to_restore(self) -> dict[str, Any]:
        """Without taking any lock: the settings dead jobs left to restore, from the expired lock
        documents ``acquire`` would take over or adopt (a dry run's look)."""
        pending: dict[str, Any] = {}
        for key in [*self.keys, *self._other_names()]:
            held = self._get(key)
            if held and not self._live(held) and held.get("pending_restore"):
                pending.update(held["pending_restore"])
        return pending

    def _other_names(self) -> list[str]:
        """Lock keys of the other names over our concrete indices: the aliases on them, the indices
        themselves where they are not among our keys (a slice job), and for an unfinished blue/green
        copy the alias and index it copies (their job's lock holds what to restore on it too)."""
        names: set[str] = set()
        for index in self.indices:
            names.add(index)
            try:
                body = self._retry.call(self._es.indices.get_alias, index=index).body
            except NotFoundError:
                body = {}
            names.update((body.get(index) or {}).get("aliases") or {})
            names.update(self._copied_from(index))
        return sorted(names - set(self.keys))

    def _copied_from(self, index: str) -> list[str]:
        """The alias and the old index of the blue/green job that builds ``index``, if unfinished (its
        ``_meta``), else nothing."""
        from .bluegreen import JOB_META_KEY

        try:
            body = self._retry.call(self._es.indices.get_mapping, index=index).body
        except NotFoundError:
            return []
        meta = ((body.get(index) or {}).get("mappings") or {}).get("_meta") or {}
        job = meta.get(JOB_META_KEY) if isinstance(meta, dict) else None
        if not isinstance(job, dict) or job.get("state") != "copying":
            return []
        return [name for name in (job.get("alias"), job.get("source")) if isinstance(name, str) and name]

    def _adopt_orphans(self) -> list[JobLock]:
        """Take over the expired locks of other names over our indices that still hold settings to
        restore (their job died); returns them, held."""
        adopted: list[JobLock] = []
        for key in self._other_names():
            held = self._get(key)
            if not held or self._live(held) or not held.get("pending_restore"):
                continue
            lock = JobLock(self._es, key, lock_index=self.lock_index, ttl_s=self.ttl_s, owner=self.owner,
                           retry=self._retry)
            try:
                lock.acquire()
            except LockHeld:
                continue  # another job took it over meanwhile: that one restores the settings
            log.info("adopted the expired lock on %r of a dead job, to restore the settings it left changed", key)
            adopted.append(lock)
        return adopted

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._retry.call(self._es.get, index=self.lock_index, id=key).body.get("_source") or {})
        except NotFoundError:
            return None

    def _live(self, held: dict[str, Any] | None) -> bool:
        return bool(held) and held.get("expires_ms", 0) > time.time() * 1000 and not held.get("released")

    def _slice_locks(self, index: str) -> list[str]:
        """Keys of the slice locks of ``index`` in the lock index (live or not: checked by the caller)."""
        response = self._retry.call(self._es.search, index=self.lock_index, size=1000, source=False,
                                    query={"prefix": {"key": f"{index}#slice-"}}).body
        return sorted(hit["_id"] for hit in response["hits"]["hits"])

    def _refuse_other_kind(self) -> None:
        for index in self.indices:
            if self.slices > 1:
                whole = self._get(index)
                if self._live(whole):
                    raise held_message(index, whole or {}, self.lock_index,
                                       f", a job over the whole index (slice job {self.key!r} cannot run beside it)")
            mine = f"-of-{self.slices}"
            for key in self._slice_locks(index):
                if self.slices > 1 and key.endswith(mine):
                    continue  # a slice of this same run: that is the point of slicing
                held = self._get(key)
                if self._live(held):
                    what = ("a job over the whole index cannot run beside a sliced run" if self.slices == 1 else
                            f"a slice job of {self.slices} slices cannot run beside a run with other slices")
                    raise held_message(key, held or {}, self.lock_index, f" ({what})")

    def check(self) -> None:
        for lock in self.locks:
            lock.check()

    def set_field(self, name: str, value: Any) -> None:
        self.primary.set_field(name, value)

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()

    def __enter__(self) -> IndexLock:  # noqa: PYI034 - Self needs Python 3.11
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
