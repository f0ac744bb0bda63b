"""The search engine of the in-memory Elasticsearch-compatible test server.

The store resolves index names into :class:`SearchTarget` s and calls :func:`run_search`,
:func:`count`, :func:`matching_docs` or :func:`validate_query`. Everything here is pure Python
plus numpy and never changes a snapshot (only its ``cache``).

A search runs in three steps: every target evaluates the query (and top-level ``knn``) to a
mask and score array (:mod:`query_dsl`, :mod:`vectors`); the matching documents of all
targets become candidate hits with sort keys; the candidates are sorted, paged and rendered
like Elasticsearch's ``hits`` section. Retrievers and the legacy ``rank`` option are in
:mod:`retrievers`. Aggregations (:mod:`aggregations`) run over every document the query collects,
before ``post_filter``, not only over the returned page.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from es_semantic.testing import aggregations
from es_semantic.testing.errors import EsError, json_token, unsupported
from es_semantic.testing.fields import (
    DATE_TYPES,
    INTEGER_TYPES,
    KEYWORD_TYPES,
    NUMERIC_TYPES,
    TEXT_TYPES,
    FieldInfo,
    all_field_names,
    date_field_format,
    extract_values,
    format_date,
    parse_date_nanos,
    vector_field_paths,
)
from es_semantic.testing.nested import render_inner_hits
from es_semantic.testing.query_dsl import (
    Context,
    Matches,
    ShardData,
    evaluate,
    parse_field_value,
    shard_data,
)
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc
from es_semantic.testing.vectors import knn_matches

DEFAULT_SIZE = 10
DEFAULT_TRACK_TOTAL_HITS = 10_000
LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)


def _illegal(reason: str) -> EsError:
    return EsError(400, "illegal_argument_exception", reason)


# --- request parsing -------------------------------------------------------------------------


def _int_param(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _illegal(f"Failed to parse int parameter [{name}] with value [{value}]") from None


def _bool_param(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "")


def _split_param(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [p for p in str(value).split(",") if p]


@dataclass
class SourceFilter:
    enabled: bool = True
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    exclude_vectors: bool | None = None  # None: the index setting decides (true by default)

    def render(self, source: dict, mappings: dict, settings: dict) -> dict:
        """``source`` as a hit or a get shows it: filtered, and without its vectors unless asked
        (Elasticsearch 9.2+: ``index.mapping.exclude_source_vectors``, true by default), a vector
        named in ``includes`` being asked for."""
        excludes = list(self.excludes)
        if _excludes_vectors(self.exclude_vectors, settings):
            excludes += [p for p in vector_field_paths(mappings) if p not in self.includes]
        return filter_source(source, self.includes, excludes) if (self.includes or excludes) else source


def _excludes_vectors(requested: bool | None, settings: dict) -> bool:
    if requested is not None:
        return requested
    index = settings.get("index", settings)
    value = index.get("mapping", {}).get("exclude_source_vectors") if isinstance(index.get("mapping"), dict) \
        else index.get("mapping.exclude_source_vectors")
    return str(value).lower() != "false"


def _source_filter(body: dict, params: dict) -> SourceFilter:
    spec = body.get("_source", None)
    sf = SourceFilter()
    if "_source" in params:
        p = params["_source"]
        if str(p).lower() in ("false",):
            spec = False
        elif str(p).lower() in ("true", ""):
            spec = True
        else:
            spec = _split_param(p)
    if spec is False:
        sf.enabled = False
    elif isinstance(spec, str):
        sf.includes = [spec]
    elif isinstance(spec, list):
        sf.includes = [str(s) for s in spec]
    elif isinstance(spec, dict):
        for key in spec:
            if key not in ("includes", "include", "excludes", "exclude", "exclude_vectors"):
                raise EsError(400, "parsing_exception", f"Unknown key for a {json_token(spec[key])} in [{key}].")
        if "exclude_vectors" in spec:
            sf.exclude_vectors = bool(spec["exclude_vectors"])
        inc = spec.get("includes", spec.get("include", []))
        exc = spec.get("excludes", spec.get("exclude", []))
        sf.includes = [inc] if isinstance(inc, str) else list(inc)
        sf.excludes = [exc] if isinstance(exc, str) else list(exc)
    if "_source_includes" in params:
        sf.enabled = True
        sf.includes = _split_param(params["_source_includes"])
    if "_source_excludes" in params:
        sf.enabled = True
        sf.excludes = _split_param(params["_source_excludes"])
    if "_source_exclude_vectors" in params:
        sf.exclude_vectors = _bool_param(params["_source_exclude_vectors"])
    return sf


def _path_matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _may_match_below(path: str, patterns: list[str]) -> bool:
    prefix = path + "."
    for p in patterns:
        if p.startswith(prefix):
            return True
        star = p.find("*")
        if star != -1 and (p[:star].startswith(prefix) or prefix.startswith(p[:star])):
            return True
    return False


def filter_source(source: Any, includes: list[str], excludes: list[str], prefix: str = "") -> Any:
    """Elasticsearch's ``_source`` filtering: dotted paths with ``*`` wildcards."""
    if isinstance(source, list):
        out_list = []
        for item in source:
            if isinstance(item, (dict, list)):
                filtered = filter_source(item, includes, excludes, prefix)
                if filtered or not isinstance(item, dict) or not includes:
                    out_list.append(filtered)
            else:
                out_list.append(item)
        return out_list
    if not isinstance(source, dict):
        return source
    out: dict[str, Any] = {}
    for key, value in source.items():
        path = prefix + key
        if excludes and _path_matches(path, excludes):
            continue
        if not includes or _path_matches(path, includes):
            if isinstance(value, (dict, list)) and excludes:
                out[key] = filter_source(value, [], excludes, path + ".")
            else:
                out[key] = value
        elif isinstance(value, (dict, list)) and _may_match_below(path, includes):
            filtered = filter_source(value, includes, excludes, path + ".")
            if filtered:
                out[key] = filtered
    return out


# --- sorting -------------------------------------------------------------------------------


@dataclass
class SortSpec:
    field: str
    desc: bool
    missing: Any = "_last"
    mode: str | None = None
    format: str | None = None
    unmapped_type: str | None = None
    numeric_type: str | None = None


_SORT_OPTIONS = ("order", "missing", "mode", "format", "unmapped_type", "numeric_type")


def parse_sort(sort: Any) -> list[SortSpec]:
    if sort is None:
        return []
    items = sort if isinstance(sort, list) else [sort]
    out: list[SortSpec] = []
    for item in items:
        if isinstance(item, str):
            name, _, order = item.partition(":")
            out.append(SortSpec(name, (order or ("desc" if name == "_score" else "asc")) == "desc"))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise EsError(400, "parsing_exception", f"[sort] malformed: {item!r}")
        ((name, opts),) = item.items()
        if isinstance(opts, str):
            out.append(SortSpec(name, opts == "desc"))
            continue
        for key in opts:
            if key in ("nested", "type", "script"):
                raise unsupported(f"[{key}] in a sort")
            if key not in _SORT_OPTIONS:
                raise EsError(400, "parsing_exception", f"[field_sort] unknown field [{key}]")
        order = opts.get("order", "desc" if name == "_score" else "asc")
        if order not in ("asc", "desc"):
            raise _illegal(f"Unknown SortOrder [{order}]")
        out.append(
            SortSpec(
                name,
                order == "desc",
                opts.get("missing", "_last"),
                opts.get("mode"),
                opts.get("format"),
                opts.get("unmapped_type"),
                opts.get("numeric_type"),
            )
        )
    return out


@dataclass
class Candidate:
    target: int  # ordinal of the SearchTarget
    doc: int  # doc_index in its snapshot
    score: float
    keys: list[Any] = field(default_factory=list)  # comparable sort keys
    sort_values: list[Any] = field(default_factory=list)  # rendered `sort` values
    rank: int | None = None


def _key_for(value: Any, missing: bool, desc: bool, missing_spec: Any) -> tuple:
    # Sorted ascending always; `desc` negates the value. Missing goes last unless "_first".
    first = missing_spec == "_first"
    if missing:
        return (0 if first else 2, 0)
    if desc:
        value = _Neg(value)
    return (1, value)


class _Neg:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Neg) -> bool:
        return other.v < self.v

    def __gt__(self, other: _Neg) -> bool:
        return other.v > self.v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Neg) and other.v == self.v

    def __le__(self, other: _Neg) -> bool:
        return other.v <= self.v

    def __ge__(self, other: _Neg) -> bool:
        return other.v >= self.v


class _FieldSorter:
    """Per-target sort value extraction for one sort field."""

    def __init__(self, spec: SortSpec, data: ShardData, index_name: str) -> None:
        self.spec = spec
        self.data = data
        name = spec.field
        self.info: FieldInfo | None = None
        if name in ("_score", "_doc", "_shard_doc", "_id", "_index"):
            return
        info = data.field(name)
        if not info.mapped:
            if spec.unmapped_type is None:
                raise EsError(
                    400, "query_shard_exception", f"No mapping found for [{name}] in order to sort on", index=index_name
                )
            info = FieldInfo(name, name, spec.unmapped_type, {"type": spec.unmapped_type})
        if info.type in TEXT_TYPES and not info.mapping.get("fielddata"):
            raise _illegal(
                "Fielddata is disabled on [" + name + "] in [" + index_name + "]. Text fields are not optimised for "
                "operations that require per-document field data like aggregations and sorting, so these operations "
                "are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on ["
                + name
                + "] in order to load field data by uninverting the inverted index. Note that this can use "
                "significant memory."
            )
        if info.type == "dense_vector":
            raise _illegal(f"Field [{name}] of type [dense_vector] doesn't support sort")
        self.info = info

    @property
    def kind(self) -> str:
        t = self.info.type if self.info else None
        if self.spec.field in ("_score",):
            return "score"
        if self.spec.field in ("_doc", "_shard_doc"):
            return "doc"
        if self.spec.field in ("_id", "_index"):
            return "string"
        if t in DATE_TYPES:
            return "date"
        if t in INTEGER_TYPES or t == "boolean":
            return "long"
        if t in NUMERIC_TYPES:
            return "double"
        return "string"

    def value(self, target: int, doc: int, score: float) -> tuple[Any, bool]:
        """(comparable value, missing?) of this field for one doc."""
        name = self.spec.field
        if name == "_score":
            return score, False
        if name == "_doc":
            return doc, False
        if name == "_shard_doc":
            return (target << 32) | doc, False
        if name == "_id":
            return self.data.ids[doc], False
        if name == "_index":
            return self.data.snapshot.index_name, False
        assert self.info is not None
        vals = self.data.column(self.info).values[doc]
        if not vals:
            custom = self.spec.missing
            if custom not in (None, "_first", "_last"):
                try:
                    vals = [parse_field_value(self.info, custom)]
                except (ValueError, TypeError):
                    raise _illegal(f"failed to parse missing value [{custom}] for field [{name}]") from None
            else:
                return None, True
        mode = self.spec.mode or ("max" if self.spec.desc else "min")
        if mode == "max":
            v = max(vals)
        elif mode in ("avg", "median", "sum") and self.kind in ("long", "double"):
            arr = np.asarray(vals, dtype=np.float64)
            v = float({"avg": arr.mean(), "median": np.median(arr), "sum": arr.sum()}[mode])
        else:
            v = min(vals)
        if isinstance(v, bool):
            v = int(v)
        if self.kind == "date":
            if self.spec.numeric_type == "date_nanos" or (
                self.info.type == "date_nanos" and self.spec.numeric_type != "date"
            ):
                return int(v), False
            return int(v) // 1_000_000 * 1_000_000, False
        return v, False

    def arrays(self, target: int, idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, missing) for the docs ``idx``: numbers as int64/float64, strings as objects."""
        name = self.spec.field
        none = np.zeros(len(idx), dtype=bool)
        if name == "_score":
            return scores[idx].astype(np.float64), none
        if name == "_doc":
            return idx.astype(np.int64), none
        if name == "_shard_doc":
            return (np.int64(target) << np.int64(32)) | idx.astype(np.int64), none
        if name in ("_id", "_index"):
            vals = np.empty(len(idx), dtype=object)
            vals[:] = [self.data.ids[i] for i in idx] if name == "_id" else self.data.snapshot.index_name
            return vals, none
        key = (
            self.spec.field,
            self.spec.mode,
            self.spec.desc,
            self.spec.numeric_type,
            repr(self.spec.missing),
            self.info.type if self.info else None,
        )
        column = self.data.sort_columns.get(key)
        if column is None:
            values, missing = [], []
            for doc in range(self.data.n):
                v, m = self.value(target, doc, 0.0)
                values.append(0 if m else v)
                missing.append(m)
            kind = self.kind
            dtype = np.float64 if kind == "double" else (np.int64 if kind in ("long", "date", "doc") else object)
            arr = np.empty(len(values), dtype=dtype) if dtype is object else np.asarray(values, dtype=dtype)
            if dtype is object:
                arr[:] = ["" if m else v for v, m in zip(values, missing)]
            column = (arr, np.asarray(missing, dtype=bool))
            self.data.sort_columns[key] = column
        return column[0][idx], column[1][idx]

    def render(self, value: Any, missing: bool) -> Any:
        kind = self.kind
        if missing:
            if kind == "string":
                return None
            if kind == "double":
                return float("inf") if (self.spec.missing != "_first") != self.spec.desc else float("-inf")
            return LONG_MAX if (self.spec.missing != "_first") != self.spec.desc else LONG_MIN
        if kind == "date":
            nanos_out = self.spec.numeric_type == "date_nanos" or (
                self.info is not None and self.info.type == "date_nanos" and self.spec.numeric_type != "date"
            )
            if self.spec.format:
                return format_date(int(value), self.spec.format)
            return int(value) if nanos_out else int(value) // 1_000_000
        if kind == "long":
            return int(value)
        if kind == "double":
            return float(value)
        return value

    def parse_after(self, value: Any) -> tuple[Any, bool]:
        """Convert a ``search_after`` value to this field's comparable value."""
        kind = self.kind
        if value is None:
            return None, True
        if kind == "date":
            nanos_out = self.spec.numeric_type == "date_nanos" or (
                self.info is not None and self.info.type == "date_nanos" and self.spec.numeric_type != "date"
            )
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if value in (LONG_MAX, LONG_MIN):
                    return None, True
                return (int(value) if nanos_out else int(value) * 1_000_000), False
            fmt = self.spec.format or date_field_format(self.info)  # type: ignore[arg-type]
            try:
                return parse_date_nanos(
                    value, fmt if "||" in fmt or not self.spec.format else fmt.split("||")[0]
                ), False
            except ValueError:
                raise EsError(
                    400, "parse_exception", f"failed to parse date field [{value}] with format [{fmt}]"
                ) from None
        if kind in ("long", "doc"):
            if value in (LONG_MAX, LONG_MIN):
                return None, True
            try:
                return int(value), False
            except (TypeError, ValueError):
                raise _illegal(f"Failed to parse search_after value [{value}] for field [{self.spec.field}]") from None
        if kind in ("double", "score"):
            f = float(value)
            if f in (float("inf"), float("-inf")) and kind == "double":
                return None, True
            return f, False
        return str(value), False


# --- per-target query evaluation --------------------------------------------------------------


def _context(target: SearchTarget, size: int) -> tuple[Context, np.ndarray | None]:
    data = shard_data(target.snapshot)
    ctx = Context(data, size=size, index_name=target.snapshot.index_name)
    alias_mask = None
    if target.alias_filter:
        alias_mask = evaluate(target.alias_filter, ctx).mask
        ctx.named.clear()
    if target.shards is not None:
        # A search with custom routing only reaches these shards: the others' documents are unseen.
        on_shards = np.fromiter((d.shard in target.shards for d in target.snapshot.docs), dtype=bool,
                                count=len(target.snapshot.docs))
        alias_mask = on_shards if alias_mask is None else alias_mask & on_shards
    ctx.prefilter = alias_mask
    return ctx, alias_mask


def _knn_list(body: dict) -> list[dict]:
    knn = body.get("knn")
    if knn is None:
        return []
    return knn if isinstance(knn, list) else [knn]


def evaluate_targets(targets: list[SearchTarget], body: dict, size: int) -> list[tuple[Context, Matches]]:
    """Evaluate query + top-level knn (+ alias filters) on every target.

    A top-level ``knn`` keeps its ``k`` best documents over all targets together (Elasticsearch
    merges the shards' candidates into one global top k); its scores are added to the query's.
    """
    knns = _knn_list(body)
    query = body.get("query")
    prepared = []
    for target in targets:
        ctx, alias_mask = _context(target, size)
        result = ctx.none() if (query is None and knns) else evaluate(query, ctx)
        if alias_mask is not None:
            result = Matches(result.mask & alias_mask, result.scores)
        per_spec = [knn_matches(spec, ctx, alias_mask, query_form=False) for spec in knns]
        prepared.append((ctx, result, per_spec))
    if len(targets) > 1:
        for j, spec in enumerate(knns):
            k = _knn_k(spec, size)
            pool = [
                (-float(p[2][j].scores[d]), t, int(d))
                for t, p in enumerate(prepared)
                for d in np.nonzero(p[2][j].mask)[0]
            ]
            keep = {(t, d) for _, t, d in sorted(pool)[:k]}
            for t, p in enumerate(prepared):
                mask = p[2][j].mask
                for d in np.nonzero(mask)[0]:
                    if (t, int(d)) not in keep:
                        mask[d] = False
    out = []
    for ctx, result, per_spec in prepared:
        for spec, km in zip(knns, per_spec):
            name = spec.get("_name")
            if name is not None:
                ctx.named.add(name, km)
            both = np.where(km.mask, km.scores, 0).astype(np.float64) + np.where(result.mask, result.scores, 0)
            result = Matches(result.mask | km.mask, both.astype(np.float32))
        out.append((ctx, result))
    return out


def _knn_k(spec: dict, size: int) -> int:
    from es_semantic.testing.vectors import resolve_k

    return resolve_k(spec, size, query_form=False)[0]


# --- public entry points -------------------------------------------------------------------------


def matching_docs(target: SearchTarget, query: dict | None) -> list[StoredDoc]:
    """The documents of one target matching ``query`` (with its alias filter), in index order."""
    ctx, alias_mask = _context(target, DEFAULT_SIZE)
    mask = evaluate(query, ctx).mask
    if alias_mask is not None:
        mask = mask & alias_mask
    docs = target.snapshot.docs
    return [docs[i] for i in np.nonzero(mask)[0]]


def count(targets: list[SearchTarget], query: dict | None) -> int:
    """Number of documents matching ``query`` over all targets."""
    return sum(len(matching_docs(t, query)) for t in targets)


def validate_query(query: dict, mappings: dict) -> None:
    """Raise :class:`EsError` when ``query`` would fail to parse or build against ``mappings``."""
    empty = IndexSnapshot(index_name="_validate", mappings=mappings or {}, settings={}, docs=[])
    evaluate(query, Context(shard_data(empty), index_name="_validate"))


def _max_result_window(targets: list[SearchTarget]) -> int:
    if not targets:
        return 10_000
    return min(shard_data(t.snapshot).max_result_window() for t in targets)


def _total(count_: int, track: Any, as_int: bool) -> Any:
    if track is False:
        return -1 if as_int else None
    threshold = None if track is True else int(track)
    if threshold is not None and count_ > threshold:
        return threshold if as_int else {"value": threshold, "relation": "gte"}
    return count_ if as_int else {"value": count_, "relation": "eq"}


def _track_total_hits(body: dict, params: dict) -> Any:
    value = params.get("track_total_hits", body.get("track_total_hits", DEFAULT_TRACK_TOTAL_HITS))
    if isinstance(value, str):
        low = value.lower()
        if low == "true":
            return True
        if low == "false":
            return False
        value = int(value)
    if value is True or value is False:
        return value
    value = int(value)
    if value < -1:
        raise _illegal(f"[track_total_hits] parameter must be positive or equals to -1, got {value}")
    return True if value == -1 else value


def _slice_mask(target: SearchTarget, ordinal: int, spec: dict, pit: bool) -> np.ndarray:
    sid = int(spec.get("id", -1))
    smax = int(spec.get("max", -1))
    if smax <= 1:
        raise _illegal("max must be greater than 1")
    if sid < 0:
        raise _illegal("id must be greater than or equal to 0")
    if sid >= smax:
        raise _illegal("max must be greater than id")
    snap = target.snapshot
    n = len(snap.docs)
    fname = spec.get("field")
    if fname is None and pit:
        fname = "_shard_doc"
    memo = shard_data(snap).sort_columns
    key = ("slice", fname, smax)
    if key in memo:
        return memo[key] == sid
    if fname in (None, "_id"):
        buckets = np.array([_stable_hash(d.id) % smax for d in snap.docs], dtype=np.int64)
    elif fname in ("_shard_doc", "_doc"):
        buckets = np.arange(n, dtype=np.int64) % smax
    else:
        data = shard_data(snap)
        info = data.field(fname)
        col = data.column(info)
        buckets = np.array(
            [
                (_stable_hash(str(v[0])) if not isinstance(v[0], (int, float)) else int(v[0])) % smax if v else -1
                for v in col.values
            ],
            dtype=np.int64,
        )
    memo[key] = buckets
    return buckets == sid


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _render_fields(data: ShardData, doc: StoredDoc, specs: list[Any], docvalue: bool = False) -> dict[str, list]:
    out: dict[str, list] = {}
    names = None
    for spec in specs:
        if isinstance(spec, dict):
            for key in spec:
                if key not in ("field", "format", "include_unmapped"):
                    raise EsError(400, "x_content_parse_exception", f"[1:2] [fields] unknown field [{key}]")
            if spec.get("include_unmapped"):
                raise unsupported("[include_unmapped] in [fields]")
            pattern = spec.get("field", "")
            fmt = spec.get("format")
        else:
            pattern, fmt = str(spec), None
        if "*" in pattern:
            if names is None:
                names = all_field_names(data.mappings)
            matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        else:
            matched = [pattern]
        for name in matched:
            info = data.field(name)
            if not info.mapped:
                continue
            if info.type in ("object", "nested"):
                continue
            raw = extract_values(doc.source, info.source_path)
            vals: list[Any] = []
            for v in raw:
                if isinstance(v, dict):
                    continue
                vals.append(_render_field_value(info, v, fmt, docvalue))
            vals = [v for v in vals if v is not None]
            if info.type == "dense_vector" and raw:
                vals = [float(x) for x in raw] if not isinstance(raw[0], str) else raw
            if vals:
                out[name] = vals
    return out


def _render_field_value(info: FieldInfo, v: Any, fmt: str | None, docvalue: bool) -> Any:
    try:
        parsed = parse_field_value(info, v)
    except (ValueError, TypeError):
        return None
    if info.type in DATE_TYPES:
        return format_date(int(parsed), fmt or date_field_format(info))
    if info.type in NUMERIC_TYPES:
        if fmt:
            return _decimal_format(float(parsed), fmt)
        if info.type == "float" or info.type == "half_float":
            return float(np.float32(parsed)) if docvalue else float(parsed)
        return parsed
    if info.type == "boolean":
        return parsed
    if info.type in KEYWORD_TYPES or info.type in TEXT_TYPES:
        return parsed
    return v


def _decimal_format(value: float, fmt: str) -> str:
    # Java DecimalFormat subset: "#.0", "0.00", "#".
    if "." in fmt:
        decimals = len(fmt.split(".", 1)[1])
        return f"{value:.{decimals}f}"
    return str(int(round(value)))


def run_search(targets: list[SearchTarget], body: dict, params: dict, *, pit: bool = False) -> dict:
    """Execute a search request body over the resolved targets; returns ``{"hits": ...}``.

    ``params`` are the URL query parameters as strings. With ``pit=True`` the implicit
    ``_shard_doc`` tiebreaker is appended to the sort (and to each hit's ``sort`` values).
    """
    body = dict(body or {})
    params = dict(params or {})
    _check_body_keys(body)
    if uri_query(params) is not None:
        body["query"] = uri_query(params)
    if "search_type" in params and body.get("knn") is not None:
        raise _illegal(
            "cannot set [search_type] when using [knn] search, since the search type is determined automatically"
        )
    if str(params.get("size")) == "-1":  # deprecated spelling of "not set" in the URL (RestSearchAction)
        params.pop("size")
    size = _int_param(params.get("size", body.get("size", DEFAULT_SIZE)), "size")
    from_ = _int_param(params.get("from", body.get("from", 0)), "from")
    if size < 0:
        raise _illegal(f"[size] parameter cannot be negative, found [{size}]")
    if from_ < 0:
        raise _illegal(f"[from] parameter cannot be negative, found [{from_}]")
    if "sort" in params:
        body["sort"] = _split_param(params["sort"])
    if "docvalue_fields" in params:
        body["docvalue_fields"] = _split_param(params["docvalue_fields"])
    if "stored_fields" in params:
        body["stored_fields"] = _split_param(params["stored_fields"])
    if "min_score" in params:
        body["min_score"] = float(params["min_score"])
    if "terminate_after" in params:
        body["terminate_after"] = int(params["terminate_after"])
    as_int = _bool_param(params.get("rest_total_hits_as_int", False))
    track = _track_total_hits(body, params)
    if (
        as_int
        and track not in (True, False)
        and params.get("track_total_hits") is None
        and "track_total_hits" not in body
    ):
        track = True  # rest_total_hits_as_int implies accurate totals
    scroll = bool(params.get("scroll"))
    if scroll and size == 0:
        raise _illegal("[size] cannot be [0] in a scroll context")
    if (
        as_int
        and track is not True
        and track is not False
        and ("track_total_hits" in params or "track_total_hits" in body)
    ):
        raise _illegal(
            f"[rest_total_hits_as_int] cannot be used if the tracking of total hits is not accurate, got {track}"
        )
    terminate_after = body.get("terminate_after")
    if terminate_after is not None and int(terminate_after) <= 0:
        raise _illegal("terminateAfter must be > 0")

    with_scores = _bool_param(params.get("include_named_queries_score", False))
    if with_scores and ("retriever" in body or "rank" in body):
        raise unsupported("[include_named_queries_score] with a retriever or rank")
    agg_keys = [k for k in body if k in ("aggs", "aggregations")]  # both: the later one wins, as in Elasticsearch
    agg_nodes = aggregations.parse(body[agg_keys[-1]], agg_keys[-1]) if agg_keys else None

    retriever = body.get("retriever")
    if isinstance(retriever, dict) and len(retriever) == 1 and next(iter(retriever)) in ("standard", "knn"):
        body = _inline_retriever(body)
    agg_docs: list[np.ndarray] = []
    agg_scores: list[np.ndarray | None] = []
    if "retriever" in body or "rank" in body:
        from es_semantic.testing.retrievers import run_ranked

        cands, named, total_count, max_score, matched = run_ranked(targets, body, size, from_)
        sorted_by_field = False
        specs: list[SortSpec] = []
        if agg_nodes is not None:
            # Compound retrievers aggregate over every document any child matched; top_hits inside
            # sees the fused scores (0 for matches outside the fused window).
            fused = {(c.target, c.doc): c.score for c in cands}
            for t, target in enumerate(targets):
                docs = sorted(d for tt, d in matched if tt == t)
                agg_docs.append(np.asarray(docs, dtype=np.int64))
                sc = np.zeros(len(target.snapshot.docs), dtype=np.float32)
                for d in docs:
                    sc[d] = fused.get((t, d), 0.0)
                agg_scores.append(sc)
    else:
        unlimited = params.get("scroll") or body.get("collapse")
        res = collect(targets, body, size, pit, limit=None if unlimited else from_ + size)
        cands, named, specs = res.candidates, res.named, res.specs
        total_count, max_score, sorted_by_field = res.total, res.max_score, res.sorted_by_field
        agg_docs, agg_scores = res.agg_docs, list(res.scores)
    # Elasticsearch builds the query before it checks the result window (so query errors win).
    window = _max_result_window(targets)
    if not scroll and from_ + size > window:
        raise _illegal(
            f"Result window is too large, from + size must be less than or equal to: [{window}] but was "
            f"[{from_ + size}]. See the scroll api for a more efficient way to request large data sets. This limit "
            f"can be set by changing the [index.max_result_window] index level setting."
        )
    groups: dict[int, list[Candidate]] = {}
    collapse = body.get("collapse")
    for key in collapse or {}:
        if key not in ("field", "inner_hits", "max_concurrent_group_searches"):
            raise EsError(400, "x_content_parse_exception", f"[1:2] [collapse] unknown field [{key}]")
    if collapse:
        cands, groups = _collapse(targets, cands, collapse)
    page = cands[from_ : from_ + size]
    terminated_early = None
    if terminate_after is not None:
        terminated_early = total_count >= int(terminate_after)

    sf = _source_filter(body, params)
    stored = body.get("stored_fields")
    if isinstance(stored, str):
        stored = [stored]
    hits = []
    for c in page:
        target = targets[c.target]
        data = shard_data(target.snapshot)
        doc = target.snapshot.docs[c.doc]
        hit: dict[str, Any] = {"_index": target.snapshot.index_name}
        metadata = stored != ["_none_"]
        if metadata:
            hit["_id"] = doc.id
        if body.get("seq_no_primary_term") or str(params.get("seq_no_primary_term", "")).lower() == "true":
            hit["_seq_no"] = doc.seq_no  # what optimistic concurrency control (if_seq_no) needs
            hit["_primary_term"] = doc.primary_term
        hit["_score"] = None if (sorted_by_field and not body.get("track_scores")) else float(c.score)
        if _bool_param(params.get("version", body.get("version", False))):
            hit["_version"] = doc.version
        if _bool_param(params.get("seq_no_primary_term", body.get("seq_no_primary_term", False))):
            hit["_seq_no"] = doc.seq_no
            hit["_primary_term"] = doc.primary_term
        if c.rank is not None:
            hit["_rank"] = c.rank
        if metadata and doc.routing is not None:
            hit["_routing"] = doc.routing  # a metadata field: after _score/_rank, before _source
        show_source = sf.enabled and (stored is None or "_source" in stored)
        if show_source:
            hit["_source"] = sf.render(doc.source, target.snapshot.mappings, target.snapshot.settings)
        fields: dict[str, list] = {}
        if body.get("fields"):
            fields.update(_render_fields(data, doc, body["fields"]))
        if body.get("docvalue_fields"):
            fields.update(_render_fields(data, doc, body["docvalue_fields"], docvalue=True))
        if collapse:
            fields[collapse["field"]] = _collapse_values(targets, c, collapse["field"])
        if fields:
            hit["fields"] = fields
        if collapse and collapse.get("inner_hits"):
            hit["inner_hits"] = _inner_hits(targets, groups.get(id(c), [c]), collapse["inner_hits"], sf)
        inner = named[c.target].inner if named and hasattr(named[c.target], "inner") else None
        if inner:
            hit["inner_hits"] = render_inner_hits(inner, c.doc, target.snapshot.index_name)
        names = sorted(n for n, m in named[c.target].items() if m[c.doc]) if named else []
        if names and with_scores:
            scores = named[c.target].scores
            hit["matched_queries"] = {n: float(scores[n][c.doc]) for n in names}
        elif names:
            hit["matched_queries"] = names
        if specs:
            hit["sort"] = list(c.sort_values)
        hits.append(hit)

    result: dict[str, Any] = {"hits": {}}
    total = _total(total_count, track, as_int)
    if total is not None:
        result["hits"]["total"] = total
    result["hits"]["max_score"] = None if size == 0 else max_score
    result["hits"]["hits"] = hits
    if terminated_early is not None:
        result["terminated_early"] = terminated_early
    if agg_nodes is not None:
        result["aggregations"] = aggregations.run(agg_nodes, targets, agg_docs, agg_scores, params)
    return result


def _collapse_key(targets: list[SearchTarget], c: Candidate, field_name: str) -> Any:
    data = shard_data(targets[c.target].snapshot)
    info = data.field(field_name)
    if not info.mapped:
        return None
    if info.type in TEXT_TYPES:
        raise _illegal(f"collapse is not supported for the field [{field_name}] of the type [{info.type}]")
    vals = data.column(info).values[c.doc]
    if len(vals) > 1:
        raise _illegal(f"failed to collapse {c.doc}, the collapse field [{field_name}] must be single valued")
    return vals[0] if vals else None


def _collapse_values(targets: list[SearchTarget], c: Candidate, field_name: str) -> list:
    key = _collapse_key(targets, c, field_name)
    data = shard_data(targets[c.target].snapshot)
    info = data.field(field_name)
    if key is None:
        return [None]
    return [_render_field_value(info, key, None, True) if info.type not in KEYWORD_TYPES else key]


def _collapse(targets: list[SearchTarget], cands: list[Candidate], spec: dict) -> tuple[list[Candidate], dict]:
    """Field collapsing: the best candidate of every distinct value of ``spec['field']``."""
    field_name = spec.get("field")
    if not field_name:
        raise EsError(400, "x_content_parse_exception", "[collapse] requires [field]")
    leaders: dict[Any, Candidate] = {}
    groups: dict[int, list[Candidate]] = {}
    out = []
    for c in cands:
        key = _collapse_key(targets, c, field_name)
        key = ("__missing__",) if key is None else key
        leader = leaders.get(key)
        if leader is None:
            leaders[key] = c
            groups[id(c)] = [c]
            out.append(c)
        else:
            groups[id(leader)].append(c)
    return out, groups


def _inner_hits(targets: list[SearchTarget], members: list[Candidate], specs: Any, sf: SourceFilter) -> dict:
    out = {}
    for spec in specs if isinstance(specs, list) else [specs]:
        name = spec.get("name", "inner_hits")
        ordered = list(members)
        sort_specs = parse_sort(spec.get("sort"))
        if sort_specs:

            def key(c: Candidate) -> list:
                data = shard_data(targets[c.target].snapshot)
                keys = []
                for s in sort_specs:
                    srt = _FieldSorter(s, data, targets[c.target].snapshot.index_name)
                    value, missing = srt.value(c.target, c.doc, c.score)
                    keys.append(_key_for(value, missing, s.desc, s.missing))
                return keys

            ordered.sort(key=key)
        start = int(spec.get("from", 0))
        chosen = ordered[start : start + int(spec.get("size", 3))]
        hits = []
        for c in chosen:
            snap = targets[c.target].snapshot
            doc = snap.docs[c.doc]
            hit: dict[str, Any] = {"_index": snap.index_name, "_id": doc.id, "_score": None if sort_specs else c.score}
            if doc.routing is not None:
                hit["_routing"] = doc.routing
            if sf.enabled:
                hit["_source"] = sf.render(doc.source, snap.mappings, snap.settings)
            hits.append(hit)
        max_score = None if sort_specs or not members else max(c.score for c in members)
        out[name] = {"hits": {"total": {"value": len(members), "relation": "eq"}, "max_score": max_score, "hits": hits}}
    return out


def _inline_retriever(body: dict) -> dict:
    """A top-level standard or knn retriever is the same as the plain search it describes."""
    from es_semantic.testing.retrievers import knn_body, standard_body

    for key in ("query", "knn", "sort", "search_after", "terminate_after", "min_score", "rank"):
        if key in body:
            raise _illegal(f"cannot specify [retriever] and [{key}]")
    ((kind, spec),) = body["retriever"].items()
    out = {k: v for k, v in body.items() if k != "retriever"}
    out.update(standard_body(spec, []) if kind == "standard" else knn_body(spec, []))
    return out


_BODY_KEYS = frozenset(
    {
        "query",
        "knn",
        "retriever",
        "rank",
        "sub_searches",
        "size",
        "from",
        "sort",
        "search_after",
        "track_total_hits",
        "track_scores",
        "_source",
        "stored_fields",
        "docvalue_fields",
        "fields",
        "post_filter",
        "min_score",
        "terminate_after",
        "timeout",
        "slice",
        "pit",
        "collapse",
        "aggs",
        "aggregations",
        "version",
        "seq_no_primary_term",
        "stats",
        "_name",
        "search_type",
        "scroll",
    }
)


#: Search body keys Elasticsearch knows whose effect the server does not model: refused by name,
#: unless the value asks for nothing (``explain: false``, an empty ``ext``).
_UNMODELLED_BODY_KEYS = frozenset(
    {"highlight", "rescore", "suggest", "profile", "indices_boost", "ext", "runtime_mappings", "script_fields",
     "explain"}
)



def _check_body_keys(body: dict) -> None:
    """Elasticsearch rejects unknown top-level keys of a search body (a typo is a 400, not ignored)."""
    for key, value in body.items():
        if key in _BODY_KEYS:
            continue
        if key in _UNMODELLED_BODY_KEYS:
            if value in (False, None) or value == {} or value == []:
                continue
            raise unsupported(f"[{key}] in a search request")
        raise EsError(400, "parsing_exception", f"Unknown key for a {json_token(value)} in [{key}].")


def uri_query(params: dict) -> dict | None:
    """The query of a URI search (``q``, with ``df`` and ``default_operator``), or None without ``q``."""
    q = params.get("q")
    if q in (None, ""):
        return None
    spec: dict[str, Any] = {"query": str(q), "default_operator": params.get("default_operator") or "or"}
    if params.get("df"):
        spec["default_field"] = params["df"]
    if params.get("lenient") is not None:
        spec["lenient"] = params["lenient"] in ("", "true")
    return {"query_string": spec}


@dataclass
class Collected:
    candidates: list[Candidate]
    named: list[dict[str, np.ndarray]]
    specs: list[SortSpec]
    total: int
    max_score: float | None
    sorted_by_field: bool
    # per target: the docs aggregations collect (the query's matches before post_filter) and the scores
    agg_docs: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)


def collect(
    targets: list[SearchTarget], body: dict, size: int, pit: bool = False, limit: int | None = None
) -> Collected:
    """Matching docs of all targets as candidates in the requested order.

    With ``limit``, only the first ``limit`` candidates are materialised when the order is by score
    (a numpy sort over all matches instead of Python objects for each).
    """
    specs = parse_sort(body.get("sort"))
    if body.get("search_after") is not None and not specs and not pit:
        raise _illegal("Sort must contain at least one field.")
    if pit and not any(s.field == "_shard_doc" for s in specs):
        specs = specs + [SortSpec("_shard_doc", False)]
    explicit_sort = bool(body.get("sort"))
    sorted_by_field = explicit_sort and not any(s.field == "_score" for s in specs)
    post_filter = body.get("post_filter")
    min_score = body.get("min_score")
    terminate_after = body.get("terminate_after")
    slice_spec = body.get("slice")
    cands: list[Candidate] = []
    named: list[dict[str, np.ndarray]] = []
    sorters: list[list[_FieldSorter]] = []
    total_count = 0
    max_score: float | None = None
    by_score: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (target, doc, score) arrays
    per_target: list[tuple[int, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = []
    agg_docs: list[np.ndarray] = []
    all_scores: list[np.ndarray] = []
    for ordinal, (target, (ctx, result)) in enumerate(zip(targets, evaluate_targets(targets, body, size))):
        mask = result.mask
        if target.boost != 1.0:
            result = Matches(mask, (result.scores * np.float32(target.boost)).astype(np.float32))
        if min_score is not None:
            mask = mask & (result.scores >= np.float32(min_score))
        if slice_spec is not None:
            mask = mask & _slice_mask(target, ordinal, slice_spec, pit)
        collected = np.nonzero(mask)[0]
        if terminate_after is not None:
            collected = collected[: int(terminate_after)]
        agg_docs.append(collected)  # aggregations ignore post_filter
        all_scores.append(result.scores)
        if post_filter is not None:
            mask = mask & evaluate(post_filter, ctx).mask
            idx = np.nonzero(mask)[0]
            if terminate_after is not None:
                idx = idx[: int(terminate_after)]
        else:
            idx = collected
        named.append(ctx.named)
        tsorters = [_FieldSorter(s, ctx.data, target.snapshot.index_name) for s in specs]
        sorters.append(tsorters)
        total_count += len(idx)
        scores = result.scores
        if len(idx):
            best = float(scores[idx].max())
            if max_score is None or best > max_score:
                max_score = best
        if not specs:
            by_score.append((np.full(len(idx), ordinal, dtype=np.int64), idx.astype(np.int64), scores[idx]))
            continue
        per_target.append(
            (ordinal, idx.astype(np.int64), scores, [srt.arrays(ordinal, idx, scores) for srt in tsorters])
        )
    if specs:
        cands = _sorted_candidates(specs, sorters, per_target, body.get("search_after"), pit, limit)
    elif by_score:
        tgt = np.concatenate([b[0] for b in by_score])
        doc = np.concatenate([b[1] for b in by_score])
        sc = np.concatenate([b[2] for b in by_score]).astype(np.float32)
        order = np.lexsort((doc, tgt, -sc.astype(np.float64)))
        if limit is not None:
            order = order[:limit]
        cands = [Candidate(int(tgt[j]), int(doc[j]), float(sc[j])) for j in order.tolist()]
    if sorted_by_field and not body.get("track_scores"):
        max_score = None
    return Collected(cands, named, specs, total_count, max_score, sorted_by_field, agg_docs, all_scores)


def _sorted_candidates(
    specs: list[SortSpec], sorters: list[list[_FieldSorter]], per_target: list, after: Any, pit: bool, limit: int | None
) -> list[Candidate]:
    """Sort all matches with numpy (lexsort over per-field key arrays), apply ``search_after``
    with a binary search over the sorted order, and materialise only the requested candidates."""
    if not per_target or sum(len(p[1]) for p in per_target) == 0:
        _check_after(specs, sorters, after, pit)
        return []
    tgt = np.concatenate([np.full(len(p[1]), p[0], dtype=np.int64) for p in per_target])
    doc = np.concatenate([p[1] for p in per_target])
    keys: list[np.ndarray] = [doc, tgt]  # lexsort: last key is the primary one
    for k in range(len(specs) - 1, -1, -1):
        spec = specs[k]
        vals = np.concatenate([p[3][k][0] for p in per_target])
        miss = np.concatenate([p[3][k][1] for p in per_target])
        if vals.dtype == object:
            present = vals[~miss]
            ranks = np.zeros(len(vals), dtype=np.int64)
            if len(present):
                _, inverse = np.unique(present.astype(str), return_inverse=True)
                ranks[~miss] = inverse
            vals = ranks
        vals = np.where(miss, 0, vals)
        keys.append(-vals if spec.desc else vals)
        keys.append(np.where(miss, 0 if spec.missing == "_first" else 2, 1))
    order = np.lexsort(keys)
    ordinal_to_sorters = {p[0]: sorters[i] for i, p in enumerate(per_target)}
    scores_by_target = {p[0]: p[2] for p in per_target}

    def candidate(j: int) -> Candidate:
        t, d = int(tgt[j]), int(doc[j])
        score = float(scores_by_target[t][d])
        c = Candidate(t, d, score)
        for srt in ordinal_to_sorters[t]:
            value, missing = srt.value(t, d, score)
            c.keys.append(_key_for(value, missing, srt.spec.desc, srt.spec.missing))
            c.sort_values.append(srt.render(value, missing))
        return c

    start = 0
    after_keys = _check_after(specs, sorters, after, pit)
    if after_keys is not None:
        n_keys = len(after_keys)
        lo, hi = 0, len(order)
        while lo < hi:  # first position whose keys are strictly after search_after
            mid = (lo + hi) // 2
            if candidate(int(order[mid])).keys[:n_keys] > after_keys:
                hi = mid
            else:
                lo = mid + 1
        start = lo
    stop = len(order) if limit is None else min(len(order), start + limit)
    return [candidate(int(j)) for j in order[start:stop]]


def _check_after(specs: list[SortSpec], sorters: list[list[_FieldSorter]], after: Any, pit: bool) -> list | None:
    if after is None:
        return None
    if not isinstance(after, list):
        after = [after]
    implicit_tiebreak = pit and len(after) == len(specs) - 1 and specs[-1].field == "_shard_doc"
    if len(after) != len(specs) and not implicit_tiebreak:
        raise _illegal(f"search_after has {len(after)} value(s) but sort has {len(specs)}.")
    if not sorters:
        return None
    keys = []
    for srt, v in zip(sorters[0], after):
        value, missing = srt.parse_after(v)
        keys.append(_key_for(value, missing, srt.spec.desc, srt.spec.missing))
    return keys
