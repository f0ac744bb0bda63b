"""Which index settings the test server takes: Elasticsearch's error for an unknown one, a 400
``unsupported_by_test_server`` for a known one whose effect it does not model.

Settings that cannot change an answer of a one-node, in-memory cluster (codec, translog, merge,
allocation, slow logs, limits the server never reaches) are accepted and echoed back.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from es_semantic.testing.aggregations import _levenshtein_similarity
from es_semantic.testing.errors import EsError, unsupported

#: Settings whose effect the server models (or that are only echoed, like the index metadata).
_MODELLED = {
    "index.number_of_shards", "index.number_of_replicas", "index.number_of_routing_shards",
    "index.routing_partition_size", "index.refresh_interval", "index.max_result_window", "index.mode",
    "index.max_terms_count", "index.mapping.exclude_source_vectors",
    "index.blocks.write", "index.blocks.read_only", "index.blocks.metadata",
    "index.query.parse.allow_unmapped_fields", "index.soft_deletes.enabled",
    "index.uuid", "index.creation_date", "index.provided_name", "index.version.created",
    "index.analysis.*", "index.similarity.*",
}
#: Known to Elasticsearch, no effect the server could show (limits of features it refuses anyway).
_INERT = {
    "index.codec", "index.auto_expand_replicas", "index.priority", "index.format",
    "index.max_script_fields", "index.max_refresh_listeners", "index.max_rescore_window",
    "index.max_adjacency_matrix_filters", "index.highlight.max_analyzed_offset", "index.gc_deletes",
    "index.shard.check_on_startup", "index.load_fixed_bitset_filters_eagerly", "index.requests.cache.enable",
    "index.queries.cache.enabled", "index.search.idle.after", "index.write.wait_for_active_shards",
    "index.mapping.total_fields.limit", "index.mapping.depth.limit", "index.mapping.nested_fields.limit",
    "index.mapping.nested_objects.limit", "index.mapping.field_name_length.limit",
    "index.mapping.total_fields.ignore_dynamic_beyond_limit", "index.unassigned.node_left.delayed_timeout",
    "index.translog.*", "index.merge.*", "index.store.*", "index.routing.allocation.*", "index.routing.rebalance.*",
    "index.search.slowlog.*", "index.indexing.slowlog.*", "index.lifecycle.*", "index.soft_deletes.retention_lease.*",
    "index.verified_before_close",
}
#: Known to Elasticsearch, with an effect the server does not model (or a limit it does not enforce):
#: refused by name.
_UNMODELLED = {
    "index.sort.*", "index.query.default_field", "index.max_inner_result_window", "index.max_docvalue_fields_search",
    "index.max_ngram_diff", "index.max_shingle_diff", "index.max_regex_length", "index.max_slices_per_scroll",
    "index.default_pipeline", "index.final_pipeline",
    "index.mapping.ignore_malformed", "index.mapping.coerce", "index.mapping.source.mode",
    "index.mapping.synthetic_source_keep", "index.time_series.*", "index.routing_path", "index.dimensions",
    "index.look_ahead_time", "index.look_back_time", "index.blocks.read", "index.blocks.read_only_allow_delete",
    "index.shard_limit.*", "index.knn.*", "index.dense_vector.*", "index.hidden",
}
#: A setting's value that does what the server does anyway (a pipeline of "_none", a false block).
_NEUTRAL_VALUES = {"index.default_pipeline": "_none", "index.final_pipeline": "_none", "index.blocks.read": "false",
                   "index.blocks.read_only_allow_delete": "false", "index.hidden": "false",
                   "index.mapping.source.mode": "stored",
                   "index.mode": ("standard", "lookup")}
_EXACT = sorted(k for k in _MODELLED | _INERT | _UNMODELLED if "*" not in k)


def _matches(key: str, names: set[str]) -> bool:
    return key in names or any("*" in n and fnmatch.fnmatchcase(key, n) for n in names)


def validate(settings: dict[str, Any]) -> None:
    """Check flat ``index.*`` settings as Elasticsearch's ``IndexScopedSettings.validate`` would."""
    for key in sorted(settings):
        value = settings[key]
        if _matches(key, _MODELLED | _INERT):
            if key == "index.mode" and value not in (None, *_NEUTRAL_VALUES["index.mode"]):
                _check_mode(str(value))
            continue
        if _matches(key, _UNMODELLED):
            neutral = _NEUTRAL_VALUES.get(key)
            if value is None or (neutral is not None and str(value) == neutral):
                continue
            raise unsupported(f"the index setting [{key}]")
        raise unknown_setting(key)


def _check_mode(mode: str) -> None:
    if mode in ("time_series", "logsdb"):
        raise unsupported(f"[index.mode] [{mode}]")
    raise EsError(400, "illegal_argument_exception",
                  f"[{mode}] is an invalid index mode, valid modes are: [standard, time_series, logsdb, lookup]")


def unknown_setting(key: str) -> EsError:
    """``AbstractScopedSettings.validate``'s message, with its suggestions (similarity above 0.7)."""
    scored = sorted((-_levenshtein_similarity(key, k), k) for k in _EXACT if _levenshtein_similarity(key, k) > 0.7)
    keys = [k for _, k in scored]
    msg = f"unknown setting [{key}]"
    if keys:
        msg += f" did you mean [{keys[0]}]?" if len(keys) == 1 else f" did you mean any of [{', '.join(keys)}]?"
    else:
        msg += (" please check that any required plugins are installed, or check the breaking changes "
                "documentation for removed settings")
    return EsError(400, "illegal_argument_exception", msg)
