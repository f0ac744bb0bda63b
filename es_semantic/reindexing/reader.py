"""Reading every document of an index: point in time + ``search_after``, optionally sliced.

A point in time (PIT) gives a consistent view for the whole scan, whatever is written
meanwhile; sorting on ``_shard_doc`` is the cheapest total order Elasticsearch offers; a sliced
PIT (``slice: {id, max}``) splits the scan so several processes share one index, each
document landing in exactly one slice -- of that one PIT, which the slices therefore share
(:mod:`.slices`). Each hit carries ``_seq_no``/``_primary_term`` so the
writer can refuse to overwrite a document edited after it was read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from elasticsearch import NotFoundError

from ..errors import EsSemanticError, IndexNotFound
from .retry import RetryPolicy, no_transport_retries

log = logging.getLogger(__name__)

#: Name of the query clause that tells, per hit, whether the vector field exists.
HAS_VECTOR = "es_semantic_has_vector"


class PitExpired(EsSemanticError):
    """The point in time of a scan expired (or was closed) while it was being read: the reader
    waited longer than the keep-alive between two pages (back-pressure from a slow embedder or
    cluster), or, for a sliced run's shared one, another slice job closed it. Read again on a new one."""


@dataclass(frozen=True)
class SourceDoc:
    """One document as read: where it lives, its (partial) ``_source`` and its version."""

    id: str
    index: str
    source: dict[str, Any]
    seq_no: int | None = None
    primary_term: int | None = None
    #: Whether the vector field holds a value; None when the server could not say.
    has_vector: bool | None = None
    #: The custom routing it was indexed with (``_routing``); every later get/write must repeat it.
    routing: str | None = None


def build_query(query: dict[str, Any] | None, vector_field: str | None) -> dict[str, Any]:
    """The user's query (or all documents) as a filter, plus a named ``exists`` clause on the
    vector field so each hit says whether it has a vector without fetching the vector itself."""
    base = query if query is not None else {"match_all": {}}
    if vector_field is None:
        return base
    return {
        "bool": {
            "filter": [base],
            "should": [{"exists": {"field": vector_field, "_name": HAS_VECTOR}}],
        }
    }


def read_pages(es: Any, index: str, *, source_includes: Sequence[str] | None = None,
               source_excludes: Sequence[str] | None = None, query: dict[str, Any] | None = None,
               vector_field: str | None = None, slice_id: int = 0, slices: int = 1, page_size: int = 500,
               keep_alive: str = "5m", retry: RetryPolicy | None = None,
               pit_id: str | None = None) -> Iterator[list[SourceDoc]]:
    """Yield the documents of ``index`` (an index, alias or pattern) page by page.

    Only the requested ``_source`` fields are fetched. With ``slices > 1`` only slice
    ``slice_id`` is read: of ``pit_id``, the point in time all slices of the run share (see
    :mod:`.slices`; slices of different points in time can overlap and miss documents). A point in
    time opened here is closed when the iterator ends or is closed; a given one is left open for
    the other slices. ``PitExpired`` is raised when the point in time is gone (its keep-alive,
    renewed by every page read, ran out before the next page was asked for). Transient failures are retried
    under ``retry``; ``IndexNotFound`` when nothing is named so.
    """
    retry = retry or RetryPolicy()
    client = no_transport_retries(es)
    shared = pit_id is not None
    if not shared:
        try:
            pit_id = retry.call(client.open_point_in_time, index=index, keep_alive=keep_alive).body["id"]
        except NotFoundError:
            raise IndexNotFound(index) from None
    request = page_request(query, vector_field, source_includes, source_excludes, page_size,
                           keep_vectors=source_includes is None and vectors_left_out(es))
    if slices > 1:
        request["slice"] = {"id": slice_id, "max": slices}
    search_after: list[Any] | None = None
    try:
        while True:
            body: dict[str, Any] = dict(request, pit={"id": pit_id, "keep_alive": keep_alive})
            if search_after is not None:
                body["search_after"] = search_after
            try:
                response = retry.call(client.search, **body).body
            except NotFoundError:
                # search_context_missing_exception: expired, or closed (or its index deleted, which
                # the next open_point_in_time tells apart).
                what = "shared by the slices of" if shared else "of the scan of"
                raise PitExpired(f"the point in time {what} {index!r} expired while reading "
                                 f"(keep-alive {keep_alive})") from None
            pit_id = response.get("pit_id", pit_id)  # the id may change between requests
            _check_shards(response, index)
            hits = response["hits"]["hits"]
            if not hits:
                return
            yield [_to_doc(hit, vector_field) for hit in hits]
            search_after = hits[-1]["sort"]
            if len(hits) < page_size:
                return
    finally:
        if not shared:
            try:
                client.close_point_in_time(id=pit_id)
            except Exception as exc:  # noqa: BLE001 - the PIT expires by itself; never mask the real error
                log.debug("could not close point in time: %s", exc)


def vectors_left_out(es: Any) -> bool:
    """Whether the server leaves ``dense_vector`` values out of ``_source`` unless asked (9.2+).

    A read of a whole ``_source`` (a blue/green copy) must then ask for them, or the copy would
    drop the application's own vector fields."""
    from ..client import server_info

    return server_info(es).excludes_source_vectors


def page_request(query: dict[str, Any] | None, vector_field: str | None, source_includes: Sequence[str] | None,
                 source_excludes: Sequence[str] | None, page_size: int, *, keep_vectors: bool = False) -> dict[str, Any]:
    """The search request of every page of a scan (without its point in time and position)."""
    source: Any = True
    if source_includes is not None or source_excludes is not None or keep_vectors:
        source = {"exclude_vectors": False} if keep_vectors else {}
        if source_includes is not None:
            source["includes"] = list(source_includes)
        if source_excludes:
            source["excludes"] = list(source_excludes)
    return {
        "query": build_query(query, vector_field),
        "sort": [{"_shard_doc": "asc"}],
        "size": page_size,
        "seq_no_primary_term": True,
        "source": source,
        "track_total_hits": False,
        # A shard that fails must fail the request: partial pages would end the scan early and
        # the job would report success with documents never looked at.
        "allow_partial_search_results": False,
    }


def _check_shards(response: dict[str, Any], index: str) -> None:
    """Raise when any shard failed: its documents would silently be missing from the scan."""
    shards = response.get("_shards") or {}
    if int(shards.get("failed") or 0) > 0:
        reasons = "; ".join(
            str((f.get("reason") or {}).get("reason") or f.get("reason") or f)[:200]
            for f in (shards.get("failures") or [])[:3]
        )
        raise EsSemanticError(
            f"{shards.get('failed')} of {shards.get('total')} shards of {index!r} failed while reading"
            + (f" ({reasons})" if reasons else "")
            + "; stopped so that no document is silently left out. Check the cluster health and rerun: "
            "documents already done are skipped"
        )


def _to_doc(hit: dict[str, Any], vector_field: str | None) -> SourceDoc:
    has_vector: bool | None = None
    if vector_field is not None:
        matched = hit.get("matched_queries")
        # Elasticsearch omits matched_queries when nothing named matched; an explicit list or
        # dict (8.8+ with include_named_queries_score) also counts.
        has_vector = bool(matched) and HAS_VECTOR in matched
    return SourceDoc(
        id=hit["_id"],
        index=hit["_index"],
        source=hit.get("_source") or {},
        seq_no=hit.get("_seq_no"),
        primary_term=hit.get("_primary_term"),
        has_vector=has_vector,
        routing=hit.get("_routing"),
    )


def sources_by_id(es: Any, index: str, docs: Sequence[SourceDoc], *,
                  excludes: Sequence[str]) -> dict[tuple[str, str | None], dict[str, Any]]:
    """The whole ``_source`` (vectors included, less ``excludes``) of these documents in ``index``,
    by (id, routing). A search by ids rather than ``mget``: only a search can ask for vectors."""
    source: dict[str, Any] = {"excludes": list(excludes)}
    if vectors_left_out(es):
        source["exclude_vectors"] = False
    body = {"query": {"ids": {"values": [d.id for d in docs]}}, "size": len(docs), "source": source}
    hits = es.search(index=index, **body).body["hits"]["hits"]
    return {(hit["_id"], hit.get("_routing")): hit.get("_source") or {} for hit in hits}


def mget_docs(docs: Sequence[SourceDoc]) -> dict[str, Any]:
    """``mget`` arguments for these documents: plain ids, or ``docs`` with each one's routing
    when any has a custom routing (a get without it looks on the wrong shard)."""
    if not any(d.routing is not None for d in docs):
        return {"ids": [d.id for d in docs]}
    return {"docs": [{"_id": d.id, **({"routing": d.routing} if d.routing is not None else {})} for d in docs]}


def count_documents(es: Any, index: str, query: dict[str, Any] | None = None) -> int | None:
    """How many documents a scan will see (for the progress bar); None when unknown."""
    try:
        body: dict[str, Any] = {"index": index}
        if query is not None:
            body["query"] = query
        return int(es.count(**body).body["count"])
    except Exception as exc:  # noqa: BLE001 - only a progress estimate
        log.debug("count failed: %s", exc)
        return None
