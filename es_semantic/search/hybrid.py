"""``hybrid_search``: BM25 and kNN over the same index, fused, with both sub-scores on every hit.

How one call runs::

    read the index _meta (cached per client+index, TTL)  ->  embed the query (cached, LRU)
      -> ONE _msearch:
           server path: [fused retriever search (rrf / linear), BM25 leg, kNN leg]
           client path: [BM25 leg, kNN leg], fused here with the same formulas (fusion.py)
      -> client path (and server path with min_score): ONE _mget of the page's k sources
      -> typed hits: fused score, _source, BM25 score and rank, kNN score, rank and similarity

What travels: the legs return ids and scores only (``_source: false``), never 2 x ``window``
documents. On the server path the retriever search returns the page with its sources, so a
search stays one round trip. On the client path the page is only known after fusing here, so its
``k`` sources come from a second request (``_mget``): two small round trips instead of one that
carries up to ``2 * window`` full documents to keep ``k`` (with the default window of 100 and
k=10, 20 times the source bytes). ``source=False`` skips the ``_mget``. With ``min_score`` the
server path reads the fused window as ids and scores and fetches the page the same way.

The legs are sent next to the retriever search (same ``_msearch``, so still one round trip)
because a retriever only returns the fused score; the legs give each hit's per-leg scores and
ranks, which the CLI prints, ``min_score`` needs, and ``explain`` uses. The server path is used
when the cluster has the retriever (rrf >= 8.16, weighted rrf >= 9.2, linear >= 8.18, l2_norm
>= 9.1; z-score never: Elasticsearch has no such normaliser); ``execution="client"`` or
``"server"`` forces one. Both paths produce the same ranking on the same data (tested), but for
the order of exactly tied scores: Elasticsearch breaks ties by its internal document order, the
client side by best leg rank, then id.

Scores do not depend on the page: the fusion always runs over a fixed window (``window``, the
``rank_window_size``) of each leg, and ``from_``/``k`` cut a page out of the fused list, so
``from_ + k`` must fit in the window.

``min_score`` -- "no good answer" -- thresholds the *cosine similarity* between the query and a
hit's vector (derived from the kNN leg's ``_score`` for the index's similarity; vectors are unit
length). That is an absolute, model-calibrated number, unlike RRF scores (rank-based) or min-max
normalised scores (the top hit is always 1), so the same threshold means the same thing for every
query. Hits below it are dropped, hits the kNN leg did not return within the window count as
below it, and ``result.no_match`` is True when nothing is left. The threshold is applied to the
fused list before paging, so page 2 continues page 1. By default (``min_score="index"``) the
threshold is the one stored in the index ``_meta`` (``es-semantic eval --calibrate --save``, or
``es-semantic set-min-score``): calibrated for the index's model, and dropped with it when a
blue/green reindex changes the model. ``min_score=None`` searches without one.

The query string only ever reaches Elasticsearch as the text of a ``multi_match`` query and as
the input of the embedding model: no query-DSL or Lucene syntax is interpreted. Control
characters are replaced by spaces and the text is cut at ``MAX_QUERY_CHARS``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from ..client import ServerInfo
from ..config import SemanticConfig, check_index_name, redact_url
from ..errors import ConfigError, ConnectionFailed, EsSemanticError
from ..mappings import TEXT_TYPES, config_from_mappings, did_you_mean, lookup_property, mapped_fields, nearest_first
from ..rerank.base import TextReranker
from ..rerank.results import (
    ES_PREFIX,
    es_rerank_retriever,
    first_stage,
    is_es_rerank,
    rerank_page,
    resolve_rerank,
)
from . import fusion
from .options import DEFAULTS, FROM_INDEX, Defaults, SearchOptionError, SearchOptions, parse_field

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch, Elasticsearch

    from ..embedding.embedder import Embedder

#: Longer queries are cut: BM25 gains nothing from thousands of terms, and a query is not a document.
MAX_QUERY_CHARS = 2048
#: How long the index configuration read from ``_meta`` is reused.
CONFIG_TTL_S = 30.0
#: Query embeddings kept per process.
QUERY_CACHE_SIZE = 2048

class SearchFailed(EsSemanticError):
    """Elasticsearch refused or failed the search request."""


def _translate(exc: Exception, doing: str) -> EsSemanticError:
    """A client exception as the library's own: transport trouble and rejected credentials are
    ``ConnectionFailed``, any other error answer is ``SearchFailed``."""
    from elasticsearch import ApiError, AuthenticationException, AuthorizationException

    if isinstance(exc, AuthenticationException):
        return ConnectionFailed(f"Elasticsearch rejected the credentials (401) while {doing}", status=401)
    if isinstance(exc, AuthorizationException):
        return ConnectionFailed(
            f"Elasticsearch refused access (403) while {doing}: the user or API key needs the 'read' and "
            "'view_index_metadata' privileges on the index"
        )
    if isinstance(exc, ApiError):
        return SearchFailed(f"Elasticsearch answered {exc.meta.status} while {doing}: {exc.message}")
    reason = redact_url(str(getattr(exc, "message", "") or exc))[:200]
    return ConnectionFailed(f"cannot reach Elasticsearch while {doing} ({type(exc).__name__}: {reason})",
                            reason="unreachable")


def _client_errors() -> tuple[type[Exception], ...]:
    from elasticsearch import ApiError, TransportError

    return (ApiError, TransportError)


# --------------------------------------------------------------------------- results


@dataclass
class Hit:
    """One result. ``bm25_*``/``knn_*`` are None where that leg did not return the document
    within the fusion window. ``similarity`` is the query-document cosine similarity (from the kNN leg)."""

    id: str
    score: float
    source: dict[str, Any] | None
    index: str | None = None
    routing: str | None = None  # the document's custom routing, if it has one
    bm25_score: float | None = None
    bm25_rank: int | None = None
    knn_score: float | None = None
    knn_rank: int | None = None
    similarity: float | None = None
    rerank_score: float | None = None  # the reranker's score, when the search reranked
    explanation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """The hits of one page, and how they were obtained. Iterable like a list of hits."""

    hits: list[Hit]
    query: str
    method: str
    execution: str  # "server" (retriever) or "client" (fused here)
    window: int
    min_score: float | None = None
    no_match: bool = False  # min_score was given and no hit reached it
    best_similarity: float | None = None  # the kNN leg's best cosine similarity (before min_score)
    took_ms: float = 0.0  # the search itself, without loading the model
    params: dict[str, Any] = field(default_factory=dict)
    model_load_ms: float | None = None  # set when this call had to load the embedding model

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, item: int) -> Hit:
        return self.hits[item]

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data; ``model_load_ms`` only where this search loaded the model."""
        data = asdict(self)
        data["hits"] = [h.to_dict() for h in self.hits]
        if self.model_load_ms is None:
            del data["model_load_ms"]
        return data


# --------------------------------------------------------------------------- the query text


def clean_query(query: Any) -> str:
    """The query as plain text: control characters become spaces, length is capped."""
    if not isinstance(query, str):
        raise ConfigError(f"the query must be a string, got {type(query).__name__}")
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in query)
    text = " ".join(text.split())[:MAX_QUERY_CHARS]
    if not text:
        raise ConfigError("the query is empty; give some words to search for")
    return text


# --------------------------------------------------------------------------- index configuration


#: Field types BM25 can search.
SEARCHABLE_TYPES = (*TEXT_TYPES, "search_as_you_type")


@dataclass(frozen=True)
class IndexInfo:
    """What a search needs from the index mapping: the stored config and the BM25 fields."""

    config: SemanticConfig
    text_subfields: Mapping[str, tuple[str, ...]]  # text field -> its multi-field names
    #: The concrete indices the mapping was read from (behind an alias): a hit from another one
    #: means the alias moved (blue/green) since, and this configuration may be stale.
    indices: frozenset[str] = frozenset()
    #: Every mapped field (dotted, multi-fields included) -> its type, over the indices behind the alias.
    field_types: Mapping[str, str] = field(default_factory=dict)

    def default_fields(self, defaults: Defaults = DEFAULTS) -> list[str]:
        from ..languages import bm25_fields

        if not defaults.english_subfields:  # no language sub-fields
            return list(self.config.text_fields)
        return bm25_fields(self.config.text_fields, self.text_subfields, self.config.languages)

    @property
    def searchable_fields(self) -> list[str]:
        return [name for name, kind in self.field_types.items() if kind in SEARCHABLE_TYPES]


def parse_mapping_response(body: Mapping[str, Any], index: str) -> IndexInfo:
    """``GET <index>/_mapping`` -> IndexInfo; indices behind an alias must share one config."""
    mappings = {name: entry.get("mappings", {}) for name, entry in body.items()}
    config = config_from_mappings(mappings, index)
    # Sub-fields (e.g. ``.english``) that every index behind the alias has for each text field.
    subfields: dict[str, tuple[str, ...]] = {}
    field_types: dict[str, str] = {}
    for mapping in mappings.values():
        field_types.update(mapped_fields(mapping.get("properties") or {}))
        for text_field in config.text_fields:
            prop = lookup_property(mapping.get("properties") or {}, text_field) or {}
            subs = tuple(sorted((prop.get("fields") or {}).keys()))
            subfields[text_field] = subs if text_field not in subfields else tuple(
                s for s in subfields[text_field] if s in subs
            )
    return IndexInfo(config, subfields, frozenset(mappings), field_types)


def bm25_fields(options: SearchOptions, info: IndexInfo, index: str, defaults: Defaults = DEFAULTS) -> list[str]:
    """The fields the BM25 leg searches: ``options.fields``, each checked against the mapping (a
    name the index lacks, or a field BM25 cannot search, would silently leave BM25 finding nothing),
    or by default the index's text fields."""
    if "bm25" not in options.legs:
        return []
    if options.fields is None:
        return info.default_fields(defaults)
    for entry in options.fields:
        _check_mapped(entry, info, index)
    return list(options.fields)


def _check_mapped(entry: str, info: IndexInfo, index: str) -> None:
    name, _ = parse_field(entry)
    texts = info.searchable_fields
    if "*" in name:
        if not any(fnmatchcase(text, name) for text in texts):
            raise SearchOptionError("fields", entry, f"matches no text field of index {index!r}; its text fields: "
                                                     f"{_some(texts)}", index=index)
        return
    kind = info.field_types.get(name)
    if kind in SEARCHABLE_TYPES:
        return
    if kind is None:
        hint = did_you_mean(name, texts)
        reason = f"index {index!r} has no field {name!r}" + (f" ({hint})" if hint else "")
    else:
        reason = f"{name!r} is a field of type {kind} in index {index!r}, which BM25 cannot search"
    raise SearchOptionError("fields", entry, f"{reason}; its text fields: {_some(nearest_first(texts, [name]))}",
                            index=index)


def _some(names: Sequence[str], most: int = 10) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "") or "none"


_CONFIG_CACHE: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, IndexInfo]]] = weakref.WeakKeyDictionary()
_INFO_CACHE: weakref.WeakKeyDictionary[Any, ServerInfo] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _cached_info(es: Any, index: str) -> IndexInfo | None:
    check_index_name(index)  # before any request: a wildcard or _all would search other indices
    with _LOCK:
        entry = _CONFIG_CACHE.get(es.transport, {}).get(index)
    if entry is not None and entry[0] > time.monotonic():
        return entry[1]
    return None


def _store_info(es: Any, index: str, info: IndexInfo) -> None:
    with _LOCK:
        _CONFIG_CACHE.setdefault(es.transport, {})[index] = (time.monotonic() + CONFIG_TTL_S, info)


def clear_caches() -> None:
    """Forget cached index configurations and query embeddings (e.g. after install-mappings)."""
    with _LOCK:
        _CONFIG_CACHE.clear()
    with _EMBED_LOCK:  # the lock every other use of the query cache takes
        _QUERY_CACHE.clear()


def index_info(es: Any, index: str, *, fresh: bool = False) -> IndexInfo:
    """The index configuration, read from ``_meta`` at most once per ``CONFIG_TTL_S`` per client
    (``fresh``: read it now, e.g. after :func:`config_may_be_stale`)."""
    cached = None if fresh else _cached_info(es, index)
    if cached is not None:
        return cached
    from elasticsearch import NotFoundError

    try:
        body = es.indices.get_mapping(index=index).body
    except NotFoundError:
        body = {}
    except _client_errors() as exc:
        raise _translate(exc, f"reading the mapping of {index!r}") from None
    info = parse_mapping_response(body, index)
    _store_info(es, index, info)
    return info


def config_may_be_stale(info: IndexInfo, responses: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the search should be redone with the mapping read again: a hit came from an index
    the cached configuration was not read from (the alias moved: a blue/green swap, maybe to another
    model), or a search failed (e.g. the query vector has the old model's dims)."""
    for response in responses:
        if "error" in response:
            return True
        if info.indices:
            for hit in (response.get("hits") or {}).get("hits", []):
                if hit.get("_index") not in info.indices:
                    return True
    return False


def _server_info(es: Any) -> ServerInfo:
    from ..client import server_info

    try:
        return server_info(es)
    except _client_errors() as exc:
        raise _translate(exc, "reading the server version") from None


# --------------------------------------------------------------------------- embeddings

# _EMBED_LOCK guards _EMBEDDERS, _LOAD_LOCKS and _QUERY_CACHE and is only ever held for dict
# operations, never while a model loads or a query is embedded: a search whose vector is cached
# never waits for anything slow. A model load holds only its own key's lock in _LOAD_LOCKS, so two
# threads asking for one model load it once, and other models' searches run meanwhile.
_EMBEDDERS: dict[tuple[Any, ...], Any] = {}
_LOAD_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_QUERY_CACHE: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_EMBED_LOCK = threading.Lock()


def _embedder_key(config: SemanticConfig) -> tuple[Any, ...]:
    return (config.model, config.dims, config.query_instruction, config.max_length)


def get_embedder(config: SemanticConfig) -> Embedder:
    """One process-wide ``Embedder`` per (model, dims, query instruction): loading a model is slow."""
    key = _embedder_key(config)
    with _EMBED_LOCK:
        embedder = _EMBEDDERS.get(key)
        if embedder is not None:
            return embedder
        load_lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with load_lock:
        with _EMBED_LOCK:
            embedder = _EMBEDDERS.get(key)  # another thread may have loaded it meanwhile
        if embedder is None:
            from ..embedding.embedder import embedder_for

            embedder = embedder_for(config)
            with _EMBED_LOCK:
                _EMBEDDERS[key] = embedder
    return embedder


def register_embedder(config: SemanticConfig, embedder: Embedder) -> None:
    """Make ``embedder`` the shared one for ``config``'s model (e.g. one the caller already loaded)."""
    with _EMBED_LOCK:
        _EMBEDDERS[_embedder_key(config)] = embedder


def _query_key(embedder: Any, text: str) -> tuple[Any, ...]:
    # Keyed by what determines the vector, not by id(embedder): ids are reused after an object dies.
    return (getattr(embedder, "model_id", None), getattr(embedder, "dims", None), getattr(embedder, "normalize", None),
            getattr(embedder, "pooling", None), embedder.query_prefix(), text)


def _remember(entries: Sequence[tuple[tuple[Any, ...], list[float]]]) -> None:
    with _EMBED_LOCK:
        for key, vector in entries:
            _QUERY_CACHE[key] = vector
            _QUERY_CACHE.move_to_end(key)
        while len(_QUERY_CACHE) > QUERY_CACHE_SIZE:
            _QUERY_CACHE.popitem(last=False)


def prefill_query_cache(embedder: Any, texts: Sequence[str], batch_size: int = 64) -> dict[str, list[float]]:
    """Embed many queries in batches (much faster than one by one).

    Returns ``{cleaned text: vector}`` for all of them; only the last ``QUERY_CACHE_SIZE`` stay in
    the process-wide cache (it never grows past its bound, however many queries an eval has).
    """
    cleaned = list(dict.fromkeys(clean_query(t) for t in texts))
    vectors: dict[str, list[float]] = {}
    for start in range(0, len(cleaned), batch_size):
        chunk = cleaned[start: start + batch_size]
        matrix = embedder.embed_queries(chunk)
        rows = [[float(x) for x in row] for row in matrix]
        vectors.update(zip(chunk, rows))
        _remember([(_query_key(embedder, text), row) for text, row in zip(chunk, rows)])
    return vectors


def embed_query(embedder: Any, text: str) -> list[float]:
    """The query vector as a list of floats, from an LRU cache keyed by model, prompt and text."""
    key = _query_key(embedder, text)
    with _EMBED_LOCK:
        vector = _QUERY_CACHE.get(key)
        if vector is not None:
            _QUERY_CACHE.move_to_end(key)
            return vector
    vector = [float(x) for x in embedder.embed_query(text)]
    _remember([(key, vector)])
    return vector


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """Everything decided before the request: pure data, shared by the sync and async paths."""

    index: str
    text: str
    config: SemanticConfig
    options: SearchOptions  # resolved: the defaults of what the method uses are filled in
    execution: str  # "server" (a retriever fuses) or "client" (fused here)
    fields: list[str]  # the BM25 fields
    min_score: float | None  # the threshold in force (the index's, where the options say so)
    multi_match_type: str = DEFAULTS.multi_match_type
    vector: list[float] | None = None

    @property
    def method(self) -> str:
        return self.options.method or DEFAULTS.method

    @property
    def window(self) -> int:
        return self.options.window or DEFAULTS.window

    @property
    def legs(self) -> tuple[str, ...]:
        return self.options.legs

    @property
    def source_spec(self) -> Any:
        """The ``_source`` to ask for: by default the document without es-semantic's own fields (a
        1024-float vector per hit is most of the bytes and no caller reads it); else as given."""
        if self.options.source is True:
            return {"excludes": [self.config.vector_field, self.config.info_field]}
        return self.options.source

    @property
    def fetches_sources(self) -> bool:
        """True when the page's ``_source`` comes from a separate ``_mget`` (see the module doc):
        the client path, and the server path with ``min_score`` (it reads the whole fused window)."""
        return self.options.source is not False and (self.execution == "client" or self.min_score is not None)


def bm25_query(text: str, fields: Sequence[str], filter: Any = None, match_type: str = "best_fields") -> dict[str, Any]:
    """The BM25 leg: the text only ever appears as ``multi_match.query`` (never parsed as syntax)."""
    from ..languages import SUM_PER_FIELD, summed_per_field

    match: dict[str, Any] = (summed_per_field(text, fields) if match_type == SUM_PER_FIELD else
                             {"multi_match": {"query": text, "fields": list(fields), "type": match_type}})
    if filter is None:
        return match
    return {"bool": {"must": [match], "filter": _filters(filter)}}


def knn_clause(plan: Plan) -> dict[str, Any]:
    knn: dict[str, Any] = {
        "field": plan.config.vector_field,
        "query_vector": plan.vector,
        "k": plan.window,
        "num_candidates": plan.options.num_candidates,
    }
    if plan.options.filter is not None:
        knn["filter"] = _filters(plan.options.filter)
    return knn


def _filters(filter: Any) -> list[Any]:
    return list(filter) if isinstance(filter, (list, tuple)) else [filter]


def _bm25_query(plan: Plan) -> dict[str, Any]:
    return bm25_query(plan.text, plan.fields, plan.options.filter, plan.multi_match_type)


def _leg_body(plan: Plan, leg: str, source: Any = False) -> dict[str, Any]:
    body: dict[str, Any] = {"size": plan.window, "_source": source, "track_total_hits": False}
    if leg == "bm25":
        body["query"] = _bm25_query(plan)
    else:
        body["knn"] = knn_clause(plan)
    return body


def retriever_body(plan: Plan) -> dict[str, Any]:
    """The server-side fusion request (``rrf`` or ``linear`` retriever)."""
    bm25 = {"standard": {"query": _bm25_query(plan)}}
    knn = {"knn": knn_clause(plan)}
    options = plan.options
    weights = options.weights
    if plan.method == "rrf":
        weighted = any(w != 1.0 for w in weights.values())
        retrievers: list[Any] = (
            [{"retriever": bm25, "weight": weights["bm25"]}, {"retriever": knn, "weight": weights["knn"]}]
            if weighted else [bm25, knn]
        )
        retriever = {"rrf": {"retrievers": retrievers, "rank_window_size": plan.window,
                             "rank_constant": options.rank_constant}}
    else:
        retriever = {"linear": {"retrievers": [
            {"retriever": bm25, "weight": weights["bm25"], "normalizer": options.normalizer},
            {"retriever": knn, "weight": weights["knn"], "normalizer": options.normalizer},
        ], "rank_window_size": plan.window}}
    if is_es_rerank(options.rerank):
        retriever = es_rerank_retriever(
            retriever, inference_id=options.rerank[len(ES_PREFIX):], field=plan.config.text_fields[0],
            text=plan.text, window=options.rerank_window,
            min_score=None if isinstance(options.min_score, str) else options.min_score)
    if plan.min_score is not None:
        # The threshold is applied before paging: read the whole fused window (ids and scores
        # only), page it here, then fetch the page's sources.
        return {"retriever": retriever, "size": plan.window, "from": 0, "_source": False}
    return {"retriever": retriever, "size": options.k, "from": options.from_, "_source": plan.source_spec}


def msearch_body(plan: Plan) -> list[dict[str, Any]]:
    """The one ``_msearch``: header/body pairs. Server path: fused search first, then the legs."""
    searches: list[dict[str, Any]] = []
    if plan.execution == "server":
        searches += [{"index": plan.index}, retriever_body(plan)]
    # The legs only give ids and scores: the page's sources come from the retriever search or an _mget.
    for leg in plan.legs:
        searches += [{"index": plan.index}, _leg_body(plan, leg)]
    return searches


def mget_body(plan: Plan, result: SearchResult) -> dict[str, Any] | None:
    """The ``_mget`` for the page's sources (None when there is nothing to fetch)."""
    if not plan.fetches_sources or not result.hits:
        return None
    docs = []
    for hit in result.hits:
        doc: dict[str, Any] = {"_index": hit.index or plan.index, "_id": hit.id, "_source": plan.source_spec}
        if hit.routing is not None:  # without it a get looks on the wrong shard
            doc["routing"] = hit.routing
        docs.append(doc)
    return {"docs": docs}


def attach_sources(result: SearchResult, response: Mapping[str, Any]) -> SearchResult:
    """Put the ``_mget`` sources on the hits (a document deleted meanwhile keeps ``source=None``)."""
    found = {(d.get("_index"), d.get("_id")): d.get("_source") for d in response.get("docs", []) if d.get("found")}
    by_id = {d.get("_id"): d.get("_source") for d in response.get("docs", []) if d.get("found")}
    for hit in result.hits:
        hit.source = found.get((hit.index, hit.id), by_id.get(hit.id))
    return result


def server_supports(info: ServerInfo, method: str, weights: Mapping[str, float], normalizer: str) -> str | None:
    """None when the cluster can fuse this server-side; otherwise why not."""
    if method == "rrf":
        if not info.supports_rrf_retriever:
            return f"Elasticsearch {info.version_string} has no rrf retriever (8.16+)"
        if any(w != 1.0 for w in weights.values()) and info.version < (9, 2, 0):
            return f"Elasticsearch {info.version_string} has no weighted rrf (9.2+)"
        return None
    if not info.supports_linear_retriever:
        return f"Elasticsearch {info.version_string} has no linear retriever (8.18+)"
    if normalizer not in fusion.SERVER_NORMALIZERS:
        return f"Elasticsearch has no {normalizer!r} normaliser (only {', '.join(fusion.SERVER_NORMALIZERS)})"
    if normalizer == "l2_norm" and info.version < (9, 1, 0):
        return f"Elasticsearch {info.version_string} has no l2_norm normaliser (9.1+)"
    return None


def make_plan(text: str, info: IndexInfo, server: ServerInfo | None, options: SearchOptions, *, index: str,
              defaults: Defaults = DEFAULTS) -> Plan:
    """Decide the request for ``options`` on this index (pure; ``server`` None means client-side).
    ``defaults`` fill in what the options leave out (and choose the BM25 fields and ``multi_match`` type)."""
    from ..calibration import index_defaults

    if defaults is DEFAULTS:  # the index's calibrated fusion and BM25 analysis; a caller's own Defaults win
        defaults = index_defaults(info.config, defaults)
    resolved = options.resolved(defaults)
    return Plan(index, text, info.config, resolved, _execution(resolved, server),
                bm25_fields(resolved, info, index, defaults), _min_score(resolved, info),
                defaults.multi_match_type)


def _min_score(options: SearchOptions, info: IndexInfo) -> float | None:
    """The threshold in force: the index's calibrated one by default (BM25 alone has no similarity
    to hold it against)."""
    if is_es_rerank(options.rerank):
        return None  # Elasticsearch's reranker applies it (retriever_body)
    if options.min_score == FROM_INDEX:
        return info.config.min_score if options.method != "bm25" else None
    return options.min_score  # type: ignore[return-value]  # checked: a float or None


def _execution(options: SearchOptions, server: ServerInfo | None) -> str:
    """Where the fusion runs: server-side where the cluster can and the options allow it."""
    if options.method in ("bm25", "knn") or options.execution == "client" or server is None:
        return "client"
    reason = server_supports(server, options.method or "", options.weights, options.normalizer or "")
    if reason is None:
        return "server"
    if options.execution == "server":
        raise SearchOptionError("execution", options.execution, f"cannot fuse server-side: {reason}; "
                                                                "fuse client-side (client or auto)")
    return "client"


# --------------------------------------------------------------------------- responses


def knn_similarity(score: float, similarity: str) -> float:
    """Turn a kNN ``_score`` back into the cosine similarity of unit vectors.

    Elasticsearch scores: cosine and dot_product ``(1 + cos) / 2``; l2_norm ``1 / (1 + d^2)`` with
    ``d^2 = 2 - 2 cos`` for unit vectors; max_inner_product ``1 / (1 - dot)`` if dot < 0 else ``dot + 1``.
    """
    if similarity in ("cosine", "dot_product"):
        return 2.0 * score - 1.0
    if similarity == "l2_norm":
        d2 = 1.0 / score - 1.0 if score > 0 else 4.0
        return 1.0 - d2 / 2.0
    return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score


def _check(response: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if "error" in response:
        error = response["error"]
        reason = error.get("reason") if isinstance(error, dict) else str(error)
        root = (error.get("root_cause") or [{}])[0].get("reason") if isinstance(error, dict) else None
        detail = f"{reason}" + (f" ({root})" if root and root != reason else "")
        raise SearchFailed(f"the {what} search failed with status {response.get('status')}: {detail}")
    return response


def _leg_results(response: Mapping[str, Any]) -> list[tuple[str, float]]:
    return [(h["_id"], float(h["_score"] or 0.0)) for h in response["hits"]["hits"]]


#: One entry of the fused list: id, fused score, ``_source``, index, routing.
_Entry = tuple[str, float, Any, "str | None", "str | None"]


def build_result(plan: Plan, responses: Sequence[Mapping[str, Any]]) -> SearchResult:
    """Turn the ``_msearch`` responses into a ``SearchResult`` (pure)."""
    responses = list(responses)
    fused_response = _check(responses.pop(0), plan.method) if plan.execution == "server" else None
    leg_responses = {leg: _check(r, leg) for leg, r in zip(plan.legs, responses)}
    legs = {leg: _leg_results(r) for leg, r in leg_responses.items()}
    # What the client-side formulas give; on the server path this provides sub-scores and explanations.
    fused = _fuse(plan, legs)
    by_id = {f.id: f for f in fused}
    if fused_response is not None:
        ordered = [_entry(h, float(h.get("_score") or 0.0)) for h in fused_response["hits"]["hits"]]
    else:
        sources = {}
        for response in leg_responses.values():
            for h in response["hits"]["hits"]:
                sources.setdefault(h["_id"], _entry(h, 0.0)[2:])
        ordered = [(f.id, f.score, *sources.get(f.id, (None, None, None))) for f in fused]
    ordered = _reaching(plan, ordered, by_id)
    # A second stage (a reranker) reorders the top of ``ordered`` here, before the page is cut from it.
    server_paged = fused_response is not None and plan.min_score is None  # the server already cut the page
    page = ordered if server_paged else ordered[plan.options.from_: plan.options.from_ + plan.options.k]
    knn = legs.get("knn", [])
    best_similarity = knn_similarity(knn[0][1], plan.config.similarity) if knn else None
    return SearchResult([_hit(plan, entry, by_id) for entry in page], plan.text, plan.method, plan.execution,
                        plan.window, plan.min_score, plan.min_score is not None and not ordered, best_similarity,
                        params=_params(plan))


def _entry(hit: Mapping[str, Any], score: float) -> _Entry:
    return hit["_id"], score, hit.get("_source"), hit.get("_index"), hit.get("_routing")


def _fuse(plan: Plan, legs: Mapping[str, list[tuple[str, float]]]) -> list[fusion.Fused]:
    if plan.method in ("bm25", "knn"):
        return [fusion.Fused(doc_id, score, {plan.method: rank}, {plan.method: score})
                for rank, (doc_id, score) in enumerate(legs[plan.method], start=1)]
    return fusion.fuse(legs, plan.method, window=plan.window, **_fusion_params(plan.options))


def _fusion_params(options: SearchOptions) -> dict[str, Any]:
    """The keywords of ``fusion.fuse``/``fusion.explain`` for the (resolved) options' method."""
    params: dict[str, Any] = {"weights": options.weights}
    if options.method == "rrf":
        params["rank_constant"] = options.rank_constant
    else:
        params["normalizer"] = options.normalizer
    return params


def _reaching(plan: Plan, ordered: list[_Entry], by_id: Mapping[str, fusion.Fused]) -> list[_Entry]:
    """The entries whose cosine similarity reaches ``min_score`` (all without one); BM25-only hits
    have no similarity, so none of them reach it."""
    if plan.min_score is None:
        return ordered
    reaching = []
    for entry in ordered:
        score = by_id[entry[0]].scores.get("knn") if entry[0] in by_id else None
        if score is not None and knn_similarity(score, plan.config.similarity) >= plan.min_score:
            reaching.append(entry)
    return reaching


def _hit(plan: Plan, entry: _Entry, by_id: Mapping[str, fusion.Fused]) -> Hit:
    doc_id, score, src, idx, routing = entry
    f = by_id.get(doc_id) or fusion.Fused(doc_id, score, {}, {})
    knn_score = f.scores.get("knn")
    reranked = is_es_rerank(plan.options.rerank)  # the retriever's score is Elasticsearch's rerank score
    return Hit(
        id=doc_id, score=f.score if reranked else score, rerank_score=score if reranked else None,
        source=src, index=idx, routing=routing,
        bm25_score=f.scores.get("bm25"), bm25_rank=f.ranks.get("bm25"),
        knn_score=knn_score, knn_rank=f.ranks.get("knn"),
        similarity=knn_similarity(knn_score, plan.config.similarity) if knn_score is not None else None,
        explanation=_explain(plan, f) if plan.options.explain else None,
    )


def _params(plan: Plan) -> dict[str, Any]:
    """The settings the search ran with, defaults filled in (``SearchResult.params``)."""
    options = plan.options
    return {"fields": plan.fields, "num_candidates": options.num_candidates, "weights": options.weights,
            "rank_constant": options.rank_constant, "normalizer": options.normalizer, "k": options.k,
            "from": options.from_}


def _explain(plan: Plan, f: fusion.Fused) -> str:
    if plan.method in ("bm25", "knn"):
        rank = f.ranks.get(plan.method)
        return f"{plan.method} {f.score:.6g} [{plan.method} rank {rank}, no fusion]"
    text = fusion.explain(f, plan.method, **_fusion_params(plan.options))
    if plan.method == "linear":
        text += f" (normalised over each leg's top {plan.window})"
    return text


# --------------------------------------------------------------------------- entry points


class _Clock:
    """A search's own time: the whole call less the model load it had to wait for (reported apart)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.model_load_ms: float | None = None

    def embedder(self, config: SemanticConfig) -> Embedder:
        """:func:`get_embedder`, timing the load when the model was not loaded yet."""
        with _EMBED_LOCK:
            loaded = _embedder_key(config) in _EMBEDDERS
        started = time.perf_counter()
        embedder = get_embedder(config)
        if not loaded:
            self.model_load_ms = (self.model_load_ms or 0.0) + (time.perf_counter() - started) * 1000
        return embedder

    def stamp(self, result: SearchResult) -> SearchResult:
        result.took_ms = (time.perf_counter() - self.started) * 1000 - (self.model_load_ms or 0.0)
        result.model_load_ms = self.model_load_ms
        return result


def _msearch(es: Any, plan: Plan) -> list[Mapping[str, Any]]:
    try:
        response = es.msearch(searches=msearch_body(plan))
    except _client_errors() as exc:
        raise _translate(exc, "searching") from None
    return list(response.body["responses"])


def _fetch_sources(es: Any, plan: Plan, result: SearchResult) -> SearchResult:
    body = mget_body(plan, result)
    if body is None:
        return result
    try:
        response = es.mget(docs=body["docs"])
    except _client_errors() as exc:
        raise _translate(exc, "fetching the hits' sources") from None
    return attach_sources(result, response.body)


def hybrid_search(
    es: Elasticsearch,
    query: str,
    *,
    index: str,
    options: SearchOptions | None = None,
    embedder: Embedder | None = None,
    **keywords: Any,
) -> SearchResult:
    """Search ``index`` with BM25 and kNN together and fuse the two rankings.

    The model, vector field, text fields and query instruction come from the index ``_meta``.

    >>> result = hybrid_search(es, "how do I reset my password", index="faq", k=3)
    >>> for hit in result:
    ...     print(hit.id, hit.score, hit.bm25_rank, hit.knn_rank, hit.source["question"])

    The search options (``k``, ``from_``, ``method``, ``fields``, ``filter``, ``window``,
    ``min_score``, ...) are the fields of :class:`SearchOptions`: pass them as keywords, or as
    ``options=SearchOptions(...)`` (keywords then change those). ``embedder``: your own
    ``Embedder`` (default: one per model, shared in the process). ``result.took_ms`` is the search;
    a model load it waited for is ``result.model_load_ms``.
    """
    clock = _Clock()
    chosen = SearchOptions.of(options, **keywords)
    text = clean_query(query)
    info = index_info(es, index)
    server = _server_info(es) if chosen.execution != "client" else None

    def run(info: IndexInfo) -> tuple[Plan, list[Mapping[str, Any]], TextReranker | str | None, int]:
        reranker = resolve_rerank(chosen.rerank, info.config)
        first, rerank_window = first_stage(chosen.resolved(), reranker)
        plan = make_plan(text, info, server, first, index=index)
        if "knn" in plan.legs:
            plan.vector = embed_query(embedder or clock.embedder(info.config), text)
        return plan, _msearch(es, plan), reranker, rerank_window

    plan, responses, reranker, rerank_window = run(info)
    if config_may_be_stale(info, responses):
        fresh = index_info(es, index, fresh=True)
        if fresh != info:  # the configuration changed under us: search again with the new one
            plan, responses, reranker, rerank_window = run(fresh)
    result = _fetch_sources(es, plan, build_result(plan, responses))
    if isinstance(reranker, TextReranker):  # the top of the fused list, reranked and paged here
        result = rerank_page(result, reranker, chosen, plan.config, rerank_window)
    return clock.stamp(result)


def leg_options(options: SearchOptions | None, legs: Sequence[str]) -> SearchOptions:
    """What fetching ``legs`` takes from ``options``: the window, fields, filter and kNN candidates."""
    given = options or SearchOptions()
    method = legs[0] if len(legs) == 1 else "rrf"
    return SearchOptions(method=method, k=1, window=given.window, filter=given.filter, min_score=None,
                         fields=given.fields if method != "knn" else None, source=False, execution="client",
                         num_candidates=given.num_candidates if method != "bm25" else None)


def fetch_legs_batch(
    es: Elasticsearch,
    queries: Sequence[str],
    *,
    index: str,
    options: SearchOptions | None = None,
    legs: Sequence[str] = ("bm25", "knn"),
    embedder: Embedder | None = None,
    vectors: Mapping[str, Sequence[float]] | None = None,
    defaults: Defaults = DEFAULTS,
) -> list[dict[str, list[tuple[str, float]]]]:
    """The legs' windows of several queries as ``(id, score)`` lists, without sources, in ONE
    ``_msearch`` (used by the evaluation; ``legs=("bm25",)`` runs BM25 alone, no model needed).

    ``vectors`` maps cleaned query texts to vectors already computed (e.g. by
    :func:`prefill_query_cache`); other queries are embedded here."""
    if not queries:
        return []
    info = index_info(es, index)
    chosen = leg_options(options, legs)
    plans = []
    for query in queries:
        text = clean_query(query)
        plan = make_plan(text, info, None, chosen, index=index, defaults=defaults)
        if "knn" in plan.legs:
            vector = (vectors or {}).get(text)
            if vector is None:
                embedder = embedder or get_embedder(info.config)
                vector = embed_query(embedder, text)
            plan.vector = [float(x) for x in vector]
        plans.append(plan)
    try:
        responses = list(es.msearch(searches=[part for p in plans for part in msearch_body(p)]).body["responses"])
    except _client_errors() as exc:
        raise _translate(exc, "searching") from None
    results = []
    for plan in plans:
        mine, responses = responses[:len(plan.legs)], responses[len(plan.legs):]
        results.append({leg: _leg_results(_check(r, leg)) for leg, r in zip(plan.legs, mine)})
    return results


async def _async_index_info(es: AsyncElasticsearch, index: str) -> IndexInfo:
    from elasticsearch import NotFoundError

    try:
        body = (await es.indices.get_mapping(index=index)).body
    except NotFoundError:
        body = {}
    except _client_errors() as exc:
        raise _translate(exc, f"reading the mapping of {index!r}") from None
    info = parse_mapping_response(body, index)
    _store_info(es, index, info)
    return info


async def _async_server_info(es: AsyncElasticsearch) -> ServerInfo:
    with _LOCK:
        server = _INFO_CACHE.get(es.transport)
    if server is None:
        try:
            server = ServerInfo.from_info((await es.info()).body)
        except _client_errors() as exc:
            raise _translate(exc, "reading the server version") from None
        with _LOCK:
            _INFO_CACHE[es.transport] = server
    return server


async def async_hybrid_search(
    es: AsyncElasticsearch,
    query: str,
    *,
    index: str,
    options: SearchOptions | None = None,
    embedder: Embedder | None = None,
    **keywords: Any,
) -> SearchResult:
    """:func:`hybrid_search` for ``AsyncElasticsearch``: the same options and result.

    The query is embedded in a worker thread so the event loop keeps running.
    """
    clock = _Clock()
    chosen = SearchOptions.of(options, **keywords)
    text = clean_query(query)
    info = _cached_info(es, index) or await _async_index_info(es, index)
    server = await _async_server_info(es) if chosen.execution != "client" else None

    async def run(info: IndexInfo) -> tuple[Plan, list[Mapping[str, Any]], TextReranker | str | None, int]:
        reranker = await asyncio.to_thread(resolve_rerank, chosen.rerank, info.config)
        first, rerank_window = first_stage(chosen.resolved(), reranker)
        plan = make_plan(text, info, server, first, index=index)
        if "knn" in plan.legs:
            model = embedder or await asyncio.to_thread(clock.embedder, info.config)
            plan.vector = await asyncio.to_thread(embed_query, model, text)
        try:
            return plan, list((await es.msearch(searches=msearch_body(plan))).body["responses"]), reranker, \
                rerank_window
        except _client_errors() as exc:
            raise _translate(exc, "searching") from None

    plan, responses, reranker, rerank_window = await run(info)
    if config_may_be_stale(info, responses):
        fresh = await _async_index_info(es, index)
        if fresh != info:  # see hybrid_search
            plan, responses, reranker, rerank_window = await run(fresh)
    result = build_result(plan, responses)
    body = mget_body(plan, result)
    if body is not None:
        try:
            result = attach_sources(result, (await es.mget(docs=body["docs"])).body)
        except _client_errors() as exc:
            raise _translate(exc, "fetching the hits' sources") from None
    if isinstance(reranker, TextReranker):  # see hybrid_search
        result = await asyncio.to_thread(rerank_page, result, reranker, chosen, plan.config, rerank_window)
    return clock.stamp(result)
