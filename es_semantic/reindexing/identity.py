"""Which model made an index's vectors: one rule.

The index ``_meta`` records, under ``es_semantic_vectors``, the weights digest of the model whose
vectors it holds (``embedding.digest``: sha256 over every byte of its files), written before the
first vectors. A job's model is that model when its digest is the recorded one, wherever its files
lie; while the index holds no vector, any model is (there is nothing to protect); otherwise it is
another model, which only a new index (``--new-index``) takes. An embedding server has no files:
where it makes the vectors, or made the stored ones (no digest recorded), the vectors of a sample
of documents are compared with the stored ones instead (``probe_same_model``).
Each vector's fingerprint covers its text, the embedder settings and the digest, so which
documents to embed again follows from the fingerprints alone.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from ..config import SemanticConfig
from ..embedding import TextEmbedder
from ..search.hybrid import knn_similarity

log = logging.getLogger(__name__)

#: ``_meta`` key (next to the es-semantic configuration) holding what made the vectors.
VECTORS_META_KEY = "es_semantic_vectors"
#: Documents whose stored vectors a server's vectors of the same texts are compared with.
PROBE_SAMPLE = 20
#: Cosine a vector must reach with the stored one of the same text to count as the same model's.
#: The same model in another engine or precision gives > 0.999; a prompt or template difference
#: about 0.95; another model's space about 0.
PROBE_MIN_COSINE = 0.99


@dataclass
class Probe:
    """Vectors made now against the stored ones of the same texts."""

    same: bool | None  # None: no document to compare with
    checked: int = 0
    matched: int = 0  # documents at PROBE_MIN_COSINE or more
    median: float | None = None


@dataclass
class ModelCheck:
    """Whether the job's model made the index's vectors, and how that was found."""

    same: bool | None  # None: the index holds no vector (or none a server's could be compared with)
    method: str  # "weights" (recorded digest), "probe" (a server's vectors), "no vectors"
    digest: str | None = None  # the job's model's
    recorded: list[str] | None = None  # the index's (one per concrete index)
    probe: Probe | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "probe"}
        if self.probe is not None:
            out["probe"] = asdict(self.probe)
        return out


def recorded_digests(es: Any, index: str) -> dict[str, str | None]:
    """The weights digest each concrete index behind ``index`` records (None: none recorded)."""
    out = {}
    for name, body in es.indices.get_mapping(index=index).body.items():
        vectors = ((body.get("mappings") or {}).get("_meta") or {}).get(VECTORS_META_KEY) or {}
        out[name] = vectors.get("weights") if isinstance(vectors, dict) else None
    return out


def record_digest(es: Any, index: str, digest: str | None) -> None:
    """Record ``digest`` (None: none, a server's vectors) in every index behind ``index``, other
    ``_meta`` keys kept."""
    for name, body in es.indices.get_mapping(index=index).body.items():
        meta = dict((body.get("mappings") or {}).get("_meta") or {})
        if (meta.get(VECTORS_META_KEY) or {}).get("weights") == digest and VECTORS_META_KEY in meta:
            continue
        meta[VECTORS_META_KEY] = {"weights": digest}
        es.indices.put_mapping(index=name, meta=meta)


def holds_vectors(es: Any, index: str, config: SemanticConfig) -> bool:
    """Whether any document of ``index`` has a vector es-semantic wrote (``mappings.field_holds_vectors``)."""
    from ..mappings import field_holds_vectors

    return field_holds_vectors(es, index, config.vector_field)


def check_model(es: Any, index: str, config: SemanticConfig, embedder: TextEmbedder) -> ModelCheck:
    """Whether ``embedder`` holds the model the vectors of ``index`` were made with (see the module)."""
    digest = embedder.weights_digest
    if not holds_vectors(es, index, config):
        return ModelCheck(same=None, method="no vectors", digest=digest)
    recorded = sorted(set(recorded_digests(es, index).values()), key=str)
    if digest is None or recorded == [None]:  # a server's vectors, or a server asked: compare vectors
        probe = probe_same_model(es, index, config, embedder)
        return ModelCheck(same=probe.same, method="probe", digest=digest, recorded=recorded, probe=probe)
    return ModelCheck(same=recorded == [digest], method="weights", digest=digest, recorded=recorded)


def stored_cosine(es: Any, index: str, config: SemanticConfig, doc_id: str, vector: Any) -> float | None:
    """The cosine between ``vector`` and the vector stored for ``doc_id``: exact, from a
    ``script_score`` over the raw stored vector; where scripts are not allowed, from a kNN score."""
    query_vector = [float(x) for x in vector]
    try:
        hits = es.search(index=index, size=1, source=False, query={"script_score": {
            "query": {"ids": {"values": [doc_id]}},
            "script": {"source": f"cosineSimilarity(params.v, '{config.vector_field}') + 1.0",
                       "params": {"v": query_vector}}}}).body["hits"]["hits"]
        return float(hits[0]["_score"]) - 1.0 if hits else None
    except Exception as exc:  # noqa: BLE001 - scripts disabled (or unsupported): fall back to kNN
        log.debug("script_score cosine unavailable (%s); using the kNN score", exc)
    hits = es.search(index=index, size=1, source=False, knn={
        "field": config.vector_field, "query_vector": query_vector, "k": 1, "num_candidates": 10,
        "filter": {"ids": {"values": [doc_id]}}}).body["hits"]["hits"]
    if not hits or hits[0].get("_score") is None:
        return None
    return knn_similarity(float(hits[0]["_score"]), config.similarity)


def probe_same_model(es: Any, index: str, config: SemanticConfig, embedder: TextEmbedder,
                     sample: int = PROBE_SAMPLE) -> Probe:
    """Whether ``embedder`` makes the vectors stored in ``index``: the texts of up to ``sample``
    documents with a vector are embedded and compared with their stored vectors; the same model when
    at least half reach ``PROBE_MIN_COSINE`` (a document edited since it was embedded matches under
    no model, so not all need to)."""
    hits = es.search(index=index, size=sample, track_total_hits=False,
                     query={"bool": {"filter": [{"exists": {"field": config.vector_field}}]}},
                     source={"includes": list(config.text_fields)}).body["hits"]["hits"]
    docs = [(h["_id"], config.build_text(h.get("_source") or {})) for h in hits]
    docs = [d for d in docs if d[1].strip()]
    if not docs:
        return Probe(same=None)
    vectors = embedder.embed_documents([text for _, text in docs])
    cosines = [c for c in (stored_cosine(es, index, config, doc_id, v) for (doc_id, _), v in zip(docs, vectors))
               if c is not None]
    if not cosines:
        return Probe(same=None)
    matched = sum(1 for c in cosines if c >= PROBE_MIN_COSINE)
    median = float(sorted(cosines)[len(cosines) // 2])
    return Probe(same=matched > 0 and 2 * matched >= len(cosines), checked=len(cosines), matched=matched,
                 median=round(median, 4))


def probe_figures(probe: Probe | None) -> str:
    """How a probe came out, for a message."""
    if probe is None:
        return "no document could be compared"
    return (f"of {probe.checked} sampled documents, {probe.matched} get a vector at cosine {PROBE_MIN_COSINE} or more "
            f"to their stored one (median {probe.median}; the same model gives > 0.999)")
