"""``nested`` fields: the ``nested`` query, its ``inner_hits``, and kNN over nested vectors.

Each object under a ``nested`` path is its own hidden document, as in Elasticsearch: the objects of
one path form a child ``ShardData`` (built once per snapshot) whose documents remember their
parent. Fields under a nested path are invisible to queries on the parent documents (they match
nothing there) and can only be reached through a ``nested`` query, which runs its query over the
children and gives each parent the children's score combined by ``score_mode``. A kNN search on a
nested vector field selects parents by their best child (``k`` parents, as Elasticsearch's
parent-diversified kNN does).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from es_semantic.testing.errors import EsError, unsupported
from es_semantic.testing.snapshot import IndexSnapshot, StoredDoc

if TYPE_CHECKING:
    from es_semantic.testing.query_dsl import Context, Matches, ShardData

_SCORE_MODES = ("avg", "max", "min", "sum", "none")
_INNER_HITS_KEYS = {"name", "size", "from", "_source", "fields", "ignore_unmapped"}


def nested_paths(mappings: dict[str, Any]) -> list[str]:
    """The dotted paths of every ``nested`` field of the mapping."""
    out: list[str] = []

    def walk(props: dict[str, Any], prefix: str) -> None:
        for key, node in (props or {}).items():
            if not isinstance(node, dict):
                continue
            if node.get("type") == "nested":
                out.append(prefix + key)
            if "properties" in node:
                walk(node["properties"], prefix + key + ".")

    walk(mappings.get("properties", {}), "")
    return out


def nested_scope(paths: list[str], name: str) -> str | None:
    """The innermost nested path ``name`` lives under (or is), None for a root field."""
    best = None
    for path in paths:
        if (name == path or name.startswith(path + ".")) and (best is None or len(path) > len(best)):
            best = path
    return best


@dataclass
class NestedDocs:
    """The objects of one nested path as documents: ``parents[i]`` is child ``i``'s parent document,
    ``offsets[i]`` its position among that parent's objects (``_nested.offset``)."""

    data: ShardData
    parents: np.ndarray
    offsets: list[int]


def _objects(node: Any, parts: list[str]) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [o for item in node for o in _objects(item, parts)]
    if not parts:
        return [node] if isinstance(node, dict) else []
    if not isinstance(node, dict):
        return []
    out = []
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in node:
            out.extend(_objects(node[key], parts[i:]))
    return out


def _wrap(path: str, obj: dict[str, Any]) -> dict[str, Any]:
    for part in reversed(path.split(".")):
        obj = {part: obj}
    return obj


def nested_docs(data: ShardData, path: str) -> NestedDocs:
    """The children of ``data``'s documents at ``path`` (memoised on ``data``)."""
    from es_semantic.testing.query_dsl import ShardData

    key = ("nested", path)
    cached = data.sort_columns.get(key)
    if cached is not None:
        return cached
    docs: list[StoredDoc] = []
    parents: list[int] = []
    offsets: list[int] = []
    for p, doc in enumerate(data.docs):
        for offset, obj in enumerate(_objects(doc.source, path.split("."))):
            docs.append(StoredDoc(id=doc.id, source=_wrap(path, obj), seq_no=doc.seq_no,
                                  primary_term=doc.primary_term, version=doc.version, doc_index=len(docs),
                                  routing=doc.routing, shard=doc.shard))
            parents.append(p)
            offsets.append(offset)
    snapshot = IndexSnapshot(index_name=data.snapshot.index_name, mappings=data.mappings, settings=data.settings,
                             docs=docs)
    child = ShardData(snapshot)
    child.nested_root = path
    result = NestedDocs(child, np.asarray(parents, dtype=np.int64), offsets)
    data.sort_columns[key] = result
    return result


@dataclass
class InnerHits:
    """What a parent hit needs to render the ``inner_hits`` of one nested query."""

    path: str
    children: NestedDocs
    matches: Matches
    spec: dict[str, Any]


def run_nested(body: Any, ctx: Context) -> Matches:
    """The ``nested`` query on the parent documents of ``ctx``."""
    from es_semantic.testing.query_dsl import Context, Matches, evaluate, field_info, parsing_error

    if not isinstance(body, dict) or "path" not in body or "query" not in body:
        raise parsing_error("[nested] requires 'path' and 'query' fields")
    path = str(body["path"])
    mode = str(body.get("score_mode", "avg")).lower()
    if mode not in _SCORE_MODES:
        raise parsing_error(f"illegal score_mode for nested query [{mode}]")
    if field_info(ctx.data.mappings, path).type != "nested":
        if body.get("ignore_unmapped"):
            return ctx.none()
        raise EsError(400, "query_shard_exception", f"[nested] failed to find nested object under path [{path}]",
                      index=ctx.index_name)
    children = nested_docs(ctx.data, path)
    child_ctx = Context(children.data, size=ctx.size, now_ms=ctx.now_ms, index_name=ctx.index_name)
    child_ctx.parent = (ctx, children.parents)
    if ctx.prefilter is not None:
        child_ctx.prefilter = ctx.prefilter[children.parents]
    inner = evaluate(body["query"], child_ctx)
    matches = Matches(*_to_parents(inner, children.parents, ctx.n, mode, float(body.get("boost", 1.0))))
    spec = body.get("inner_hits")
    if spec is not None:
        if isinstance(body["query"], dict) and set(body["query"]) == {"knn"}:
            # Elasticsearch's inner hits of a nested kNN: the parent's children nearest the query
            child_ctx = Context(children.data, size=ctx.size, now_ms=ctx.now_ms, index_name=ctx.index_name,
                                parent=(ctx, children.parents), expand_children=True,
                                prefilter=child_ctx.prefilter)
            inner = evaluate(body["query"], child_ctx)
        _register_inner_hits(ctx, path, children, inner, spec)
    return matches


def _to_parents(inner: Matches, parents: np.ndarray, n: int, mode: str,
                boost: float) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros(n, dtype=bool)
    hit = np.nonzero(inner.mask)[0]
    mask[parents[hit]] = True
    scores = np.zeros(n, dtype=np.float64)
    child = inner.scores[hit].astype(np.float64)
    owners = parents[hit]
    if mode in ("sum", "avg"):
        np.add.at(scores, owners, child)
        if mode == "avg":
            counts = np.bincount(owners, minlength=n)
            scores = np.divide(scores, counts, out=np.zeros(n), where=counts > 0)
    elif mode == "max":
        scores[mask] = -np.inf
        np.maximum.at(scores, owners, child)
    elif mode == "min":
        scores[mask] = np.inf
        np.minimum.at(scores, owners, child)
    return mask, (scores * boost).astype(np.float32)


def _register_inner_hits(ctx: Context, path: str, children: NestedDocs, inner: Matches, spec: Any) -> None:
    if not isinstance(spec, dict):
        raise EsError(400, "parsing_exception", "[inner_hits] must be an object")
    for key in spec:
        if key not in _INNER_HITS_KEYS:
            raise unsupported(f"[{key}] in [inner_hits]")
    name = str(spec.get("name", path))
    if name in ctx.named.inner:
        raise EsError(400, "illegal_argument_exception", f"[inner_hits] already contains an entry for key [{name}]")
    ctx.named.inner[name] = InnerHits(path, children, inner, spec)


def diversify(ctx: Context, cand: np.ndarray, rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """kNN over nested vectors: the best child of each of the ``k`` best parents."""
    parents = ctx.parent[1]
    order = np.lexsort((rows[cand], -scores[cand].astype(np.float64)))
    seen: set[int] = set()
    kept = []
    for i in cand[order]:
        owner = int(parents[rows[i]])
        if owner not in seen:
            seen.add(owner)
            kept.append(i)
            if len(kept) == k:
                break
    if ctx.expand_children:
        return np.asarray([i for i in cand if int(parents[rows[i]]) in seen], dtype=np.int64)
    return np.asarray(kept, dtype=np.int64)


def knn_on_nested(spec: dict[str, Any], ctx: Context, path: str) -> Matches:
    """A top-level ``knn`` on a vector under a nested path: parents by their best child."""
    body = {"path": path, "score_mode": "max",
            "query": {"knn": {k: v for k, v in spec.items() if k not in ("inner_hits", "filter")}}}
    if spec.get("inner_hits") is not None:
        body["inner_hits"] = spec["inner_hits"]
    if spec.get("filter") is not None:
        body["query"]["knn"]["filter"] = spec["filter"]  # evaluated on the parents (see vectors.knn_matches)
    return run_nested(body, ctx)


def render_inner_hits(inner: dict[str, InnerHits], parent: int, index_name: str) -> dict[str, Any]:
    """The ``inner_hits`` of one parent hit."""
    out = {}
    for name, ih in inner.items():
        rows = np.nonzero((ih.children.parents == parent) & ih.matches.mask)[0]
        scores = ih.matches.scores[rows].astype(np.float64)
        order = np.lexsort((rows, -scores))
        rows = rows[order]
        start = int(ih.spec.get("from", 0))
        size = int(ih.spec.get("size", 3))
        hits = [_inner_hit(ih, int(r), index_name) for r in rows[start:start + size]]
        max_score = float(ih.matches.scores[rows[0]]) if len(rows) else None
        out[name] = {"hits": {"total": {"value": len(rows), "relation": "eq"}, "max_score": max_score,
                              "hits": hits}}
    return out


def _inner_hit(ih: InnerHits, row: int, index_name: str) -> dict[str, Any]:
    doc = ih.children.data.docs[row]
    obj: Any = doc.source
    for part in ih.path.split("."):
        obj = obj[part]
    hit: dict[str, Any] = {"_index": index_name, "_id": doc.id,
                           "_nested": {"field": ih.path, "offset": ih.children.offsets[row]},
                           "_score": float(ih.matches.scores[row])}
    source = ih.spec.get("_source", True)
    if source is not False:
        if source is not True:
            raise unsupported("source filtering in [inner_hits] (only true or false)")
        from es_semantic.testing.search_engine import SourceFilter

        data = ih.children.data
        hit["_source"] = SourceFilter().render(_wrap(ih.path, copy.deepcopy(obj)), data.mappings, data.settings)
        for part in ih.path.split("."):
            hit["_source"] = hit["_source"].get(part, {})
    fields = ih.spec.get("fields")
    if fields:
        hit["fields"] = {ih.path: [_group(ih, obj, fields)]}
    return hit


def _group(ih: InnerHits, obj: dict[str, Any], fields: list[Any]) -> dict[str, Any]:
    """The ``fields`` of a nested object, grouped under its path as Elasticsearch renders them
    (keyword and text values as strings)."""
    out: dict[str, Any] = {}
    for spec in fields if isinstance(fields, list) else [fields]:
        name = spec.get("field") if isinstance(spec, dict) else str(spec)
        if not name.startswith(ih.path + "."):
            continue
        key = name[len(ih.path) + 1:]
        value = obj.get(key)
        if value is None:
            continue
        as_text = ih.children.data.field(name).type in ("keyword", "text", "match_only_text", "wildcard")
        out[key] = [str(v) if as_text else v for v in (value if isinstance(value, list) else [value])]
    return out
