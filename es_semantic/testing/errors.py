"""The error type the test server turns into an Elasticsearch-shaped error response."""

from __future__ import annotations

from typing import Any

#: The node that "holds" every shard of the test server (the ``node`` of a shard failure).
SHARD_NODE = "es-semantic-test-node"


class EsError(Exception):
    """An error answered as ``{"error": {...}, "status": N}``, shaped like Elasticsearch's.

    ``type`` and ``reason`` follow Elasticsearch's wording where tests depend on it
    (for example ``illegal_argument_exception``, ``index_not_found_exception``).
    ``caused_by`` is an optional nested ``{"type", "reason"}`` mapping; ``extra`` holds
    additional keys of the error object (``index``, ``index_uuid``, ``resource.id``...).
    """

    def __init__(
        self,
        status: int,
        type: str,
        reason: str,
        *,
        caused_by: dict[str, Any] | None = None,
        root_cause: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"[{status}] {type}: {reason}")
        self.status = status
        self.type = type
        self.reason = reason
        self.caused_by = caused_by
        self.root_cause = root_cause
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "reason": self.reason, **self.extra}
        if self.caused_by is not None:
            error["caused_by"] = self.caused_by
        root = self.root_cause
        if root is None:
            root = [{"type": self.type, "reason": self.reason, **self.extra}]
        return {"error": {"root_cause": root, **error}, "status": self.status}

    @classmethod
    def shard_failure(cls, index: str, status: int, type: str, reason: str, **extra: Any) -> EsError:
        """A failure on the index's (one) shard, wrapped as Elasticsearch wraps it for a search:
        ``search_phase_execution_exception`` "all shards failed", the cause as root cause and caused_by."""
        cause = {"type": type, "reason": reason, **extra}
        return cls(
            status,
            "search_phase_execution_exception",
            "all shards failed",
            caused_by={**cause, "caused_by": dict(cause)},
            root_cause=[dict(cause)],
            phase="query",
            grouped=True,
            failed_shards=[{"shard": 0, "index": index, "node": SHARD_NODE, "reason": dict(cause)}],
        )

    def to_item_error(self) -> dict[str, Any]:
        """The ``error`` object of a failed bulk item (no root_cause, no status)."""
        error: dict[str, Any] = {"type": self.type, "reason": self.reason, **self.extra}
        if self.caused_by is not None:
            error["caused_by"] = self.caused_by
        return error


def unsupported(what: str) -> EsError:
    """The 400 for a valid Elasticsearch request the test server does not model (never a silent ignore):
    ``what`` names the feature, parameter or key, e.g. ``"the [analyzer] parameter of [search]"``."""
    return EsError(400, "unsupported_by_test_server", f"the es-semantic test server does not support {what}")


def json_token(value: Any) -> str:
    """The JSON token Elasticsearch names in parse errors for ``value``."""
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, (int, float)):
        return "VALUE_NUMBER"
    return "VALUE_NULL" if value is None else "VALUE_STRING"
