"""``reindex()``: the entry point that ties configuration, lock, pipeline and blue/green together."""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..client import server_info
from ..config import META_KEY, SemanticConfig, redact_url
from ..errors import ConfigError
from ..mappings import in_place_switch, lookup_property, read_config
from ..search.hybrid import knn_similarity
from .bluegreen import BlueGreen, new_index_advice, restore_pending
from .fingerprint import Fingerprinter, stored_info
from .lock import IndexLock, slice_key
from .options import ReindexOptions
from .pipeline import Pipeline, Plan, digest_kind, legacy_digest_of, weights_digest_of
from .reader import PitExpired, count_documents
from .report import ReindexReport
from .slices import SharedScan

log = logging.getLogger(__name__)

_VECTOR_DEFINING = ("model", "dims", "similarity")


def same_model(requested: str, configured: str) -> bool:
    """Whether ``--model`` is named like the configured model: the same string, or a folder named
    like the model id (``/models/Qwen3-Embedding-0.6B`` for ``Qwen/Qwen3-Embedding-0.6B``).

    A name proves nothing about the weights in the folder: ``reindex`` takes it as the configured
    model only when the index has no vector to check it against (see ``verify_same_model``)."""
    if requested == configured:
        return True
    tail = os.path.basename(os.path.normpath(requested))
    return bool(tail) and tail == configured.rstrip("/").rsplit("/", 1)[-1]


def effective_config(config: SemanticConfig, options: ReindexOptions, *,
                     same: bool | None = None) -> tuple[SemanticConfig, str, list[str]]:
    """(configuration the vectors are made for, where to load the model from, what changed).

    ``same`` says whether ``options.model`` is the configured model (as ``verify_same_model``
    found); None guesses from the name (``same_model``)."""
    load_from = options.model or config.model
    if options.model is None:
        same = True
    elif same is None:
        same = same_model(options.model, config.model)
    model = config.model if same else options.model
    new = config.with_overrides(model=model, dims=options.dims, similarity=options.similarity,
                                index_options=options.index_options, max_length=options.max_length)
    changed = [k for k in _VECTOR_DEFINING if getattr(new, k) != getattr(config, k)]
    if new.index_options != config.index_options:
        changed.append("index_options")
    return new, load_from, changed


def build_embedder(config: SemanticConfig, load_from: str, options: ReindexOptions) -> Any:
    """The embedder the configuration asks for (imported lazily: torch loads only here); with
    ``--embedding-url`` an OpenAI-compatible server runs the model and nothing is loaded here."""
    from ..embedding import embedder_for

    return embedder_for(config, load_from, device=options.device, dtype=options.dtype,
                        base_url=options.embedding_url, api_key=options.embedding_api_key)


#: Documents with a vector that ``decide_model`` samples: their recorded weights digests, or (for
#: vectors written before the digest was recorded) their fingerprints.
VERIFY_SAMPLE = 50


def settings_fingerprint_for(embedder: Any, config: SemanticConfig, *, weights: str | None = None) -> str:
    """The settings fingerprint ``embedder`` would have if it had been built for ``config`` (its dims
    and max length): what the vectors stored under ``config`` carry, without loading the model again.
    ``weights``: with that weights digest instead of its own (the earlier digest algorithm's)."""
    spec = getattr(embedder, "spec", None)
    if spec is None or not hasattr(embedder, "_dims") or not hasattr(embedder, "max_length"):
        return str(embedder.settings_fingerprint())  # not a local Embedder: nothing to adjust
    import inspect

    try:
        requested = config.max_length or int(inspect.signature(type(embedder)).parameters["max_length"].default)
    except (KeyError, TypeError, ValueError):
        requested = config.max_length or int(embedder.max_length)
    limit = model_length_limit(embedder)
    twin = copy.copy(embedder)  # shares the loaded model; only the two settings differ
    twin.max_length = min(int(requested), int(limit)) if limit else int(requested)
    twin._dims = config.dims
    if weights is not None and hasattr(twin, "_digest"):
        twin._digest = weights
    return str(twin.settings_fingerprint())


def model_length_limit(embedder: Any) -> int | None:
    """The most tokens the embedder's model takes (its ``max_seq_length``, else its position
    embeddings); None when unknown (a remote model)."""
    spec = getattr(embedder, "spec", None)
    limit = getattr(spec, "max_seq_length", None) or getattr(spec, "position_limit", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def sample_weights(es: Any, index: str, config: SemanticConfig, sample: int = VERIFY_SAMPLE,
                   kind: str = "") -> list[str]:
    """The weights digests recorded with up to ``sample`` vectors of ``index``
    (``<vector>_info.weights``; vectors written before it was recorded, or by a remote model, have none);
    with ``kind``, only digests of that algorithm (``digest_kind``)."""
    field_name = f"{config.info_field}.weights"
    filters: list[dict[str, Any]] = [{"exists": {"field": config.vector_field}}, {"exists": {"field": field_name}}]
    if kind:
        filters.append({"prefix": {field_name: kind}})
    response = es.search(
        index=index, size=sample, track_total_hits=False,
        query={"bool": {"filter": filters}},
        source={"includes": [field_name]},
    ).body
    found = []
    for hit in response["hits"]["hits"]:
        value = stored_info(hit.get("_source") or {}, config).get("weights")
        if isinstance(value, str) and value:
            found.append(value)
    return found


def verify_same_model(es: Any, index: str, config: SemanticConfig, embedder: Any,
                      sample: int = VERIFY_SAMPLE, legacy_probe: Probe | None = None) -> tuple[bool | None, int]:
    """By fingerprints: whether ``embedder`` holds the model the vectors of ``index`` were made with,
    and how many documents were checked (the check for vectors that record no weights digest).

    Fingerprints hash the model's weights (not its name or path), so the stored fingerprints of
    documents that have a vector are recomputed with ``embedder``: any match proves the same model
    (documents edited since they were embedded do not match under any model, hence a sample).
    A match only under the earlier weights digest proves less (it missed tensors retrained between
    the ends of a file): those documents' vectors are compared with what ``embedder`` makes of
    their texts (``probe_same_model``; ``legacy_probe``: that comparison, already made by
    ``check_legacy_vectors``). None when no document has a vector: nothing to check against."""
    response = es.search(
        index=index, size=sample, track_total_hits=False,
        query={"bool": {"filter": [{"exists": {"field": config.vector_field}},
                                   {"exists": {"field": f"{config.info_field}.fingerprint"}}]}},
        source={"includes": [*config.text_fields, config.info_field]},
    ).body
    hits = response["hits"]["hits"]
    current = Fingerprinter(settings_fingerprint_for(embedder, config), config)
    legacy = legacy_digest_of(embedder)
    earlier = Fingerprinter(settings_fingerprint_for(embedder, config, weights=legacy), config) if legacy else None
    checked = 0
    legacy_matches = []
    for hit in hits:
        source = hit.get("_source") or {}
        stored = stored_info(source, config).get("fingerprint")
        if not stored:
            continue
        checked += 1
        text = config.build_text(source)
        if current(text) == stored:
            return True, checked
        if earlier is not None and earlier(text) == stored:
            legacy_matches.append(hit)
    if legacy_matches:
        probe = legacy_probe or probe_same_model(es, index, config, embedder, hits=legacy_matches)
        if probe.same is not None:
            return probe.same, checked
    return (False, checked) if checked else (None, 0)


@dataclass
class ModelCheck:
    """How the job found out whether the loaded model is the one the stored vectors were made with."""

    #: True: the same model; False: another one; None: nothing to compare with (no check)
    same: bool | None = None
    #: "weights" (recorded weights digests), "fingerprint" (older vectors), "folder name" (no vector
    #: yet, an explicit --model), "none" (the configured model and nothing recorded)
    method: str = "none"
    checked: int = 0
    digest: str | None = None
    recorded: list[str] = field(default_factory=list)
    #: "server probe" / "probe": the model's vectors against the stored ones of the same texts
    probe: Probe | None = None
    #: vectors from before the current weights digest that their fingerprints would take as current,
    #: compared with the model's (None: there are none); only when ``legacy.same`` are they current
    legacy: Probe | None = None

    @property
    def accepts_legacy(self) -> bool:
        return self.legacy is not None and self.legacy.same is True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"same": self.same, "method": self.method, "checked": self.checked,
                               "weights": self.digest, "recorded": self.recorded}
        if self.probe is not None:
            out["probe"] = asdict(self.probe)
        if self.legacy is not None:
            out["earlier_digest_vectors"] = asdict(self.legacy)
        return out


#: Documents whose stored vectors a model's vectors of the same texts are compared with.
PROBE_SAMPLE = 20
#: Cosine a vector must reach with the stored one of the same text to count as the same model's.
#: The same model in another engine or precision (a server in bf16, this job in fp32) gives
#: > 0.999; a prompt or template difference about 0.95; another model's space about 0.
PROBE_MIN_COSINE = 0.99


@dataclass
class Probe:
    """Vectors made now against the stored ones of the same texts (``probe_same_model``)."""

    same: bool | None  # None: no document to compare with
    checked: int = 0
    matched: int = 0  # documents at PROBE_MIN_COSINE or more
    median: float | None = None


def stored_cosine(es: Any, index: str, config: SemanticConfig, doc_id: str, vector: Any) -> float | None:
    """The cosine between ``vector`` and the vector stored for ``doc_id``: exact, from a
    ``script_score`` over the raw stored vector (quantised kNN scores are approximate); where
    scripts are not allowed, from a kNN score restricted to the document."""
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


def probe_same_model(es: Any, index: str, config: SemanticConfig, embedder: Any,
                     hits: list[dict[str, Any]] | None = None, sample: int = PROBE_SAMPLE) -> Probe:
    """Whether ``embedder`` makes the vectors stored in ``index``: the texts of up to ``sample``
    documents that have a vector (``hits``: those documents, e.g. the ones whose text is known not
    to have changed) are embedded and compared with their stored vectors. The same model when at
    least half reach ``PROBE_MIN_COSINE`` (a document edited since it was embedded matches under no
    model, so not all need to); the check for models whose weights cannot be hashed (a server) or
    whose stored digest cannot tell (vectors from before the current digest)."""
    if hits is None:
        hits = es.search(
            index=index, size=sample, track_total_hits=False,
            query={"bool": {"filter": [{"exists": {"field": config.vector_field}}]}},
            source={"includes": list(config.text_fields)},
        ).body["hits"]["hits"]
    docs = [(h["_id"], config.build_text(h.get("_source") or {})) for h in hits[:sample]]
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


def legacy_current_hits(es: Any, index: str, config: SemanticConfig, embedder: Any,
                        sample: int = 5 * PROBE_SAMPLE) -> list[dict[str, Any]]:
    """Documents whose vector records no current weights digest but whose fingerprint, made with
    the earlier digest of ``embedder``'s folder, matches their text: what would be taken as current
    under the earlier digest (which is blind to a tensor retrained between the ends of a file)."""
    legacy = legacy_digest_of(embedder)
    if not legacy:
        return []
    kind = digest_kind(weights_digest_of(embedder))
    weights_field = f"{config.info_field}.weights"
    response = es.search(
        index=index, size=sample, track_total_hits=False,
        query={"bool": {"filter": [{"exists": {"field": config.vector_field}},
                                   {"exists": {"field": f"{config.info_field}.fingerprint"}}],
                        "must_not": [{"prefix": {weights_field: kind}}]}},
        source={"includes": [*config.text_fields, config.info_field]},
    ).body
    fp = Fingerprinter(settings_fingerprint_for(embedder, config, weights=legacy), config)
    found = []
    for hit in response["hits"]["hits"]:
        source = hit.get("_source") or {}
        info = stored_info(source, config)
        if not digest_kind(info.get("weights")) and info.get("fingerprint") == fp(config.build_text(source)):
            found.append(hit)
    return found


def check_legacy_vectors(es: Any, index: str, config: SemanticConfig, embedder: Any) -> Probe | None:
    """Whether the vectors written before the current weights digest, which their earlier-digest
    fingerprints would take as current, are this model's: compared with what it makes of their
    texts. None when there are none (nothing to accept)."""
    hits = legacy_current_hits(es, index, config, embedder)
    return probe_same_model(es, index, config, embedder, hits=hits) if hits else None


def check_model(es: Any, index: str, config: SemanticConfig, embedder: Any, *, explicit: bool) -> ModelCheck:
    """Whether ``embedder`` holds the model the vectors of ``index`` were made with.

    The vectors record the digest of the weights they were made with: if any sampled one records
    the loaded model's, it is the same model wherever it is loaded from; if none does, another one
    (also when the files of the configured folder were replaced). Vectors written before the digest
    was recorded: an explicit ``--model`` (``explicit``) is checked by recomputing their fingerprints;
    vectors from before the current digest that their fingerprints would take as current are
    compared with what the model makes of their texts (``check_legacy_vectors``); an embedding
    server (no weights to hash) is checked that way against any stored vectors."""
    digest = weights_digest_of(embedder)
    if digest is None and getattr(embedder, "backend_name", None) == "remote":
        probe = probe_same_model(es, index, config, embedder)
        return ModelCheck(same=probe.same, method="server probe" if probe.same is not None else "none",
                          checked=probe.checked, probe=probe)
    kind = digest_kind(digest)
    # Only digests of the loaded model's algorithm compare: vectors recording the earlier one (it
    # sampled only the ends of each weights file) are checked like vectors that record none.
    recorded = [r for r in sample_weights(es, index, config, kind=kind) if digest_kind(r) == kind] if digest else []
    legacy = check_legacy_vectors(es, index, config, embedder) if digest else None
    if recorded:
        return ModelCheck(same=digest in recorded, method="weights", checked=len(recorded), digest=digest,
                          recorded=sorted(set(recorded)), legacy=legacy)
    if not explicit:
        if legacy is not None and legacy.same is not None:
            return ModelCheck(same=legacy.same, method="probe", checked=legacy.checked, digest=digest, probe=legacy,
                              legacy=legacy)
        return ModelCheck(digest=digest)
    verdict, checked = verify_same_model(es, index, config, embedder, legacy_probe=legacy)
    if verdict is None:
        return ModelCheck(method="folder name", digest=digest, legacy=legacy)
    return ModelCheck(same=verdict, method="fingerprint", checked=checked, digest=digest, legacy=legacy)


def decide_model(es: Any, index: str, config: SemanticConfig, options: ReindexOptions,
                 embedder: Any) -> tuple[SemanticConfig, list[str], ModelCheck]:
    """The target configuration once the model is loaded, what it changes, and how that was found:
    the configured model if the stored vectors prove it the same (``check_model``), else a model
    change, which needs ``--new-index`` (``ConfigError`` otherwise). ``changed`` holds "weights"
    when the configured model's own files now hold other weights."""
    explicit = options.model is not None and options.model != config.model
    check = check_model(es, index, config, embedder, explicit=explicit)
    if explicit:
        assert options.model is not None
        same = check.same
        if same is None:
            same = same_model(options.model, config.model)
            if same:
                log.warning("no document of %r has a vector yet, so nothing shows whether --model %s holds the "
                            "configured model %s; taking it as the same because the folder is named like it",
                            index, options.model, config.model)
        target, _, changed = effective_config(config, options, same=same)
    else:
        target, _, changed = effective_config(config, options, same=True)
        if check.same is False:
            # Other weights under the configured name: another model, whose similarities the
            # calibrated threshold does not describe.
            target = replace(target, min_score=None)
            changed = ["weights", *changed]
    if ("model" in changed or "weights" in changed) and not options.new_index:
        raise ConfigError(model_refusal(es, index, config, options, check, target))
    if check.method == "server probe" and check.same is False and not explicit:
        # the new index would be labelled with the configured model while holding the server's
        raise ConfigError(
            f"the embedding server ({redact_url(options.embedding_url or '')}) serves another model than "
            f"{config.model!r}, the one configured for {index!r} ({probe_figures(check.probe)}). Name the model "
            "it serves with --model NAME, so that the new index records it (searches then ask the server for it)")
    return target, changed, check


def _with_model_dims(target: SemanticConfig, options: ReindexOptions) -> SemanticConfig:
    """``target`` with the dims its (local) model makes where ``--dims`` was not given: what
    install-mappings --model would configure."""
    if options.dims is not None or options.embedding_url:
        return target
    from ..errors import EsSemanticError
    from ..mappings import resolve_model_dims

    try:
        return replace(target, dims=resolve_model_dims(target.model))
    except EsSemanticError:
        return target


def probe_figures(probe: Probe | None) -> str:
    """How a probe came out, for a message."""
    if probe is None:
        return "no document could be compared"
    return (f"of {probe.checked} sampled documents, {probe.matched} get a vector at cosine {PROBE_MIN_COSINE} or more "
            f"to their stored one (median {probe.median}; the same model gives > 0.999)")


def model_refusal(es: Any, index: str, config: SemanticConfig, options: ReindexOptions, check: ModelCheck,
                  target: SemanticConfig | None = None) -> str:
    """Why the loaded model cannot embed ``index`` in place, and what to do, for each way it was found
    (``target``: the configuration asked for; while the index holds no vector it is set in place)."""
    switch = in_place_switch(es, index, config, _with_model_dims(target, options)) if target is not None else None
    if switch is None:
        switch = new_index_advice(es, index, options)  # "Build a new index ...: <command>", with --model when given
        switch = switch[:1].lower() + switch[1:]
    if check.method == "server probe":
        name = options.model or config.model
        return (
            f"the embedding server ({redact_url(options.embedding_url or '')}) does not make the vectors stored in "
            f"{index!r}: asked for model {name!r}, {probe_figures(check.probe)}, so it serves another model, or "
            "the same one with other prompt, template or pooling settings. Documents edited since they were "
            "embedded match under no model: if most were, this can also be the right model. Vectors of two "
            f"models cannot be mixed in one field. To switch to the server's model, {switch}. To keep the vectors, "
            "point --embedding-url at a server running the model they were made with, or leave it out to use the "
            "local model")
    if check.method == "probe":
        return (
            f"the vectors of {index!r} (written before the current weights digest was recorded) are not what the "
            f"configured model's folder {config.model} makes of their texts now: {probe_figures(check.probe)}, "
            "although their fingerprints match (the earlier digest read only the ends of each weights file, so "
            "weights retrained in between pass it). The folder's weights changed since those vectors were "
            f"written. Vectors of two models cannot be mixed in one field. To switch to this folder's weights, "
            f"{switch}. To keep the vectors, put the weights they were made with back, or pass --model pointing "
            "at a copy of them")
    if options.model is None or options.model == config.model:
        # Which side changed is unknown: the folder's files since the vectors were written, or the
        # vectors were written from another folder (a --model named like it, taken as it while the
        # index had no vector yet).
        return (
            f"the vectors of {index!r} were made with other weights than the configured model's folder "
            f"{config.model} holds: none of the {check.checked} sampled vectors records the digest of its weights "
            f"({check.digest}; they record {', '.join(check.recorded[:3])}). Either the folder's files changed "
            "since those vectors were written (another model copied there, a new revision downloaded, retrained "
            "weights), or the vectors were written with another folder's weights (a --model named like the "
            "configured model, taken as it while the index had no vector yet). Vectors of two models "
            f"cannot be mixed in one field. To switch to this folder's weights, {switch}. To keep the vectors, "
            "load the weights they were made with (pass --model pointing at a copy of them, or put them in "
            "the configured folder)")
    head = f"--model {options.model} is not the configured model {config.model!r}: "
    if check.method == "weights":
        why = (f"none of the {check.checked} sampled vectors of {index!r} was made with its weights (weights digest "
               f"{check.digest}; they record {', '.join(check.recorded[:3])})")
        keep = ("rerun without --model, or with --model pointing at a copy of the configured model's files "
                "(any folder name)")
    elif check.method == "fingerprint":
        why = (f"none of the {check.checked} sampled vectors of {index!r} matches what it makes of its document's "
               "text (these vectors predate the record of the weights digest, so only their fingerprints can tell, "
               "and a document edited since it was embedded matches under no model)")
        keep = ("rerun without --model: it records the weights digest with every vector it writes, after which "
                "a copy of the model is recognised whatever its folder is called")
    else:
        tail = config.model.rstrip("/").rsplit("/", 1)[-1]
        why = f"{index!r} has no vector to compare it with yet, and its folder is not named like the configured model"
        keep = (f"rerun without --model, or with --model pointing at a copy of it in a folder named {tail!r} "
                "(with no vector yet, only the folder name can tell)")
    return (f"{head}{why}. Vectors of two models cannot be mixed in one field. To switch to it, {switch}. "
            f"To keep the configured model, {keep}")


def _cap_max_length(target: SemanticConfig, options: ReindexOptions, embedder: Any,
                    report: ReindexReport) -> SemanticConfig:
    """``target`` with a ``--max-length`` above the model's limit cut to that limit (the embedder
    uses no more), so that what is stored and reported is what is used; a warning says so."""
    used = getattr(embedder, "max_length", None)
    report.max_length = int(used) if isinstance(used, int) else target.max_length
    limit = model_length_limit(embedder)
    if options.max_length is None or limit is None or options.max_length <= limit:
        return target
    if options.dry_run:  # a dry run stores nothing
        log.warning("--max-length %d is more than the model takes (%d tokens per text); a run would use and "
                    "store %d", options.max_length, limit, limit)
    else:
        log.warning("--max-length %d is more than the model takes (%d tokens per text); using and storing %d",
                    options.max_length, limit, limit)
    report.max_length_capped = {"asked": options.max_length, "used": limit}
    return replace(target, max_length=limit)


def ensure_weights_field(es: Any, index: str, config: SemanticConfig) -> None:
    """Map ``<vector>_info.weights`` (keyword) in every index behind ``index`` that was configured
    before it existed: under a strict mapping a write of it would be refused, and unmapped it could
    not be searched for. Adding a field to an object is always allowed; if it fails anyway (no
    permission to change mappings) the job goes on and says so."""
    for name, body in es.indices.get_mapping(index=index).body.items():
        info = lookup_property((body.get("mappings") or {}).get("properties") or {}, config.info_field)
        if info is None or "weights" in (info.get("properties") or {}):
            continue
        try:
            es.indices.put_mapping(index=name, properties={
                config.info_field: {"properties": {"weights": {"type": "keyword"}}}})
        except Exception as exc:  # noqa: BLE001 - the writes say more if this matters
            log.warning("could not map %s.weights in %r (%s); the digest of the model weights is recorded "
                        "with each vector all the same", config.info_field, name, exc)


def store_config(es: Any, index: str, config: SemanticConfig) -> None:
    """Write ``config`` into the ``_meta`` of every index behind ``index``, other ``_meta`` keys kept."""
    for name, body in es.indices.get_mapping(index=index).body.items():
        meta = dict((body.get("mappings") or {}).get("_meta") or {})
        meta[META_KEY] = config.to_meta()
        es.indices.put_mapping(index=name, meta=meta)


def restore_left_settings(es: Any, lock: IndexLock, report: ReindexReport) -> None:
    """Put back the settings a dead job left changed (``pending_restore`` of the expired locks the
    job took over or adopted), right after the lock is taken."""
    pending = lock.pending_restore
    if not pending:
        return
    restored = restore_pending(es, pending)
    report.settings_restored.update(restored)
    lock.set_field("pending_restore", {})
    lock.pending_restore = {}
    if restored:
        log.warning("restored settings a previous job left changed: %s", restored)
    else:
        log.info("settings a previous job left to restore belong to indices that no longer exist: %s",
                 sorted(pending))


def warn_left_settings(es: Any, index: str, options: ReindexOptions, report: ReindexReport) -> None:
    """A dry run takes no lock and restores nothing: say which settings a dead job left changed
    (found in its expired locks, as the next real run would find them), and how to put them back."""
    try:
        peek = IndexLock(es, index, lock_index=options.lock_index, slices=options.slices, slice_id=options.slice_id,
                         ttl_s=options.lock_ttl_s)
        left = peek.left_to_restore()
    except Exception as exc:  # noqa: BLE001 - a dry run only reports: never fail it for this look
        log.debug("could not look for settings a dead job left to restore: %s", exc)
        return
    if not left:
        return
    report.settings_left_to_restore = left
    details = "; ".join(f"{name}: {', '.join(f'{k}={json.dumps(v)}' for k, v in sorted(settings.items()))}"
                        for name, settings in sorted(left.items()))
    log.warning("a job on %r died and left index settings changed that a run puts back (%s; null: the default, "
                "e.g. no block); this dry run takes no "
                "lock and restores nothing. Run without --dry-run to restore them (it does so first thing, right "
                "after taking the lock): es-semantic reindex --index %s", index, details, index)


def lock_key(index: str, options: ReindexOptions) -> str:
    """The lock key of a job on the concrete ``index`` (see ``lock.IndexLock``)."""
    return index if options.slices == 1 else slice_key(index, options.slice_id, options.slices)


def reindex(es: Any, index: str, *, embedder: Any = None, options: ReindexOptions | None = None,
            progress: Callable[[ReindexReport], None] | None = None) -> ReindexReport:
    """Embed the documents of ``index`` that need it and write their vectors back.

    The configuration comes from the index ``_meta`` (written by ``install-mappings``); ``options``
    override it. Documents whose stored fingerprint is current are skipped, so a rerun after a
    crash only does what is left. Changing the model, dims or similarity needs
    ``options.new_index`` (blue/green: ``index`` must then be an alias). ``progress`` is called
    with the live report as work advances. Returns the report; raises ``LockHeld`` when another
    job holds the index, ``ConfigError`` for bad options. Failed documents do not raise: they are
    in ``report.failures`` (``report.ok`` is False).
    """
    options = options or ReindexOptions()
    report = ReindexReport(index=index, dry_run=options.dry_run)
    lock: IndexLock | None = None
    try:
        config = read_config(es, index)
        # The model is decided once it is loaded (checked against the weights the stored vectors
        # record); every other setting can be checked before taking the lock or loading anything.
        target_config, load_from, changed = effective_config(config, options, same=True)
        if changed and not options.new_index:
            details = ", ".join(f"{k} {getattr(config, k)!r} -> {getattr(target_config, k)!r}" for k in changed)
            wanted = replace(target_config, model=options.model) if options.model else target_config
            in_place = in_place_switch(es, index, config, wanted)
            raise ConfigError(
                f"the options change what {index!r} stores ({details}); vectors of two configurations cannot be "
                f"mixed in one field. {'To switch, ' + in_place if in_place else new_index_advice(es, index, options)}"
            )
        report.model = target_config.model
        base64_vectors = server_info(es).supports_base64_vectors
        if options.lock and not options.dry_run:
            # The lock first: a second job says so at once instead of after loading a model.
            # Keyed on the concrete indices behind the name: an alias and its index are one index.
            lock = IndexLock(es, index, lock_index=options.lock_index, slices=options.slices,
                             slice_id=options.slice_id, ttl_s=options.lock_ttl_s)
            lock.acquire()
            report.lock = {"key": lock.key, "keys": lock.keys, "owner": lock.owner,
                           "took_over": lock.previous is not None}
            if lock.adopted:
                report.lock["adopted"] = lock.adopted
            # Before anything that can fail (loading or refusing the model, a dims mismatch): a job
            # that stops early must not leave the old index write-blocked by a dead job.
            restore_left_settings(es, lock, report)
        elif options.dry_run:
            warn_left_settings(es, index, options, report)
        if embedder is None:
            embedder = build_embedder(target_config, load_from, options)
        target_config, changed, check = decide_model(es, index, config, options, embedder)
        report.model = target_config.model
        report.model_check = check.to_dict()
        if config.min_score is not None and target_config.min_score is None and not options.dry_run:
            report.warnings.append(min_score_dropped(index, config, options))
        target_config = _cap_max_length(target_config, options, embedder, report)
        if int(embedder.dims) != target_config.dims:
            raise ConfigError(f"the embedder makes {embedder.dims}-dim vectors but {index!r} is configured for "
                              f"{target_config.dims} dims; pass dims={target_config.dims} to the Embedder")
        if not options.new_index and not options.dry_run and target_config.max_length != config.max_length:
            # In place (same model): store the new max length first, so that status, searches and
            # the next runs use it too, also if this run stops half-way.
            store_config(es, index, target_config)
        if not options.new_index and not options.dry_run and weights_digest_of(embedder):
            ensure_weights_field(es, index, target_config)
        # Rates count from here: loading the model is setup, reported apart.
        report.setup_seconds = round(time.time() - report.started_at, 3)
        report.started_at = time.time()
        same_vectors = not {"model", "dims", "similarity", "weights"} & set(changed)
        _run(es, index, config, target_config, embedder, options, report, progress, lock, base64_vectors,
             same_vectors, accept_legacy=check.accepts_legacy)
        for note in (missing_text_note(es, index, target_config, report), non_text_note(report)):
            if note:
                report.warnings.append(note)
    except BaseException as exc:
        exc.report = report  # type: ignore[attr-defined]  # the CLI still writes --report
        raise
    finally:
        report.finished_at = time.time()
        if lock is not None:
            lock.release()
    return report


def min_score_dropped(index: str, config: SemanticConfig, options: ReindexOptions) -> str:
    """What to do now that the calibrated threshold no longer applies (another model's similarities)."""
    where = "is not carried to the new index" if options.new_index else "is dropped"
    return (f"the no-good-match threshold min_score {config.min_score:g} of {index!r} {where}: it was chosen for "
            "the similarities of the vectors it replaces, and searches run without one until a new one is chosen: "
            f"es-semantic eval --index {index} --queries Q.jsonl --qrels QRELS.tsv --calibrate --save")


def missing_text_note(es: Any, index: str, config: SemanticConfig, report: ReindexReport) -> str | None:
    """When half the documents read or more have nothing in the configured text fields: which
    text fields the index has instead, and the command that embeds those (None otherwise)."""
    if not report.read or report.empty * 2 < report.read:
        return None
    from ..mappings import text_fields_in

    try:
        body = es.indices.get_mapping(index=index).body
    except Exception:  # noqa: BLE001 - only a hint: without the mapping it names no fields
        body = {}
    others: set[str] = set()
    for mapping in body.values():
        texts = set(text_fields_in((mapping.get("mappings") or {}).get("properties") or {}, config))
        others |= {f for f in texts
                   if not ("." in f and f.rsplit(".", 1)[0] in texts)  # a text field's multi-field is that field
                   and not any(f == t or f.startswith(t + ".") for t in config.text_fields)}
    head = (f"{report.empty} of the {report.read} documents read have no text in "
            f"{', '.join(config.text_fields)} (the configured text fields), so they "
            + ("would not be embedded" if report.dry_run else "were not embedded"))
    if not others:
        return head
    suggestion = ",".join([*config.text_fields, *sorted(others)[:4]])  # added to, not instead of, the configured
    return (f"{head}; {index!r} also has the text fields {', '.join(sorted(others))}. To embed those: "
            f"es-semantic install-mappings --index {index} --text-fields {suggestion}, then reindex")


def non_text_note(report: ReindexReport) -> str | None:
    """Which text fields held objects (no text taken from them), in how many documents read."""
    if not report.non_text_values:
        return None
    counts = ", ".join(f"{name!r} in {n}" for name, n in sorted(report.non_text_values.items()))
    first = min(report.non_text_values)
    return (f"text fields holding an object, which adds no text to what is embedded, in documents read: {counts}; "
            f"to embed the text inside, name its fields (install-mappings --text-fields {first}.FIELD,...)")


#: Reads of one pass, each on a new point in time after the last one expired, before giving up.
PIT_ATTEMPTS = 3
_COUNTS = ("read", "skipped", "empty", "embedded", "to_embed", "_written_empty")


def _counts(report: ReindexReport) -> dict[str, int]:
    with report._mutex:
        return {name: getattr(report, name) for name in _COUNTS}


def _forget_reads(report: ReindexReport, before: dict[str, int]) -> int:
    """Undo what an attempt whose point in time expired counted as read (the next attempt reads
    those documents again); keep what it wrote. Returns how many documents it wrote: the next
    attempt finds them current, and must not count them as skipped on top of their first count."""
    with report._mutex:
        embedded = report.embedded - before["embedded"]
        written_empty = report._written_empty - before["_written_empty"]
        report.read = before["read"]
        report.skipped = before["skipped"]
        report.empty = before["empty"] + written_empty  # the ones written stay; "nothing to embed" is re-read
        report.to_embed = before["to_embed"] + embedded
    return embedded + written_empty


def _with_pit_retries(es: Any, index: str, report: ReindexReport, options: ReindexOptions, pipeline: Pipeline,
                      run_once: Callable[[int], Any], what: str) -> Any:
    """``run_once(attempt)``, read again on a new point in time when its point in time expires
    (the reader waited longer than the keep-alive for the embedder or the cluster): documents done
    are skipped by their fingerprint, and counted once. After ``PIT_ATTEMPTS`` reads, a clear error."""
    carried = 0  # documents written by attempts whose point in time expired
    for attempt in range(1, PIT_ATTEMPTS + 1):
        before = _counts(report)
        try:
            result = run_once(attempt)
        except PitExpired as exc:
            if attempt == PIT_ATTEMPTS:
                raise PitExpired(
                    f"{exc}, {PIT_ATTEMPTS} times: reading waited longer than the keep-alive for the embedder "
                    f"or the cluster each time. Rerun with a longer --keep-alive (e.g. --keep-alive 2h; "
                    f"now {options.keep_alive}): documents done are skipped"
                ) from None
            carried += _forget_reads(report, before)
            report.add(pit_reopened=1)
            log.warning("%s; reading %s again on a new point in time (documents done are skipped)", exc, what)
            if not options.dry_run:
                # The new point in time must see what was written, or it would all be embedded again.
                pipeline.retry.call(es.indices.refresh, index=index)
            continue
        if carried:
            with report._mutex:
                report.skipped -= min(carried, report.skipped - before["skipped"])
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _run_slice(es: Any, index: str, options: ReindexOptions, pipeline: Pipeline, plan: Plan,
               report: ReindexReport, lock: IndexLock | None) -> Any:
    """One slice of a sliced run, on the point in time all its slices share (see ``slices``)."""
    # Keyed on the concrete indices the lock was taken on: an alias and its index are one run.
    scan = SharedScan(es, index, slices=options.slices, slice_id=options.slice_id, query=options.query,
                      lock_index=options.lock_index, keep_alive=options.keep_alive, retry=pipeline.retry,
                      indices=lock.indices if lock is not None else None)

    def once(attempt: int) -> Any:
        pit_id = scan.join()  # the published one if alive, else a new one
        return pipeline.run(plan, slice_id=options.slice_id, slices=options.slices, pit_id=pit_id,
                            keep_alive=scan.keep_alive)

    result = _with_pit_retries(es, index, report, options, pipeline, once, f"slice {options.slice_id}")
    report.shared_pit = {"key": scan.key, "opened": scan.opened, "replaced_expired": scan.replaced_expired}
    scan.finish()
    return result


def _run(es: Any, index: str, config: SemanticConfig, target_config: SemanticConfig, embedder: Any,
         options: ReindexOptions, report: ReindexReport, progress: Callable[[ReindexReport], None] | None,
         lock: IndexLock | None, base64_vectors: bool, same_vectors: bool = True,
         accept_legacy: bool = False) -> None:
    pipeline = Pipeline(es, embedder, options, report, progress, check=lock.check if lock else None)
    pipeline.accept_legacy = accept_legacy
    if options.new_index:
        def copy(attempt: int) -> None:
            # Again after an expired point in time: the unfinished copy is resumed, what was copied skipped.
            BlueGreen(es, index, config, target_config, pipeline,
                      new_index=options.new_index if isinstance(options.new_index, str) else None,
                      model_label=target_config.model, base64_vectors=base64_vectors, lock=lock,
                      same_vectors=same_vectors).run()

        _with_pit_retries(es, index, report, options, pipeline, copy, "the index to copy")
    else:
        total = count_documents(es, index, options.query)  # type: ignore[arg-type]
        report.total = None if total is None else -(-total // options.slices)  # a slice's share
        plan = Plan(read_index=index, config=target_config, model_label=target_config.model,
                    source_includes=[*target_config.text_fields, target_config.info_field],
                    base64_vectors=base64_vectors, query=options.query)  # type: ignore[arg-type]
        if options.slices > 1 and not options.dry_run:
            result = _run_slice(es, index, options, pipeline, plan, report, lock)
        else:
            # A dry run reads its slice on a point in time of its own: it writes no shared-scan record.
            result = _with_pit_retries(es, index, report, options, pipeline, lambda attempt: pipeline.run(
                plan, slice_id=options.slice_id, slices=options.slices), "the index")
        if not options.dry_run:
            pipeline.resolve_conflicts(plan, result.conflicts)
            if report.embedded or report.empty:
                # One refresh at the end: the new vectors are searchable (and a status or rerun
                # sees them) at once instead of at the index's next periodic refresh.
                pipeline.retry.call(es.indices.refresh, index=index)
