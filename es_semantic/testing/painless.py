"""A small, safe subset of Painless for ``script_score`` and ``function_score`` scripts.

Statements: local declarations (``double x = ...;``, also ``float``, ``int``, ``long``, ``def``,
``var``), assignments (``x = ...;``, ``x += ...;``), ``return ...;`` and a final expression.
Expressions: numbers, ``+ - * / %``, parentheses, ``_score``, ``params.x`` / ``params['x']``,
``doc['f'].value``, ``doc['f'].size()``, ``$('f', default)``, ``Math.pow/sqrt/log/log10/log1p/exp/
abs/max/min/floor/ceil/round/signum/tanh``, ``Math.E``, ``Math.PI``, the score functions ``sigmoid(value,
k, a)`` and ``saturation(value, k)``, and the vector functions ``cosineSimilarity``, ``dotProduct``,
``l2norm``, ``l1norm`` (``(query, 'field')`` or ``(query, doc['field'])``). Each expression is translated
to Python, checked against a whitelist of AST nodes and evaluated over numpy arrays (one value per
document). Anything else (``if``, loops, the ternary operator, other classes) is a 400
``unsupported_by_test_server`` naming what it met. Java's integer division of two integers is not
reproduced (``1 / 2`` is 0.5 here).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from es_semantic.testing.errors import EsError, unsupported

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
    ast.keyword,
)


def _unsupported(source: str, why: str) -> EsError:
    return unsupported(f"this Painless script ({why}): [{source}]")


_DECLARATION = re.compile(r"^(?:double|float|int|long|def|var|boolean|short|byte)\s+([A-Za-z_]\w*)\s*=\s*(.+)$", re.DOTALL)
_ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)\s*([+\-*/])?=(?!=)\s*(.+)$", re.DOTALL)
_RESERVED = {"params", "doc", "Math", "return"}


def _translate(expr: str, source: str) -> str:
    if "?" in expr:
        raise _unsupported(source, "the ternary operator")
    expr = re.sub(r"doc\[(['\"])(.+?)\1\]\.value\.(millis|toInstant\(\)\.toEpochMilli\(\))", r"_doc('\2')", expr)
    expr = re.sub(r"doc\[(['\"])(.+?)\1\]\.value", r"_doc('\2')", expr)
    expr = re.sub(r"doc\[(['\"])(.+?)\1\]\.size\(\)", r"_size('\2')", expr)
    expr = re.sub(r"doc\[(['\"])(.+?)\1\]", r"'\2'", expr)  # a field handed to a vector function
    expr = re.sub(r"\$\(", "_field(", expr)
    expr = re.sub(r"params\.([A-Za-z_][A-Za-z_0-9]*)", r"params['\1']", expr)
    expr = re.sub(r"Math\.(E|PI)\b", r"_math_\1", expr)
    expr = re.sub(r"Math\.(pow|sqrt|log10|log1p|log|exp|abs|max|min|floor|ceil|round|signum|tanh)\(", r"_math_\1(",
                  expr)
    expr = re.sub(r"\b(cosineSimilarity|dotProduct|l2norm|l1norm|sigmoid|saturation)\(", r"_v_\1(", expr)
    return expr


def _statements(source: str) -> list[str]:
    """The ``;``-separated statements of ``source`` (blocks are refused)."""
    if "{" in source or "}" in source:
        raise _unsupported(source, "blocks: if, loops, lambdas")
    parts, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(source):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append(source[start:i])
            start = i + 1
    parts.append(source[start:])
    return [p.strip() for p in parts if p.strip()]


def _compile_expr(expr: str, source: str, names: set[str]) -> Any:
    text = _translate(expr, source)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise _unsupported(source, f"syntax of [{expr}]") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise _unsupported(source, f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Name) and not (node.id in ("_score", "params") or node.id.startswith("_")
                                               or node.id in names):
            raise _unsupported(source, f"unknown name [{node.id}]")
    return compile(tree, "<script>", "eval")


def _program(source: str) -> list[tuple[str | None, str | None, Any]]:
    """(local assigned or None, compound operator or None, code) per statement; the last gives the value."""
    steps: list[tuple[str | None, str | None, Any]] = []
    names: set[str] = set()
    statements = _statements(source)
    if not statements:
        raise _unsupported(source, "no statement")
    for n, statement in enumerate(statements):
        last = n == len(statements) - 1
        ret = re.match(r"^return\b\s*(.+)$", statement, re.DOTALL)
        if ret:
            if not last:
                raise _unsupported(source, "statements after return")
            steps.append((None, None, _compile_expr(ret.group(1), source, names)))
            continue
        decl = _DECLARATION.match(statement) or _ASSIGNMENT.match(statement)
        if decl and decl.group(1) not in _RESERVED:
            name = decl.group(1)
            op = decl.group(2) if decl.re is _ASSIGNMENT else None
            if decl.re is _ASSIGNMENT and name not in names:
                raise _unsupported(source, f"assignment to undeclared [{name}]")
            steps.append((name, op, _compile_expr(decl.groups()[-1], source, names)))
            names.add(name)
            if last:
                raise _unsupported(source, "no return value")
            continue
        if not last:
            raise _unsupported(source, f"a statement without effect [{statement}]")
        steps.append((None, None, _compile_expr(statement, source, names)))
    return steps


def compile_script(spec: Any) -> Callable[..., np.ndarray]:
    """Compile a ``script`` object (``{"source": ..., "params": {...}}`` or a string)."""
    if isinstance(spec, str):
        spec = {"source": spec}
    if not isinstance(spec, dict) or "source" not in spec:
        if isinstance(spec, dict) and "id" in spec:
            raise unsupported("stored scripts ([script] with an [id])")
        raise EsError(400, "parsing_exception", "[script] requires [source]")
    for key in spec:
        if key not in ("source", "params", "lang", "options"):
            raise EsError(400, "x_content_parse_exception", f"[1:2] [script] unknown field [{key}]")
    lang = spec.get("lang", "painless")
    if lang not in ("painless", "expression"):
        raise _unsupported(spec["source"], f"lang [{lang}]")
    source = str(spec["source"])
    program = _program(source)
    params = dict(spec.get("params") or {})

    def run(namespace: dict[str, Any]) -> np.ndarray:
        env = {"__builtins__": {}, "params": params, **namespace}
        value: Any = None
        with np.errstate(all="ignore"):
            for name, op, code in program:
                value = eval(code, env)
                if name is not None:
                    env[name] = _OPS[op](env[name], value) if op else value
        return np.asarray(value, dtype=np.float64)

    return run


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
}


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
        "_math_log1p": np.log1p,
        "_math_floor": np.floor,
        "_math_ceil": np.ceil,
        "_math_round": lambda x: np.floor(np.asarray(x, dtype=np.float64) + 0.5),  # Java's Math.round
        "_math_signum": np.sign,
        "_math_tanh": np.tanh,
        "_math_E": float(np.e),
        "_math_PI": float(np.pi),
        "_v_sigmoid": lambda value, k, a: np.power(value, a) / (np.power(k, a) + np.power(value, a)),
        "_v_saturation": lambda value, k: np.asarray(value, dtype=np.float64) / (k + np.asarray(value)),
        "_v_cosineSimilarity": cos,
        "_v_dotProduct": lambda q, f: _apply(vectors(q, f), lambda m, qv: m @ qv, per_doc),
        "_v_l2norm": lambda q, f: _apply(vectors(q, f), lambda m, qv: np.linalg.norm(m - qv, axis=1), per_doc),
        "_v_l1norm": lambda q, f: _apply(vectors(q, f), lambda m, qv: np.abs(m - qv).sum(axis=1), per_doc),
    }


def _apply(vecs: tuple[np.ndarray, np.ndarray, np.ndarray], fn: Callable, per_doc: Callable) -> np.ndarray:
    matrix, rows, query = vecs
    return per_doc(fn(matrix, query), rows)
