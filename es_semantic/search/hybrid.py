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
import math
import threading
import time
import unicodedata
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..client import ServerInfo
from ..config import SemanticConfig, redact_url
from ..errors import ConfigError, ConnectionFailed, EsSemanticError
from ..mappings import config_from_mappings, lookup_property
from . import fusion

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch, Elasticsearch

    from ..embedding.embedder import Embedder

#: Longer queries are cut: BM25 gains nothing from thousands of terms, and a query is not a document.
MAX_QUERY_CHARS = 2048
#: How long the index configuration read from ``_meta`` is reused.
CONFIG_TTL_S = 30.0
#: Query embeddings kept per process.
QUERY_CACHE_SIZE = 2048

METHODS = ("rrf", "linear", "bm25", "knn")
#: ``min_score=FROM_INDEX`` (the default): the threshold stored in the index ``_meta``, if any.
FROM_INDEX = "index"
EXECUTIONS = ("auto", "server", "client")


@dataclass(frozen=True)
class Defaults:
    """The defaults ``hybrid_search`` uses; chosen on the SciFact *train* split (docs/defaults.md)."""

    method: str = "linear"
    window: int = 100
    rank_constant: int = 5
    rrf_weights: Mapping[str, float] = field(default_factory=lambda: {"bm25": 1.0, "knn": 1.0})
    linear_weights: Mapping[str, float] = field(default_factory=lambda: {"bm25": 0.5, "knn": 0.5})
    normalizer: str = "minmax"
    # Add a text field's ``.english`` multi-field (stemmed, stop words) to BM25 when the mapping has one.
    english_subfields: bool = True
    multi_match_type: str = "best_fields"


DEFAULTS = Defaults()


class SearchFailed(EsSemanticError):
    """Elasticsearch refused or failed the search request."""


def _translate(exc: Exception, doing: str) -> EsSemanticError:
    """A client exception as the library's own: transport trouble and rejected credentials are
    ``ConnectionFailed``, any other error answer is ``SearchFailed``."""
    from elasticsearch import ApiError, AuthenticationException, AuthorizationException

    if isinstance(exc, AuthenticationException):
        return ConnectionFailed(
            f"Elasticsearch rejected the credentials (401) while {doing}: check ES_API_KEY or ES_USERNAME/ES_PASSWORD"
        )
    if isinstance(exc, AuthorizationException):
        return ConnectionFailed(
            f"Elasticsearch refused access (403) while {doing}: the user or API key needs the 'read' and "
            "'view_index_metadata' privileges on the index"
        )
    if isinstance(exc, ApiError):
        return SearchFailed(f"Elasticsearch answered {exc.meta.status} while {doing}: {exc.message}")
    reason = redact_url(str(getattr(exc, "message", "") or exc))[:200]
    return ConnectionFailed(
        f"cannot reach Elasticsearch while {doing} ({type(exc).__name__}: {reason}); "
        "check the URL and that the cluster is running"
    )


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
    took_ms: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, item: int) -> Hit:
        return self.hits[item]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hits"] = [h.to_dict() for h in self.hits]
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


@dataclass(frozen=True)
class IndexInfo:
    """What a search needs from the index mapping: the stored config and the BM25 fields."""

    config: SemanticConfig
    text_subfields: Mapping[str, tuple[str, ...]]  # text field -> its multi-field names
    #: The concrete indices the mapping was read from (behind an alias): a hit from another one
    #: means the alias moved (blue/green) since, and this configuration may be stale.
    indices: frozenset[str] = frozenset()

    def default_fields(self, defaults: Defaults = DEFAULTS) -> list[str]:
        from ..languages import bm25_fields

        if not defaults.english_subfields:  # no language sub-fields
            return list(self.config.text_fields)
        return bm25_fields(self.config.text_fields, self.text_subfields, self.config.languages)


def parse_mapping_response(body: Mapping[str, Any], index: str) -> IndexInfo:
    """``GET <index>/_mapping`` -> IndexInfo; indices behind an alias must share one config."""
    mappings = {name: entry.get("mappings", {}) for name, entry in body.items()}
    config = config_from_mappings(mappings, index)
    # Sub-fields (e.g. ``.english``) that every index behind the alias has for each text field.
    subfields: dict[str, tuple[str, ...]] = {}
    for mapping in mappings.values():
        for text_field in config.text_fields:
            prop = lookup_property(mapping.get("properties") or {}, text_field) or {}
            subs = tuple(sorted((prop.get("fields") or {}).keys()))
            subfields[text_field] = subs if text_field not in subfields else tuple(
                s for s in subfields[text_field] if s in subs
            )
    return IndexInfo(config, subfields, frozenset(mappings))


_CONFIG_CACHE: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, IndexInfo]]] = weakref.WeakKeyDictionary()
_INFO_CACHE: weakref.WeakKeyDictionary[Any, ServerInfo] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _cached_info(es: Any, index: str) -> IndexInfo | None:
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
    method: str
    execution: str
    k: int
    from_: int
    window: int
    num_candidates: int
    fields: list[str]
    filter: Any
    rank_constant: int
    weights: dict[str, float]
    normalizer: str
    min_score: float | None
    explain: bool
    source: Any
    multi_match_type: str
    vector: list[float] | None = None

    @property
    def legs(self) -> tuple[str, ...]:
        return (self.method,) if self.method in ("bm25", "knn") else ("bm25", "knn")

    @property
    def source_spec(self) -> Any:
        """The ``_source`` to ask for: by default the document without es-semantic's own fields (a
        1024-float vector per hit is most of the bytes and no caller reads it); else as given."""
        if self.source is True:
            return {"excludes": [self.config.vector_field, self.config.info_field]}
        return self.source

    @property
    def fetches_sources(self) -> bool:
        """True when the page's ``_source`` comes from a separate ``_mget`` (see the module doc):
        the client path, and the server path with ``min_score`` (it reads the whole fused window)."""
        return self.source is not False and (self.execution == "client" or self.min_score is not None)


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
        "num_candidates": plan.num_candidates,
    }
    if plan.filter is not None:
        knn["filter"] = _filters(plan.filter)
    return knn


def _filters(filter: Any) -> list[Any]:
    return list(filter) if isinstance(filter, (list, tuple)) else [filter]


def _leg_body(plan: Plan, leg: str, source: Any = False) -> dict[str, Any]:
    body: dict[str, Any] = {"size": plan.window, "_source": source, "track_total_hits": False}
    if leg == "bm25":
        body["query"] = bm25_query(plan.text, plan.fields, plan.filter, plan.multi_match_type)
    else:
        body["knn"] = knn_clause(plan)
    return body


def retriever_body(plan: Plan) -> dict[str, Any]:
    """The server-side fusion request (``rrf`` or ``linear`` retriever)."""
    bm25 = {"standard": {"query": bm25_query(plan.text, plan.fields, plan.filter, plan.multi_match_type)}}
    knn_spec = knn_clause(plan)
    knn = {"knn": {k: v for k, v in knn_spec.items()}}
    if plan.method == "rrf":
        weighted = any(w != 1.0 for w in plan.weights.values())
        retrievers: list[Any] = (
            [{"retriever": bm25, "weight": plan.weights["bm25"]}, {"retriever": knn, "weight": plan.weights["knn"]}]
            if weighted else [bm25, knn]
        )
        retriever = {"rrf": {"retrievers": retrievers, "rank_window_size": plan.window,
                             "rank_constant": plan.rank_constant}}
    else:
        retriever = {"linear": {"retrievers": [
            {"retriever": bm25, "weight": plan.weights["bm25"], "normalizer": plan.normalizer},
            {"retriever": knn, "weight": plan.weights["knn"], "normalizer": plan.normalizer},
        ], "rank_window_size": plan.window}}
    if plan.min_score is not None:
        # The threshold is applied before paging: read the whole fused window (ids and scores
        # only), page it here, then fetch the page's sources.
        return {"retriever": retriever, "size": plan.window, "from": 0, "_source": False}
    return {"retriever": retriever, "size": plan.k, "from": plan.from_, "_source": plan.source_spec}


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


def _finite(value: Any, name: str) -> float:
    """``value`` as a finite float, or a ConfigError naming the option (nan and inf included)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}",
                          cli_message=f"{_flag(name)} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}",
                          cli_message=f"{_flag(name)} must be a finite number, got {value!r}")
    return number


def _flag(name: str) -> str:
    """The command-line flag of a ``hybrid_search`` option: ``num_candidates`` -> ``--num-candidates``."""
    return "--" + name.rstrip("_").replace("_", "-")


def _integer(value: Any, name: str) -> int:
    number = _finite(value, name)
    if number != int(number):
        raise ConfigError(f"{name} must be an integer, got {value!r}",
                          cli_message=f"{_flag(name)} must be a whole number, got {value!r}")
    return int(number)


def make_plan(
    text: str,
    info: IndexInfo,
    server: ServerInfo | None,
    *,
    index: str,
    k: int = 10,
    from_: int = 0,
    method: str | None = None,
    fields: Sequence[str] | None = None,
    filter: Any = None,
    num_candidates: int | None = None,
    window: int | None = None,
    rank_constant: float | None = None,
    bm25_weight: float | None = None,
    knn_weight: float | None = None,
    normalizer: str | None = None,
    min_score: float | str | None = FROM_INDEX,
    explain: bool = False,
    execution: str = "auto",
    source: Any = True,
    defaults: Defaults = DEFAULTS,
) -> Plan:
    """Validate the options and decide the request (pure; ``server`` None means client-side)."""
    from ..calibration import index_defaults

    if defaults is DEFAULTS:  # the index's calibrated fusion and BM25 analysis; a caller's own Defaults win
        defaults = index_defaults(info.config, defaults)
    method = method or defaults.method
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if execution not in EXECUTIONS:
        raise ConfigError(f"unknown execution {execution!r}; use one of {', '.join(EXECUTIONS)}")
    window = defaults.window if window is None else _integer(window, "window")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}", cli_message=f"--k must be 1 or more, got {k!r}")
    if isinstance(from_, bool) or not isinstance(from_, int) or from_ < 0:
        raise ConfigError(f"from_ must be an integer >= 0, got {from_!r}",
                          cli_message=f"--from must be 0 or more, got {from_!r}")
    if window < 1 or window > 10_000:
        raise ConfigError(f"window must be between 1 and 10000, got {window}",
                          cli_message=f"--window must be between 1 and 10000, got {window}")
    if from_ + k > window:
        why = "scores are computed over the window, so pages never change them"
        raise ConfigError(
            f"from_ + k = {from_ + k} is beyond the fusion window of {window}; pass window={from_ + k} or more ({why})",
            cli_message=(f"--from {from_} + --k {k} = {from_ + k} is beyond the fusion window of {window}; "
                         f"pass --window {from_ + k} or more ({why})"),
        )
    num_candidates = (min(10_000, max(100, 2 * window)) if num_candidates is None
                      else _integer(num_candidates, "num_candidates"))
    if num_candidates < 1:
        raise ConfigError(f"num_candidates must be a positive integer, got {num_candidates}",
                          cli_message=f"--num-candidates must be 1 or more, got {num_candidates}")
    if num_candidates < window:
        raise ConfigError(f"num_candidates ({num_candidates}) must be at least the window ({window})",
                          cli_message=f"--num-candidates {num_candidates} must be at least the window ({window}); "
                                      f"pass --num-candidates {window} or more, or a smaller --window")
    normalizer = normalizer or defaults.normalizer
    if normalizer not in fusion.NORMALIZERS:
        raise ConfigError(f"unknown normaliser {normalizer!r}; use one of {', '.join(fusion.NORMALIZERS)}")
    rank_constant = _finite(rank_constant, "rank_constant") if rank_constant is not None else defaults.rank_constant
    # Elasticsearch takes an integer >= 1.
    if float(rank_constant) != int(rank_constant) or int(rank_constant) < 1:
        raise ConfigError(f"rank_constant must be an integer >= 1, got {rank_constant}",
                          cli_message=f"--rank-constant must be a whole number >= 1, got {rank_constant:g}")
    rank_constant = int(rank_constant)
    base = defaults.rrf_weights if method == "rrf" else defaults.linear_weights
    weights = {"bm25": float(base.get("bm25", 1.0)) if bm25_weight is None else _finite(bm25_weight, "bm25_weight"),
               "knn": float(base.get("knn", 1.0)) if knn_weight is None else _finite(knn_weight, "knn_weight")}
    if any(w < 0 for w in weights.values()):
        raise ConfigError(f"weights must be >= 0, got {weights}",
                          cli_message=f"--bm25-weight and --knn-weight must be >= 0, got {weights['bm25']:g} and "
                                      f"{weights['knn']:g}")
    if isinstance(min_score, str):
        if min_score != FROM_INDEX:
            raise ConfigError(f"min_score must be a number, None or {FROM_INDEX!r}, got {min_score!r}")
        # The index's calibrated threshold; BM25 alone has no similarity to hold it against.
        min_score = info.config.min_score if method != "bm25" else None
    if min_score is not None:
        min_score = _finite(min_score, "min_score")
        if method == "bm25":
            raise ConfigError("min_score thresholds the kNN similarity; it needs method rrf, linear or knn",
                              cli_message="--min-score thresholds the kNN similarity, which --method bm25 has not; "
                                          "use --method rrf, linear or knn, or --min-score none")
    if isinstance(fields, str):  # one field, not its characters
        fields = [fields]
    fields = list(fields) if fields else info.default_fields(defaults)
    if filter is not None and not isinstance(filter, (dict, list, tuple)):
        raise ConfigError("filter must be a query DSL object (dict) or a list of them")
    if method in ("bm25", "knn") or execution == "client" or server is None:
        chosen = "client"
    else:
        reason = server_supports(server, method, weights, normalizer)
        if reason is not None and execution == "server":
            raise ConfigError(f"cannot fuse server-side: {reason}; use execution='client' (or 'auto')",
                              cli_message=f"cannot fuse server-side: {reason}; use --execution client (or auto)")
        chosen = "server" if reason is None else "client"
    if chosen == "server" and method == "linear" and normalizer == "zscore":  # pragma: no cover - guarded above
        chosen = "client"
    return Plan(index, text, info.config, method, chosen, k, from_, window, num_candidates, fields, filter,
                rank_constant, weights, normalizer, min_score, explain, source, defaults.multi_match_type)


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


def build_result(plan: Plan, responses: Sequence[Mapping[str, Any]], took_ms: float = 0.0) -> SearchResult:
    """Turn the ``_msearch`` responses into a ``SearchResult`` (pure)."""
    responses = list(responses)
    fused_response = _check(responses.pop(0), plan.method) if plan.execution == "server" else None
    leg_responses = {leg: _check(r, leg) for leg, r in zip(plan.legs, responses)}
    legs = {leg: _leg_results(r) for leg, r in leg_responses.items()}
    sources: dict[str, tuple[Any, str | None, str | None]] = {}
    for r in leg_responses.values():
        for h in r["hits"]["hits"]:
            sources.setdefault(h["_id"], (h.get("_source"), h.get("_index"), h.get("_routing")))
    # What the client-side formulas give; on the server path this provides sub-scores and explanations.
    if plan.method in ("bm25", "knn"):
        fused = [fusion.Fused(doc_id, score, {plan.method: rank}, {plan.method: score})
                 for rank, (doc_id, score) in enumerate(legs[plan.method], start=1)]
    else:
        fused = fusion.fuse(legs, plan.method, rank_constant=plan.rank_constant, weights=plan.weights,
                            normalizer=plan.normalizer, window=plan.window)
    by_id = {f.id: f for f in fused}

    ordered: list[tuple[str, float, Any, str | None, str | None]] = []
    if fused_response is not None:
        for h in fused_response["hits"]["hits"]:
            ordered.append((h["_id"], float(h.get("_score") or 0.0), h.get("_source"), h.get("_index"),
                            h.get("_routing")))
        server_paged = plan.min_score is None  # the server already cut the page
    else:
        for f in fused:
            src, idx, routing = sources.get(f.id, (None, None, None))
            ordered.append((f.id, f.score, src, idx, routing))
        server_paged = False

    knn_ranked = legs.get("knn", [])
    best_similarity = knn_similarity(knn_ranked[0][1], plan.config.similarity) if knn_ranked else None
    if plan.min_score is not None:
        # Only hits whose cosine similarity reaches the threshold count; BM25-only hits have none.
        threshold = plan.min_score
        ordered = [
            item for item in ordered
            if (s := (by_id[item[0]].scores.get("knn") if item[0] in by_id else None)) is not None
            and knn_similarity(s, plan.config.similarity) >= threshold
        ]
    page = ordered if server_paged else ordered[plan.from_: plan.from_ + plan.k]
    hits: list[Hit] = []
    for doc_id, score, src, idx, routing in page:
        f = by_id.get(doc_id) or fusion.Fused(doc_id, score, {}, {})
        knn_score = f.scores.get("knn")
        hit = Hit(
            id=doc_id, score=score, source=src, index=idx, routing=routing,
            bm25_score=f.scores.get("bm25"), bm25_rank=f.ranks.get("bm25"),
            knn_score=knn_score, knn_rank=f.ranks.get("knn"),
            similarity=knn_similarity(knn_score, plan.config.similarity) if knn_score is not None else None,
        )
        if plan.explain:
            hit.explanation = _explain(plan, f)
        hits.append(hit)
    no_match = plan.min_score is not None and not ordered
    params = {"fields": plan.fields, "num_candidates": plan.num_candidates, "weights": plan.weights,
              "rank_constant": plan.rank_constant, "normalizer": plan.normalizer, "k": plan.k, "from": plan.from_}
    return SearchResult(hits, plan.text, plan.method, plan.execution, plan.window, plan.min_score, no_match,
                        best_similarity, took_ms, params)


def _explain(plan: Plan, f: fusion.Fused) -> str:
    if plan.method in ("bm25", "knn"):
        rank = f.ranks.get(plan.method)
        return f"{plan.method} {f.score:.6g} [{plan.method} rank {rank}, no fusion]"
    text = fusion.explain(f, plan.method, rank_constant=plan.rank_constant, weights=plan.weights,
                          normalizer=plan.normalizer)
    if plan.method == "linear":
        text += f" (normalised over each leg's top {plan.window})"
    return text


# --------------------------------------------------------------------------- entry points


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
    k: int = 10,
    from_: int = 0,
    method: str | None = None,
    fields: Sequence[str] | None = None,
    filter: Any = None,
    num_candidates: int | None = None,
    window: int | None = None,
    rank_constant: float | None = None,
    bm25_weight: float | None = None,
    knn_weight: float | None = None,
    normalizer: str | None = None,
    min_score: float | str | None = FROM_INDEX,
    explain: bool = False,
    execution: str = "auto",
    source: Any = True,
    embedder: Embedder | None = None,
) -> SearchResult:
    """Search ``index`` with BM25 and kNN together and fuse the two rankings.

    The model, vector field, text fields and query instruction come from the index ``_meta``.

    >>> result = hybrid_search(es, "how do I reset my password", index="faq", k=3)
    >>> for hit in result:
    ...     print(hit.id, hit.score, hit.bm25_rank, hit.knn_rank, hit.source["question"])

    Arguments: ``method`` ``"linear"`` (default) | ``"rrf"`` | ``"bm25"`` | ``"knn"``;
    ``fields`` BM25 fields with boosts (``["question^2", "answer"]``, default: the text fields);
    ``filter`` a query DSL filter applied to both legs; ``window`` the per-leg fusion window
    (``rank_window_size``); ``rank_constant`` for rrf; ``bm25_weight``/``knn_weight`` per leg;
    ``normalizer`` ``minmax`` | ``l2_norm`` | ``zscore`` | ``none`` for linear; ``min_score`` a cosine
    similarity threshold (see the module doc; ``result.no_match``): by default the one stored in the
    index (``eval --calibrate --save``), None for none; ``explain`` puts the formula on
    every hit; ``execution`` ``auto`` | ``server`` | ``client``; ``source`` ``_source`` filtering;
    ``embedder`` your own ``Embedder`` (default: one per model, shared in the process).
    """
    started = time.perf_counter()
    text = clean_query(query)
    info = index_info(es, index)
    server = _server_info(es) if execution != "client" else None
    options = {"k": k, "from_": from_, "method": method, "fields": fields, "filter": filter,
               "num_candidates": num_candidates, "window": window, "rank_constant": rank_constant,
               "bm25_weight": bm25_weight, "knn_weight": knn_weight, "normalizer": normalizer,
               "min_score": min_score, "explain": explain, "execution": execution, "source": source}

    def run(info: IndexInfo) -> tuple[Plan, list[Mapping[str, Any]]]:
        plan = make_plan(text, info, server, index=index, **options)
        if "knn" in plan.legs:
            plan = replace(plan, vector=embed_query(embedder or get_embedder(info.config), text))
        return plan, _msearch(es, plan)

    plan, responses = run(info)
    if config_may_be_stale(info, responses):
        fresh = index_info(es, index, fresh=True)
        if fresh != info:  # the configuration changed under us: search again with the new one
            plan, responses = run(fresh)
    result = _fetch_sources(es, plan, build_result(plan, responses))
    result.took_ms = (time.perf_counter() - started) * 1000
    return result


def fetch_legs(es: Elasticsearch, query: str, *, index: str, window: int = 100, embedder: Embedder | None = None,
               legs: Sequence[str] = ("bm25", "knn"), **options: Any) -> dict[str, list[tuple[str, float]]]:
    """The legs' windows as ``(id, score)`` lists, without sources (used by the evaluation).

    ``legs=("bm25",)`` runs BM25 alone (no model needed)."""
    return fetch_legs_batch(es, [query], index=index, window=window, embedder=embedder, legs=legs, **options)[0]


def fetch_legs_batch(
    es: Elasticsearch,
    queries: Sequence[str],
    *,
    index: str,
    window: int = 100,
    embedder: Embedder | None = None,
    legs: Sequence[str] = ("bm25", "knn"),
    vectors: Mapping[str, Sequence[float]] | None = None,
    **options: Any,
) -> list[dict[str, list[tuple[str, float]]]]:
    """:func:`fetch_legs` for several queries in ONE ``_msearch`` (each query's legs, in order).

    ``vectors`` maps cleaned query texts to vectors already computed (e.g. by
    :func:`prefill_query_cache`); other queries are embedded here."""
    if not queries:
        return []
    info = index_info(es, index)
    method = legs[0] if len(legs) == 1 else "rrf"
    plans = []
    for query in queries:
        text = clean_query(query)
        plan = make_plan(text, info, None, index=index, k=1, window=window, method=method, source=False,
                         execution="client", min_score=None, **options)
        if "knn" in plan.legs:
            vector = (vectors or {}).get(text)
            if vector is None:
                embedder = embedder or get_embedder(info.config)
                vector = embed_query(embedder, text)
            plan = replace(plan, vector=[float(x) for x in vector])
        plans.append(plan)
    searches = [part for plan in plans for part in msearch_body(plan)]
    try:
        responses = list(es.msearch(searches=searches).body["responses"])
    except _client_errors() as exc:
        raise _translate(exc, "searching") from None
    results = []
    at = 0
    for plan in plans:
        mine = responses[at: at + len(plan.legs)]
        at += len(plan.legs)
        results.append({leg: _leg_results(_check(r, leg)) for leg, r in zip(plan.legs, mine)})
    return results


async def async_hybrid_search(
    es: AsyncElasticsearch,
    query: str,
    *,
    index: str,
    embedder: Embedder | None = None,
    execution: str = "auto",
    **options: Any,
) -> SearchResult:
    """:func:`hybrid_search` for ``AsyncElasticsearch``: the same options and result.

    The query is embedded in a worker thread so the event loop keeps running.
    """
    from elasticsearch import NotFoundError

    async def read_info() -> IndexInfo:
        try:
            body = (await es.indices.get_mapping(index=index)).body
        except NotFoundError:
            body = {}
        except _client_errors() as exc:
            raise _translate(exc, f"reading the mapping of {index!r}") from None
        fresh = parse_mapping_response(body, index)
        _store_info(es, index, fresh)
        return fresh

    started = time.perf_counter()
    text = clean_query(query)
    info = _cached_info(es, index) or await read_info()
    server = None
    if execution != "client":
        with _LOCK:
            server = _INFO_CACHE.get(es.transport)
        if server is None:
            try:
                server = ServerInfo.from_info((await es.info()).body)
            except _client_errors() as exc:
                raise _translate(exc, "reading the server version") from None
            with _LOCK:
                _INFO_CACHE[es.transport] = server

    async def run(info: IndexInfo) -> tuple[Plan, list[Mapping[str, Any]]]:
        plan = make_plan(text, info, server, index=index, execution=execution, **options)
        if "knn" in plan.legs:
            model = embedder or await asyncio.to_thread(get_embedder, info.config)
            plan = replace(plan, vector=await asyncio.to_thread(embed_query, model, text))
        try:
            response = await es.msearch(searches=msearch_body(plan))
        except _client_errors() as exc:
            raise _translate(exc, "searching") from None
        return plan, list(response.body["responses"])

    plan, responses = await run(info)
    if config_may_be_stale(info, responses):
        fresh = await read_info()
        if fresh != info:  # see hybrid_search
            plan, responses = await run(fresh)
    try:
        result = build_result(plan, responses)
        body = mget_body(plan, result)
        if body is not None:
            result = attach_sources(result, (await es.mget(docs=body["docs"])).body)
    except _client_errors() as exc:
        raise _translate(exc, "searching") from None
    result.took_ms = (time.perf_counter() - started) * 1000
    return result
