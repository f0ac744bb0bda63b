"""The test server's index store: indices, settings, mappings, aliases, documents, refresh, PIT and scroll.

Everything lives in memory. Writes go to each index's live document table under the index lock;
searches read an immutable :class:`IndexSnapshot` that is rebuilt on refresh (explicit, ``refresh=``
on a write, or the periodic ``index.refresh_interval``), which gives Elasticsearch's near-real-time
visibility. GET by id reads the live table (real-time), like Elasticsearch.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as _dt
import fnmatch
import itertools
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from es_semantic.testing import index_settings
from es_semantic.testing import mapping as mp
from es_semantic.testing.errors import EsError, unsupported
from es_semantic.testing.fields import all_field_names
from es_semantic.testing.routing import (
    IndexRouting,
    alias_index_routing,
    routing_values,
    validate_routing_settings,
)
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc
from es_semantic.testing.templates import Templates

_SHARDS_WRITE = {"total": 2, "successful": 1, "failed": 0}
_INVALID_NAME_CHARS = set('\\/*?"<>| ,#:')
_STATIC_SETTINGS = {"index.number_of_shards", "index.number_of_routing_shards", "index.routing_partition_size",
                    "index.mode", "index.codec", "index.sort.field", "index.soft_deletes.enabled"}
#: The index write block: the setting and the block Elasticsearch reports for it (IndexMetadata's
#: ``INDEX_WRITE_BLOCK``: id 8, status FORBIDDEN). Set by ``index.blocks.write: true`` or ``PUT
#: /<index>/_block/write``; it refuses document writes (403) and leaves reads and metadata changes be.
WRITE_BLOCK_SETTING = "index.blocks.write"
READ_ONLY_SETTING = "index.blocks.read_only"  # refuses document writes and metadata changes
WRITE_BLOCK = "FORBIDDEN/8/index write (api)"
_BOOLEAN_SETTINGS = re.compile(r"^index\.blocks\.(write|read|read_only|read_only_allow_delete|metadata)$")


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def parse_time(value: Any, name: str = "keep_alive") -> float:
    """Parse an Elasticsearch time value ("1m", "30s", "500ms", "-1") into seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0
    text = str(value).strip()
    if text in ("-1", "0"):
        return float(text)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(nanos|micros|ms|s|m|h|d)", text)
    if not match:
        raise EsError(400, "illegal_argument_exception",
                      f"failed to parse setting [{name}] with value [{text}] as a time value: unit is missing or "
                      "unrecognized")
    number, unit = float(match.group(1)), match.group(2)
    factor = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return number * factor


def parse_bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("", "true"):
        return True
    if text == "false":
        return False
    raise EsError(400, "illegal_argument_exception",
                  f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


def _now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    """A 20-character URL-safe id, like Elasticsearch's auto-generated ids."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")


class IndexBlocked(EsError):
    """403 ``cluster_block_exception``: a write to an index with a write (or read-only) block."""

    def __init__(self, index: str, block: str = WRITE_BLOCK) -> None:
        super().__init__(403, "cluster_block_exception", f"index [{index}] blocked by: [{block}];")
        self.index = index


_METADATA_BLOCKS = {"index.blocks.read_only": "FORBIDDEN/5/index read-only (api)",
                    "index.blocks.metadata": "FORBIDDEN/9/index metadata (api)"}


def _check_metadata_writable(idx: Any) -> None:
    """The 403 Elasticsearch answers for a metadata change (e.g. an alias action) on an index with a
    ``read_only`` or ``metadata`` block."""
    for key, block in _METADATA_BLOCKS.items():
        if idx.settings.get(key) == "true":
            raise EsError(403, "cluster_block_exception", f"index [{idx.name}] blocked by: [{block}];")


def index_not_found(name: str, reason: str | None = None) -> EsError:
    return EsError(404, "index_not_found_exception", reason or f"no such index [{name}]",
                   **{"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_", "index": name})


_JAVA_FORMAT = [("yyyy", "%Y"), ("uuuu", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"),
                ("ss", "%S")]


def resolve_date_math(name: str, now: _dt.datetime | None = None) -> str:
    """Resolve a date-math index name like ``<logs_{now/d}>`` or ``<x_{2022-12-31||/d{yyyy-MM-dd}}>``."""
    if not (name.startswith("<") and name.endswith(">")):
        return name
    now = now or _dt.datetime.now(_dt.timezone.utc)
    inner = name[1:-1]
    out, i = [], 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
            continue
        if ch != "{":
            out.append(ch)
            i += 1
            continue
        depth, j = 0, i
        while j < len(inner):
            if inner[j] == "{":
                depth += 1
            elif inner[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        expr = inner[i + 1:j]
        fmt = "uuuu.MM.dd"
        if "{" in expr:
            expr, fmt = expr.split("{", 1)
            fmt = fmt.rstrip("}").split("|")[0]
        out.append(_eval_date_math(expr, now, fmt))
        i = j + 1
    return "".join(out)


def _eval_date_math(expr: str, now: _dt.datetime, fmt: str) -> str:
    if "||" in expr:
        anchor, ops = expr.split("||", 1)
        moment = _dt.datetime.fromisoformat(anchor)
    elif expr.startswith("now"):
        moment, ops = now, expr[3:]
    else:
        raise EsError(400, "invalid_index_name_exception", f"invalid date math expression [{expr}]")
    for sign, amount, unit in re.findall(r"([+-])(\d+)([yMwdhHms])", ops):
        delta = int(amount) * (1 if sign == "+" else -1)
        if unit == "d":
            moment += _dt.timedelta(days=delta)
        elif unit == "w":
            moment += _dt.timedelta(weeks=delta)
        elif unit in "hH":
            moment += _dt.timedelta(hours=delta)
        elif unit == "m":
            moment += _dt.timedelta(minutes=delta)
        elif unit == "s":
            moment += _dt.timedelta(seconds=delta)
        elif unit == "M":
            month = moment.month - 1 + delta
            moment = moment.replace(year=moment.year + month // 12, month=month % 12 + 1, day=1)
        elif unit == "y":
            moment = moment.replace(year=moment.year + delta)
    py_fmt = fmt
    for java, py in _JAVA_FORMAT:
        py_fmt = py_fmt.replace(java, py)
    return moment.strftime(py_fmt)


def validate_index_name(name: str) -> None:
    def bad(why: str) -> EsError:
        return EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {why}",
                       index_uuid="_na_", index=name)

    if not name:
        raise bad("must not be empty")
    if name != name.lower():
        raise bad("must be lowercase")
    if name in (".", ".."):
        raise bad("must not be '.' or '..'")
    if name[0] in "_-+":
        raise bad("must not start with '_', '-', or '+'")
    found = sorted(_INVALID_NAME_CHARS & set(name))
    if found:
        raise bad("must not contain the following characters [' ','\"','*',',','/','<','>','?','\\','|']")
    if len(name.encode("utf-8")) > 255:
        raise bad("index name is too long, (" + str(len(name.encode("utf-8"))) + " > 255)")


def flatten_settings(settings: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """``{"index": {"number_of_shards": 1}}`` and ``{"number_of_shards": 1}`` -> ``{"index.number_of_shards": "1"}``."""
    flat: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_settings(value, full + "."))
        else:
            flat[full] = value
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if not prefix and not key.startswith("index."):
            key = "index." + key
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list):
            value = [str(v).lower() if isinstance(v, bool) else str(v) for v in value]
        elif value is not None:
            value = str(value)
        out[key] = value
    return out


def nest_settings(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # "a": "x" and "a.b": "y" both set; keep the leaf flat
                node = None
                break
            node = child
        if node is None:
            nested[key] = value
        else:
            node[parts[-1]] = value
    return nested


def filter_source(source: dict[str, Any], includes: list[str] | None, excludes: list[str] | None) -> dict[str, Any]:
    """Elasticsearch-style ``_source`` filtering with wildcards on dotted paths."""

    def matches(path: str, patterns: list[str], prefix_ok: bool) -> bool:
        for pat in patterns:
            if fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(path, pat + ".*"):
                return True
            if prefix_ok and (pat.startswith(path + ".") or fnmatch.fnmatchcase(path, pat.split(".")[0])):
                return True
        return False

    def walk(obj: Any, prefix: str) -> Any:
        if isinstance(obj, list):
            return [walk(v, prefix) if isinstance(v, (dict, list)) else v for v in obj]
        out: dict[str, Any] = {}
        for key, value in obj.items():
            path = prefix + key
            if excludes and any(fnmatch.fnmatchcase(path, p) for p in excludes):
                continue
            fully = not includes or any(fnmatch.fnmatchcase(path, p) for p in includes)
            if isinstance(value, (dict, list)) and any(isinstance(v, dict) for v in (value if isinstance(value, list) else [value])):
                if fully:
                    sub = walk_full(value, path + ".") if excludes else value
                    out[key] = sub
                elif includes and matches(path, includes, True):
                    sub = walk(value, path + ".")
                    if sub or sub == []:
                        out[key] = sub
                continue
            if fully:
                out[key] = value
        return out

    def walk_full(obj: Any, prefix: str) -> Any:
        if isinstance(obj, list):
            return [walk_full(v, prefix) if isinstance(v, (dict, list)) else v for v in obj]
        out: dict[str, Any] = {}
        for key, value in obj.items():
            path = prefix + key
            if excludes and any(fnmatch.fnmatchcase(path, p) for p in excludes):
                continue
            out[key] = walk_full(value, path + ".") if isinstance(value, (dict, list)) else value
        return out

    return walk(source, "")


def source_params(params: dict[str, Any], body_source: Any = None) -> tuple[bool, list[str] | None, list[str] | None]:
    """(fetch, includes, excludes) from ``_source``/``_source_includes``/``_source_excludes``."""
    spec = params.get("_source", body_source)
    fetch, includes, excludes = True, None, None
    if isinstance(spec, bool):
        fetch = spec
    elif isinstance(spec, str):
        if spec in ("true", "false"):
            fetch = spec == "true"
        else:
            includes = [s for s in spec.split(",") if s]
    elif isinstance(spec, list):
        includes = list(spec)
    elif isinstance(spec, dict):
        inc = spec.get("includes", spec.get("include"))
        exc = spec.get("excludes", spec.get("exclude"))
        includes = [inc] if isinstance(inc, str) else inc
        excludes = [exc] if isinstance(exc, str) else exc
    if params.get("_source_includes"):
        includes = [s for s in str(params["_source_includes"]).split(",") if s]
        fetch = True
    if params.get("_source_excludes"):
        excludes = [s for s in str(params["_source_excludes"]).split(",") if s]
        fetch = True
    return fetch, includes, excludes


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Partial-update merge: objects merge recursively, everything else replaces."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Indices
# ---------------------------------------------------------------------------------------------


@dataclass
class _Live:
    source: dict[str, Any]
    seq_no: int
    version: int
    routing: str | None = None  # the custom routing it was written with (stored like `_routing`)
    shard: int = 0


#: A live document's key: (shard, _id). With custom routing one _id can live on several shards
#: of a multi-shard index, as two documents (Elasticsearch keeps _id unique per shard only).
DocKey = tuple[int, str]


@dataclass
class Index:
    """One index: metadata plus its live documents and its current searchable snapshot."""

    name: str
    uuid: str
    settings: dict[str, Any]  # flat "index.*" -> string values
    mappings: dict[str, Any]
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    docs: dict[DocKey, _Live] = field(default_factory=dict)
    seq_no: int = -1  # the highest sequence number any shard has assigned
    operations: int = 0  # document operations so far (index, update, delete), all shards
    shard_seq_nos: dict[int, int] = field(default_factory=dict)  # per shard, like Elasticsearch
    # The version a deleted document had (Elasticsearch keeps it for index.gc_deletes, 60s; here for
    # the index's life): a re-created document continues from it, external versions compare to it.
    tombstones: dict[DocKey, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    snapshot: IndexSnapshot | None = None
    dirty: bool = False
    last_refresh: float = field(default_factory=time.monotonic)
    deleted: bool = False
    closed: bool = False  # POST /<index>/_close: metadata stays, documents are out of reach
    settings_version: int = 0  # bumped by put_settings so snapshots pick the change up
    _stored: dict[DocKey, StoredDoc] = field(default_factory=dict, repr=False)
    #: see IndexSnapshot.fields_since
    fields_since: dict[str, dict[int, int]] = field(default_factory=dict)
    _published_meta: tuple[int, int] = (0, -1)

    def refresh_interval(self, default: float) -> float:
        value = self.settings.get("index.refresh_interval")
        return default if value is None else parse_time(value, "index.refresh_interval")

    def nested_settings(self) -> dict[str, Any]:
        return nest_settings(self.settings)

    def routing(self) -> IndexRouting:
        """The index's shard function (number of shards and routing shards, ``_routing.required``)."""
        return IndexRouting.of(self.name, self.settings, self.mappings)

    def next_seq_no(self, shard: int) -> int:
        """Assign the next sequence number of ``shard`` (call under ``lock``)."""
        seq_no = self.shard_seq_nos.get(shard, -1) + 1
        self.shard_seq_nos[shard] = seq_no
        self.seq_no = max(self.seq_no, seq_no)
        self.operations += 1
        return seq_no

    @property
    def write_blocked(self) -> bool:
        return self.settings.get(WRITE_BLOCK_SETTING) == "true" or self.settings.get(READ_ONLY_SETTING) == "true"

    def check_writable(self) -> None:
        """Raise the 403 Elasticsearch answers for a document write while the write or read-only block
        is set (call under ``lock``: ``add_block`` takes it too, so no write is in flight past the block)."""
        if self.settings.get(READ_ONLY_SETTING) == "true":
            raise IndexBlocked(self.name, _METADATA_BLOCKS[READ_ONLY_SETTING])
        if self.write_blocked:
            raise IndexBlocked(self.name)

    def refresh(self) -> IndexSnapshot:
        """Publish the live documents as a new snapshot (cheap when nothing changed)."""
        with self.lock:
            if self.snapshot is not None and not self.dirty:
                return self.current_snapshot()  # nothing new; publishes mapping/settings changes if any
            docs: list[StoredDoc] = []
            stored: dict[DocKey, StoredDoc] = {}
            previous = self._stored
            items = self.docs.items()
            if any(key[0] for key in self.docs):  # several shards: shard by shard, like a search over them
                items = sorted(items, key=lambda kv: kv[0][0])
            for position, (key, live) in enumerate(items):
                old = previous.get(key)
                if old is not None and old.seq_no == live.seq_no and old.doc_index == position:
                    doc = old  # unchanged document at the same position: reuse the object
                else:
                    doc = StoredDoc(id=key[1], source=live.source, seq_no=live.seq_no, primary_term=1,
                                    version=live.version, doc_index=position, routing=live.routing,
                                    shard=live.shard)
                docs.append(doc)
                stored[key] = doc
            generation = self.snapshot.generation + 1 if self.snapshot else 0
            self._stored = stored
            self.snapshot = IndexSnapshot(index_name=self.name, mappings=self.mappings,
                                          settings=self.nested_settings(), docs=docs, generation=generation,
                                          fields_since=self.fields_since)
            self._published_meta = (id(self.mappings), self.settings_version)
            self.dirty = False
            self.last_refresh = time.monotonic()
            return self.snapshot

    def current_snapshot(self) -> IndexSnapshot:
        """The searchable snapshot; mapping and settings changes are visible at once (as in ES),
        documents only after a refresh. Published snapshots are never mutated (PITs hold them)."""
        snap = self.snapshot
        if snap is None:
            return self.refresh()
        if (id(self.mappings), self.settings_version) != self._published_meta:
            with self.lock:
                snap = self.snapshot
                if (id(self.mappings), self.settings_version) != self._published_meta:
                    snap = self.snapshot = IndexSnapshot(
                        index_name=self.name, mappings=self.mappings, settings=self.nested_settings(),
                        docs=snap.docs, generation=snap.generation + 1, fields_since=self.fields_since)
                    self._published_meta = (id(self.mappings), self.settings_version)
        return snap


@dataclass
class PointInTime:
    id: str
    targets: list[SearchTarget]
    expires: float
    index_names: list[str]


@dataclass
class ScrollContext:
    id: str
    hits: list[dict[str, Any]]
    total: Any
    position: int
    size: int
    expires: float
    extra: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)


class Store:
    """All indices of one test server, plus open points in time and scrolls."""

    def __init__(self, refresh_interval: str = "1s") -> None:
        self.indices: dict[str, Index] = {}
        self.lock = threading.RLock()
        self.default_refresh = parse_time(refresh_interval, "index.refresh_interval")
        self.pits: dict[str, PointInTime] = {}
        self.scrolls: dict[str, ScrollContext] = {}
        self.templates = Templates()
        self._counter = itertools.count()

    # -- name resolution ------------------------------------------------------------------------

    def _alias_map(self) -> dict[str, list[Index]]:
        out: dict[str, list[Index]] = {}
        for idx in self.indices.values():
            for alias in idx.aliases:
                out.setdefault(alias, []).append(idx)
        return out

    def resolve(self, expression: str | list[str] | None, *, allow_no_indices: bool = True,
                ignore_unavailable: bool = False, alias_filters: bool = True) -> list[tuple[Index, dict | None]]:
        """Resolve an index expression (comma list, wildcards, ``_all``, aliases) to indices.

        Returns ``(index, alias_filter)`` pairs; ``alias_filter`` is the filter of the filtered
        alias(es) the index was reached through, or None when reached unfiltered.
        """
        if isinstance(expression, list):
            parts = [p for item in expression for p in str(item).split(",")]
        else:
            parts = [p for p in (expression or "_all").split(",")]
        parts = [p.strip() for p in parts if p.strip()]
        if not parts:
            parts = ["_all"]
        with self.lock:
            aliases = self._alias_map()
            chosen: dict[str, Index] = {}
            filters: dict[str, list[dict | None]] = {}

            def add(idx: Index, flt: dict | None) -> None:
                chosen.setdefault(idx.name, idx)
                filters.setdefault(idx.name, []).append(flt)

            for raw in parts:
                if raw.startswith("-") and chosen:
                    pattern = raw[1:]
                    for name in [n for n in chosen if fnmatch.fnmatchcase(n, pattern)]:
                        chosen.pop(name)
                        filters.pop(name, None)
                    continue
                part = resolve_date_math(raw)
                if part in ("_all", "*"):
                    for idx in self.indices.values():
                        if not idx.name.startswith(".") or part == "*":
                            add(idx, None)
                    continue
                if "*" in part or "?" in part:
                    for idx in self.indices.values():
                        if fnmatch.fnmatchcase(idx.name, part) and not (idx.name.startswith(".")
                                                                         and not part.startswith(".")):
                            add(idx, None)
                    for alias, members in aliases.items():
                        if fnmatch.fnmatchcase(alias, part):
                            for idx in members:
                                add(idx, idx.aliases[alias].get("filter") if alias_filters else None)
                    continue
                if part in self.indices:
                    add(self.indices[part], None)
                elif part in aliases:
                    for idx in aliases[part]:
                        add(idx, idx.aliases[part].get("filter") if alias_filters else None)
                elif not ignore_unavailable:
                    raise index_not_found(part)
            if not chosen and not allow_no_indices:
                raise index_not_found(",".join(parts))
            result = []
            for name, idx in chosen.items():
                flts = filters[name]
                if any(f is None for f in flts):
                    result.append((idx, None))
                elif len(flts) == 1:
                    result.append((idx, flts[0]))
                else:
                    result.append((idx, {"bool": {"should": flts, "minimum_should_match": 1}}))
            return result

    def get_index(self, name: str) -> Index:
        """A concrete index by name (no aliases)."""
        idx = self.indices.get(resolve_date_math(name))
        if idx is None:
            raise index_not_found(name)
        return idx

    def write_index(self, name: str, *, require_alias: bool = False, auto_create: bool = True) -> Index:
        """The index a write to ``name`` goes to: the index, an alias's write index, or a new index."""
        name = resolve_date_math(name)
        with self.lock:
            if name in self.indices:
                _check_open(self.indices[name])
                if require_alias:
                    raise EsError(404, "index_not_found_exception",
                                  f"no such index [{name}] and [require_alias] request flag is [true] and [{name}] "
                                  "is not an alias", **{"resource.type": "index_or_alias", "resource.id": name,
                                                        "index_uuid": "_na_", "index": name})
                return self.indices[name]
            members = self._alias_map().get(name)
            if members:
                writers = [i for i in members if i.aliases[name].get("is_write_index") is True]
                if not writers and len(members) == 1 and members[0].aliases[name].get("is_write_index") is not False:
                    writers = members
                if not writers:
                    raise EsError(400, "illegal_argument_exception",
                                  f"no write index is defined for alias [{name}]. The write index may be explicitly "
                                  "disabled using is_write_index=false or the alias points to multiple indices "
                                  "without one being designated as a write index")
                _check_open(writers[0])
                return writers[0]
            if require_alias:
                raise EsError(404, "index_not_found_exception",
                              f"no such index [{name}] and [require_alias] request flag is [true] and [{name}] is not "
                              "an alias", **{"resource.type": "index_or_alias", "resource.id": name,
                                             "index_uuid": "_na_", "index": name})
            if not auto_create:
                raise index_not_found(name)
            return self.create_index(name, {}, auto=True)

    @contextlib.contextmanager
    def _writing(self, name: str, **kwargs: Any) -> Iterator[Index]:
        """The index a document write to ``name`` goes to, with its lock held. Reached through an
        alias, the alias is resolved again under the lock: a write never lands in an index the alias
        moved away from meanwhile (Elasticsearch resolves the alias and checks blocks against cluster
        states microseconds apart; here a thread can be paused in between)."""
        while True:
            idx = self.write_index(name, **kwargs)
            with idx.lock:
                if idx.name == resolve_date_math(name) or self.write_index(name, **kwargs) is idx:
                    yield idx
                    return

    # -- index lifecycle ------------------------------------------------------------------------

    def create_index(self, name: str, body: dict[str, Any] | None, *, auto: bool = False) -> Index:
        body = body or {}
        if isinstance(body, dict) and resolve_date_math(name) not in self.indices:
            body = self.templates.apply(resolve_date_math(name), body)
        for key, kind in (("settings", dict), ("mappings", dict), ("aliases", dict)):
            if key in body and body[key] is not None and not isinstance(body[key], kind):
                raise EsError(400, "x_content_parse_exception",
                              f"[1:2] [create_index] {key} must be an object, got [{body[key]}]")
        provided = name
        name = resolve_date_math(name)
        validate_index_name(name)
        unknown = [k for k in body if k not in ("settings", "mappings", "aliases")]
        if unknown:
            raise EsError(400, "parse_exception", f"unknown key [{unknown[0]}] for create index")
        settings = flatten_settings(body.get("settings"))
        index_settings.validate(settings)
        if settings.get("index.soft_deletes.enabled") == "false":
            raise EsError(400, "illegal_argument_exception",
                          "Creating indices with soft-deletes disabled is no longer supported. Please do not "
                          "specify a value for setting [index.soft_deletes.enabled].")
        for key in ("index.number_of_shards", "index.number_of_replicas"):
            if key in settings:
                try:
                    value = int(settings[key])
                except (TypeError, ValueError):
                    raise EsError(400, "illegal_argument_exception",
                                  f"Failed to parse value [{settings[key]}] for setting [{key}]") from None
                if value < (1 if key.endswith("shards") else 0):
                    raise EsError(400, "illegal_argument_exception",
                                  f"Failed to parse value [{value}] for setting [{key}] must be >= "
                                  f"{1 if key.endswith('shards') else 0}")
        if "index.refresh_interval" in settings:
            parse_time(settings["index.refresh_interval"], "index.refresh_interval")
        _check_boolean_settings(settings)
        validate_routing_settings(settings)
        if settings.get("index.mode") == "lookup" and settings.get("index.number_of_shards", "1") != "1":
            raise EsError(400, "illegal_argument_exception",
                          "index with [lookup] mode must have [index.number_of_shards] set to 1 or unset")
        if settings.get("index.mode") not in (None, "standard", "lookup", "time_series", "logsdb"):
            raise EsError(400, "illegal_argument_exception",
                          f"[{settings['index.mode']}] is an invalid index mode, valid modes are: "
                          "[standard, time_series, logsdb, lookup]")
        for key, value in settings.items():
            if key.startswith("index.analysis.") and key.endswith(".type") and value == "hunspell":
                locale = next((v for k, v in settings.items() if k.startswith(key[:-5]) and
                               k.endswith(("locale", "language", "lang"))), "")
                raise EsError(400, "illegal_argument_exception",
                              f"failed to find hunspell dictionary for locale [{locale}]: the es-semantic test "
                              "server ships no hunspell dictionaries")
        mappings = mp.normalize_mappings(body.get("mappings"))
        aliases = self._parse_create_aliases(body.get("aliases") or {})
        with self.lock:
            if name in self.indices:
                existing = self.indices[name]
                raise EsError(400, "resource_already_exists_exception",
                              f"index [{name}/{existing.uuid}] already exists", index_uuid=existing.uuid, index=name)
            alias_names = self._alias_map()
            if name in alias_names:
                raise EsError(400, "invalid_index_name_exception",
                              f"Invalid index name [{name}], already exists as alias", index_uuid="_na_", index=name)
            for alias in aliases:
                if alias in self.indices:
                    raise EsError(400, "invalid_alias_name_exception",
                                  f"Invalid alias name [{alias}]: an index or data stream exists with the same name "
                                  "as the alias")
                if aliases[alias].get("is_write_index") is True:
                    for other in alias_names.get(alias, []):
                        if other.aliases[alias].get("is_write_index") is True:
                            raise EsError(400, "illegal_state_exception",
                                          f"alias [{alias}] has more than one write index [{other.name},{name}]")
            idx_uuid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")[:22]
            full = {
                "index.number_of_shards": "1",
                "index.number_of_replicas": "1",
                **settings,
                "index.uuid": idx_uuid,
                "index.creation_date": str(_now_ms()),
                "index.provided_name": provided,
                "index.version.created": "9033000",
            }
            if "index.routing.allocation.include._tier_preference" not in full:
                full["index.routing.allocation.include._tier_preference"] = "data_content"
            idx = Index(name=name, uuid=idx_uuid, settings=full, mappings=mappings, aliases=aliases)
            idx.refresh()
            self.indices[name] = idx
            return idx

    def _parse_create_aliases(self, aliases: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for alias, spec in aliases.items():
            name = resolve_date_math(alias)
            out[name] = self._alias_def(name, spec or {})
        return out

    def _alias_def(self, alias: str, spec: dict[str, Any]) -> dict[str, Any]:
        definition: dict[str, Any] = {}
        # `routing` sets both; an explicit index_routing / search_routing wins whatever the key order.
        for key, value in sorted(spec.items(), key=lambda kv: kv[0] != "routing"):
            if key in ("is_write_index", "is_hidden"):
                if not isinstance(value, bool):
                    raise EsError(400, "illegal_argument_exception",
                                  f"Unsupported String type value [{value}] for field [{key}] in alias [{alias}]")
                definition[key] = value
            elif key in ("routing", "index_routing", "search_routing"):
                if isinstance(value, bool):
                    raise EsError(400, "illegal_argument_exception",
                                  f"Unsupported boolean type value [{str(value).lower()}] for field [{key}] in "
                                  f"alias [{alias}]")
                value = str(value)
                if key == "routing":
                    definition["index_routing"] = value
                    definition["search_routing"] = value
                else:
                    definition[key] = value
            elif key == "filter":
                if value:
                    self._validate_filter(value)
                    definition["filter"] = value
            elif key == "must_exist":
                raise EsError(400, "illegal_argument_exception", "[must_exist] is unsupported for [ADD]")
            elif key in ("index", "indices", "alias", "aliases"):
                continue
            else:
                raise EsError(400, "x_content_parse_exception", f"[alias] unknown field [{key}]")
        return definition

    def _validate_filter(self, query: dict[str, Any]) -> None:
        try:
            from es_semantic.testing.search_engine import validate_query
        except ImportError:  # engine not available: accept the filter as is
            return
        validate_query(query, {})

    def delete_indices(self, expression: str) -> list[str]:
        with self.lock:
            names: list[str] = []
            for part in expression.split(","):
                part = resolve_date_math(part.strip())
                if part in ("_all", "*") or "*" in part or "?" in part:
                    names.extend(n for n in self.indices if fnmatch.fnmatchcase(n, "*" if part == "_all" else part))
                elif part in self.indices:
                    names.append(part)
                elif part in self._alias_map():
                    raise EsError(400, "illegal_argument_exception",
                                  f"The provided expression [{part}] matches an alias, specify the corresponding "
                                  "concrete indices instead.")
                else:
                    raise index_not_found(part)
            for name in dict.fromkeys(names):
                idx = self.indices.pop(name, None)
                if idx is not None:
                    idx.deleted = True
            return names

    def clear(self) -> None:
        """Delete every index, point in time and scroll (used between tests)."""
        with self.lock:
            for idx in self.indices.values():
                idx.deleted = True
            self.indices.clear()
            self.pits.clear()
            self.scrolls.clear()
            self.templates.clear()

    # -- mappings and settings -------------------------------------------------------------------

    def put_mapping(self, expression: str, body: dict[str, Any]) -> None:
        targets = [idx for idx, _ in self.resolve(expression, allow_no_indices=False, alias_filters=False)]
        merged = {}
        for idx in targets:  # validate against every index before changing any
            _check_metadata_writable(idx)
            new = mp.normalize_mappings(body, put=True, existing=idx.mappings)
            merged[idx.name] = (new, mp.merge_mappings(idx.mappings, new))
        for idx in targets:
            with idx.lock:
                before = set(all_field_names(idx.mappings))
                idx.mappings = mp.merge_mappings(idx.mappings, merged[idx.name][0])
                # A field added now (a new multi-field, say) holds nothing for the documents already
                # written, as in Elasticsearch, until they are written again (_update_by_query).
                added = set(all_field_names(idx.mappings)) - before
                if added and idx.docs:
                    written = {shard: seq for shard, seq in idx.shard_seq_nos.items()}
                    idx.fields_since = {**idx.fields_since, **dict.fromkeys(added, written)}

    def put_settings(self, expression: str, body: dict[str, Any]) -> None:
        settings = flatten_settings(body.get("settings", body) if isinstance(body, dict) else {})
        index_settings.validate(settings)
        static = sorted(k for k in settings if k in _STATIC_SETTINGS)
        targets = [idx for idx, _ in self.resolve(expression, allow_no_indices=False, alias_filters=False)]
        if static:
            names = ", ".join(f"[{i.name}/{i.uuid}]" for i in targets)
            raise EsError(400, "illegal_argument_exception",
                          f"Can't update non dynamic settings [[{', '.join(static)}]] for open indices [{names}]")
        if "index.refresh_interval" in settings and settings["index.refresh_interval"] is not None:
            parse_time(settings["index.refresh_interval"], "index.refresh_interval")
        _check_boolean_settings(settings)
        if any(not key.startswith("index.blocks.") for key in settings):
            for idx in targets:  # a read-only or metadata block allows changing the blocks only
                _check_metadata_writable(idx)
        for idx in targets:
            with idx.lock:
                for key, value in settings.items():
                    if value is None:
                        idx.settings.pop(key, None)
                    else:
                        idx.settings[key] = value
                idx.settings_version += 1

    def add_write_block(self, expression: str) -> list[str]:
        """``PUT /<index>/_block/write``: set ``index.blocks.write`` on the indices of ``expression``;
        returns the names that were not blocked yet. Taken under each index lock, so a write in
        flight finishes before the block and none starts after it (as Elasticsearch ensures)."""
        targets = [idx for idx, _ in self.resolve(expression, allow_no_indices=False, alias_filters=False)]
        added = []
        for idx in targets:
            with idx.lock:
                if idx.write_blocked:
                    continue
                idx.settings[WRITE_BLOCK_SETTING] = "true"
                idx.settings_version += 1
                added.append(idx.name)
        return added

    # -- aliases ---------------------------------------------------------------------------------

    def update_aliases(self, actions: list[dict[str, Any]]) -> list[EsError | None]:
        """Apply add/remove/remove_index actions atomically (all validated before any applies);
        returns each action's failure or None.

        As in Elasticsearch, every ``remove_index`` runs first, wherever it is in the list, so one
        request can replace an index by an alias of the same name; ``remove_index`` takes concrete
        indices (or wildcards over them), never an alias. A ``remove`` whose aliases do not exist
        fails the request with ``must_exist: true``; otherwise it fails alone (Elasticsearch 8.14's
        action results), and the request only when every action failed."""
        with self.lock:
            plan: list[Callable[[], None]] = []
            removed: set[str] = set()
            parsed = []
            for action in actions:
                if not isinstance(action, dict) or len(action) != 1:
                    raise EsError(400, "illegal_argument_exception", "an alias action must have exactly one key")
                (kind, spec), = action.items()
                parsed.append((kind, dict(spec or {})))
            aliases_now = self._alias_map()
            for _, spec in parsed:  # as Elasticsearch: a METADATA_WRITE block on any index named refuses it all
                for idx, _ in self.resolve(spec.get("indices", spec.get("index")), alias_filters=False):
                    _check_metadata_writable(idx)
            failures: list[EsError | None] = [None] * len(parsed)
            for kind, spec in parsed:
                if kind == "remove_index" and "must_exist" in spec:
                    raise EsError(400, "illegal_argument_exception", "[must_exist] is unsupported for [REMOVE_INDEX]")
                if kind != "remove_index":
                    continue
                index_expr = spec.get("indices", spec.get("index"))
                for part in (index_expr if isinstance(index_expr, list) else str(index_expr or "").split(",")):
                    part = resolve_date_math(str(part).strip())
                    if part and "*" not in part and "?" not in part and part not in self.indices \
                            and part in aliases_now:
                        raise EsError(400, "illegal_argument_exception",
                                      f"The provided expression [{part}] matches an alias, specify the corresponding "
                                      "concrete indices instead.")
                names = [i.name for i, _ in self.resolve(index_expr, alias_filters=False, allow_no_indices=False)]
                removed.update(names)
                plan.append(lambda names=names: [self.indices.pop(n, None) for n in names])
            for number, (kind, spec) in enumerate(parsed):
                index_expr = spec.get("indices", spec.get("index"))
                alias_expr = spec.get("aliases", spec.get("alias"))
                if kind == "remove_index":
                    continue
                if index_expr is None:
                    raise EsError(400, "action_request_validation_exception",
                                  "Validation Failed: 1: One of [index] or [indices] is required;")
                if alias_expr is None:
                    raise EsError(400, "action_request_validation_exception",
                                  "Validation Failed: 1: One of [alias] or [aliases] is required;")
                indices = [i for i, _ in self.resolve(index_expr, alias_filters=False, allow_no_indices=False)]
                gone = [i.name for i in indices if i.name in removed]
                if gone:  # deleted by a remove_index of this request, which ran first
                    raise index_not_found(gone[0])
                alias_names = alias_expr if isinstance(alias_expr, list) else [alias_expr]
                alias_names = [resolve_date_math(a) for a in alias_names]
                if kind == "add":
                    for alias in alias_names:
                        if alias in self.indices and alias not in removed:
                            raise EsError(400, "invalid_alias_name_exception",
                                          f"Invalid alias name [{alias}]: an index or data stream exists with the "
                                          "same name as the alias")
                        definition = self._alias_def(alias, spec)
                        for idx in indices:
                            plan.append(lambda idx=idx, alias=alias, d=definition: idx.aliases.__setitem__(alias,
                                                                                                           dict(d)))
                elif kind == "remove":
                    must_exist = spec.get("must_exist")
                    for idx in indices:
                        matched = [a for a in idx.aliases if any(fnmatch.fnmatchcase(a, p) for p in alias_names)]
                        if not matched and must_exist:
                            raise EsError(404, "aliases_not_found_exception",
                                          f"aliases [{','.join(alias_names)}] missing",
                                          **{"resource.type": "aliases", "resource.id": ",".join(alias_names)})
                        for alias in matched:
                            plan.append(lambda idx=idx, alias=alias: idx.aliases.pop(alias, None))
                    if not any(any(fnmatch.fnmatchcase(a, p) for p in alias_names for a in i.aliases) for i in indices):
                        failures[number] = EsError(404, "aliases_not_found_exception",
                                                   f"aliases [{','.join(alias_names)}] missing",
                                                   **{"resource.type": "aliases", "resource.id": ",".join(alias_names)})
                else:
                    raise EsError(400, "illegal_argument_exception", f"unknown alias action [{kind}]")
            if all(f is not None for f in failures):
                raise failures[0]
            backup = {name: copy.deepcopy(idx.aliases) for name, idx in self.indices.items()}
            removed = dict(self.indices)
            try:
                for step in plan:
                    step()
                self._check_write_indices()
            except EsError:
                self.indices.clear()
                self.indices.update(removed)
                for name, idx in self.indices.items():
                    idx.aliases = backup[name]
                raise
            return failures

    def _check_write_indices(self) -> None:
        for alias, members in self._alias_map().items():
            writers = [i.name for i in members if i.aliases[alias].get("is_write_index") is True]
            if len(writers) > 1:
                raise EsError(400, "illegal_state_exception",
                              f"alias [{alias}] has more than one write index [{','.join(sorted(writers))}]")

    def get_aliases(self, index_expr: str | None, names: str | None) -> dict[str, Any]:
        indices = [i for i, _ in self.resolve(index_expr or "_all", alias_filters=False)]
        patterns = [resolve_date_math(n) for n in names.split(",")] if names and names not in ("_all", "*") else None
        out: dict[str, Any] = {}
        found: set[str] = set()
        for idx in indices:
            selected = {}
            for alias, definition in idx.aliases.items():
                if patterns is None or any(fnmatch.fnmatchcase(alias, p) for p in patterns):
                    selected[alias] = copy.deepcopy(definition)
                    found.add(alias)
            if selected or patterns is None or index_expr not in (None, "_all", "*"):
                out[idx.name] = {"aliases": selected}
        if patterns is not None:
            missing = [p for p in patterns if "*" not in p and p not in found]
            if missing:
                # Elasticsearch answers 404 with the aliases it did find plus an error string.
                body = {k: v for k, v in out.items() if v["aliases"]}
                raise _AliasMissing(missing, body)
            out = {k: v for k, v in out.items() if v["aliases"]}
        return out

    # -- documents -------------------------------------------------------------------------------

    def apply_mapping(self, idx: Index, source: dict[str, Any], doc_id: str | None) -> None:
        """Validate a document against the mapping, adding dynamic fields (call under ``idx.lock``)."""
        updated = mp.check_document(idx.mappings, source, doc_id)
        if updated is not None:
            idx.mappings = updated

    def _alias_of(self, name: str, idx: Index) -> dict[str, Any] | None:
        """The alias definition ``name`` reached ``idx`` through (None when ``name`` is the index)."""
        name = resolve_date_math(name)
        return None if name == idx.name else idx.aliases.get(name)

    def _route(self, name: str, idx: Index, doc_id: str, routing: str | None) -> tuple[int, str | None]:
        """(shard, effective routing) of a single-document operation on ``idx`` addressed as ``name``:
        an alias's ``index_routing`` applies (``resolveIndexRouting``), then ``_routing.required``
        (``routing_missing_exception``) and the shard function."""
        routing = alias_index_routing(resolve_date_math(name), self._alias_of(name, idx), routing or None)
        return idx.routing().shard(doc_id, routing), routing

    def index_doc(self, index: str, doc_id: str | None, source: Any, *, op_type: str = "index",
                  if_seq_no: Any = None, if_primary_term: Any = None, require_alias: bool = False,
                  version: Any = None, version_type: str | None = None,
                  routing: str | None = None) -> tuple[Index, dict[str, Any], int]:
        """Index one document. Returns (index, response body, HTTP status)."""
        if doc_id is not None:
            _validate_id(doc_id)
        version, version_type = parse_versioning(version, version_type, write=True)
        if version is not None and op_type == "create":
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: create operations only support internal versioning. use index "
                          "instead;")
        if not isinstance(source, dict):
            raise EsError(400, "document_parsing_exception", "[1:1] failed to parse: source must be an object")
        if op_type not in ("index", "create"):
            raise EsError(400, "illegal_argument_exception", f"opType must be 'create' or 'index', found: [{op_type}]")
        if (if_seq_no is None) != (if_primary_term is None):
            missing = "if_primary_term" if if_primary_term is None else "if_seq_no"
            raise EsError(400, "action_request_validation_exception",
                          f"Validation Failed: 1: {missing} is required when using conditional writes;")
        if op_type == "create" and if_seq_no is not None:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: create operations do not support compare and set. use index "
                          "instead;")
        if doc_id is None:
            doc_id = new_id()
            op_type = "create"
        with self._writing(index, require_alias=require_alias) as idx:
            if idx.deleted:
                raise index_not_found(index)
            # Routing is resolved before the write reaches the shard, so its errors come first.
            shard, routing = self._route(index, idx, doc_id, routing)
            idx.check_writable()
            key = (shard, doc_id)
            existing = idx.docs.get(key)
            if op_type == "create" and existing is not None:
                raise _version_conflict_create(idx, doc_id, existing)
            if if_seq_no is not None:
                _check_cas(idx, doc_id, existing, int(if_seq_no), int(if_primary_term), shard)
            current = existing.version if existing else idx.tombstones.get(key)
            if version is not None:
                _check_write_version(idx, doc_id, current, version, version_type, shard)
            self.apply_mapping(idx, source, doc_id)
            seq_no = idx.next_seq_no(shard)
            new_version = version if version is not None else (current or 0) + 1
            idx.tombstones.pop(key, None)
            if existing is not None:
                del idx.docs[key]  # an update moves the document to the end (new Lucene doc)
            idx.docs[key] = _Live(source=source, seq_no=seq_no, version=new_version, routing=routing, shard=shard)
            idx.dirty = True
            result = "updated" if existing else "created"
            body = {"_index": idx.name, "_id": doc_id, "_version": new_version, "result": result,
                    "_shards": dict(_SHARDS_WRITE), "_seq_no": seq_no, "_primary_term": 1}
            return idx, body, 201 if result == "created" else 200

    def get_doc(self, index: str, doc_id: str, routing: str | None = None, *, realtime: bool = True,
                version: Any = None, version_type: str | None = None) -> tuple[Index, _Live | StoredDoc | None]:
        """The document ``doc_id`` on the shard ``routing`` (or the id) leads to: the live one (real-time
        GET) or, with ``realtime=False``, the one the last refresh published."""
        version, _ = parse_versioning(version, version_type, write=False)
        idx = self._read_index(index)
        with idx.lock:
            shard, _ = self._route(index, idx, doc_id, routing)
            if realtime:
                doc: _Live | StoredDoc | None = idx.docs.get((shard, doc_id))
            else:
                doc = next((d for d in idx.current_snapshot().docs if d.id == doc_id and d.shard == shard), None)
        if doc is not None:
            check_read_version(idx, doc_id, doc.version, version)
        return idx, doc

    def _read_index(self, index: str) -> Index:
        name = resolve_date_math(index)
        with self.lock:
            if name in self.indices:
                _check_open(self.indices[name])
                return self.indices[name]
            members = self._alias_map().get(name)
        if not members:
            raise index_not_found(index)
        if len(members) > 1:
            raise EsError(400, "illegal_argument_exception",
                          f"alias [{name}] has more than one index associated with it "
                          f"[{', '.join(sorted(m.name for m in members))}], can't execute a single index op")
        _check_open(members[0])
        return members[0]

    def delete_doc(self, index: str, doc_id: str, *, if_seq_no: Any = None, if_primary_term: Any = None,
                   routing: str | None = None, version: Any = None,
                   version_type: str | None = None) -> tuple[Index, dict[str, Any], int]:
        version, version_type = parse_versioning(version, version_type, write=True)
        with self._writing(index, auto_create=False) as idx:
            shard, _ = self._route(index, idx, doc_id, routing)
            idx.check_writable()
            key = (shard, doc_id)
            existing = idx.docs.get(key)
            if if_seq_no is not None:
                _check_cas(idx, doc_id, existing, int(if_seq_no), int(if_primary_term or 1), shard)
            current = existing.version if existing else idx.tombstones.get(key)
            if version is not None:
                _check_write_version(idx, doc_id, current, version, version_type, shard)
            seq_no = idx.next_seq_no(shard)
            new_version = version if version is not None else (current or 0) + 1
            idx.tombstones[key] = new_version
            body = {"_index": idx.name, "_id": doc_id, "_version": new_version,
                    "result": "deleted" if existing else "not_found",
                    "_shards": dict(_SHARDS_WRITE), "_seq_no": seq_no, "_primary_term": 1}
            if existing is None:
                return idx, body, 404
            del idx.docs[key]
            idx.dirty = True
            return idx, body, 200

    def update_doc(self, index: str, doc_id: str, body: dict[str, Any], *, if_seq_no: Any = None,
                   if_primary_term: Any = None, retry_on_conflict: int = 0,
                   require_alias: bool = False, routing: str | None = None) -> tuple[Index, dict[str, Any], int]:
        """Partial update (``doc``, ``doc_as_upsert``, ``upsert``, ``detect_noop``); scripts are refused.

        The read-merge-write runs under the index lock, so concurrent updates never conflict with each
        other and ``retry_on_conflict`` has nothing to retry (only ``if_seq_no`` can fail). The
        updated document keeps the routing it was stored with (``UpdateHelper.calculateRouting``);
        an upsert is stored with the request's routing.
        """
        _validate_id(doc_id)
        if not isinstance(body, dict):
            raise EsError(400, "x_content_parse_exception", "[1:1] request body must be an object")
        if "script" in body:
            raise unsupported("scripted updates (send a partial [doc])")
        unknown = [k for k in body if k not in ("doc", "doc_as_upsert", "upsert", "detect_noop", "_source",
                                                "scripted_upsert")]
        if unknown:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [UpdateRequest] unknown field [{unknown[0]}]")
        doc = body.get("doc")
        upsert = body.get("upsert")
        if doc is None and upsert is None:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: script or doc is missing;")
        with self._writing(index, require_alias=require_alias) as idx:
            shard, routing = self._route(index, idx, doc_id, routing)
            idx.check_writable()
            key = (shard, doc_id)
            existing = idx.docs.get(key)
            upserting = existing is None and (upsert is not None or (body.get("doc_as_upsert") and doc is not None))
            if if_seq_no is not None and (existing is not None or upserting):
                _check_cas(idx, doc_id, existing, int(if_seq_no), int(if_primary_term or 1), shard)
            if existing is None:
                if body.get("doc_as_upsert") and doc is not None:
                    new_source = doc
                elif upsert is not None:
                    new_source = upsert
                else:
                    raise EsError(404, "document_missing_exception", f"[{doc_id}]: document missing",
                                  index_uuid=idx.uuid, shard=str(shard), index=idx.name)
                result, status = "created", 201
            else:
                new_source = deep_merge(existing.source, doc or {})
                if parse_bool(body.get("detect_noop"), True) and new_source == existing.source:
                    response = {"_index": idx.name, "_id": doc_id, "_version": existing.version, "result": "noop",
                                "_shards": {"total": 0, "successful": 0, "failed": 0},
                                "_seq_no": existing.seq_no, "_primary_term": 1}
                    return idx, response, 200
                result, status = "updated", 200
                routing = existing.routing
            self.apply_mapping(idx, new_source, doc_id)
            seq_no = idx.next_seq_no(shard)
            version = (existing.version if existing else idx.tombstones.pop(key, 0)) + 1
            if existing is not None:
                del idx.docs[key]
            idx.docs[key] = _Live(source=new_source, seq_no=seq_no, version=version, routing=routing, shard=shard)
            idx.dirty = True
            response = {"_index": idx.name, "_id": doc_id, "_version": version, "result": result,
                        "_shards": dict(_SHARDS_WRITE), "_seq_no": seq_no, "_primary_term": 1}
            if "_source" in body:
                fetch, inc, exc = source_params({}, body["_source"])
                if fetch:
                    response["get"] = {"_seq_no": seq_no, "_primary_term": 1, "found": True,
                                       "_source": filter_source(new_source, inc, exc)}
            return idx, response, status

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self, expression: str | None = None) -> int:
        targets = [i for i, _ in self.resolve(expression or "_all", alias_filters=False)]
        for idx in targets:
            idx.refresh()
        return len(targets)

    def periodic_refresh(self) -> None:
        """Refresh every dirty index whose refresh interval has elapsed (called by a background thread)."""
        now = time.monotonic()
        with self.lock:
            indices = list(self.indices.values())
            self._expire(now)
        for idx in indices:
            if not idx.dirty:
                continue
            interval = idx.refresh_interval(self.default_refresh)
            if interval < 0:
                continue
            if now - idx.last_refresh >= interval:
                idx.refresh()

    def _expire(self, now: float) -> None:
        for pid in [p for p, pit in self.pits.items() if pit.expires < now]:
            self.pits.pop(pid, None)
        for sid in [s for s, ctx in self.scrolls.items() if ctx.expires < now]:
            self.scrolls.pop(sid, None)

    # -- search targets, PIT, scroll -------------------------------------------------------------

    def search_targets(self, expression: str | list[str] | None, params: dict[str, Any]) -> list[SearchTarget]:
        ignore_unavailable = parse_bool(params.get("ignore_unavailable"), False)
        allow_no_indices = parse_bool(params.get("allow_no_indices"), True)
        pairs = self.open_only(expression, self.resolve(expression, ignore_unavailable=ignore_unavailable,
                                                        allow_no_indices=allow_no_indices), ignore_unavailable)
        shards = self.search_shards(expression, params.get("routing"))
        return [SearchTarget(snapshot=idx.current_snapshot(), alias_filter=flt, shards=shards.get(idx.name))
                for idx, flt in pairs]

    def open_only(self, expression: str | list[str] | None, pairs: list[tuple[Index, dict | None]],
                  ignore_unavailable: bool = False) -> list[tuple[Index, dict | None]]:
        """``pairs`` without closed indices: one named explicitly (or through an alias) is an error
        unless ``ignore_unavailable``, one reached by a wildcard is left out (``expand_wildcards=open``)."""
        if not any(idx.closed for idx, _ in pairs):
            return pairs
        named = {resolve_date_math(p.strip()) for p in (",".join(expression) if isinstance(expression, list)
                                                         else expression or "").split(",")}
        aliases = self._alias_map()
        out = []
        for idx, flt in pairs:
            if not idx.closed:
                out.append((idx, flt))
            elif not ignore_unavailable and (idx.name in named or any(idx in aliases.get(n, []) for n in named)):
                _check_open(idx)
        return out

    def close_indices(self, expression: str, *, close: bool) -> list[Index]:
        """``POST /<index>/_close`` and ``_open``: the indices whose state changed."""
        targets = [idx for idx, _ in self.resolve(expression, allow_no_indices=False, alias_filters=False)]
        changed = []
        for idx in targets:
            with idx.lock:
                if idx.closed != close:
                    idx.closed = close
                    changed.append(idx)
                if close:
                    idx.settings["index.verified_before_close"] = "true"
                    idx.settings_version += 1
        return changed

    def search_shards(self, expression: str | list[str] | None, routing: Any) -> dict[str, frozenset[int]]:
        """The shards a search with custom routing goes to, by index name; indices left out are
        searched on every shard. The routing values are the request's ``routing`` and the
        ``search_routing`` of aliases named in ``expression``, combined as Elasticsearch's
        ``IndexNameExpressionResolver.resolveSearchRouting`` does; one-shard indices are left out
        (their one shard is all of them)."""
        values = self._search_routing(expression, routing)
        out: dict[str, frozenset[int]] = {}
        for name, routings in values.items():
            idx = self.indices.get(name)
            if idx is None:
                continue
            index_routing = idx.routing()
            if index_routing.number_of_shards > 1:
                out[name] = index_routing.search_shards(sorted(routings))
        return out

    def _search_routing(self, expression: str | list[str] | None, routing: Any) -> dict[str, set[str]]:
        param = set(routing_values(routing)) if routing not in (None, "") else None
        if isinstance(expression, list):
            parts = [p for item in expression for p in str(item).split(",")]
        else:
            parts = [p for p in (expression or "").split(",")]
        parts = [resolve_date_math(p.strip()) for p in parts if p.strip()]
        with self.lock:
            if not parts or parts == ["_all"]:
                return {name: set(param) for name in self.indices} if param else {}
            aliases = self._alias_map()
            routings: dict[str, set[str]] = {}
            norouting: set[str] = set()

            def plain(name: str) -> None:
                if name in norouting:
                    return
                norouting.add(name)
                if param is not None:
                    routings[name] = set(param)
                else:
                    routings.pop(name, None)

            for part in parts:
                if part.startswith("-"):
                    continue
                if part == "*" or "*" in part or "?" in part:  # wildcards resolve to concrete indices
                    for name in self.indices:
                        if fnmatch.fnmatchcase(name, part):
                            plain(name)
                    for alias, members in aliases.items():
                        if fnmatch.fnmatchcase(alias, part):
                            for idx in members:
                                plain(idx.name)
                    continue
                if part in aliases and part not in self.indices:
                    for idx in aliases[part]:
                        if idx.name in norouting:
                            continue
                        search_routing = routing_values(idx.aliases[part].get("search_routing"))
                        if search_routing:
                            chosen = routings.setdefault(idx.name, set())
                            chosen.update(search_routing)
                            if param is not None:
                                chosen &= param
                            if not chosen:
                                routings.pop(idx.name)
                        else:
                            plain(idx.name)
                    continue
                plain(part)
            return routings

    def keep_alive(self, value: Any, name: str) -> float:
        """A scroll's or point in time's keep-alive in seconds, at most the cluster setting
        ``search.max_keep_alive`` (24h by default), as Elasticsearch's SearchService checks it."""
        seconds = parse_time(value, name)
        limit = self.templates.cluster_setting("search.max_keep_alive")
        if limit is not None and seconds > parse_time(limit, "search.max_keep_alive"):
            raise EsError(400, "illegal_argument_exception",
                          f"Keep alive for request ({value}) is too large. It must be less than ({limit}). This "
                          "limit can be set by changing the [search.max_keep_alive] cluster level setting.")
        return seconds

    def open_pit(self, expression: str, keep_alive: str, params: dict[str, Any]) -> PointInTime:
        seconds = self.keep_alive(keep_alive, "keep_alive")
        targets = self.search_targets(expression, params)
        pid = base64.urlsafe_b64encode(
            f"pit:{next(self._counter)}:{uuid.uuid4().hex}".encode()).decode("ascii")
        pit = PointInTime(id=pid, targets=targets, expires=time.monotonic() + seconds,
                          index_names=[t.snapshot.index_name for t in targets])
        with self.lock:
            self.pits[pid] = pit
        return pit

    def get_pit(self, pid: str, keep_alive: Any = None) -> PointInTime:
        with self.lock:
            self._expire(time.monotonic())
            pit = self.pits.get(pid)
            if pit is None:
                raise EsError(404, "search_context_missing_exception",
                              f"No search context found for id [{pid}]")
            if keep_alive is not None:
                pit.expires = time.monotonic() + self.keep_alive(keep_alive, "keep_alive")
            return pit

    def close_pits(self, ids: Iterable[str]) -> int:
        freed = 0
        with self.lock:
            for pid in ids:
                if self.pits.pop(pid, None) is not None:
                    freed += 1
        return freed

    def add_scroll(self, hits: list[dict[str, Any]], total: Any, size: int, keep_alive: str,
                   extra: dict[str, Any]) -> ScrollContext:
        seconds = self.keep_alive(keep_alive, "scroll")
        sid = base64.urlsafe_b64encode(
            f"scroll:{next(self._counter)}:{uuid.uuid4().hex}".encode()).decode("ascii")
        ctx = ScrollContext(id=sid, hits=hits, total=total, position=0, size=size,
                            expires=time.monotonic() + seconds, extra=extra)
        with self.lock:
            self.scrolls[sid] = ctx
        return ctx

    def get_scroll(self, sid: str, keep_alive: Any) -> ScrollContext:
        with self.lock:
            self._expire(time.monotonic())
            ctx = self.scrolls.get(sid)
            if ctx is None:
                raise EsError(404, "search_phase_execution_exception", "all shards failed",
                              caused_by={"type": "search_context_missing_exception",
                                         "reason": f"No search context found for id [{sid}]"},
                              root_cause=[{"type": "search_context_missing_exception",
                                           "reason": f"No search context found for id [{sid}]"}],
                              phase="query", grouped=True, failed_shards=[])
            if keep_alive is not None:
                ctx.expires = time.monotonic() + self.keep_alive(keep_alive, "scroll")
            return ctx

    def clear_scrolls(self, ids: list[str] | None) -> int:
        with self.lock:
            if ids is None:
                freed = len(self.scrolls)
                self.scrolls.clear()
                return freed
            return sum(1 for sid in ids if self.scrolls.pop(sid, None) is not None)


class _AliasMissing(Exception):
    """get_alias found some but not all named aliases: 404 with the found ones and an error string."""

    def __init__(self, missing: list[str], found: dict[str, Any]) -> None:
        super().__init__(missing)
        self.missing = missing
        self.found = found

    def body(self) -> dict[str, Any]:
        names = ",".join(self.missing)
        word = "alias" if len(self.missing) == 1 else "aliases"
        return {"error": f"{word} [{names}] missing", "status": 404, **self.found}


AliasMissing = _AliasMissing


def _validate_id(doc_id: str) -> None:
    if doc_id == "":
        raise EsError(400, "illegal_argument_exception", "if _id is specified it must not be empty")
    size = len(doc_id.encode("utf-8"))
    if size > 512:
        raise EsError(400, "action_request_validation_exception",
                      f"Validation Failed: 1: id [{doc_id}] is too long, must be no longer than 512 bytes but was: "
                      f"{size};")


def _check_open(idx: Index) -> None:
    if idx.closed:
        raise EsError(400, "index_closed_exception", "closed", index_uuid=idx.uuid, index=idx.name)


def _check_boolean_settings(settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        if value is not None and _BOOLEAN_SETTINGS.match(key) and value not in ("true", "false"):
            raise EsError(400, "illegal_argument_exception",
                          f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


_VERSION_TYPES = ("internal", "external", "external_gte")


def parse_versioning(version: Any, version_type: str | None, *, write: bool) -> tuple[int | None, str]:
    """``version`` and ``version_type`` of a write or a get, validated as Elasticsearch does."""
    vtype = str(version_type or "internal").lower()
    if vtype == "force":
        raise EsError(400, "action_request_validation_exception",
                      "Validation Failed: 1: version type [force] may no longer be used;")
    if vtype not in _VERSION_TYPES:
        raise EsError(400, "illegal_argument_exception", f"No version type match [{version_type}]")
    if version is None:
        if write and vtype != "internal":
            raise EsError(400, "action_request_validation_exception",
                          f"Validation Failed: 1: illegal version value [-3] for version type [{vtype.upper()}];")
        return None, vtype
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise EsError(400, "illegal_argument_exception",
                      f"Failed to parse long parameter [version] with value [{version}]") from None
    if write and vtype == "internal":
        raise EsError(400, "action_request_validation_exception",
                      "Validation Failed: 1: internal versioning can not be used for optimistic concurrency "
                      "control. Please use `if_seq_no` and `if_primary_term` instead;")
    if write and number < 0:
        raise EsError(400, "action_request_validation_exception",
                      f"Validation Failed: 1: illegal version value [{number}] for version type [{vtype.upper()}];")
    return number, vtype


def _check_write_version(idx: Index, doc_id: str, current: int | None, version: int, version_type: str,
                         shard: int) -> None:
    """An external version must be above (``external_gte``: at least) the current one, deleted or not."""
    if current is None:
        return
    if version_type == "external" and current >= version:
        reason = f"current version [{current}] is higher or equal to the one provided [{version}]"
    elif version_type == "external_gte" and current > version:
        reason = f"current version [{current}] is higher than the one provided [{version}]"
    else:
        return
    raise EsError(409, "version_conflict_engine_exception", f"[{doc_id}]: version conflict, {reason}",
                  index_uuid=idx.uuid, shard=str(shard), index=idx.name)


def check_read_version(idx: Index, doc_id: str, current: int, version: int | None) -> None:
    """A get with ``version`` finds the document only at exactly that version."""
    if version is not None and current != version:
        raise EsError(409, "version_conflict_engine_exception",
                      f"[{doc_id}]: version conflict, current version [{current}] is different than the one "
                      f"provided [{version}]", index_uuid=idx.uuid, shard="0", index=idx.name)


def _version_conflict_create(idx: Index, doc_id: str, existing: _Live) -> EsError:
    return EsError(409, "version_conflict_engine_exception",
                   f"[{doc_id}]: version conflict, document already exists (current version "
                   f"[{existing.version}])", index_uuid=idx.uuid, shard=str(existing.shard), index=idx.name)


def _check_cas(idx: Index, doc_id: str, existing: _Live | None, if_seq_no: int, if_primary_term: int,
               shard: int = 0) -> None:
    if existing is None:
        raise EsError(409, "version_conflict_engine_exception",
                      f"[{doc_id}]: version conflict, required seqNo [{if_seq_no}], primary term "
                      f"[{if_primary_term}]. but no document was found", index_uuid=idx.uuid, shard=str(shard),
                      index=idx.name)
    if existing.seq_no != if_seq_no or if_primary_term != 1:
        raise EsError(409, "version_conflict_engine_exception",
                      f"[{doc_id}]: version conflict, required seqNo [{if_seq_no}], primary term "
                      f"[{if_primary_term}]. current document has seqNo [{existing.seq_no}] and primary term [1]",
                      index_uuid=idx.uuid, shard=str(shard), index=idx.name)
