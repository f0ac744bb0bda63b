"""Test server: documents, optimistic concurrency, bulk per-item errors, vectors, refresh visibility."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from elasticsearch import (
    AuthorizationException,
    BadRequestError,
    ConflictError,
    Elasticsearch,
    NotFoundError,
)

from es_semantic.vector_codec import encode_vector


def _vector_index(es: Elasticsearch, name: str = "vecs", similarity: str = "cosine", dims: int = 3) -> None:
    es.indices.create(index=name, mappings={"properties": {
        "vec": {"type": "dense_vector", "dims": dims, "similarity": similarity}, "title": {"type": "text"}}})


def test_index_get_versions_and_seq_no(es_client: Elasticsearch) -> None:
    first = es_client.index(index="docs", id="1", document={"a": 1})
    assert (first["result"], first["_version"], first["_seq_no"], first["_primary_term"]) == ("created", 1, 0, 1)
    second = es_client.index(index="docs", id="1", document={"a": 2})
    assert (second["result"], second["_version"], second["_seq_no"]) == ("updated", 2, 1)
    auto = es_client.index(index="docs", document={"a": 3})
    assert auto["result"] == "created" and len(auto["_id"]) == 20 and auto["_seq_no"] == 2
    got = es_client.get(index="docs", id="1")
    assert got["_source"] == {"a": 2} and got["_version"] == 2 and got["_seq_no"] == 1
    missing = es_client.options(ignore_status=404).get(index="docs", id="nope")
    assert missing.body == {"_index": "docs", "_id": "nope", "found": False}
    assert es_client.exists(index="docs", id="1") and not es_client.exists(index="docs", id="nope")


def test_source_is_returned_exactly_as_sent_and_filtered(es_client: Elasticsearch) -> None:
    doc = {"b": 1.50, "a": {"x": [1, 2], "y": "z"}, "big": 72057594037927936}
    es_client.index(index="docs", id="1", document=doc)
    assert es_client.get(index="docs", id="1")["_source"] == doc
    assert es_client.get(index="docs", id="1", source_includes="a.x")["_source"] == {"a": {"x": [1, 2]}}
    assert es_client.get(index="docs", id="1", source_excludes="a")["_source"] == {"b": 1.5,
                                                                                     "big": 72057594037927936}
    assert "_source" not in es_client.get(index="docs", id="1", source=False)


def test_if_seq_no_conflict_has_elasticsearch_reason(es_client: Elasticsearch) -> None:
    es_client.index(index="docs", id="1", document={"a": 1})
    es_client.index(index="docs", id="1", document={"a": 2})
    with pytest.raises(ConflictError) as err:
        es_client.index(index="docs", id="1", document={"a": 3}, if_seq_no=0, if_primary_term=1)
    assert err.value.error == "version_conflict_engine_exception"
    assert err.value.body["error"]["reason"] == ("[1]: version conflict, required seqNo [0], primary term [1]. "
                                                 "current document has seqNo [1] and primary term [1]")
    ok = es_client.index(index="docs", id="1", document={"a": 3}, if_seq_no=1, if_primary_term=1)
    assert ok["_seq_no"] == 2
    with pytest.raises(ConflictError):
        es_client.create(index="docs", id="1", document={"a": 4})
    with pytest.raises(ConflictError):
        es_client.index(index="docs", id="1", document={"a": 4}, op_type="create")


def test_update_partial_upsert_noop_and_scripts(es_client: Elasticsearch) -> None:
    es_client.index(index="docs", id="1", document={"a": {"x": 1, "y": 2}, "b": 1})
    resp = es_client.update(index="docs", id="1", doc={"a": {"x": 10}})
    assert resp["result"] == "updated" and resp["_version"] == 2
    assert es_client.get(index="docs", id="1")["_source"] == {"a": {"x": 10, "y": 2}, "b": 1}
    assert es_client.update(index="docs", id="1", doc={"b": 1})["result"] == "noop"
    assert es_client.update(index="docs", id="1", doc={"b": 1}, detect_noop=False)["result"] == "updated"
    with pytest.raises(NotFoundError) as err:
        es_client.update(index="docs", id="2", doc={"b": 1})
    assert err.value.error == "document_missing_exception"
    assert es_client.update(index="docs", id="2", doc={"b": 2}, doc_as_upsert=True)["result"] == "created"
    assert es_client.update(index="docs", id="3", doc={"b": 3}, upsert={"b": 0})["result"] == "created"
    assert es_client.get(index="docs", id="3")["_source"] == {"b": 0}
    with pytest.raises(BadRequestError) as err:
        es_client.update(index="docs", id="1", script={"source": "ctx._source.b += 1"})
    assert "script" in err.value.body["error"]["reason"]


def test_delete_and_mget(es_client: Elasticsearch) -> None:
    es_client.index(index="docs", id="1", document={"a": 1})
    es_client.index(index="docs", id="2", document={"a": 2})
    resp = es_client.delete(index="docs", id="1")
    assert resp["result"] == "deleted" and resp["_version"] == 2
    assert es_client.options(ignore_status=404).delete(index="docs", id="1")["result"] == "not_found"
    docs = es_client.mget(index="docs", ids=["1", "2"])["docs"]
    assert [d["found"] for d in docs] == [False, True] and docs[1]["_source"] == {"a": 2}


def test_writes_invisible_until_refresh(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="nrt", settings={"refresh_interval": "-1"})
    es_client.index(index="nrt", id="1", document={"a": 1})
    assert es_client.count(index="nrt")["count"] == 0
    assert es_client.get(index="nrt", id="1")["found"]  # GET is real-time
    es_client.indices.refresh(index="nrt")
    assert es_client.count(index="nrt")["count"] == 1
    es_client.index(index="nrt", id="2", document={"a": 2}, refresh="wait_for")
    assert es_client.count(index="nrt")["count"] == 2
    es_client.index(index="nrt", id="3", document={"a": 3}, refresh=True)
    assert es_client.search(index="nrt")["hits"]["total"]["value"] == 3


def test_periodic_refresh_interval(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="periodic", settings={"refresh_interval": "200ms"})
    es_client.index(index="periodic", id="1", document={"a": 1})
    deadline = time.monotonic() + 5
    while es_client.count(index="periodic")["count"] == 0:
        assert time.monotonic() < deadline, "periodic refresh never happened"
        time.sleep(0.05)
    es_client.indices.put_settings(index="periodic", settings={"refresh_interval": "-1"})
    es_client.index(index="periodic", id="2", document={"a": 2})
    time.sleep(0.5)
    assert es_client.count(index="periodic")["count"] == 1


def test_bulk_results_and_per_item_errors(es_client: Elasticsearch) -> None:
    es_client.index(index="docs", id="seen", document={"a": 0})
    resp = es_client.bulk(index="docs", refresh=True, operations=[
        {"index": {"_id": "1"}}, {"a": 1},
        {"create": {"_id": "seen"}}, {"a": 2},
        {"update": {"_id": "ghost"}}, {"doc": {"a": 3}},
        {"index": {"_id": "seen", "if_seq_no": 99, "if_primary_term": 1}}, {"a": 4},
        {"delete": {"_id": "1"}},
        {"update": {"_id": "seen", "_source": True}}, {"doc": {"b": 5}},
    ])
    assert resp["errors"] is True and isinstance(resp["took"], int)
    items = resp["items"]
    assert items[0]["index"]["status"] == 201 and items[0]["index"]["result"] == "created"
    assert items[1]["create"]["status"] == 409
    assert items[1]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert items[2]["update"]["status"] == 404
    assert items[2]["update"]["error"]["type"] == "document_missing_exception"
    assert items[3]["index"]["status"] == 409
    assert items[4]["delete"]["result"] == "deleted"
    assert items[5]["update"]["get"]["_source"] == {"a": 0, "b": 5}
    seq = [it[next(iter(it))].get("_seq_no") for it in items if "error" not in it[next(iter(it))]]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)


def test_bulk_malformed_is_a_400(es_client: Elasticsearch) -> None:
    with pytest.raises(BadRequestError):
        es_client.bulk(operations='{"index": {"_index": "x"}}\n{not json\n{"oops"\n')
    with pytest.raises(BadRequestError) as err:
        es_client.bulk(operations='{"index": {"_index": "x", "_id": "1"}}\n{"a": 1}\n{}\n')
    assert "Malformed action/metadata line [3]" in err.value.body["error"]["reason"]
    assert not es_client.indices.exists(index="x")  # nothing applied


def test_bulk_require_alias(es_client: Elasticsearch) -> None:
    resp = es_client.bulk(operations=[{"index": {"_index": "nope", "require_alias": True}}, {"a": 1}])
    assert resp["items"][0]["index"]["status"] == 404
    assert "[require_alias] request flag is [true]" in resp["items"][0]["index"]["error"]["reason"]


BAD_VECTORS = [
    ("wrong dims", [1.0, 2.0], "different number of dimensions [2] than defined in the mapping [3]"),
    ("not numbers", [1.0, "x", 2.0], "non-numeric"),
    ("nested", [[1.0], [2.0], [3.0]], "non-numeric"),
    ("zero under cosine", [0.0, 0.0, 0.0], "zero magnitude"),
    ("base64 wrong dims", encode_vector([1.0, 2.0]), "different number of dimensions [2]"),
    ("base64 garbage", "not*base64!", "base64"),
    ("base64 bad length", "AAAAAAA=", "base64"),
    ("base64 zero", encode_vector([0.0, 0.0, 0.0]), "zero magnitude"),
    ("scalar", 3.0, "must be an array"),
]


def test_bulk_rejects_every_bad_vector_case(es_client: Elasticsearch) -> None:
    _vector_index(es_client)
    ops: list[object] = []
    for n, (_, value, _) in enumerate(BAD_VECTORS):
        ops += [{"index": {"_id": str(n)}}, {"vec": value}]
    ops += [{"index": {"_id": "good"}}, {"vec": [0.1, 0.2, 0.3]},
            {"index": {"_id": "good64"}}, {"vec": encode_vector([0.3, 0.2, 0.1])}]
    items = es_client.bulk(index="vecs", operations=ops, refresh=True)["items"]
    for (name, _, fragment), item in zip(BAD_VECTORS, items):
        result = item["index"]
        assert result["status"] == 400, name
        assert result["error"]["type"] == "document_parsing_exception", name
        assert fragment in result["error"]["reason"], (name, result["error"]["reason"])
        assert "[vec]" in result["error"]["reason"] or "vector" in result["error"]["reason"], name
    assert [i["index"]["status"] for i in items[-2:]] == [201, 201]
    assert es_client.count(index="vecs")["count"] == 2
    # base64 _source is kept as sent (vectors are left out of _source unless asked for, as in 9.2+)
    got = es_client.get(index="vecs", id="good64", source_exclude_vectors=False)
    assert got["_source"]["vec"] == encode_vector([0.3, 0.2, 0.1])
    assert "vec" not in es_client.get(index="vecs", id="good64")["_source"]


def test_nan_infinity_and_non_unit_dot_product_rejected(es_client: Elasticsearch) -> None:
    _vector_index(es_client, "dot", similarity="dot_product")
    raw = "\n".join([
        json.dumps({"index": {"_index": "dot", "_id": "nan"}}), '{"vec": [NaN, 0.0, 1.0]}',
        json.dumps({"index": {"_index": "dot", "_id": "inf"}}), '{"vec": [Infinity, 0.0, 1.0]}',
        json.dumps({"index": {"_index": "dot", "_id": "long"}}), '{"vec": [3.0, 4.0, 0.0]}',
        json.dumps({"index": {"_index": "dot", "_id": "unit"}}), '{"vec": [0.6, 0.8, 0.0]}',
        json.dumps({"index": {"_index": "dot", "_id": "nan64"}}),
        json.dumps({"vec": encode_vector(np.array([np.nan, 0, 1], dtype=np.float32))}),
    ]) + "\n"
    items = es_client.bulk(operations=raw)["items"]
    statuses = {i["index"]["_id"]: i["index"]["status"] for i in items}
    assert statuses == {"nan": 400, "inf": 400, "long": 400, "unit": 201, "nan64": 400}
    assert "unit-length" in items[2]["index"]["error"]["reason"]


def test_byte_vectors_range_checked(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="bytes", mappings={"properties": {
        "vec": {"type": "dense_vector", "dims": 3, "element_type": "byte", "similarity": "l2_norm"}}})
    es_client.index(index="bytes", id="ok", document={"vec": [-128, 0, 127]})
    for bad in ([1, 2, 300], [0.5, 1, 2]):
        with pytest.raises(BadRequestError):
            es_client.index(index="bytes", id="bad", document={"vec": bad})


def test_typed_fields_validated(es_client: Elasticsearch) -> None:
    es_client.indices.create(index="typed", mappings={"properties": {"n": {"type": "integer"},
                                                                      "flag": {"type": "boolean"}}})
    es_client.index(index="typed", id="1", document={"n": "42", "flag": "true"})
    with pytest.raises(BadRequestError) as err:
        es_client.index(index="typed", id="2", document={"n": "forty-two"})
    assert err.value.error == "document_parsing_exception"
    with pytest.raises(BadRequestError):
        es_client.index(index="typed", id="3", document={"n": 2**40})


BLOCKED = "index [docs] blocked by: [FORBIDDEN/8/index write (api)];"


def _blocked(call) -> dict:
    """The error body of a single-document write refused by the write block."""
    with pytest.raises(AuthorizationException) as err:
        call()
    assert err.value.meta.status == 403
    return err.value.body["error"]


def test_write_block_refuses_every_write_and_keeps_reads(es_client: Elasticsearch) -> None:
    es_client.index(index="docs", id="1", document={"a": 1}, refresh=True)
    es_client.indices.put_alias(index="docs", name="docs-alias")
    es_client.indices.put_settings(index="docs", settings={"index.blocks.write": True})
    writes = [
        lambda: es_client.index(index="docs", id="2", document={"a": 2}),
        lambda: es_client.index(index="docs", document={"a": 2}),  # auto id
        lambda: es_client.create(index="docs", id="1", document={"a": 2}),  # the block before the conflict
        lambda: es_client.update(index="docs", id="1", doc={"a": 3}),
        lambda: es_client.update(index="docs", id="ghost", doc={"a": 3}),  # the block before the 404
        lambda: es_client.delete(index="docs", id="1"),
        lambda: es_client.delete(index="docs", id="ghost"),
        lambda: es_client.index(index="docs-alias", id="3", document={"a": 3}),  # through an alias
        lambda: es_client.update(index="docs-alias", id="1", doc={"a": 4}),
        lambda: es_client.delete(index="docs-alias", id="1"),
    ]
    for write in writes:
        error = _blocked(write)
        assert (error["type"], error["reason"]) == ("cluster_block_exception", BLOCKED)
        assert error["root_cause"][0]["reason"] == BLOCKED
    # Nothing changed; reads, searches, counts, refresh and metadata changes still work.
    assert es_client.get(index="docs", id="1")["_source"] == {"a": 1}
    assert es_client.indices.refresh(index="docs")["_shards"]["failed"] == 0
    assert es_client.search(index="docs-alias")["hits"]["total"]["value"] == 1
    assert es_client.count(index="docs")["count"] == 1
    es_client.indices.put_mapping(index="docs", properties={"tag": {"type": "keyword"}})
    # Lifting the block (false, or null back to the default) lets writes through again.
    es_client.indices.put_settings(index="docs", settings={"index.blocks.write": False})
    es_client.index(index="docs", id="2", document={"a": 2})
    es_client.indices.put_settings(index="docs", settings={"index.blocks.write": True})
    _blocked(lambda: es_client.delete(index="docs", id="2"))
    es_client.indices.put_settings(index="docs", settings={"index.blocks.write": None})
    es_client.delete(index="docs", id="2")
    assert "index.blocks.write" not in es_client.indices.get_settings(index="docs", flat_settings=True)[
        "docs"]["settings"]


def test_bulk_items_on_a_write_blocked_index_fail_alone(es_client: Elasticsearch) -> None:
    es_client.index(index="docs", id="1", document={"a": 1}, refresh=True)
    es_client.index(index="other", id="1", document={"a": 1})
    es_client.indices.put_alias(index="docs", name="docs-alias")
    es_client.indices.add_block(index="docs", block="write")
    resp = es_client.bulk(refresh=True, operations=[
        {"index": {"_index": "docs", "_id": "2"}}, {"a": 2},
        {"index": {"_index": "other", "_id": "2"}}, {"a": 2},
        {"update": {"_index": "docs-alias", "_id": "1"}}, {"doc": {"a": 9}},
        {"delete": {"_index": "docs", "_id": "1"}},
        {"create": {"_index": "docs", "_id": "3"}}, {"a": 3},
        {"delete": {"_index": "other", "_id": "1"}},
    ])
    assert resp["errors"] is True
    items = [next(iter(item.values())) for item in resp["items"]]
    for item in (items[0], items[2], items[3], items[4]):
        assert item["status"] == 403 and item["_index"] == "docs"  # the concrete index, also via the alias
        assert item["error"] == {"type": "cluster_block_exception", "reason": BLOCKED}
    assert items[1]["status"] == 201 and items[5]["result"] == "deleted"
    assert es_client.get(index="docs", id="1")["_source"] == {"a": 1}
    assert es_client.count(index="docs")["count"] == 1
    assert es_client.get(index="other", id="2")["_source"] == {"a": 2}
