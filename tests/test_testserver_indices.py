"""Test server: index lifecycle, mappings, settings, aliases, HTTP compatibility (through the client)."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError


def test_info_identifies_as_elasticsearch_9_3(es_client: Elasticsearch) -> None:
    info = es_client.info()
    assert info["version"]["number"] == "9.3.0"
    assert info["version"]["build_flavor"] == "default"
    assert info["tagline"] == "You Know, for Search"
    assert es_client.ping()


def test_create_exists_delete(es_client: Elasticsearch) -> None:
    resp = es_client.indices.create(index="docs", settings={"number_of_shards": 1, "number_of_replicas": 0})
    assert resp.body == {"acknowledged": True, "shards_acknowledged": True, "index": "docs"}
    assert es_client.indices.exists(index="docs")
    settings = es_client.indices.get_settings(index="docs")["docs"]["settings"]["index"]
    assert settings["number_of_shards"] == "1" and settings["number_of_replicas"] == "0"
    es_client.indices.delete(index="docs")
    assert not es_client.indices.exists(index="docs")
    with pytest.raises(NotFoundError) as err:
        es_client.indices.delete(index="docs")
    assert err.value.body["error"]["type"] == "index_not_found_exception"
    assert err.value.body["error"]["resource.id"] == "docs"
    assert err.value.body["error"]["index"] == "docs"


def test_create_twice_and_bad_names(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="docs")
    with pytest.raises(BadRequestError) as err:
        es_client.indices.create(index="docs")
    assert err.value.error == "resource_already_exists_exception"
    for bad in ("Upper", "_under", "a*b", "with space"):
        with pytest.raises(BadRequestError) as err:
            es_client.indices.create(index=bad)
        assert err.value.error == "invalid_index_name_exception"


def test_put_mapping_adds_fields_and_refuses_changes(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="docs", mappings={"properties": {
        "title": {"type": "text"},
        "vec": {"type": "dense_vector", "dims": 3, "similarity": "cosine"}}})
    es_client.indices.put_mapping(index="docs", properties={"tags": {"type": "keyword"}})
    props = es_client.indices.get_mapping(index="docs")["docs"]["mappings"]["properties"]
    assert props["tags"] == {"type": "keyword"}
    assert props["vec"]["dims"] == 3

    cases = [
        ({"title": {"type": "keyword"}}, "mapper [title] cannot be changed from type [text] to [keyword]"),
        ({"vec": {"type": "dense_vector", "dims": 4, "similarity": "cosine"}},
         "Cannot update parameter [dims] from [3] to [4]"),
        ({"vec": {"type": "dense_vector", "dims": 3, "similarity": "dot_product"}},
         "Cannot update parameter [similarity] from [cosine] to [dot_product]"),
        ({"vec": {"type": "dense_vector", "dims": 3, "similarity": "cosine", "element_type": "byte"}},
         "Cannot update parameter [element_type] from [float] to [byte]"),
    ]
    for properties, reason in cases:
        with pytest.raises(BadRequestError) as err:
            es_client.indices.put_mapping(index="docs", properties=properties)
        assert err.value.error == "illegal_argument_exception"
        assert reason in err.value.body["error"]["reason"]


def test_meta_is_replaced_wholesale(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="docs", mappings={"_meta": {"a": 1, "b": 2}})
    es_client.indices.put_mapping(index="docs", meta={"c": 3})
    assert es_client.indices.get_mapping(index="docs")["docs"]["mappings"]["_meta"] == {"c": 3}


@pytest.mark.parametrize("vec, fragment", [
    ({"type": "dense_vector", "dims": 0}, "range [1, 4096]"),
    ({"type": "dense_vector", "dims": 5000}, "range [1, 4096]"),
    ({"type": "dense_vector", "dims": 3, "similarity": "hamming"}, "Unknown value [hamming] for field [similarity]"),
    ({"type": "dense_vector", "dims": 3, "index_options": {"type": "flat", "m": 16}}, "unsupported parameters"),
    ({"type": "dense_vector", "dims": 3, "index_options": {"type": "lsh"}}, "Unknown vector index options type"),
    ({"type": "dense_vector", "dims": 3, "element_type": "byte", "index_options": {"type": "int8_hnsw"}},
     "[element_type] cannot be [byte]"),
])
def test_dense_vector_mapping_validation(es_client: Elasticsearch, vec: dict, fragment: str) -> None:
    with pytest.raises(BadRequestError) as err:
        es_client.indices.create(index="docs", mappings={"properties": {"vec": vec}})
    assert err.value.error == "mapper_parsing_exception"
    assert fragment in err.value.body["error"]["reason"]
    assert not es_client.indices.exists(index="docs")


def test_valid_index_options_accepted(es_client: Elasticsearch) -> None:
    for n, options in enumerate([{"type": "hnsw", "m": 32, "ef_construction": 200},
                                 {"type": "int8_hnsw", "confidence_interval": 0.95},
                                 {"type": "bbq_hnsw"}, {"type": "flat"}, {"type": "int4_flat"},
                                 {"type": "bbq_disk"}]):
        es_client.indices.create(index=f"v{n}", mappings={"properties": {
            "vec": {"type": "dense_vector", "dims": 64, "similarity": "dot_product", "index_options": options}}})
        got = es_client.indices.get_mapping(index=f"v{n}")[f"v{n}"]["mappings"]["properties"]["vec"]
        assert got["index_options"] == options


def test_dims_inferred_from_first_vector(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="docs", mappings={"properties": {"vec": {"type": "dense_vector"}}})
    es_client.index(index="docs", id="1", document={"vec": [0.1, 0.2, 0.3, 0.4]})
    vec = es_client.indices.get_mapping(index="docs")["docs"]["mappings"]["properties"]["vec"]
    assert vec["dims"] == 4
    with pytest.raises(BadRequestError):
        es_client.index(index="docs", id="2", document={"vec": [0.1, 0.2]})


def test_dynamic_mapping_like_elasticsearch(es_client: Elasticsearch) -> None:
    es_client.index(index="auto", id="1", document={
        "title": "hello", "count": 3, "score": 1.5, "ok": True, "when": "2024-05-01T10:00:00Z",
        "author": {"name": "ann"}})
    props = es_client.indices.get_mapping(index="auto")["auto"]["mappings"]["properties"]
    assert props["title"] == {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    assert props["count"] == {"type": "long"}
    assert props["score"] == {"type": "float"}
    assert props["ok"] == {"type": "boolean"}
    assert props["when"] == {"type": "date"}
    assert props["author"]["properties"]["name"]["type"] == "text"


def test_dynamic_strict_and_false(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="strict", mappings={"dynamic": "strict", "properties": {"a": {"type": "keyword"}}})
    with pytest.raises(BadRequestError) as err:
        es_client.index(index="strict", id="1", document={"a": "x", "b": "y"})
    assert err.value.error == "strict_dynamic_mapping_exception"
    es_client.indices.create(index="loose", mappings={"dynamic": False})
    es_client.index(index="loose", id="1", document={"b": "y"})
    assert "properties" not in es_client.indices.get_mapping(index="loose")["loose"]["mappings"]
    assert es_client.get(index="loose", id="1")["_source"] == {"b": "y"}


def test_alias_swap_is_atomic_and_filtered_aliases(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="blue")
    es_client.indices.create(index="green")
    es_client.indices.put_alias(index="blue", name="live")
    es_client.index(index="blue", id="b", document={"color": "blue"}, refresh=True)
    es_client.index(index="green", id="g", document={"color": "green"}, refresh=True)
    es_client.indices.update_aliases(actions=[{"remove": {"index": "blue", "alias": "live"}},
                                              {"add": {"index": "green", "alias": "live"}}])
    assert list(es_client.indices.get_alias(name="live").body) == ["green"]
    assert es_client.indices.exists_alias(name="live")
    # writes through a single-index alias go to that index
    es_client.index(index="live", id="g2", document={"color": "green"}, refresh=True)
    assert es_client.count(index="green")["count"] == 2
    # a failing action leaves the aliases untouched
    with pytest.raises(NotFoundError):
        es_client.indices.update_aliases(actions=[{"remove": {"index": "green", "alias": "live"}},
                                                  {"add": {"index": "missing", "alias": "live"}}])
    assert list(es_client.indices.get_alias(name="live").body) == ["green"]
    es_client.indices.delete_alias(index="green", name="live")
    assert not es_client.indices.exists_alias(name="live")


def test_alias_over_two_indices_needs_write_index(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="a1", aliases={"both": {}})
    es_client.indices.create(index="a2", aliases={"both": {}})
    with pytest.raises(BadRequestError) as err:
        es_client.index(index="both", id="1", document={"x": 1})
    assert "no write index is defined for alias [both]" in err.value.body["error"]["reason"]
    es_client.indices.update_aliases(actions=[{"add": {"index": "a2", "alias": "both", "is_write_index": True}}])
    assert es_client.index(index="both", id="1", document={"x": 1})["_index"] == "a2"


def test_stats_health_refresh_noops(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="docs", settings={"number_of_replicas": 0})
    es_client.index(index="docs", id="1", document={"x": 1}, refresh=True)
    assert es_client.indices.stats(index="docs")["indices"]["docs"]["primaries"]["docs"]["count"] == 1
    assert es_client.cluster.health(wait_for_status="yellow")["status"] in ("green", "yellow")
    assert es_client.indices.flush(index="docs")["_shards"]["failed"] == 0
    assert es_client.indices.forcemerge(index="docs")["_shards"]["failed"] == 0


def test_shard_level_stats_carry_each_primarys_sequence_numbers(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="docs", settings={"number_of_shards": 2, "number_of_replicas": 0})

    def seq_nos() -> dict[str, tuple[int, int]]:
        shards = es_client.indices.stats(index="docs", level="shards")["indices"]["docs"]["shards"]
        return {n: (c[0]["seq_no"]["max_seq_no"], c[0]["seq_no"]["local_checkpoint"]) for n, c in shards.items()
                if c[0]["routing"]["primary"]}

    assert seq_nos() == {"0": (-1, -1), "1": (-1, -1)}
    es_client.index(index="docs", id="1", document={"x": 1})  # not refreshed: counted all the same
    first = seq_nos()
    assert sorted(first.values()) == [(-1, -1), (0, 0)]
    es_client.delete(index="docs", id="1")
    assert seq_nos() != first and sorted(seq_nos().values()) == [(-1, -1), (1, 1)]


def test_unknown_route_is_es_shaped(es_server) -> None:
    client = Elasticsearch(es_server.url)
    with pytest.raises(Exception) as err:
        client.perform_request("GET", "/_no_such_api", headers={"accept": "application/json"})
    body = err.value.body
    assert body["status"] == 404 and "no handler found" in body["error"]["reason"]
    assert body["error"]["root_cause"][0]["type"] == "no_handler_found_exception"
    with pytest.raises(Exception) as err:
        client.perform_request("POST", "/docs/_no_such_api", headers={"accept": "application/json"})
    assert err.value.meta.status == 404


def test_8x_compatible_header_is_accepted_and_echoed(es_server) -> None:
    import urllib.request

    media = "application/vnd.elasticsearch+json; compatible-with=8"
    req = urllib.request.Request(f"{es_server.url}/compat8", method="PUT", data=b"{}",
                                 headers={"Content-Type": media, "Accept": media})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["X-Elastic-Product"] == "Elasticsearch"
        assert resp.headers["Content-Type"] == "application/vnd.elasticsearch+json;compatible-with=8"
    client = Elasticsearch(es_server.url, headers={"accept": media})
    assert client.options(headers={"content-type": media}).indices.exists(index="compat8")
    es_server.reset()


def test_gzip_request_bodies(es_server) -> None:
    client = Elasticsearch(es_server.url, http_compress=True)
    try:
        client.index(index="gz", id="1", document={"text": "compressed " * 50}, refresh=True)
        assert client.get(index="gz", id="1")["_source"]["text"].startswith("compressed")
    finally:
        es_server.reset()


def test_write_block_setting_forms_and_add_block_api(es_client: Elasticsearch) -> None:
    def blocked(name: str) -> str | None:
        return es_client.indices.get_settings(index=name, flat_settings=True)[name]["settings"].get(
            "index.blocks.write")

    # Created with the block (nested form), and set in the flat, short and nested forms.
    es_client.indices.create(index="a", settings={"index": {"blocks": {"write": True}}})
    assert blocked("a") == "true"
    assert es_client.indices.get_settings(index="a")["a"]["settings"]["index"]["blocks"] == {"write": "true"}
    es_client.indices.create(index="b")
    for form in ({"index.blocks.write": True}, {"blocks.write": "false"}, {"blocks": {"write": "true"}},
                 {"index": {"blocks": {"write": None}}}):
        es_client.indices.put_settings(index="b", settings=form)
    assert blocked("b") is None
    with pytest.raises(BadRequestError) as err:
        es_client.indices.put_settings(index="b", settings={"index.blocks.write": "yes"})
    assert err.value.error == "illegal_argument_exception" and "[yes]" in err.value.body["error"]["reason"]
    # The add-block API: Elasticsearch's response, and its empty one when every index already has it.
    resp = es_client.indices.add_block(index="b", block="write")
    assert resp.body == {"acknowledged": True, "shards_acknowledged": True,
                         "indices": [{"name": "b", "blocked": True}]}
    assert blocked("b") == "true"
    again = es_client.indices.add_block(index="a,b", block="write")
    assert again.body == {"acknowledged": True, "shards_acknowledged": False, "indices": []}
    with pytest.raises(NotFoundError):
        es_client.indices.add_block(index="missing", block="write")
    with pytest.raises(BadRequestError):
        es_client.indices.add_block(index="b", block="read")  # only the write block is modelled
