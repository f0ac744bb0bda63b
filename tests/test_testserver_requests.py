"""Test server: URI search, versioning, real-time get, hex vectors, named-query scores, and the
clean-up APIs client suites call (templates, close/open, cluster settings, `_all`, snapshots)."""

from __future__ import annotations

import pytest
from elasticsearch import ApiError, Elasticsearch


@pytest.fixture
def docs(es_client: Elasticsearch) -> Elasticsearch:
    es_client.indices.create(index="t", mappings={"properties": {"t": {"type": "keyword"},
                                                               "body": {"type": "text"},
                                                               "n": {"type": "integer"}}})
    es_client.index(index="t", id="1", document={"t": "foo", "body": "hello world", "n": 1}, routing="r")
    es_client.index(index="t", id="2", document={"t": "bar", "body": "hello there", "n": 2}, refresh=True)
    return es_client


@pytest.mark.parametrize(("q", "ids"), [
    ("t:foo", ["1"]), ("hello", ["1", "2"]), ("body:hello AND t:bar", ["2"]), ("hello -t:foo", ["2"]),
    ("NOT t:foo", ["2"]), ("t:*", ["1", "2"]), ("_exists_:body", ["1", "2"]), ('body:"hello world"', ["1"]),
    ("body:HEL*", ["1", "2"]), ("(t:foo OR t:bar) AND body:world", ["1"]), ("t:foo t:nope", ["1"]),
])
def test_uri_search_q(docs: Elasticsearch, q: str, ids: list[str]) -> None:
    assert docs.count(index="t", q=q)["count"] == len(ids)
    assert sorted(h["_id"] for h in docs.search(index="t", q=q)["hits"]["hits"]) == ids


def test_uri_search_default_operator_df_and_lenient(docs: Elasticsearch) -> None:
    assert docs.count(index="t", q="t:foo t:nope", default_operator="AND")["count"] == 0
    assert docs.count(index="t", q="world", df="body")["count"] == 1
    assert docs.count(index="t", q="n:abc", lenient=True)["count"] == 0


@pytest.mark.parametrize("q", ["n:[1 TO 2]", "hel~", "h?llo", "body:/hel.*/"])
def test_uri_search_syntax_it_cannot_answer_is_refused(docs: Elasticsearch, q: str) -> None:
    with pytest.raises(ApiError) as err:
        docs.count(index="t", q=q)
    assert err.value.body["error"]["type"] == "unsupported_by_test_server"


@pytest.mark.parametrize(("field", "count"), [("_id", 2), ("_index", 2), ("_routing", 1), ("_ignored", 0)])
def test_exists_on_metadata_fields(docs: Elasticsearch, field: str, count: int) -> None:
    assert docs.count(index="t", query={"exists": {"field": field}})["count"] == count


def test_external_versions(es_client: Elasticsearch) -> None:
    assert es_client.index(index="v", id="1", document={}, version=5, version_type="external")["_version"] == 5
    with pytest.raises(ApiError) as err:
        es_client.index(index="v", id="1", document={}, version=5, version_type="external")
    assert err.value.meta.status == 409
    assert es_client.index(index="v", id="1", document={}, version=5, version_type="external_gte")["_version"] == 5
    with pytest.raises(ApiError):
        es_client.delete(index="v", id="1", version=4, version_type="external")
    assert es_client.delete(index="v", id="1", version=9, version_type="external")["_version"] == 9
    with pytest.raises(ApiError) as err:  # the delete's version is remembered
        es_client.index(index="v", id="1", document={}, version=8, version_type="external")
    assert err.value.meta.status == 409
    assert es_client.index(index="v", id="1", document={})["_version"] == 10


def test_internal_version_on_write_is_refused_and_get_checks_version(es_client: Elasticsearch) -> None:
    es_client.index(index="v", id="1", document={})
    with pytest.raises(ApiError) as err:
        es_client.index(index="v", id="1", document={}, version=1)
    assert "internal versioning can not be used" in err.value.body["error"]["reason"]
    assert es_client.get(index="v", id="1", version=1)["found"]
    with pytest.raises(ApiError) as err:
        es_client.get(index="v", id="1", version=2)
    assert err.value.meta.status == 409


def test_realtime_false_reads_the_last_refresh(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="r", settings={"refresh_interval": -1})
    es_client.index(index="r", id="1", document={"a": 1})
    assert not es_client.options(ignore_status=404).get(index="r", id="1", realtime=False)["found"]
    assert es_client.get(index="r", id="1")["found"]
    assert es_client.get(index="r", id="1", realtime=False, refresh=True)["found"]


def test_hex_byte_vectors_are_searchable(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="b", mappings={"properties": {"v": {
        "type": "dense_vector", "dims": 3, "element_type": "byte", "similarity": "l2_norm"}}})
    es_client.index(index="b", id="1", document={"v": "010203"})
    es_client.index(index="b", id="2", document={"v": [1, 2, 5]}, refresh=True)
    hits = es_client.search(index="b", knn={"field": "v", "query_vector": "010203", "k": 2,
                                            "num_candidates": 5})["hits"]["hits"]
    assert [(h["_id"], h["_score"]) for h in hits] == [("1", 1.0), ("2", pytest.approx(1 / 5))]


def test_named_queries_with_scores(docs: Elasticsearch) -> None:
    query = {"bool": {"should": [{"term": {"t": {"value": "foo", "_name": "is_foo"}}},
                                 {"match": {"body": {"query": "hello", "_name": "hi", "boost": 0}}}]}}
    hits = docs.search(index="t", query=query, include_named_queries_score=True)["hits"]["hits"]
    by_id = {h["_id"]: h["matched_queries"] for h in hits}
    assert by_id["1"] == {"is_foo": pytest.approx(0.6931472), "hi": 0.0}  # BM25 of a term in 1 of 2 docs: ln 2
    assert by_id["2"] == {"hi": 0.0}
    assert docs.search(index="t", query=query)["hits"]["hits"][0]["matched_queries"] == ["hi", "is_foo"]


def test_index_templates_apply_at_creation(es_client: Elasticsearch) -> None:
    es_client.cluster.put_component_template(name="ct", template={"mappings": {"properties": {
        "a": {"type": "keyword"}}}})
    es_client.indices.put_index_template(name="logs", index_patterns=["logs-*"], composed_of=["ct"],
                                         template={"settings": {"number_of_shards": 2}}, priority=5)
    es_client.index(index="logs-1", document={"a": "x"})
    assert es_client.indices.get_mapping(index="logs-1")["logs-1"]["mappings"]["properties"]["a"] == \
        {"type": "keyword"}
    assert es_client.indices.get_settings(index="logs-1")["logs-1"]["settings"]["index"]["number_of_shards"] == "2"
    assert es_client.indices.exists_index_template(name="logs")
    es_client.indices.delete_index_template(name="*")
    es_client.cluster.delete_component_template(name="*")
    assert es_client.indices.get_index_template()["index_templates"] == []
    with pytest.raises(ApiError) as err:
        es_client.indices.delete_index_template(name="logs")
    assert err.value.meta.status == 404


def test_close_and_open(docs: Elasticsearch) -> None:
    assert docs.indices.close(index="t")["indices"] == {"t": {"closed": True}}
    with pytest.raises(ApiError) as err:
        docs.search(index="t")
    assert err.value.body["error"]["type"] == "index_closed_exception"
    assert docs.search(index="t*")["hits"]["total"]["value"] == 0  # wildcards skip closed indices
    docs.indices.open(index="t")
    assert docs.count(index="t")["count"] == 2


def test_clean_up_calls(docs: Elasticsearch) -> None:
    assert list(docs.indices.get(index="_all")) == ["t"]
    assert docs.snapshot.get_repository(name="_all").body == {}
    assert docs.indices.get_data_stream(name="*")["data_streams"] == []
    assert docs.indices.delete_template(name="*")["acknowledged"]
    changed = docs.cluster.put_settings(persistent={"cluster.routing.allocation.enable": "all"})
    assert changed["persistent"] == {"cluster": {"routing": {"allocation": {"enable": "all"}}}}
    assert docs.cluster.get_settings(flat_settings=True)["persistent"] == {"cluster.routing.allocation.enable": "all"}
    with pytest.raises(ApiError) as err:
        docs.cluster.put_settings(persistent={"no.such.setting": 1})
    assert err.value.body["error"]["reason"] == "persistent setting [no.such.setting], not recognized"


def test_indices_boost_multiplies_scores_by_index(es_client: Elasticsearch) -> None:
    for name in ("i1", "i2"):
        es_client.index(index=name, id="1", document={"foo": "bar"}, refresh=True)
    es_client.indices.put_alias(index="i2", name="a2")
    scores = {h["_index"]: h["_score"] for h in es_client.search(
        index="i*", query={"match": {"foo": "bar"}}, indices_boost=[{"a2": 3.0}, {"i*": 2.0}])["hits"]["hits"]}
    assert scores["i2"] == pytest.approx(1.5 * scores["i1"])  # first match wins: 3 for i2, 2 for i1
    with pytest.raises(ApiError) as err:
        es_client.search(index="i*", indices_boost=[{"nope": 2.0}])
    assert err.value.meta.status == 404


def test_max_keep_alive_and_unmodelled_cluster_settings(docs: Elasticsearch) -> None:
    docs.cluster.put_settings(persistent={"search.max_keep_alive": "1m"})
    with pytest.raises(ApiError) as err:
        docs.search(index="t", scroll="2m")
    assert "Keep alive for request (2m) is too large" in err.value.body["error"]["reason"]
    with pytest.raises(ApiError) as err:
        docs.open_point_in_time(index="t", keep_alive="5m")
    assert err.value.meta.status == 400
    assert docs.search(index="t", scroll="1m")["_scroll_id"]
    with pytest.raises(ApiError) as err:
        docs.cluster.put_settings(persistent={"search.max_buckets": 10})
    assert err.value.body["error"]["type"] == "unsupported_by_test_server"
    assert docs.cluster.put_settings(persistent={"action.destructive_requires_name": False})["acknowledged"]


def test_wildcard_delete_needs_destructive_requires_name_false(docs: Elasticsearch) -> None:
    for call in (lambda: docs.indices.delete(index="t*"), lambda: docs.indices.close(index="_all")):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.body["error"]["reason"] == "Wildcard expressions or all indices are not allowed"
    docs.cluster.put_settings(transient={"action.destructive_requires_name": False})
    assert docs.indices.delete(index="t*")["acknowledged"]
    assert not docs.indices.exists(index="t")


def test_task_and_pipeline_clean_up_calls(es_client: Elasticsearch) -> None:
    assert es_client.tasks.list(detailed=True).body == {"nodes": {}}
    assert es_client.cluster.pending_tasks()["tasks"] == []
    assert es_client.ingest.get_pipeline().body == {}
    assert es_client.ingest.delete_pipeline(id="*")["acknowledged"]
    with pytest.raises(ApiError) as err:
        es_client.ingest.put_pipeline(id="p", processors=[])
    assert err.value.body["error"]["type"] == "unsupported_by_test_server"
