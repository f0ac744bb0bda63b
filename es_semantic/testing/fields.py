"""Mapping lookups, source value extraction and date handling for the search engine."""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

NUMERIC_TYPES = frozenset(
    {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
)
INTEGER_TYPES = frozenset({"long", "integer", "short", "byte", "unsigned_long"})
DATE_TYPES = frozenset({"date", "date_nanos"})
TEXT_TYPES = frozenset({"text", "match_only_text", "semantic_text"})
KEYWORD_TYPES = frozenset({"keyword", "constant_keyword", "wildcard", "version", "ip"})


@dataclass(frozen=True)
class FieldInfo:
    """A mapped (or unmapped) field as the query engine needs it."""

    name: str  # full dotted name, e.g. "title.raw"
    source_path: str  # where the value lives in _source (the parent for a multi-field)
    type: str | None  # None when unmapped
    mapping: dict  # the field's mapping (empty when unmapped)

    @property
    def mapped(self) -> bool:
        return self.type is not None


def _walk(properties: dict, parts: list[str]) -> tuple[dict, str] | None:
    """Find the mapping of ``parts`` under ``properties``; returns (mapping, source_path)."""
    # Try the longest dotted key first so that object fields and dotted names both resolve.
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        node = properties.get(key)
        if node is None:
            continue
        rest = parts[i:]
        if not rest:
            return node, key
        if "properties" in node:
            found = _walk(node["properties"], rest)
            if found is not None:
                return found[0], key + "." + found[1]
        sub = node.get("fields")
        if sub and len(rest) == 1 and rest[0] in sub:
            return sub[rest[0]], key  # a multi-field reads its parent's value
    return None


def field_info(mappings: dict, name: str) -> FieldInfo:
    found = _walk(mappings.get("properties", {}) or {}, name.split("."))
    if found is None:
        return FieldInfo(name, name, None, {})
    node, source_path = found
    ftype = node.get("type", "object" if "properties" in node else None)
    return FieldInfo(name, source_path, ftype, node)


VECTOR_TYPES = frozenset({"dense_vector", "sparse_vector", "rank_vectors"})


def vector_field_paths(mappings: dict) -> list[str]:
    """The ``_source`` paths of the vector fields (``dense_vector``, ``sparse_vector``, ``rank_vectors``)."""
    out: list[str] = []

    def rec(props: dict, prefix: str) -> None:
        for key, node in (props or {}).items():
            if not isinstance(node, dict):
                continue
            if node.get("type") in VECTOR_TYPES:
                out.append(prefix + key)
            elif "properties" in node:
                rec(node["properties"], prefix + key + ".")

    rec(mappings.get("properties", {}) or {}, "")
    return out


def all_field_names(mappings: dict) -> list[str]:
    """Every leaf field of the mapping (with multi-fields), dotted."""
    out: list[str] = []

    def rec(props: dict, prefix: str) -> None:
        for key, node in props.items():
            full = prefix + key
            if "properties" in node and node.get("type", "object") in ("object", "nested"):
                rec(node["properties"], full + ".")
                continue
            out.append(full)
            for sub in node.get("fields", {}) or {}:
                out.append(full + "." + sub)

    rec(mappings.get("properties", {}) or {}, "")
    return out


def extract_values(source: Any, path: str) -> list[Any]:
    """All leaf values at dotted ``path`` in ``source`` (arrays flattened, dotted keys understood)."""
    out: list[Any] = []
    _extract(source, path.split("."), out)
    return out


def _extract(node: Any, parts: list[str], out: list[Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _extract(item, parts, out)
        return
    if not parts:
        if node is not None:
            out.append(node)
        return
    if not isinstance(node, dict):
        return
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in node:
            _extract(node[key], parts[i:], out)


# --- dates --------------------------------------------------------------------------------

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
DEFAULT_DATE_FORMAT = "strict_date_optional_time||epoch_millis"
#: Elasticsearch's ISO 8601 date formats (date and time, optional parts).
_ISO_FORMATS = (
    "strict_date_optional_time",
    "date_optional_time",
    "strict_date_optional_time_nanos",
    "date_time",
    "strict_date_time",
    "iso8601",
)

_ISO = re.compile(
    r"^(?P<y>[+-]?\d{4,9})(?:-(?P<mo>\d{1,2})(?:-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2})(?::(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:[.,](?P<f>\d{1,9}))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$"
)


def _to_epoch_nanos(y: int, mo: int, d: int, h: int, mi: int, s: int, nanos: int, offset_min: int = 0) -> int:
    try:
        moment = _dt.datetime(y, mo, d, h, mi, s, tzinfo=_dt.timezone.utc)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    delta = moment - _EPOCH
    seconds = delta.days * 86400 + delta.seconds - offset_min * 60
    return seconds * 1_000_000_000 + nanos


def _parse_iso(text: str) -> int:
    m = _ISO.match(text.strip())
    if not m:
        raise ValueError(text)
    g = m.groupdict()
    frac = (g["f"] or "").ljust(9, "0")[:9]
    offset = 0
    tz = g["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0))
    return _to_epoch_nanos(
        int(g["y"]),
        int(g["mo"] or 1),
        int(g["d"] or 1),
        int(g["h"] or 0),
        int(g["mi"] or 0),
        int(g["s"] or 0),
        int(frac),
        offset,
    )


_JAVA_TOKEN = re.compile(r"'[^']*'|y+|u+|M+|d+|H+|m+|s+|S+|X+|Z+|.")


@lru_cache(maxsize=256)
def _java_pattern(pattern: str) -> tuple[re.Pattern, tuple[str, ...]]:
    regex_parts: list[str] = []
    groups: list[str] = []
    for tok in _JAVA_TOKEN.findall(pattern):
        c = tok[0]
        if c == "'":
            regex_parts.append(re.escape(tok[1:-1]))
        elif c in "yu":
            regex_parts.append(r"([+-]?\d{4,9})")
            groups.append("y")
        elif c in "MdHms":
            regex_parts.append(r"(\d{1,2})")
            groups.append(c)
        elif c == "S":
            regex_parts.append(rf"(\d{{1,{max(len(tok), 9)}}})")
            groups.append("S")
        elif c in "XZ":
            regex_parts.append(r"(Z|[+-]\d{2}:?\d{2})")
            groups.append("X")
        else:
            regex_parts.append(re.escape(tok))
    return re.compile("^" + "".join(regex_parts) + "$"), tuple(groups)


def _parse_java(text: str, pattern: str) -> int:
    rx, groups = _java_pattern(pattern)
    m = rx.match(text)
    if not m:
        raise ValueError(text)
    vals = {"y": 1970, "M": 1, "d": 1, "H": 0, "m": 0, "s": 0}
    nanos = 0
    offset = 0
    for g, v in zip(groups, m.groups()):
        if g == "S":
            nanos = int(v.ljust(9, "0")[:9])
        elif g == "X":
            if v != "Z":
                digits = v[1:].replace(":", "")
                offset = (1 if v[0] == "+" else -1) * (int(digits[:2]) * 60 + int(digits[2:]))
        else:
            vals[g] = int(v)
    return _to_epoch_nanos(vals["y"], vals["M"], vals["d"], vals["H"], vals["m"], vals["s"], nanos, offset)


def parse_date_nanos(value: Any, fmt: str | None = None) -> int:
    """Parse a date value with an Elasticsearch ``format`` (``a||b`` alternatives) to epoch nanos.

    Raises ``ValueError`` when no alternative matches.
    """
    fmt = fmt or DEFAULT_DATE_FORMAT
    if isinstance(value, bool):
        raise ValueError(str(value))
    for alt in fmt.split("||"):
        alt = alt.strip()
        try:
            if alt == "epoch_millis":
                if isinstance(value, (int, float)):
                    return int(round(float(value) * 1_000_000))
                if re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
                    return int(round(float(value) * 1_000_000))
                continue
            if alt == "epoch_second":
                if isinstance(value, (int, float)) or re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
                    return int(round(float(value) * 1_000_000_000))
                continue
            if isinstance(value, (int, float)):
                continue
            text = str(value)
            if alt in _ISO_FORMATS or alt in ("date", "strict_date"):
                return _parse_iso(text)
            if alt in ("yyyy-MM-dd", "basic_date") or any(ch.isalpha() for ch in alt):
                return _parse_java(text, alt)
        except ValueError:
            continue
    if isinstance(value, (int, float)) and "epoch_millis" not in fmt:
        # Elasticsearch accepts numbers as epoch millis for any date field.
        return int(round(float(value) * 1_000_000))
    raise ValueError(f"failed to parse date field [{value}] with format [{fmt}]")


def format_date(nanos: int, fmt: str | None, *, nanos_resolution: bool = False) -> Any:
    """Format epoch nanos for a sort value or ``fields`` output with an Elasticsearch format."""
    first = (fmt or DEFAULT_DATE_FORMAT).split("||")[0].strip()
    if first == "epoch_millis":
        return str(nanos // 1_000_000)
    if first == "epoch_second":
        return str(nanos // 1_000_000_000)
    seconds, rem = divmod(nanos, 1_000_000_000)
    moment = _EPOCH + _dt.timedelta(seconds=seconds)
    if first in _ISO_FORMATS:
        base = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if first == "strict_date_optional_time_nanos" and rem % 1_000_000:
            frac = f"{rem:09d}".rstrip("0")
            frac = frac.ljust(3, "0")
        else:
            frac = f"{rem // 1_000_000:03d}"
        return f"{base}.{frac}Z"
    out: list[str] = []
    for tok in _JAVA_TOKEN.findall(first):
        c = tok[0]
        if c == "'":
            out.append(tok[1:-1])
        elif c in "yu":
            out.append(f"{moment.year:04d}")
        elif c == "M":
            out.append(f"{moment.month:0{len(tok)}d}")
        elif c == "d":
            out.append(f"{moment.day:0{len(tok)}d}")
        elif c == "H":
            out.append(f"{moment.hour:0{len(tok)}d}")
        elif c == "m":
            out.append(f"{moment.minute:0{len(tok)}d}")
        elif c == "s":
            out.append(f"{moment.second:0{len(tok)}d}")
        elif c == "S":
            out.append(f"{rem:09d}"[: len(tok)])
        elif c in "XZ":
            out.append("Z")
        else:
            out.append(tok)
    return "".join(out)


def parse_number(value: Any, ftype: str) -> float | int:
    """Parse a numeric field value as Elasticsearch coerces it (strings allowed)."""
    if isinstance(value, bool):
        raise ValueError(f'For input string: "{value}"')
    if isinstance(value, (int, float)):
        num: float | int = value
    else:
        text = str(value).strip()
        try:
            num = int(text)
        except ValueError:
            num = float(text)
    if ftype in INTEGER_TYPES:
        if isinstance(num, float):
            if math.isnan(num) or math.isinf(num):
                raise ValueError(str(value))
            num = int(num)  # Elasticsearch truncates decimals for integer fields (coerce)
        return int(num)
    return float(num)


def parse_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True"):
        return True
    if value in ("false", "False", ""):
        return False
    raise ValueError(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


def date_field_format(info: FieldInfo) -> str:
    return info.mapping.get("format", DEFAULT_DATE_FORMAT)


