"""``es-semantic reindex`` and ``es-semantic status``: embed an index's documents, and say how current they are."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import INDEX_OPTION_TYPES, SIMILARITIES, parse_index_options
from ..errors import ConfigError
from .search import embedding_server_options

if TYPE_CHECKING:  # importing .main here would register commands from a half-loaded module
    from .main import Session


def parse_size(value: str) -> int:
    """``"8mb"`` -> 8388608; plain numbers are bytes."""
    text = value.strip().lower()
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "b": 1}
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * factor)
    if text.isdigit():
        return int(text)
    raise ConfigError(f"--bulk-bytes {value!r}: give a size such as 8mb, 512kb or 1000000")


_EXIT_CODES = """
\b
Exit codes:
  0    done (documents edited throughout the run may be deferred to the next run)
  1    some documents failed (listed in --report with their reasons)
  2    usage, configuration or connection error
  3    another job holds the lock on this index
  75   blue/green: the old index kept changing, the counts never agreed; nothing moved (rerun with
       --block-writes: the copy resumes)
  70   unexpected internal error (a bug: rerun with --debug)
  130  stopped by Ctrl-C (SIGINT)
  143  stopped by SIGTERM (systemd, Kubernetes, kill)
\b
SIGINT and SIGTERM stop the job cleanly: bulk requests in flight finish, index settings are
restored, the lock is released and --report is written; the next run carries on.
"""


#: Where ``--report`` is read from: the name the scheduled units set, and the one --help showed before (deprecated).
REPORT_ENV_VARS = ("ES_SEMANTIC_REINDEX_REPORT", "ES_SEMANTIC_REINDEX_REPORT_PATH")


def _deprecated_report_env() -> bool:
    ctx = click.get_current_context(silent=True)
    from_env = ctx is not None and ctx.get_parameter_source("report") is click.core.ParameterSource.ENVIRONMENT
    return from_env and not os.environ.get(REPORT_ENV_VARS[0]) and bool(os.environ.get(REPORT_ENV_VARS[1]))


def _new_index_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``ES_SEMANTIC_REINDEX_NEW_INDEX=true`` is the flag without a name, not an index named ``true``."""
    if value is None or ctx.get_parameter_source("new_index") is not click.core.ParameterSource.ENVIRONMENT:
        return value
    word = value.strip().lower()
    if word in ("true", "1", "yes", "on"):
        return ""
    if word in ("false", "0", "no", "off", ""):
        return None
    return value


def _option_value(args: list[str], name: str) -> str | None:
    """The value of ``--name X`` or ``--name=X`` in raw command-line ``args`` (the last one), or None."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1:]
    return value


class _ReportingCommand(click.Command):
    """``reindex``: ``--report`` is written also when click itself rejects the command line (an option
    value of the wrong type, an unknown option, a missing ``--index``), so a scheduler that reads the
    report learns why the run never started."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        raw = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            prefix = ctx.auto_envvar_prefix or "ES_SEMANTIC_REINDEX"
            path = _option_value(raw, "--report") or next(
                (os.environ[name] for name in REPORT_ENV_VARS if os.environ.get(name)), None)
            if path:
                from ..reindex import ReindexReport

                try:
                    check_report_path(path)
                except ConfigError:
                    raise exc from None  # no report can be written there; the usage error is what matters
                index = _option_value(raw, "--index") or os.environ.get(f"{prefix}_INDEX") or ""
                report = ReindexReport(index=index, dry_run="--dry-run" in raw)
                report.error = f"UsageError: {exc.format_message()}"
                report.exit_code = exc.exit_code
                report.finished_at = report.started_at
                _write_report(report, path)
            raise


@click.command("reindex", cls=_ReportingCommand, epilog=_EXIT_CODES)
@click.option("--index", required=True, help="Index or alias to embed (an alias for --new-index).")
@click.option("--model", default=None, help="Model id or local path (default: the one in the index _meta). "
              "A local copy of the configured model is no change: checked against the weights digest the "
              "stored vectors record (another model needs --new-index).")
@click.option("--dims", type=int, default=None, help="Vector dims (a change needs --new-index).")
@click.option("--similarity", type=click.Choice(SIMILARITIES), default=None, help="A change needs --new-index.")
@click.option("--index-options", "index_options", type=click.Choice(INDEX_OPTION_TYPES), default=None,
              help="Vector index type for the new index (needs --new-index).")
@embedding_server_options(what="the documents")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available).")
@click.option("--dtype", default=None, help="float32, float16, bfloat16 (default: per device).")
@click.option("--max-length", type=int, default=None, help="Tokens per text (>= 1, at most the model's limit), "
              "stored in the index _meta for later runs, status and searches (default: the stored value, else "
              "the model's limit).")
@click.option("--full", is_flag=True, help="Re-embed every document, even those with a current vector.")
@click.option("--query", default=None, help="JSON query DSL restricting the documents, e.g. "
              "'{\"term\": {\"category\": \"billing\"}}'.")
@click.option("--limit", type=int, default=None, help="Stop after embedding this many documents.")
@click.option("--slices", type=int, default=1, help="Split the index into N slices (one job per slice; the "
              "jobs of a run share one point in time, published in the lock index).")
@click.option("--slice-id", type=int, default=0, help="Which slice this job does (0..N-1).")
@click.option("--dry-run", is_flag=True, help="Count what would be embedded; embed and write nothing.")
@click.option("--new-index", is_flag=False, flag_value="", default=None, metavar="[NAME]", callback=_new_index_value,
              help="Blue/green: copy into a new index (<alias>-v<N+1> unless NAME) and move the alias. From "
              "the environment, true/1/yes mean the flag without a NAME and false/0/no leave it off.")
@click.option("--delete-old", is_flag=True,
              help="With --new-index: delete the old index after the swap (kept while other aliases point at "
                   "it). Needed to replace a concrete index by an alias of its name (writes are blocked for that swap).")
@click.option("--block-writes", is_flag=True,
              help="With --new-index: block writes to the old index for the final catch-up pass and the swap, "
              "so that no edit is lost (writers get 403 cluster_block_exception meanwhile and should retry); "
              "lifted afterwards, and after a crash by the next run.")
@click.option("--bulk-size", type=int, default=500, help="Documents per bulk request (at most).")
@click.option("--bulk-bytes", default="8mb", help="Bytes per bulk request (at most).")
@click.option("--writers", type=int, default=2, help="Bulk requests in flight.")
@click.option("--page-size", type=int, default=500, help="Documents per read page.")
@click.option("--keep-alive", default="30m", help="How long the scan's point in time stays open between two page "
              "reads (e.g. 30m, 2h): more than embedding the chunks in flight takes. If it runs out anyway, the "
              "documents are read again on a new one (done ones skipped).")
@click.option("--max-retries", type=int, default=8, help="Retries of a rejected or failed request.")
@click.option("--lock-ttl", type=float, default=300.0, help="Seconds after which a silent job's lock is taken over.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--report", "report", default=None, envvar=list(REPORT_ENV_VARS),
              help="Write a JSON summary (counts, failures with ids and reasons, timings, error, exit_code) to "
              "this file, also when the run stops early (lock held, bad option, error, signal). Its folder must exist. "
              "(ES_SEMANTIC_REINDEX_REPORT_PATH is read too, deprecated.)")
@click.pass_obj
def reindex(session: Session, index: str, model: str | None, dims: int | None, similarity: str | None,
            index_options: str | None, device: str | None, dtype: str | None, max_length: int | None,
            full: bool, query: str | None, limit: int | None, slices: int, slice_id: int, dry_run: bool,
            new_index: str | None, delete_old: bool, block_writes: bool, bulk_size: int, bulk_bytes: str, writers: int,
            page_size: int, keep_alive: str, max_retries: int, lock_ttl: float, no_progress: bool, report: str | None,
            embedding_url: str | None = None, embedding_api_key: str | None = None) -> None:
    """Embed the documents of an index and write their vectors back, safely on a live cluster.

    Reads the configuration install-mappings stored in the index, embeds only documents whose
    text or model settings changed since their vector was written (--full: all), and writes with
    optimistic concurrency so that a document edited meanwhile is re-embedded from its new text.
    Safe to interrupt and rerun: it carries on where it stopped. One job per index at a time.

    \b
    Example:
      es-semantic reindex --index faq
      es-semantic reindex --index faq --dry-run --query '{"term": {"language": "en"}}'
      es-semantic reindex --index faq --slices 4 --slice-id 0 --report /tmp/slice0.json
      es-semantic reindex --index faq --model /models/bge-m3 --dims 1024 --new-index
      es-semantic reindex --index faq --new-index --block-writes
      es-semantic reindex --index faq --embedding-url http://gpu-box:8000/v1
    """
    from ..reindex import ReindexOptions, ReindexReport
    from ..reindex import reindex as run_reindex
    from .main import exit_code_of, stop_on_signals

    report_path = report
    if report_path and _deprecated_report_env():
        click.echo("warning: ES_SEMANTIC_REINDEX_REPORT_PATH is deprecated; set ES_SEMANTIC_REINDEX_REPORT instead",
                   err=True)
    check_report_path(report_path)  # before any work: a run whose report cannot be written is wasted
    progress = None
    with stop_on_signals():  # SIGTERM stops the job as cleanly as Ctrl-C: lock released, settings restored
        try:
            options = ReindexOptions(
                model=model, dims=dims, similarity=similarity,
                index_options=parse_index_options(index_options) if index_options else None,
                device=device, dtype=dtype, max_length=max_length, full=full, query=query, limit=limit,
                embedding_url=embedding_url, embedding_api_key=embedding_api_key,
                slices=slices, slice_id=slice_id, dry_run=dry_run,
                new_index=(True if new_index == "" else new_index), delete_old=delete_old, block_writes=block_writes,
                bulk_max_docs=bulk_size, bulk_max_bytes=parse_size(bulk_bytes), writers=writers, page_size=page_size,
                keep_alive=keep_alive, max_retries=max_retries, lock_ttl_s=lock_ttl,
            )
            es = session.client()
            from ..reindex.progress import progress_for

            progress = None if no_progress else progress_for()
            result = run_reindex(es, index, options=options, progress=progress)
        except BaseException as exc:
            if progress is not None:
                progress.close()
                progress = None
            code = exit_code_of(exc)
            partial = getattr(exc, "report", None) or ReindexReport(index=index, dry_run=dry_run)
            partial.error = session.redact(f"{type(exc).__name__}: {exc}")
            partial.exit_code = code
            if partial.finished_at is None:
                partial.finished_at = partial.started_at
            if report_path:
                _write_report(partial, report_path, session)
            if isinstance(exc, KeyboardInterrupt):
                click.echo(partial.summary(), err=True)
                rerun = ("rerun without --full to carry on (documents done are current and skipped; --full embeds "
                         "every one again)" if full else "rerun to carry on, documents done are skipped")
                click.echo(f"{str(exc) or 'interrupted'}: stopped cleanly (locks released, settings restored); "
                           f"{rerun}", err=True)
                raise SystemExit(code) from None
            raise
        finally:
            if progress is not None:
                progress.close()
        result.exit_code = 1 if result.failed else 0
        if report_path:
            _write_report(result, report_path, session)
    click.echo(result.summary())
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.blue_green.get("note"):
        click.echo(f"warning: {result.blue_green['note']}", err=True)
    for failure in result.failures[:10]:
        click.echo(f"failed: {failure['index']}/{failure['id']}: {failure['reason']}", err=True)
    if result.failed > 10:
        click.echo(f"... and {result.failed - 10} more" + (f" (see {report_path})" if report_path else ""), err=True)
    if result.failed:
        raise SystemExit(1)


def check_report_path(path: str | None) -> None:
    """Refuse a ``--report`` file that cannot be written (``ConfigError``, exit 2), before any work."""
    if not path:
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"--report {path}: is a folder; give a file name in it, e.g. {target / 'reindex.json'}")
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"--report {path}: the folder {folder} does not exist; create it first or "
                          "give a path in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--report {path}: no permission to write in {folder}; give a path in a folder "
                          "this user can write to")


def _write_report(report: Any, path: str, session: Session | None = None) -> None:
    from ..config import redact

    try:  # no password or API key in the file, also when the error message holds one
        report.write_json(path, redact=session.redact if session is not None else (lambda text: redact(text, None)))
    except OSError as exc:  # checked before the run; the folder may have gone since
        click.echo(f"warning: could not write the report to {path}: {exc}", err=True)


@click.command("status")
@click.option("--index", required=True, help="Index or alias to inspect.")
@click.option("--model", default=None, help="Local path of the configured model (default: the id in _meta).")
@click.option("--no-model", is_flag=True, help="Do not load the model: compare stored model ids only (fast).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@embedding_server_options(help_text="The embeddings server the vectors were written with (reindex --embedding-url): "
                                    "their fingerprints are checked against its settings instead of the local "
                                    "model's. No request is made.")
@click.pass_obj
def status(session: Session, index: str, model: str | None, no_model: bool, as_json: bool,
           embedding_url: str | None = None, embedding_api_key: str | None = None) -> None:
    """Show the stored configuration and how many documents have a current, stale or no vector.

    A vector is current when its stored fingerprint matches the document's text and the model's
    settings now. If the model cannot be loaded, stored model ids are compared instead (text
    edits are then not seen) and the output says so.

    \b
    Example:
      es-semantic status --index faq
      es-semantic status --index faq --model /models/Qwen3-Embedding-0.6B --json
      es-semantic status --index faq --embedding-url http://gpu-box:8000/v1
    """
    from ..reindex import index_status

    result = index_status(session.client(), index, model=model, load_model=not no_model,
                          embedding_url=embedding_url, embedding_api_key=embedding_api_key)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in result.lines():
            click.echo(line)
