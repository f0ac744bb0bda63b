"""Mapping handling for the test server: validation, dynamic mapping, merging, document checks.

Elasticsearch's rules, reduced to what the project and the conformance tests need. All functions
are pure: they take and return plain mapping bodies (``{"properties": {...}, ...}``) and raise
:class:`EsError` with Elasticsearch's error types and (where tests depend on it) wording.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
import re
from typing import Any

import numpy as np

from es_semantic.testing.errors import EsError, unsupported
from es_semantic.vector_codec import decode_vector

KNOWN_TYPES = frozenset(
    ["text", "keyword", "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long", "boolean", "date", "date_nanos", "object", "nested", "flattened", "dense_vector", "sparse_vector", "ip", "binary", "geo_point", "geo_shape", "point", "shape", "match_only_text", "wildcard", "constant_keyword", "rank_feature", "rank_features", "search_as_you_type", "token_count", "alias", "version", "completion", "integer_range", "float_range", "long_range", "double_range", "date_range", "ip_range", "percolator", "histogram", "semantic_text", "annotated_text", "counted_keyword", "passthrough", "aggregate_metric_double", "join"]
)
NUMERIC_TYPES = frozenset(
    ["long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"]
)
INTEGER_RANGES = {
    "long": (-(2**63), 2**63 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-128, 127),
    "unsigned_long": (0, 2**64 - 1),
}
SIMILARITIES = ("l2_norm", "dot_product", "cosine", "max_inner_product")
ELEMENT_TYPES = ("float", "byte", "bit", "bfloat16")
# index_options type -> parameters it accepts (besides "type").
INDEX_OPTION_PARAMS: dict[str, frozenset[str]] = {
    "hnsw": frozenset({"m", "ef_construction"}),
    "int8_hnsw": frozenset({"m", "ef_construction", "confidence_interval", "rescore_vector"}),
    "int4_hnsw": frozenset({"m", "ef_construction", "confidence_interval", "rescore_vector"}),
    "bbq_hnsw": frozenset({"m", "ef_construction", "rescore_vector"}),
    "flat": frozenset(),
    "int8_flat": frozenset({"confidence_interval", "rescore_vector"}),
    "int4_flat": frozenset({"confidence_interval", "rescore_vector"}),
    "bbq_flat": frozenset({"rescore_vector"}),
    "bbq_disk": frozenset({"cluster_size", "default_visit_percentage", "rescore_vector"}),
}
QUANTIZED_FLOAT_ONLY = {"int8_hnsw", "int4_hnsw", "bbq_hnsw", "int8_flat", "int4_flat", "bbq_flat", "bbq_disk"}
# Parameters Elasticsearch lets put_mapping change on an existing field.
UPDATABLE_PARAMS = frozenset(
    {"ignore_above", "meta", "search_analyzer", "search_quote_analyzer", "dynamic", "index_options", "boost",
     "ignore_malformed", "null_value", "eager_global_ordinals", "fields", "properties", "copy_to"}
)
ROOT_KEYS = frozenset(
    {"properties", "_meta", "dynamic", "_source", "_routing", "dynamic_templates", "date_detection",
     "numeric_detection", "runtime", "dynamic_date_formats", "subobjects", "enabled", "_field_names",
     "_data_stream_timestamp", "_size"}
)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_SLASH_DATE = re.compile(r"^\d{4}/\d{2}/\d{2}(?: \d{2}:\d{2}:\d{2})?$")


def _mapper_error(reason: str, cause_type: str = "illegal_argument_exception") -> EsError:
    full = f"Failed to parse mapping: {reason}"
    return EsError(400, "mapper_parsing_exception", full, caused_by={"type": cause_type, "reason": reason},
                   root_cause=[{"type": "mapper_parsing_exception", "reason": full}])


# ---------------------------------------------------------------------------------------------
# Normalising and validating a mapping body
# ---------------------------------------------------------------------------------------------


def normalize_mappings(body: dict[str, Any] | None, *, put: bool = False,
                       existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a mapping body and return it normalised (dotted names expanded, defaults filled)."""
    body = copy.deepcopy(body or {})
    if not isinstance(body, dict):
        raise _mapper_error("mapping must be an object")
    if "_doc" in body and isinstance(body["_doc"], dict):
        if put:
            raise EsError(400, "illegal_argument_exception", "Types cannot be provided in put mapping requests")
        raise _mapper_error(f"Root mapping definition has unsupported parameters:  [_doc : {body['_doc']}]")
    unknown = [k for k in body if k not in ROOT_KEYS]
    if unknown:
        params = " ".join(f"[{k} : {body[k]}]" for k in unknown)
        raise _mapper_error(f"Root mapping definition has unsupported parameters:  {params}")
    if "properties" in body:
        existing = existing or {}
        flat = body.get("subobjects", existing.get("subobjects", True)) is False
        body["properties"] = _normalize_properties(body["properties"], "", existing.get("properties", {}), flat)
    if "runtime" in body:
        for name, rdef in (body["runtime"] or {}).items():
            rtype = (rdef or {}).get("type")
            if rtype not in {"keyword", "long", "double", "date", "boolean", "ip", "geo_point", "composite",
                             "lookup"}:
                raise _mapper_error(
                    f"The mapper type [{rtype}] declared on runtime field [{name}] does not exist. It might have "
                    "been created within a future version or requires a plugin to be installed. Check the "
                    "documentation."
                )
    return body


def _normalize_properties(props: Any, prefix: str, existing: dict[str, Any] | None = None,
                          flat: bool = False) -> dict[str, Any]:
    """Validate ``properties``; dotted names become objects unless ``subobjects: false`` (``flat``)."""
    existing = existing or {}
    if not isinstance(props, dict):
        raise _mapper_error(f"Expected map for property [properties] on field [{prefix.rstrip('.')}]")
    out: dict[str, Any] = {}
    for name, fdef in props.items():
        if name == "" or name.strip() == "":
            raise _mapper_error("field name cannot be an empty string")
        if "." in name and not flat:
            # "a.b": {...} is shorthand for a: {properties: {b: {...}}}
            head, rest = name.split(".", 1)
            if head == "" or rest == "":
                raise _mapper_error("field name cannot be an empty string")
            fdef = {"properties": {rest: fdef}}
            name = head
        if not isinstance(fdef, dict):
            raise _mapper_error(f"Expected map for property [fields] on field [{name}] but got a class java.lang.String")
        normalized = _normalize_field(name, fdef, prefix + name, existing.get(name) or {})
        if name in out and "properties" in out[name] and "properties" in normalized:
            out[name] = merge_mappings({"properties": {name: out[name]}},
                                       {"properties": {name: normalized}})["properties"][name]
        else:
            out[name] = normalized
    return out


def _normalize_field(name: str, fdef: dict[str, Any], path: str,
                     existing: dict[str, Any] | None = None) -> dict[str, Any]:
    fdef = dict(fdef)
    existing = existing or {}
    ftype = fdef.get("type")
    child_flat = fdef.get("subobjects", existing.get("subobjects", True)) is False
    if ftype is None:
        if "properties" in fdef:
            fdef["properties"] = _normalize_properties(fdef["properties"], path + ".",
                                                       existing.get("properties", {}), child_flat)
        return fdef
    if ftype not in KNOWN_TYPES:
        raise _mapper_error(
            f"The mapper type [{ftype}] declared on field [{name}] does not exist. It might have been created "
            "within a future version or requires a plugin to be installed. Check the documentation."
        )
    if ftype in ("object", "nested"):
        if "properties" in fdef:
            fdef["properties"] = _normalize_properties(fdef["properties"], path + ".",
                                                       existing.get("properties", {}), child_flat)
        if ftype == "object":
            fdef.pop("type")  # Elasticsearch does not echo type: object
        return fdef
    if "fields" in fdef:
        fields = fdef["fields"]
        if not isinstance(fields, dict):
            raise _mapper_error(f"Expected map for property [fields] on field [{name}]")
        fdef["fields"] = {sub: _normalize_field(sub, sdef, f"{path}.{sub}") for sub, sdef in fields.items()}
        for sub in fields:
            if sub == "":
                raise _mapper_error("field name cannot be an empty string")
    _check_field_params(name, ftype, fdef)
    if ftype == "dense_vector":
        _normalize_dense_vector(fdef, path)
    if "meta" in fdef and not isinstance(fdef["meta"], dict):
        raise _mapper_error(f"[meta] must be an object, got {fdef['meta']!r} for field [{path}]")
    return fdef


_VALUE_PARAMS = {"type", "meta", "fields", "copy_to", "index", "store", "doc_values", "script", "on_script_error"}
_NUMBER_PARAMS = _VALUE_PARAMS | {"coerce", "ignore_malformed", "null_value", "time_series_dimension",
                                  "time_series_metric"}
#: The parameters Elasticsearch's mappers take, for the types the server checks.
_FIELD_PARAMS: dict[str, set[str]] = {
    "text": {"type", "meta", "fields", "copy_to", "index", "store", "analyzer", "search_analyzer",
             "search_quote_analyzer", "eager_global_ordinals", "fielddata", "fielddata_frequency_filter",
             "index_options", "index_prefixes", "index_phrases", "norms", "position_increment_gap", "similarity",
             "term_vector"},
    "keyword": _VALUE_PARAMS | {"eager_global_ordinals", "ignore_above", "index_options", "norms", "null_value",
                                "similarity", "normalizer", "split_queries_on_whitespace", "time_series_dimension"},
    "boolean": _VALUE_PARAMS | {"null_value", "ignore_malformed"},
    "date": _VALUE_PARAMS | {"format", "locale", "ignore_malformed", "null_value"},
    "date_nanos": _VALUE_PARAMS | {"format", "locale", "ignore_malformed", "null_value"},
    "scaled_float": _NUMBER_PARAMS | {"scaling_factor"},
    "dense_vector": {"type", "meta", "dims", "element_type", "index", "index_options", "similarity"},
    **{t: _NUMBER_PARAMS for t in ("long", "integer", "short", "byte", "double", "float", "half_float",
                                  "unsigned_long")},
}
#: Parameters known to Elasticsearch whose effect the server does not model, with the value that asks
#: for nothing (None: any value is refused).
_UNMODELLED_PARAMS: dict[str, Any] = {"copy_to": None, "null_value": None, "coerce": True,
                                      "position_increment_gap": None, "split_queries_on_whitespace": False,
                                      "time_series_dimension": False, "time_series_metric": None, "script": None,
                                      "on_script_error": None}


def _check_field_params(name: str, ftype: str, fdef: dict[str, Any]) -> None:
    allowed = _FIELD_PARAMS.get(ftype)
    if allowed is None:
        return
    for key, value in fdef.items():
        if key not in allowed:
            raise _mapper_error(f"unknown parameter [{key}] on mapper [{name}] of type [{ftype}]")
        if key in _UNMODELLED_PARAMS and (_UNMODELLED_PARAMS[key] is None or value != _UNMODELLED_PARAMS[key]):
            raise unsupported(f"the mapping parameter [{key}] (field [{name}])")


def _normalize_dense_vector(fdef: dict[str, Any], path: str) -> None:
    element = fdef.get("element_type", "float")
    if element not in ELEMENT_TYPES:
        raise _mapper_error(
            f"Unknown value [{element}] for field [element_type] - accepted values are [float, byte, bit, bfloat16]"
        )
    if "dims" in fdef:
        dims = fdef["dims"]
        if isinstance(dims, str) and dims.isdigit():
            dims = int(dims)
        max_dims = 4096 * 8 if element == "bit" else 4096
        if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= max_dims:
            raise _mapper_error(f"The number of dimensions should be in the range [1, {max_dims}] but was [{dims}]")
        if element == "bit" and dims % 8:
            raise _mapper_error(f"The number of dimensions for should be a multiple of 8 but was [{dims}]")
        fdef["dims"] = dims
    indexed = fdef.get("index", True)
    if isinstance(indexed, str):
        indexed = indexed == "true"
    fdef["index"] = bool(indexed)
    if "similarity" in fdef:
        sim = fdef["similarity"]
        if sim not in SIMILARITIES:
            raise _mapper_error(
                f"Unknown value [{sim}] for field [similarity] - accepted values are "
                "[l2_norm, dot_product, cosine, max_inner_product]"
            )
        if not indexed:
            raise _mapper_error("Field [similarity] requires field [index] to be configured and set to true")
    elif indexed:
        fdef["similarity"] = "l2_norm" if element == "bit" else "cosine"
    options = fdef.get("index_options")
    if options is not None:
        if not indexed:
            raise _mapper_error("Field [index_options] requires field [index] to be configured and set to true")
        if not isinstance(options, dict) or "type" not in options:
            raise _mapper_error("[index_options] requires field [type] to be configured")
        otype = options["type"]
        if otype not in INDEX_OPTION_PARAMS:
            raise _mapper_error(f"Unknown vector index options type [{otype}] for field [{path}]")
        extra = [k for k in options if k != "type" and k not in INDEX_OPTION_PARAMS[otype]]
        if extra:
            params = " ".join(f"[{k} : {options[k]}]" for k in extra)
            raise _mapper_error(f"Mapping definition for [{path}] has unsupported parameters:  {params}")
        if otype in QUANTIZED_FLOAT_ONLY and element != "float":
            raise _mapper_error(f"[element_type] cannot be [{element}] when using index type [{otype}]")
        for key in ("m", "ef_construction"):
            if key in options and (not isinstance(options[key], int) or options[key] < 1):
                raise _mapper_error(f"[{key}] must be a positive integer, got [{options[key]}]")
        if "confidence_interval" in options:
            ci = options["confidence_interval"]
            if not isinstance(ci, (int, float)) or not (ci == 0 or 0.9 <= ci <= 1.0):
                raise _mapper_error(f"confidenceInterval must be between 0.90 and 1.0 or exactly 0, got [{ci}]")
    elif indexed and "dims" in fdef:
        fdef["index_options"] = default_index_options(element, fdef["dims"])


def default_index_options(element: str, dims: int) -> dict[str, Any]:
    """Elasticsearch 9.x defaults: bbq_hnsw from 384 dims, int8_hnsw below, hnsw for byte/bit vectors."""
    if element != "float":
        return {"type": "hnsw", "m": 16, "ef_construction": 100}
    if dims >= 384:
        return {"type": "bbq_hnsw", "m": 16, "ef_construction": 100, "rescore_vector": {"oversample": 3.0}}
    return {"type": "int8_hnsw", "m": 16, "ef_construction": 100}


# ---------------------------------------------------------------------------------------------
# Merging (put_mapping)
# ---------------------------------------------------------------------------------------------


def merge_mappings(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge a normalised put_mapping body into the current mapping, refusing incompatible changes."""
    result = copy.deepcopy(old)
    for key, value in new.items():
        if key == "properties":
            result["properties"] = _merge_props(result.get("properties", {}), value, "")
        else:
            # _meta, dynamic, dynamic_templates...: replaced wholesale, as Elasticsearch does.
            result[key] = copy.deepcopy(value)
    return result


def _field_type(fdef: dict[str, Any]) -> str:
    return fdef.get("type", "object")


def _merge_props(old: dict[str, Any], new: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(old)
    for name, ndef in new.items():
        path = prefix + name
        if name not in old:
            out[name] = copy.deepcopy(ndef)
            continue
        odef = old[name]
        otype, ntype = _field_type(odef), _field_type(ndef)
        if otype != ntype:
            if "type" not in ndef and "properties" not in ndef and otype != "object":
                # {"f": {"fields": ...}} without a type is not a type change in ES either; treat as update
                ntype = otype
            else:
                raise EsError(400, "illegal_argument_exception",
                              f"mapper [{path}] cannot be changed from type [{otype}] to [{ntype}]")
        merged = dict(odef)
        for key, value in ndef.items():
            if key == "properties":
                merged["properties"] = _merge_props(odef.get("properties", {}), value, path + ".")
            elif key == "fields":
                merged["fields"] = _merge_props(odef.get("fields", {}), value, path + ".")
            elif key in UPDATABLE_PARAMS or key == "type":
                merged[key] = copy.deepcopy(value)
            elif key not in odef:
                if otype == "dense_vector" and key == "dims":
                    merged[key] = value
                    continue
                default = _PARAM_DEFAULTS.get(otype, {}).get(key)
                if default is not None and default == value:
                    continue
                raise EsError(400, "illegal_argument_exception",
                              f"Mapper for [{path}] conflicts with existing mapper:\n\tCannot update parameter "
                              f"[{key}] from [{_fmt(default) if default is not None else 'default'}] to "
                              f"[{_fmt(value)}]")
            elif odef[key] != value:
                if otype == "dense_vector" or key in ("similarity", "element_type", "dims"):
                    raise EsError(400, "illegal_argument_exception",
                                  f"Mapper for [{path}] conflicts with existing mapper:\n\tCannot update parameter "
                                  f"[{key}] from [{_fmt(odef[key])}] to [{_fmt(value)}]")
                raise EsError(400, "illegal_argument_exception",
                              f"Mapper for [{path}] conflicts with existing mapper:\n\tCannot update parameter "
                              f"[{key}] from [{_fmt(odef[key])}] to [{_fmt(value)}]")
        if otype == "dense_vector" and "index_options" in ndef and "index_options" in odef \
                and odef["index_options"].get("type") != ndef["index_options"].get("type"):
            _check_index_options_update(path, odef["index_options"]["type"], ndef["index_options"]["type"])
        out[name] = merged
    return out


# Defaults Elasticsearch does not echo in the mapping, so a put_mapping that states them is no change.
_PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "dense_vector": {"element_type": "float"},
    "text": {"analyzer": "default", "index": True, "store": False, "norms": True},
    "keyword": {"index": True, "store": False, "doc_values": True},
}

_INDEX_OPTION_RANK = {"flat": 0, "int8_flat": 1, "int4_flat": 2, "bbq_flat": 3, "hnsw": 4, "int8_hnsw": 5,
                      "int4_hnsw": 6, "bbq_hnsw": 7, "bbq_disk": 8}


def _check_index_options_update(path: str, old: str, new: str) -> None:
    # Elasticsearch allows moving to a "stronger" index type (flat -> hnsw, hnsw -> int8_hnsw...), not back.
    if _INDEX_OPTION_RANK.get(new, -1) < _INDEX_OPTION_RANK.get(old, -1):
        raise EsError(400, "illegal_argument_exception",
                      f"Mapper for [{path}] conflicts with existing mapper:\n\tCannot update parameter "
                      f"[index_options] from [{old}] to [{new}]")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Documents: validation against the mapping and dynamic mapping updates
# ---------------------------------------------------------------------------------------------


def _doc_error(doc_id: str | None, reason: str, cause: dict[str, Any] | None = None) -> EsError:
    return EsError(400, "document_parsing_exception", reason, caused_by=cause)


def _dynamic_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return None
    return str(value)


def check_document(mappings: dict[str, Any], source: dict[str, Any], doc_id: str | None) -> dict[str, Any] | None:
    """Validate ``source`` against ``mappings``; return the updated mapping if dynamic fields were added.

    Returns ``None`` when the mapping does not change. Raises ``EsError`` (400) for values the mapping
    refuses (bad vectors, unparsable numbers, strict dynamic mapping).
    """
    if not isinstance(source, dict):
        raise EsError(400, "document_parsing_exception", "[1:1] failed to parse: source is not an object")
    root_dynamic = _dynamic_value(mappings.get("dynamic", True)) or "true"
    props = mappings.get("properties", {})
    new_props, changed = _check_object(props, source, "", root_dynamic, doc_id, "_doc")
    if not changed:
        return None
    updated = dict(mappings)
    updated["properties"] = new_props
    return updated


def _check_object(props: dict[str, Any], obj: dict[str, Any], prefix: str, dynamic: str, doc_id: str | None,
                  parent_name: str) -> tuple[dict[str, Any], bool]:
    changed = False
    out = props
    for key, value in obj.items():
        if key == "":
            raise _doc_error(doc_id, "[1:2] failed to parse: field name cannot be an empty string",
                             {"type": "illegal_argument_exception", "reason": "field name cannot be an empty string"})
        if "." in key and key not in out:
            # dotted field names are objects in disguise ("a.b": 1 is a: {b: 1}), unless mapped flat.
            head, rest = key.split(".", 1)
            if head == "" or rest == "":
                raise _doc_error(doc_id, "[1:2] failed to parse: field name cannot contain only dots")
            key, value = head, {rest: value}
        path = prefix + key
        fdef = out.get(key)
        if fdef is None:
            if value is None or (isinstance(value, list) and all(v is None for v in value)):
                continue
            if dynamic == "strict":
                raise EsError(400, "strict_dynamic_mapping_exception",
                              f"[1:2] mapping set to strict, dynamic introduction of [{key}] within "
                              f"[{parent_name}] is not allowed")
            if dynamic in ("false", "runtime"):
                continue
            new_def = _dynamic_mapping(value, path, dynamic, doc_id)
            if new_def is None:
                continue
            if out is props:
                out = dict(props)
            out[key] = new_def
            changed = True
            continue
        ftype = fdef.get("type", "object")
        if ftype in ("object", "nested"):
            sub_dyn = _dynamic_value(fdef.get("dynamic")) or dynamic
            items = value if isinstance(value, list) else [value]
            sub_props = fdef.get("properties", {})
            sub_changed = False
            for item in items:
                if item is None:
                    continue
                if not isinstance(item, dict):
                    if fdef.get("enabled", True) is False:
                        continue
                    raise _doc_error(doc_id, f"[1:2] object mapping for [{path}] tried to parse field [{key}] as "
                                     "object, but found a concrete value")
                if fdef.get("enabled", True) is False:
                    continue
                sub_props, c = _check_object(sub_props, item, path + ".", sub_dyn, doc_id, key)
                sub_changed = sub_changed or c
            if sub_changed:
                if out is props:
                    out = dict(props)
                out[key] = {**fdef, "properties": sub_props}
                changed = True
            continue
        updated_def = check_value(fdef, value, path, doc_id)
        if updated_def is not None:
            if out is props:
                out = dict(props)
            out[key] = updated_def
            changed = True
    return out, changed


def _dynamic_mapping(value: Any, path: str, dynamic: str, doc_id: str | None) -> dict[str, Any] | None:
    if isinstance(value, list):
        for item in value:
            if item is not None:
                return _dynamic_mapping(item, path, dynamic, doc_id)
        return None
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "long"}
    if isinstance(value, float):
        return {"type": "float"}
    if isinstance(value, str):
        if _ISO_DATE.match(value):
            return {"type": "date"}
        if _SLASH_DATE.match(value):
            return {"type": "date", "format": "yyyy/MM/dd HH:mm:ss||yyyy/MM/dd||epoch_millis"}
        return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    if isinstance(value, dict):
        props, _ = _check_object({}, value, path + ".", dynamic, doc_id, path.rsplit(".", 1)[-1])
        return {"properties": props}
    return None


def check_value(fdef: dict[str, Any], value: Any, path: str, doc_id: str | None) -> dict[str, Any] | None:
    """Validate one leaf value; return an updated field definition when the value completes it (dims)."""
    ftype = fdef.get("type")
    if value is None:
        return None
    if ftype == "dense_vector":
        return _check_vector(fdef, value, path, doc_id)
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None:
            continue
        if ftype in NUMERIC_TYPES:
            _check_number(ftype, v, path, doc_id, fdef)
        elif ftype == "boolean":
            if not (isinstance(v, bool) or v in ("true", "false", "")):
                raise _doc_error(doc_id, f"[1:2] failed to parse field [{path}] of type [boolean] in document with "
                                 f"id '{doc_id}'. Preview of field's value: '{v}'",
                                 {"type": "illegal_argument_exception",
                                  "reason": f"Failed to parse value [{v}] as only [true] or [false] are allowed."})
        elif ftype in ("text", "keyword", "match_only_text", "wildcard", "constant_keyword"):
            if isinstance(v, dict):
                raise _doc_error(doc_id, f"[1:2] failed to parse field [{path}] of type [{ftype}] in document with "
                                 f"id '{doc_id}'. Preview of field's value: '{v}'")
        elif ftype == "date" and (not isinstance(v, (str, int, float)) or isinstance(v, bool)):
            raise _doc_error(doc_id, f"[1:2] failed to parse field [{path}] of type [date] in document with "
                             f"id '{doc_id}'. Preview of field's value: '{v}'")
    return None


def _check_number(ftype: str, v: Any, path: str, doc_id: str | None, fdef: dict[str, Any]) -> None:
    ok = True
    num: Any = v
    if isinstance(v, (bool, dict, list)):
        ok = False
    elif isinstance(v, str):
        try:
            num = float(v) if not re.fullmatch(r"[+-]?\d+", v.strip()) else int(v)
        except ValueError:
            ok = False
    if ok and ftype in INTEGER_RANGES:
        lo, hi = INTEGER_RANGES[ftype]
        if isinstance(num, float):
            if not math.isfinite(num):
                ok = False
            else:
                num = int(num)  # Elasticsearch truncates decimals for integer types
        if ok and not lo <= num <= hi:
            ok = False
    elif ok and isinstance(num, float) and not math.isfinite(num):
        ok = False
    if not ok and not fdef.get("ignore_malformed", False):
        raise _doc_error(doc_id, f"[1:2] failed to parse field [{path}] of type [{ftype}] in document with id "
                         f"'{doc_id}'. Preview of field's value: '{v}'",
                         {"type": "illegal_argument_exception", "reason": f"For input string: \"{v}\""})


_NUMBER_TYPES = frozenset({int, float})


def _vector_error(path: str, doc_id: str | None, reason: str) -> EsError:
    return EsError(400, "document_parsing_exception", f"[1:2] failed to parse: {reason}",
                   caused_by={"type": "illegal_argument_exception", "reason": reason})


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return False
    return True


def _check_vector(fdef: dict[str, Any], value: Any, path: str, doc_id: str | None) -> dict[str, Any] | None:
    element = fdef.get("element_type", "float")
    doc_desc = f"document with id '{doc_id}'"
    if isinstance(value, str):
        if element == "float" or element == "bfloat16":
            try:
                array = decode_vector(value)
            except ValueError as exc:
                if _is_base64(value):
                    raise _vector_error(path, doc_id, f"Failed to parse base64 string for [dense_vector] field "
                                        f"[{path}] in doc [{doc_desc}]: {exc}") from None
                # Not base64: parsed as Elasticsearch parses a non-array value of a float vector.
                raise EsError(400, "document_parsing_exception",
                              f"[1:2] failed to parse field [{path}] of type [dense_vector] in {doc_desc}. Preview "
                              f"of field's value: '{value[:64]}'",
                              caused_by={"type": "parsing_exception", "reason": "Failed to parse object: expecting "
                                         "token of type [START_ARRAY] but found [VALUE_STRING]"}) from None
        else:
            try:
                array = np.frombuffer(bytes.fromhex(value), dtype=np.int8).astype(np.float32)
            except ValueError:
                raise _vector_error(path, doc_id, f"Failed to parse hex string for [dense_vector] field [{path}] "
                                    f"in doc [{doc_desc}]") from None
            if element == "bit":
                array = np.repeat(array, 8)  # dims count bits
    elif isinstance(value, list):
        # set(map(type, ...)) runs at C speed: a cheap exact check that every element is a plain number
        if not set(map(type, value)) <= _NUMBER_TYPES:
            bad = next(v for v in value if type(v) not in _NUMBER_TYPES)
            raise _vector_error(path, doc_id, f"[dense_vector] field [{path}] in doc [{doc_desc}] contains a "
                                f"non-numeric value [{bad}]; expected a list of numbers or a base64 string")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise _vector_error(path, doc_id, f"[dense_vector] field [{path}] in doc [{doc_desc}] must be a list "
                                "of numbers") from None
        if element == "bit":
            array = np.repeat(array, 8)
    else:
        raise _vector_error(path, doc_id, f"[dense_vector] field [{path}] in doc [{doc_desc}] must be an array of "
                            f"numbers or a base64 string, got [{value}]")
    dims = fdef.get("dims")
    if dims is not None and array.shape[0] != dims:
        raise _vector_error(path, doc_id, f"The [dense_vector] field [{path}] in doc [{doc_desc}] has a different "
                            f"number of dimensions [{array.shape[0]}] than defined in the mapping [{dims}]")
    if array.shape[0] == 0:
        raise _vector_error(path, doc_id, f"The [dense_vector] field [{path}] in doc [{doc_desc}] has no dimensions")
    if not np.isfinite(array).all():
        raise _vector_error(path, doc_id, f"[dense_vector] field [{path}] in doc [{doc_desc}] contains NaN or "
                            "Infinite values; only finite numbers are allowed")
    if element == "byte" and isinstance(value, list) and (
            (array != np.round(array)).any() or array.min() < -128 or array.max() > 127):
        bad = next(v for v in value if v != round(v) or not -128 <= v <= 127)
        raise _vector_error(path, doc_id, f"element_type [byte] vectors only support integers between [-128, "
                            f"127] but found [{bad}] at dim [{value.index(bad)}]; Preview of invalid vector: "
                            f"{value[:10]}")
    similarity = fdef.get("similarity")
    if similarity == "cosine" and element != "bit":
        if float(np.dot(array, array)) == 0.0:
            raise _vector_error(path, doc_id, "The [cosine] similarity does not support vectors with zero "
                                f"magnitude. Preview of invalid vector: {_preview(array)}")
    elif similarity == "dot_product" and element in ("float", "bfloat16"):
        norm = float(np.dot(array, array))
        if abs(norm - 1.0) > 1e-4:
            raise _vector_error(path, doc_id, "The [dot_product] similarity can only be used with unit-length "
                                f"vectors. Preview of invalid vector: {_preview(array)}")
    if dims is None:
        updated = dict(fdef)
        updated["dims"] = int(array.shape[0])  # bit vectors count bits, already expanded above
        if updated.get("index", True) and "index_options" not in updated:
            updated["index_options"] = default_index_options(element, updated["dims"])
        return updated
    return None


def _preview(array: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(x)) for x in array[:10]) + (", ...]" if len(array) > 10 else "]")


def mapping_for_field(mappings: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The definition of a dotted field path, including multi-fields, or None."""
    parts = path.split(".")
    props = mappings.get("properties", {})
    fdef: dict[str, Any] | None = None
    i = 0
    while i < len(parts):
        part = parts[i]
        if fdef is not None and "fields" in fdef and part in fdef["fields"] and "properties" not in fdef:
            fdef = fdef["fields"][part]
        else:
            fdef = props.get(part)
        if fdef is None:
            return None
        props = fdef.get("properties", {})
        i += 1
    return fdef
