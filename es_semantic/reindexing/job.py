"""``reindex()``: the entry point that ties configuration, lock, pipeline and blue/green together."""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..client import server_info
from ..config import META_KEY, SemanticConfig, redact_url
from ..embedding import TextEmbedder
from ..errors import ConfigError
from ..mappings import read_config
from .bluegreen import BlueGreen, new_index_advice, restore_pending
from .identity import ModelCheck, check_model, holds_vectors, probe_figures, record_digest
from .lock import IndexLock, slice_key
from .options import ReindexOptions
from .pipeline import Pipeline, Plan
from .reader import PitExpired, count_documents
from .report import ReindexReport
from .slices import SharedScan

log = logging.getLogger(__name__)

#: The vector field's mapping settings: changed in place only while the index holds no vector.
_MAPPED = ("dims", "similarity", "index_options")


def effective_config(config: SemanticConfig, options: ReindexOptions, *,
                     model: str | None = None) -> tuple[SemanticConfig, list[str]]:
    """(configuration the vectors are made for, the vector-defining settings it changes): ``options``
    over ``config``, labelled with ``model`` (default: ``options.model``, else the configured one)."""
    new = config.with_overrides(model=model or options.model, dims=options.dims, similarity=options.similarity,
                                index_options=options.index_options, max_length=options.max_length)
    return new, [k for k in ("model", *_MAPPED) if getattr(new, k) != getattr(config, k)]


def build_embedder(config: SemanticConfig, load_from: str, options: ReindexOptions) -> TextEmbedder:
    """The embedder the configuration asks for (imported lazily: torch loads only here); with
    ``--embedding-url`` an OpenAI-compatible server runs the model and nothing is loaded here."""
    from ..embedding import embedder_for

    return embedder_for(config, load_from, device=options.device, dtype=options.dtype,
                        base_url=options.embedding_url, api_key=options.embedding_api_key)


def decide_model(es: Any, index: str, config: SemanticConfig, options: ReindexOptions,
                 embedder: TextEmbedder) -> tuple[SemanticConfig, list[str], ModelCheck]:
    """The target configuration once the model is loaded, what it changes, and how the model was
    found (``identity.check_model``): the configured model when it made the index's vectors, wherever
    it was loaded from; the one asked for while the index holds no vector; else another model, which
    only ``--new-index`` takes (``ConfigError`` otherwise). "weights" in ``changed``: other weights
    under the configured model's name."""
    check = check_model(es, index, config, embedder)
    if check.same or (check.same is None and check.method != "no vectors"):
        target, changed = effective_config(config, options, model=config.model)
        return target, changed, check
    target, changed = effective_config(config, options)
    if check.same is None:  # no vector yet: nothing to protect, but the field's dims are the mapping's
        native = embedder.native_dims
        if "model" in changed and options.dims is None and native is not None and native != config.dims:
            raise ConfigError(in_place_advice(index, config, replace(target, dims=native),
                                              f"model {target.model!r} makes {native}-dim vectors")
                              + f" (or, for a model trained for truncation, keep {config.dims} with --dims "
                                f"{config.dims})")
        return target, changed, check
    if "model" not in changed:  # other weights under the configured name: another model's similarities
        target, changed = replace(target, min_score=None), ["weights", *changed]
    if not options.new_index:
        raise ConfigError(model_refusal(es, index, config, options, check))
    if check.method == "probe" and embedder_is_server(check) and options.model is None:
        # the new index would be labelled with the configured model while holding the server's
        raise ConfigError(
            f"the embedding server ({redact_url(options.embedding_url or '')}) serves another model than "
            f"{config.model!r}, the one configured for {index!r} ({probe_figures(check.probe)}); name the model "
            "it serves with --model NAME, so that the new index records it")
    return target, changed, check


def embedder_is_server(check: ModelCheck) -> bool:
    """Whether the checked model has no files here (an embedding server)."""
    return check.digest is None


def model_refusal(es: Any, index: str, config: SemanticConfig, options: ReindexOptions, check: ModelCheck) -> str:
    """Why the loaded model cannot embed ``index`` in place, and what to do."""
    switch = new_index_advice(es, index, options)  # "Build a new index ...: <command>", with --model when given
    switch = switch[:1].lower() + switch[1:]
    if check.method == "probe" and embedder_is_server(check):
        return (f"the embedding server ({redact_url(options.embedding_url or '')}) does not make the vectors "
                f"stored in {index!r}: asked for model {options.model or config.model!r}, {probe_figures(check.probe)}"
                f"; vectors of two models cannot be mixed in one field. To switch to the server's model, {switch}")
    if check.method == "probe":
        return (f"model {options.model or config.model!r} does not make the vectors an embedding server stored in "
                f"{index!r}: {probe_figures(check.probe)}; vectors of two models cannot be mixed in one field. To "
                f"switch to it, {switch}")
    recorded = [r for r in check.recorded or [] if r]
    made_by = f"weights digest {', '.join(recorded)}" if recorded else "an embedding server (no weights digest)"
    return (f"model {options.model or config.model!r} (weights digest {check.digest}) did not make the vectors "
            f"of {index!r} (made with {made_by}); vectors of two models cannot be mixed in one field. To switch "
            f"to it, {switch}. To keep the vectors, load the model they were made with")


def apply_in_place(es: Any, index: str, config: SemanticConfig, target: SemanticConfig, check: ModelCheck,
                   embedder: TextEmbedder) -> None:
    """Before the first write of an in-place run: store what changed (the model while the index holds
    no vector; the max length), and record the digest of the model that makes the first vectors (None
    for a server's)."""
    if target != config:
        # first, so that status, searches and the next runs use it too, also if this run stops half-way
        store_config(es, index, target)
    # with the first vectors; or the local model found to make what a server stored (recorded None)
    if check.method == "no vectors" or (check.same and check.recorded == [None] and embedder.weights_digest):
        record_digest(es, index, embedder.weights_digest)


def _cap_max_length(target: SemanticConfig, options: ReindexOptions, embedder: TextEmbedder,
                    report: ReindexReport) -> SemanticConfig:
    """``target`` with a ``--max-length`` above the model's limit cut to that limit (the embedder
    uses no more), so that what is stored and reported is what is used; a warning says so."""
    report.max_length = int(embedder.max_length)
    limit = embedder.length_limit
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


def reindex(es: Any, index: str, *, embedder: TextEmbedder | None = None, options: ReindexOptions | None = None,
            progress: Callable[[ReindexReport], None] | None = None) -> ReindexReport:
    """Embed the documents of ``index`` that need it and write their vectors back.

    The configuration comes from the index ``_meta`` (written by ``install-mappings``); ``options``
    override it. Documents whose stored fingerprint is current are skipped, so a rerun after a
    crash only does what is left. Another model, dims or similarity than the vectors of ``index``
    were made with needs ``options.new_index`` (blue/green), unless the index holds no vector yet.
    ``progress`` is called with the live report as work advances. Returns the report; raises
    ``LockHeld`` when another job holds the index, ``ConfigError`` for bad options. Failed documents
    do not raise: they are in ``report.failures`` (``report.ok`` is False).
    """
    options = options or ReindexOptions()
    report = ReindexReport(index=index, dry_run=options.dry_run)
    lock: IndexLock | None = None
    try:
        config = read_config(es, index)
        target_config = refuse_mapped_changes(es, index, config, options)
        report.model = target_config.model
        base64_vectors = server_info(es).supports_base64_vectors
        lock = _take_lock(es, index, options, report)  # first: a second job says so before a model loads
        if embedder is None:
            embedder = build_embedder(target_config, options.model or config.model, options)
        truncated_before = embedder.stats.truncated
        target_config, changed = _prepare_model(es, index, config, options, embedder, report)
        # Rates count from here: loading the model is setup, reported apart.
        report.setup_seconds = round(time.time() - report.started_at, 3)
        report.started_at = time.time()
        same_vectors = not {"model", "dims", "similarity", "weights"} & set(changed)
        _run(es, index, config, target_config, embedder, options, report, progress, lock, base64_vectors,
             same_vectors)
        _closing_warnings(es, index, target_config, embedder, embedder.stats.truncated - truncated_before, report)
    except BaseException as exc:
        exc.report = report  # type: ignore[attr-defined]  # the CLI still writes --report
        raise
    finally:
        report.finished_at = time.time()
        if lock is not None:
            lock.release()
    return report


def refuse_mapped_changes(es: Any, index: str, config: SemanticConfig, options: ReindexOptions) -> SemanticConfig:
    """The configuration ``options`` ask for; ``ConfigError`` where they change the vector field's
    mapping (dims, similarity, index options) of an index holding vectors without ``--new-index``.
    Checked before the lock is taken or a model loaded."""
    target, changed = effective_config(config, options)
    mapped = [k for k in changed if k in _MAPPED]
    if not mapped or options.new_index:
        return target
    details = ", ".join(f"{k} {getattr(config, k)!r} -> {getattr(target, k)!r}" for k in mapped)
    if holds_vectors(es, index, config):
        raise ConfigError(f"the options change what {index!r} stores ({details}); vectors of two configurations "
                          f"cannot be mixed in one field. {new_index_advice(es, index, options)}")
    raise ConfigError(in_place_advice(index, config, target, f"the options change {details}"))


def in_place_advice(index: str, config: SemanticConfig, target: SemanticConfig, why: str) -> str:
    """While ``index`` holds no vector: the vector field's mapping (dims, similarity, index options)
    is changed in place by install-mappings (Elasticsearch cannot change a field's dims), then reindex."""
    command = f"es-semantic install-mappings --index {index}"
    for key, flag in (("model", "--model"), ("dims", "--dims"), ("similarity", "--similarity")):
        if getattr(target, key) != getattr(config, key):
            command += f" {flag} {shlex.quote(str(getattr(target, key)))}"
    if target.index_options != config.index_options:
        command += f" --index-options {target.index_options['type']}"
    if (target.dims, target.similarity, target.index_options) != (config.dims, config.similarity,
                                                                  config.index_options):
        # Elasticsearch cannot change a dense_vector's dims or similarity: a new field, which costs nothing yet
        command += f" --vector-field {config.vector_field}_{target.dims}"
    return (f"{why}, which the vector field of {index!r} is not mapped for; {index!r} holds no vector yet, so "
            f"change it in place: {command}, then es-semantic reindex --index {index}")


def _take_lock(es: Any, index: str, options: ReindexOptions, report: ReindexReport) -> IndexLock | None:
    """The job's lock on ``index`` (keyed on the concrete indices behind the name: an alias and its
    index are one index), with the settings a dead job left changed put back; None for a dry run
    (which says what a run would restore) or ``lock=False``."""
    if options.dry_run:
        warn_left_settings(es, index, options, report)
        return None
    if not options.lock:
        return None
    lock = IndexLock(es, index, lock_index=options.lock_index, slices=options.slices,
                     slice_id=options.slice_id, ttl_s=options.lock_ttl_s)
    lock.acquire()
    try:
        report.lock = {"key": lock.key, "keys": lock.keys, "owner": lock.owner,
                       "took_over": lock.previous is not None}
        if lock.adopted:
            report.lock["adopted"] = lock.adopted
        # Before anything that can fail (loading or refusing the model, a dims mismatch): a job
        # that stops early must not leave the old index write-blocked by a dead job.
        restore_left_settings(es, lock, report)
    except BaseException:
        lock.release()
        raise
    return lock


def _prepare_model(es: Any, index: str, config: SemanticConfig, options: ReindexOptions, embedder: TextEmbedder,
                   report: ReindexReport) -> tuple[SemanticConfig, list[str]]:
    """Decide the model (``decide_model``) and the configuration to embed for; in place, store it."""
    target, changed, check = decide_model(es, index, config, options, embedder)
    report.model = target.model
    report.model_check = check.to_dict()
    if config.min_score is not None and target.min_score is None and not options.dry_run:
        report.warnings.append(min_score_dropped(index, config, options))
    target = _cap_max_length(target, options, embedder, report)
    if int(embedder.dims) != target.dims:
        raise ConfigError(f"the embedder makes {embedder.dims}-dim vectors but {index!r} is configured for "
                          f"{target.dims} dims; pass dims={target.dims} to the Embedder")
    if not options.new_index and not options.dry_run:
        apply_in_place(es, index, config, target, check, embedder)
    return target, changed


def _closing_warnings(es: Any, index: str, config: SemanticConfig, embedder: TextEmbedder, truncated: int,
                      report: ReindexReport) -> None:
    """The run's warnings, once each: texts truncated, documents without text, text fields holding objects."""
    if truncated:
        report.warnings.append(f"{truncated} texts were longer than max_length={embedder.max_length} tokens and "
                               "were truncated")
    for note in (missing_text_note(es, index, config, report), non_text_note(report)):
        if note:
            report.warnings.append(note)


def non_text_note(report: ReindexReport) -> str | None:
    """Which text fields held objects (no text taken from them), in how many documents read."""
    if not report.non_text_values:
        return None
    counts = ", ".join(f"{name!r} in {n}" for name, n in sorted(report.non_text_values.items()))
    first = min(report.non_text_values)
    return (f"text fields holding an object, which adds no text to what is embedded, in documents read: {counts}; "
            f"to embed the text inside, name its fields (install-mappings --text-fields {first}.FIELD,...)")


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
         lock: IndexLock | None, base64_vectors: bool, same_vectors: bool = True) -> None:
    pipeline = Pipeline(es, embedder, options, report, progress, check=lock.check if lock else None)
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
