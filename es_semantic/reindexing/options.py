"""``ReindexOptions``: everything the ``reindex`` command offers, with production-safe defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..config import check_json_depth, parse_json_object, redact_url
from ..errors import ConfigError, InvalidValue

#: Dedicated index holding one lock document per reindexed index (not dot-prefixed: those are
#: reserved for system indices on recent Elasticsearch versions).
DEFAULT_LOCK_INDEX = "es-semantic-locks"


#: An Elasticsearch time value with a unit (what ``keep_alive`` accepts), e.g. ``30m``.
_TIME_VALUE = re.compile(r"^[1-9][0-9]*(d|h|m|s|ms|micros|nanos)$")

#: Options that must be >= 1.
_AT_LEAST_ONE = ("page_size", "embed_chunk", "bulk_max_docs", "bulk_max_bytes", "writers", "queue_pages")
#: The longest lock TTL (a week): a silent job's lock must expire in a time someone waits for.
MAX_LOCK_TTL_S = 7 * 24 * 3600


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

    def __repr__(self) -> str:
        # Only the fields that differ from the defaults; the embedding URL without its user:password@.
        shown = []
        for name, spec in self.__dataclass_fields__.items():
            value = getattr(self, name)
            if not spec.repr or value == spec.default:
                continue
            shown.append(f"{name}={redact_url(value)!r}" if name == "embedding_url" else f"{name}={value!r}")
        return f"ReindexOptions({', '.join(shown)})"

    def __post_init__(self) -> None:
        if isinstance(self.query, str):
            object.__setattr__(self, "query", parse_query(self.query))
        if self.query is not None and not isinstance(self.query, dict):
            raise InvalidValue("query", self.query, "a dict of query DSL")
        check_json_depth(self.query, "query")
        self._check_numbers()
        if not isinstance(self.keep_alive, str) or not _TIME_VALUE.match(self.keep_alive):
            raise InvalidValue("keep_alive", self.keep_alive, "a time such as 30m, 2h or 90s")
        if self.embedding_url is not None and not str(self.embedding_url).startswith(("http://", "https://")):
            raise InvalidValue("embedding_url", redact_url(str(self.embedding_url)),
                               "an http:// or https:// URL such as http://gpu-box:8000/v1")
        if isinstance(self.new_index, str) and not self.new_index.strip():
            raise InvalidValue("new_index", self.new_index, "a non-empty index name")
        conflicts = self._conflicts()
        if conflicts:
            option, message = conflicts[0]
            raise ConfigError(message, option=option, value=getattr(self, option))

    def _check_numbers(self) -> None:
        if not _is_int(self.slices) or self.slices < 1:
            raise InvalidValue("slices", self.slices, "an integer >= 1")
        if not _is_int(self.slice_id) or not 0 <= self.slice_id < self.slices:
            raise InvalidValue("slice_id", self.slice_id, f"between 0 and {self.slices - 1} for {self.slices} slices")
        if self.max_length is not None and (not _is_int(self.max_length) or self.max_length < 1):
            raise InvalidValue("max_length", self.max_length, "an integer >= 1 (tokens per text)")
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 0):
            raise InvalidValue("limit", self.limit, "an integer >= 0")
        for name in _AT_LEAST_ONE:
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise InvalidValue(name, value, "an integer >= 1")
        for name in ("max_retries", "conflict_retries"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise InvalidValue(name, getattr(self, name), "an integer >= 0")
        if not (isinstance(self.lock_ttl_s, (int, float)) and 0 < self.lock_ttl_s <= MAX_LOCK_TTL_S):
            raise InvalidValue("lock_ttl_s", self.lock_ttl_s, f"a number of seconds > 0 and <= {MAX_LOCK_TTL_S}")

    def _conflicts(self) -> list[tuple[str, str]]:
        """(option, why) for each option that cannot go with the others (empty: they can)."""
        blue_green, remote = bool(self.new_index), bool(self.embedding_url)
        rules = [
            (self.new_index is not None and self.slices > 1, "slices",
             "a blue/green reindex (new_index) cannot be split into slices; run it as one job"),
            (self.delete_old and not blue_green, "delete_old", "delete_old only applies to a blue/green reindex (new_index)"),
            (self.block_writes and not blue_green, "block_writes", "block_writes only applies to a blue/green reindex (new_index)"),
            (blue_green and (self.query is not None or self.limit is not None), "new_index",
             "query and limit do not apply to new_index: a blue/green copy takes every document"),
            (remote and bool(self.device or self.dtype), "device" if self.device else "dtype",
             "device and dtype apply to a local model; with embedding_url the server chooses them"),
            (remote and self.max_length is not None, "max_length",
             "max_length applies to a local model; with embedding_url the server cuts texts to its own limit"),
            (blue_green and self.dry_run, "dry_run", "dry_run is not available with new_index (a copy embeds every document)"),
        ]
        return [(option, message) for broken, option, message in rules if broken]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_query(text: str) -> dict[str, Any]:
    """Parse a ``--query`` JSON string; accepts ``{"query": {...}}`` or the bare query object."""
    value = parse_json_object(text, "query")
    if not value:
        raise InvalidValue("query", text, "a non-empty JSON object of query DSL, e.g. {\"match_all\": {}}")
    if set(value) == {"query"} and isinstance(value["query"], dict):
        value = value["query"]
    return value
