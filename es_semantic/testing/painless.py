"""A tiny, safe subset of Painless for ``script_score``: one arithmetic expression per script.

Supported: numbers, ``+ - * / %``, parentheses, ``_score``, ``params.x`` / ``params['x']``,
``doc['f'].value``, ``$('f', default)``, ``Math.pow/sqrt/log/log10/exp/abs/max/min``, and the
vector functions ``cosineSimilarity``, ``dotProduct``, ``l2norm``, ``l1norm`` (``(query, 'field')``).
The expression is translated to Python, checked against a whitelist of AST nodes and evaluated
over numpy arrays (one value per document). Anything else is a 400 with a clear reason.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from es_semantic.testing.errors import EsError

_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Subscript,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
    ast.List,
    ast.Tuple,
)


def _unsupported(source: str, why: str) -> EsError:
    return EsError(
        400,
        "script_exception",
        f"compile error: the es-semantic test server supports only simple script_score expressions ({why}): [{source}]",
    )


def _translate(source: str) -> str:
    expr = source.strip()
    expr = re.sub(r"^return\s+", "", expr).rstrip(";").strip()
    if ";" in expr or "{" in expr:
        raise _unsupported(source, "one expression, no statements")
    expr = re.sub(r"doc\[(['\"])(.+?)\1\]\.value\.(millis|toInstant\(\)\.toEpochMilli\(\))", r"_doc('\2')", expr)
    expr = re.sub(r"doc\[(['\"])(.+?)\1\]\.value", r"_doc('\2')", expr)
    expr = re.sub(r"doc\[(['\"])(.+?)\1\]\.size\(\)", r"_size('\2')", expr)
    expr = re.sub(r"\$\(", "_field(", expr)
    expr = re.sub(r"params\.([A-Za-z_][A-Za-z_0-9]*)", r"params['\1']", expr)
    expr = re.sub(r"Math\.(pow|sqrt|log10|log|exp|abs|max|min)\(", r"_math_\1(", expr)
    expr = re.sub(r"\b(cosineSimilarity|dotProduct|l2norm|l1norm)\(", r"_v_\1(", expr)
    return expr


def compile_script(spec: Any) -> Callable[..., np.ndarray]:
    """Compile a ``script`` object (``{"source": ..., "params": {...}}`` or a string)."""
    if isinstance(spec, str):
        spec = {"source": spec}
    if not isinstance(spec, dict) or "source" not in spec:
        raise EsError(400, "parsing_exception", "[script] requires [source]")
    lang = spec.get("lang", "painless")
    if lang not in ("painless", "expression"):
        raise _unsupported(spec["source"], f"lang [{lang}]")
    source = str(spec["source"])
    text = _translate(source)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise _unsupported(source, "syntax") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise _unsupported(source, f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Name) and not (node.id in ("_score", "params") or node.id.startswith("_")):
            raise _unsupported(source, f"unknown name [{node.id}]")
    code = compile(tree, "<script>", "eval")
    params = dict(spec.get("params") or {})

    def run(namespace: dict[str, Any]) -> np.ndarray:
        env = {"__builtins__": {}, "params": params, **namespace}
        return np.asarray(eval(code, env), dtype=np.float64)

    return run


def script_namespace(ctx: Any, scores: np.ndarray) -> dict[str, Any]:
    """Functions a script sees, vectorised over all documents of the snapshot."""
    from es_semantic.testing.fields import NUMERIC_TYPES
    from es_semantic.testing.vectors import check_query_dims, vector_column

    n = ctx.n

    def column(name: str, default: float | None) -> np.ndarray:
        info = ctx.data.field(name)
        if not info.mapped:
            if default is None:
                raise EsError(400, "illegal_argument_exception", f"No field found for [{name}] in mapping")
            return np.full(n, float(default))
        col = ctx.data.column(info)
        out = np.empty(n, dtype=np.float64)
        for i, vals in enumerate(col.values):
            if vals:
                v = vals[0]
                out[i] = float(v) / 1_000_000 if info.type in ("date", "date_nanos") else float(v)
            else:
                out[i] = np.nan if default is None else float(default)
        if info.type not in NUMERIC_TYPES and info.type not in ("date", "date_nanos", "boolean"):
            raise EsError(400, "illegal_argument_exception", f"field [{name}] is not numeric")
        return out

    def vectors(query: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        info = ctx.data.field(name)
        if info.type != "dense_vector":
            raise EsError(400, "illegal_argument_exception", f"Field [{name}] is not a dense_vector field")
        col = vector_column(ctx.data, name, info.mapping, info.source_path)
        q = np.asarray(query, dtype=np.float32)
        check_query_dims(q, col.dims)
        return col.matrix, col.rows, q

    def per_doc(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.full(n, np.nan)
        out[rows] = values
        return out

    def cos(query: Any, name: str) -> np.ndarray:
        m, rows, q = vectors(query, name)
        denom = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
        with np.errstate(all="ignore"):
            return per_doc((m @ q) / denom, rows)

    return {
        "_score": scores.astype(np.float64),
        "_doc": lambda name: column(name, None),
        "_field": lambda name, default: column(name, default),
        "_size": lambda name: np.asarray(
            [len(v) for v in ctx.data.column(ctx.data.field(name)).values], dtype=np.float64
        ),
        "_math_pow": np.power,
        "_math_sqrt": np.sqrt,
        "_math_log": np.log,
        "_math_log10": np.log10,
        "_math_exp": np.exp,
        "_math_abs": np.abs,
        "_math_max": np.maximum,
        "_math_min": np.minimum,
        "_v_cosineSimilarity": cos,
        "_v_dotProduct": lambda q, f: _apply(vectors(q, f), lambda m, qv: m @ qv, per_doc),
        "_v_l2norm": lambda q, f: _apply(vectors(q, f), lambda m, qv: np.linalg.norm(m - qv, axis=1), per_doc),
        "_v_l1norm": lambda q, f: _apply(vectors(q, f), lambda m, qv: np.abs(m - qv).sum(axis=1), per_doc),
    }


def _apply(vecs: tuple[np.ndarray, np.ndarray, np.ndarray], fn: Callable, per_doc: Callable) -> np.ndarray:
    matrix, rows, query = vecs
    return per_doc(fn(matrix, query), rows)
