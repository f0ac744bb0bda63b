"""Test server: pure helpers (hand-computed expectations)."""

from __future__ import annotations

import datetime as dt

import pytest

from es_semantic.testing.errors import EsError
from es_semantic.testing.faults import Faults
from es_semantic.testing.mapping import merge_mappings, normalize_mappings
from es_semantic.testing.store import (
    deep_merge,
    filter_source,
    flatten_settings,
    nest_settings,
    parse_time,
    resolve_date_math,
)


def test_parse_time() -> None:
    assert parse_time("1m") == 60.0
    assert parse_time("500ms") == 0.5
    assert parse_time("2h") == 7200.0
    assert parse_time("-1") == -1.0
    with pytest.raises(EsError):
        parse_time("soon")


def test_date_math_names() -> None:
    now = dt.datetime(2024, 3, 15, 12, 0, tzinfo=dt.timezone.utc)
    assert resolve_date_math("<logs_{2022-12-31||/d{yyyy-MM-dd}}>", now) == "logs_2022-12-31"
    assert resolve_date_math("<logs-{now/d}>", now) == "logs-2024.03.15"
    assert resolve_date_math("<logs-{now/M-1M{yyyy.MM}}>", now) == "logs-2024.02"
    assert resolve_date_math("plain", now) == "plain"


def test_settings_flatten_and_nest() -> None:
    flat = flatten_settings({"index": {"number_of_shards": 1}, "refresh_interval": "1s", "x.y": True})
    assert flat == {"index.number_of_shards": "1", "index.refresh_interval": "1s", "index.x.y": "true"}
    assert nest_settings(flat) == {"index": {"number_of_shards": "1", "refresh_interval": "1s",
                                             "x": {"y": "true"}}}


def test_filter_source() -> None:
    src = {"a": {"b": 1, "c": 2}, "d": 3, "e": [{"f": 1, "g": 2}]}
    assert filter_source(src, ["a.b"], None) == {"a": {"b": 1}}
    assert filter_source(src, ["a.*"], None) == {"a": {"b": 1, "c": 2}}
    assert filter_source(src, None, ["a"]) == {"d": 3, "e": [{"f": 1, "g": 2}]}
    assert filter_source(src, ["e.f", "d"], None) == {"d": 3, "e": [{"f": 1}]}
    assert filter_source(src, ["*"], ["a.c", "e.g"]) == {"a": {"b": 1}, "d": 3, "e": [{"f": 1}]}


def test_deep_merge() -> None:
    assert deep_merge({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"x": 9}, "b": [2], "c": 3}) == \
        {"a": {"x": 9, "y": 2}, "b": [2], "c": 3}


def test_dotted_mapping_names_expand_unless_subobjects_false() -> None:
    assert normalize_mappings({"properties": {"a.b": {"type": "keyword"}}}) == \
        {"properties": {"a": {"properties": {"b": {"type": "keyword"}}}}}
    flat = normalize_mappings({"subobjects": False, "properties": {"a.b": {"type": "keyword"}}})
    assert flat["properties"] == {"a.b": {"type": "keyword"}}


def test_merge_mappings_rules() -> None:
    old = normalize_mappings({"_meta": {"v": 1}, "properties": {"t": {"type": "text"}}})
    new = normalize_mappings({"_meta": {"w": 2}, "properties": {"t": {"type": "text", "fields": {
        "raw": {"type": "keyword"}}}, "n": {"type": "long"}}}, put=True)
    merged = merge_mappings(old, new)
    assert merged["_meta"] == {"w": 2}
    assert merged["properties"]["t"]["fields"] == {"raw": {"type": "keyword"}}
    assert merged["properties"]["n"] == {"type": "long"}
    with pytest.raises(EsError, match=r"mapper \[t\] cannot be changed from type \[text\] to \[long\]"):
        merge_mappings(merged, {"properties": {"t": {"type": "long"}}})


def test_faults_next_n_and_fraction() -> None:
    faults = Faults(seed=1)
    faults.reject("_bulk", times=2, method="POST")
    assert [bool(faults.pick("POST", "/_bulk")) for _ in range(3)] == [True, True, False]
    assert not faults.pick("GET", "/_bulk")
    faults.clear()
    faults.unavailable("_search", p=0.25)
    fired = sum(bool(faults.pick("GET", "/x/_search")) for _ in range(400))
    assert 60 < fired < 140
    assert faults.counts["unavailable"] == fired
    with pytest.raises(ValueError):
        faults.add("explode")
