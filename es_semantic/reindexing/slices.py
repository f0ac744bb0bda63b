"""The slice jobs of one sliced run share ONE point in time.

Elasticsearch splits a sliced point-in-time search by Lucene document id, and says: "the same
point-in-time ID must be used across slices to guarantee the partitions don't overlap or miss
documents" (elasticsearch#75162). Lucene gives a document a new id on every update, and the reindex
job updates documents, so slice jobs that each opened a point in time of their own would read some
documents twice and miss others (a test of this module measured 10 of 40 missed with 2 slices).

So a sliced run publishes its point in time in a coordination document next to the locks
(``<lock index>/_doc/scan:<index>:<slices>:<query>``), keyed like the locks on the concrete index
behind ``--index`` (slice jobs given the alias and its index are one run) and recording which
indices its point in time covers: a slice job never joins one over other indices than its name
resolves to now (after a blue/green swap, a late slice of the old run starts a new run on the new
index instead of writing into the old one). The first slice job to start opens the point
in time and publishes its id (``op_type=create``, or optimistic concurrency to replace a stale one);
the others read it; each marks its slice done, and the last one closes the point in time and
deletes the document. A slice job that finds its own slice already done starts the next run with
a new point in time (the slices of a schedule come back each cycle; one that never does must not
hold the others to an old view). The point in time is opened with a long
keep-alive (:data:`SHARED_KEEP_ALIVE`, renewed by every page read) so that slice jobs started
minutes apart still meet it. If it has expired anyway, the late job opens a new one and says that
this run may leave documents to the next run (nothing is lost: the next run's fingerprints find
them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from elasticsearch import ConflictError, NotFoundError

from ..errors import EsSemanticError
from .lock import concrete_indices, ensure_lock_index
from .retry import RetryPolicy, no_transport_retries

log = logging.getLogger(__name__)

#: Keep-alive of a shared point in time: long enough for slice jobs started minutes apart.
SHARED_KEEP_ALIVE = "30m"


def scan_key(index: str, slices: int, query: Any) -> str:
    """The coordination document's id: one per concrete index (several joined with commas), slice
    count and query."""
    digest = hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"scan:{index}:{slices}:{digest}"


class SharedScan:
    """The shared point in time of slice ``slice_id`` of ``slices`` over ``index`` (a name: index,
    alias or pattern), i.e. over the concrete ``indices`` behind it (resolved here when not given;
    the job passes those its lock was taken on)."""

    def __init__(self, es: Any, index: str, *, slices: int, slice_id: int, query: Any, lock_index: str,
                 keep_alive: str = SHARED_KEEP_ALIVE, retry: RetryPolicy | None = None,
                 indices: list[str] | None = None) -> None:
        self._es = no_transport_retries(es)
        self.index = index
        self.indices = sorted(indices) if indices else concrete_indices(es, index)
        self.slices = slices
        self.slice_id = slice_id
        self.lock_index = lock_index
        self.keep_alive = keep_alive
        self.key = scan_key(",".join(self.indices), slices, query)
        self._retry = retry or RetryPolicy(max_retries=5)
        self.pit_id: str | None = None
        self.round: str | None = None
        #: True when this job opened the point in time (it was the first of its run, or the last one had expired).
        self.opened = False
        self.replaced_expired = False

    # -- the coordination document --
    def _get(self) -> dict[str, Any] | None:
        try:
            return dict(self._retry.call(self._es.get, index=self.lock_index, id=self.key).body)
        except NotFoundError:
            return None

    def _alive(self, pit_id: str) -> bool:
        try:
            self._retry.call(self._es.search, pit={"id": pit_id, "keep_alive": self.keep_alive}, size=0,
                             track_total_hits=False)
            return True
        except NotFoundError:
            return False

    def join(self) -> str:
        """The run's point in time: the published one if it is alive, else a new one, published."""
        ensure_lock_index(self._es, self.lock_index, self._retry)
        now = concrete_indices(self._es, self.index)
        if now != self.indices:
            raise EsSemanticError(
                f"{self.index!r} now points at {', '.join(now)} instead of {', '.join(self.indices)} (the alias "
                "moved while this slice job ran); stopped before reading anything more. Rerun: documents done are "
                "skipped")
        for _ in range(8):
            current = self._get()
            held = (current or {}).get("_source") or {}
            done = held.get("done") or []
            # This slice already done in that round means a new run has begun (the next scheduled
            # one): it gets a new point in time, so a slice job that never comes back cannot pin
            # the others to an ever older view of the index. A point in time over other indices
            # (published by an older version, keyed by the name given) is never joined either.
            joinable = (bool(held.get("pit_id")) and self.slice_id not in done and len(done) < self.slices
                        and held.get("indices") == self.indices)
            expired = joinable and not self._alive(held["pit_id"])
            if joinable and not expired:
                self.pit_id, self.round = held["pit_id"], held.get("round")
                return self.pit_id
            pit_id = self._retry.call(self._es.open_point_in_time, index=",".join(self.indices),
                                      keep_alive=self.keep_alive).body["id"]
            doc = {"kind": "sliced-scan", "index": self.index, "indices": self.indices, "slices": self.slices,
                   "pit_id": pit_id,
                   "round": uuid.uuid4().hex, "done": [], "opened_by": f"{socket.gethostname()}:{os.getpid()}",
                   "opened_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            try:
                if current is None:
                    self._retry.call(self._es.create, index=self.lock_index, id=self.key, document=doc)
                else:
                    self._retry.call(self._es.index, index=self.lock_index, id=self.key, document=doc,
                                     if_seq_no=current["_seq_no"], if_primary_term=current["_primary_term"])
            except ConflictError:
                # Another slice job published one first: use that one instead.
                self._close(pit_id)
                continue
            if expired:
                self.replaced_expired = True
                log.warning(
                    "the point in time shared by the slices of %r had expired (slice jobs started more than %s "
                    "apart?); this slice opened a new one, so this run may leave some documents to the next run",
                    self.index, self.keep_alive)
            self.pit_id, self.round, self.opened = pit_id, doc["round"], True
            return pit_id
        raise EsSemanticError(f"could not agree on a shared point in time for {self.index!r} with the other "
                              "slice jobs (too many concurrent changes); rerun")

    def finish(self) -> None:
        """Mark this slice done; the last slice closes the point in time and removes the document."""
        for _ in range(8):
            current = self._get()
            held = (current or {}).get("_source") or {}
            if current is None or held.get("round") != self.round:
                return  # a newer run replaced ours: nothing of ours left to record
            done = sorted(set(held.get("done") or []) | {self.slice_id})
            occ = {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]}
            try:
                if len(done) >= self.slices:
                    self._retry.call(self._es.delete, index=self.lock_index, id=self.key, **occ)
                    self._close(held.get("pit_id"))
                else:
                    self._retry.call(self._es.index, index=self.lock_index, id=self.key,
                                     document={**held, "done": done}, **occ)
                return
            except ConflictError:
                continue  # another slice wrote in between: read again
            except NotFoundError:
                return
        log.warning("could not record slice %d of %r as done; the shared point in time expires by itself",
                    self.slice_id, self.index)

    def _close(self, pit_id: str | None) -> None:
        if not pit_id:
            return
        try:
            self._es.close_point_in_time(id=pit_id)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            log.debug("could not close point in time: %s", exc)
