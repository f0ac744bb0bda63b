"""Composable index templates, component templates and cluster settings of the test server.

An index created (explicitly or by a first write) takes the settings, mappings and aliases of the
highest-priority index template whose ``index_patterns`` match its name: first its
``composed_of`` component templates in order, then its own ``template``, then the request's body,
each merged over the previous (``MetadataCreateIndexService``). Data streams, ``_meta``-driven
features and legacy ``_template`` writes are not modelled and are refused by name.
"""

from __future__ import annotations

import copy
import fnmatch
import threading
from typing import Any

from es_semantic.testing.errors import EsError, unsupported

_TEMPLATE_KEYS = {"index_patterns", "template", "composed_of", "priority", "version", "_meta", "data_stream",
                  "allow_auto_create", "ignore_missing_component_templates", "deprecated"}
_COMPONENT_KEYS = {"template", "version", "_meta", "deprecated"}
_BODY_KEYS = {"settings", "mappings", "aliases", "lifecycle", "data_stream_options"}
#: Cluster setting prefixes Elasticsearch registers whose effect a one-node in-memory cluster cannot show,
#: and the modelled `search.max_keep_alive`.
_CLUSTER_SETTING_PREFIXES = ("cluster.routing.", "cluster.info.", "cluster.max_shards_per_node", "indices.",
                             "logger.", "xpack.", "ingest.", "cluster.indices.", "cluster.remote.",
                             "thread_pool.", "transport.", "http.", "network.", "bootstrap.",
                             "cluster.persistent_tasks.", "stack.templates.", "data_streams.", "time_series.",
                             "cluster.metadata.", "cluster.service.", "search.max_keep_alive",
                             "search.default_keep_alive", "action.destructive_requires_name")
#: Known cluster settings with an effect the server does not model, with the value that asks for what it
#: does anyway (None: any value is refused).
_UNMODELLED_CLUSTER_SETTINGS = {"search.max_buckets": None,
                                "search.allow_expensive_queries": "true", "cluster.blocks.read_only": "false",
                                "cluster.blocks.read_only_allow_delete": "false", "action.auto_create_index": "true",
                                "script.": None, "search.": None, "action.": None, "cluster.blocks.": None}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_template_body(name: str, body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise EsError(400, "x_content_parse_exception", f"[template] must be an object in [{name}]")
    for key in body:
        if key not in _BODY_KEYS:
            raise EsError(400, "x_content_parse_exception", f"[1:2] [template] unknown field [{key}]")
        if key in ("lifecycle", "data_stream_options"):
            raise unsupported(f"[{key}] in a template")
    return body


class Templates:
    """Index templates, component templates and persistent/transient cluster settings."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.cluster_settings: dict[str, dict[str, Any]] = {"persistent": {}, "transient": {}}

    def clear(self) -> None:
        with self.lock:
            self.index_templates.clear()
            self.component_templates.clear()
            self.cluster_settings = {"persistent": {}, "transient": {}}

    # -- index templates ------------------------------------------------------------------------

    def put_index_template(self, name: str, body: Any, *, create: bool = False) -> None:
        if not isinstance(body, dict):
            raise EsError(400, "parse_exception", "request body is required")
        for key in body:
            if key not in _TEMPLATE_KEYS:
                raise EsError(400, "x_content_parse_exception", f"[1:2] [index_template] unknown field [{key}]")
        if body.get("data_stream") is not None:
            raise unsupported("data streams (index templates with [data_stream])")
        patterns = body.get("index_patterns")
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: index patterns are missing;")
        _check_template_body(name, body.get("template"))
        with self.lock:
            if create and name in self.index_templates:
                raise EsError(400, "illegal_argument_exception", f"index template [{name}] already exists")
            missing = [c for c in body.get("composed_of") or [] if c not in self.component_templates]
            if missing and not body.get("ignore_missing_component_templates"):
                raise EsError(400, "invalid_index_template_exception",
                              f"index_template [{name}] invalid, cause [index template [{name}] specifies "
                              f"component templates {missing} that do not exist]")
            priority = int(body.get("priority") or 0)
            for other, spec in self.index_templates.items():
                overlap = [p for p in patterns for q in spec["index_patterns"]
                           if fnmatch.fnmatchcase(p, q) or fnmatch.fnmatchcase(q, p)]
                if other != name and overlap and int(spec.get("priority") or 0) == priority:
                    raise EsError(400, "illegal_argument_exception",
                                  f"index template [{name}] has index patterns {patterns} matching patterns from "
                                  f"existing templates [{other}] with patterns ({other} => "
                                  f"{spec['index_patterns']}) that have the same priority [{priority}], multiple "
                                  "index templates may not match during index creation, please use a different "
                                  "priority")
            self.index_templates[name] = {**copy.deepcopy(body), "index_patterns": list(patterns)}

    def get_index_templates(self, name: str | None) -> list[dict[str, Any]]:
        with self.lock:
            names = self._matching(self.index_templates, name, "index template")
            return [{"name": n, "index_template": copy.deepcopy(self.index_templates[n])} for n in names]

    def delete_index_templates(self, name: str) -> None:
        with self.lock:
            for n in self._matching(self.index_templates, name, "index_template"):
                del self.index_templates[n]

    # -- component templates --------------------------------------------------------------------

    def put_component_template(self, name: str, body: Any, *, create: bool = False) -> None:
        if not isinstance(body, dict) or "template" not in body:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: template is missing;")
        for key in body:
            if key not in _COMPONENT_KEYS:
                raise EsError(400, "x_content_parse_exception", f"[1:2] [component_template] unknown field [{key}]")
        _check_template_body(name, body.get("template"))
        with self.lock:
            if create and name in self.component_templates:
                raise EsError(400, "illegal_argument_exception", f"component template [{name}] already exists")
            self.component_templates[name] = copy.deepcopy(body)

    def get_component_templates(self, name: str | None) -> list[dict[str, Any]]:
        with self.lock:
            names = self._matching(self.component_templates, name, "component template")
            return [{"name": n, "component_template": copy.deepcopy(self.component_templates[n])} for n in names]

    def delete_component_templates(self, name: str) -> None:
        with self.lock:
            names = self._matching(self.component_templates, name, "component template")
            for n in names:
                users = [t for t, spec in self.index_templates.items() if n in (spec.get("composed_of") or [])]
                if users:
                    raise EsError(400, "illegal_argument_exception",
                                  f"component templates [{n}] cannot be removed as they are still in use by index "
                                  f"templates [{', '.join(users)}]")
            for n in names:
                del self.component_templates[n]

    @staticmethod
    def _matching(table: dict[str, Any], expression: str | None, kind: str) -> list[str]:
        """Names in ``table`` matching a comma list of names and wildcards; a missing plain name is a
        404 (``kind`` says which: "index template", "component template" for gets, "index_template"
        for a delete, which Elasticsearch words as a missing template)."""
        if expression in (None, "", "*", "_all"):
            return sorted(table)
        names: list[str] = []
        for part in expression.split(","):
            if "*" in part:
                names.extend(n for n in sorted(table) if fnmatch.fnmatchcase(n, part))
            elif part in table:
                names.append(part)
            elif kind == "index_template":
                raise EsError(404, "index_template_missing_exception", f"index_template [{part}] missing")
            else:
                raise EsError(404, "resource_not_found_exception", f"{kind} matching [{part}] not found")
        return list(dict.fromkeys(names))

    # -- index creation -------------------------------------------------------------------------

    def apply(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """The create-index body for ``index``: the matching template's parts under the request's."""
        with self.lock:
            matching = [(int(spec.get("priority") or 0), name) for name, spec in self.index_templates.items()
                        if any(fnmatch.fnmatchcase(index, p) for p in spec["index_patterns"])]
            if not matching:
                return body
            _, chosen = max(matching)
            spec = self.index_templates[chosen]
            parts = [self.component_templates[c].get("template") or {} for c in spec.get("composed_of") or []
                     if c in self.component_templates]
            parts.append(spec.get("template") or {})
        merged: dict[str, Any] = {}
        for part in [*parts, body]:
            for key in ("settings", "mappings", "aliases"):
                if part.get(key):
                    merged[key] = _deep_merge(merged.get(key, {}), _nested_settings(part[key]) if key == "settings"
                                              else part[key])
        return {**body, **merged}

    # -- cluster settings -----------------------------------------------------------------------

    def put_cluster_settings(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise EsError(400, "parse_exception", "request body is required")
        for key in body:
            if key not in ("persistent", "transient"):
                raise EsError(400, "x_content_parse_exception", f"[1:2] [cluster_update_settings_request] unknown "
                              f"field [{key}]")
        changes = {scope: _flatten(body.get(scope) or {}) for scope in ("persistent", "transient")}
        for scope, values in changes.items():
            for key, value in values.items():
                if value is None:
                    continue  # a reset (also by pattern, such as {"*": null}) never changes behaviour here
                if key.startswith(_CLUSTER_SETTING_PREFIXES):
                    continue
                known = next((k for k in _UNMODELLED_CLUSTER_SETTINGS if key == k or (k.endswith(".")
                                                                                     and key.startswith(k))), None)
                if known is None:
                    raise EsError(400, "illegal_argument_exception", f"{scope} setting [{key}], not recognized")
                if _UNMODELLED_CLUSTER_SETTINGS[known] != value:
                    raise unsupported(f"the cluster setting [{key}]")
        with self.lock:
            for scope, values in changes.items():
                current = self.cluster_settings[scope]
                for key, value in values.items():
                    if value is None:
                        for name in [n for n in current if fnmatch.fnmatchcase(n, key)]:
                            del current[name]
                    else:
                        current[key] = value
        return {"acknowledged": True, **{scope: _nest(values) for scope, values in changes.items()}}

    def cluster_setting(self, key: str) -> Any:
        """A cluster setting's value: transient over persistent, None when unset."""
        with self.lock:
            return self.cluster_settings["transient"].get(key, self.cluster_settings["persistent"].get(key))

    def get_cluster_settings(self, flat: bool) -> dict[str, Any]:
        with self.lock:
            return {scope: dict(values) if flat else _nest(values) for scope, values in self.cluster_settings.items()}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = None if value is None else (str(value).lower() if isinstance(value, bool)
                                                                else str(value))
    return out


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        if value is None:
            continue
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _nested_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings in one nested form (``{"index": {...}}``), so template and request settings merge."""
    flat = _flatten(settings)
    return _nest({(k if k.startswith("index.") else f"index.{k}"): v for k, v in flat.items()})
