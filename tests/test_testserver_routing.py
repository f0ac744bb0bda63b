"""Test server: custom routing (`_routing`), required routing, and multi-shard document lookups.

Every shard number below comes from Elasticsearch itself, not from this server's code: the hash
values from ``Murmur3HashFunctionTests``, the shard placements from ``IndexRoutingTests``
(``testBWC``, ``testPartitionedIndexBWC``, ``testPartitionedIndexShrunk`` before the 9.4 routing
change, ``testSimpleRoutingPreAndPostModRoutingChange``) and from the REST tests
``get/40_routing.yml``, ``mget/40_routing.yml`` and ``update/40_routing.yml``.
"""

from __future__ import annotations

from es_semantic.testing.routing import IndexRouting, default_routing_num_shards, routing_hash

# IndexRoutingTests.testBWC: term -> shard of an 8-shard index with 8 routing shards
# (the shard of a document with that _id and no routing, or of any _id with that routing).
BWC_8 = {"sEERfFzPSI": 1, "cNRiIrjzYd": 7, "BgfLBXUyWT": 5, "cnepjZhQnb": 3, "OKCmuYkeCK": 6, "hswhrppvDH": 0,
         "FYQRIBcNqz": 0, "xkWaPcCmpT": 0, "yCdyocKWou": 1, "KXuNWWNgVj": 2, "qoZALVcite": 7}


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
