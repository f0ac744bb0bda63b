"""Typed exceptions raised by the library.

Library code raises these with a message that says what failed and what to try; only the CLI
turns them into exit codes (``exit_code``) and one-line messages.
"""

from __future__ import annotations


class EsSemanticError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this reaches it.

    ``cli_message``, where given, is the same message worded for the command line (``--window 205``
    where the message itself says ``window=205``); the CLI prints it instead of ``str(exc)``.
    """

    exit_code = 2

    def __init__(self, *args: object, cli_message: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli_message


class ConfigError(EsSemanticError):
    """Bad options, settings or stored configuration (usage error)."""


class ConnectionFailed(EsSemanticError):
    """The cluster could not be reached or refused the credentials."""


class IndexNotFound(EsSemanticError):
    """The named index or alias does not exist."""


class NotConfigured(EsSemanticError):
    """The index has no es-semantic configuration in its mapping ``_meta``."""


class MappingConflict(EsSemanticError):
    """The requested mapping conflicts with what the index already has."""


class ModelLoadError(EsSemanticError):
    """An embedding model could not be loaded."""


class EmbeddingError(EsSemanticError):
    """Embedding failed for a reason other than loading (bad input, remote errors)."""


class RerankError(EsSemanticError):
    """Reranking failed for a reason other than loading (bad input, server errors)."""


class LockHeld(EsSemanticError):
    """Another job holds the per-index lock."""

    exit_code = 3


class PartialFailure(EsSemanticError):
    """The job finished but some documents failed; the report lists them."""

    exit_code = 1
