"""Document routing of the test server: which shard an ``(_id, routing)`` pair lives on.

Elasticsearch 9.3 (the version the server claims) routes with the *legacy* function that indices
created before 9.4.0 keep (the ``_routing`` field reference, and ``IndexRouting`` /
``MetadataCreateIndexService.calculateNumRoutingShards`` in the Elasticsearch source)::

    hash          = Murmur3HashFunction.hash(routing if given else _id)
    routing_factor = number_of_routing_shards / number_of_shards
    shard         = floorMod(hash, number_of_routing_shards) / routing_factor

``Murmur3HashFunction.hash`` is MurmurHash3 x86_32 with seed 0 over the string's UTF-16 code
units, each written little-endian (two bytes per Java ``char``). A partitioned index
(``index.routing_partition_size`` > 1) adds ``floorMod(hash(_id), partition_size)`` to the
routing's hash. With one shard every value lands on shard 0, which is why routing never changes
what a single-shard index finds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from es_semantic.testing.errors import EsError

_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_MASK = 0xFFFFFFFF


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 (Lucene's ``StringHelper.murmurhash3_x86_32``), as a signed 32-bit int."""
    h = seed & _MASK
    end = len(data) & ~3
    for i in range(0, end, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
        h = ((h << 13) | (h >> 19)) & _MASK
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = len(data) & 3
    if tail:
        k = 0
        if tail == 3:
            k ^= data[end + 2] << 16
        if tail >= 2:
            k ^= data[end + 1] << 8
        k ^= data[end]
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def routing_hash(value: str) -> int:
    """Elasticsearch's ``Murmur3HashFunction.hash(String)``: UTF-16 code units, little-endian."""
    return murmur3_x86_32(value.encode("utf-16-le", "surrogatepass"))


def default_routing_num_shards(number_of_shards: int) -> int:
    """``MetadataCreateIndexService.calculateNumRoutingShards`` for indices created on or after 7.0:
    the largest ``number_of_shards * 2^x`` not above 1024, with at least one split."""
    log2_num_shards = (number_of_shards - 1).bit_length()  # 32 - numberOfLeadingZeros(n - 1)
    splits = max(1, 10 - log2_num_shards)
    return number_of_shards << splits


def routing_values(value: Any) -> list[str]:
    """A ``routing`` request parameter as its comma-separated values (search routing)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = str(value).split(",")
    return [p for p in (s.strip() for s in parts) if p]


def validate_routing_settings(settings: dict[str, Any]) -> None:
    """The ``index.number_of_routing_shards`` checks of ``IndexMetadata`` (flat, string settings)."""
    raw = settings.get("index.number_of_routing_shards")
    if raw is None:
        return
    try:
        routing_shards = int(raw)
    except (TypeError, ValueError):
        raise EsError(400, "illegal_argument_exception",
                      f"Failed to parse value [{raw}] for setting [index.number_of_routing_shards]") from None
    if routing_shards < 1:
        raise EsError(400, "illegal_argument_exception",
                      f"Failed to parse value [{routing_shards}] for setting [index.number_of_routing_shards] must "
                      "be >= 1")
    shards = int(settings.get("index.number_of_shards", "1"))
    if routing_shards < shards:
        raise EsError(400, "illegal_argument_exception",
                      f"index.number_of_routing_shards [{routing_shards}] must be >= index.number_of_shards "
                      f"[{shards}]")
    factor = routing_shards // shards
    if routing_shards != shards and (factor * shards != routing_shards or factor <= 1):
        raise EsError(400, "illegal_argument_exception",
                      f"the number of source shards [{shards}] must be a factor of [{routing_shards}]")


class IndexRouting:
    """The shard function of one index (Elasticsearch's ``IndexRouting``, id-and-routing variants)."""

    def __init__(self, index_name: str, number_of_shards: int, routing_num_shards: int,
                 partition_size: int = 1, routing_required: bool = False) -> None:
        self.index_name = index_name
        self.number_of_shards = number_of_shards
        self.routing_num_shards = routing_num_shards
        self.routing_factor = routing_num_shards // number_of_shards
        self.partition_size = partition_size
        self.routing_required = routing_required

    @classmethod
    def of(cls, index_name: str, settings: dict[str, Any], mappings: dict[str, Any] | None) -> IndexRouting:
        """From an index's flat ``index.*`` settings and its mapping (``_routing.required``)."""
        shards = int(settings.get("index.number_of_shards", "1"))
        routing_shards = settings.get("index.number_of_routing_shards")
        return cls(index_name, shards,
                   int(routing_shards) if routing_shards is not None else default_routing_num_shards(shards),
                   int(settings.get("index.routing_partition_size", "1")), routing_required(mappings))

    def _hash_to_shard(self, hashed: int) -> int:
        return (hashed % self.routing_num_shards) // self.routing_factor  # Python's % is floorMod here

    def check_required(self, doc_id: str, routing: str | None) -> None:
        if self.routing_required and routing is None:
            raise routing_missing(self.index_name, doc_id)

    def shard(self, doc_id: str, routing: str | None) -> int:
        """The shard of a document write, get, update or delete (``indexShard`` / ``getShard`` ...)."""
        self.check_required(doc_id, routing)
        if self.number_of_shards == 1:
            return 0
        if self.partition_size > 1:
            if routing is None:
                raise EsError(400, "illegal_argument_exception",
                              "A routing value is required for gets from a partitioned index")
            offset = routing_hash(doc_id) % self.partition_size
            return self._hash_to_shard(routing_hash(routing) + offset)
        return self._hash_to_shard(routing_hash(doc_id if routing is None else routing))

    def search_shards(self, routings: Iterable[str]) -> frozenset[int]:
        """The shards a search with these routing values goes to (``collectSearchShards``)."""
        out: set[int] = set()
        for routing in routings:
            if self.number_of_shards == 1:
                out.add(0)
                continue
            hashed = routing_hash(routing)
            for i in range(self.partition_size):
                out.add(self._hash_to_shard(hashed + i))
        return frozenset(out)


def routing_required(mappings: dict[str, Any] | None) -> bool:
    spec = (mappings or {}).get("_routing")
    if not isinstance(spec, dict):
        return False
    value = spec.get("required", False)
    return value is True or str(value).lower() == "true"


def routing_missing(index: str, doc_id: str) -> EsError:
    """Elasticsearch's ``RoutingMissingException`` (400; it names the concrete index)."""
    return EsError(400, "routing_missing_exception", f"routing is required for [{index}]/[{doc_id}]",
                   index_uuid="_na_", index=index)


def alias_index_routing(name: str, alias: dict[str, Any] | None, routing: str | None) -> str | None:
    """``resolveIndexRouting``: a write or get through an alias with ``index_routing`` uses it; a
    different routing in the request is refused."""
    if alias is None or alias.get("index_routing") is None:
        return routing
    alias_routing = str(alias["index_routing"])
    if "," in alias_routing:
        raise EsError(400, "illegal_argument_exception",
                      f"index/alias [{name}] provided with routing value [{alias_routing}] that resolved to several "
                      "routing values, rejecting operation")
    if routing is not None and routing != alias_routing:
        raise EsError(400, "illegal_argument_exception",
                      f"Alias [{name}] has index routing associated with it [{alias_routing}], and was provided with "
                      f"routing value [{routing}], rejecting operation")
    return alias_routing
