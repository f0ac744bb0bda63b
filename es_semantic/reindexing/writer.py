"""Writing vectors back: byte- and count-sized ``_bulk`` requests with optimistic concurrency.

Each in-place write is a partial ``update`` carrying ``if_seq_no``/``if_primary_term`` from the
read, so Elasticsearch refuses it (409) when the document changed after it was read: a vector is
never stored next to text it was not computed from. Whole requests that fail transiently (429,
502/503/504, dropped connections) are retried with backoff; so are single items a bulk response
rejects with 429 (only those items are sent again). 409 items go back to the caller as
conflicts; updates of documents deleted since the read (404 ``document_missing_exception``) are
set apart as deleted, not failed; any other item failure is reported with the document id and reason, and the job
carries on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from elasticsearch import ApiError, ConnectionTimeout
from elasticsearch import ConnectionError as EsConnectionError

from ..errors import ConnectionFailed
from ..vector_codec import encode_vector
from .retry import RETRYABLE_STATUS, RetryPolicy, no_transport_retries


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def vector_value(vector: np.ndarray, base64: bool) -> Any:
    """How a vector travels in a bulk body: base64 big-endian float32 (9.3+) or a float list."""
    if base64:
        return encode_vector(vector)
    # float32 -> Python float is exact, and JSON keeps the shortest exact repr: no precision lost.
    return np.asarray(vector, dtype=np.float32).tolist()


@dataclass
class WriteOp:
    """One bulk operation: a partial ``update`` (in place) or a whole-document ``index`` (blue/green).

    ``tag`` is the caller's own data, handed back with conflicts and failures.
    """

    doc_id: str
    index: str
    kind: str  # "update" | "index"
    body: dict[str, Any]
    if_seq_no: int | None = None
    if_primary_term: int | None = None
    tag: Any = None
    routing: str | None = None
    _lines: tuple[bytes, bytes] | None = field(default=None, repr=False)

    @property
    def lines(self) -> tuple[bytes, bytes]:
        """The two NDJSON lines, serialised once (their size decides the chunking)."""
        if self._lines is None:
            meta: dict[str, Any] = {"_index": self.index, "_id": self.doc_id}
            if self.routing is not None:
                meta["routing"] = self.routing
            if self.if_seq_no is not None and self.if_primary_term is not None:
                meta["if_seq_no"] = self.if_seq_no
                meta["if_primary_term"] = self.if_primary_term
            self._lines = (_dumps({self.kind: meta}), _dumps(self.body))
        return self._lines

    @property
    def size(self) -> int:
        action, source = self.lines
        return len(action) + len(source) + 2


def update_op(doc_id: str, index: str, fields: dict[str, Any], seq_no: int | None, primary_term: int | None,
              tag: Any = None, routing: str | None = None) -> WriteOp:
    """A partial update of ``fields`` that only applies if the document is still at ``seq_no``
    (``routing``: the document's custom routing, if it has one)."""
    return WriteOp(doc_id, index, "update", {"doc": fields}, seq_no, primary_term, tag, routing)


def index_op(doc_id: str, index: str, source: dict[str, Any], tag: Any = None, routing: str | None = None) -> WriteOp:
    """A whole document written to ``index`` (blue/green copy), with its original routing."""
    return WriteOp(doc_id, index, "index", source, tag=tag, routing=routing)


def chunk_ops(ops: Iterable[WriteOp], max_docs: int, max_bytes: int) -> Iterator[list[WriteOp]]:
    """Group operations into bulk requests of at most ``max_docs`` operations and ``max_bytes``
    bytes (a single operation larger than ``max_bytes`` still goes, alone)."""
    chunk: list[WriteOp] = []
    size = 0
    for op in ops:
        op_size = op.size
        if chunk and (len(chunk) >= max_docs or size + op_size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(op)
        size += op_size
    if chunk:
        yield chunk


@dataclass
class BulkOutcome:
    """What became of the operations of one ``send``."""

    written: list[WriteOp] = field(default_factory=list)
    conflicts: list[WriteOp] = field(default_factory=list)
    #: partial updates of documents deleted after they were read (404 document_missing_exception)
    deleted: list[WriteOp] = field(default_factory=list)
    failures: list[tuple[WriteOp, str]] = field(default_factory=list)
    requests: int = 0
    retries: int = 0

    def merge(self, other: BulkOutcome) -> None:
        for name in ("written", "conflicts", "deleted", "failures", "requests", "retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _error_type(result: dict[str, Any]) -> str | None:
    error = result.get("error")
    return error.get("type") if isinstance(error, dict) else None


def _reason(error: Any) -> str:
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            text += f" (caused by {caused.get('type', '')}: {caused['reason']})"
        return text
    return str(error)


def _unavailable(exc: Exception) -> ConnectionFailed:
    return ConnectionFailed(
        f"Elasticsearch kept refusing bulk writes after all retries ({type(exc).__name__}: {str(exc)[:200]}); "
        "stopped. Documents already written are kept: run the job again when the cluster is healthy"
    )


class BulkWriter:
    """Sends chunks of ``WriteOp`` with retries; thread-safe (one client, no shared state)."""

    def __init__(self, es: Any, retry: RetryPolicy | None = None, *, refresh: bool | str = False) -> None:
        self._client = no_transport_retries(es)
        self._retry = retry or RetryPolicy()
        self._refresh = refresh

    def send(self, ops: list[WriteOp]) -> BulkOutcome:
        """Send one chunk; items rejected with 429 (or 5xx) inside the response are sent again,
        alone, after a backoff, up to the policy's ``max_retries``."""
        outcome = BulkOutcome()
        pending = ops
        attempt = 0
        while pending:
            lines: list[bytes] = []
            for op in pending:
                lines.extend(op.lines)
            kwargs: dict[str, Any] = {"operations": lines}
            if self._refresh:
                kwargs["refresh"] = self._refresh
            try:
                response = self._retry.call(self._client.bulk, **kwargs).body
            except ApiError as exc:
                if exc.meta.status == 413 and len(pending) > 1:  # too large for the cluster: halve it
                    half = len(pending) // 2
                    for part in (pending[:half], pending[half:]):
                        outcome.merge(self.send(part))
                    return outcome
                if exc.meta.status in RETRYABLE_STATUS:
                    raise _unavailable(exc) from None
                reason = f"bulk request refused: {exc.meta.status} {exc.message}"
                outcome.failures.extend((op, reason) for op in pending)
                return outcome
            except (EsConnectionError, ConnectionTimeout) as exc:
                # Still failing after every retry: the cluster is gone. Stop the job (the next run
                # resumes) rather than mark every remaining document as failed.
                raise _unavailable(exc) from None
            outcome.requests += 1
            rejected = self._sort_items(pending, response.get("items", []), outcome,
                                        retry=attempt < self._retry.max_retries)
            pending = rejected
            if pending:
                attempt += 1
                outcome.retries += 1
                time.sleep(self._retry.backoff_seconds(attempt))
        return outcome

    @staticmethod
    def _sort_items(ops: list[WriteOp], items: list[dict[str, Any]], outcome: BulkOutcome, *,
                    retry: bool) -> list[WriteOp]:
        """File each operation's bulk item in ``outcome``; returns those rejected for now (429,
        5xx), to send again when ``retry``."""
        rejected: list[WriteOp] = []
        for op, item in zip(ops, items, strict=False):
            result = next(iter(item.values()))
            status = int(result.get("status", 500))
            if status < 300:
                outcome.written.append(op)
            elif status == 409:
                outcome.conflicts.append(op)
            elif status == 404 and op.kind == "update" and _error_type(result) == "document_missing_exception":
                # Deleted between our read and this write: nothing left to give a vector to.
                outcome.deleted.append(op)
            elif status in RETRYABLE_STATUS and retry:
                rejected.append(op)
            else:
                outcome.failures.append((op, f"{status} {_reason(result.get('error'))}"))
        for op in ops[len(items):]:  # a malformed answer: never lose ops
            outcome.failures.append((op, "bulk response had no item for this operation"))
        return rejected
