"""Test server: every route answers Elasticsearch's answer or a 400 naming what it lacks.

Unknown URL parameters, unknown body keys and unknown index settings are sent to every route of
the route table; none may answer 500 and none may be silently accepted.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch

from es_semantic.testing.params import NO_BODY

# What a path placeholder is filled with: names that exist after _setup (or that the API creates).
_PLACEHOLDERS = {"index": "strict-idx", "id": "1", "name": "strict-name", "scroll_id": "no-such-scroll",
                 "task_id": "node:1", "metric": "docs", "block": "write", "repository": "_all", "snapshot": "s"}
# Routes whose body is a document: any key is data, so an unknown key is rightly accepted.
_DOCUMENT_BODIES = {"index", "create"}


def _routes(server: Any) -> list[tuple[str, str, str]]:
    out = []
    for route in server.api.router.routes:
        path = re.sub(r"\{(\w+)\}", lambda m: _PLACEHOLDERS[m.group(1)], route.pattern)
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, path, route.api))
    return out


def _call(server: Any, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(server.url + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    payload = json.loads(raw) if raw.strip() else {}
    return status, payload if isinstance(payload, dict) else {"_list": payload}


def _setup(client: Elasticsearch) -> None:
    client.indices.create(index="strict-idx", mappings={"properties": {"t": {"type": "keyword"}}})
    client.index(index="strict-idx", id="1", document={"t": "a"}, refresh=True)


@pytest.fixture
def routes(es_server, es_client: Elasticsearch) -> list[tuple[str, str, str]]:
    _setup(es_client)
    return _routes(es_server)


def test_route_table_covers_the_client_clean_up_apis(routes) -> None:
    apis = {api for _, _, api in routes}
    assert {"indices.put_index_template", "indices.delete_index_template", "indices.close", "indices.open",
            "cluster.put_settings", "cluster.get_settings", "snapshot.get_repository"} <= apis


def test_unknown_url_parameter_on_every_route_gets_elasticsearchs_error(es_server, routes) -> None:
    for method, path, api in routes:
        status, body = _call(es_server, method, path + "?zzz_unknown=1")
        assert status == 400, (method, path, status, body)
        assert body["error"]["type"] == "illegal_argument_exception", (method, path, body)
        assert body["error"]["reason"].startswith(f"request [{path}] contains unrecognized parameter: "
                                                  "[zzz_unknown]"), (method, path, body)


def test_unknown_body_key_on_every_route_is_refused_never_a_500(es_server, routes) -> None:
    accepted = []
    for method, path, api in routes:
        if method in ("GET", "DELETE") and api not in NO_BODY and api not in ("search", "count", "msearch", "mget",
                                                                            "scroll", "clear_scroll",
                                                                            "indices.analyze",
                                                                            "close_point_in_time"):
            continue
        _setup_again(es_server)
        status, body = _call(es_server, method, path, b'{"zzz_unknown_key": 1}\n')
        assert status != 500, (method, path, body)
        if status < 400 and api not in _DOCUMENT_BODIES:
            accepted.append((method, path, api))
        if status == 400 and api in NO_BODY:
            assert body["error"]["reason"] == f"request [{method} {path}] does not support having a body"
    assert not accepted, f"unknown body key silently accepted by {accepted}"


def _setup_again(server: Any) -> None:
    server.reset()
    _setup(Elasticsearch(server.url))


def test_known_but_unmodelled_parameter_names_itself(es_client: Elasticsearch) -> None:
    _setup(es_client)
    with pytest.raises(ApiError) as err:
        es_client.search(index="strict-idx", analyzer="whitespace", q="t:a")
    assert err.value.meta.status == 400
    assert err.value.body["error"]["type"] == "unsupported_by_test_server"
    assert "[analyzer]" in err.value.body["error"]["reason"]


def test_unknown_parameter_suggests_the_close_one(es_client: Elasticsearch) -> None:
    with pytest.raises(ApiError) as err:
        es_client.perform_request("GET", "/_search", params={"sizee": "1"})
    assert err.value.body["error"]["reason"] == (
        "request [/_search] contains unrecognized parameter: [sizee] -> did you mean [size]?")


@pytest.mark.parametrize(("settings", "error_type", "reason"), [
    ({"foo": 1}, "illegal_argument_exception",
     ("unknown setting [index.foo] please check that any required plugins are installed, or check the breaking "
     "changes documentation for removed settings")),
    ({"number_of_shard": 1}, "illegal_argument_exception",
     "unknown setting [index.number_of_shard] did you mean [index.number_of_shards]?"),
    ({"sort.field": "t"}, "unsupported_by_test_server",
     "the es-semantic test server does not support the index setting [index.sort.field]"),
])
def test_index_settings_are_checked(es_client: Elasticsearch, settings, error_type, reason) -> None:
    with pytest.raises(ApiError) as err:
        es_client.indices.create(index="s", settings=settings)
    assert (err.value.body["error"]["type"], err.value.body["error"]["reason"]) == (error_type, reason)
    _setup(es_client)
    with pytest.raises(ApiError) as err:
        es_client.indices.put_settings(index="strict-idx", settings=settings)
    assert err.value.body["error"]["type"] == error_type


@pytest.mark.parametrize("key", ["highlight", "rescore", "suggest", "script_fields",
                                 "runtime_mappings"])
def test_unmodelled_search_body_keys_are_refused_by_name(es_client: Elasticsearch, key: str) -> None:
    _setup(es_client)
    with pytest.raises(ApiError) as err:
        es_client.perform_request("POST", "/strict-idx/_search", body={key: {"x": 1}},
                                  headers={"content-type": "application/json"})
    assert err.value.body["error"]["type"] == "unsupported_by_test_server"
    assert f"[{key}]" in err.value.body["error"]["reason"]


def test_internal_failure_is_a_400_naming_the_api(es_server, es_client: Elasticsearch, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(es_server.api.store, "refresh", broken)
    with pytest.raises(ApiError) as err:
        es_client.indices.refresh()
    assert err.value.meta.status == 400
    assert err.value.body["error"]["type"] == "unsupported_by_test_server"
    assert "[indices.refresh]" in err.value.body["error"]["reason"]
    assert "ZeroDivisionError: boom" in err.value.body["error"]["reason"]


def test_filter_path_filters_the_response(es_client: Elasticsearch) -> None:
    _setup(es_client)
    assert es_client.search(index="strict-idx", filter_path="hits.hits._id") == {"hits": {"hits": [{"_id": "1"}]}}
    assert es_client.search(index="strict-idx", filter_path="**._id") == {"hits": {"hits": [{"_id": "1"}]}}
    response = es_client.search(index="strict-idx", filter_path="-hits.hits,-_shards").body
    assert "_shards" not in response and "hits" not in response["hits"] and "took" in response
    assert es_client.search(index="strict-idx", filter_path="nothing.here") == {}


_NESTED_UNKNOWN_KEYS = [
    ("POST", "/_search/scroll", {"scroll_id": "$scroll", "zzz": 1}, "Unknown parameter [zzz] in request body"),
    ("DELETE", "/_pit", {"id": "$pit", "zzz": 1}, "Unknown parameter [zzz] in request body"),
    ("POST", "/strict-idx/_pit?keep_alive=1m", {"zzz": 1}, "[open_point_in_time] unknown field [zzz]"),
    ("POST", "/_mget", {"docs": [{"_index": "strict-idx", "_id": "1", "zzz": 1}]}, "unknown key [zzz]"),
    ("POST", "/_aliases", {"actions": [], "zzz": 1}, "[aliases] unknown field [zzz]"),
    ("POST", "/strict-idx/_count", {"query": {"match_all": {"zzz": 1}}}, "[match_all] query does not support [zzz]"),
    ("POST", "/strict-idx/_search", {"query": {"term": {"t": {"value": "a", "zzz": 1}}}},
     "[term] query does not support [zzz]"),
    ("POST", "/strict-idx/_search", {"query": {"match": {"t": {"query": "a", "operater": "and"}}}},
     "[match] query does not support [operater]"),
    ("POST", "/strict-idx/_search", {"sort": [{"t": {"order": "asc", "zzz": 1}}]}, "[field_sort] unknown field"),
    ("POST", "/strict-idx/_search", {"collapse": {"field": "t", "zzz": 1}}, "[collapse] unknown field [zzz]"),
    ("POST", "/strict-idx/_search", {"_source": {"includez": ["t"]}}, "Unknown key for a START_ARRAY in [includez]"),
    ("POST", "/strict-idx/_search", {"knn": {"field": "v", "query_vector": [1], "k": 1, "zzz": 1}},
     "[knn] unknown field [zzz]"),
    ("POST", "/strict-idx/_search", {"fields": [{"field": "t", "zzz": 1}]}, "[fields] unknown field [zzz]"),
    ("POST", "/strict-idx/_search", {"query": {"function_score": {"query": {"match_all": {}}, "zzz": 1}}},
     "[function_score] query does not support [zzz]"),
    ("POST", "/strict-idx/_search", {"query": {"range": {"t": {"gte": "a", "time_zone": "+01:00"}}}},
     "[time_zone] in a [range] query"),
    ("POST", "/strict-idx/_search", {"query": {"script_score": {"query": {"match_all": {}},
                                                                "script": {"source": "1", "zzz": 1}}}},
     "[script] unknown field [zzz]"),
]


@pytest.mark.parametrize(("method", "path", "body", "reason"), _NESTED_UNKNOWN_KEYS,
                         ids=[f"{m} {p} {r}" for m, p, _, r in _NESTED_UNKNOWN_KEYS])
def test_unknown_keys_inside_bodies_are_refused(es_client: Elasticsearch, method: str, path: str,
                                                body: dict[str, Any], reason: str) -> None:
    _setup(es_client)
    stash = {"$scroll": es_client.search(index="strict-idx", scroll="1m", size=1)["_scroll_id"],
             "$pit": es_client.open_point_in_time(index="strict-idx", keep_alive="1m")["id"]}
    body = json.loads(json.dumps(body), object_hook=lambda d: {k: stash.get(v, v) if isinstance(v, str) else v
                                                               for k, v in d.items()})
    with pytest.raises(ApiError) as err:
        es_client.perform_request(method, path, body=body, headers={"content-type": "application/json"})
    assert err.value.meta.status == 400
    assert reason in json.dumps(err.value.body["error"])


@pytest.mark.parametrize(("field", "error_type", "reason"), [
    ({"type": "keyword", "zzz": 1}, "mapper_parsing_exception",
     "Failed to parse mapping: unknown parameter [zzz] on mapper [f] of type [keyword]"),
    ({"type": "text", "copy_to": "all"}, "unsupported_by_test_server",
     "the es-semantic test server does not support the mapping parameter [copy_to] (field [f])"),
    ({"type": "long", "coerce": False}, "unsupported_by_test_server",
     "the es-semantic test server does not support the mapping parameter [coerce] (field [f])"),
])
def test_mapping_parameters_are_checked(es_client: Elasticsearch, field: dict[str, Any], error_type: str,
                                        reason: str) -> None:
    with pytest.raises(ApiError) as err:
        es_client.indices.create(index="m", mappings={"properties": {"f": field}})
    assert (err.value.body["error"]["type"], err.value.body["error"]["reason"]) == (error_type, reason)
