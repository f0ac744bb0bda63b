"""Search body handling: sort, paging, totals, _source, fields, slices, PIT tiebreaker."""

from __future__ import annotations

import pytest

from es_semantic.testing.errors import EsError
from es_semantic.testing.search_engine import filter_source, run_search
from es_semantic.testing.snapshot import IndexSnapshot, SearchTarget, StoredDoc

MAPPINGS = {
    "properties": {
        "name": {"type": "keyword"},
        "age": {"type": "long"},
        "score": {"type": "double"},
        "ts": {"type": "date", "format": "yyyy-MM-dd HH:mm:ss"},
        "text": {"type": "text"},
        "obj": {"properties": {"a": {"type": "keyword"}, "b": {"type": "long"}}},
    }
}


def _docs(n: int = 6) -> list[dict]:
    names = ["carol", "alice", "bob", "dave", "erin", "frank", "gina", "hank"]
    out = []
    for i in range(n):
        d = {
            "name": names[i % len(names)],
            "age": 20 + (i * 7) % 5,
            "text": "hello world" if i % 2 else "hello",
            "ts": f"2024-01-0{1 + i % 9} 10:00:00",
            "obj": {"a": f"x{i}", "b": i},
        }
        if i != 3:
            d["score"] = i * 1.5
        out.append(d)
    return out


def _target(docs=None, name="idx", settings=None) -> SearchTarget:
    docs = _docs() if docs is None else docs
    stored = [StoredDoc(str(i), s, i, 1, 1, i) for i, s in enumerate(docs)]
    return SearchTarget(IndexSnapshot(name, MAPPINGS, settings or {}, stored))


def _search(body, params=None, targets=None, **kw):
    return run_search(targets or [_target()], body, params or {}, **kw)


def test_sort_by_fields_with_missing_and_sort_values():
    res = _search({"sort": [{"age": "asc"}, {"name": {"order": "desc"}}], "size": 3})
    hits = res["hits"]["hits"]
    assert [h["sort"] for h in hits] == [[20, "frank"], [20, "carol"], [21, "dave"]]
    assert all(h["_score"] is None for h in hits)
    assert res["hits"]["max_score"] is None
    res = _search({"sort": [{"score": {"order": "desc", "missing": "_last"}}]})
    assert [h["_id"] for h in res["hits"]["hits"]][-1] == "3"
    assert res["hits"]["hits"][-1]["sort"] == [float("-inf")]
    res = _search({"sort": [{"score": {"order": "asc", "missing": "_first"}}]})
    assert res["hits"]["hits"][0]["_id"] == "3"


def test_date_sort_values_are_epoch_millis_or_formatted():
    res = _search({"sort": [{"ts": "desc"}], "size": 1})
    assert res["hits"]["hits"][0]["sort"] == [1704362400000 + 2 * 86_400_000]  # 2024-01-06 10:00 UTC
    res = _search({"sort": [{"ts": {"order": "asc", "format": "strict_date_optional_time"}}], "size": 1})
    assert res["hits"]["hits"][0]["sort"] == ["2024-01-01T10:00:00.000Z"]


def test_search_after_walks_all_docs_in_order():
    body = {"sort": [{"age": "asc"}, {"_id": "asc"}], "size": 2}
    seen, after = [], None
    while True:
        page = _search({**body, **({"search_after": after} if after else {})})["hits"]["hits"]
        if not page:
            break
        seen += [h["_id"] for h in page]
        after = page[-1]["sort"]
    full = [h["_id"] for h in _search({**body, "size": 100})["hits"]["hits"]]
    assert seen == full and len(full) == 6


def test_from_size_window_and_totals():
    t = [_target(settings={"index": {"max_result_window": 5}})]
    with pytest.raises(EsError) as exc:
        run_search(t, {"from": 3, "size": 3}, {})
    assert exc.value.type == "illegal_argument_exception"
    assert "Result window is too large, from + size must be less than or equal to: [5] but was [6]" in exc.value.reason
    res = _search({"from": 4, "size": 10})
    assert len(res["hits"]["hits"]) == 2
    assert res["hits"]["total"] == {"value": 6, "relation": "eq"}
    assert _search({"track_total_hits": 3})["hits"]["total"] == {"value": 3, "relation": "gte"}
    assert "total" not in _search({"track_total_hits": False})["hits"]
    assert _search({}, {"rest_total_hits_as_int": "true"})["hits"]["total"] == 6
    with pytest.raises(EsError):
        _search({"size": -1})


def test_min_score_and_terminate_after():
    res = _search({"query": {"match": {"text": "world"}}, "min_score": 0.1})
    assert {h["_id"] for h in res["hits"]["hits"]} == {"1", "3", "5"}
    res = _search({"query": {"match": {"text": "world"}}, "min_score": 100})
    assert res["hits"]["hits"] == [] and res["hits"]["total"]["value"] == 0
    res = _search({"terminate_after": 2})
    assert res["hits"]["total"]["value"] == 2 and res["terminated_early"] is True


def test_source_filtering_variants():
    src = {"include": {"field1": "v1", "field2": "v2"}, "count": 1, "obj": [{"a": 1, "b": 2}]}
    assert filter_source(src, ["include.field1"], []) == {"include": {"field1": "v1"}}
    assert filter_source(src, ["include"], ["*.field2"]) == {"include": {"field1": "v1"}}
    assert filter_source(src, [], ["count", "obj.b"]) == {
        "include": {"field1": "v1", "field2": "v2"},
        "obj": [{"a": 1}],
    }
    assert filter_source(src, ["inc*"], []) == {"include": {"field1": "v1", "field2": "v2"}}
    assert filter_source(src, ["obj.a"], []) == {"obj": [{"a": 1}]}
    hit = _search({"_source": False, "size": 1})["hits"]["hits"][0]
    assert "_source" not in hit
    hit = _search({"_source": ["obj.a"], "size": 1})["hits"]["hits"][0]
    assert hit["_source"] == {"obj": {"a": "x0"}}
    hit = _search({"_source": True, "size": 1}, {"_source_includes": "name", "_source_excludes": ""})["hits"]["hits"][0]
    assert hit["_source"] == {"name": "carol"}
    hit = _search({"stored_fields": ["_none_"], "size": 1})["hits"]["hits"][0]
    assert "_source" not in hit and "_id" not in hit


def test_fields_and_docvalue_fields_return_lists():
    hit = _search({"fields": ["name", "obj.*", "ts"], "size": 1})["hits"]["hits"][0]
    assert hit["fields"] == {"name": ["carol"], "obj.a": ["x0"], "obj.b": [0], "ts": ["2024-01-01 10:00:00"]}
    hit = _search({"docvalue_fields": [{"field": "age", "format": "#.0"}], "size": 1})["hits"]["hits"][0]
    assert hit["fields"] == {"age": ["20.0"]}


def test_slices_partition_documents_disjointly_and_completely():
    docs = [{"name": f"n{i}", "age": i} for i in range(40)]
    t = [_target(docs)]
    for field in (None, "age"):
        seen: list[str] = []
        for sid in range(3):
            spec = {"id": sid, "max": 3, **({"field": field} if field else {})}
            seen += [h["_id"] for h in run_search(t, {"slice": spec, "size": 100}, {})["hits"]["hits"]]
        assert sorted(seen, key=int) == [str(i) for i in range(40)]
    with pytest.raises(EsError):
        run_search(t, {"slice": {"id": 3, "max": 3}}, {})


def test_pit_appends_shard_doc_tiebreaker_and_accepts_short_search_after():
    t = [_target(name="a"), _target(name="b")]
    res = run_search(t, {"sort": [{"age": "asc"}], "size": 3}, {}, pit=True)
    hits = res["hits"]["hits"]
    assert [len(h["sort"]) for h in hits] == [2, 2, 2]
    assert [h["sort"] for h in hits] == [[20, 0], [20, 5], [20, 1 << 32]]  # index a docs 0, 5; then b
    nxt = run_search(t, {"sort": [{"age": "asc"}], "size": 2, "search_after": hits[1]["sort"]}, {}, pit=True)
    assert nxt["hits"]["hits"][0]["sort"] == hits[2]["sort"]
    short = run_search(t, {"sort": [{"age": "asc"}], "size": 2, "search_after": [20]}, {}, pit=True)
    assert all(h["sort"][0] > 20 for h in short["hits"]["hits"])


def test_sorting_text_field_is_rejected_and_unmapped_needs_unmapped_type():
    with pytest.raises(EsError) as exc:
        _search({"sort": ["text"]})
    assert "Fielddata is disabled on [text]" in exc.value.reason
    with pytest.raises(EsError) as exc:
        _search({"sort": ["nope"]})
    assert exc.value.reason == "No mapping found for [nope] in order to sort on"
    assert len(_search({"sort": [{"nope": {"unmapped_type": "long"}}]})["hits"]["hits"]) == 6


def test_multiple_indices_merge_by_score_then_index_order():
    t = [_target(name="a"), _target(name="b")]
    res = run_search(t, {"query": {"match": {"text": "world"}}, "size": 20}, {})
    hits = res["hits"]["hits"]
    assert res["hits"]["total"]["value"] == 6
    assert [h["_index"] for h in hits] == ["a", "a", "a", "b", "b", "b"]


def test_collapse_keeps_best_hit_per_value_with_inner_hits():
    docs = [
        {"name": "a", "age": 1},
        {"name": "b", "age": 2},
        {"name": "a", "age": 3},
        {"name": "c", "age": 4},
        {"name": "b", "age": 5},
    ]
    res = run_search(
        [_target(docs)],
        {
            "sort": [{"age": "desc"}],
            "collapse": {"field": "name", "inner_hits": {"name": "more", "size": 5, "sort": [{"age": "asc"}]}},
        },
        {},
    )
    hits = res["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["4", "3", "2"]
    assert res["hits"]["total"]["value"] == 5
    assert hits[0]["fields"] == {"name": ["b"]}
    inner = hits[0]["inner_hits"]["more"]["hits"]
    assert inner["total"]["value"] == 2 and [h["_id"] for h in inner["hits"]] == ["1", "4"]
