"""``es-semantic reindex`` and ``es-semantic status``: embed an index's documents, and say how current they are."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import INDEX_OPTION_TYPES, SIMILARITIES, check_index_name, parse_index_options
from ..errors import ConfigError, InvalidValue
from ..reindexing.options import parse_query
from .common import library_check, say, seconds
from .search import embedding_server_options

if TYPE_CHECKING:
    from .main import Session


def parse_size(value: str) -> int:
    """``"8mb"`` -> 8388608; plain numbers are bytes; anything else is ``InvalidValue``."""
    text = value.strip().lower()
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "b": 1}
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * factor)
    if text.isdigit():
        return int(text)
    raise InvalidValue("bulk_max_bytes", value, "a size such as 8mb, 512kb or 1000000")


def _new_index_value(ctx: click.Context, param: click.Parameter, value: str | None) -> bool | str | None:
    """``--new-index`` alone is True (the next versioned name); from the environment, true/1/yes mean
    the flag and false/0/no leave it off (an index is never named ``true``)."""
    if value is not None and ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.ENVIRONMENT:
        word = value.strip().lower()
        value = "" if word in ("true", "1", "yes", "on") else None if word in ("false", "0", "no", "off", "") else value
    return True if value == "" else value


def _check_report_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        check_report_path(value)  # before any work: a run whose report cannot be written is wasted
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


#: Command-line option -> ``ReindexOptions`` field, where the names differ.
_FIELDS = {"bulk_size": "bulk_max_docs", "bulk_bytes": "bulk_max_bytes", "lock_ttl": "lock_ttl_s"}


@click.command("reindex", epilog="Guarantees, blue/green, slices, signals, exit codes: docs/reindex.md")
@click.option("--index", required=True, metavar="NAME", callback=library_check(check_index_name),
              help="Index or alias to embed.")
@click.option("--model", default=None, metavar="ID|PATH", help="Model (default: the one in the index _meta).")
@click.option("--dims", type=int, default=None, metavar="N", help="Vector dims (a change needs --new-index).")
@click.option("--similarity", type=click.Choice(SIMILARITIES), default=None, metavar="NAME",
              help="cosine, dot_product, l2_norm, max_inner_product.")
@click.option("--index-options", type=click.Choice(INDEX_OPTION_TYPES), default=None, metavar="TYPE",
              callback=library_check(parse_index_options), help="Vector index type, e.g. int8_hnsw.")
@embedding_server_options(help_text="OpenAI-compatible server to embed with, not a local model.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best).")
@click.option("--dtype", default=None, help="float32, float16, bfloat16 (default: per device).")
@click.option("--max-length", type=int, default=None, metavar="N", help="Tokens per text (stored in _meta).")
@click.option("--full", is_flag=True, help="Re-embed every document, even current ones.")
@click.option("--query", default=None, metavar="JSON", callback=library_check(parse_query),
              help="Query DSL restricting the documents.")
@click.option("--limit", type=int, default=None, metavar="N", help="Stop after embedding N documents.")
@click.option("--slices", type=int, default=1, metavar="N", help="Split the index into N slices.")
@click.option("--slice-id", type=int, default=0, metavar="I", help="The slice this job does (0..N-1).")
@click.option("--dry-run", is_flag=True, help="Count what would be embedded; write nothing.")
@click.option("--new-index", is_flag=False, flag_value="", default=None, metavar="[NAME]", callback=_new_index_value,
              help="Blue/green: copy into a new index, move the alias.")
@click.option("--delete-old", is_flag=True, help="With --new-index: delete the old index after.")
@click.option("--block-writes", is_flag=True, help="With --new-index: block writes for the swap.")
@click.option("--bulk-size", type=int, default=500, metavar="N", help="Documents per bulk request.")
@click.option("--bulk-bytes", default="8mb", metavar="SIZE", callback=library_check(parse_size),
              help="Bytes per bulk request.")
@click.option("--writers", type=int, default=2, metavar="N", help="Bulk requests in flight.")
@click.option("--page-size", type=int, default=500, metavar="N", help="Documents per read page.")
@click.option("--keep-alive", default="30m", metavar="TIME", help="Point in time kept between reads.")
@click.option("--max-retries", type=int, default=8, metavar="N", help="Retries of a failed request.")
@click.option("--lock-ttl", type=float, default=300.0, metavar="SECONDS", callback=seconds,
              help="A silent job's lock expires after.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--report", default=None, metavar="FILE", callback=_check_report_option,
              help="Also write the JSON summary there.")
@click.option("--json", "as_json", is_flag=True, envvar="ES_SEMANTIC_REINDEX_JSON",
              help="Print the summary as JSON on stdout.")
@click.pass_obj
def reindex(session: Session, index: str, report: str | None, no_progress: bool, as_json: bool,
            **settings: Any) -> None:
    """Embed the documents of an index and write their vectors back, on a live cluster.

    Only documents whose text or settings changed are embedded; a newer edit is never overwritten;
    a rerun carries on. Exit: 0 done, 1 some failed, 2 usage, 3 locked.

    \b
    Example:
      es-semantic reindex --index faq --report /var/log/es-semantic/faq.json
    """
    from ..reindexing.progress import progress_for
    from .main import stop_on_signals

    options = {_FIELDS.get(name, name): value for name, value in settings.items()}
    with stop_on_signals():  # SIGTERM stops the job as cleanly as Ctrl-C: lock released, settings restored
        result = _run_job(session, index, options, report, as_json, progress=None if no_progress else progress_for())
    result.exit_code = 1 if result.failed else 0
    if report:
        _write_report(result, report, session)
    _print_outcome(result, report, as_json, session)
    if result.failed:
        raise SystemExit(1)


def _run_job(session: Session, index: str, options: dict[str, Any], report_path: str | None, as_json: bool,
             progress: Any) -> Any:
    """The finished run's report; a run that stops early (also on options the library refuses) writes
    its partial report (``--report``, ``--json``) and raises."""
    from ..reindexing import ReindexOptions, ReindexReport
    from ..reindexing import reindex as run_reindex
    from .main import describe, exit_code_of

    try:
        return run_reindex(session.client(), index, options=ReindexOptions(**options), progress=progress)
    except BaseException as exc:
        if progress is not None:
            progress.close()
            progress = None
        partial = getattr(exc, "report", None) or ReindexReport(index=index, dry_run=options["dry_run"])
        partial.error = session.redact(f"{type(exc).__name__}: {describe(exc, click.get_current_context().command)}")
        partial.exit_code = exit_code_of(exc)
        if partial.finished_at is None:
            partial.finished_at = partial.started_at
        if report_path:
            _write_report(partial, report_path, session)
        if as_json:
            click.echo(session.redact(json.dumps(partial.to_dict(), ensure_ascii=False, default=str)))
        if isinstance(exc, KeyboardInterrupt):
            _say_stopped(exc, partial, options["full"])
            raise SystemExit(partial.exit_code) from None
        raise
    finally:
        if progress is not None:
            progress.close()


def _say_stopped(exc: BaseException, partial: Any, full: bool) -> None:
    say(partial.summary())
    rerun = ("rerun without --full to carry on (documents done are current and skipped; --full embeds every one "
             "again)" if full else "rerun to carry on, documents done are skipped")
    say(f"{str(exc) or 'interrupted'}: stopped cleanly (locks released, settings restored); {rerun}")


def _print_outcome(result: Any, report_path: str | None, as_json: bool, session: Session) -> None:
    """The summary on stdout (one line, or with ``as_json`` the report as one JSON document); warnings
    and failures on stderr."""
    if as_json:
        click.echo(session.redact(json.dumps(result.to_dict(), ensure_ascii=False, default=str)))
    else:
        click.echo(result.summary())
    for warning in [*result.warnings, *([result.blue_green["note"]] if result.blue_green.get("note") else [])]:
        say(f"warning: {warning}")
    for failure in result.failures[:10]:
        say(f"failed: {failure['index']}/{failure['id']}: {failure['reason']}")
    if result.failed > 10:
        say(f"... and {result.failed - 10} more" + (f" (see {report_path})" if report_path else ""))


def check_report_path(path: str | None) -> None:
    """Refuse a report file that cannot be written (``ConfigError``), before any work."""
    if not path:
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"{path} is a folder; give a file name in it, e.g. {target / 'reindex.json'}")
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"no permission to write in {folder}")


def _write_report(report: Any, path: str, session: Session | None = None) -> None:
    from ..config import redact

    try:  # no password or API key in the file, also when the error message holds one
        report.write_json(path, redact=session.redact if session is not None else (lambda text: redact(text, None)))
    except OSError as exc:  # checked before the run; the folder may have gone since
        click.echo(f"warning: could not write the report to {path}: {exc}", err=True)


@click.command("status", epilog="What current, stale and missing mean: docs/reindex.md")
@click.option("--index", required=True, metavar="NAME", callback=library_check(check_index_name),
              help="Index or alias to inspect.")
@click.option("--model", default=None, metavar="PATH", help="Local copy of the configured model.")
@click.option("--no-model", is_flag=True, help="Do not load the model: compare stored model ids only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@embedding_server_options(help_text="The server the vectors were written with (no request is made).")
@click.pass_obj
def status(session: Session, index: str, model: str | None, no_model: bool, as_json: bool,
           embedding_url: str | None = None, embedding_api_key: str | None = None) -> None:
    """Show the stored configuration and how many documents have a current, stale or no vector.

    \b
    Example:
      es-semantic status --index faq --json
    """
    from ..reindexing import index_status

    result = index_status(session.client(), index, model=model, load_model=not no_model,
                          embedding_url=embedding_url, embedding_api_key=embedding_api_key)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in result.lines():
            click.echo(line)
