"""Typed exceptions raised by the library.

Each says in one line what failed and carries the data it is about (``index``, ``option``,
``value``, ``model``) as attributes. The CLI turns them into an exit code (``exit_code``) and adds
a hint built from the type and those fields; the library's messages name no command.
"""

from __future__ import annotations

from typing import Any


class EsSemanticError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this reaches it."""

    exit_code = 2


class ConfigError(EsSemanticError):
    """Bad argument, option or stored configuration (usage error). ``option`` names the argument or
    option (its Python name) and ``value`` what it was given, where one is to blame."""

    option: str | None = None
    value: Any = None

    def __init__(self, message: str, *, option: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        if option is not None:  # a subclass may have set its fields before calling this
            self.option = option
        if value is not None:
            self.value = value


class InvalidValue(ConfigError):
    """``option`` cannot take ``value``; ``expected`` says what it takes (``"a number > 0"``)."""

    def __init__(self, option: str, value: Any, expected: str) -> None:
        super().__init__(f"{option} must be {expected}, got {value!r}", option=option, value=value)
        self.expected = expected


class InvalidIndexName(ConfigError):
    """``index`` is not the name of one index or alias (empty, a wildcard, ``_all``, a path...)."""

    def __init__(self, index: Any, reason: str) -> None:
        super().__init__(f"invalid index name {index!r}: {reason}", option="index", value=index)
        self.index = index
        self.reason = reason


class ConnectionFailed(EsSemanticError):
    """The cluster could not be reached or refused the credentials. ``status`` is the HTTP status
    where the cluster answered (401, 403); ``reason`` says why it was not reached: "unreachable",
    "timeout" or "tls"."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class IndexNotFound(EsSemanticError):
    """The index or alias ``index`` does not exist."""

    def __init__(self, index: str) -> None:
        super().__init__(f"index {index!r} not found")
        self.index = index


class NotConfigured(EsSemanticError):
    """``index`` has no es-semantic configuration in its mapping ``_meta``."""

    def __init__(self, index: str) -> None:
        super().__init__(f"index {index!r} has no es-semantic configuration")
        self.index = index


class MappingConflict(EsSemanticError):
    """The requested mapping conflicts with what the index already has."""


class ModelLoadError(EsSemanticError):
    """An embedding model could not be loaded."""


class EmbeddingError(EsSemanticError):
    """Embedding failed for a reason other than loading (bad input, remote errors)."""


class RerankError(EsSemanticError):
    """Reranking failed for a reason other than loading (bad input, server errors)."""


class LockHeld(EsSemanticError):
    """Another job (``owner``, where known) holds the lock ``key``, a document in ``lock_index``."""

    exit_code = 3

    def __init__(self, message: str, *, key: str, lock_index: str, owner: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.lock_index = lock_index
        self.owner = owner
