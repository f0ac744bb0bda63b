"""Test server: custom routing (`_routing`), required routing, and multi-shard document lookups.

Every shard number below comes from Elasticsearch itself, not from this server's code: the hash
values from ``Murmur3HashFunctionTests``, the shard placements from ``IndexRoutingTests``
(``testBWC``, ``testPartitionedIndexBWC``, ``testPartitionedIndexShrunk`` before the 9.4 routing
change, ``testSimpleRoutingPreAndPostModRoutingChange``) and from the REST tests
``get/40_routing.yml``, ``mget/40_routing.yml`` and ``update/40_routing.yml``.
"""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError, helpers

from es_semantic.testing.routing import (
    IndexRouting,
    default_routing_num_shards,
    routing_hash,
)

# IndexRoutingTests.testBWC: term -> shard of an 8-shard index with 8 routing shards
# (the shard of a document with that _id and no routing, or of any _id with that routing).
BWC_8 = {"sEERfFzPSI": 1, "cNRiIrjzYd": 7, "BgfLBXUyWT": 5, "cnepjZhQnb": 3, "OKCmuYkeCK": 6, "hswhrppvDH": 0,
         "FYQRIBcNqz": 0, "xkWaPcCmpT": 0, "yCdyocKWou": 1, "KXuNWWNgVj": 2, "qoZALVcite": 7}


def _ids(hits: list[dict]) -> list[str]:
    return sorted(h["_id"] for h in hits)


# --- the shard function itself ----------------------------------------------------------------


def test_murmur3_matches_elasticsearch_known_values() -> None:
    known = {"hell": 0x5A0CB7C3, "hello": 0xD7C31989, "hello w": 0x22AB2984, "hello wo": 0xDF0CA123,
             "hello wor": 0xE7744D61, "The quick brown fox jumps over the lazy dog": 0xE07DB09C,
             "The quick brown fox jumps over the lazy cog": 0x4E63D2AD}
    for text, expected in known.items():
        assert routing_hash(text) & 0xFFFFFFFF == expected, text
    assert routing_hash("hell") == 0x5A0CB7C3 and routing_hash("hello") == 0xD7C31989 - (1 << 32)  # signed int


def test_shard_function_matches_elasticsearch_routing_tests() -> None:
    eight = IndexRouting("test", 8, 8)
    for term, shard in BWC_8.items():
        assert eight.shard(term, None) == shard  # by _id
        assert eight.shard("anything", term) == shard  # by routing
        assert eight.search_shards([term]) == {shard}
    # legacy routing (indices created before 9.4): 2 shards, 1024 routing shards, _id "1" -> shard 0
    assert IndexRouting("test", 2, 1024).shard("1", None) == 0
    partitioned = IndexRouting("test", 6, 6, partition_size=2)
    for routing, placed in {"a": {"a_0": 3, "a_1": 2, "a_2": 2, "a_3": 3}, "b": {"b_0": 5, "b_1": 0, "b_3": 0},
                            "c": {"c_0": 4, "c_2": 3}, "d": {"d_0": 3, "d_1": 4}}.items():
        for doc_id, shard in placed.items():
            assert partitioned.shard(doc_id, routing) == shard
    shrunk = IndexRouting("test", 4, 8, partition_size=3)  # the pre-9.4 expectations of the test
    for routing, placed in {"a": {"a_0": 1, "a_1": 2, "a_4": 1}, "b": {"b_0": 0, "b_4": 3},
                            "c": {"c_0": 1, "c_2": 0}, "d": {"d_0": 2, "d_2": 3}}.items():
        for doc_id, shard in placed.items():
            assert shrunk.shard(doc_id, routing) == shard
    # testPartitionedIndex: a routing value reaches partition_size shards, those its _ids land on
    assert partitioned.search_shards(["a"]) == {2, 3}


def test_default_number_of_routing_shards() -> None:
    # calculateNumRoutingShards: numShards * 2^max(1, 10 - ceil(log2(numShards)))
    assert [default_routing_num_shards(n) for n in (1, 2, 3, 5, 8, 128, 1000)] == [1024, 1024, 768, 640, 1024,
                                                                                     1024, 2000]


# --- routing stored and returned -----------------------------------------------------------


def test_routing_is_stored_and_returned_everywhere(es_client: Elasticsearch) -> None:
    es = es_client
    written = es.index(index="r", id="1", routing="u1", document={"t": "one"})
    assert "_routing" not in written  # write responses never carry it
    es.create(index="r", id="2", routing="u2", document={"t": "two"})
    es.update(index="r", id="3", routing="u3", doc={"t": "three"}, upsert={"t": "three"})
    es.index(index="r", id="4", document={"t": "four"})  # routed by _id: no _routing anywhere
    helpers.bulk(es, [{"_index": "r", "_id": "5", "_routing": "u5", "_source": {"t": "five"}},
                      {"_op_type": "create", "_index": "r", "_id": "6", "_routing": "u6", "_source": {"t": "six"}}],
                 refresh=True)
    got = es.get(index="r", id="1", routing="u1").body
    assert list(got) == ["_index", "_id", "_version", "_seq_no", "_primary_term", "_routing", "found", "_source"]
    assert got["_routing"] == "u1"
    assert "_routing" not in es.get(index="r", id="4")
    assert es.get(index="r", id="5", routing="u5", source=False)["_routing"] == "u5"
    assert es.get_source(index="r", id="6", routing="u6").body == {"t": "six"}
    docs = es.mget(index="r", docs=[{"_id": "2", "routing": "u2"}, {"_id": "3", "routing": "u3"},
                                    {"_id": "4"}, {"_id": "nope", "routing": "x"}])["docs"]
    assert [d.get("_routing") for d in docs] == ["u2", "u3", None, None]
    assert docs[3] == {"_index": "r", "_id": "nope", "found": False}
    expected = {"1": "u1", "2": "u2", "3": "u3", "4": None, "5": "u5", "6": "u6"}
    for extra in ({}, {"source": False}, {"fields": ["t"]}, {"seq_no_primary_term": True}):
        hits = es.search(index="r", size=10, **extra)["hits"]["hits"]
        assert {h["_id"]: h.get("_routing") for h in hits} == expected, extra
    hit = es.search(index="r", query={"ids": {"values": ["1"]}}, seq_no_primary_term=True)["hits"]["hits"][0]
    assert list(hit) == ["_index", "_id", "_seq_no", "_primary_term", "_score", "_routing", "_source"]
    assert "_routing" not in es.search(index="r", stored_fields="_none_")["hits"]["hits"][0]
    pit = es.open_point_in_time(index="r", keep_alive="1m")["id"]
    try:
        hits = es.search(pit={"id": pit}, size=10, sort=[{"_shard_doc": "asc"}])["hits"]["hits"]
        assert {h["_id"]: h.get("_routing") for h in hits} == expected
    finally:
        es.close_point_in_time(id=pit)
    scrolled = {d["_id"]: d.get("_routing") for d in helpers.scan(es, index="r", size=2)}
    assert scrolled == expected
    top = es.search(index="r", size=0, aggs={"top": {"top_hits": {"size": 1, "sort": [{"t.keyword": "asc"}]}}})
    assert top["aggregations"]["top"]["hits"]["hits"][0]["_routing"] == "u5"  # "five" sorts first


def test_bulk_refuses_the_old_underscore_routing(es_client: Elasticsearch) -> None:
    # BulkRequestParser knows `routing` only; `_routing` (removed in 7.0) fails the whole request
    with pytest.raises(BadRequestError) as err:
        es_client.bulk(operations=[{"index": {"_index": "r", "_id": "1"}}, {"n": 1},
                                   {"index": {"_index": "r", "_id": "2", "_routing": "a"}}, {"n": 2}])
    assert err.value.body["error"]["type"] == "illegal_argument_exception"
    assert err.value.body["error"]["reason"] == "Action/metadata line [3] contains an unknown parameter [_routing]"
    assert not es_client.indices.exists(index="r")  # nothing was applied


def test_routing_field_is_queryable(es_client: Elasticsearch) -> None:
    es = es_client
    helpers.bulk(es, [{"_index": "r", "_id": str(i), "_routing": f"user{i % 2}", "_source": {"n": i}}
                      for i in range(4)] + [{"_index": "r", "_id": "plain", "_source": {"n": 9}}], refresh=True)
    term = es.search(index="r", query={"term": {"_routing": "user1"}})["hits"]["hits"]
    assert _ids(term) == ["1", "3"]
    terms = es.search(index="r", query={"terms": {"_routing": ["user0", "nobody"]}})["hits"]["hits"]
    assert _ids(terms) == ["0", "2"]
    assert _ids(es.search(index="r", query={"prefix": {"_routing": "user"}})["hits"]["hits"]) == ["0", "1", "2", "3"]
    assert _ids(es.search(index="r", query={"wildcard": {"_routing": "*0"}})["hits"]["hits"]) == ["0", "2"]
    assert _ids(es.search(index="r", query={"match": {"_routing": "user1"}})["hits"]["hits"]) == ["1", "3"]


def test_updates_keep_the_stored_routing(es_client: Elasticsearch) -> None:
    es = es_client
    es.index(index="r", id="1", routing="a", document={"n": 1})
    es.update(index="r", id="1", routing="a", doc={"n": 2})
    assert es.get(index="r", id="1", routing="a")["_routing"] == "a"
    # One shard: any routing reaches the document, and an update keeps the routing it was stored
    # with (UpdateHelper.calculateRouting), whatever the request's routing was.
    es.update(index="r", id="1", routing="other", doc={"n": 3})
    got = es.get(index="r", id="1", routing="zzz")
    assert (got["_routing"], got["_source"]) == ("a", {"n": 3})
    es.bulk(operations=[{"update": {"_index": "r", "_id": "1", "routing": "a"}}, {"doc": {"n": 4}}], refresh=True)
    assert es.get(index="r", id="1")["_routing"] == "a"
    es.update_by_query(index="r", refresh=True)
    assert es.get(index="r", id="1")["_routing"] == "a"
    # re-indexing the document replaces it: the new write's routing (here none) is what is stored
    es.index(index="r", id="1", document={"n": 5}, refresh=True)
    assert "_routing" not in es.get(index="r", id="1")
    assert "_routing" not in es.search(index="r")["hits"]["hits"][0]


def test_single_shard_routing_never_changes_what_is_found(es_client: Elasticsearch) -> None:
    es = es_client
    es.index(index="r", id="1", routing="a", document={"n": 1}, refresh=True)
    assert es.get(index="r", id="1", routing="b")["found"] and es.get(index="r", id="1")["found"]
    assert es.exists(index="r", id="1", routing="b")
    assert es.search(index="r", routing="b")["hits"]["total"]["value"] == 1
    assert es.count(index="r", routing="whatever")["count"] == 1
    deleted = es.delete(index="r", id="1", routing="a")
    assert deleted["result"] == "deleted"
    assert not es.options(ignore_status=404).get(index="r", id="1", routing="a")["found"]


# --- required routing ----------------------------------------------------------------------


def _routing_missing(exc: BadRequestError, index: str, doc_id: str) -> None:
    assert exc.status_code == 400
    assert exc.body["error"]["type"] == "routing_missing_exception"
    assert exc.body["error"]["reason"] == f"routing is required for [{index}]/[{doc_id}]"
    assert exc.body["error"]["index"] == index and exc.body["error"]["index_uuid"] == "_na_"


def test_required_routing_is_enforced(es_client: Elasticsearch) -> None:
    es = es_client
    es.indices.create(index="req", mappings={"_routing": {"required": True}}, aliases={"req-alias": {}})
    assert es.indices.get_mapping(index="req")["req"]["mappings"]["_routing"] == {"required": True}
    calls = [
        lambda: es.index(index="req", id="1", document={"n": 1}),
        lambda: es.create(index="req", id="1", document={"n": 1}),
        lambda: es.update(index="req", id="1", doc={"n": 1}, doc_as_upsert=True),
        lambda: es.delete(index="req", id="1"),
        lambda: es.get(index="req", id="1"),
        lambda: es.get_source(index="req", id="1"),
        lambda: es.index(index="req-alias", id="1", document={"n": 1}),  # the error names the index
    ]
    for call in calls:
        with pytest.raises(BadRequestError) as err:
            call()
        _routing_missing(err.value, "req", "1")
    with pytest.raises(BadRequestError) as err:
        es.index(index="req", document={"n": 1})  # an auto-generated id is named
    assert err.value.body["error"]["reason"].startswith("routing is required for [req]/[")
    es.index(index="req", id="1", routing="r", document={"n": 1})
    assert es.get(index="req", id="1", routing="r")["_routing"] == "r"
    docs = es.mget(docs=[{"_index": "req", "_id": "1"}, {"_index": "req-alias", "_id": "1"},
                         {"_index": "req", "_id": "1", "routing": "r"}])["docs"]
    for item in docs[:2]:  # mget-40_routing.yml "requires routing"
        assert item["_index"] == "req" and "found" not in item
        assert item["error"]["type"] == "routing_missing_exception"
        assert item["error"]["reason"] == "routing is required for [req]/[1]"
    assert docs[2]["found"] and docs[2]["_routing"] == "r"
    bulk = es.bulk(operations=[{"index": {"_index": "req", "_id": "2"}}, {"n": 2},
                               {"update": {"_index": "req", "_id": "1"}}, {"doc": {"n": 3}},
                               {"delete": {"_index": "req", "_id": "1"}},
                               {"index": {"_index": "req", "_id": "3", "routing": "r"}}, {"n": 3}])
    assert bulk["errors"] is True
    items = [next(iter(i.values())) for i in bulk["items"]]
    assert [i["status"] for i in items] == [400, 400, 400, 201]
    assert [i["error"]["type"] for i in items[:3]] == ["routing_missing_exception"] * 3
    assert [i["error"]["reason"] for i in items[:3]] == [f"routing is required for [req]/[{n}]" for n in "211"]
    assert es.delete(index="req", id="1", routing="r")["result"] == "deleted"


def test_alias_index_routing_applies_to_writes_and_gets(es_client: Elasticsearch) -> None:
    es = es_client
    es.indices.create(index="r", aliases={"routed": {"routing": "a"}})
    es.index(index="routed", id="1", document={"n": 1})
    assert es.get(index="r", id="1")["_routing"] == "a"
    assert es.get(index="routed", id="1")["_routing"] == "a"
    with pytest.raises(BadRequestError) as err:
        es.index(index="routed", id="2", routing="b", document={"n": 2})
    assert err.value.body["error"]["reason"] == ("Alias [routed] has index routing associated with it [a], and was "
                                                 "provided with routing value [b], rejecting operation")


# --- several shards -----------------------------------------------------------------------


def test_multi_shard_lookups_need_the_right_routing(es_client: Elasticsearch) -> None:
    es = es_client
    es.indices.create(index="s", settings={"number_of_shards": 5, "number_of_routing_shards": 5})
    es.index(index="s", id="1", routing="5", document={"foo": "bar"}, refresh=True)
    got = es.get(index="s", id="1", routing="5")
    assert (got["_id"], got["_routing"]) == ("1", "5")
    assert not es.options(ignore_status=404).get(index="s", id="1")["found"]  # get/40_routing.yml
    assert not es.exists(index="s", id="1", routing="4")
    docs = es.mget(index="s", docs=[{"_id": "1"}, {"_id": "1", "routing": "4"}, {"_id": "1", "routing": "5"}])
    assert [d["found"] for d in docs["docs"]] == [False, False, True]  # mget/40_routing.yml
    with pytest.raises(NotFoundError) as err:  # update/40_routing.yml: no routing, no document
        es.update(index="s", id="1", doc={"foo": "baz"})
    assert err.value.body["error"]["type"] == "document_missing_exception"
    assert es.update(index="s", id="1", routing="5", doc={"foo": "baz"}, source="foo")["get"]["_source"] == {
        "foo": "baz"}
    wrong = es.options(ignore_status=404).delete(index="s", id="1", routing="4")
    assert wrong["result"] == "not_found"
    # the same _id without routing lands on another shard: a second document, not an update
    again = es.index(index="s", id="1", document={"foo": "other"}, refresh=True)
    assert (again["result"], again["_version"]) == ("created", 1)
    hits = es.search(index="s", query={"ids": {"values": ["1"]}})["hits"]["hits"]
    assert sorted((h["_id"], h.get("_routing", "")) for h in hits) == [("1", ""), ("1", "5")]
    assert es.get(index="s", id="1", routing="5")["_source"] == {"foo": "baz"}


def test_search_routing_reaches_only_its_shards(es_client: Elasticsearch) -> None:
    es = es_client
    es.indices.create(index="e", settings={"number_of_shards": 8, "number_of_routing_shards": 8},
                      aliases={"zero": {"search_routing": "xkWaPcCmpT"}})
    ids = ["hswhrppvDH", "FYQRIBcNqz", "sEERfFzPSI", "cNRiIrjzYd", "qoZALVcite", "KXuNWWNgVj"]
    helpers.bulk(es, [{"_index": "e", "_id": i, "_source": {"n": 1}} for i in ids], refresh=True)
    everything = es.search(index="e", size=10)
    assert everything["hits"]["total"]["value"] == 6 and everything["_shards"]["total"] == 8
    shard0 = es.search(index="e", routing="xkWaPcCmpT", size=10)  # routing value on shard 0
    assert _ids(shard0["hits"]["hits"]) == ["FYQRIBcNqz", "hswhrppvDH"] and shard0["_shards"]["total"] == 1
    two = es.search(index="e", routing="xkWaPcCmpT,yCdyocKWou", size=10)  # shards 0 and 1
    assert _ids(two["hits"]["hits"]) == ["FYQRIBcNqz", "hswhrppvDH", "sEERfFzPSI"]
    assert two["_shards"]["total"] == 2
    assert es.count(index="e", routing="qoZALVcite")["count"] == 2  # shard 7: cNRiIrjzYd, qoZALVcite
    assert _ids(es.search(index="zero", size=10)["hits"]["hits"]) == ["FYQRIBcNqz", "hswhrppvDH"]
    # an alias's search routing is intersected with the request's; when nothing is left in common
    # Elasticsearch drops the index's routing altogether (resolveSearchRouting) and searches every shard
    assert es.search(index="zero", routing="xkWaPcCmpT")["hits"]["total"]["value"] == 2
    assert es.search(index="zero", routing="yCdyocKWou")["hits"]["total"]["value"] == 6
    deleted = es.delete_by_query(index="e", routing="KXuNWWNgVj", query={"match_all": {}}, refresh=True)
    assert deleted["deleted"] == 1 and es.count(index="e")["count"] == 5


def test_sequence_numbers_are_per_shard(es_client: Elasticsearch) -> None:
    es = es_client
    es.indices.create(index="e", settings={"number_of_shards": 8, "number_of_routing_shards": 8})
    first = es.index(index="e", id="hswhrppvDH", document={})  # shard 0
    other = es.index(index="e", id="sEERfFzPSI", document={})  # shard 1
    second = es.index(index="e", id="FYQRIBcNqz", document={})  # shard 0
    assert (first["_seq_no"], other["_seq_no"], second["_seq_no"]) == (0, 0, 1)


def test_routing_shard_settings_are_validated(es_client: Elasticsearch) -> None:
    es = es_client
    with pytest.raises(BadRequestError) as err:
        es.indices.create(index="bad", settings={"number_of_shards": 8, "number_of_routing_shards": 4})
    assert err.value.body["error"]["reason"] == "index.number_of_routing_shards [4] must be >= index.number_of_shards [8]"
    with pytest.raises(BadRequestError) as err:
        es.indices.create(index="bad", settings={"number_of_shards": 2, "number_of_routing_shards": 3})
    assert err.value.body["error"]["reason"] == "the number of source shards [2] must be a factor of [3]"
