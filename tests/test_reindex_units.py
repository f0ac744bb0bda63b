"""Pure parts of the reindex job, with hand-computed expectations."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from es_semantic.config import SemanticConfig
from es_semantic.errors import ConfigError
from es_semantic.reindexing.bluegreen import (
    JOB_META_KEY,
    candidate_names,
    copyable_settings,
    migrate_advice,
    new_mappings,
    original_bulk_settings,
    version_of,
    writes_blocked,
)
from es_semantic.reindexing.fingerprint import Fingerprinter, fingerprint
from es_semantic.reindexing.job import effective_config, lock_key
from es_semantic.reindexing.options import ReindexOptions, parse_query
from es_semantic.reindexing.reader import HAS_VECTOR, _to_doc, build_query
from es_semantic.reindexing.report import ReindexReport
from es_semantic.reindexing.retry import RetryPolicy, is_retryable
from es_semantic.reindexing.writer import (
    WriteOp,
    chunk_ops,
    index_op,
    update_op,
    vector_value,
)

CFG = SemanticConfig(model="org/model-a", dims=4, text_fields=("question", "answer"))


def test_fingerprint_is_sha256_of_settings_then_text():
    prefix = json.dumps({"v": 1, "embedder": "qwen3-4-abc", "text": {"text_fields": ["question", "answer"],
                                                                      "text_template": None}},
                        sort_keys=True, ensure_ascii=False).encode() + b"\x00"
    want = hashlib.sha256(prefix + "Q\nA 答".encode()).hexdigest()[:32]
    assert fingerprint("qwen3-4-abc", CFG, "Q\nA 答") == want
    fp = Fingerprinter("qwen3-4-abc", CFG)
    assert fp("Q\nA 答") == want and fp("Q\nA 答") == want  # the prefix state is reused, not consumed


def test_fingerprint_changes_with_text_settings_and_template():
    base = fingerprint("s1", CFG, "text")
    assert fingerprint("s1", CFG, "text ") != base
    assert fingerprint("s2", CFG, "text") != base
    templated = SemanticConfig(model="org/model-a", dims=4, text_template="{question}\n{answer}")
    assert fingerprint("s1", templated, "text") != base
    other_fields = SemanticConfig(model="org/model-a", dims=4, text_fields=("question",))
    assert fingerprint("s1", other_fields, "text") != base


def test_chunk_ops_by_count_and_bytes():
    ops = [index_op(str(i), "ix", {"t": "x" * 50}) for i in range(7)]
    size = ops[0].size
    assert size == len(b'{"index":{"_index":"ix","_id":"0"}}') + len(b'{"t":"' + b"x" * 50 + b'"}') + 2
    assert [len(c) for c in chunk_ops(ops, max_docs=3, max_bytes=10**6)] == [3, 3, 1]
    assert [len(c) for c in chunk_ops(ops, max_docs=100, max_bytes=2 * size + 1)] == [2, 2, 2, 1]
    # one operation bigger than the byte limit still goes, alone
    assert [len(c) for c in chunk_ops(ops[:2], max_docs=100, max_bytes=5)] == [1, 1]
    assert list(chunk_ops([], 3, 100)) == []


def test_update_op_carries_occ_and_partial_doc():
    op = update_op("7", "faq-v1", {"embedding": [0.5], "embedding_info": {"model": "m"}}, 12, 3)
    action, source = op.lines
    assert json.loads(action) == {"update": {"_index": "faq-v1", "_id": "7", "if_seq_no": 12, "if_primary_term": 3}}
    assert json.loads(source) == {"doc": {"embedding": [0.5], "embedding_info": {"model": "m"}}}
    assert "if_seq_no" not in json.loads(WriteOp("7", "x", "update", {"doc": {}}).lines[0])["update"]


def test_vector_value_base64_and_exact_floats():
    v = np.array([1.0, -2.5, 0.1, 3.0e-8], dtype=np.float32)
    # big-endian float32 of 1.0 is 3f800000 -> base64 "P4AAAA" for the first 4 bytes
    assert vector_value(v, True).startswith("P4AAAM")
    as_list = vector_value(v, False)
    assert np.array_equal(np.asarray(json.loads(json.dumps(as_list)), dtype=np.float32), v)


def test_retryable_statuses():
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
    from elasticsearch import ApiError
    from elasticsearch import ConnectionError as EsConnectionError

    def api_error(status: int) -> ApiError:
        meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                               node=NodeConfig("http", "localhost", 9200))
        return ApiError("x", meta=meta, body={})

    assert [is_retryable(api_error(s)) for s in (429, 502, 503, 504, 400, 404, 409)] == [True] * 4 + [False] * 3
    assert is_retryable(EsConnectionError("down")) and not is_retryable(ValueError())
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise api_error(429)
        return "ok"

    assert RetryPolicy(max_retries=5, initial_s=0.001, max_s=0.002).call(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ApiError):
        RetryPolicy(max_retries=1, initial_s=0.001, max_s=0.002).call(lambda: (_ for _ in ()).throw(api_error(503)))
    policy = RetryPolicy(initial_s=0.5, max_s=3.0)
    assert 0.5 <= policy.backoff_seconds(1) <= 1.0 and 2.0 <= policy.backoff_seconds(3) <= 3.0
    assert policy.backoff_seconds(10) == 3.0


def test_query_parsing():
    assert parse_query('{"term": {"a": 1}}') == {"term": {"a": 1}}
    assert parse_query('{"query": {"match_all": {}}}') == {"match_all": {}}
    for bad, message in (("{oops", "not valid JSON"), ("[]", "JSON object"), ("{}", "JSON object")):
        with pytest.raises(ConfigError, match=message):
            parse_query(bad)
    assert ReindexOptions(query='{"ids": {"values": ["1"]}}').query == {"ids": {"values": ["1"]}}


@pytest.mark.parametrize("kwargs, option", [
    ({"slices": 0}, "slices"), ({"slices": 3, "slice_id": 3}, "slice_id"), ({"limit": -1}, "limit"),
    ({"writers": 0}, "writers"), ({"lock_ttl_s": 0}, "lock_ttl_s"), ({"new_index": True, "slices": 2}, "slices"),
    ({"delete_old": True}, "delete_old"), ({"new_index": True, "limit": 5}, "new_index"),
    ({"new_index": True, "dry_run": True}, "dry_run"), ({"keep_alive": "5 minutes"}, "keep_alive"),
    ({"keep_alive": "0m"}, "keep_alive"), ({"max_length": 0}, "max_length"), ({"lock_ttl_s": float("nan")}, "lock_ttl_s"),
    ({"lock_ttl_s": float("inf")}, "lock_ttl_s"), ({"lock_ttl_s": 1e300}, "lock_ttl_s"), ({"slices": 2.5}, "slices"),
    ({"query": "[1]"}, "query"),
])
def test_option_validation(kwargs, option):
    with pytest.raises(ConfigError, match=option) as caught:
        ReindexOptions(**kwargs)
    assert caught.value.option == option and "\n" not in str(caught.value)


def test_repr_never_shows_the_embedding_urls_password_nor_the_api_key():
    options = ReindexOptions(embedding_url="http://u:PW-s3cret@h/v1", embedding_api_key="sk-s3cret", writers=4)
    assert repr(options) == "ReindexOptions(embedding_url='http://***@h/v1', writers=4)"
    assert "s3cret" not in str(options)
    with pytest.raises(ConfigError) as caught:
        ReindexOptions(embedding_url="ftp://u:PW-s3cret@h/v1")
    assert "s3cret" not in str(caught.value)


def test_named_query_tells_if_the_vector_exists():
    q = build_query({"term": {"c": "x"}}, "embedding")
    assert q == {"bool": {"filter": [{"term": {"c": "x"}}],
                          "should": [{"exists": {"field": "embedding", "_name": HAS_VECTOR}}]}}
    assert build_query(None, None) == {"match_all": {}}
    hit = {"_id": "1", "_index": "i", "_source": {"a": 1}, "_seq_no": 4, "_primary_term": 1}
    assert _to_doc(dict(hit, matched_queries=[HAS_VECTOR]), "embedding").has_vector is True
    assert _to_doc(hit, "embedding").has_vector is False
    assert _to_doc(hit, None).has_vector is None and _to_doc(hit, None).seq_no == 4


def test_versioned_names():
    assert version_of("faq-v12", "faq") == 12 and version_of("faq-v1x", "faq") is None
    assert version_of("faq_2024", "faq") is None
    assert candidate_names("faq", "faq-v3")[:2] == ["faq-v4", "faq-v5"]
    assert candidate_names("faq", "faq_2024")[0] == "faq-v1"
    advice = migrate_advice("faq", {"dims": 256, "model": "/models/my model", "index_options": {"type": "flat"}})
    assert "faq-v1" in advice and "one atomic request deletes the index 'faq'" in advice
    assert advice.endswith("es-semantic reindex --index faq --new-index --delete-old --model '/models/my model' "
                           "--dims 256 --index-options flat")


def test_settings_copied_to_the_new_index():
    flat = {"index.uuid": "u", "index.creation_date": "1", "index.version.created": "9", "index.provided_name": "faq-v1",
            "index.number_of_shards": "3", "index.number_of_replicas": "2", "index.refresh_interval": "5s",
            "index.analysis.analyzer.my.type": "standard", "index.routing.allocation.initial_recovery._id": "x",
            "index.history.uuid": "h", "index.max_result_window": "20000"}
    assert copyable_settings(flat) == {"index.number_of_shards": "3", "index.analysis.analyzer.my.type": "standard",
                                       "index.max_result_window": "20000"}
    assert original_bulk_settings(flat) == {"index.refresh_interval": "5s", "index.number_of_replicas": "2"}
    assert original_bulk_settings({}) == {"index.refresh_interval": None, "index.number_of_replicas": "1"}


def test_write_blocks_are_not_copied_and_are_recognised():
    # index.verified_read_only: the private setting Elasticsearch's add-block API leaves behind (it
    # cannot be given to a new index); blocks belong to the old index only.
    flat = {"index.blocks.write": "true", "index.verified_read_only": "true", "index.number_of_shards": "1"}
    assert copyable_settings(flat) == {"index.number_of_shards": "1"}
    assert writes_blocked(flat) and writes_blocked({"index.blocks.read_only_allow_delete": "true"})
    assert not writes_blocked({"index.blocks.write": "false"}) and not writes_blocked({})


def test_new_mapping_keeps_the_old_fields_and_other_meta():
    old = {"dynamic": "strict", "properties": {"question": {"type": "text"}, "embedding": {"type": "dense_vector", "dims": 8}},
           "_meta": {"team": "search", "es_semantic": {"model": "old"}}}
    new = new_mappings(old, CFG, {"source": "faq-v1"})
    assert new["dynamic"] == "strict" and new["properties"]["question"] == {"type": "text"}
    assert new["properties"]["embedding"]["dims"] == 4 and new["properties"]["embedding_info"]["type"] == "object"
    assert new["_meta"]["team"] == "search" and new["_meta"]["es_semantic"]["model"] == "org/model-a"
    assert new["_meta"][JOB_META_KEY] == {"source": "faq-v1"}
    assert old["properties"]["embedding"]["dims"] == 8  # the input is not modified


def test_model_overrides():
    # the label is decided once the model is loaded (by its weights digest): the caller passes it
    cfg, changed = effective_config(CFG, ReindexOptions(model="/local/model-a"), model="org/model-a")
    assert (cfg.model, changed) == ("org/model-a", [])
    cfg, changed = effective_config(CFG, ReindexOptions(model="/local/model-b", dims=8, similarity="dot_product"))
    assert changed == ["model", "dims", "similarity"] and cfg.dims == 8 and cfg.model == "/local/model-b"
    _, changed = effective_config(CFG, ReindexOptions(index_options={"type": "hnsw"}))
    assert changed == ["index_options"]
    assert lock_key("faq", ReindexOptions()) == "faq"
    assert lock_key("faq", ReindexOptions(slices=4, slice_id=2)) == "faq#slice-2-of-4"


def test_report_json_and_summary(tmp_path):
    report = ReindexReport(index="faq", model="m")
    report.add(read=10, embedded=7, skipped=2)
    report.add_failure("9", "faq", "400 mapper_parsing_exception: bad")
    report.finished_at = report.started_at + 2.0
    data = report.to_dict()
    assert (data["embedded"], data["failed"], data["seconds"], data["docs_per_second"]) == (7, 1, 2.0, 3.5)
    assert data["failures"] == [{"id": "9", "index": "faq", "reason": "400 mapper_parsing_exception: bad"}]
    assert report.done == 10 and not report.ok
    path = tmp_path / "r.json"
    report.write_json(path)
    assert json.loads(path.read_text())["embedded"] == 7
    assert report.summary().startswith("reindexed 'faq': 7 embedded, 2 current") and "1 failed" in report.summary()


def test_parse_size():
    from es_semantic.cli.reindex import parse_size

    assert parse_size("8mb") == 8 * 1024 * 1024 and parse_size("512kb") == 524288 and parse_size("1000") == 1000
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_custom_routing_is_carried_from_the_read_to_every_write_and_get():
    from elasticsearch import Elasticsearch

    from es_semantic.reindexing.pipeline import Item, Pipeline, Plan
    from es_semantic.reindexing.reader import mget_docs

    hit = {"_id": "1", "_index": "faq-v1", "_source": {"question": "q"}, "_seq_no": 4, "_primary_term": 2,
           "_routing": "tenant-a"}
    doc = _to_doc(hit, None)
    assert doc.routing == "tenant-a"
    plain = _to_doc({k: v for k, v in hit.items() if k != "_routing"}, None)
    assert plain.routing is None
    # mget: plain ids when nobody has a routing, per-document routing otherwise.
    assert mget_docs([plain]) == {"ids": ["1"]}
    assert mget_docs([doc, plain]) == {"docs": [{"_id": "1", "routing": "tenant-a"}, {"_id": "1"}]}
    cfg = SemanticConfig(model="m", dims=2, text_fields=("question",))
    pipeline = Pipeline(Elasticsearch("http://127.0.0.1:9"), None, ReindexOptions(), ReindexReport(index="faq"))
    item = Item(doc, "q", "fp")
    update = pipeline.build_op(Plan(read_index="faq", config=cfg, model_label="m"), item, np.ones(2, np.float32))
    assert json.loads(update.lines[0]) == {"update": {"_index": "faq-v1", "_id": "1", "routing": "tenant-a",
                                                      "if_seq_no": 4, "if_primary_term": 2}}
    copy = pipeline.build_op(Plan(read_index="faq", config=cfg, model_label="m", mode="copy", target_index="faq-v2"),
                             item, np.ones(2, np.float32))
    assert json.loads(copy.lines[0]) == {"index": {"_index": "faq-v2", "_id": "1", "routing": "tenant-a"}}
    assert "routing" not in json.loads(index_op("1", "faq-v2", {}).lines[0])["index"]


def test_a_query_dict_nested_too_deep_is_refused():
    deep: dict = {}
    node = deep
    for _ in range(3000):
        node["bool"] = {"must": {}}
        node = node["bool"]["must"]
    with pytest.raises(ConfigError, match="query nests deeper than 100 levels"):
        ReindexOptions(query=deep)
    shallow = {"bool": {"filter": [{"term": {"a": 1}}, {"range": {"n": {"gte": 1}}}]}}
    assert ReindexOptions(query=shallow).query == shallow
