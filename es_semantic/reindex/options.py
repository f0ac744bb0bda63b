"""``ReindexOptions``: everything the ``reindex`` command offers, with production-safe defaults."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

#: Dedicated index holding one lock document per reindexed index (not dot-prefixed: those are
#: reserved for system indices on recent Elasticsearch versions).
DEFAULT_LOCK_INDEX = "es-semantic-locks"


#: An Elasticsearch time value with a unit (what ``keep_alive`` accepts), e.g. ``30m``.
_TIME_VALUE = re.compile(r"^[1-9][0-9]*(d|h|m|s|ms|micros|nanos)$")

#: Options that must be >= 1, with the name a user knows them by (the CLI option where there is one).
_AT_LEAST_ONE = {
    "page_size": "--page-size", "embed_chunk": "embed_chunk", "bulk_max_docs": "--bulk-size",
    "bulk_max_bytes": "--bulk-bytes", "writers": "--writers", "queue_pages": "queue_pages",
}


@dataclass(frozen=True)
class ReindexOptions:
    """Options of one reindex run. Every field has a default fit for a production cluster.

    Model overrides (``model``, ``dims``, ``similarity``, ``index_options``) replace what the index
    ``_meta`` says; once the index holds vectors, changing the model, dims or similarity needs
    ``new_index`` (blue/green), since vectors of two models must never be mixed in one field.
    ``model`` may also point at a local copy of the configured model, which is no change: its
    weights digest is the one the index records (``reindex.identity``). ``max_length`` (tokens per
    text, at most the model's limit) is stored in the index ``_meta`` and used by later runs.
    """

    # What to embed with
    model: str | None = None
    dims: int | None = None
    similarity: str | None = None
    index_options: dict[str, Any] | None = None
    device: str | None = None
    dtype: str | None = None
    max_length: int | None = None
    # An OpenAI-compatible embeddings server running the model (vLLM, SGLang, TEI, Infinity), used
    # instead of loading it; its vectors are checked against the stored ones before any is written
    embedding_url: str | None = None
    embedding_api_key: str | None = field(default=None, repr=False)
    # Which documents
    full: bool = False
    query: dict[str, Any] | str | None = None
    limit: int | None = None
    slices: int = 1
    slice_id: int = 0
    dry_run: bool = False
    # Blue/green: None (in place), True (next versioned name) or an explicit new index name
    new_index: bool | str | None = None
    delete_old: bool = False
    # Blue/green: block writes to the old index for the final catch-up pass and the swap, so that
    # no write is lost (writers get 403 cluster_block_exception meanwhile and should retry)
    block_writes: bool = False
    # Reading
    page_size: int = 500
    # How long the point in time of the scan stays open between two page reads. The reader waits
    # while the embedder is busy (bounded queues), so it must outlast embedding the chunks in flight:
    # minutes on a CPU with a large model.
    keep_alive: str = "30m"
    # Embedding: texts handed to the embedder at once (it sorts and batches each call by token
    # budget). None: the embedder's chunk_size_hint -- a few hundred on CPU, thousands on a big
    # GPU, so each call fills several full batches.
    embed_chunk: int | None = None
    # Writing
    bulk_max_docs: int = 500
    bulk_max_bytes: int = 8 * 1024 * 1024
    writers: int = 2
    max_retries: int = 8
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    conflict_retries: int = 3
    # Pipeline buffers (pages and bulk chunks in flight): memory stays flat whatever the index size
    queue_pages: int = 4
    # Locking
    lock: bool = True
    lock_index: str = DEFAULT_LOCK_INDEX
    lock_ttl_s: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.query, str):
            object.__setattr__(self, "query", parse_query(self.query))
        if self.query is not None and not isinstance(self.query, dict):
            raise ConfigError("--query must be a JSON object of query DSL, e.g. '{\"term\": {\"category\": \"billing\"}}'")
        if self.slices < 1:
            raise ConfigError(f"--slices must be >= 1, got {self.slices}")
        if not 0 <= self.slice_id < self.slices:
            raise ConfigError(f"--slice-id must be between 0 and {self.slices - 1} for --slices {self.slices}, got {self.slice_id}")
        if self.max_length is not None and (isinstance(self.max_length, bool) or self.max_length < 1):
            raise ConfigError(f"--max-length must be >= 1 (tokens per text), got {self.max_length}; leave it out "
                              "for the model's own limit")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"--limit must be >= 0, got {self.limit}")
        for name, option in _AT_LEAST_ONE.items():
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{option} must be >= 1, got {getattr(self, name)}")
        if not isinstance(self.keep_alive, str) or not _TIME_VALUE.match(self.keep_alive):
            raise ConfigError(f"--keep-alive {self.keep_alive!r}: give a time such as 30m, 2h or 90s")
        if self.max_retries < 0 or self.conflict_retries < 0:
            raise ConfigError("retry counts must be >= 0")
        if self.lock_ttl_s <= 0:
            raise ConfigError(f"--lock-ttl must be positive, got {self.lock_ttl_s}")
        if self.new_index is not None and self.slices > 1:
            raise ConfigError("a blue/green reindex (--new-index) cannot be split with --slices; run it as one job")
        if self.delete_old and not self.new_index:
            raise ConfigError("--delete-old only applies to a blue/green reindex (--new-index)")
        if self.block_writes and not self.new_index:
            raise ConfigError("--block-writes only applies to a blue/green reindex (--new-index)")
        if self.new_index and (self.query is not None or self.limit is not None):
            raise ConfigError("--query and --limit do not apply to --new-index: a blue/green copy takes every document")
        if self.embedding_url and (self.device or self.dtype):
            raise ConfigError("--device and --dtype apply to a local model; with --embedding-url the server "
                              "chooses them: leave them out")
        if self.embedding_url and self.max_length is not None:
            raise ConfigError("--max-length applies to a local model; with --embedding-url the server cuts texts "
                              "to its own limit (TEI --auto-truncate, vLLM truncate_prompt_tokens): leave it out")
        if self.embedding_url is not None and not str(self.embedding_url).startswith(("http://", "https://")):
            raise ConfigError(f"--embedding-url must be an http:// or https:// URL such as http://gpu-box:8000/v1, "
                              f"got {self.embedding_url!r}")
        if self.new_index and self.dry_run:
            raise ConfigError("--dry-run is not available with --new-index (a copy embeds every document)")
        if isinstance(self.new_index, str) and not self.new_index.strip():
            raise ConfigError("--new-index NAME must not be empty")


def parse_query(text: str) -> dict[str, Any]:
    """Parse a ``--query`` JSON string; accepts ``{"query": {...}}`` or the bare query object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--query is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "give a query DSL object, e.g. '{\"term\": {\"category\": \"billing\"}}'"
        ) from None
    if not isinstance(value, dict) or not value:
        raise ConfigError("--query must be a non-empty JSON object of query DSL, e.g. '{\"match_all\": {}}'")
    if set(value) == {"query"} and isinstance(value["query"], dict):
        value = value["query"]
    return value
