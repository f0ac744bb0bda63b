"""Query DSL evaluation over one index snapshot, vectorised with numpy.

Every query evaluates to a ``Matches``: a boolean mask over the snapshot's documents and a
float32 score array (meaningful where the mask is set). Derived per-field structures (analysed
postings, norms, parsed values) are built once per snapshot and memoised in ``snapshot.cache``,
so a query over 10k documents costs a few array operations.

Scoring follows Lucene: term and match clauses score with BM25 (:mod:`bm25`), boolean clauses
sum their sub-scores in double and round to float, ``dis_max`` takes the best score plus
``tie_breaker`` times the others, and filters (term on numbers, range, exists, ids, prefix,
terms) are constant-score.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from es_semantic.testing import bm25
from es_semantic.testing.analysis import (
    POSITION_INCREMENT_GAP,
    Analyzer,
    get_analyzer,
    get_normalizer,
)
from es_semantic.testing.errors import EsError, unsupported
from es_semantic.testing.fields import (
    DATE_TYPES,
    KEYWORD_TYPES,
    NUMERIC_TYPES,
    TEXT_TYPES,
    FieldInfo,
    all_field_names,
    date_field_format,
    extract_values,
    field_info,
    parse_boolean,
    parse_date_nanos,
    parse_number,
)
from es_semantic.testing.nested import nested_paths, nested_scope
from es_semantic.testing.snapshot import IndexSnapshot

_CACHE_KEY = "es_semantic.search_engine"


# --- per-snapshot derived data ---------------------------------------------------------------


@dataclass
class TextPostings:
    """Inverted index of one analysed field."""

    postings: dict[str, tuple[np.ndarray, np.ndarray]]  # term -> (doc indices int64, tf float32)
    positions: dict[str, dict[int, list[int]]]  # term -> doc -> positions
    norms: np.ndarray  # uint8 per doc (Lucene's one-byte length)
    has_field: np.ndarray  # bool per doc
    doc_count: int
    sum_total_term_freq: int

    def cache(self, k1: float = bm25.K1, b: float = bm25.B) -> np.ndarray:
        return bm25.norm_cache(bm25.avg_field_length(self.sum_total_term_freq, self.doc_count), k1, b)


@dataclass
class ValueColumn:
    """Parsed values of a keyword/numeric/date/boolean field, per document."""

    values: list[list[Any]]  # per doc, parsed values (str for keyword, int/float for numbers)
    has_field: np.ndarray
    index: dict[Any, np.ndarray] = field(default_factory=dict)  # value -> doc indices
    total_values: int = 0


class ShardData:
    """Memoised derived structures of one snapshot."""

    def __init__(self, snapshot: IndexSnapshot) -> None:
        self.snapshot = snapshot
        self.docs = snapshot.docs
        self.n = len(snapshot.docs)
        self.ids = [d.id for d in snapshot.docs]
        # positions of each _id: with custom routing one _id can be on several shards of an index
        self.id_positions: dict[str, list[int]] = {}
        for i, d in enumerate(snapshot.docs):
            self.id_positions.setdefault(d.id, []).append(i)
        self.mappings = snapshot.mappings or {}
        self.settings = snapshot.settings or {}
        self._text: dict[tuple[str, str], TextPostings] = {}
        self._columns: dict[str, ValueColumn] = {}
        self.vectors: dict[str, Any] = {}  # memo for vectors.py
        self.sort_columns: dict[Any, Any] = {}  # memo for search_engine sorting
        # The nested path these documents are the objects of (None: the top-level documents).
        self.nested_root: str | None = None
        self.nested_paths = nested_paths(self.mappings)
        self._fields: dict[str, FieldInfo] = {}

    def field(self, name: str) -> FieldInfo:
        """The field as these documents see it: a field under another nested path than theirs is
        not in them (Elasticsearch indexes nested objects as separate documents)."""
        info = self._fields.get(name)
        if info is None:
            info = field_info(self.mappings, name)
            if info.mapped and self.nested_paths and nested_scope(self.nested_paths, name) != self.nested_root:
                info = FieldInfo(name, info.source_path, None, {})
            self._fields[name] = info
        return info

    def index_setting(self, key: str, default: Any = None) -> Any:
        idx = self.settings.get("index", self.settings)
        if key in idx:
            return idx[key]
        # nested form: {"max_result_window": ...} or dotted {"query.parse...": ...}
        node: Any = idx
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def max_result_window(self) -> int:
        return int(self.index_setting("max_result_window", 10000))

    # analysers
    def index_analyzer(self, info: FieldInfo) -> Analyzer:
        name = info.mapping.get("analyzer")
        if name is None:
            name = "default" if self._has_custom("default") else "standard"
        return get_analyzer(name, self.settings)

    def search_analyzer(self, info: FieldInfo) -> Analyzer:
        name = info.mapping.get("search_analyzer") or info.mapping.get("analyzer")
        if name is None:
            if self._has_custom("default_search"):
                name = "default_search"
            elif self._has_custom("default"):
                name = "default"
            else:
                name = "standard"
        return get_analyzer(name, self.settings)

    def _has_custom(self, name: str) -> bool:
        idx = self.settings.get("index", self.settings)
        return name in ((idx.get("analysis") or {}).get("analyzer") or {})

    def values(self, doc: Any, info: FieldInfo) -> list[Any]:
        """The values ``doc`` indexed for the field: none where the field was added after it was written."""
        if self.snapshot.fields_since and self.snapshot.indexed_before(info.name, doc):
            return []
        return extract_values(doc.source, info.source_path)

    def text(self, info: FieldInfo) -> TextPostings:
        key = (info.name, info.mapping.get("analyzer", ""))
        cached = self._text.get(key)
        if cached is None:
            cached = self._build_text(info)
            self._text[key] = cached
        return cached

    def _build_text(self, info: FieldInfo) -> TextPostings:
        analyzer = self.index_analyzer(info)
        positions: dict[str, dict[int, list[int]]] = {}
        norms = np.zeros(self.n, dtype=np.uint8)
        has = np.zeros(self.n, dtype=bool)
        doc_count = 0
        sum_ttf = 0
        for i, doc in enumerate(self.docs):
            values = self.values(doc, info)
            if not values:
                continue
            length = 0
            start = 0
            local: dict[str, list[int]] = {}
            for v in values:
                if isinstance(v, (dict, list)):
                    continue
                toks = analyzer.term_positions(_as_text(v), start)
                for term, pos in toks:
                    plist = local.get(term)
                    if plist is None:
                        local[term] = [pos]
                    else:
                        plist.append(pos)
                length += len(toks)
                last = toks[-1][1] if toks else start - 1
                start = last + 1 + POSITION_INCREMENT_GAP
            for term, plist in local.items():
                per_term = positions.get(term)
                if per_term is None:
                    positions[term] = {i: plist}
                else:
                    per_term[i] = plist
            if length:
                has[i] = True
                doc_count += 1
                sum_ttf += length
                # without norms Lucene scores every document as if its length were 1
                norms[i] = bm25.int_to_byte4(length) if info.mapping.get("norms", True) is not False else 1
        postings = {}
        for term, per_doc in positions.items():
            docs = np.fromiter(per_doc.keys(), dtype=np.int64, count=len(per_doc))
            tfs = np.fromiter((len(p) for p in per_doc.values()), dtype=np.float32, count=len(per_doc))
            postings[term] = (docs, tfs)
        return TextPostings(postings, positions, norms, has, doc_count, sum_ttf)

    def similarity(self, info: FieldInfo) -> tuple[str, float, float]:
        """("BM25", k1, b) or ("boolean", 0, 0) for a field: its ``similarity`` or the index default."""
        idx = self.settings.get("index", self.settings)
        custom = idx.get("similarity") or {}
        name = info.mapping.get("similarity") or ("default" if "default" in custom else "BM25")
        if name == "BM25":
            return ("BM25", bm25.K1, bm25.B)
        if name == "boolean":
            return ("boolean", 0.0, 0.0)
        spec = custom.get(name)
        if spec is None:
            raise EsError(
                400, "illegal_argument_exception", f"Unknown Similarity type [{name}] for field [{info.name}]"
            )
        kind = spec.get("type", "BM25")
        if kind == "boolean":
            return ("boolean", 0.0, 0.0)
        if kind != "BM25":
            raise unsupported(f"similarity type [{kind}]")
        return ("BM25", float(spec.get("k1", bm25.K1)), float(spec.get("b", bm25.B)))

    def normalize_keyword(self, info: FieldInfo, value: str) -> str:
        name = info.mapping.get("normalizer") if info.type in KEYWORD_TYPES else None
        return get_normalizer(name, self.settings)(value) if name else value

    def column(self, info: FieldInfo) -> ValueColumn:
        cached = self._columns.get(info.name)
        if cached is None:
            cached = self._build_column(info)
            self._columns[info.name] = cached
        return cached

    def _build_column(self, info: FieldInfo) -> ValueColumn:
        ftype = info.type
        values: list[list[Any]] = []
        has = np.zeros(self.n, dtype=bool)
        index: dict[Any, list[int]] = {}
        total = 0
        ignore_above = info.mapping.get("ignore_above")
        for i, doc in enumerate(self.docs):
            parsed: list[Any] = []
            for v in self.values(doc, info):
                if isinstance(v, dict):
                    continue
                try:
                    pv = parse_field_value(info, v)
                except (ValueError, TypeError):
                    continue  # ignore_malformed-like: unparseable values are not indexed
                if ftype in KEYWORD_TYPES and ignore_above is not None and len(pv) > int(ignore_above):
                    continue
                if ftype in KEYWORD_TYPES and info.mapping.get("normalizer"):
                    pv = self.normalize_keyword(info, pv)
                parsed.append(pv)
            values.append(parsed)
            if parsed:
                has[i] = True
                total += len(parsed)
                for pv in set(parsed):
                    index.setdefault(pv, []).append(i)
        return ValueColumn(values, has, {k: np.asarray(v, dtype=np.int64) for k, v in index.items()}, total)


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def parse_field_value(info: FieldInfo, v: Any) -> Any:
    """Parse one source value as the field's type indexes it (keyword -> str, date -> nanos...)."""
    ftype = info.type
    if ftype in NUMERIC_TYPES:
        return parse_number(v, ftype)
    if ftype in DATE_TYPES:
        return parse_date_nanos(v, date_field_format(info))
    if ftype == "boolean":
        return parse_boolean(v)
    if isinstance(v, (list, dict)):
        raise TypeError("not a leaf value")
    return _as_text(v)


def shard_data(snapshot: IndexSnapshot) -> ShardData:
    data = snapshot.cache.get(_CACHE_KEY)
    if data is None:
        data = ShardData(snapshot)
        snapshot.cache[_CACHE_KEY] = data
    return data


# --- evaluation ----------------------------------------------------------------------------


@dataclass
class Matches:
    mask: np.ndarray  # bool
    scores: np.ndarray  # float32


class NamedMatches(dict):
    """Named query (``_name``) -> the documents it matched; ``scores`` holds each one's score on them
    (``include_named_queries_score``)."""

    def __init__(self) -> None:
        super().__init__()
        self.scores: dict[str, np.ndarray] = {}
        self.inner: dict[str, Any] = {}  # inner_hits name -> nested.InnerHits

    def add(self, name: str, result: Matches) -> None:
        prev = self.get(name)
        self[name] = result.mask.copy() if prev is None else (prev | result.mask)
        earlier = self.scores.get(name)
        scores = result.scores.astype(np.float32)
        self.scores[name] = scores if earlier is None else np.where(result.mask, scores, earlier)

    def clear(self) -> None:
        super().clear()
        self.scores.clear()
        self.inner.clear()


@dataclass
class Context:
    data: ShardData
    named: NamedMatches = field(default_factory=NamedMatches)
    size: int = 10  # the request size (knn query's default k)
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    index_name: str = ""
    # Inside a nested query: the parents' context and each of these documents' parent.
    parent: tuple[Context, np.ndarray] | None = None
    # A kNN over nested vectors matches every child of the parents it selects (their inner hits),
    # not only the best one.
    expand_children: bool = False
    # kNN pre-filter: the alias filter and the filter clauses of enclosing bool queries
    prefilter: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.data.n

    def none(self) -> Matches:
        return Matches(np.zeros(self.n, dtype=bool), np.zeros(self.n, dtype=np.float32))

    def const(self, mask: np.ndarray, boost: float = 1.0) -> Matches:
        return Matches(mask, np.where(mask, np.float32(boost), np.float32(0)).astype(np.float32))


def parsing_error(reason: str) -> EsError:
    return EsError(400, "parsing_exception", reason)


def shard_error(ctx: Context, reason: str) -> EsError:
    return EsError(400, "query_shard_exception", reason, index=ctx.index_name)


def illegal(reason: str) -> EsError:
    return EsError(400, "illegal_argument_exception", reason)


def evaluate(query: dict | None, ctx: Context) -> Matches:
    """Evaluate one query clause (``None`` means match_all)."""
    if query is None:
        return ctx.const(np.ones(ctx.n, dtype=bool))
    if not isinstance(query, dict) or len(query) != 1:
        if isinstance(query, dict) and not query:
            return ctx.const(np.ones(ctx.n, dtype=bool))
        raise parsing_error(
            "[_na] query malformed, must start with start_object"
            if not isinstance(query, dict)
            else f"[{next(iter(query))}] malformed query, expected [END_OBJECT] but found [FIELD_NAME]"
        )
    ((qtype, body),) = query.items()
    handler = _HANDLERS.get(qtype)
    if handler is None:
        raise parsing_error(f"unknown query [{qtype}]")
    _check_options(qtype, body)
    result = handler(body, ctx)
    name = body.get("_name") if isinstance(body, dict) else None
    if name is None and isinstance(body, dict) and len(body) == 1 and qtype in _FIELD_QUERIES:
        inner = next(iter(body.values()))
        if isinstance(inner, dict):
            name = inner.get("_name")
    if name is not None:
        ctx.named.add(name, result)
    return result


_COMMON = {"boost", "_name"}
_MATCH_OPTIONS = {"query", "operator", "minimum_should_match", "analyzer", "fuzziness", "prefix_length",
                  "max_expansions", "fuzzy_transpositions", "fuzzy_rewrite", "lenient", "zero_terms_query",
                  "auto_generate_synonyms_phrase_query"}
#: The options each query takes (for a field query: inside ``{field: {...}}``), as Elasticsearch's
#: parsers know them; any other is Elasticsearch's "[type] query does not support [key]".
_QUERY_OPTIONS: dict[str, set[str]] = {
    "match_all": _COMMON, "match_none": _COMMON,
    "term": _COMMON | {"value", "term", "case_insensitive"},
    "match": _COMMON | _MATCH_OPTIONS,
    "match_phrase": _COMMON | {"query", "analyzer", "slop", "zero_terms_query"},
    "match_phrase_prefix": _COMMON | {"query", "analyzer", "slop", "max_expansions", "zero_terms_query"},
    "prefix": _COMMON | {"value", "rewrite", "case_insensitive"},
    "wildcard": _COMMON | {"value", "wildcard", "rewrite", "case_insensitive"},
    "regexp": _COMMON | {"value", "flags", "flags_value", "max_determinized_states", "rewrite", "case_insensitive"},
    "fuzzy": _COMMON | {"value", "fuzziness", "prefix_length", "max_expansions", "transpositions", "rewrite"},
    "range": _COMMON | {"gt", "gte", "lt", "lte", "from", "to", "include_lower", "include_upper", "format",
                        "time_zone", "relation"},
    "exists": _COMMON | {"field"},
    "ids": _COMMON | {"values"},
    "multi_match": _COMMON | _MATCH_OPTIONS | {"fields", "type", "tie_breaker", "slop"},
    "constant_score": _COMMON | {"filter"},
    "dis_max": _COMMON | {"queries", "tie_breaker"},
    "boosting": _COMMON | {"positive", "negative", "negative_boost"},
    "knn": _COMMON | {"field", "query_vector", "query_vector_builder", "k", "num_candidates", "similarity",
                      "filter", "rescore_vector", "visit_percentage"},
    "nested": _COMMON | {"path", "query", "score_mode", "ignore_unmapped", "inner_hits"},
    "script_score": _COMMON | {"query", "script", "min_score"},
    "function_score": _COMMON | {"query", "functions", "boost_mode", "score_mode", "max_boost", "min_score",
                                 "script_score", "field_value_factor", "weight", "random_score", "gauss", "linear",
                                 "exp"},
    "simple_query_string": _COMMON | {"query", "fields", "default_operator", "analyzer", "flags", "lenient",
                                      "minimum_should_match", "quote_field_suffix", "analyze_wildcard",
                                      "auto_generate_synonyms_phrase_query", "fuzzy_prefix_length",
                                      "fuzzy_max_expansions", "fuzzy_transpositions"},
}


#: Options Elasticsearch knows whose effect the server does not model, with the values that ask for
#: what it does anyway.
_UNMODELLED_OPTIONS: dict[tuple[str, str], tuple[Any, ...]] = {
    ("range", "time_zone"): ("Z", "UTC", "+00:00", "00:00"),
    ("range", "relation"): ("intersects", "INTERSECTS"),
}


def _check_options(qtype: str, body: Any) -> None:
    allowed = _QUERY_OPTIONS.get(qtype)
    if allowed is None or not isinstance(body, dict):
        return
    if qtype in _FIELD_QUERIES:
        options = [(k, o) for v in body.values() if isinstance(v, dict) for k, o in v.items()]
    else:
        options = list(body.items())
    for key, value in options:
        if key not in allowed:
            raise parsing_error(f"[{qtype}] query does not support [{key}]")
        neutral = _UNMODELLED_OPTIONS.get((qtype, key))
        if neutral is not None and value not in neutral:
            raise unsupported(f"[{key}] in a [{qtype}] query")


_FIELD_QUERIES = {
    "term",
    "match",
    "match_phrase",
    "prefix",
    "range",
    "wildcard",
    "match_phrase_prefix",
    "fuzzy",
    "regexp",
}


def _field_body(qtype: str, body: Any, value_key: str = "value") -> tuple[str, dict]:
    """Split ``{field: value}`` / ``{field: {value_key: ..., ...}}`` (plus top-level options)."""
    if not isinstance(body, dict):
        raise parsing_error(f"[{qtype}] query malformed, no start_object after query name")
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) != 1:
        if not fields:
            raise parsing_error(
                f"[{qtype}] query doesn't support multiple fields, found none"
                if qtype != "range"
                else "[range] query malformed, no field"
            )
        raise parsing_error(f"[{qtype}] query doesn't support multiple fields, found [{fields[0]}] and [{fields[1]}]")
    name = fields[0]
    spec = body[name]
    if isinstance(spec, dict):
        opts = dict(spec)
    else:
        opts = {value_key: spec}
    for k in ("boost", "_name"):
        if k in body and k not in opts:
            opts[k] = body[k]
    return name, opts


def _boost(opts: dict) -> float:
    return float(opts.get("boost", 1.0))


def _expand_fields(ctx: Context, pattern: str) -> list[str]:
    if "*" not in pattern:
        return [pattern]
    return [f for f in all_field_names(ctx.data.mappings) if fnmatch.fnmatchcase(f, pattern)]


# term-level scoring -------------------------------------------------------------------------


def _bm25_terms(ctx: Context, info: FieldInfo, terms: list[str], boost: float) -> list[Matches]:
    """One BM25 ``Matches`` per term (TermQuery semantics on an analysed field)."""
    tp = ctx.data.text(info)
    kind, k1, b = ctx.data.similarity(info)
    cache = tp.cache(k1, b) if kind == "BM25" else None
    out = []
    for term in terms:
        mask = np.zeros(ctx.n, dtype=bool)
        scores = np.zeros(ctx.n, dtype=np.float32)
        post = tp.postings.get(term)
        if post is not None:
            docs, tfs = post
            mask[docs] = True
            if cache is None:  # boolean similarity: the boost for every matching term
                scores[docs] = np.float32(boost)
            else:
                weight = bm25.term_weight(boost, len(docs), tp.doc_count, k1=k1)
                scores[docs] = bm25.score(tfs, tp.norms[docs], weight, cache)
        out.append(Matches(mask, scores))
    return out


def _keyword_term(ctx: Context, info: FieldInfo, value: str, boost: float, case_insensitive: bool = False) -> Matches:
    col = ctx.data.column(info)
    value = ctx.data.normalize_keyword(info, value)
    if case_insensitive:
        low = value.lower()
        hits = [docs for k, docs in col.index.items() if isinstance(k, str) and k.lower() == low]
        docs = np.unique(np.concatenate(hits)) if hits else np.zeros(0, dtype=np.int64)
    else:
        docs = col.index.get(value, np.zeros(0, dtype=np.int64))
    mask = np.zeros(ctx.n, dtype=bool)
    mask[docs] = True
    if case_insensitive:
        return ctx.const(mask, boost)  # an automaton query: constant score
    # Keyword fields index docs only, without norms: BM25 with tf 1 and dl 1,
    # avgdl = values / docs with the field.
    doc_count = int(col.has_field.sum())
    scores = np.zeros(ctx.n, dtype=np.float32)
    if len(docs):
        cache = bm25.norm_cache(bm25.avg_field_length(col.total_values, doc_count))
        weight = bm25.term_weight(boost, len(docs), doc_count)
        scores[docs] = bm25.score(
            np.ones(len(docs), dtype=np.float32), np.ones(len(docs), dtype=np.int64), weight, cache
        )
    return Matches(mask, scores)


def _value_equals(ctx: Context, info: FieldInfo, value: Any, boost: float) -> Matches:
    col = ctx.data.column(info)
    try:
        target = parse_field_value(info, value)
    except (ValueError, TypeError) as exc:
        raise shard_error(ctx, f"failed to create query: {_parse_failure(info, value, exc)}") from None
    docs = col.index.get(target, np.zeros(0, dtype=np.int64))
    mask = np.zeros(ctx.n, dtype=bool)
    mask[docs] = True
    return ctx.const(mask, boost)


def _parse_failure(info: FieldInfo, value: Any, exc: Exception) -> str:
    if info.type in DATE_TYPES:
        return f"failed to parse date field [{value}] with format [{date_field_format(info)}]"
    if info.type in NUMERIC_TYPES:
        return f'For input string: "{value}"'
    return str(exc)


def term_matches(ctx: Context, name: str, value: Any, boost: float, case_insensitive: bool = False) -> Matches:
    info = ctx.data.field(name)
    if not info.mapped:
        if name == "_id":
            return _ids(ctx, [value], boost)
        if name == "_index":
            return ctx.const(np.full(ctx.n, _as_text(value) == ctx.data.snapshot.index_name), boost)
        if name == "_routing":
            text = _as_text(value)
            if case_insensitive:
                return _routing_matches(ctx, lambda r: r.lower() == text.lower(), boost)
            return _routing_matches(ctx, lambda r: r == text, boost)
        return ctx.none()
    if isinstance(value, (dict, list)):
        raise parsing_error(
            "[term] query does not support array of values"
            if isinstance(value, list)
            else "[term] query malformed, no start_object after query name"
        )
    if info.type in TEXT_TYPES:
        text = _as_text(value)
        if case_insensitive:
            tp = ctx.data.text(info)
            low = text.lower()
            mask = np.zeros(ctx.n, dtype=bool)
            for term, (docs, _) in tp.postings.items():
                if term.lower() == low:
                    mask[docs] = True
            return ctx.const(mask, boost)
        return _bm25_terms(ctx, info, [text], boost)[0]
    if info.type in KEYWORD_TYPES:
        return _keyword_term(ctx, info, _as_text(value), boost, case_insensitive)
    if info.type in NUMERIC_TYPES or info.type in DATE_TYPES or info.type == "boolean":
        return _value_equals(ctx, info, value, boost)
    if info.type == "dense_vector":
        raise shard_error(ctx, "failed to create query: [dense_vector] fields do not support term queries")
    return ctx.none()


def _q_term(body: Any, ctx: Context) -> Matches:
    name, opts = _field_body("term", body)
    if "value" not in opts:
        if "term" in opts:
            opts["value"] = opts["term"]
        else:
            raise parsing_error("[term] query does not support [" + next(iter(opts), "") + "]")
    return term_matches(ctx, name, opts["value"], _boost(opts), bool(opts.get("case_insensitive", False)))


def _q_terms(body: Any, ctx: Context) -> Matches:
    if not isinstance(body, dict):
        raise parsing_error("[terms] query malformed")
    boost = float(body.get("boost", 1.0))
    fields = [k for k in body if k not in ("boost", "_name")]
    if len(fields) != 1:
        raise parsing_error("[terms] query does not support multiple fields")
    name = fields[0]
    values = body[name]
    if isinstance(values, dict) and {"index", "id", "path"} & set(values):
        raise unsupported("the terms lookup form of a [terms] query")
    if not isinstance(values, list):
        raise parsing_error(f"[terms] query does not support [{name}]")
    limit = int(ctx.data.index_setting("max_terms_count", 65536))
    if len(values) > limit:
        raise illegal(f"The number of terms [{len(values)}] used in the Terms Query request has exceeded the allowed "
                      f"maximum of [{limit}]. This maximum can be set by changing the [index.max_terms_count] index "
                      "level setting.")
    mask = np.zeros(ctx.n, dtype=bool)
    for v in values:
        mask |= term_matches(ctx, name, v, 1.0).mask
    return ctx.const(mask, boost)


def _ids(ctx: Context, values: list[Any], boost: float) -> Matches:
    mask = np.zeros(ctx.n, dtype=bool)
    for v in values:
        positions = ctx.data.id_positions.get(_as_text(v))
        if positions:
            mask[positions] = True
    return ctx.const(mask, boost)


def _routing_matches(ctx: Context, pred: Callable[[str], bool], boost: float) -> Matches:
    """The ``_routing`` metadata field (indexed as a keyword): documents with custom routing only."""
    mask = np.fromiter((d.routing is not None and pred(d.routing) for d in ctx.data.docs), dtype=bool,
                       count=ctx.n)
    return ctx.const(mask, boost)


def _q_ids(body: Any, ctx: Context) -> Matches:
    values = body.get("values", []) if isinstance(body, dict) else []
    limit = ctx.data.max_result_window()
    if len(values) > limit:
        raise shard_error(
            ctx, f"failed to create query: Too many ids specified, allowed max result window is [{limit}]"
        )
    return _ids(ctx, values, float(body.get("boost", 1.0)))


def _q_match_all(body: Any, ctx: Context) -> Matches:
    return ctx.const(np.ones(ctx.n, dtype=bool), float((body or {}).get("boost", 1.0)))


def _q_match_none(body: Any, ctx: Context) -> Matches:
    return ctx.none()


# minimum_should_match ------------------------------------------------------------------------


def min_should_match(spec: Any, optional: int) -> int:
    """Elasticsearch's ``Queries.calculateMinShouldMatch``."""
    if spec is None:
        return 0
    text = str(spec).strip()
    if "<" in text:
        # conditional specs: "3<90%" -> if optional > 3 apply 90% else all required
        result = optional
        for part in text.split():
            upper, _, value = part.partition("<")
            if optional > int(upper):
                result = min_should_match(value, optional)
        return result
    if text.endswith("%"):
        pct = float(text[:-1])
        calc = int(optional * pct / 100)  # truncates towards zero, as Java's (int) cast
        result = optional + calc if pct < 0 else calc
    else:
        calc = int(text)
        result = optional + calc if calc < 0 else calc
    return max(0, min(result, optional)) if result <= optional else result


def _combine_should(clauses: list[Matches], msm: int, n: int) -> Matches:
    if not clauses:
        return Matches(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.float32))
    count = np.zeros(n, dtype=np.int32)
    total = np.zeros(n, dtype=np.float64)
    for c in clauses:
        count += c.mask
        total += np.where(c.mask, c.scores, 0).astype(np.float64)
    mask = count >= max(msm, 1)
    return Matches(mask, total.astype(np.float32))


def _sum_all(clauses: list[Matches], n: int) -> Matches:
    mask = np.ones(n, dtype=bool)
    total = np.zeros(n, dtype=np.float64)
    for c in clauses:
        mask &= c.mask
        total += np.where(c.mask, c.scores, 0).astype(np.float64)
    return Matches(mask, total.astype(np.float32))


# full-text ---------------------------------------------------------------------------------


def _match_field(ctx: Context, name: str, text: Any, opts: dict, boost: float) -> Matches:
    """A match query on one field: analysed terms combined with the operator / msm."""
    info = ctx.data.field(name)
    if not info.mapped:
        if name in ("_id", "_index", "_routing"):
            return term_matches(ctx, name, text, boost)
        return ctx.none()
    if opts.get("fuzziness") not in (None, 0, "0"):
        raise unsupported("[match] fuzziness")
    if info.type in TEXT_TYPES:
        analyzer = (
            get_analyzer(opts["analyzer"], ctx.data.settings)
            if opts.get("analyzer")
            else ctx.data.search_analyzer(info)
        )
        terms = analyzer.terms(_as_text(text))
        if not terms:
            zero = opts.get("zero_terms_query", "none")
            return ctx.const(np.ones(ctx.n, dtype=bool)) if zero == "all" else ctx.none()
        clauses = _bm25_terms(ctx, info, terms, boost)
        if len(clauses) == 1:
            return clauses[0]
        operator = str(opts.get("operator", "or")).lower()
        if operator == "and":
            return _sum_all(clauses, ctx.n)
        msm = min_should_match(opts.get("minimum_should_match"), len(clauses))
        return _combine_should(clauses, msm, ctx.n)
    if info.type in KEYWORD_TYPES:
        return _keyword_term(ctx, info, _as_text(text), boost)
    if info.type in NUMERIC_TYPES or info.type in DATE_TYPES or info.type == "boolean":
        if opts.get("lenient"):
            try:
                return _value_equals(ctx, info, text, boost)
            except EsError:
                return ctx.none()
        return _value_equals(ctx, info, text, boost)
    return ctx.none()


def _q_match(body: Any, ctx: Context) -> Matches:
    name, opts = _field_body("match", body, "query")
    if "query" not in opts:
        raise parsing_error("[match] requires query value")
    if opts.get("type") == "phrase":
        return _phrase(ctx, name, opts["query"], opts, _boost(opts))
    return _match_field(ctx, name, opts["query"], opts, _boost(opts))


def _phrase(ctx: Context, name: str, text: Any, opts: dict, boost: float) -> Matches:
    info = ctx.data.field(name)
    if not info.mapped:
        return ctx.none()
    if info.type not in TEXT_TYPES:
        return _match_field(ctx, name, text, opts, boost)
    analyzer = (
        get_analyzer(opts["analyzer"], ctx.data.settings) if opts.get("analyzer") else ctx.data.search_analyzer(info)
    )
    toks = analyzer.tokens(_as_text(text))
    if not toks:
        return ctx.none()
    if len(toks) == 1:
        return _bm25_terms(ctx, info, [toks[0].term], boost)[0]
    slop = int(opts.get("slop", 0))
    tp = ctx.data.text(info)
    per_term = [tp.positions.get(t.term) for t in toks]
    if any(p is None for p in per_term):
        return ctx.none()
    base = toks[0].position
    offsets = [t.position - base for t in toks]
    candidates = set(per_term[0])  # type: ignore[arg-type]
    for p in per_term[1:]:
        candidates &= set(p)  # type: ignore[arg-type]
    freqs: dict[int, float] = {}
    for doc in candidates:
        lists = [p[doc] for p in per_term]  # type: ignore[index]
        freq = _phrase_freq(lists, offsets, slop)
        if freq > 0:
            freqs[doc] = freq
    mask = np.zeros(ctx.n, dtype=bool)
    scores = np.zeros(ctx.n, dtype=np.float32)
    if freqs:
        docs = np.fromiter(freqs.keys(), dtype=np.int64)
        tf = np.fromiter(freqs.values(), dtype=np.float32)
        # A phrase's idf is the sum of its terms' idfs (Lucene's multi-term idfExplain).
        idf_sum = sum(float(bm25.idf(len(tp.postings[t.term][0]), tp.doc_count)) for t in toks)
        kind, k1, b = ctx.data.similarity(info)
        mask[docs] = True
        if kind == "boolean":
            scores[docs] = np.float32(boost)
        else:
            legacy = np.float32(1) + np.float32(k1)
            weight = np.float32(np.float32(boost) * legacy * np.float32(idf_sum))
            scores[docs] = bm25.score(tf, tp.norms[docs], weight, tp.cache(k1, b))
    return Matches(mask, scores)


def _phrase_freq(lists: list[list[int]], offsets: list[int], slop: int) -> float:
    if slop == 0:
        sets = [{p - o for p in lst} for lst, o in zip(lists, offsets)]
        common = sets[0].intersection(*sets[1:])
        return float(len(common))
    # Sloppy: for every start position of the first term, the smallest total displacement of the
    # others; a match counts 1 / (1 + distance) like Lucene's SloppyPhraseMatcher.
    freq = 0.0
    for start in lists[0]:
        distance = 0
        ok = True
        for lst, o in zip(lists[1:], offsets[1:]):
            best = min((abs(p - (start + o)) for p in lst), default=None)
            if best is None or best > slop:
                ok = False
                break
            distance += best
        if ok and distance <= slop:
            freq += 1.0 / (1.0 + distance)
    return freq


def _q_match_phrase(body: Any, ctx: Context) -> Matches:
    name, opts = _field_body("match_phrase", body, "query")
    return _phrase(ctx, name, opts.get("query", ""), opts, _boost(opts))


def _parse_field_boost(spec: str) -> tuple[str, float]:
    if "^" in spec:
        name, _, b = spec.rpartition("^")
        try:
            boost = float(b)
        except ValueError:
            # Elasticsearch: Float.parseFloat fails, a 400 (NumberFormatException), not a server error.
            raise EsError(400, "number_format_exception",
                          f'For input string: "{b}"' if b else "empty String") from None
        if not math.isfinite(boost) or math.copysign(1.0, boost) < 0:  # Lucene's BoostQuery refuses it
            raise EsError(400, "query_shard_exception", f"failed to create query: boost must be a positive float, "
                                                        f"got {b.strip()}")
        return name, boost
    return spec, 1.0


def _dis_max(parts: list[Matches], tie: float, n: int) -> Matches:
    if not parts:
        return Matches(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.float32))
    stack = np.stack([np.where(p.mask, p.scores, 0).astype(np.float32) for p in parts])
    mask = np.logical_or.reduce([p.mask for p in parts])
    best = stack.max(axis=0)
    others = stack.astype(np.float64).sum(axis=0) - best.astype(np.float64)
    score = (best + (others * tie).astype(np.float32)).astype(np.float32)
    return Matches(mask, score)


def _q_multi_match(body: Any, ctx: Context) -> Matches:
    if not isinstance(body, dict) or "query" not in body:
        raise parsing_error("[multi_match] requires query value")
    text = body["query"]
    specs = body.get("fields") or ["*"]
    if isinstance(specs, str):
        specs = [specs]
    fields: list[tuple[str, float]] = []
    for spec in specs:
        pattern, fboost = _parse_field_boost(spec)
        for name in _expand_fields(ctx, pattern):
            info = ctx.data.field(name)
            if pattern == "*" and info.type not in TEXT_TYPES and info.type not in KEYWORD_TYPES:
                continue
            fields.append((name, fboost))
    mtype = body.get("type", "best_fields")
    if mtype not in ("best_fields", "most_fields", "cross_fields", "phrase", "phrase_prefix", "bool_prefix"):
        raise parsing_error(f"failed to parse [multi_match] query type [{mtype}]. unknown type.")
    if mtype == "phrase_prefix":
        raise unsupported("[multi_match] type [phrase_prefix]")
    boost = float(body.get("boost", 1.0))
    tie = float(body.get("tie_breaker", 0.0 if mtype in ("best_fields", "phrase", "phrase_prefix") else 1.0))
    opts = {
        k: v
        for k, v in body.items()
        if k in ("operator", "minimum_should_match", "analyzer", "fuzziness", "lenient", "zero_terms_query", "slop")
    }
    if mtype == "cross_fields":
        return _cross_fields(ctx, text, fields, opts, boost, tie)
    if mtype in ("phrase", "phrase_prefix"):
        parts = [_phrase(ctx, name, text, opts, boost * fb) for name, fb in fields]
        return _dis_max(parts, tie, ctx.n)
    parts = [_match_field(ctx, name, text, {**opts, "lenient": True}, boost * fb) for name, fb in fields]
    if mtype == "most_fields":
        return _combine_should(parts, 1, ctx.n)
    if mtype == "bool_prefix":
        raise unsupported("[multi_match] type [bool_prefix]")
    return _dis_max(parts, tie, ctx.n)


def _cross_fields(
    ctx: Context, text: Any, fields: list[tuple[str, float]], opts: dict, boost: float, tie: float
) -> Matches:
    # Term-centric: each term is a dis_max over the fields (idf blending is approximated by the
    # per-field idf); the operator / minimum_should_match apply across terms.
    per_term: list[list[Matches]] = []
    for name, fb in fields:
        info = ctx.data.field(name)
        if info.type not in TEXT_TYPES:
            continue
        analyzer = (
            get_analyzer(opts["analyzer"], ctx.data.settings)
            if opts.get("analyzer")
            else ctx.data.search_analyzer(info)
        )
        terms = analyzer.terms(_as_text(text))
        for i, m in enumerate(_bm25_terms(ctx, info, terms, boost * fb)):
            while len(per_term) <= i:
                per_term.append([])
            per_term[i].append(m)
    clauses = [_dis_max(parts, tie if tie != 1.0 else 0.0, ctx.n) for parts in per_term]
    if not clauses:
        return ctx.none()
    if str(opts.get("operator", "or")).lower() == "and":
        return _sum_all(clauses, ctx.n)
    return _combine_should(clauses, min_should_match(opts.get("minimum_should_match"), len(clauses)), ctx.n)


# compound ----------------------------------------------------------------------------------


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _q_bool(body: Any, ctx: Context) -> Matches:
    if not isinstance(body, dict):
        raise parsing_error("[bool] query malformed")
    for key in body:
        if key not in (
            "must",
            "should",
            "filter",
            "must_not",
            "minimum_should_match",
            "boost",
            "_name",
            "adjust_pure_negative",
        ):
            raise parsing_error(f"[bool] query does not support [{key}]")
    filters = [evaluate(q, ctx) for q in _as_list(body.get("filter"))]
    must_not = [evaluate(q, ctx) for q in _as_list(body.get("must_not"))]
    # Elasticsearch pushes a bool's filter clauses into knn clauses below it as pre-filters.
    saved = ctx.prefilter
    if filters:
        pre = np.logical_and.reduce([f.mask for f in filters])
        ctx.prefilter = pre if saved is None else (saved & pre)
    try:
        must = [evaluate(q, ctx) for q in _as_list(body.get("must"))]
        should = [evaluate(q, ctx) for q in _as_list(body.get("should"))]
    finally:
        ctx.prefilter = saved
    mask = np.ones(ctx.n, dtype=bool)
    total = np.zeros(ctx.n, dtype=np.float64)
    for m in must:
        mask &= m.mask
        total += np.where(m.mask, m.scores, 0)
    for f in filters:
        mask &= f.mask
    for m in must_not:
        mask &= ~m.mask
    msm_spec = body.get("minimum_should_match")
    if should:
        if msm_spec is not None:
            msm = min_should_match(msm_spec, len(should))
        else:
            msm = 0 if (must or filters) else 1
        count = np.zeros(ctx.n, dtype=np.int32)
        for s in should:
            count += s.mask
            total += np.where(s.mask, s.scores, 0)
        if msm > len(should):
            mask[:] = False
        elif msm > 0:
            mask &= count >= msm
    boost = float(body.get("boost", 1.0))
    scores = total.astype(np.float32)
    if not must and not should and not filters:
        # An empty bool is match_all; a pure must_not bool gets an implicit match_all (score 1).
        scores = np.ones(ctx.n, dtype=np.float32)
    if boost != 1.0:
        scores = (scores * np.float32(boost)).astype(np.float32)
    return Matches(mask, scores)


def _q_constant_score(body: Any, ctx: Context) -> Matches:
    if not isinstance(body, dict) or "filter" not in body:
        raise parsing_error("[constant_score] requires a 'filter' element")
    inner = evaluate(body["filter"], ctx)
    return ctx.const(inner.mask, float(body.get("boost", 1.0)))


def _q_dis_max(body: Any, ctx: Context) -> Matches:
    parts = [evaluate(q, ctx) for q in _as_list(body.get("queries"))]
    result = _dis_max(parts, float(body.get("tie_breaker", 0.0)), ctx.n)
    boost = float(body.get("boost", 1.0))
    if boost != 1.0:
        result.scores = (result.scores * np.float32(boost)).astype(np.float32)
    return result


def _q_boosting(body: Any, ctx: Context) -> Matches:
    pos = evaluate(body.get("positive"), ctx)
    neg = evaluate(body.get("negative"), ctx)
    factor = np.float32(body.get("negative_boost", 1.0))
    scores = np.where(neg.mask, pos.scores * factor, pos.scores).astype(np.float32)
    return Matches(pos.mask, scores)


# term-level filters ------------------------------------------------------------------------


def has_value(node: Any, parts: list[str]) -> bool:
    """Whether ``source`` holds a non-null value at the dotted path (without flattening arrays)."""
    if isinstance(node, list):
        return any(has_value(item, parts) for item in node)
    if not parts:
        return node is not None
    if not isinstance(node, dict):
        return False
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in node:
            value = node[key]
            rest = parts[i:]
            if not rest and isinstance(value, list):
                # a leaf array (e.g. a vector): any non-null element is a value; stops at the first
                if any(v is not None for v in value):
                    return True
            elif has_value(value, rest):
                return True
    return False


def exists_mask(ctx: Context, name: str) -> np.ndarray:
    key = ("exists", name)
    cached = ctx.data.sort_columns.get(key)
    if cached is None:
        cached = np.zeros(ctx.n, dtype=bool)
        for fname in _expand_fields(ctx, name):
            parts = ctx.data.field(fname).source_path.split(".")
            for i, doc in enumerate(ctx.data.docs):
                if ctx.data.snapshot.fields_since and ctx.data.snapshot.indexed_before(fname, doc):
                    continue  # written before the field existed: nothing indexed for it
                if not cached[i] and has_value(doc.source, parts):
                    cached[i] = True
        ctx.data.sort_columns[key] = cached
    return cached


#: Metadata fields every document has (an ``exists`` query on them matches all).
_ALWAYS_PRESENT = frozenset({"_id", "_index", "_seq_no", "_version", "_primary_term", "_tier"})


def _q_exists(body: Any, ctx: Context) -> Matches:
    name = body.get("field") if isinstance(body, dict) else None
    if not name:
        raise parsing_error("[exists] must be provided with a [field]")
    boost = float(body.get("boost", 1.0))
    if name in _ALWAYS_PRESENT:
        return ctx.const(np.ones(ctx.n, dtype=bool), boost)
    if name == "_routing" and not ctx.data.field(name).mapped:
        return ctx.const(np.array([d.routing is not None for d in ctx.data.docs], dtype=bool), boost)
    if name == "_ignored":  # nothing is ignored at index time here (malformed values are refused)
        return ctx.const(np.zeros(ctx.n, dtype=bool), boost)
    if name.startswith("_") and not ctx.data.field(name).mapped:
        raise unsupported(f"an [exists] query on the metadata field [{name}]")
    return ctx.const(exists_mask(ctx, name).copy(), boost)


def _string_terms(ctx: Context, info: FieldInfo) -> dict[str, np.ndarray]:
    if info.type in TEXT_TYPES:
        return {t: p[0] for t, p in ctx.data.text(info).postings.items()}
    if info.type in KEYWORD_TYPES:
        return {k: v for k, v in ctx.data.column(info).index.items() if isinstance(k, str)}
    return {}


def _multi_term(ctx: Context, name: str, pred: Callable[[str], bool], boost: float) -> Matches:
    info = ctx.data.field(name)
    mask = np.zeros(ctx.n, dtype=bool)
    if name == "_id":
        for i, doc_id in enumerate(ctx.data.ids):
            mask[i] = pred(doc_id)
        return ctx.const(mask, boost)
    if name == "_routing" and not info.mapped:
        return _routing_matches(ctx, pred, boost)
    for term, docs in _string_terms(ctx, info).items():
        if pred(term):
            mask[docs] = True
    return ctx.const(mask, boost)


def _q_prefix(body: Any, ctx: Context) -> Matches:
    name, opts = _field_body("prefix", body)
    prefix = _as_text(opts.get("value", opts.get("prefix", "")))
    if opts.get("case_insensitive"):
        low = prefix.lower()
        return _multi_term(ctx, name, lambda t: t.lower().startswith(low), _boost(opts))
    return _multi_term(ctx, name, lambda t: t.startswith(prefix), _boost(opts))


def _q_wildcard(body: Any, ctx: Context) -> Matches:
    name, opts = _field_body("wildcard", body)
    pattern = _as_text(opts.get("value", opts.get("wildcard", "")))
    ci = bool(opts.get("case_insensitive"))
    rx = re.compile(fnmatch.translate(pattern), re.IGNORECASE if ci else 0)
    return _multi_term(ctx, name, lambda t: rx.match(t) is not None, _boost(opts))


def _q_regexp(body: Any, ctx: Context) -> Matches:
    name, opts = _field_body("regexp", body)
    rx = re.compile(_as_text(opts.get("value", "")), re.IGNORECASE if opts.get("case_insensitive") else 0)
    return _multi_term(ctx, name, lambda t: rx.fullmatch(t) is not None, _boost(opts))


_DATE_MATH = re.compile(r"([+-])(\d+)([yMwdhHms])")
_UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "H": 3_600_000, "m": 60_000, "s": 1000}


def _date_math(expr: str, now_ms: int) -> int:
    """Evaluate ``now[+-N<unit>][/unit]`` (no calendar months/years rounding beyond days)."""
    rest = expr[3:]
    ms = now_ms
    rounding = None
    if "/" in rest:
        rest, rounding = rest.split("/", 1)
    for sign, num, unit in _DATE_MATH.findall(rest):
        k = int(num) * (1 if sign == "+" else -1)
        if unit == "y":
            ms += k * 365 * 86_400_000
        elif unit == "M":
            ms += k * 30 * 86_400_000
        else:
            ms += k * _UNIT_MS[unit]
    if rounding and rounding in _UNIT_MS:
        ms -= ms % _UNIT_MS[rounding]
    return ms * 1_000_000


def _range_bound(ctx: Context, info: FieldInfo, value: Any, fmt: str | None) -> Any:
    if info.type in DATE_TYPES:
        if isinstance(value, str) and value.startswith("now"):
            return _date_math(value, ctx.now_ms)
        if isinstance(value, str) and "||" in value:
            value = value.split("||")[0]
        try:
            return parse_date_nanos(value, fmt or date_field_format(info))
        except ValueError:
            raise EsError(
                400,
                "parse_exception",
                f"failed to parse date field [{value}] with format [{fmt or date_field_format(info)}]",
            ) from None
    if info.type in NUMERIC_TYPES:
        try:
            return float(parse_number(value, "double"))
        except ValueError:
            raise shard_error(ctx, f'failed to create query: For input string: "{value}"') from None
    if info.type == "boolean":
        return parse_boolean(value)
    return _as_text(value)


def _q_range(body: Any, ctx: Context) -> Matches:
    name, opts = _field_body("range", body)
    info = ctx.data.field(name)
    if not info.mapped:
        return ctx.none()
    lower = upper = None
    inc_lower = inc_upper = True
    for key, val in opts.items():
        if val is None:
            continue
        if key == "gte":
            lower, inc_lower = val, True
        elif key == "gt":
            lower, inc_lower = val, False
        elif key == "lte":
            upper, inc_upper = val, True
        elif key == "lt":
            upper, inc_upper = val, False
        elif key == "from":
            lower = val
        elif key == "to":
            upper = val
    if "include_lower" in opts:
        inc_lower = bool(opts["include_lower"])
    if "include_upper" in opts:
        inc_upper = bool(opts["include_upper"])
    fmt = opts.get("format")
    lo = _range_bound(ctx, info, lower, fmt) if lower is not None else None
    hi = _range_bound(ctx, info, upper, fmt) if upper is not None else None
    if info.type in TEXT_TYPES or info.type in KEYWORD_TYPES:

        def pred(t: str) -> bool:
            if lo is not None and (t < lo or (t == lo and not inc_lower)):
                return False
            if hi is not None and (t > hi or (t == hi and not inc_upper)):
                return False
            return True

        return _multi_term(ctx, name, pred, _boost(opts))
    col = ctx.data.column(info)
    mask = np.zeros(ctx.n, dtype=bool)
    for i, vals in enumerate(col.values):
        for v in vals:
            if lo is not None and (v < lo or (v == lo and not inc_lower)):
                continue
            if hi is not None and (v > hi or (v == hi and not inc_upper)):
                continue
            mask[i] = True
            break
    return ctx.const(mask, _boost(opts))


def _q_knn(body: Any, ctx: Context) -> Matches:
    from es_semantic.testing.vectors import knn_query_clause

    return knn_query_clause(body, ctx)


_FVF_MODIFIERS = {
    "none": lambda x: x,
    "log": lambda x: np.log10(x),
    "log1p": lambda x: np.log10(x + 1),
    "log2p": lambda x: np.log10(x + 2),
    "ln": np.log,
    "ln1p": np.log1p,
    "ln2p": lambda x: np.log(x + 2),
    "square": np.square,
    "sqrt": np.sqrt,
    "reciprocal": lambda x: 1 / x,
}


def _function_values(fn: dict, ctx: Context, query_scores: np.ndarray) -> np.ndarray:
    """One function of a function_score query, per doc (before the filter)."""
    weight = float(fn.get("weight", 1.0))
    if "script_score" in fn:
        from es_semantic.testing.painless import compile_script, script_namespace

        run = compile_script(fn["script_score"].get("script"))
        values = run(script_namespace(ctx, query_scores)) if ctx.n else np.zeros(0)
        return np.broadcast_to(values, (ctx.n,)).astype(np.float64) * weight
    if "field_value_factor" in fn:
        spec = fn["field_value_factor"]
        info = ctx.data.field(spec.get("field", ""))
        col = ctx.data.column(info) if info.mapped else None
        missing = spec.get("missing")
        vals = np.empty(ctx.n, dtype=np.float64)
        for i in range(ctx.n):
            v = col.values[i] if col is not None else []
            if v:
                vals[i] = float(v[0])
            elif missing is not None:
                vals[i] = float(missing)
            else:
                raise (
                    EsError(400, "illegal_argument_exception", f"Missing value for field [{spec.get('field')}]")
                    if ctx.n
                    else None
                )
        modifier = _FVF_MODIFIERS.get(spec.get("modifier", "none"))
        if modifier is None:
            raise parsing_error(f"Illegal modifier: {spec.get('modifier')}")
        with np.errstate(all="ignore"):
            return (modifier(vals * float(spec.get("factor", 1.0))) * weight).astype(np.float64)
    for name in ("random_score", "gauss", "linear", "exp"):
        if name in fn:
            raise unsupported(f"the [function_score] function [{name}]")
    return np.full(ctx.n, weight, dtype=np.float64)


def _q_function_score(body: Any, ctx: Context) -> Matches:
    if not isinstance(body, dict):
        raise parsing_error("[function_score] malformed query")
    inner = evaluate(body.get("query"), ctx)
    functions = body.get("functions")
    if functions is None:
        single = {
            k: v
            for k, v in body.items()
            if k in ("weight", "field_value_factor", "script_score", "random_score", "gauss", "linear", "exp")
        }
        functions = [single] if single else []
    score_mode = body.get("score_mode", "multiply")
    boost_mode = body.get("boost_mode", "multiply")
    per_fn: list[tuple[np.ndarray, np.ndarray]] = []
    for fn in functions:
        fmask = evaluate(fn["filter"], ctx).mask if fn.get("filter") is not None else np.ones(ctx.n, dtype=bool)
        per_fn.append((fmask, _function_values(fn, ctx, inner.scores)))
    if per_fn:
        masks = np.stack([m for m, _ in per_fn])
        vals = np.stack([v for _, v in per_fn])
        any_match = masks.any(axis=0)
        if score_mode == "multiply":
            combined = np.prod(np.where(masks, vals, 1.0), axis=0)
        elif score_mode == "sum":
            combined = np.sum(np.where(masks, vals, 0.0), axis=0)
        elif score_mode == "avg":
            weights = np.stack([np.full(ctx.n, float(fn.get("weight", 1.0))) for fn in functions])
            denom = np.sum(np.where(masks, weights, 0.0), axis=0)
            with np.errstate(all="ignore"):
                combined = np.where(denom > 0, np.sum(np.where(masks, vals, 0.0), axis=0) / denom, 1.0)
        elif score_mode == "max":
            combined = np.max(np.where(masks, vals, -np.inf), axis=0)
        elif score_mode == "min":
            combined = np.min(np.where(masks, vals, np.inf), axis=0)
        elif score_mode == "first":
            first = np.argmax(masks, axis=0)
            combined = vals[first, np.arange(ctx.n)]
        else:
            raise parsing_error(f"illegal score_mode [{score_mode}]")
        combined = np.where(any_match, combined, 1.0)
    else:
        combined = np.ones(ctx.n, dtype=np.float64)
    combined = np.minimum(combined, float(body.get("max_boost", np.inf)))
    q = inner.scores.astype(np.float64)
    modes = {
        "multiply": q * combined,
        "replace": combined,
        "sum": q + combined,
        "avg": (q + combined) / 2,
        "max": np.maximum(q, combined),
        "min": np.minimum(q, combined),
    }
    if boost_mode not in modes:
        raise parsing_error(f"illegal boost_mode [{boost_mode}]")
    scores = modes[boost_mode] * float(body.get("boost", 1.0))
    mask = inner.mask
    if body.get("min_score") is not None:
        mask = mask & (scores >= float(body["min_score"]))
    return Matches(mask, scores.astype(np.float32))


def _q_script_score(body: Any, ctx: Context) -> Matches:
    from es_semantic.testing.painless import compile_script, script_namespace

    if not isinstance(body, dict) or "script" not in body:
        raise parsing_error("[script_score] requires a [script]")
    if "query" not in body:
        raise parsing_error("[script_score] requires a [query]")
    inner = evaluate(body["query"], ctx)
    run = compile_script(body["script"])
    values = run(script_namespace(ctx, inner.scores)) if ctx.n else np.zeros(0)
    values = np.broadcast_to(values, (ctx.n,)).astype(np.float64)
    matched = np.nonzero(inner.mask)[0]
    bad = matched[np.isnan(values[matched]) | (values[matched] < 0)]
    if len(bad):
        i = int(bad[0])
        if np.isnan(values[i]):
            raise EsError(
                400,
                "illegal_argument_exception",
                f"script_score: document [{ctx.data.ids[i]}] has no value for a field the script reads",
            )
        raise EsError(
            400,
            "illegal_argument_exception",
            f"script_score script returned an invalid score [{values[i]}] for doc [{i}]. Must be a non-negative score!",
        )
    scores = (values * float(body.get("boost", 1.0))).astype(np.float32)
    mask = inner.mask
    if body.get("min_score") is not None:
        mask = mask & (scores >= np.float32(body["min_score"]))
    return Matches(mask, scores)


def _q_vector_similarity(body: Any, ctx: Context) -> Matches:
    from es_semantic.testing.vectors import knn_matches

    if not isinstance(body, dict):
        raise parsing_error("[vector_similarity] malformed query")
    for key in ("field", "query_vector", "similarity", "num_candidates"):
        if body.get(key) is None:
            raise EsError(400, "x_content_parse_exception", f"[vector_similarity] requires [{key}]")
    if int(body["num_candidates"]) < 1:
        raise EsError(400, "x_content_parse_exception", "[num_candidates] must be greater than 0")
    info = ctx.data.field(body["field"])
    if not info.mapped:
        raise shard_error(ctx, f"No field mapping can be found for the field with name [{body['field']}]")
    threshold = float(body["similarity"])
    if info.mapping.get("similarity") == "l2_norm":
        # This (test-only) query compares l2_norm against the squared distance, unlike knn's `similarity`.
        threshold = threshold**0.5
    spec = {
        "field": body["field"],
        "query_vector": body["query_vector"],
        "k": int(body["num_candidates"]),
        "num_candidates": int(body["num_candidates"]),
        "similarity": threshold,
    }
    return knn_matches(spec, ctx, ctx.prefilter, query_form=True)


_QUERY_STRING_KEYS = {"query", "default_field", "fields", "default_operator", "boost", "_name", "lenient"}


def _q_query_string(body: Any, ctx: Context) -> Matches:
    """The Lucene syntax subset of ``query_string.parse``, run as the query DSL it stands for."""
    from es_semantic.testing import query_string

    if not isinstance(body, dict) or "query" not in body:
        raise parsing_error("[query_string] must be provided with a [query]")
    for key in body:
        if key not in _QUERY_STRING_KEYS:
            raise unsupported(f"[{key}] in a [query_string] query")
    fields = body.get("fields") or ([body["default_field"]] if body.get("default_field") else ["*"])
    def normalize(field: str, term: str) -> str:
        return term.lower() if ctx.data.field(field).type in TEXT_TYPES else term

    dsl = query_string.parse(_as_text(body["query"]), fields=list(fields),
                             default_operator=body.get("default_operator", "or"),
                             lenient=str(body.get("lenient", False)).lower() == "true", normalize=normalize)
    boost = float(body.get("boost", 1.0))
    if boost != 1.0:
        dsl = {"bool": {"must": [dsl], "boost": boost}}
    return evaluate(dsl, ctx)


def _q_simple_query_string(body: Any, ctx: Context) -> Matches:
    # A subset: the text is split on whitespace into terms, as Elasticsearch does before analysis
    # (so "sheep cow" on a keyword field is two terms), and each term is matched over the fields,
    # summed like most_fields; the terms combine with OR (or default_operator). Its operators are
    # refused by name rather than read as text.
    raw = _as_text(body.get("query", ""))
    if re.search(r'(^|\s)[+\-]|[|"*()~]', raw) and str(body.get("flags", "ALL")).upper() != "NONE":
        raise unsupported("the operators (+ - | \" * ( ) ~) of a [simple_query_string] query")
    text = raw
    fields = body.get("fields") or ["*"]
    clauses = [{"multi_match": {"query": term, "fields": fields, "type": "most_fields"}} for term in text.split()]
    if not clauses:
        return _q_match_none({}, ctx)
    all_terms = str(body.get("default_operator", "or")).lower() == "and"
    combined: dict[str, Any] = {"must": clauses} if all_terms else {"should": clauses}
    if "minimum_should_match" in body and not all_terms:
        combined["minimum_should_match"] = body["minimum_should_match"]
    return _q_bool(combined, ctx)


def _q_nested(body: Any, ctx: Context) -> Matches:
    from es_semantic.testing.nested import run_nested

    return run_nested(body, ctx)


_HANDLERS: dict[str, Callable[[Any, Context], Matches]] = {
    "nested": _q_nested,
    "match_all": _q_match_all,
    "match_none": _q_match_none,
    "term": _q_term,
    "terms": _q_terms,
    "ids": _q_ids,
    "match": _q_match,
    "match_phrase": _q_match_phrase,
    "multi_match": _q_multi_match,
    "bool": _q_bool,
    "constant_score": _q_constant_score,
    "dis_max": _q_dis_max,
    "boosting": _q_boosting,
    "exists": _q_exists,
    "prefix": _q_prefix,
    "wildcard": _q_wildcard,
    "regexp": _q_regexp,
    "range": _q_range,
    "knn": _q_knn,
    "function_score": _q_function_score,
    "script_score": _q_script_score,
    "vector_similarity": _q_vector_similarity,
    "simple_query_string": _q_simple_query_string,
    "query_string": _q_query_string,
}
