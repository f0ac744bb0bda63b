"""``reindex()``: the entry point that ties configuration, lock, pipeline and blue/green together."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..client import server_info
from ..config import SemanticConfig
from ..errors import ConfigError
from ..mappings import read_config
from .bluegreen import BlueGreen, new_index_advice, restore_pending
from .lock import JobLock
from .options import ReindexOptions
from .pipeline import Pipeline, Plan
from .reader import count_documents
from .report import ReindexReport
from .slices import PitExpired, SharedScan

log = logging.getLogger(__name__)

_VECTOR_DEFINING = ("model", "dims", "similarity")


def same_model(requested: str, configured: str) -> bool:
    """Whether ``--model`` names the configured model, possibly as a local copy of it
    (``/models/Qwen3-Embedding-0.6B`` for ``Qwen/Qwen3-Embedding-0.6B``)."""
    if requested == configured:
        return True
    tail = os.path.basename(os.path.normpath(requested))
    return bool(tail) and tail == configured.rstrip("/").rsplit("/", 1)[-1]


def effective_config(config: SemanticConfig, options: ReindexOptions) -> tuple[SemanticConfig, str, list[str]]:
    """(configuration the vectors are made for, where to load the model from, what changed)."""
    load_from = options.model or config.model
    model = config.model if options.model is None or same_model(options.model, config.model) else options.model
    new = config.with_overrides(model=model, dims=options.dims, similarity=options.similarity,
                                index_options=options.index_options)
    changed = [k for k in _VECTOR_DEFINING if getattr(new, k) != getattr(config, k)]
    if new.index_options != config.index_options:
        changed.append("index_options")
    return new, load_from, changed


def build_embedder(config: SemanticConfig, load_from: str, options: ReindexOptions) -> Any:
    """The embedder the configuration asks for (imported lazily: torch loads only here)."""
    from ..embedding import Embedder

    kwargs: dict[str, Any] = {"dims": config.dims, "query_instruction": config.query_instruction}
    if options.device:
        kwargs["device"] = options.device
    if options.dtype:
        kwargs["dtype"] = options.dtype
    if options.max_length:
        kwargs["max_length"] = options.max_length
    return Embedder(load_from, **kwargs)


def lock_key(index: str, options: ReindexOptions) -> str:
    return index if options.slices == 1 else f"{index}#slice-{options.slice_id}-of-{options.slices}"


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
    config = read_config(es, index)
    target_config, load_from, changed = effective_config(config, options)
    if changed and not options.new_index:
        details = ", ".join(f"{k} {getattr(config, k)!r} -> {getattr(target_config, k)!r}" for k in changed)
        raise ConfigError(
            f"the options change what {index!r} stores ({details}); vectors of two configurations cannot be "
            f"mixed in one field. {new_index_advice(es, index, options)}" + ("" if options.model is None else
                             " (if --model is a local copy of the configured model, name its folder like the model id)")
        )
    report = ReindexReport(index=index, model=target_config.model, dry_run=options.dry_run)
    base64_vectors = server_info(es).supports_base64_vectors
    lock: JobLock | None = None
    if options.lock and not options.dry_run:
        lock = JobLock(es, lock_key(index, options), lock_index=options.lock_index, ttl_s=options.lock_ttl_s)
        lock.acquire()
        report.lock = {"key": lock.key, "owner": lock.owner, "took_over": lock.previous is not None}
    try:
        # The lock first: a second job says so at once instead of after loading a model.
        if embedder is None:
            embedder = build_embedder(target_config, load_from, options)
        if int(embedder.dims) != target_config.dims:
            raise ConfigError(f"the embedder makes {embedder.dims}-dim vectors but {index!r} is configured for "
                              f"{target_config.dims} dims; pass dims={target_config.dims} to the Embedder")
        # Rates count from here: loading the model is setup, reported apart.
        report.setup_seconds = round(time.time() - report.started_at, 3)
        report.started_at = time.time()
        _run(es, index, config, target_config, embedder, options, report, progress, lock, base64_vectors)
    except Exception as exc:
        exc.report = report  # type: ignore[attr-defined]  # the CLI still writes --report
        raise
    finally:
        report.finished_at = time.time()
        if lock is not None:
            lock.release()
    return report


def _run_slice(es: Any, index: str, options: ReindexOptions, pipeline: Pipeline, plan: Plan,
               report: ReindexReport) -> Any:
    """One slice of a sliced run, on the point in time all its slices share (see ``slices``)."""
    scan = SharedScan(es, index, slices=options.slices, slice_id=options.slice_id, query=options.query,
                      lock_index=options.lock_index, retry=pipeline.retry)
    for attempt in (1, 2):
        pit_id = scan.join()
        try:
            result = pipeline.run(plan, slice_id=options.slice_id, slices=options.slices, pit_id=pit_id,
                                  keep_alive=scan.keep_alive)
        except PitExpired:
            if attempt == 2:
                raise
            # Read the slice again on a new point in time: what was done is skipped by its fingerprint.
            log.warning("the shared point in time of %r expired mid-scan; reading slice %d again on a new one",
                        index, options.slice_id)
            continue
        report.shared_pit = {"key": scan.key, "opened": scan.opened, "replaced_expired": scan.replaced_expired}
        scan.finish()
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _run(es: Any, index: str, config: SemanticConfig, target_config: SemanticConfig, embedder: Any,
         options: ReindexOptions, report: ReindexReport, progress: Callable[[ReindexReport], None] | None,
         lock: JobLock | None, base64_vectors: bool) -> None:
    if lock is not None and lock.previous and lock.previous.get("pending_restore"):
        restored = restore_pending(es, lock.previous["pending_restore"])
        report.settings_restored.update(restored)
        lock.set_field("pending_restore", {})
        log.warning("restored settings a previous job left changed: %s", restored)
    pipeline = Pipeline(es, embedder, options, report, progress, check=lock.check if lock else None)
    if options.new_index:
        BlueGreen(es, index, config, target_config, pipeline,
                  new_index=options.new_index if isinstance(options.new_index, str) else None,
                  model_label=target_config.model, base64_vectors=base64_vectors, lock=lock).run()
    else:
        total = count_documents(es, index, options.query)  # type: ignore[arg-type]
        report.total = None if total is None else -(-total // options.slices)  # a slice's share
        plan = Plan(read_index=index, config=target_config, model_label=target_config.model,
                    source_includes=[*target_config.text_fields, target_config.info_field],
                    base64_vectors=base64_vectors, query=options.query)  # type: ignore[arg-type]
        if options.slices > 1 and not options.dry_run:
            result = _run_slice(es, index, options, pipeline, plan, report)
        else:
            result = pipeline.run(plan, slice_id=options.slice_id, slices=options.slices)
        if not options.dry_run:
            pipeline.resolve_conflicts(plan, result.conflicts)
            if report.embedded or report.empty:
                # One refresh at the end: the new vectors are searchable (and a status or rerun
                # sees them) at once instead of at the index's next periodic refresh.
                pipeline.retry.call(es.indices.refresh, index=index)
