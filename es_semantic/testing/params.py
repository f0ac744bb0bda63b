"""URL parameters per REST API: what the test server honours, what it knows but refuses.

Elasticsearch answers an unknown URL parameter with ``illegal_argument_exception`` ("request [path]
contains unrecognized parameter: [x]", with its did-you-mean suggestions, ``BaseRestHandler``). A
parameter Elasticsearch knows but the test server does not model is refused with
``unsupported_by_test_server`` naming it: a test that passes here must not pass only because a
parameter was dropped. Parameters that cannot change the answer of a one-node, in-memory cluster
(timeouts, ``preference``, ``request_cache``, shard-request tuning) are honoured by being accepted.
"""

from __future__ import annotations

import fnmatch

from es_semantic.testing.aggregations import _levenshtein_similarity
from es_semantic.testing.errors import EsError, unsupported

#: Parameters every API takes (``filter_path`` is applied to the response by the server).
GLOBAL = frozenset({"pretty", "human", "error_trace", "filter_path"})

_INDICES_OPTIONS = "allow_no_indices expand_wildcards ignore_unavailable"
_SOURCE = "_source _source_includes _source_excludes"
_WRITE = "refresh routing timeout wait_for_active_shards include_source_on_error"
_SEARCH_TUNING = ("allow_partial_search_results batched_reduce_size ccs_minimize_roundtrips "
                  "max_concurrent_shard_requests pre_filter_shard_size preference request_cache "
                  "ignore_throttled search_type typed_keys")
_QUERY_STRING = "q df default_operator lenient"
_QUERY_STRING_UNSUPPORTED = "analyzer analyze_wildcard"

#: api -> (honoured, known to Elasticsearch but refused). Names as in Elasticsearch's REST spec.
_TABLE: dict[str, tuple[str, str]] = {
    "info": ("", ""),
    "capabilities": ("method path capabilities parameters local_only", ""),
    "cluster.health": (("local master_timeout timeout wait_for_active_shards wait_for_events "
                       "wait_for_no_initializing_shards wait_for_no_relocating_shards wait_for_nodes "
                       "wait_for_status expand_wildcards"), "level"),
    "cluster.get_settings": ("flat_settings master_timeout timeout", "include_defaults"),
    "cluster.put_settings": ("flat_settings master_timeout timeout", ""),
    "search": ((f"{_INDICES_OPTIONS} {_SEARCH_TUNING} {_SOURCE} {_QUERY_STRING} docvalue_fields explain from "
               "rest_total_hits_as_int routing scroll seq_no_primary_term size sort stats stored_fields "
               "terminate_after timeout track_scores track_total_hits version include_named_queries_score "
                "_source_exclude_vectors"),
               (f"{_QUERY_STRING_UNSUPPORTED} suggest_field suggest_mode suggest_size suggest_text "
               "force_synthetic_source project_routing")),
    "count": (f"{_INDICES_OPTIONS} {_QUERY_STRING} ignore_throttled preference routing terminate_after",
              f"{_QUERY_STRING_UNSUPPORTED} min_score project_routing"),
    "msearch": ((f"{_INDICES_OPTIONS} {_SEARCH_TUNING} max_concurrent_searches rest_total_hits_as_int routing "
                "include_named_queries_score"), "project_routing"),
    "scroll": ("scroll scroll_id rest_total_hits_as_int", ""),
    "clear_scroll": ("scroll_id", ""),
    "open_point_in_time": ((f"{_INDICES_OPTIONS} keep_alive allow_partial_search_results "
                           "max_concurrent_shard_requests preference routing"), "project_routing"),
    "close_point_in_time": ("", ""),
    "index": (f"{_WRITE} if_primary_term if_seq_no op_type require_alias version version_type",
              "pipeline require_data_stream"),
    "create": (f"{_WRITE} require_alias version version_type", "pipeline require_data_stream"),
    "get": ((f"{_SOURCE} preference realtime refresh routing stored_fields version version_type "
            "_source_exclude_vectors"), "force_synthetic_source"),
    "get_source": (f"{_SOURCE} preference realtime refresh routing version version_type _source_exclude_vectors",
                   ""),
    "delete": (f"{_WRITE} if_primary_term if_seq_no version version_type", ""),
    "update": (f"{_WRITE} {_SOURCE} if_primary_term if_seq_no require_alias retry_on_conflict lang", ""),
    "bulk": (f"{_WRITE} {_SOURCE} require_alias", "pipeline require_data_stream list_executed_pipelines"),
    "mget": (f"{_SOURCE} preference realtime refresh routing stored_fields _source_exclude_vectors",
             "force_synthetic_source"),
    "update_by_query": ((f"{_INDICES_OPTIONS} {_QUERY_STRING} conflicts max_docs preference refresh "
                        "request_cache requests_per_second routing scroll scroll_size search_timeout size "
                        "timeout wait_for_active_shards wait_for_completion"),
                        (f"{_QUERY_STRING_UNSUPPORTED} from pipeline search_type slices sort stats "
                        "terminate_after version version_type")),
    "delete_by_query": ((f"{_INDICES_OPTIONS} {_QUERY_STRING} conflicts max_docs preference refresh "
                        "request_cache requests_per_second routing scroll scroll_size search_timeout size "
                        "timeout wait_for_active_shards wait_for_completion"),
                        (f"{_QUERY_STRING_UNSUPPORTED} from search_type slices sort stats terminate_after "
                        "version")),
    "tasks.get": ("timeout wait_for_completion", ""),
    "tasks.list": ("actions detailed group_by nodes parent_task_id timeout wait_for_completion", ""),
    "cluster.pending_tasks": ("local master_timeout", ""),
    "ingest.get_pipeline": ("master_timeout summary", ""),
    "ingest.delete_pipeline": ("master_timeout timeout", ""),
    "ingest.put_pipeline": ("", "if_version master_timeout timeout"),
    "indices.create": ("master_timeout timeout wait_for_active_shards", ""),
    "indices.delete": (f"{_INDICES_OPTIONS} master_timeout timeout", ""),
    "indices.get": (f"{_INDICES_OPTIONS} flat_settings local master_timeout", "features include_defaults"),
    "indices.get_mapping": (f"{_INDICES_OPTIONS} local master_timeout", ""),
    "indices.put_mapping": (f"{_INDICES_OPTIONS} master_timeout timeout", "write_index_only"),
    "indices.get_settings": (f"{_INDICES_OPTIONS} flat_settings local master_timeout", "include_defaults"),
    "indices.put_settings": (f"{_INDICES_OPTIONS} flat_settings master_timeout timeout",
                             "preserve_existing reopen"),
    "indices.refresh": (_INDICES_OPTIONS, ""),
    "indices.flush": (f"{_INDICES_OPTIONS} force wait_if_ongoing", ""),
    "indices.forcemerge": ((f"{_INDICES_OPTIONS} flush max_num_segments only_expunge_deletes "
                           "wait_for_completion"), ""),
    "indices.close": (f"{_INDICES_OPTIONS} master_timeout timeout wait_for_active_shards", ""),
    "indices.open": (f"{_INDICES_OPTIONS} master_timeout timeout wait_for_active_shards", ""),
    "indices.add_block": (f"{_INDICES_OPTIONS} master_timeout timeout", ""),
    "indices.get_alias": (f"{_INDICES_OPTIONS} local master_timeout", ""),
    "indices.put_alias": ("master_timeout timeout", ""),
    "indices.delete_alias": ("master_timeout timeout", ""),
    "indices.update_aliases": ("master_timeout timeout", ""),
    "indices.stats": ("level expand_wildcards forbid_closed_indices", ("completion_fields fielddata_fields "
                      "fields groups include_segment_file_sizes include_unloaded_segments")),
    "indices.analyze": ("analyzer text field", ""),
    "indices.put_index_template": ("create cause master_timeout", ""),
    "indices.get_index_template": ("flat_settings local master_timeout", "include_defaults"),
    "indices.delete_index_template": ("master_timeout timeout", ""),
    "indices.put_template": ("", "create cause master_timeout order"),
    "indices.get_template": ("flat_settings local master_timeout", ""),
    "indices.delete_template": ("master_timeout timeout", ""),
    "cluster.put_component_template": ("create cause master_timeout", ""),
    "cluster.get_component_template": ("flat_settings local master_timeout", "include_defaults settings_filter"),
    "cluster.delete_component_template": ("master_timeout timeout", ""),
    "indices.get_data_stream": ("expand_wildcards master_timeout", "include_defaults verbose"),
    "indices.delete_data_stream": ("expand_wildcards master_timeout", ""),
    "snapshot.get_repository": ("local master_timeout", ""),
    "snapshot.get": ("master_timeout ignore_unavailable verbose", ("after from_sort_value include_repository "
                     "index_details index_names offset order size slm_policy_filter sort state")),
    "cat.indices": ("format expand_wildcards master_timeout", ("bytes h health help include_unloaded_segments "
                    "pri s time v")),
}

#: A refused parameter's value that asks for what the server does anyway (vectors stay in _source).
_NEUTRAL = {"force_synthetic_source": "false"}

API_PARAMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    api: (frozenset(ok.split()), frozenset(refused.split())) for api, (ok, refused) in _TABLE.items()
}


#: APIs that take no request body: Elasticsearch refuses one ("does not support having a body").
NO_BODY = frozenset({
    "info", "capabilities", "cluster.health", "cluster.get_settings", "indices.refresh", "indices.flush",
    "indices.forcemerge", "get", "get_source", "delete", "indices.delete", "indices.get", "indices.get_mapping",
    "indices.get_settings", "indices.get_alias", "indices.delete_alias", "indices.stats", "cat.indices",
    "tasks.get", "indices.close", "indices.open", "indices.add_block", "indices.get_index_template",
    "indices.delete_index_template", "cluster.get_component_template", "cluster.delete_component_template",
    "indices.get_template", "indices.delete_template", "indices.get_data_stream", "indices.delete_data_stream",
    "snapshot.get_repository", "snapshot.get", "tasks.list", "cluster.pending_tasks", "ingest.get_pipeline",
    "ingest.delete_pipeline",
})


def check_body(api: str, method: str, path: str, has_body: bool) -> None:
    """``BaseRestHandler``: a body the API does not read is an error, not ignored."""
    if has_body and api in NO_BODY:
        raise EsError(400, "illegal_argument_exception", f"request [{method} {path}] does not support having a body")


def check_params(api: str, path: str, params: dict[str, str]) -> None:
    """Raise Elasticsearch's error for unknown parameters, ``unsupported_by_test_server`` for known
    ones the server does not model."""
    honoured, refused = API_PARAMS[api]
    unknown = sorted(p for p in params if p not in honoured and p not in refused and p not in GLOBAL)
    if unknown:
        raise unrecognized(path, unknown, honoured | refused | GLOBAL)
    for name in sorted(params):
        if name in refused and params[name] != _NEUTRAL.get(name):
            raise unsupported(f"the [{name}] parameter of [{api}]")


def unrecognized(path: str, invalid: list[str], candidates: frozenset[str]) -> EsError:
    """``BaseRestHandler.unrecognized``: the message with Lucene-Levenshtein suggestions above 0.5."""
    parts = []
    for name in invalid:
        scored = sorted((-_levenshtein_similarity(name, c), c) for c in candidates
                        if _levenshtein_similarity(name, c) > 0.5)
        keys = [c for _, c in scored]
        text = f"[{name}]"
        if len(keys) == 1:
            text += f" -> did you mean [{keys[0]}]?"
        elif keys:
            text += f" -> did you mean any of [{', '.join(keys)}]?"
        parts.append(text)
    plural = "s" if len(invalid) > 1 else ""
    return EsError(400, "illegal_argument_exception",
                   f"request [{path}] contains unrecognized parameter{plural}: {', '.join(parts)}")


_DROP = object()


def filter_response(body: object, filter_path: str) -> object:
    """The ``filter_path`` response filter: comma-separated dotted paths, ``*`` within a name, ``**``
    for any depth, ``-`` for an exclusion; arrays are transparent; what is left empty is dropped."""
    paths = [p.strip() for p in filter_path.split(",") if p.strip()]
    includes = [p.split(".") for p in paths if not p.startswith("-")]
    excludes = [p[1:].split(".") for p in paths if p.startswith("-")]
    out = body
    if includes:
        out = _keep(out, includes)
        if out is _DROP:
            return {}
    if excludes:
        out = _exclude(out, excludes)
        if out is _DROP:
            return {}
    return out


def _advance(path: list[str], key: str) -> list[list[str]]:
    """The rest of ``path`` after it consumed ``key`` (several with ``**``, none if it does not match)."""
    head = path[0]
    if head == "**":
        return [path] + (_advance(path[1:], key) if len(path) > 1 else [[]])
    return [path[1:]] if fnmatch.fnmatchcase(key, head) else []


def _keep(node: object, paths: list[list[str]]) -> object:
    if any(not p for p in paths):
        return node
    if isinstance(node, list):
        kept = [k for k in (_keep(v, paths) for v in node) if k is not _DROP]
        return kept or _DROP
    if not isinstance(node, dict):
        return _DROP
    out = {}
    for key, value in node.items():
        rest = [r for p in paths for r in _advance(p, str(key))]
        if rest:
            kept = _keep(value, rest)
            if kept is not _DROP:
                out[key] = kept
    return out or _DROP


def _exclude(node: object, paths: list[list[str]]) -> object:
    if any(not p for p in paths):
        return _DROP
    if isinstance(node, list):
        return [k for k in (_exclude(v, paths) for v in node) if k is not _DROP]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        rest = [r for p in paths for r in _advance(p, str(key))]
        kept = _exclude(value, rest) if rest else value
        if kept is not _DROP:
            out[key] = kept
    return out
