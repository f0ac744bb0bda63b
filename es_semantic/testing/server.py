"""HTTP layer of the in-memory Elasticsearch-compatible TEST server (not a production search engine).

A ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) routes the REST API paths the official
``elasticsearch`` client uses to the :class:`~es_semantic.testing.store.Store` and to the search
engine (``search_engine.run_search``). It answers like Elasticsearch 9.3: the
``X-Elastic-Product`` header, ``compatible-with`` media types, ES-shaped error bodies.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gzip
import json
import math
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from es_semantic.testing.errors import EsError, json_token, unsupported
from es_semantic.testing.faults import Faults, rejected_error
from es_semantic.testing.params import check_body, check_params, filter_response
from es_semantic.testing.snapshot import SearchTarget
from es_semantic.testing.store import (
    AliasMissing,
    IndexBlocked,
    Store,
    index_not_found,
    nest_settings,
    parse_bool,
    source_params,
)

try:  # orjson is much faster on big vector payloads; plain json is the fallback.
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

DEFAULT_VERSION = "9.3.0"
LUCENE_VERSION = "10.3.1"
CLUSTER_NAME = "es-semantic-test"
NODE_NAME = "es-semantic-test-node"
# Named cluster features the server claims (YAML REST test selection): those a 9.x node has for what
# the server implements, so the cases gated on them run.
CLUSTER_FEATURES = (
    "lucene_10_upgrade",
    "lucene_10_1_upgrade",
    "retrievers_supported",
    "standard_retriever_supported",
    "knn_retriever_supported",
    "rrf_retriever_supported",
    "rrf_retriever_composition_supported",
    "mapper.vectors.bit_vectors",
    "mapper.vectors.int4_quantization",
    "search.vectors.no_dimensions_bugfix",
    "search.indices_boost_remote_index_fix",
    "linear_retriever_supported",
    "linear_retriever.minmax_single_doc_fix",
    "retriever.negative_rank_window_size_fix",
    "ids_query_limit_max_ids",
    "mapper.unknown_field_mapping_update_error_message",
    "index.throw_exception_on_index_creation_if_unsupported_value_type_in_alias",
    "mapper.source.mode_from_index_setting",
    "mapper.subobjects_false_mapping_update_fix",
    "search.vectors.k_param_supported",
)
# GET /_capabilities: (method, path) -> capabilities the server has.
CAPABILITIES: dict[tuple[str, str], frozenset[str]] = {
    ("PUT", "/{index}"): frozenset({"lookup_index_mode", "poorly_formatted_bad_request", "hunspell_dict_400"}),
    ("GET", "/_search"): frozenset({"knn_quantized_vector_rescore_oversample"}),
}


def loads(data: bytes | str) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except (ValueError, TypeError):
            pass  # NaN literals, huge integers: let json decide (and report)
    return json.loads(data)


def dumps(obj: Any) -> bytes:
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, option=_orjson.OPT_NON_STR_KEYS | _orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            pass  # integers beyond 64 bits
    return json.dumps(obj, separators=(",", ":"), default=_json_default).encode("utf-8")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _parse_error(exc: Exception) -> EsError:
    return EsError(400, "x_content_parse_exception", f"[1:1] Unexpected character: {exc}",
                   caused_by={"type": "json_parse_exception", "reason": str(exc)})


class Response:
    def __init__(self, status: int = 200, body: Any = None, *, raw: bytes | None = None,
                 content_type: str | None = None) -> None:
        self.status = status
        self.body = body
        self.raw = raw
        self.content_type = content_type


class Request:
    def __init__(self, method: str, path: str, params: dict[str, str], body: bytes, headers: Any) -> None:
        self.method = method
        self.path = path
        self.params = params
        self.raw = body
        self.headers = headers
        self._json: Any = None
        self._parsed = False

    def json(self, default: Any = None) -> Any:
        if not self._parsed:
            self._parsed = True
            if self.raw.strip():
                try:
                    self._json = loads(self.raw)
                except ValueError as exc:
                    raise _parse_error(exc) from None
        return default if self._json is None else self._json

    @property
    def has_body(self) -> bool:
        return bool(self.raw.strip())

    def lines(self) -> list[bytes]:
        return self.raw.split(b"\n")


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: str  # e.g. "/{index}/_doc/{id}"
    regex: re.Pattern[str]
    handler: Handler
    api: str  # the REST spec name, e.g. "index": which URL parameters it takes (params.API_PARAMS)


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, methods: str, pattern: str, handler: Handler, api: str) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$"
        self.routes.append(Route(frozenset(methods.split()), pattern, re.compile(regex), handler, api))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        path_known = False
        for route in self.routes:
            m = route.regex.match(path)
            if m:
                path_known = True
                methods = route.methods
                if method in methods or (method == "HEAD" and "GET" in methods and "HEAD" not in methods):
                    return route, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}, True
        return None, {}, path_known


class TestServerHTTP(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: Api) -> None:
        self.api = api
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "es-semantic-test-server"
    sys_version = ""
    server: TestServerHTTP

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _handle(self) -> None:
        api = self.server.api
        split = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        if body and self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        request = Request(self.command, split.path, params, body, self.headers)
        for rule in api.faults.pick(self.command, split.path) if api.faults.active else []:
            if rule.kind == "delay":
                time.sleep(rule.ms / 1000.0)
            elif rule.kind == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            elif rule.kind == "reject":
                return self._send(request, Response(429, rejected_error().to_body()))
            elif rule.kind == "unavailable":
                err = EsError(503, "unavailable_shards_exception",
                              "[primary shard is not active] injected by es-semantic test server fault injection")
                return self._send(request, Response(503, err.to_body()))
        response = api.dispatch(request)
        self._send(request, response)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        return b"".join(chunks)

    def _send(self, request: Request, response: Response) -> None:
        if response.raw is not None:
            payload = response.raw
        elif response.body is None:
            payload = b""
        else:
            payload = dumps(response.body)
        ctype = response.content_type or _response_media_type(request.headers)
        self.send_response(response.status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(payload)))
        # One write for headers and body: separate small writes stall on Nagle + delayed ACK (~40 ms).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and payload:
            self._headers_buffer.append(payload)
        self.flush_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


def _response_media_type(headers: Any) -> str:
    for name in ("Content-Type", "Accept"):
        value = headers.get(name) or ""
        m = re.search(r"application/vnd\.elasticsearch\+json\s*;\s*compatible-with\s*=\s*(\d+)", value)
        if m:
            return f"application/vnd.elasticsearch+json;compatible-with={m.group(1)}"
    return "application/json"


def _engine() -> Any:
    try:
        from es_semantic.testing import search_engine
    except ImportError as exc:  # pragma: no cover - only while the engine is being written
        raise EsError(500, "illegal_state_exception", f"search engine unavailable: {exc}") from None
    return search_engine


def _int_param(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EsError(400, "illegal_argument_exception",
                      f"Failed to parse int parameter [{name}] with value [{value}]") from None


def _refresh_after_write(api: Api, params: dict[str, Any], indices: list[Any]) -> bool:
    refresh = params.get("refresh")
    if refresh is None or refresh == "false":
        return False
    for idx in {id(i): i for i in indices}.values():
        idx.refresh()
    return refresh in ("", "true")


def _templates_answer(req: Request, key: str, get: Callable[[], list[Any]]) -> Response:
    """GET (``{key: [...]}``) or HEAD (200/404) of index or component templates."""
    try:
        found = get()
    except EsError:
        if req.method == "HEAD":
            return Response(404)
        raise
    if req.method == "HEAD":
        return Response(200 if found else 404)
    return Response(200, {key: found})


class Api:
    """The REST API: routes a :class:`Request` to the store and the engine, returns a :class:`Response`."""

    def __init__(self, store: Store, faults: Faults, version: str = DEFAULT_VERSION) -> None:
        self.store = store
        self.faults = faults
        self.version = version
        self.router = Router()
        self.started = time.time()
        self.tasks: dict[str, dict[str, Any]] = {}
        self._tasks_lock = threading.Lock()
        self._task_seq = 0
        self._register()

    # -- dispatch ---------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        route, parts, path_known = self.router.match(request.method, request.path)
        try:
            if route is None:
                if path_known:
                    raise EsError(405, "method_not_allowed",
                                  f"Incorrect HTTP method for uri [{request.path}] and method [{request.method}]")
                raise EsError(404, "no_handler_found_exception",
                              f"no handler found for uri [{request.path}] and method [{request.method}]")
            check_params(route.api, request.path, request.params)
            check_body(route.api, request.method, request.path, request.has_body)
            response = route.handler(request, **parts)
        except EsError as exc:
            return Response(exc.status, exc.to_body())
        except AliasMissing as exc:
            return Response(404, exc.body())
        except RecursionError:
            return Response(400, EsError(400, "x_content_parse_exception", "request too deeply nested").to_body())
        except Exception as exc:  # noqa: BLE001 - a request the server cannot handle: a 400 naming it, never a 500
            err = unsupported(f"this [{route.api if route else request.path}] request (it failed in the server "
                              f"with {type(exc).__name__}: {exc})")
            return Response(400, err.to_body())
        filter_path = request.params.get("filter_path")
        if filter_path and response.raw is None and response.body is not None and response.status < 400:
            response.body = filter_response(response.body, filter_path)
        return response

    def _register(self) -> None:
        r = self.router.add
        r("GET HEAD", "/", self.info, "info")
        r("GET", "/_capabilities", self.capabilities, "capabilities")
        r("GET", "/_cluster/health", self.health, "cluster.health")
        r("GET", "/_cluster/health/{index}", self.health, "cluster.health")
        r("GET POST", "/_search", self.search, "search")
        r("GET POST", "/_search/scroll", self.scroll, "scroll")
        r("GET POST", "/_search/scroll/{scroll_id}", self.scroll, "scroll")
        r("DELETE", "/_search/scroll", self.clear_scroll, "clear_scroll")
        r("DELETE", "/_search/scroll/{scroll_id}", self.clear_scroll, "clear_scroll")
        r("DELETE", "/_pit", self.close_pit, "close_point_in_time")
        r("GET POST", "/_count", self.count, "count")
        r("GET POST", "/_msearch", self.msearch, "msearch")
        r("POST PUT", "/_bulk", self.bulk, "bulk")
        r("GET POST", "/_mget", self.mget, "mget")
        r("GET POST", "/_refresh", self.refresh, "indices.refresh")
        r("GET POST", "/_flush", self.noop_shards, "indices.flush")
        r("POST", "/_forcemerge", self.noop_shards, "indices.forcemerge")
        r("GET", "/_mapping", self.get_mapping, "indices.get_mapping")
        r("GET", "/_settings", self.get_settings, "indices.get_settings")
        r("PUT", "/_settings", self.put_settings, "indices.put_settings")
        r("GET HEAD", "/_alias", self.get_alias, "indices.get_alias")
        r("GET HEAD", "/_alias/{name}", self.get_alias, "indices.get_alias")
        r("GET HEAD", "/_aliases", self.get_alias, "indices.get_alias")
        r("POST", "/_aliases", self.update_aliases, "indices.update_aliases")
        r("GET", "/_stats", self.stats, "indices.stats")
        r("GET", "/_stats/{metric}", self.stats, "indices.stats")
        r("GET POST", "/_analyze", self.analyze, "indices.analyze")
        r("GET", "/_cat/indices", self.cat_indices, "cat.indices")
        r("GET", "/_cat/indices/{index}", self.cat_indices, "cat.indices")
        r("GET", "/{index}/_search", self.search, "search")
        r("POST", "/{index}/_search", self.search, "search")
        r("POST", "/{index}/_pit", self.open_pit, "open_point_in_time")
        r("GET POST", "/{index}/_count", self.count, "count")
        r("GET POST", "/{index}/_msearch", self.msearch, "msearch")
        r("POST PUT", "/{index}/_bulk", self.bulk, "bulk")
        r("GET POST", "/{index}/_mget", self.mget, "mget")
        r("POST", "/{index}/_update_by_query", self.update_by_query, "update_by_query")
        r("POST", "/{index}/_delete_by_query", self.delete_by_query, "delete_by_query")
        r("GET POST", "/{index}/_refresh", self.refresh, "indices.refresh")
        r("GET POST", "/{index}/_flush", self.noop_shards, "indices.flush")
        r("POST", "/{index}/_forcemerge", self.noop_shards, "indices.forcemerge")
        r("GET", "/{index}/_mapping", self.get_mapping, "indices.get_mapping")
        r("PUT POST", "/{index}/_mapping", self.put_mapping, "indices.put_mapping")
        r("GET", "/{index}/_settings", self.get_settings, "indices.get_settings")
        r("GET", "/{index}/_settings/{name}", self.get_settings, "indices.get_settings")
        r("PUT", "/{index}/_settings", self.put_settings, "indices.put_settings")
        r("PUT", "/{index}/_block/{block}", self.add_block, "indices.add_block")
        r("GET HEAD", "/{index}/_alias", self.get_alias, "indices.get_alias")
        r("GET HEAD", "/{index}/_alias/{name}", self.get_alias, "indices.get_alias")
        r("GET HEAD", "/{index}/_aliases", self.get_alias, "indices.get_alias")
        r("GET HEAD", "/{index}/_aliases/{name}", self.get_alias, "indices.get_alias")
        r("PUT POST", "/{index}/_alias/{name}", self.put_alias, "indices.put_alias")
        r("PUT POST", "/{index}/_aliases/{name}", self.put_alias, "indices.put_alias")
        r("DELETE", "/{index}/_alias/{name}", self.delete_alias, "indices.delete_alias")
        r("DELETE", "/{index}/_aliases/{name}", self.delete_alias, "indices.delete_alias")
        r("GET", "/{index}/_stats", self.stats, "indices.stats")
        r("GET", "/{index}/_stats/{metric}", self.stats, "indices.stats")
        r("GET POST", "/{index}/_analyze", self.analyze, "indices.analyze")
        r("PUT POST", "/{index}/_doc/{id}", self.index_doc, "index")
        r("POST", "/{index}/_doc", self.index_doc, "index")
        r("PUT POST", "/{index}/_create/{id}", self.create_doc, "create")
        r("GET HEAD", "/{index}/_doc/{id}", self.get_doc, "get")
        r("DELETE", "/{index}/_doc/{id}", self.delete_doc, "delete")
        r("GET HEAD", "/{index}/_source/{id}", self.get_source, "get_source")
        r("POST", "/{index}/_update/{id}", self.update_doc, "update")
        r("GET", "/_tasks/{task_id}", self.get_task, "tasks.get")
        r("GET", "/_tasks", self.list_tasks, "tasks.list")
        r("GET", "/_cluster/pending_tasks", self.pending_tasks, "cluster.pending_tasks")
        r("GET", "/_ingest/pipeline", self.get_pipeline, "ingest.get_pipeline")
        r("GET", "/_ingest/pipeline/{id}", self.get_pipeline, "ingest.get_pipeline")
        r("PUT", "/_ingest/pipeline/{id}", self.put_pipeline, "ingest.put_pipeline")
        r("DELETE", "/_ingest/pipeline/{id}", self.delete_pipeline, "ingest.delete_pipeline")
        r("GET", "/_cluster/settings", self.get_cluster_settings, "cluster.get_settings")
        r("PUT", "/_cluster/settings", self.put_cluster_settings, "cluster.put_settings")
        r("GET", "/_index_template", self.get_index_template, "indices.get_index_template")
        r("GET HEAD", "/_index_template/{name}", self.get_index_template, "indices.get_index_template")
        r("PUT POST", "/_index_template/{name}", self.put_index_template, "indices.put_index_template")
        r("DELETE", "/_index_template/{name}", self.delete_index_template, "indices.delete_index_template")
        r("GET", "/_component_template", self.get_component_template, "cluster.get_component_template")
        r("GET HEAD", "/_component_template/{name}", self.get_component_template, "cluster.get_component_template")
        r("PUT POST", "/_component_template/{name}", self.put_component_template, "cluster.put_component_template")
        r("DELETE", "/_component_template/{name}", self.delete_component_template,
          "cluster.delete_component_template")
        r("GET", "/_template", self.get_legacy_template, "indices.get_template")
        r("GET HEAD", "/_template/{name}", self.get_legacy_template, "indices.get_template")
        r("PUT POST", "/_template/{name}", self.put_legacy_template, "indices.put_template")
        r("DELETE", "/_template/{name}", self.delete_legacy_template, "indices.delete_template")
        r("GET", "/_data_stream", self.get_data_stream, "indices.get_data_stream")
        r("GET", "/_data_stream/{name}", self.get_data_stream, "indices.get_data_stream")
        r("DELETE", "/_data_stream/{name}", self.delete_data_stream, "indices.delete_data_stream")
        r("GET", "/_snapshot", self.get_repository, "snapshot.get_repository")
        r("GET", "/_snapshot/{repository}", self.get_repository, "snapshot.get_repository")
        r("GET", "/_snapshot/{repository}/{snapshot}", self.get_snapshot, "snapshot.get")
        r("POST", "/{index}/_close", self.close_index, "indices.close")
        r("POST", "/{index}/_open", self.open_index, "indices.open")
        r("PUT", "/{index}", self.create_index, "indices.create")
        r("DELETE", "/{index}", self.delete_index, "indices.delete")
        r("GET HEAD", "/{index}", self.get_index, "indices.get")


    # -- cluster ----------------------------------------------------------------------------------

    def info(self, req: Request) -> Response:
        return Response(200, {
            "name": NODE_NAME,
            "cluster_name": CLUSTER_NAME,
            "cluster_uuid": "es-semantic-test-cluster-uuid",
            "version": {
                "number": self.version,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2026-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": LUCENE_VERSION,
                "minimum_wire_compatibility_version": "8.19.0",
                "minimum_index_compatibility_version": "8.0.0",
            },
            "tagline": "You Know, for Search",
        })

    def capabilities(self, req: Request) -> Response:
        method = req.params.get("method", "GET").upper()
        path = req.params.get("path", "/")
        wanted = {c for c in req.params.get("capabilities", "").split(",") if c}
        params = {p for p in req.params.get("parameters", "").split(",") if p}
        have = CAPABILITIES.get((method, path), frozenset())
        return Response(200, {"supported": wanted <= have and not params})

    def health(self, req: Request, index: str | None = None) -> Response:
        indices = [i for i, _ in self.store.resolve(index, alias_filters=False)] if index else \
            list(self.store.indices.values())
        yellow = any(int(i.settings.get("index.number_of_replicas", "1")) > 0 for i in indices)
        shards = sum(int(i.settings.get("index.number_of_shards", "1")) for i in indices)
        unassigned = sum(int(i.settings.get("index.number_of_shards", "1")) *
                         int(i.settings.get("index.number_of_replicas", "1")) for i in indices)
        return Response(200, {
            "cluster_name": CLUSTER_NAME, "status": "yellow" if yellow else "green", "timed_out": False,
            "number_of_nodes": 1, "number_of_data_nodes": 1, "active_primary_shards": shards,
            "active_shards": shards, "relocating_shards": 0, "initializing_shards": 0,
            "unassigned_shards": unassigned, "unassigned_primary_shards": 0, "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0 if not unassigned else 100.0 * shards / (shards + unassigned),
        })

    # -- cluster settings, templates, snapshots (none), data streams (none) ----------------------

    def get_cluster_settings(self, req: Request) -> Response:
        return Response(200, self.store.templates.get_cluster_settings(parse_bool(req.params.get("flat_settings"),
                                                                                  False)))

    def put_cluster_settings(self, req: Request) -> Response:
        return Response(200, self.store.templates.put_cluster_settings(req.json(None)))

    def get_index_template(self, req: Request, name: str | None = None) -> Response:
        return _templates_answer(req, "index_templates", lambda: self.store.templates.get_index_templates(name))

    def put_index_template(self, req: Request, name: str) -> Response:
        self.store.templates.put_index_template(name, req.json(None), create=parse_bool(req.params.get("create"),
                                                                                        False))
        return Response(200, {"acknowledged": True})

    def delete_index_template(self, req: Request, name: str) -> Response:
        self.store.templates.delete_index_templates(name)
        return Response(200, {"acknowledged": True})

    def get_component_template(self, req: Request, name: str | None = None) -> Response:
        return _templates_answer(req, "component_templates",
                                 lambda: self.store.templates.get_component_templates(name))

    def put_component_template(self, req: Request, name: str) -> Response:
        self.store.templates.put_component_template(name, req.json(None),
                                                    create=parse_bool(req.params.get("create"), False))
        return Response(200, {"acknowledged": True})

    def delete_component_template(self, req: Request, name: str) -> Response:
        self.store.templates.delete_component_templates(name)
        return Response(200, {"acknowledged": True})

    def get_legacy_template(self, req: Request, name: str | None = None) -> Response:
        # No legacy template can exist here (PUT is refused): every name is missing, wildcards match none.
        if name and "*" not in name and name != "_all":
            return Response(404, {} if req.method != "HEAD" else None)
        return Response(200, {})

    def put_legacy_template(self, req: Request, name: str) -> Response:
        raise unsupported("legacy index templates (PUT _template); use _index_template")

    def delete_legacy_template(self, req: Request, name: str) -> Response:
        if "*" in name or name == "_all":
            return Response(200, {"acknowledged": True})
        raise EsError(404, "index_template_missing_exception", f"index_template [{name}] missing")

    def get_data_stream(self, req: Request, name: str | None = None) -> Response:
        if name and "*" not in name and name != "_all":
            raise index_not_found(name)
        return Response(200, {"data_streams": []})

    def delete_data_stream(self, req: Request, name: str) -> Response:
        if "*" in name or name == "_all":
            return Response(200, {"acknowledged": True})
        raise index_not_found(name)

    def list_tasks(self, req: Request) -> Response:
        # By-query tasks finish before they are answered: none is ever running.
        grouping = req.params.get("group_by", "nodes")
        if grouping not in ("nodes", "parents", "none"):
            raise EsError(400, "illegal_argument_exception", f"No enum constant for group_by [{grouping}]")
        return Response(200, {"nodes": {}} if grouping == "nodes" else {"tasks": [] if grouping == "none" else {}})

    def pending_tasks(self, req: Request) -> Response:
        return Response(200, {"tasks": []})

    def get_pipeline(self, req: Request, id: str | None = None) -> Response:
        # No ingest pipeline can exist here (PUT is refused): a name is missing, a wildcard matches none.
        if id and "*" not in id and id != "_all":
            return Response(404, {})
        return Response(200, {})

    def put_pipeline(self, req: Request, id: str) -> Response:
        raise unsupported("ingest pipelines")

    def delete_pipeline(self, req: Request, id: str) -> Response:
        if "*" in id or id == "_all":
            return Response(200, {"acknowledged": True})
        raise EsError(404, "resource_not_found_exception", f"pipeline [{id}] is missing")

    def get_repository(self, req: Request, repository: str | None = None) -> Response:
        if repository and "*" not in repository and repository != "_all":
            raise EsError(404, "repository_missing_exception", f"[{repository}] missing")
        return Response(200, {})

    def get_snapshot(self, req: Request, repository: str, snapshot: str) -> Response:
        raise EsError(404, "repository_missing_exception", f"[{repository}] missing")

    def close_index(self, req: Request, index: str) -> Response:
        self._check_destructive(index)
        changed = self.store.close_indices(index, close=True)
        return Response(200, {"acknowledged": True, "shards_acknowledged": True,
                              "indices": {idx.name: {"closed": True} for idx in changed}})

    def open_index(self, req: Request, index: str) -> Response:
        self.store.close_indices(index, close=False)
        return Response(200, {"acknowledged": True, "shards_acknowledged": True})

    # -- indices ----------------------------------------------------------------------------------

    def create_index(self, req: Request, index: str) -> Response:
        body = req.json({})
        if not isinstance(body, dict):
            raise EsError(400, "parse_exception", "request body is required to be an object")
        idx = self.store.create_index(index, body)
        return Response(200, {"acknowledged": True, "shards_acknowledged": True, "index": idx.name})

    def _check_destructive(self, index: str) -> None:
        """``action.destructive_requires_name`` (true unless set to false): deleting or closing indices
        by wildcard or ``_all`` is refused, as Elasticsearch's DestructiveOperations does."""
        if self.store.templates.cluster_setting("action.destructive_requires_name") == "false":
            return
        if any(part in ("_all", "*") or "*" in part or "?" in part for part in index.split(",")
               if not part.startswith("-")):
            raise EsError(400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")

    def delete_index(self, req: Request, index: str) -> Response:
        self._check_destructive(index)
        try:
            self.store.delete_indices(index)
        except EsError as exc:
            if exc.status == 404 and parse_bool(req.params.get("ignore_unavailable"), False):
                return Response(200, {"acknowledged": True})
            raise
        return Response(200, {"acknowledged": True})

    def _index_body(self, idx: Any, flat: bool = False) -> dict[str, Any]:
        return {"aliases": {a: dict(d) for a, d in idx.aliases.items()}, "mappings": idx.mappings,
                "settings": dict(idx.settings) if flat else idx.nested_settings()}

    def get_index(self, req: Request, index: str) -> Response:
        if index.startswith("_") and index != "_all":  # an unknown API such as /_foo, not an index name
            raise EsError(404, "no_handler_found_exception",
                          f"no handler found for uri [{req.path}] and method [{req.method}]")
        pairs = self.store.resolve(index, alias_filters=False,
                                   ignore_unavailable=parse_bool(req.params.get("ignore_unavailable"), False),
                                   allow_no_indices=parse_bool(req.params.get("allow_no_indices"), True))
        if req.method == "HEAD":
            return Response(200 if pairs else 404)
        flat = parse_bool(req.params.get("flat_settings"), False)
        return Response(200, {idx.name: self._index_body(idx, flat) for idx, _ in pairs})

    def get_mapping(self, req: Request, index: str | None = None) -> Response:
        pairs = self.store.resolve(index, alias_filters=False)
        return Response(200, {idx.name: {"mappings": idx.mappings} for idx, _ in pairs})

    def put_mapping(self, req: Request, index: str) -> Response:
        body = req.json({})
        if not isinstance(body, dict):
            raise EsError(400, "parse_exception", "mapping body must be an object")
        self.store.put_mapping(index, body)
        return Response(200, {"acknowledged": True})

    def get_settings(self, req: Request, index: str | None = None, name: str | None = None) -> Response:
        pairs = self.store.resolve(index, alias_filters=False)
        flat = parse_bool(req.params.get("flat_settings"), False)
        patterns = name.split(",") if name else None
        out = {}
        for idx, _ in pairs:
            settings = {k: v for k, v in idx.settings.items()
                        if patterns is None or any(fnmatch.fnmatchcase(k, p) for p in patterns)}
            out[idx.name] = {"settings": settings if flat else nest_settings(settings)}
        return Response(200, out)

    def put_settings(self, req: Request, index: str | None = None) -> Response:
        self.store.put_settings(index or "_all", req.json({}))
        return Response(200, {"acknowledged": True})

    def add_block(self, req: Request, index: str, block: str) -> Response:
        if block not in ("write", "read", "read_only", "metadata"):
            raise EsError(400, "illegal_argument_exception",
                          f"unknown index block [{block}]: expected one of [metadata, read, read_only, write]")
        if block != "write":
            raise unsupported(f"the [{block}] index block (only [write])")
        added = self.store.add_write_block(index)
        # Indices that already had the block are left out; with none left to block Elasticsearch
        # answers its empty response (shards_acknowledged false, no indices).
        return Response(200, {"acknowledged": True, "shards_acknowledged": bool(added),
                              "indices": [{"name": name, "blocked": True} for name in added]})

    def refresh(self, req: Request, index: str | None = None) -> Response:
        count = self.store.refresh(index)
        return Response(200, {"_shards": {"total": count * 2, "successful": count, "failed": 0}})

    def noop_shards(self, req: Request, index: str | None = None) -> Response:
        count = len(self.store.resolve(index, alias_filters=False))
        return Response(200, {"_shards": {"total": count * 2, "successful": count, "failed": 0}})

    def stats(self, req: Request, index: str | None = None, metric: str | None = None) -> Response:
        pairs = self.store.resolve(index, alias_filters=False)
        indices = {}
        total_docs = 0
        for idx, _ in pairs:
            count = len(idx.current_snapshot().docs)
            total_docs += count
            docs = {"docs": {"count": count, "deleted": 0, "total_size_in_bytes": 0},
                    "store": {"size_in_bytes": 0, "total_data_set_size_in_bytes": 0, "reserved_in_bytes": 0},
                    "indexing": {"index_total": idx.operations}}
            indices[idx.name] = {"uuid": idx.uuid, "health": "yellow", "status": "open",
                                 "primaries": docs, "total": docs}
            if req.params.get("level") == "shards":
                # One started primary copy per shard, with its sequence numbers: every write
                # (index, update, delete) takes the next one of its shard, refreshed or not.
                with idx.lock:
                    seq_nos = dict(idx.shard_seq_nos)
                indices[idx.name]["shards"] = {
                    str(shard): [{"routing": {"state": "STARTED", "primary": True, "node": "node-1",
                                              "relocating_node": None},
                                  "seq_no": {"max_seq_no": seq_nos.get(shard, -1),
                                             "local_checkpoint": seq_nos.get(shard, -1),
                                             "global_checkpoint": seq_nos.get(shard, -1)}}]
                    for shard in range(idx.routing().number_of_shards)}
        all_docs = {"docs": {"count": total_docs, "deleted": 0}}
        n = len(pairs)
        return Response(200, {"_shards": {"total": n * 2, "successful": n, "failed": 0},
                              "_all": {"primaries": all_docs, "total": all_docs}, "indices": indices})

    def cat_indices(self, req: Request, index: str | None = None) -> Response:
        pairs = self.store.resolve(index, alias_filters=False)
        rows = [{"health": "yellow", "status": "open", "index": i.name, "uuid": i.uuid,
                 "pri": i.settings.get("index.number_of_shards", "1"),
                 "rep": i.settings.get("index.number_of_replicas", "1"),
                 "docs.count": str(len(i.current_snapshot().docs)), "docs.deleted": "0"} for i, _ in pairs]
        if req.params.get("format") == "json":
            return Response(200, rows)
        text = "".join(" ".join(str(v) for v in row.values()) + "\n" for row in rows)
        return Response(200, raw=text.encode(), content_type="text/plain; charset=UTF-8")

    def analyze(self, req: Request, index: str | None = None) -> Response:
        body = req.json({})
        for key, value in body.items() if isinstance(body, dict) else ():
            if key in ("char_filter", "normalizer", "explain", "attributes"):
                raise unsupported(f"[{key}] in an analyze request (only [analyzer], [field], [tokenizer], "
                                  "[filter] and [text])")
            if key not in ("analyzer", "text", "field", "tokenizer", "filter"):
                raise EsError(400, "illegal_argument_exception", f"Unknown parameter [{key}] in request body or "
                              f"parameter is of the wrong type[{json_token(value)}] ")
        analyzer = body.get("analyzer") or req.params.get("analyzer") or "standard"
        text = body.get("text", req.params.get("text", ""))
        settings = None
        if index:
            settings = self.store.get_index(index).nested_settings()
            field = body.get("field")
            if field and "analyzer" not in body:
                from es_semantic.testing.mapping import mapping_for_field
                fdef = mapping_for_field(self.store.get_index(index).mappings, field) or {}
                analyzer = fdef.get("analyzer", "keyword" if fdef.get("type") == "keyword" else "standard")
        from es_semantic.testing import analysis
        chosen = analysis.request_analyzer(body, settings) or analysis.get_analyzer(analyzer, settings)
        tokens = [{"token": t.term, "start_offset": t.start_offset, "end_offset": t.end_offset, "type": t.type,
                   "position": t.position, **({"positionLength": t.position_length} if t.position_length > 1 else {})}
                  for t in chosen.analyzed_tokens(text if isinstance(text, list) else [text])]
        return Response(200, {"tokens": tokens})

    # -- aliases ----------------------------------------------------------------------------------

    def get_alias(self, req: Request, index: str | None = None, name: str | None = None) -> Response:
        if req.method == "HEAD":
            try:
                found = self.store.get_aliases(index, name)
            except (AliasMissing, EsError):
                return Response(404)
            return Response(200 if (found if name else True) else 404)
        return Response(200, self.store.get_aliases(index, name))

    def put_alias(self, req: Request, index: str, name: str) -> Response:
        spec = dict(req.json({}) or {})
        spec["index"] = index
        spec["alias"] = name
        self.store.update_aliases([{"add": spec}])
        return Response(200, {"acknowledged": True})

    def delete_alias(self, req: Request, index: str, name: str) -> Response:
        self.store.update_aliases([{"remove": {"index": index, "alias": name.split(","), "must_exist": True}}])
        return Response(200, {"acknowledged": True})

    def update_aliases(self, req: Request) -> Response:
        body = req.json({})
        if isinstance(body, dict):
            _check_keys(body, ("actions",), lambda key, _: EsError(400, "x_content_parse_exception",
                                                                 f"[1:2] [aliases] unknown field [{key}]"))
        actions = body.get("actions") if isinstance(body, dict) else None
        if not isinstance(actions, list):
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: Must specify at least one alias action;")
        failures = self.store.update_aliases(actions)
        if not any(failures):
            return Response(200, {"acknowledged": True, "errors": False})
        return Response(200, {"acknowledged": True, "errors": True,
                              "action_results": [_alias_action_result(action, failure)
                                                 for action, failure in zip(actions, failures)]})

    # -- documents --------------------------------------------------------------------------------

    def index_doc(self, req: Request, index: str, id: str | None = None) -> Response:
        p = req.params
        source = req.json(None)
        if source is None:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: source is missing;2: content type is missing;")
        idx, body, status = self.store.index_doc(
            index, id, source, op_type=p.get("op_type", "index"), if_seq_no=p.get("if_seq_no"),
            if_primary_term=p.get("if_primary_term"), require_alias=parse_bool(p.get("require_alias"), False),
            version=p.get("version"), version_type=p.get("version_type"), routing=p.get("routing") or None)
        if _refresh_after_write(self, p, [idx]):
            body["forced_refresh"] = True
        return Response(status, body)

    def create_doc(self, req: Request, index: str, id: str) -> Response:
        req.params["op_type"] = "create"
        return self.index_doc(req, index, id)

    def _get(self, req: Request, index: str, id: str) -> tuple[Any, Any]:
        """The document a get or get-source asks for (``routing``, ``realtime``, ``refresh``, ``version``)."""
        p = req.params
        if parse_bool(p.get("refresh"), False):
            self.store.refresh(index)
        return self.store.get_doc(index, id, p.get("routing") or None, realtime=parse_bool(p.get("realtime"), True),
                                  version=p.get("version"), version_type=p.get("version_type"))

    def get_doc(self, req: Request, index: str, id: str) -> Response:
        idx, live = self._get(req, index, id)
        if live is None:
            return Response(404, {"_index": idx.name, "_id": id, "found": False})
        if req.method == "HEAD":
            return Response(200)
        body: dict[str, Any] = {"_index": idx.name, "_id": id, "_version": live.version, "_seq_no": live.seq_no,
                                "_primary_term": 1}
        if live.routing is not None:
            body["_routing"] = live.routing  # metadata fields come between _primary_term and found
        body["found"] = True
        fetch, inc, exc = source_params(req.params)
        if req.params.get("stored_fields") is not None and "_source" not in req.params:
            fetch = False
        if fetch:
            body["_source"] = _shown_source(idx, live.source, inc, exc, req.params)
        return Response(200, body)

    def get_source(self, req: Request, index: str, id: str) -> Response:
        idx, live = self._get(req, index, id)
        if live is None:
            raise EsError(404, "resource_not_found_exception", f"Document not found [{idx.name}]/[{id}]")
        if req.method == "HEAD":
            return Response(200)
        _, inc, exc = source_params(req.params)
        return Response(200, _shown_source(idx, live.source, inc, exc, req.params))

    def delete_doc(self, req: Request, index: str, id: str) -> Response:
        p = req.params
        if index not in self.store.indices and not self.store._alias_map().get(index):
            raise index_not_found(index)
        idx, body, status = self.store.delete_doc(index, id, if_seq_no=p.get("if_seq_no"),
                                                  if_primary_term=p.get("if_primary_term"),
                                                  routing=p.get("routing") or None, version=p.get("version"),
                                                  version_type=p.get("version_type"))
        if _refresh_after_write(self, p, [idx]):
            body["forced_refresh"] = True
        return Response(status, body)

    def update_doc(self, req: Request, index: str, id: str) -> Response:
        p = req.params
        retries = _int_param(p, "retry_on_conflict", 0) or 0
        body = req.json({})
        if "_source" in p or "_source_includes" in p:
            body = dict(body)
            fetch, inc, exc = source_params(p)
            body["_source"] = {"includes": inc or ["*"], "excludes": exc or []} if fetch else False
        idx, result, status = self.store.update_doc(
            index, id, body, if_seq_no=p.get("if_seq_no"), if_primary_term=p.get("if_primary_term"),
            retry_on_conflict=retries, require_alias=parse_bool(p.get("require_alias"), False),
            routing=p.get("routing") or None)
        if result.get("result") != "noop" and _refresh_after_write(self, p, [idx]):
            result["forced_refresh"] = True
        return Response(status, result)

    def mget(self, req: Request, index: str | None = None) -> Response:
        body = req.json({})
        if not isinstance(body, dict) or ("docs" not in body and "ids" not in body):
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no documents to get;")
        _check_keys(body, ("docs", "ids"), lambda key, value: EsError(
            400, "parsing_exception", f"unknown key [{key}] for a {json_token(value)}, expected [docs] or [ids]"))
        for spec in body.get("docs") or []:
            if isinstance(spec, dict):
                for key in ("stored_fields", "version", "version_type"):
                    if key in spec:
                        raise unsupported(f"[{key}] in an mget document")
                _check_keys(spec, ("_index", "_id", "routing", "_source"),
                            lambda key, value: EsError(400, "parsing_exception",
                                                       f"unknown key [{key}] for a {json_token(value)}"))
        specs = body.get("docs")
        if specs is None:
            specs = [{"_id": i} for i in body.get("ids", [])]
        docs = []
        for spec in specs:
            name = spec.get("_index", index)
            doc_id = str(spec.get("_id"))
            if name is None:
                docs.append({"_index": None, "_id": doc_id, "error": {
                    "root_cause": [{"type": "action_request_validation_exception",
                                    "reason": "Validation Failed: 1: index is missing;"}],
                    "type": "action_request_validation_exception", "reason": "Validation Failed: 1: index is missing;"}})
                continue
            routing = spec.get("routing", req.params.get("routing"))
            try:
                idx, live = self.store.get_doc(name, doc_id, None if routing in (None, "") else str(routing))
            except EsError as exc:
                # a routing failure names the concrete index, not the alias the item asked for
                docs.append({"_index": exc.extra.get("index", name), "_id": doc_id, "error": exc.to_body()["error"]})
                continue
            if live is None:
                docs.append({"_index": idx.name, "_id": doc_id, "found": False})
                continue
            item = {"_index": idx.name, "_id": doc_id, "_version": live.version, "_seq_no": live.seq_no,
                    "_primary_term": 1}
            if live.routing is not None:
                item["_routing"] = live.routing
            item["found"] = True
            fetch, inc, exc = source_params(req.params, spec.get("_source"))
            if fetch:
                item["_source"] = _shown_source(idx, live.source, inc, exc, req.params)
            docs.append(item)
        return Response(200, {"docs": docs})

    # -- bulk -------------------------------------------------------------------------------------

    def bulk(self, req: Request, index: str | None = None) -> Response:
        started = time.perf_counter()
        p = req.params
        default_require_alias = parse_bool(p.get("require_alias"), False)
        default_source = p.get("_source")
        lines = req.lines()
        # Parse the whole request first: a malformed line fails the request, nothing is applied.
        ops: list[tuple[str, dict[str, Any], Any]] = []
        i = 0
        line_no = 0
        while i < len(lines):
            raw = lines[i].strip()
            i += 1
            line_no = i
            if not raw:
                continue
            try:
                action = loads(raw)
            except ValueError as exc:
                raise EsError(400, "x_content_parse_exception",
                              f"[{line_no}:1] Malformed action/metadata line [{line_no}]: {exc}") from None
            if not isinstance(action, dict):
                raise EsError(400, "illegal_argument_exception",
                              f"Malformed action/metadata line [{line_no}], expected START_OBJECT or END_OBJECT but "
                              f"found [VALUE_STRING]")
            if len(action) != 1:
                found = "END_OBJECT" if not action else "FIELD_NAME"
                raise EsError(400, "illegal_argument_exception",
                              f"Malformed action/metadata line [{line_no}], expected FIELD_NAME but found [{found}]"
                              if not action else
                              f"Malformed action/metadata line [{line_no}], expected END_OBJECT but found "
                              f"[{found}]")
            (op, meta), = action.items()
            if op not in ("index", "create", "update", "delete"):
                raise EsError(400, "illegal_argument_exception",
                              f"Malformed action/metadata line [{line_no}], expected one of [create, delete, index, "
                              f"update] but found [{op}]")
            if not isinstance(meta, dict):
                raise EsError(400, "illegal_argument_exception",
                              f"Malformed action/metadata line [{line_no}], expected START_OBJECT but found "
                              "[VALUE_STRING]")
            # Underscore metadata other than these is refused (BulkRequestParser), notably the
            # pre-7.0 `_routing`: silently dropping it would lose the routing.
            unknown = [k for k in meta if k not in _BULK_METADATA and k not in _BULK_METADATA_UNMODELLED]
            if unknown:
                raise EsError(400, "illegal_argument_exception",
                              f"Action/metadata line [{line_no}] contains an unknown parameter [{unknown[0]}]")
            unmodelled = [k for k in meta if k in _BULK_METADATA_UNMODELLED and meta[k] not in (None, False, "_none")]
            if unmodelled:
                raise unsupported(f"[{unmodelled[0]}] in a bulk action (line [{line_no}])")
            source: Any = None
            if op != "delete":
                while i < len(lines) and not lines[i].strip():
                    i += 1
                if i >= len(lines):
                    raise EsError(400, "action_request_validation_exception",
                                  "Validation Failed: 1: no requests added;" if not ops else
                                  "The bulk request must be terminated by a newline [\\n]")
                raw_source = lines[i]
                i += 1
                try:
                    source = loads(raw_source)
                except ValueError as exc:
                    source = _BadSource(exc)
            ops.append((op, meta, source))
        if not ops:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
        items = []
        touched = []
        errors = False
        for op, meta, source in ops:
            item, idx = self._bulk_item(op, meta, source, index, default_require_alias, default_source, p)
            if idx is not None:
                touched.append(idx)
            if "error" in item:
                errors = True
            # an index action with op_type create reports as "create", as Elasticsearch does
            key = "create" if op == "index" and meta.get("op_type") == "create" else op
            items.append({key: item})
        forced = _refresh_after_write(self, p, touched)
        if forced:
            for item in items:
                (body,) = item.values()
                if "error" not in body:
                    body["forced_refresh"] = True
        took = int((time.perf_counter() - started) * 1000)
        return Response(200, {"errors": errors, "took": took, "items": items})

    def _bulk_item(self, op: str, meta: dict[str, Any], source: Any, default_index: str | None,
                   default_require_alias: bool, default_source: Any, p: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        name = meta.get("_index", default_index)
        doc_id = meta.get("_id")
        doc_id = None if doc_id is None else str(doc_id)
        routing = meta.get("routing", p.get("routing"))
        routing = None if routing in (None, "") else str(routing)
        try:
            if name is None:
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
            if isinstance(source, _BadSource):
                raise EsError(400, "document_parsing_exception",
                              f"[1:1] failed to parse: {source.exc}",
                              caused_by={"type": "json_parse_exception", "reason": str(source.exc)})
            if self.faults.active and self.faults.reject_item():
                raise rejected_error("bulk item")
            require_alias = meta.get("require_alias", default_require_alias)
            if op in ("index", "create"):
                op_type = "create" if op == "create" else meta.get("op_type", "index")
                idx, body, status = self.store.index_doc(
                    name, doc_id, source, op_type=op_type, if_seq_no=meta.get("if_seq_no"),
                    if_primary_term=meta.get("if_primary_term"), require_alias=bool(require_alias),
                    version=meta.get("version"), version_type=meta.get("version_type"), routing=routing)
            elif op == "delete":
                if doc_id is None:
                    raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;")
                idx, body, status = self.store.delete_doc(name, doc_id, if_seq_no=meta.get("if_seq_no"),
                                                          if_primary_term=meta.get("if_primary_term"),
                                                          routing=routing, version=meta.get("version"),
                                                          version_type=meta.get("version_type"))
            else:
                if doc_id is None:
                    raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;")
                update_body = dict(source) if isinstance(source, dict) else source
                if isinstance(update_body, dict) and "_source" in meta and "_source" not in update_body:
                    update_body["_source"] = meta["_source"]
                elif isinstance(update_body, dict) and default_source is not None and "_source" not in update_body:
                    update_body["_source"] = default_source not in ("false",)
                retries = int(meta.get("retry_on_conflict", 0) or 0)
                idx, body, status = self.store.update_doc(
                    name, doc_id, update_body, if_seq_no=meta.get("if_seq_no"),
                    if_primary_term=meta.get("if_primary_term"), retry_on_conflict=retries,
                    require_alias=bool(require_alias), routing=routing)
            body["status"] = status
            return body, idx
        except EsError as exc:
            # A blocked write names the concrete index (the shard request failed), not the alias.
            item: dict[str, Any] = {"_index": exc.index if isinstance(exc, IndexBlocked) else name, "_id": doc_id,
                                    "status": exc.status, "error": exc.to_item_error()}
            return item, None


    # -- search -----------------------------------------------------------------------------------

    def _shards(self, targets: list[SearchTarget]) -> dict[str, int]:
        total = sum(_target_shards(t) for t in targets)
        return {"total": total, "successful": total, "skipped": 0, "failed": 0}

    def _search_body(self, req: Request) -> dict[str, Any]:
        body = req.json({})
        if not isinstance(body, dict):
            raise EsError(400, "parsing_exception", "search request body must be an object")
        return body

    def search(self, req: Request, index: str | None = None) -> Response:
        return Response(200, self.run_search(index, self._search_body(req), dict(req.params)))

    def run_search(self, index: str | None, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        engine = _engine()
        pit = body.get("pit")
        scroll = params.get("scroll")
        if pit is not None:
            if index is not None:
                raise EsError(400, "action_request_validation_exception",
                              "Validation Failed: 1: [indices] cannot be used with point in time. Do not specify "
                              "any index with point in time.;")
            if scroll is not None:
                raise EsError(400, "action_request_validation_exception",
                              "Validation Failed: 1: using [point in time] is not allowed in a scroll context;")
            if not isinstance(pit, dict) or "id" not in pit:
                raise EsError(400, "x_content_parse_exception", "[pit] requires an [id]")
            point = self.store.get_pit(pit["id"], pit.get("keep_alive"))
            body = {k: v for k, v in body.items() if k != "pit"}
            targets, body = self._indices_boost(point.targets, body, params)
            result = engine.run_search(targets, body, params, pit=True)
            out = {"pit_id": point.id, "took": _took(started), "timed_out": False,
                   "_shards": self._shards(point.targets)}
            out.update(result)
            return out
        if scroll is not None:
            return self._start_scroll(index, body, params, scroll, started)
        targets, body = self._indices_boost(self.store.search_targets(index, params), body, params)
        result = engine.run_search(targets, body, params)
        out = {"took": _took(started), "timed_out": False, "_shards": self._shards(targets)}
        out.update(result)
        return out

    def _indices_boost(self, targets: list[SearchTarget], body: dict[str, Any],
                       params: dict[str, Any]) -> tuple[list[SearchTarget], dict[str, Any]]:
        """Each target with the boost of the first ``indices_boost`` entry naming its index (through
        an alias or a wildcard too); the body without the key."""
        spec = body.get("indices_boost")
        if spec is None:
            return targets, body
        entries = [(k, v) for item in spec for k, v in item.items()] if isinstance(spec, list) else \
            list(spec.items()) if isinstance(spec, dict) else None
        if entries is None:
            raise EsError(400, "parsing_exception", "[indices_boost] must be an array of objects")
        ignore = parse_bool(params.get("ignore_unavailable"), False)
        resolved = [({i.name for i, _ in self.store.resolve(name, ignore_unavailable=ignore)}, float(boost))
                    for name, boost in entries]
        boosted = [dataclasses.replace(t, boost=next((b for names, b in resolved if t.snapshot.index_name in names),
                                                     1.0)) for t in targets]
        return boosted, {k: v for k, v in body.items() if k != "indices_boost"}

    def _start_scroll(self, index: str | None, body: dict[str, Any], params: dict[str, Any], scroll: str,
                      started: float) -> dict[str, Any]:
        size = body.get("size", params.get("size", 10))
        size = int(size)
        problems = []
        if params.get("request_cache") in ("true", ""):
            problems.append("[request_cache] cannot be used in a scroll context")
        if size == 0:
            problems.append("[size] cannot be [0] in a scroll context")
        if body.get("from", params.get("from")) not in (None, 0, "0"):
            problems.append("using [from] is not allowed in a scroll context")
        if problems:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: " +
                          "".join(f"{n}: {p};" for n, p in enumerate(problems, 1)))
        targets, body = self._indices_boost(self.store.search_targets(index, params), body, params)
        # Run the search once over the snapshot and page through its hits: later writes stay invisible.
        everything = max(size, sum(len(t.snapshot.docs) for t in targets))
        scan_body = dict(body)
        scan_body["size"] = everything
        scan_body.pop("from", None)
        # Keep `scroll` in the params: it tells the engine this is a scroll, which the result window
        # (index.max_result_window) does not limit.
        scan_params = {k: v for k, v in params.items() if k not in ("size", "from")}
        result = _engine().run_search(targets, scan_body, scan_params)
        hits = result["hits"]
        all_hits = hits.get("hits", [])
        ctx = self.store.add_scroll(all_hits, hits.get("total"), size, scroll,
                                    {"max_score": hits.get("max_score"), "shards": self._shards(targets)})
        ctx.position = size
        out = {"_scroll_id": ctx.id, "took": _took(started), "timed_out": False, "_shards": ctx.extra["shards"]}
        out.update(result)
        out["hits"] = dict(hits)
        out["hits"]["hits"] = all_hits[:size]
        return out

    def scroll(self, req: Request, scroll_id: str | None = None) -> Response:
        started = time.perf_counter()
        body = req.json({}) or {}
        _check_keys(body, ("scroll_id", "scroll"), _unknown_parameter)
        sid = body.get("scroll_id") or scroll_id or req.params.get("scroll_id")
        keep_alive = body.get("scroll", req.params.get("scroll"))
        if not sid:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: scrollId is missing;")
        ctx = self.store.get_scroll(sid, keep_alive)
        with ctx.lock:
            page = ctx.hits[ctx.position:ctx.position + ctx.size]
            ctx.position += ctx.size
        total = ctx.total
        if parse_bool(req.params.get("rest_total_hits_as_int"), False) and isinstance(total, dict):
            total = total["value"]
        hits: dict[str, Any] = {"max_score": ctx.extra["max_score"], "hits": page}
        if total is not None:
            hits = {"total": total, **hits}
        return Response(200, {"_scroll_id": ctx.id, "took": _took(started), "timed_out": False,
                              "_shards": ctx.extra["shards"], "hits": hits})

    def clear_scroll(self, req: Request, scroll_id: str | None = None) -> Response:
        body = req.json({}) or {}
        _check_keys(body, ("scroll_id",), _unknown_parameter)
        ids = body.get("scroll_id", scroll_id)
        if isinstance(ids, str):
            ids = ids.split(",")
        if ids is None:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no scroll ids specified;")
        freed = self.store.clear_scrolls(None if "_all" in ids else list(ids))
        return Response(200 if freed or "_all" in ids else 404, {"succeeded": True, "num_freed": freed})

    def open_pit(self, req: Request, index: str) -> Response:
        body = req.json({}) or {}
        if "index_filter" in body:
            raise unsupported("[index_filter] when opening a point in time")
        _check_keys(body, (), lambda key, _: EsError(400, "x_content_parse_exception",
                                                     f"[1:2] [open_point_in_time] unknown field [{key}]"))
        keep_alive = req.params.get("keep_alive")
        if not keep_alive:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: [keep_alive] is not specified;")
        pit = self.store.open_pit(index, keep_alive, req.params)
        total = sum(_target_shards(t) for t in pit.targets)
        return Response(200, {"id": pit.id, "_shards": {"total": total, "successful": total, "skipped": 0,
                                                        "failed": 0}})

    def close_pit(self, req: Request) -> Response:
        body = req.json({}) or {}
        _check_keys(body, ("id",), _unknown_parameter)
        pid = body.get("id")
        if not pid:
            raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: [id] is not specified;")
        freed = self.store.close_pits([pid])
        return Response(200 if freed else 404, {"succeeded": True, "num_freed": freed})

    def count(self, req: Request, index: str | None = None) -> Response:
        terminate_after = _int_param(req.params, "terminate_after")
        if terminate_after is not None and terminate_after <= 0:
            raise EsError(400, "illegal_argument_exception", "terminateAfter must be > 0")
        body = req.json({}) or {}
        if not isinstance(body, dict):
            raise EsError(400, "parsing_exception", "request body must be an object")
        extra = [k for k in body if k != "query"]
        if extra:
            raise EsError(400, "parsing_exception", f"request does not support [{extra[0]}]", line=1, col=2)
        query = body.get("query")
        if req.params.get("q"):
            query = _engine().uri_query(req.params)
        targets = self.store.search_targets(index, req.params)
        n = _engine().count(targets, query)
        if terminate_after is not None:
            n = min(n, terminate_after)
        return Response(200, {"count": n, "_shards": self._shards(targets)})

    def msearch(self, req: Request, index: str | None = None) -> Response:
        started = time.perf_counter()
        lines = [line for line in req.lines() if line.strip()]
        if len(lines) % 2:
            lines.append(b"{}")
        pairs = []
        for n in range(0, len(lines), 2):
            try:
                pairs.append((loads(lines[n]), loads(lines[n + 1])))
            except ValueError as exc:
                raise _parse_error(exc) from None
        as_int = req.params.get("rest_total_hits_as_int") in ("true", "")
        for header, _ in pairs:
            unknown = [k for k in header if k not in _MSEARCH_HEADER] if isinstance(header, dict) else []
            if unknown:
                raise EsError(400, "illegal_argument_exception",
                              f"key [{unknown[0]}] is not supported in the metadata section")
        for header, body in pairs:
            # request-level validation, like Elasticsearch's MultiSearchRequest.validate()
            tracking = body.get("track_total_hits") if isinstance(body, dict) else None
            if as_int and tracking not in (None, True):
                raise EsError(400, "action_request_validation_exception",
                              "Validation Failed: 1: [rest_total_hits_as_int] cannot be used if the tracking of "
                              f"total hits is not accurate, got {tracking};")
            if isinstance(body, dict) and "pit" in body and "index" in header:
                raise EsError(400, "action_request_validation_exception",
                              "Validation Failed: 1: [indices] cannot be used with point in time. Do not "
                              "specify any index with point in time.;")
        responses = []
        for header, body in pairs:
            params = {k: v for k, v in req.params.items() if k not in ("max_concurrent_searches",)}
            target = header.get("index", header.get("indices", index))
            if isinstance(target, list):
                target = ",".join(target)
            for key in ("search_type", "request_cache", "allow_partial_search_results", "ignore_unavailable",
                        "allow_no_indices", "expand_wildcards", "routing", "preference"):
                if key in header:
                    params[key] = str(header[key]).lower() if isinstance(header[key], bool) else str(header[key])
            try:
                result = self.run_search(None if "pit" in body else target, body, params)
                result["status"] = 200
                responses.append(result)
            except EsError as exc:
                responses.append(exc.to_body())
        return Response(200, {"took": _took(started), "responses": responses})

    def get_task(self, req: Request, task_id: str) -> Response:
        task = self.tasks.get(task_id)
        if task is None:
            raise EsError(404, "resource_not_found_exception",
                          f"task [{task_id}] isn't running and hasn't stored its results")
        return Response(200, task)

    # -- by-query ---------------------------------------------------------------------------------

    def update_by_query(self, req: Request, index: str) -> Response:
        return self._by_query(req, index, delete=False)

    def delete_by_query(self, req: Request, index: str) -> Response:
        return self._by_query(req, index, delete=True)

    def _by_query(self, req: Request, index: str, *, delete: bool) -> Response:
        started = time.perf_counter()
        p = req.params
        if req.params.get("wait_for_completion") == "false":
            # Run it now and keep the result as a finished task (GET _tasks/<id> returns it).
            req.params.pop("wait_for_completion")
            response = self._by_query(req, index, delete=delete)
            with self._tasks_lock:
                self._task_seq += 1
                task_id = f"{NODE_NAME}:{self._task_seq}"
                action = "indices:data/write/" + ("delete" if delete else "update") + "/byquery"
                self.tasks[task_id] = {"completed": True, "task": {
                    "node": NODE_NAME, "id": self._task_seq, "type": "transport", "action": action,
                    "status": {k: v for k, v in response.body.items() if k not in ("took", "timed_out",
                                                                                 "failures")},
                    "description": f"{'delete' if delete else 'update'}-by-query [{index}]",
                    "start_time_in_millis": int(time.time() * 1000), "running_time_in_nanos": 0,
                    "cancellable": True, "cancelled": False, "headers": {}}, "response": response.body}
            return Response(200, {"task": task_id})
        body = req.json({}) or {}
        for key, value in body.items():
            if key in ("script", "slice", "sort"):
                raise unsupported(f"[{key}] in update/delete by query")
            if key not in ("query", "max_docs", "conflicts", "size"):
                raise EsError(400, "parsing_exception", f"Unknown key for a {json_token(value)} in [{key}].")
        if delete and "query" not in body and "q" not in p:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: query is missing;")
        conflicts = body.get("conflicts", p.get("conflicts", "abort"))
        if conflicts not in ("abort", "proceed"):
            raise EsError(400, "illegal_argument_exception",
                          f"conflicts may only be \"proceed\" or \"abort\" but was [{conflicts}]")
        max_docs = body.get("max_docs", _int_param(p, "max_docs"))
        if "size" in p and max_docs is None:
            max_docs = _int_param(p, "size")
        scroll_size = _int_param(p, "scroll_size", 1000) or 1000
        query = body.get("query")
        engine = _engine()
        if p.get("q"):
            query = engine.uri_query(p)
        ignore_unavailable = parse_bool(p.get("ignore_unavailable"), False)
        pairs = self.store.open_only(index, self.store.resolve(index, allow_no_indices=True,
                                                               ignore_unavailable=ignore_unavailable),
                                     ignore_unavailable)
        routed = self.store.search_shards(index, p.get("routing"))
        stats = {"total": 0, "updated": 0, "deleted": 0, "version_conflicts": 0, "noops": 0}
        failures: list[dict[str, Any]] = []
        # Bulk failures (a write block): reported and the request aborted whatever `conflicts` says.
        blocked: list[dict[str, Any]] = []

        def block_failures(idx: Any, batch: list[Any]) -> None:
            cause = IndexBlocked(idx.name).to_item_error()
            blocked.extend({"index": idx.name, "id": d.id, "cause": dict(cause), "status": 403} for d in batch)

        touched = []
        processed = 0
        stop = False
        for idx, flt in pairs:
            if stop:
                break
            snapshot = idx.current_snapshot()
            docs = engine.matching_docs(SearchTarget(snapshot=snapshot, alias_filter=flt,
                                                     shards=routed.get(idx.name)), query)
            touched.append(idx)
            if docs and idx.write_blocked:
                # The first batch's bulk request fails item by item, and the request stops there.
                room = scroll_size if max_docs is None else max(0, min(scroll_size, int(max_docs) - processed))
                batch = list(docs[:room])
                block_failures(idx, batch)
                processed += len(batch)
                stats["total"] += len(batch)
                break
            for doc in docs:
                if max_docs is not None and stats["updated"] + stats["deleted"] + stats["noops"] >= int(max_docs):
                    stop = True
                    break
                if max_docs is not None and conflicts == "abort" and processed >= int(max_docs):
                    stop = True
                    break
                processed += 1
                stats["total"] += 1
                with idx.lock:
                    if idx.write_blocked:  # blocked while this request ran
                        block_failures(idx, [doc])
                        stop = True
                        break
                    key = (doc.shard, doc.id)
                    live = idx.docs.get(key)
                    if live is None or live.seq_no != doc.seq_no:
                        stats["version_conflicts"] += 1
                        current = live.seq_no if live else -1
                        reason = (f"[{doc.id}]: version conflict, required seqNo [{doc.seq_no}], primary term [1]. "
                                  f"current document has seqNo [{current}] and primary term [1]")
                        failures.append({"index": idx.name, "id": doc.id, "cause": {
                            "type": "version_conflict_engine_exception", "reason": reason,
                            "index_uuid": idx.uuid, "shard": "0", "index": idx.name}, "status": 409})
                        if conflicts == "abort":
                            stop = True
                            break
                        continue
                    if delete:
                        del idx.docs[key]
                        idx.next_seq_no(doc.shard)
                        stats["deleted"] += 1
                    else:
                        self.store.apply_mapping(idx, live.source, doc.id)
                        seq_no = idx.next_seq_no(doc.shard)
                        del idx.docs[key]
                        # reindexed in place: same shard, same routing (update_by_query keeps it)
                        idx.docs[key] = type(live)(source=live.source, seq_no=seq_no, version=live.version + 1,
                                                   routing=live.routing, shard=live.shard)
                        stats["updated"] += 1
                    idx.dirty = True
        if parse_bool(p.get("refresh"), False):
            for idx in touched:
                idx.refresh()
        result = {"took": _took(started), "timed_out": False, **stats,
                  "batches": max(1, math.ceil(processed / scroll_size)) if processed else 0,
                  "retries": {"bulk": 0, "search": 0}, "throttled_millis": 0,
                  # accepted and reported; the in-memory copy runs at once (nothing to throttle)
                  "requests_per_second": _requests_per_second(p),
                  "throttled_until_millis": 0,
                  "failures": (failures if conflicts == "abort" else []) + blocked}
        if not delete:
            result.pop("deleted")
        status = 403 if blocked else 409 if failures and conflicts == "abort" else 200
        return Response(status, result)


#: The keys of an msearch header line (``MultiSearchRequest.readMultiLineFormat``).
_MSEARCH_HEADER = frozenset({"index", "indices", "expand_wildcards", "ignore_unavailable", "ignore_throttled",
                             "allow_no_indices", "search_type", "request_cache", "preference", "routing",
                             "allow_partial_search_results", "ccs_minimize_roundtrips"})


def _shown_source(idx: Any, source: dict[str, Any], includes: list[str] | None, excludes: list[str] | None,
                  params: dict[str, Any]) -> dict[str, Any]:
    """A get's ``_source``: filtered, and without vectors unless asked (``_source_exclude_vectors``)."""
    from es_semantic.testing.search_engine import SourceFilter

    asked = params.get("_source_exclude_vectors")
    sf = SourceFilter(includes=list(includes or []), excludes=list(excludes or []),
                      exclude_vectors=None if asked is None else parse_bool(asked, True))
    return sf.render(source, idx.mappings, idx.nested_settings())


def _alias_action_result(action: dict[str, Any], failure: EsError | None) -> dict[str, Any]:
    """One entry of ``action_results``: the action as given (type, indices, aliases) and its outcome."""
    (kind, spec), = action.items()
    spec = spec or {}

    def names(*keys: str) -> list[str]:
        value = next((spec[k] for k in keys if k in spec), [])
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    result: dict[str, Any] = {"action": {"type": kind, "indices": names("indices", "index"),
                                         "aliases": names("aliases", "alias")},
                              "status": 200 if failure is None else failure.status}
    if failure is not None:
        result["error"] = failure.to_item_error()
    return result


def _unknown_parameter(key: str, value: Any) -> EsError:
    return EsError(400, "illegal_argument_exception", f"Unknown parameter [{key}] in request body or parameter is "
                   f"of the wrong type[{json_token(value)}] ")


def _check_keys(body: Any, allowed: tuple[str, ...], error: Callable[[str, Any], EsError]) -> None:
    """Refuse the first key of a request body object the API does not read, with the API's error."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key not in allowed:
                raise error(key, value)



#: Bulk action metadata Elasticsearch knows (``BulkRequestParser``); the second set is not modelled.
_BULK_METADATA = frozenset({"_index", "_id", "_source", "routing", "op_type", "version", "version_type", "if_seq_no",
                            "if_primary_term", "retry_on_conflict", "require_alias"})
_BULK_METADATA_UNMODELLED = frozenset({"pipeline", "dynamic_templates", "require_data_stream",
                                       "list_executed_pipelines"})


class _BadSource:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def _target_shards(target: SearchTarget) -> int:
    """How many shards a search of ``target`` goes to (fewer than the index has with routing)."""
    if target.shards is not None:
        return len(target.shards)
    return int(target.snapshot.settings.get("index", {}).get("number_of_shards", "1"))


def _requests_per_second(params: dict[str, Any]) -> float:
    why = "[requests_per_second] must be a float greater than 0. Use -1 to disable throttling."
    try:
        rate = float(params.get("requests_per_second", "-1"))
    except ValueError:
        raise EsError(400, "illegal_argument_exception", why) from None
    if rate <= 0 and rate != -1:
        raise EsError(400, "illegal_argument_exception", why)
    return rate


def _took(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
