"""Exact k-nearest-neighbour search over ``dense_vector`` fields.

Each field's vectors are decoded once per snapshot into a float32 matrix (memoised with the
snapshot's other derived data), so a kNN search is one matrix-vector product plus a partial sort.
Scores use Elasticsearch's transforms of the raw similarity:

* ``cosine``: ``(1 + cos) / 2``
* ``dot_product``: ``(1 + dot) / 2`` (byte vectors: ``0.5 + dot / (dims * 2^15)``)
* ``l2_norm``: ``1 / (1 + l2^2)``
* ``max_inner_product``: ``1 / (1 - dot)`` when ``dot < 0`` else ``dot + 1``

The ``similarity`` option is a threshold on the raw similarity; it is converted to the same score
scale and compared with the score, as Elasticsearch does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from es_semantic.testing.errors import EsError, unsupported
from es_semantic.testing.fields import extract_values
from es_semantic.testing.nested import diversify, knn_on_nested, nested_scope
from es_semantic.testing.query_dsl import Context, Matches, ShardData, evaluate
from es_semantic.vector_codec import decode_vector

NUM_CANDIDATES_LIMIT = 10_000
NUM_CANDIDATES_FACTOR = 1.5


@dataclass
class VectorColumn:
    matrix: np.ndarray  # (m, dims) float32, rows = docs that have a vector
    rows: np.ndarray  # doc index of each row
    dims: int
    similarity: str
    element_type: str
    norms: np.ndarray | None = None  # row L2 norms (cosine)


def _parse_error(reason: str) -> EsError:
    return EsError(
        400,
        "x_content_parse_exception",
        f"[knn] failed to parse: {reason}",
        caused_by={"type": "illegal_argument_exception", "reason": reason},
        root_cause=[{"type": "illegal_argument_exception", "reason": reason}],
    )


def vector_column(data: ShardData, name: str, mapping: dict, source_path: str) -> VectorColumn:
    cached = data.vectors.get(name)
    if cached is not None:
        return cached
    dims = mapping.get("dims")
    element_type = mapping.get("element_type", "float")
    similarity = mapping.get("similarity") or ("l2_norm" if element_type == "bit" else "cosine")
    rows: list[int] = []
    vecs: list[np.ndarray] = []
    for i, doc in enumerate(data.docs):
        raw = _raw_value(doc.source, source_path)
        if raw is None:
            continue
        if isinstance(raw, str):
            vec = _decode_stored(raw, element_type)
        elif isinstance(raw, list) and raw and not isinstance(raw[0], (list, dict)):
            vec = np.asarray(raw, dtype=np.float32)
        else:
            values = extract_values(doc.source, source_path)
            if not values:
                continue
            vec = (_decode_stored(values[0], element_type) if isinstance(values[0], str)
                   else np.asarray(values, dtype=np.float32))
        if dims is None:
            dims = len(vec)
        if len(vec) != dims:
            continue  # the store rejects these at index time; be defensive
        rows.append(i)
        vecs.append(vec)
    dims = int(dims or 0)
    matrix = np.vstack(vecs).astype(np.float32) if vecs else np.zeros((0, dims), dtype=np.float32)
    col = VectorColumn(matrix, np.asarray(rows, dtype=np.int64), dims, similarity, element_type)
    if similarity == "cosine":
        col.norms = np.linalg.norm(matrix.astype(np.float64), axis=1).astype(np.float32)
    data.vectors[name] = col
    return col


def _decode_stored(value: str, element_type: str) -> np.ndarray:
    """A vector indexed as a string: hex bytes for ``byte`` and ``bit`` (as Elasticsearch takes them,
    checked at index time), base64 floats otherwise."""
    if element_type in ("byte", "bit"):
        return np.frombuffer(bytes.fromhex(value), dtype=np.int8).astype(np.float32)
    return decode_vector(value)


def _raw_value(source: Any, path: str) -> Any:
    """The value at a dotted path without flattening it (fast path for vectors)."""
    node = source
    if isinstance(node, dict) and path in node:
        return node[path]
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def similarity_scores(col: VectorColumn, query: np.ndarray) -> np.ndarray:
    """Elasticsearch's score (not the raw similarity) of every row against ``query``."""
    if col.matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    dots = col.matrix @ query
    sim = col.similarity
    if sim == "cosine":
        denom = col.norms * np.float32(np.linalg.norm(query))  # type: ignore[operator]
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.where(denom > 0, dots / denom, 0).astype(np.float32)
        return np.maximum((np.float32(1) + cos) / np.float32(2), 0).astype(np.float32)
    if sim == "dot_product":
        if col.element_type == "byte":
            return (np.float32(0.5) + dots / np.float32(col.dims * (1 << 15))).astype(np.float32)
        return np.maximum((np.float32(1) + dots) / np.float32(2), 0).astype(np.float32)
    if sim == "l2_norm":
        diff = col.matrix - query
        sq = np.einsum("ij,ij->i", diff, diff)
        return (np.float32(1) / (np.float32(1) + sq)).astype(np.float32)
    if sim == "max_inner_product":
        return np.where(dots < 0, 1 / (1 - dots), dots + 1).astype(np.float32)
    raise EsError(400, "illegal_argument_exception", f"unsupported similarity [{sim}]")


def similarity_to_score(similarity: str, value: float, dims: int, element_type: str) -> float:
    """Convert a raw ``similarity`` threshold to the score scale."""
    if similarity == "cosine":
        return (1 + value) / 2
    if similarity == "dot_product":
        if element_type == "byte":
            return 0.5 + value / (dims * (1 << 15))
        return (1 + value) / 2
    if similarity == "l2_norm":
        return 1 / (1 + value * value)
    if similarity == "max_inner_product":
        return 1 / (1 - value) if value < 0 else value + 1
    return value


def resolve_k(spec: dict, size: int, *, query_form: bool) -> tuple[int, int]:
    """Validate and default ``k`` and ``num_candidates`` as Elasticsearch does."""
    k = spec.get("k")
    num_candidates = spec.get("num_candidates")
    if k is not None and int(k) < 1:
        raise _parse_error("[k] must be greater than 0")
    if num_candidates is not None:
        num_candidates = int(num_candidates)
        if num_candidates > NUM_CANDIDATES_LIMIT:
            raise _parse_error(f"[num_candidates] cannot exceed [{NUM_CANDIDATES_LIMIT}]")
        if num_candidates < 1:
            raise _parse_error("[num_candidates] must be greater than 0")
    if k is None:
        if query_form and num_candidates is not None:
            k = num_candidates  # the knn query returns num_candidates docs per shard
        else:
            k = size
    k = int(k)
    if num_candidates is None:
        num_candidates = min(NUM_CANDIDATES_LIMIT, max(round(NUM_CANDIDATES_FACTOR * k), k))
    if num_candidates < k:
        raise _parse_error("[num_candidates] cannot be less than [k]")
    return k, num_candidates


# A kNN search's keys (top level, query, retriever); `rescore_vector` changes nothing under exact scoring.
_KNN_KEYS = frozenset({"field", "query_vector", "query_vector_builder", "k", "num_candidates", "similarity", "filter",
                       "boost", "_name", "rescore_vector", "inner_hits", "visit_percentage"})


def knn_matches(spec: dict, ctx: Context, prefilter: np.ndarray | None, *, query_form: bool) -> Matches:
    """The top-k documents of one knn spec (top-level, query clause or knn retriever) on one shard."""
    if not isinstance(spec, dict):
        raise _parse_error("[knn] must be an object")
    for key in spec:
        if key not in _KNN_KEYS:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [knn] unknown field [{key}]")
    name = spec.get("field")
    if not name:
        raise _parse_error("[field] is required")
    if "query_vector" not in spec:
        if "query_vector_builder" in spec:
            raise unsupported("[query_vector_builder] (pass [query_vector])")
        raise _parse_error("[query_vector] is required")
    k, _num_candidates = resolve_k(spec, ctx.size, query_form=query_form)
    info = ctx.data.field(name)
    scope = nested_scope(ctx.data.nested_paths, name)
    if not info.mapped and scope is not None and scope != ctx.data.nested_root:
        return knn_on_nested(spec, ctx, scope)
    if "inner_hits" in spec:
        raise _parse_error("[inner_hits] needs a [dense_vector] field under a [nested] path")
    if not info.mapped:
        allow = ctx.data.index_setting("query.parse.allow_unmapped_fields", True)
        if str(allow).lower() == "false":
            raise EsError(
                400,
                "query_shard_exception",
                f"No field mapping can be found for the field with name [{name}]",
                index=ctx.index_name,
            )
        return ctx.none()
    if info.type != "dense_vector":
        raise EsError(
            400,
            "query_shard_exception",
            "[knn] queries are only supported on [dense_vector] fields",
            index=ctx.index_name,
        )
    if info.mapping.get("index") is False:
        raise EsError(
            400,
            "query_shard_exception",
            f"to perform knn search on field [{name}], its mapping must have [index] set to [true]",
            index=ctx.index_name,
        )
    col = vector_column(ctx.data, name, info.mapping, info.source_path)
    raw = spec["query_vector"]
    query = np.asarray(raw if not isinstance(raw, str) else _decode_query(raw), dtype=np.float32).reshape(-1)
    check_query_dims(query, col.dims)
    scores = similarity_scores(col, query)
    allowed = np.ones(len(col.rows), dtype=bool)
    filt = spec.get("filter")
    if filt is not None:
        # Over nested vectors the filter is on the parent documents (as in Elasticsearch).
        owner_ctx = ctx.parent[0] if ctx.parent is not None else ctx
        fmask = np.ones(owner_ctx.n, dtype=bool)
        for q in filt if isinstance(filt, list) else [filt]:
            fmask &= evaluate(q, owner_ctx).mask
        if ctx.parent is not None:
            fmask = fmask[ctx.parent[1]]
        allowed &= fmask[col.rows]
    if prefilter is not None:
        allowed &= prefilter[col.rows]
    threshold = spec.get("similarity")
    if threshold is not None:
        cutoff = similarity_to_score(col.similarity, float(threshold), col.dims, col.element_type)
        allowed &= scores >= np.float32(cutoff)
    cand = np.nonzero(allowed)[0]
    if ctx.parent is not None:
        cand = diversify(ctx, cand, col.rows, scores, k)
    elif len(cand) > k:
        # stable top-k: highest score first, ties by doc order
        order = np.lexsort((col.rows[cand], -scores[cand].astype(np.float64)))
        cand = cand[order[:k]]
    mask = np.zeros(ctx.n, dtype=bool)
    out = np.zeros(ctx.n, dtype=np.float32)
    docs = col.rows[cand]
    mask[docs] = True
    boost = np.float32(spec.get("boost", 1.0))
    out[docs] = (scores[cand] * boost).astype(np.float32)
    return Matches(mask, out)


def _decode_query(value: str) -> np.ndarray:
    try:
        return decode_vector(value)
    except ValueError:
        # Elasticsearch also accepts a hex string for byte vectors.
        try:
            return np.frombuffer(bytes.fromhex(value), dtype=np.int8).astype(np.float32)
        except ValueError:
            raise EsError(
                400, "x_content_parse_exception", "[knn] failed to parse field [query_vector]",
                caused_by={"type": "illegal_argument_exception",
                           "reason": f"[query_vector] is neither a hex nor a base64 string: [{value[:32]}]"},
            ) from None


def knn_query_clause(body: Any, ctx: Context) -> Matches:
    """The ``knn`` query DSL clause: pre-filtered by its own filter, the alias and parent bool filters."""
    return knn_matches(body, ctx, ctx.prefilter, query_form=True)


def check_query_dims(query: np.ndarray, dims: int | None) -> None:
    """Elasticsearch's 400 for a query vector whose length differs from the field's dims."""
    if dims and len(query) != dims:
        raise EsError(
            400,
            "illegal_argument_exception",
            f"The query vector has a different number of dimensions [{len(query)}] than the document vectors "
            f"[{dims}].",
        )
