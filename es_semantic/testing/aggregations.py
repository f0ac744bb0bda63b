"""Aggregations of the test server: bucket and metric aggregations over the matching documents.

The search engine parses the request's ``aggs`` / ``aggregations`` with :func:`parse` before it
evaluates anything (a malformed aggregation is a 400 like in Elasticsearch), then calls :func:`run`
with, per target, the documents the aggregations see: every document matching the query (and a
top-level ``knn``), after ``min_score``, ``slice`` and ``terminate_after`` but *before*
``post_filter`` -- not only the returned page. Everything here reads the snapshot's parsed field
values (:class:`~es_semantic.testing.query_dsl.ShardData` columns) and never changes a snapshot;
per-field aggregation values are memoised in ``snapshot.cache``.

Supported: ``terms``, ``filter``, ``filters``, ``range``, ``histogram``, ``date_histogram``,
``missing``, ``global`` (bucket); ``min``, ``max``, ``avg``, ``sum``, ``value_count``,
``cardinality``, ``stats``, ``top_hits`` (metric); sub-aggregations to any depth. Responses follow
Elasticsearch 9's shapes (one shard, so ``doc_count_error_upper_bound`` is 0). Known differences:
``cardinality`` is exact (Elasticsearch's HyperLogLog++ is approximate above
``precision_threshold``); scripts, pipeline aggregations and the other aggregation types answer a
400 that names the unsupported part; named time zones with daylight saving time use the offset at
each value for ``fixed_interval`` rounding.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from es_semantic.testing.errors import EsError, json_token, unsupported
from es_semantic.testing.fields import (
    DATE_TYPES,
    DEFAULT_DATE_FORMAT,
    INTEGER_TYPES,
    KEYWORD_TYPES,
    NUMERIC_TYPES,
    TEXT_TYPES,
    FieldInfo,
    date_field_format,
    parse_boolean,
    parse_date_nanos,
    parse_number,
)
from es_semantic.testing.query_dsl import Context, ShardData, evaluate, shard_data
from es_semantic.testing.snapshot import SearchTarget

_CACHE_KEY = "es_semantic.aggregations"
MAX_BUCKETS = 65_536  # search.max_buckets
MAX_INNER_RESULT_WINDOW = 100  # index.max_inner_result_window
_VALID_NAME = re.compile(r"[^\[\]>]+")

SUPPORTED = (
    "terms",
    "filter",
    "filters",
    "range",
    "histogram",
    "date_histogram",
    "missing",
    "global",
    "min",
    "max",
    "avg",
    "sum",
    "value_count",
    "cardinality",
    "stats",
    "top_hits",
)
# Elasticsearch's other aggregation types (default distribution): named in "did you mean" suggestions,
# answered with "not supported by the test server" instead of "unknown".
_OTHER_ES_TYPES = (
    "adjacency_matrix", "auto_date_histogram", "avg_bucket", "boxplot", "bucket_count_ks_test",
    "bucket_correlation", "bucket_script", "bucket_selector", "bucket_sort", "categorize_text",
    "change_point", "children", "composite", "cumulative_cardinality", "cumulative_sum", "date_range",
    "derivative", "diversified_sampler", "extended_stats", "extended_stats_bucket", "frequent_item_sets",
    "geo_bounds", "geo_centroid", "geo_distance", "geo_line", "geohash_grid", "geohex_grid", "geotile_grid",
    "inference", "ip_prefix", "ip_range", "matrix_stats", "max_bucket", "median_absolute_deviation",
    "min_bucket", "moving_fn", "moving_percentiles", "multi_terms", "nested", "normalize", "parent",
    "percentile_ranks", "percentiles", "percentiles_bucket", "random_sampler", "rare_terms", "rate",
    "reverse_nested", "sampler", "scripted_metric", "serial_diff", "significant_terms", "significant_text",
    "stats_bucket", "string_stats", "sum_bucket", "t_test", "time_series", "top_metrics",
    "variable_width_histogram", "weighted_avg",
)  # fmt: skip
_BUCKET_TYPES = frozenset({"terms", "filter", "filters", "range", "histogram", "date_histogram", "missing", "global"})
_NUMERIC_ONLY = frozenset({"avg", "sum", "min", "max", "stats", "histogram", "range"})

_VS_PARAMS = ("field", "script", "missing", "format", "value_type")
PARAMS: dict[str, tuple[str, ...]] = {
    "terms": _VS_PARAMS + ("size", "shard_size", "min_doc_count", "shard_min_doc_count", "show_term_doc_count_error",
                           "order", "include", "exclude", "execution_hint", "collect_mode"),
    "histogram": _VS_PARAMS + ("interval", "offset", "min_doc_count", "order", "keyed", "extended_bounds",
                               "hard_bounds"),
    "date_histogram": _VS_PARAMS + ("calendar_interval", "fixed_interval", "time_zone", "offset", "min_doc_count",
                                    "order", "keyed", "extended_bounds", "hard_bounds"),
    "range": _VS_PARAMS + ("ranges", "keyed"),
    "missing": ("field", "script", "missing", "value_type"),
    "min": _VS_PARAMS, "max": _VS_PARAMS, "avg": _VS_PARAMS, "sum": _VS_PARAMS, "stats": _VS_PARAMS,
    "value_count": _VS_PARAMS,
    "cardinality": _VS_PARAMS + ("precision_threshold", "rehash", "execution_hint"),
    "filters": ("filters", "other_bucket", "other_bucket_key"),
    "top_hits": ("from", "size", "sort", "_source", "track_scores", "version", "seq_no_primary_term", "explain",
                 "stored_fields", "docvalue_fields", "fields", "script_fields", "highlight"),
}  # fmt: skip


# --- errors ------------------------------------------------------------------------------------


def _parsing(reason: str) -> EsError:
    return EsError(400, "parsing_exception", reason)


def _illegal(reason: str) -> EsError:
    return EsError(400, "illegal_argument_exception", reason)


def _field_failed(agg_type: str, param: str, cause: EsError | str) -> EsError:
    """An ObjectParser field failure: ``[terms] failed to parse field [size]`` caused by the reason."""
    inner = cause if isinstance(cause, EsError) else _illegal(cause)
    caused = {"type": inner.type, "reason": inner.reason}
    return EsError(
        400, "x_content_parse_exception", f"[{agg_type}] failed to parse field [{param}]",
        caused_by=caused, root_cause=[{"type": "x_content_parse_exception",
                                       "reason": f"[{agg_type}] failed to parse field [{param}]"}],
    )  # fmt: skip


def _not_supported(what: str) -> EsError:
    return unsupported(what)


def suggest(unknown: str, candidates: list[str] | tuple[str, ...]) -> str:
    """Elasticsearch's ``SuggestingErrorOnUnknown.suggest``: Lucene Levenshtein similarity above 0.5."""
    scored = []
    for cand in candidates:
        sim = _levenshtein_similarity(unknown, cand)
        if sim > 0.5:
            scored.append((-sim, cand))
    if not scored:
        return ""
    keys = [c for _, c in sorted(scored)]
    return f" did you mean [{keys[0]}]?" if len(keys) == 1 else f" did you mean any of [{', '.join(keys)}]?"


def _levenshtein_similarity(a: str, b: str) -> float:
    # org.apache.lucene.search.spell.LevenshteinDistance: 1 - distance / max(len)
    if not a or not b:
        return 1.0 if a == b else 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))



# --- parsing -----------------------------------------------------------------------------------


@dataclass
class AggNode:
    """One parsed aggregation: its name, type, body, sub-aggregations and ``meta``."""

    name: str
    type: str
    params: Any
    subs: list[AggNode] = field(default_factory=list)
    meta: dict | None = None


def parse(spec: Any, key: str = "aggs") -> list[AggNode]:
    """Parse an ``aggs`` object like ``AggregatorFactories.parseAggregators`` (errors included)."""
    if not isinstance(spec, dict):
        raise _parsing(f"Unknown key for a {json_token(spec)} in [{key}].")
    nodes = []
    for name, definition in spec.items():
        if not _VALID_NAME.fullmatch(name):
            raise _parsing(
                f"Invalid aggregation name [{name}]. Aggregation names can contain any character except '[', ']', "
                "and '>'"
            )
        if not isinstance(definition, dict):
            raise _parsing(
                f"Aggregation definition for [{name} starts with a [{json_token(definition)}], expected a [START_OBJECT]."
            )
        agg_type = None
        body: Any = None
        subs: list[AggNode] | None = None
        meta = None
        for fname, value in definition.items():
            if not isinstance(value, dict):
                raise _parsing(f"Expected [START_OBJECT] under [{fname}], but got a [{json_token(value)}] in [{name}]")
            if fname == "meta":
                meta = value
            elif fname in ("aggs", "aggregations"):
                if subs is not None:
                    raise _parsing(f"Found two sub aggregation definitions under [{name}]")
                subs = parse(value, fname)
            else:
                if agg_type is not None:
                    raise _parsing(f"Found two aggregation type definitions in [{name}]: [{agg_type}] and [{fname}]")
                if fname not in SUPPORTED:
                    if fname in _OTHER_ES_TYPES:
                        raise _not_supported(f"aggregation type [{fname}]")
                    raise EsError(
                        400,
                        "parsing_exception",
                        f"Unknown aggregation type [{fname}]{suggest(fname, SUPPORTED + _OTHER_ES_TYPES)}",
                        caused_by={"type": "named_object_not_found_exception", "reason": f"unknown field [{fname}]"},
                    )
                agg_type, body = fname, value
        if agg_type is None:
            raise _parsing(f"Missing definition for aggregation [{name}]")
        node = AggNode(name, agg_type, body, subs or [], meta)
        _validate(node)
        nodes.append(node)
    return nodes


def _validate(node: AggNode) -> None:
    """Request-level checks Elasticsearch makes while parsing (before any shard runs)."""
    t, p = node.type, node.params
    if node.subs and t not in _BUCKET_TYPES:
        raise EsError(
            500, "aggregation_initialization_exception",
            f"Aggregator [{node.name}] of type [{t}] cannot accept sub-aggregations",
        )  # fmt: skip
    if t == "filter":
        return
    allowed = PARAMS.get(t, ())
    for key in p:
        if key not in allowed:
            if t == "filters":
                raise _parsing(f"Unknown key for a {json_token(p[key])} in [{node.name}]: [{key}].")
            raise EsError(400, "x_content_parse_exception", f"[{t}] unknown field [{key}]{suggest(key, allowed)}")
    if "script" in p or "script_fields" in p:
        raise _not_supported("[script] in aggregations")
    if t == "global" and p:
        raise _parsing(f"Unknown key for a {json_token(next(iter(p.values())))} in [{node.name}]: [{next(iter(p))}].")
    if t in ("terms", "histogram", "date_histogram", "range", "missing", "min", "max", "avg", "sum", "stats",
             "value_count", "cardinality") and "field" not in p:  # fmt: skip
        raise _illegal("Required one of fields [field, script], but none were specified. ")
    if t == "terms":
        for key in ("size", "shard_size"):
            if key in p and _as_int(p[key], t, key) <= 0:
                raise _field_failed(t, key, f"[{key}] must be greater than 0. Found [{p[key]}] in [{node.name}]")
        for key in ("include", "exclude"):
            v = p.get(key)
            if isinstance(v, dict):
                raise _not_supported(f"[{key}] with partitions")
        _parse_order(p.get("order"), t)
    if t == "histogram":
        interval = p.get("interval")
        if interval is None or _as_float(interval, t, "interval") <= 0:
            if interval is None:
                raise _illegal(f"[interval] must be >0 for histogram aggregation [{node.name}]")
            raise _field_failed(t, "interval", f"[interval] must be >0 for histogram aggregation [{node.name}]")
        _parse_order(p.get("order"), t)
    if t == "date_histogram":
        _date_interval(node)
        if "time_zone" in p:
            _zone(p["time_zone"])
        _parse_order(p.get("order"), t)
    if t in ("terms", "histogram", "date_histogram") and _as_int(p.get("min_doc_count", 0), t, "min_doc_count") < 0:
        raise _field_failed(t, "min_doc_count", f"[minDocCount] must be greater than or equal to 0. Found "
                                                f"[{p['min_doc_count']}] in [{node.name}]")
    if t == "range":
        ranges = p.get("ranges")
        if not isinstance(ranges, list) or not ranges:
            raise _illegal(f"No [ranges] specified for the [{node.name}] aggregation")
        for r in ranges:
            if not isinstance(r, dict):
                raise _parsing(f"[range] expected an object for a range but got a [{json_token(r)}]")
            for k in r:
                if k not in ("key", "from", "to"):
                    raise EsError(400, "x_content_parse_exception",
                                  f"[range] unknown field [{k}]{suggest(k, ('key', 'from', 'to'))}")
    if t == "filters":
        filters = p.get("filters")
        if not filters:
            raise _illegal("[filters] cannot be empty.")
        if not isinstance(filters, (dict, list)):
            raise _parsing(f"Unknown key for a {json_token(filters)} in [{node.name}]: [filters].")
    if t == "cardinality" and _as_int(p.get("precision_threshold", 0), t, "precision_threshold") < 0:
        raise _field_failed(t, "precision_threshold", f"[precisionThreshold] must be greater than or equal to 0. "
                                                      f"Found [{p['precision_threshold']}] in [{node.name}]")
    if t == "top_hits":
        for key in ("from", "size"):
            if key in p and _as_int(p[key], t, key) < 0:
                raise _field_failed(t, key, f"[{key}] must be greater than or equal to 0. Found [{p[key]}] in "
                                            f"[{node.name}]")


def _as_int(value: Any, agg_type: str, key: str) -> int:
    if isinstance(value, bool):
        raise _field_failed(agg_type, key, f"[{key}] expected a number but got {value}")
    try:
        if isinstance(value, float) and value != int(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise _field_failed(agg_type, key, f'For input string: "{value}"') from None


def _as_float(value: Any, agg_type: str, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool):
        raise _field_failed(agg_type, key, f'For input string: "{value}"')
    return number


def _parse_order(spec: Any, agg_type: str) -> list[tuple[str, bool]]:
    """``order`` as [(key, ascending)], with Elasticsearch's ``_key`` asc tie-breaker appended."""
    if spec is None:
        return []
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for item in items:
        if not isinstance(item, dict) or not item:
            raise _parsing("Must specify at least one field for [order]")
        for key, direction in item.items():
            if not isinstance(direction, str):
                raise _parsing(f"Unexpected token [{json_token(direction)}] for [order]")
            if direction.lower() not in ("asc", "desc"):
                raise _parsing(f"Unknown order direction [{direction}]")
            out.append((key, direction.lower() == "asc"))
    return out


# --- values --------------------------------------------------------------------------------------


_VALUE_TYPES = {
    "string": "string", "keyword": "string", "ip": "string", "long": "long", "integer": "long", "short": "long",
    "byte": "long", "numeric": "double", "number": "double", "double": "double", "float": "double",
    "date": "date", "boolean": "boolean",
}  # fmt: skip


@dataclass
class _Source:
    """The values one aggregation reads from one field of one target."""

    kind: str  # string / long / double / date / boolean
    ftype: str  # the mapped type ("keyword", "long", ...), or the value_type of an unmapped field
    info: FieldInfo | None
    distinct: list[tuple]  # per doc: distinct values, sorted (what bucket aggregations count)
    values: list[tuple]  # per doc: every value (doc values keep numeric duplicates)
    missing: tuple = ()  # the ``missing`` value, parsed, for docs without a value
    date_format: str | None = None

    def doc_distinct(self, doc: int) -> tuple:
        return self.distinct[doc] or self.missing

    def doc_values(self, doc: int) -> tuple:
        return self.values[doc] or self.missing


def _kind_of(ftype: str) -> str | None:
    if ftype in KEYWORD_TYPES:
        return "string"
    if ftype in INTEGER_TYPES:
        return "long"
    if ftype in NUMERIC_TYPES:
        return "double"
    if ftype in DATE_TYPES:
        return "date"
    if ftype == "boolean":
        return "boolean"
    return None


def _normalise(info: FieldInfo, v: Any) -> Any:
    t = info.type
    if t in DATE_TYPES:
        return int(v) // 1_000_000  # epoch millis, as aggregations report dates
    if t == "boolean":
        return int(bool(v))
    if t == "float":
        return float(np.float32(v))
    if t == "half_float":
        return float(np.float16(v))
    if t == "scaled_float":
        factor = float(info.mapping.get("scaling_factor", 1.0))
        return round(float(v) * factor) / factor
    if t in INTEGER_TYPES:
        return int(v)
    if t in NUMERIC_TYPES:
        return float(v)
    return v


def _columns(data: ShardData, info: FieldInfo) -> tuple[list[tuple], list[tuple]]:
    memo = data.snapshot.cache.setdefault(_CACHE_KEY, {})
    key = ("values", info.name)
    cached = memo.get(key)
    if cached is not None:
        return cached
    if info.type in TEXT_TYPES:  # fielddata: the analysed terms
        postings = data.text(info).postings
        per_doc: list[set] = [set() for _ in range(data.n)]
        for term, (docs, _) in postings.items():
            for d in docs.tolist():
                per_doc[d].add(term)
        distinct = [tuple(sorted(s)) for s in per_doc]
        cached = (distinct, distinct)
    else:
        col = data.column(info)
        values = []
        distinct = []
        for vals in col.values:
            if not vals:
                values.append(())
                distinct.append(())
                continue
            norm = tuple(_normalise(info, v) for v in vals)
            values.append(norm)
            distinct.append(tuple(sorted(set(norm))) if len(norm) > 1 else norm)
        if info.type in KEYWORD_TYPES:
            values = distinct  # SortedSetDocValues: each keyword once per document
        cached = (distinct, values)
    memo[key] = cached
    return cached


def _parse_missing(kind: str, value: Any, info: FieldInfo | None, date_fmt: str | None) -> Any:
    try:
        if kind == "string":
            return ("true" if value else "false") if isinstance(value, bool) else str(value)
        if kind == "long":
            return int(parse_number(value, "long"))
        if kind == "double":
            num = float(parse_number(value, "double"))
            return _normalise(info, num) if info is not None and info.type in NUMERIC_TYPES else num
        if kind == "date":
            return parse_date_nanos(value, date_fmt or DEFAULT_DATE_FORMAT) // 1_000_000
        if kind == "boolean":
            return int(parse_boolean(value))
    except (TypeError, ValueError):
        raise _illegal(f"failed to parse missing value [{value}]") from None
    return value


# --- dates ---------------------------------------------------------------------------------------

_EPOCH = _dt.datetime(1970, 1, 1)
_FIXED_ZONE = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?$")


class _Zone:
    """A time zone: a fixed offset (``Z``, ``+01:00``) or an IANA zone (``Europe/Paris``)."""

    def __init__(self, fixed_seconds: int | None, tzinfo: Any = None) -> None:
        self.fixed = fixed_seconds
        self.tzinfo = tzinfo

    def offset_at_utc(self, ms: int) -> int:
        """Offset in seconds at the UTC instant ``ms``."""
        if self.fixed is not None:
            return self.fixed
        moment = _dt.datetime.fromtimestamp(ms / 1000.0, tz=self.tzinfo)
        return int(moment.utcoffset().total_seconds())

    def local_to_utc(self, local_ms: int) -> int:
        if self.fixed is not None:
            return local_ms - self.fixed * 1000
        naive = _EPOCH + _dt.timedelta(milliseconds=local_ms)
        aware = naive.replace(tzinfo=self.tzinfo)
        return local_ms - int(aware.utcoffset().total_seconds()) * 1000


UTC = _Zone(0)


def _zone(spec: Any) -> _Zone:
    text = str(spec).strip()
    if text in ("Z", "UTC", "GMT", "UT", "+00:00", "-00:00", "Etc/UTC", "Etc/GMT"):
        return UTC
    m = _FIXED_ZONE.match(text)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        seconds = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60 + int(m.group(4) or 0)
        return _Zone(sign * seconds)
    try:
        from zoneinfo import ZoneInfo

        return _Zone(None, ZoneInfo(text))
    except Exception:  # noqa: BLE001 - any lookup failure is an unknown zone
        raise _field_failed("date_histogram", "time_zone", f"Unknown time-zone ID: {text}") from None


def _offset_text(seconds: int, style: str) -> str:
    if seconds == 0 and style != "Z":
        return "Z"
    sign = "+" if seconds >= 0 else "-"
    h, m = divmod(abs(seconds) // 60, 60)
    if style == "X":
        return f"{sign}{h:02d}" + (f"{m:02d}" if m else "")
    if style in ("XX", "Z", "ZZ"):
        return f"{sign}{h:02d}{m:02d}"
    return f"{sign}{h:02d}:{m:02d}"


_NAMED_DATE_PATTERNS = {
    "basic_date": "yyyyMMdd",
    "strict_date": "yyyy-MM-dd",
    "date": "yyyy-MM-dd",
    "year_month_day": "yyyy-MM-dd",
    "strict_year_month_day": "yyyy-MM-dd",
    "year_month": "yyyy-MM",
    "strict_year_month": "yyyy-MM",
    "year": "yyyy",
    "strict_year": "yyyy",
    "date_hour": "yyyy-MM-dd'T'HH",
    "strict_date_hour": "yyyy-MM-dd'T'HH",
    "date_hour_minute": "yyyy-MM-dd'T'HH:mm",
    "strict_date_hour_minute": "yyyy-MM-dd'T'HH:mm",
    "date_hour_minute_second": "yyyy-MM-dd'T'HH:mm:ss",
    "strict_date_hour_minute_second": "yyyy-MM-dd'T'HH:mm:ss",
    "date_hour_minute_second_millis": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "strict_date_hour_minute_second_millis": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "date_hour_minute_second_fraction": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "strict_date_hour_minute_second_fraction": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "hour_minute": "HH:mm",
    "strict_hour_minute": "HH:mm",
    "hour_minute_second": "HH:mm:ss",
    "strict_hour_minute_second": "HH:mm:ss",
    "basic_date_time": "yyyyMMdd'T'HHmmss.SSSXX",
    "basic_date_time_no_millis": "yyyyMMdd'T'HHmmssXX",
    "date_time_no_millis": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "strict_date_time_no_millis": "yyyy-MM-dd'T'HH:mm:ssXXX",
}
_ISO_PRINTERS = (
    "strict_date_optional_time", "date_optional_time", "strict_date_optional_time_nanos", "date_time",
    "strict_date_time", "iso8601",
)  # fmt: skip
_DATE_TOKEN = re.compile(r"'[^']*'|y+|u+|M+|d+|H+|h+|m+|s+|S+|X+|Z+|E+|a|.")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def format_date_ms(ms: int, fmt: str | None, zone: _Zone = UTC) -> str:
    """Format epoch millis like Elasticsearch's date ``DocValueFormat`` (first format of ``a||b``, in ``zone``)."""
    first = (fmt or DEFAULT_DATE_FORMAT).split("||")[0].strip()
    if first == "epoch_millis":
        return str(ms)
    if first == "epoch_second":
        return str(ms // 1000)
    offset = zone.offset_at_utc(ms)
    local = _EPOCH + _dt.timedelta(milliseconds=ms + offset * 1000)
    if first in _ISO_PRINTERS:
        return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond // 1000:03d}" + _offset_text(offset, "XXX")
    pattern = _NAMED_DATE_PATTERNS.get(first, first)
    out = []
    for tok in _DATE_TOKEN.findall(pattern):
        c, n = tok[0], len(tok)
        if c == "'":
            out.append(tok[1:-1] if n > 2 else "'")
        elif c in "yu":
            out.append(f"{local.year % 100:02d}" if n == 2 else f"{local.year:0{max(n, 4)}d}")
        elif c == "M":
            out.append(_MONTHS[local.month - 1][:3] if n == 3 else _MONTHS[local.month - 1] if n > 3
                       else f"{local.month:0{n}d}")  # fmt: skip
        elif c == "d":
            out.append(f"{local.day:0{n}d}")
        elif c == "H":
            out.append(f"{local.hour:0{n}d}")
        elif c == "h":
            out.append(f"{(local.hour % 12) or 12:0{n}d}")
        elif c == "a":
            out.append("AM" if local.hour < 12 else "PM")
        elif c == "m":
            out.append(f"{local.minute:0{n}d}")
        elif c == "s":
            out.append(f"{local.second:0{n}d}")
        elif c == "S":
            out.append(f"{local.microsecond // 1000:03d}000000"[:n])
        elif c == "E":
            out.append(_DAYS[local.weekday()][:3] if n <= 3 else _DAYS[local.weekday()])
        elif c == "X":
            out.append(_offset_text(offset, tok[:3]))
        elif c == "Z":
            out.append(_offset_text(offset, "Z") if n < 5 else _offset_text(offset, "XXX"))
        else:
            out.append(tok)
    return "".join(out)


def _parse_date_ms(value: Any, fmt: str | None, now_ms: int) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value)
    if text.startswith("now"):
        from es_semantic.testing.query_dsl import _date_math

        return _date_math(text, now_ms) // 1_000_000
    if "||" in text:
        text = text.split("||")[0]
    try:
        return parse_date_nanos(text, fmt or DEFAULT_DATE_FORMAT) // 1_000_000
    except ValueError:
        raise EsError(400, "parse_exception", f"failed to parse date field [{value}] with format "
                                              f"[{fmt or DEFAULT_DATE_FORMAT}]") from None


_CALENDAR_UNITS = {
    "second": "second", "1s": "second", "minute": "minute", "1m": "minute", "hour": "hour", "1h": "hour",
    "day": "day", "1d": "day", "week": "week", "1w": "week", "month": "month", "1M": "month",
    "quarter": "quarter", "1q": "quarter", "year": "year", "1y": "year",
}  # fmt: skip
_TIME_UNITS_MS = {"nanos": 1e-6, "micros": 1e-3, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TIME_VALUE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)$")


def _time_value_ms(text: str, setting: str) -> float:
    m = _TIME_VALUE.match(str(text).strip())
    if not m:
        raise EsError(400, "parse_exception", f"failed to parse setting [{setting}] with value [{text}] as a time "
                                              f"value: unit is missing or unrecognized")
    return float(m.group(1)) * _TIME_UNITS_MS[m.group(2)]


def _date_interval(node: AggNode) -> tuple[str, Any]:
    """("calendar", unit) or ("fixed", millis) of a date_histogram."""
    p = node.params
    cal, fixed = p.get("calendar_interval"), p.get("fixed_interval")
    if cal is not None and fixed is not None:
        raise _field_failed("date_histogram", "fixed_interval",
                            "Cannot use [fixed_interval] with [calendar_interval] configuration option.")
    if cal is not None:
        unit = _CALENDAR_UNITS.get(str(cal))
        if unit is None:
            raise _field_failed("date_histogram", "calendar_interval",
                                f"The supplied interval [{cal}] could not be parsed as a calendar interval.")
        return "calendar", unit
    if fixed is not None:
        try:
            ms = _time_value_ms(str(fixed), "date_histogram.fixedInterval")
        except EsError as exc:
            raise _field_failed("date_histogram", "fixed_interval", exc) from None
        if ms <= 0:
            raise _illegal("Zero or negative time interval not supported")
        return "fixed", ms
    raise _illegal("Invalid interval specified, must be non-null and non-empty")


def _signed_offset_ms(value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    return int(sign * _time_value_ms(text, "date_histogram.offset"))


def _floor_calendar(local_ms: int, unit: str) -> int:
    if unit == "second":
        return local_ms - local_ms % 1000
    if unit == "minute":
        return local_ms - local_ms % 60_000
    if unit == "hour":
        return local_ms - local_ms % 3_600_000
    day = local_ms // 86_400_000
    if unit == "day":
        return day * 86_400_000
    if unit == "week":  # ISO weeks start on Monday; 1970-01-01 was a Thursday
        return (day - (day + 3) % 7) * 86_400_000
    date = _dt.date(1970, 1, 1) + _dt.timedelta(days=day)
    if unit == "month":
        start = date.replace(day=1)
    elif unit == "quarter":
        start = date.replace(month=(date.month - 1) // 3 * 3 + 1, day=1)
    else:
        start = date.replace(month=1, day=1)
    return (start - _dt.date(1970, 1, 1)).days * 86_400_000


def _next_calendar(local_ms: int, unit: str) -> int:
    step = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000}
    if unit in step:
        return local_ms + step[unit]
    date = _dt.date(1970, 1, 1) + _dt.timedelta(days=local_ms // 86_400_000)
    months = {"month": 1, "quarter": 3, "year": 12}[unit]
    total = date.year * 12 + date.month - 1 + months
    nxt = _dt.date(total // 12, total % 12 + 1, 1)
    return (nxt - _dt.date(1970, 1, 1)).days * 86_400_000


class _DateRounding:
    def __init__(self, kind: str, interval: Any, zone: _Zone, offset_ms: int) -> None:
        self.kind, self.interval, self.zone, self.offset = kind, interval, zone, offset_ms

    def round(self, ms: int) -> int:
        shifted = ms - self.offset
        off = self.zone.offset_at_utc(shifted) * 1000
        local = shifted + off
        if self.kind == "calendar":
            key_local = _floor_calendar(local, self.interval)
            return self.zone.local_to_utc(key_local) + self.offset
        step = self.interval
        key_local = math.floor(local / step) * step
        return int(key_local - off + self.offset)

    def next(self, key: int) -> int:
        if self.kind == "fixed":
            return int(key + self.interval)
        shifted = key - self.offset
        local = shifted + self.zone.offset_at_utc(shifted) * 1000
        return self.zone.local_to_utc(_next_calendar(local, self.interval)) + self.offset

    def count_between(self, lo: int, hi: int) -> float:
        """A cheap upper estimate of the number of buckets in [lo, hi] (for the max_buckets check)."""
        if self.kind == "fixed":
            return (hi - lo) / self.interval + 1
        size = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000, "week": 604_800_000,
                "month": 28 * 86_400_000, "quarter": 89 * 86_400_000, "year": 365 * 86_400_000}[self.interval]
        return (hi - lo) / size + 2


# --- number formatting -----------------------------------------------------------------------------


def java_double(x: float) -> str:
    """Java's ``Double.toString`` (shortest digits; scientific notation below 1e-3 and from 1e7)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        text = repr(float(x))  # Python prints this range in plain notation, always with a "."
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(float(x))).as_tuple()
    shown = "".join(map(str, digits)).rstrip("0") or "0"
    power = int(exponent) + len(digits) - 1
    return ("-" if sign else "") + shown[0] + "." + (shown[1:] or "0") + f"E{power}"


def decimal_format(value: float, pattern: str) -> str:
    """A subset of Java's ``DecimalFormat``: literal prefix/suffix, ``0``/``#`` digits, grouping, HALF_EVEN."""
    m = re.search(r"[#0][#0,]*(?:\.[#0]*)?|\.[#0]+", pattern)
    if not m:
        return pattern
    prefix, num, suffix = pattern[: m.start()], m.group(0), pattern[m.end():]
    int_part, _, frac_part = num.partition(".")
    min_int = int_part.count("0")
    group = len(int_part) - int_part.rfind(",") - 1 if "," in int_part else 0
    min_frac = frac_part.count("0")
    max_frac = len(frac_part)
    if math.isnan(value) or math.isinf(value):
        return prefix + ("NaN" if math.isnan(value) else "∞") + suffix
    d = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-max_frac), rounding=ROUND_HALF_EVEN)
    negative = d < 0
    d = abs(d)
    text = f"{d:f}"
    ip, _, fp = text.partition(".")
    fp = fp.rstrip("0")
    fp = fp.ljust(min_frac, "0")
    ip = ip.lstrip("0")
    ip = ip.rjust(min_int, "0")
    if group and len(ip) > group:
        chunks = []
        while len(ip) > group:
            chunks.insert(0, ip[-group:])
            ip = ip[:-group]
        ip = ",".join([ip] + chunks)
    body = ip + ("." + fp if fp else "")
    if not body:
        body = "0"
    return ("-" if negative and body.strip("0.,") else "") + prefix + body + suffix


# --- execution -------------------------------------------------------------------------------------


DocSet = list  # per target: np.ndarray of doc indices (sorted)


class _Run:
    """One request's aggregation run over its targets."""

    def __init__(self, targets: list[SearchTarget], scores: list[np.ndarray | None], params: dict) -> None:
        self.targets = targets
        self.datas = [shard_data(t.snapshot) for t in targets]
        self.scores = scores
        self.as_int = str(params.get("rest_total_hits_as_int", "false")).lower() in ("true", "")
        self.typed_keys = str(params.get("typed_keys", "false")).lower() in ("true", "")
        self.buckets = 0
        self.now_ms = int(_dt.datetime.now(_dt.timezone.utc).timestamp() * 1000)
        self._masks: dict[tuple[int, str], np.ndarray] = {}

    def index_name(self, t: int) -> str:
        return self.targets[t].snapshot.index_name

    def first_index(self) -> str:
        return self.index_name(0) if self.targets else ""

    def add_buckets(self, n: float) -> None:
        self.buckets += int(n)
        if self.buckets > MAX_BUCKETS:
            raise EsError.shard_failure(
                self.first_index(), 400, "too_many_buckets_exception",
                f"Trying to create too many buckets. Must be less than or equal to: [{MAX_BUCKETS}] but this number "
                "of buckets was exceeded. This limit can be set by changing the [search.max_buckets] cluster level "
                "setting.", max_buckets=MAX_BUCKETS,
            )  # fmt: skip

    def query_mask(self, t: int, query: Any) -> np.ndarray:
        import json

        key = (t, json.dumps(query, sort_keys=True, default=str))
        mask = self._masks.get(key)
        if mask is None:
            ctx = Context(self.datas[t], index_name=self.index_name(t), now_ms=self.now_ms)
            mask = evaluate(query, ctx).mask
            self._masks[key] = mask
        return mask

    def source(self, node: AggNode, t: int) -> _Source | None:
        """The values of ``node``'s field in target ``t`` (None: unmapped and no ``missing``)."""
        p = node.params
        name = p["field"]
        data = self.datas[t]
        info = data.field(str(name))
        missing = p.get("missing")
        index = self.index_name(t)
        if not info.mapped or info.type in ("object", "nested"):
            vt = p.get("value_type")
            if missing is None:
                return None
            kind = _VALUE_TYPES.get(str(vt), None) if vt is not None else None
            if kind is None:
                kind = "string" if node.type in ("terms", "value_count", "cardinality", "missing") else "double"
                if node.type == "date_histogram":
                    kind = "date"
            empty: list[tuple] = [()] * data.n
            fmt = DEFAULT_DATE_FORMAT if kind == "date" else None
            return _Source(kind, str(vt or kind), None, empty, empty, (_parse_missing(kind, missing, None, fmt),),
                           date_format=fmt)  # fmt: skip
        if info.type in TEXT_TYPES:
            if not info.mapping.get("fielddata"):
                raise EsError.shard_failure(
                    index, 400, "illegal_argument_exception",
                    f"Fielddata is disabled on [{name}] in [{index}]. Text fields are not optimised for operations "
                    "that require per-document field data like aggregations and sorting, so these operations are "
                    "disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on "
                    f"[{name}] in order to load field data by uninverting the inverted index. Note that this can use "
                    "significant memory.",
                )  # fmt: skip
            kind = "string"
        else:
            kind = _kind_of(info.type)
        if kind is None or (kind == "string" and node.type in _NUMERIC_ONLY) or (
            node.type == "date_histogram" and kind not in ("date", "long", "double")
        ):
            raise EsError.shard_failure(
                index, 400, "illegal_argument_exception",
                f"Field [{name}] of type [{info.type}] is not supported for aggregation [{node.type}]",
            )  # fmt: skip
        distinct, values = _columns(data, info)
        date_fmt = date_field_format(info) if kind == "date" else None
        miss = () if missing is None else (_parse_missing(kind, missing, info, date_fmt),)
        return _Source(kind, info.type, info, distinct, values, miss, date_format=date_fmt)


def run(
    nodes: list[AggNode],
    targets: list[SearchTarget],
    docs: list[np.ndarray],
    scores: list[np.ndarray | None] | None = None,
    params: dict | None = None,
) -> dict[str, Any]:
    """Run parsed aggregations over ``docs`` (per target: the doc indices the aggregations collect)."""
    r = _Run(targets, scores or [None] * len(targets), params or {})
    docset = [np.asarray(d, dtype=np.int64) for d in docs]
    return _run_level(r, nodes, docset, top=True)


def _run_level(r: _Run, nodes: list[AggNode], docset: DocSet, top: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in nodes:
        if node.type == "global" and not top:
            raise EsError.shard_failure(
                r.first_index(), 500, "aggregation_execution_exception",
                f"Aggregation [{node.name}] cannot have a global sub-aggregation [{node.name}]. Global aggregations "
                "can only be defined as top level aggregations",
            )  # fmt: skip
        body, typed = _HANDLERS[node.type](r, node, docset)
        result: dict[str, Any] = {}
        if node.meta is not None:
            result["meta"] = node.meta
        result.update(body)
        out[f"{typed}#{node.name}" if r.typed_keys else node.name] = result
    return out


def _subs(r: _Run, node: AggNode, docset: DocSet) -> dict[str, Any]:
    return _run_level(r, node.subs, docset) if node.subs else {}


def _count(docset: DocSet) -> int:
    return int(sum(len(d) for d in docset))


def _sources(r: _Run, node: AggNode) -> list[_Source | None]:
    return [r.source(node, t) for t in range(len(r.targets))]


# --- single-bucket aggregations -------------------------------------------------------------------


def _filter_docs(r: _Run, docset: DocSet, query: Any) -> DocSet:
    out = []
    for t, docs in enumerate(docset):
        if not len(docs):
            out.append(docs)
            continue
        out.append(docs[r.query_mask(t, query)[docs]])
    return out


def _agg_filter(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    query = node.params if node.params else None
    sub = _filter_docs(r, docset, query)
    return {"doc_count": _count(sub), **_subs(r, node, sub)}, "filter"


def _agg_global(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    everything = [np.arange(d.n, dtype=np.int64) for d in r.datas]
    return {"doc_count": _count(everything), **_subs(r, node, everything)}, "global"


def _agg_missing(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    sub = []
    for t, docs in enumerate(docset):
        src = r.source(node, t)
        if src is None:
            sub.append(docs)
            continue
        keep = [d for d in docs.tolist() if not src.distinct[d]] if not src.missing else []
        sub.append(np.asarray(keep, dtype=np.int64))
    return {"doc_count": _count(sub), **_subs(r, node, sub)}, "missing"


def _agg_filters(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    p = node.params
    filters = p["filters"]
    keyed = isinstance(filters, dict)
    other_key = p.get("other_bucket_key")
    other = bool(p.get("other_bucket", other_key is not None))
    other_key = "_other_" if other_key is None else str(other_key)
    items = sorted(filters.items()) if keyed else [(str(i), q) for i, q in enumerate(filters)]
    r.add_buckets(len(items) + (1 if other else 0))
    matched_any = [np.zeros(len(d), dtype=bool) for d in docset]
    buckets_keyed: dict[str, Any] = {}
    buckets_list: list[Any] = []
    for key, query in items:
        sub = []
        for t, docs in enumerate(docset):
            hit = r.query_mask(t, query)[docs] if len(docs) else np.zeros(0, dtype=bool)
            matched_any[t] |= hit
            sub.append(docs[hit])
        bucket = {"doc_count": _count(sub), **_subs(r, node, sub)}
        if keyed:
            buckets_keyed[key] = bucket
        else:
            buckets_list.append(bucket)
    if other:
        sub = [docs[~m] for docs, m in zip(docset, matched_any)]
        bucket = {"doc_count": _count(sub), **_subs(r, node, sub)}
        if keyed:
            buckets_keyed[other_key] = bucket
        else:
            buckets_list.append(bucket)
    return {"buckets": buckets_keyed if keyed else buckets_list}, "filters"


# --- terms ---------------------------------------------------------------------------------------


def _include_filter(r: _Run, node: AggNode, kind: str, sources: list[_Source | None]) -> Callable[[Any], bool]:
    p = node.params
    inc, exc = p.get("include"), p.get("exclude")
    if inc is None and exc is None:
        return lambda k: True
    is_ip = any(s is not None and s.ftype == "ip" for s in sources)
    if (isinstance(inc, str) or isinstance(exc, str)) and (kind != "string" or is_ip):
        advice = ("Use an array of values for include/exclude clauses" if is_ip else
                  "Use an array of numeric values for include/exclude clauses used to filter numeric fields")
        raise EsError.shard_failure(
            r.first_index(), 500, "aggregation_execution_exception",
            f"Aggregation [{node.name}] cannot support regular expression style include/exclude settings as they "
            f"can only be applied to string fields. {advice}",
        )  # fmt: skip
    src = next((s for s in sources if s is not None), None)

    def values(spec: Any) -> Callable[[Any], bool]:
        if isinstance(spec, str):
            rx = re.compile(spec)
            return lambda k: rx.fullmatch(str(k)) is not None
        wanted = set()
        for v in spec if isinstance(spec, list) else [spec]:
            try:
                wanted.add(_parse_missing(kind, v, src.info if src else None, src.date_format if src else None))
            except EsError:
                continue
        return lambda k: k in wanted

    inc_f = values(inc) if inc is not None else (lambda k: True)
    exc_f = values(exc) if exc is not None else (lambda k: False)
    return lambda k: inc_f(k) and not exc_f(k)


def _merged_kind(r: _Run, node: AggNode, sources: list[_Source | None]) -> str | None:
    kinds = {s.kind for s in sources if s is not None}
    if not kinds:
        return None
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"long", "double", "boolean"}:
        return "double" if "double" in kinds else "long"
    raise EsError.shard_failure(
        r.first_index(), 400, "illegal_argument_exception",
        f"Merging/Reducing the aggregations failed when computing the aggregation [{node.name}] because the field "
        "you gave in the aggregation query existed as two different types in two different indices",
    )  # fmt: skip


def _key_json(kind: str, key: Any) -> Any:
    if kind == "double":
        return float(key)
    if kind in ("long", "date", "boolean"):
        return int(key)
    return key


def _key_as_string(kind: str, key: Any, fmt: str | None, date_fmt: str | None) -> str | None:
    if kind == "date":
        return format_date_ms(int(key), fmt or date_fmt)
    if kind == "boolean":
        return "true" if key else "false"
    if fmt and kind in ("long", "double"):
        return decimal_format(float(key), fmt)
    return None


def _agg_terms(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    p = node.params
    sources = _sources(r, node)
    kind = _merged_kind(r, node, sources)
    if kind is None:
        return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": []}, "umterms"
    size = int(p.get("size", 10))
    min_doc_count = int(p.get("min_doc_count", 1))
    keep = _include_filter(r, node, kind, sources)
    need_docs = bool(node.subs)
    counts: dict[Any, int] = {}
    members: dict[Any, list[list[int]]] = {}
    n_targets = len(docset)
    for t, docs in enumerate(docset):
        src = sources[t]
        if src is None:
            continue
        distinct, missing = src.distinct, src.missing
        convert = float if kind == "double" and src.kind != "double" else None
        for d in docs.tolist():
            for k in distinct[d] or missing:
                if convert is not None:
                    k = convert(k)
                counts[k] = counts.get(k, 0) + 1
                if need_docs:
                    lists = members.get(k)
                    if lists is None:
                        lists = members[k] = [[] for _ in range(n_targets)]
                    lists[t].append(d)
    counts = {k: c for k, c in counts.items() if keep(k)}
    if min_doc_count == 0:
        for t, src in enumerate(sources):
            if src is None:
                continue
            for vals in src.distinct:
                for k in vals:
                    k = float(k) if kind == "double" else k
                    if k not in counts and keep(k):
                        counts[k] = 0
    keys = [k for k, c in counts.items() if c >= min_doc_count]
    order = _parse_order(p.get("order"), "terms") or [("_count", False)]
    sub_results: dict[Any, dict] = {}

    def bucket_docs(k: Any) -> DocSet:
        lists = members.get(k)
        if lists is None:
            return [np.zeros(0, dtype=np.int64) for _ in range(n_targets)]
        return [np.asarray(x, dtype=np.int64) for x in lists]

    if any(key not in ("_count", "_key") for key, _ in order):
        for k in keys:
            sub_results[k] = _subs(r, node, bucket_docs(k))
    keys = _sort_buckets(r, node, keys, order, lambda k: counts[k], lambda k: sub_results.get(k, {}))
    shown = keys[:size]
    other = sum(counts[k] for k in keys[size:])
    r.add_buckets(len(shown))
    src0 = next(s for s in sources if s is not None)
    fmt = p.get("format")
    buckets = []
    for k in shown:
        b: dict[str, Any] = {"key": _key_json(kind, k)}
        kas = _key_as_string(kind, k, fmt, src0.date_format)
        if kas is not None:
            b["key_as_string"] = kas
        b["doc_count"] = counts[k]
        if p.get("show_term_doc_count_error"):
            b["doc_count_error_upper_bound"] = 0
        b.update(sub_results[k] if k in sub_results else _subs(r, node, bucket_docs(k)))
        buckets.append(b)
    typed = {"string": "sterms", "double": "dterms"}.get(kind, "lterms")
    return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": other, "buckets": buckets}, typed


def _sort_buckets(
    r: _Run,
    node: AggNode,
    keys: list,
    order: list[tuple[str, bool]],
    count: Callable[[Any], int],
    subs: Callable[[Any], dict],
) -> list:
    """Sort with Elasticsearch's compound order (a ``_key`` ascending tie-breaker unless the last is ``_key``)."""
    if not order or order[-1][0] != "_key":
        order = order + [("_key", True)]
    for key, _ in order:
        if key not in ("_key", "_count"):
            _sort_value(r, node, key, {})  # validates the path even when there are no buckets
    out = list(keys)
    for key, asc in reversed(order):
        if key == "_key":
            out.sort(reverse=not asc)
        elif key == "_count":
            out.sort(key=count, reverse=not asc)
        else:
            out.sort(key=lambda k, key=key: _sort_value(r, node, key, subs(k)), reverse=not asc)
    return out


def _sort_value(r: _Run, node: AggNode, path: str, subs: dict) -> tuple:
    """The value a sub-aggregation ``path`` (``agg``, ``agg.metric``, ``single_bucket>agg``) sorts by.

    Like Java's ``Double.compare``: empty values sort as NaN (avg) or +/-infinity (min/max), NaN last."""
    parts = path.split(">")
    current = subs
    sub_nodes = node.subs
    for i, part in enumerate(parts):
        name, _, metric = part.partition(".")
        if name.endswith("]") and "[" in name:
            name, _, metric = name[:-1].partition("[")
        child = next((n for n in sub_nodes if n.name == name), None)
        if child is None:
            raise _invalid_path(r, path, f"The provided aggregation [{name}] either does not exist, or is a pipeline "
                                      "aggregation and cannot be used to sort the buckets.")
        result = current.get(name, {})
        last = i == len(parts) - 1
        if child.type in ("filter", "missing", "global"):
            if last:
                value = result.get("doc_count", 0) if metric in ("", "doc_count", "_count") else None
                if value is None:
                    raise _invalid_path(r, path, f"Unknown value key [{metric}] for single-bucket aggregation [{name}]. "
                                              "There are no values.")  # fmt: skip
                return _double_key(value, "value")
            current, sub_nodes = result, child.subs
            continue
        if not last or child.type not in ("min", "max", "avg", "sum", "value_count", "cardinality", "stats"):
            raise _invalid_path(r, path, f"Buckets can only be sorted on a sub-aggregator path that is built out of zero "
                                      "or more single-bucket aggregations within the path and a final single-bucket "
                                      f"or a metrics aggregation at the path end. [{name}] is not single-bucket.")
        if child.type == "stats":
            if metric not in ("count", "min", "max", "avg", "sum"):
                raise _invalid_path(r, path, f"The provided aggregation [{name}] is a multi-value metrics aggregation "
                                          "and needs a value key to sort by." if not metric else
                                          f"Unknown metric name [{metric}] on multi-value metrics aggregation [{name}]")
            return _double_key(result.get(metric), metric)
        if metric not in ("", "value"):
            raise _invalid_path(r, path, f"Unknown value key [{metric}] for single-value metric aggregation [{name}]. "
                                      "Either use [value] as value key or drop the key all together")
        return _double_key(result.get("value"), child.type)
    return (0, 0.0)


def _double_key(value: Any, what: str) -> tuple:
    if value is None:
        value = {"min": math.inf, "max": -math.inf}.get(what, math.nan)
    value = float(value)
    return (1, 0.0) if math.isnan(value) else (0, value)


def _invalid_path(r: _Run, path: str, reason: str) -> EsError:
    return EsError.shard_failure(r.first_index(), 400, "aggregation_execution_exception",
                                 f"Invalid aggregation order path [{path}]. {reason}")


# --- histograms ------------------------------------------------------------------------------------


def _bounds(p: dict, key: str, parse: Callable[[Any], float]) -> tuple[float | None, float | None]:
    spec = p.get(key)
    if spec is None:
        return None, None
    if not isinstance(spec, dict):
        raise _parsing(f"[{key}] expected an object")
    lo = spec.get("min")
    hi = spec.get("max")
    lo = parse(lo) if lo is not None else None
    hi = parse(hi) if hi is not None else None
    if lo is not None and hi is not None and hi < lo:
        raise _illegal(f"[{key}.min][{lo}] cannot be greater than [{key}.max][{hi}].")
    return lo, hi


def _histogram_common(
    r: _Run,
    node: AggNode,
    docset: DocSet,
    rounding: Callable[[float], Any],
    next_key: Callable[[Any], Any],
    count_between: Callable[[Any, Any], float],
    ext: tuple[Any, Any],
    hard: tuple[Any, Any],
    render_key: Callable[[Any], tuple[Any, str | None]],
    to_value: Callable[[_Source, Any], Any],
    sources: list[_Source | None],
) -> list[dict] | dict:
    p = node.params
    min_doc_count = int(p.get("min_doc_count", 0))
    counts: dict[Any, int] = {}
    members: dict[Any, list[list[int]]] = {}
    n_targets = len(docset)
    need_docs = bool(node.subs)
    hard_lo, hard_hi = hard
    for t, docs in enumerate(docset):
        src = sources[t]
        if src is None:
            continue
        for d in docs.tolist():
            seen = set()
            for v in src.doc_values(d):
                k = rounding(to_value(src, v))
                if k in seen:
                    continue
                if (hard_lo is not None and k < hard_lo) or (hard_hi is not None and k > hard_hi):
                    continue
                seen.add(k)
                counts[k] = counts.get(k, 0) + 1
                if need_docs:
                    lists = members.get(k)
                    if lists is None:
                        lists = members[k] = [[] for _ in range(n_targets)]
                    lists[t].append(d)
    keys = sorted(counts)
    if min_doc_count == 0:
        lo = keys[0] if keys else None
        hi = keys[-1] if keys else None
        ext_lo, ext_hi = ext  # extended_bounds widen the filled range, hard_bounds cap it
        if ext_lo is not None:
            ext_lo = rounding(ext_lo if hard_lo is None else max(ext_lo, hard_lo))
            lo = ext_lo if lo is None or ext_lo < lo else lo
        if ext_hi is not None:
            ext_hi = rounding(ext_hi if hard_hi is None else min(ext_hi, hard_hi))
            hi = ext_hi if hi is None or ext_hi > hi else hi
        if lo is not None and hi is not None:
            if count_between(lo, hi) > MAX_BUCKETS - r.buckets:
                r.add_buckets(count_between(lo, hi))
            filled = []
            k = lo
            while k <= hi:
                filled.append(k)
                counts.setdefault(k, 0)
                k = next_key(k)
            keys = sorted(set(filled) | set(keys))
    keys = [k for k in keys if counts[k] >= min_doc_count and not (hard_lo is not None and k < hard_lo)
            and not (hard_hi is not None and k > hard_hi)]
    order = _parse_order(p.get("order"), node.type)
    sub_results: dict[Any, dict] = {}

    def bucket_docs(k: Any) -> DocSet:
        lists = members.get(k)
        if lists is None:
            return [np.zeros(0, dtype=np.int64) for _ in range(n_targets)]
        return [np.asarray(x, dtype=np.int64) for x in lists]

    if order and order != [("_key", True)]:
        if any(key not in ("_count", "_key") for key, _ in order):
            for k in keys:
                sub_results[k] = _subs(r, node, bucket_docs(k))
        keys = _sort_buckets(r, node, keys, order, lambda k: counts[k], lambda k: sub_results.get(k, {}))
    r.add_buckets(len(keys))
    keyed = bool(p.get("keyed", False))
    out_list: list[dict] = []
    out_keyed: dict[str, dict] = {}
    for k in keys:
        key_json, key_str = render_key(k)
        b: dict[str, Any] = {}
        if key_str is not None:
            b["key_as_string"] = key_str
        b["key"] = key_json
        b["doc_count"] = counts[k]
        b.update(sub_results[k] if k in sub_results else _subs(r, node, bucket_docs(k)))
        if keyed:
            out_keyed[key_str if key_str is not None else java_double(float(key_json))] = b
        else:
            out_list.append(b)
    return out_keyed if keyed else out_list


def _agg_histogram(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    p = node.params
    interval = float(p["interval"])
    offset = float(p.get("offset", 0))
    sources = _sources(r, node)

    def rnd(v: float) -> float:
        return math.floor((v - offset) / interval) * interval + offset

    def nxt(k: float) -> float:
        return rnd(k + interval + interval / 2)

    ext = _bounds(p, "extended_bounds", float)
    hard = _bounds(p, "hard_bounds", float)
    fmt = p.get("format")

    def render(k: float) -> tuple[Any, str | None]:
        return float(k), (decimal_format(k, fmt) if fmt else None)

    buckets = _histogram_common(r, node, docset, rnd, nxt, lambda lo, hi: (hi - lo) / interval + 1, ext, hard, render,
                                lambda src, v: float(v), sources)  # fmt: skip
    return {"buckets": buckets}, "histogram"


def _agg_date_histogram(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    p = node.params
    kind, interval = _date_interval(node)
    zone = _zone(p["time_zone"]) if "time_zone" in p else UTC
    offset = _signed_offset_ms(p["offset"]) if "offset" in p else 0
    rounding = _DateRounding(kind, interval, zone, offset)
    sources = _sources(r, node)
    src0 = next((s for s in sources if s is not None), None)
    field_fmt = src0.date_format if src0 is not None else None
    fmt = p.get("format")
    numeric_only = src0 is not None and src0.kind != "date"

    def parse_bound(v: Any) -> int:
        return _parse_date_ms(v, fmt or field_fmt, r.now_ms)

    ext = _bounds(p, "extended_bounds", parse_bound)
    hard = _bounds(p, "hard_bounds", parse_bound)

    def render(k: int) -> tuple[Any, str | None]:
        if numeric_only and not fmt:
            return int(k), None
        return int(k), format_date_ms(int(k), fmt or field_fmt, zone)

    buckets = _histogram_common(r, node, docset, rounding.round, rounding.next, rounding.count_between, ext, hard,
                                render, lambda src, v: int(v), sources)  # fmt: skip
    return {"buckets": buckets}, "date_histogram"


# --- range ---------------------------------------------------------------------------------------


def _agg_range(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    p = node.params
    sources = _sources(r, node)
    src0 = next((s for s in sources if s is not None), None)
    is_date = src0 is not None and src0.kind == "date"
    fmt = p.get("format")
    date_fmt = fmt or (src0.date_format if src0 is not None else None)
    ftype = src0.ftype if src0 is not None else "double"

    def bound(v: Any) -> float:
        if is_date:
            return float(_parse_date_ms(v, date_fmt, r.now_ms))
        try:
            return float(v)
        except (TypeError, ValueError):
            raise _illegal(f'For input string: "{v}"') from None

    def stored(x: float) -> float:  # NumberFieldType#reduceToStoredPrecision
        if ftype == "float":
            return float(np.float32(x))
        if ftype == "half_float":
            return float(np.float16(x))
        return x

    ranges = []
    for spec in p["ranges"]:
        lo = bound(spec["from"]) if spec.get("from") is not None else -math.inf
        hi = bound(spec["to"]) if spec.get("to") is not None else math.inf
        ranges.append((lo, hi, spec.get("key")))
    ranges.sort(key=lambda x: (x[0], x[1]))  # AbstractRangeBuilder sorts by (from, to)
    r.add_buckets(len(ranges))

    def fmt_value(x: float) -> str:
        if is_date:
            return format_date_ms(int(x), date_fmt)
        return decimal_format(x, fmt) if fmt else java_double(x)

    keyed = bool(p.get("keyed", False))
    out_list: list[dict] = []
    out_keyed: dict[str, dict] = {}
    for lo, hi, custom in ranges:
        slo, shi = stored(lo), stored(hi)
        sub = []
        for t, docs in enumerate(docset):
            src = sources[t]
            if src is None:
                sub.append(np.zeros(0, dtype=np.int64))
                continue
            keep = [d for d in docs.tolist() if any(slo <= float(v) < shi for v in src.doc_values(d))]
            sub.append(np.asarray(keep, dtype=np.int64))
        key = custom if custom is not None else (
            ("*" if math.isinf(lo) else fmt_value(lo)) + "-" + ("*" if math.isinf(hi) else fmt_value(hi)))
        b: dict[str, Any] = {} if keyed else {"key": key}
        if not math.isinf(lo):
            b["from"] = float(lo)
            if is_date or fmt:
                b["from_as_string"] = fmt_value(lo)
        if not math.isinf(hi):
            b["to"] = float(hi)
            if is_date or fmt:
                b["to_as_string"] = fmt_value(hi)
        b["doc_count"] = _count(sub)
        b.update(_subs(r, node, sub))
        if keyed:
            out_keyed[key] = b
        else:
            out_list.append(b)
    return {"buckets": out_keyed if keyed else out_list}, "date_range" if is_date else "range"


# --- metrics -------------------------------------------------------------------------------------


class _KahanSum:
    """Elasticsearch's CompensatedSum (Kahan summation) of doubles."""

    def __init__(self) -> None:
        self.value = 0.0
        self.delta = 0.0

    def add(self, x: float) -> None:
        if not math.isfinite(x):
            self.value += x
            return
        if math.isfinite(self.value):
            corrected = x - self.delta
            new = self.value + corrected
            self.delta = (new - self.value) - corrected
            self.value = new


def _numeric_values(r: _Run, node: AggNode, docset: DocSet) -> tuple[list[float], _Source | None]:
    vals: list[float] = []
    src0 = None
    for t, docs in enumerate(docset):
        src = r.source(node, t)
        if src is None:
            continue
        src0 = src0 or src
        for d in docs.tolist():
            for v in src.doc_values(d):
                vals.append(float(v))
    return vals, src0


def _as_string(src: _Source | None, node: AggNode, value: float) -> str | None:
    fmt = node.params.get("format")
    if src is not None and src.kind == "date":
        return format_date_ms(int(value), fmt or src.date_format)
    if src is not None and src.kind == "boolean":  # DocValueFormat.BOOLEAN formats any non-zero value as true
        return "true" if value else "false"
    if fmt:
        return decimal_format(value, fmt)
    return None


def _single_value(node: AggNode, src: _Source | None, value: float | None) -> dict:
    out: dict[str, Any] = {"value": value}
    if value is not None:
        s = _as_string(src, node, value)
        if s is not None:
            out["value_as_string"] = s
    return out


def _agg_min(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    vals, src = _numeric_values(r, node, docset)
    return _single_value(node, src, min(vals) if vals else None), "min"


def _agg_max(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    vals, src = _numeric_values(r, node, docset)
    return _single_value(node, src, max(vals) if vals else None), "max"


def _agg_sum(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    vals, src = _numeric_values(r, node, docset)
    total = _KahanSum()
    for v in vals:
        total.add(v)
    return _single_value(node, src, total.value), "sum"


def _agg_avg(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    vals, src = _numeric_values(r, node, docset)
    total = _KahanSum()
    for v in vals:
        total.add(v)
    return _single_value(node, src, total.value / len(vals) if vals else None), "avg"


def _agg_stats(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    vals, src = _numeric_values(r, node, docset)
    if not vals:
        return {"count": 0, "min": None, "max": None, "avg": None, "sum": 0.0}, "stats"
    total = _KahanSum()
    for v in vals:
        total.add(v)
    lo, hi, avg = min(vals), max(vals), total.value / len(vals)
    out: dict[str, Any] = {"count": len(vals), "min": lo, "max": hi, "avg": avg, "sum": total.value}
    if _as_string(src, node, lo) is not None:
        for name, v in (("min", lo), ("max", hi), ("avg", avg), ("sum", total.value)):
            out[f"{name}_as_string"] = _as_string(src, node, v)
    return out, "stats"


def _agg_value_count(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    n = 0
    for t, docs in enumerate(docset):
        src = r.source(node, t)
        if src is None:
            continue
        for d in docs.tolist():
            n += len(src.doc_values(d))
    return {"value": n}, "value_count"


def _agg_cardinality(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    seen: set = set()
    for t, docs in enumerate(docset):
        src = r.source(node, t)
        if src is None:
            continue
        for d in docs.tolist():
            seen.update(src.doc_distinct(d))
    return {"value": len(seen)}, "cardinality"


def _agg_top_hits(r: _Run, node: AggNode, docset: DocSet) -> tuple[dict, str]:
    from es_semantic.testing import search_engine as se

    p = node.params
    size = int(p.get("size", 3))
    start = int(p.get("from", 0))
    if start + size > MAX_INNER_RESULT_WINDOW:
        raise EsError.shard_failure(
            r.first_index(), 400, "illegal_argument_exception",
            f"Top hits result window is too large, the top hits aggregator [{node.name}]'s from + size must be less "
            f"than or equal to: [{MAX_INNER_RESULT_WINDOW}] but was [{start + size}]. This limit can be set by "
            "changing the [index.max_inner_result_window] index level setting.",
        )  # fmt: skip
    specs = se.parse_sort(p.get("sort"))
    sorted_by_field = bool(specs) and not any(s.field == "_score" for s in specs)
    rows = []
    for t, docs in enumerate(docset):
        scores = r.scores[t]
        data = r.datas[t]
        sorters = [se._FieldSorter(s, data, r.index_name(t)) for s in specs]
        for d in docs.tolist():
            score = float(scores[d]) if scores is not None else 0.0
            keys, rendered = [], []
            for srt in sorters:
                value, missing = srt.value(t, d, score)
                keys.append(se._key_for(value, missing, srt.spec.desc, srt.spec.missing))
                rendered.append(srt.render(value, missing))
            rows.append((keys if specs else [(-score,)], t, d, score, rendered))
    rows.sort(key=lambda x: (x[0], x[1], x[2]))
    total = len(rows)
    sf = se._source_filter({"_source": p["_source"]} if "_source" in p else {}, {})
    track = bool(p.get("track_scores"))
    hits = []
    for keys, t, d, score, rendered in rows[start : start + size]:
        snap = r.targets[t].snapshot
        doc = snap.docs[d]
        hit: dict[str, Any] = {"_index": snap.index_name, "_id": doc.id}
        if p.get("version"):
            hit["_version"] = doc.version
        if p.get("seq_no_primary_term"):
            hit["_seq_no"] = doc.seq_no
            hit["_primary_term"] = doc.primary_term
        hit["_score"] = None if sorted_by_field and not track else score
        if doc.routing is not None:
            hit["_routing"] = doc.routing
        if sf.enabled:
            hit["_source"] = sf.render(doc.source, snap.mappings, snap.settings)
        fields: dict[str, Any] = {}
        if p.get("fields"):
            fields.update(se._render_fields(r.datas[t], doc, p["fields"]))
        if p.get("docvalue_fields"):
            fields.update(se._render_fields(r.datas[t], doc, p["docvalue_fields"], docvalue=True))
        if fields:
            hit["fields"] = fields
        if specs:
            hit["sort"] = rendered
        hits.append(hit)
    if sorted_by_field and not track:
        max_score = None
    else:
        max_score = max((row[3] for row in rows), default=None)
    tot: Any = total if r.as_int else {"value": total, "relation": "eq"}
    return {"hits": {"total": tot, "max_score": max_score, "hits": hits}}, "top_hits"


_HANDLERS: dict[str, Callable[[_Run, AggNode, DocSet], tuple[dict, str]]] = {
    "terms": _agg_terms,
    "filter": _agg_filter,
    "filters": _agg_filters,
    "range": _agg_range,
    "histogram": _agg_histogram,
    "date_histogram": _agg_date_histogram,
    "missing": _agg_missing,
    "global": _agg_global,
    "min": _agg_min,
    "max": _agg_max,
    "avg": _agg_avg,
    "sum": _agg_sum,
    "value_count": _agg_value_count,
    "cardinality": _agg_cardinality,
    "stats": _agg_stats,
    "top_hits": _agg_top_hits,
}
