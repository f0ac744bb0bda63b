"""The read-only view of an index that the store hands to the search engine.

The store (``store.py``) builds a new ``IndexSnapshot`` on every refresh; the search engine
(``search_engine.py``) only reads it. Because a snapshot never changes, the engine memoises
derived structures (analysed postings, length norms, vector matrices) in ``snapshot.cache``,
and a point in time or scroll simply keeps a reference to the snapshot it was opened on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredDoc:
    """One visible document."""

    id: str
    source: dict[str, Any]  # parsed _source; never mutated once stored
    seq_no: int
    primary_term: int
    version: int
    doc_index: int  # position in the snapshot (0..n-1, index order): the `_shard_doc` tiebreak
    routing: str | None = None  # the document's custom `_routing` (None: routed by `_id`)
    shard: int = 0  # the shard it lives on (always 0 in a one-shard index)


@dataclass
class IndexSnapshot:
    """The documents of one index as of its last refresh, with its mapping and settings.

    ``mappings`` is Elasticsearch's mapping body (``{"properties": {...}, "_meta": ..., "dynamic": ...}``),
    including dynamically added fields and multi-fields (``"fields": {...}``).
    ``settings`` is nested as Elasticsearch returns it: ``{"index": {"analysis": {...}, ...}}``.
    ``docs`` is in ``doc_index`` order: shard by shard, and by indexing order within a shard.
    """

    index_name: str
    mappings: dict[str, Any]
    settings: dict[str, Any]
    docs: list[StoredDoc]
    generation: int = 0  # increases with every refresh of the index
    #: Fields a mapping update added to the index -> per shard, the last sequence number written
    #: before: documents up to it were indexed without the field (it holds no terms for them).
    fields_since: dict[str, dict[int, int]] = field(default_factory=dict)

    def indexed_before(self, field_name: str, doc: StoredDoc) -> bool:
        """Whether ``doc`` was written before the mapping update that added ``field_name``."""
        since = self.fields_since.get(field_name)
        return since is not None and doc.seq_no <= since.get(doc.shard, -1)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class SearchTarget:
    """One index a search runs over, after the store resolved names, aliases and wildcards.

    ``alias_filter`` is the query DSL filter of a filtered alias (or None). Elasticsearch applies it
    as a filter to the query and as a pre-filter to kNN. ``shards`` is the set of shards a search
    with custom routing goes to (None: all of them); documents on other shards are not seen.
    """

    snapshot: IndexSnapshot
    alias_filter: dict[str, Any] | None = None
    shards: frozenset[int] | None = None
    boost: float = 1.0  # the request's `indices_boost` for this index: multiplies its scores
