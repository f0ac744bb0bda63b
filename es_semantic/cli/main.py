"""The ``es-semantic`` command group: connection options shared by every command, and error handling.

Commands live in one module per group (``mappings``, ``reindex``, ``search``, ...); they parse
options, call the library and print. Library errors become one line on stderr and an exit code
(0 ok, 1 some documents failed, 2 usage/connection/config, 3 locked, 70 a bug, 130 interrupted by
Ctrl-C/SIGINT, 143 stopped by SIGTERM); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..config import DEFAULT_ES_URL, ConnectionSettings, redact
from ..errors import ConfigError, EsSemanticError, IndexNotFound

CONTEXT_SETTINGS = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "ES_SEMANTIC",
    "show_default": True,
    "max_content_width": 100,
}


#: Exit codes of a command stopped by a signal (128 + the signal number, as shells report it).
EXIT_SIGINT = 128 + int(signal.SIGINT)  # 130
EXIT_SIGTERM = 128 + int(signal.SIGTERM)  # 143


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (systemd, Kubernetes, ``kill``), raised in the main thread by
    ``stop_on_signals``. A ``KeyboardInterrupt``, so no ``except Exception`` swallows it and every
    ``finally`` runs: the job stops its threads, puts settings back and releases its lock."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {self.signal_name}")


def interrupt_exit_code(exc: BaseException) -> int:
    return int(getattr(exc, "exit_code", EXIT_SIGINT))


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into ``Interrupted`` (so the work stops the way Ctrl-C
    stops it, cleanly), and ignore further ones until the block is left: a second signal must not
    cut short the clean-up the first one started. SIGKILL remains the way to stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            click.echo(f"already stopping ({signal.Signals(signum).name} ignored while cleaning up; "
                       "SIGKILL stops at once, and the lock then expires by itself)", err=True)
            return
        received.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Session:
    """What the group options decided; commands ask it for a connected client."""

    def __init__(self, debug: bool, **connection: Any) -> None:
        self.debug = debug
        self._connection = connection
        self._settings: ConnectionSettings | None = None
        self._client: Any = None

    @property
    def settings(self) -> ConnectionSettings:
        if self._settings is None:
            self._settings = ConnectionSettings.from_env(**self._connection)
        return self._settings

    def client(self) -> Any:
        """A client that reached the cluster (``ConnectionFailed`` otherwise)."""
        if self._client is None:
            from ..client import connect

            self._client = connect(self.settings)
        return self._client


class _Group(click.Group):
    """Turns library errors into one line and an exit code instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM where a command turned it into one
            click.echo(f"error: {str(exc) or 'interrupted'}", err=True)
            ctx.exit(interrupt_exit_code(exc))
        except BrokenPipeError:
            # The reader of our output went away (``es-semantic status ... | head``): not an error.
            # Point stdout at devnull so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except Exception as exc:
            session = ctx.obj if isinstance(ctx.obj, Session) else None
            if session is not None and session.debug:
                raise
            settings = session._settings if session is not None else None
            code, message = _describe(exc)
            if isinstance(exc, IndexNotFound) and session is not None and session._client is not None:
                message = _with_index_hint(message, session._client)
            click.echo(f"error: {redact(message, settings)}", err=True)
            if code == 70:
                click.echo("(this looks like a bug: run with --debug for the full traceback)", err=True)
            ctx.exit(code)


def exit_code_of(exc: BaseException) -> int:
    """The exit code a command ends with when ``exc`` reaches the group (see ``_describe``)."""
    if isinstance(exc, KeyboardInterrupt):
        return interrupt_exit_code(exc)
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, click.ClickException):
        return exc.exit_code
    if isinstance(exc, Exception):
        return _describe(exc)[0]
    return 70


_MISSING_INDEX = re.compile(r"\b(?:index|alias) '([^']+)' does not exist")


def _with_index_hint(message: str, es: Any) -> str:
    """``message`` about a missing index with "did you mean 'faq'?" from the cluster's index and alias
    names, before any hint to create it (a typo is likelier than a new index)."""
    found = _MISSING_INDEX.search(message)
    if not found:
        return message
    try:
        body = es.indices.get_alias(index="*").body
    except Exception:  # noqa: BLE001 - a hint only: never hide the error it adds to
        return message
    # an index behind aliases is used through them (install-mappings' faq -> faq-v1): suggest the alias
    names = {name for name, entry in body.items() if not name.startswith(".") and not entry.get("aliases")}
    names.update(alias for entry in body.values() for alias in (entry.get("aliases") or {}) if not alias.startswith("."))
    from ..mappings import did_you_mean

    hint = did_you_mean(found.group(1), sorted(names))
    if not hint:
        return message
    end = found.end()
    if message[end:].startswith("; create it"):
        return f"{message[:end]}; {hint} If not, {message[end + 2:]}"
    return f"{message[:end]} ({hint}){message[end:]}"


def _describe(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, EsSemanticError):
        return exc.exit_code, getattr(exc, "cli_message", None) or str(exc)
    from elasticsearch import ApiError, TransportError

    if isinstance(exc, ApiError):
        status = exc.meta.status
        info = exc.info if isinstance(exc.info, dict) else {}
        reason = ((info.get("error") or {}).get("reason")) or exc.message
        return 2, f"Elasticsearch answered {status}: {reason}"
    if isinstance(exc, TransportError):
        return 2, f"lost the connection to Elasticsearch: {exc.message}"
    # An unexpected bug: still one line, but a distinct code so schedulers notice.
    return 70, f"unexpected {type(exc).__name__}: {exc}"


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.option("--es-url", envvar="ES_URL", default=None, show_envvar=True,
              help=f"Elasticsearch URL [default: {DEFAULT_ES_URL}]; or --cloud-id, not both.")
@click.option("--api-key", envvar="ES_API_KEY", show_envvar=True, default=None,
              help="API key (base64 'id:key' form). Prefer the environment variable.")
@click.option("--username", envvar="ES_USERNAME", show_envvar=True, default=None, help="Basic-auth user.")
@click.option("--password", envvar="ES_PASSWORD", show_envvar=True, default=None,
              help="Basic-auth password. Prefer the environment variable.")
@click.option("--cloud-id", envvar="ES_CLOUD_ID", show_envvar=True, default=None, help="Elastic Cloud id.")
@click.option("--ca-certs", envvar="ES_CA_CERTS", show_envvar=True, default=None,
              type=click.Path(dir_okay=False), help="CA certificate bundle for TLS verification.")
@click.option("--insecure", is_flag=True, default=False,
              help="Do not verify TLS certificates (test clusters only).")
@click.option("--request-timeout", type=float, default=30.0, help="Per-request timeout in seconds.")
@click.option("--debug", is_flag=True, default=False, envvar="ES_SEMANTIC_DEBUG",
              help="Debug logging and full tracebacks.")
@click.version_option(package_name="es-semantic")
@click.pass_context
def cli(ctx: click.Context, es_url: str | None, api_key: str | None, username: str | None, password: str | None,
        cloud_id: str | None, ca_certs: str | None, insecure: bool, request_timeout: float,
        debug: bool) -> None:
    """Semantic and hybrid search for an existing Elasticsearch index.

    \b
    Typical use:
      es-semantic install-mappings --index faq --text-fields question,answer
      es-semantic reindex --index faq
      es-semantic search --index faq "how do I reset my password"

    Connection options are read from ES_URL, ES_API_KEY, ES_USERNAME/ES_PASSWORD, ES_CLOUD_ID and
    ES_CA_CERTS; every other option from ES_SEMANTIC_<COMMAND>_<OPTION>.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        # The client logs every request at INFO/WARNING; our own messages say what matters.
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)
        logging.getLogger("elasticsearch").setLevel(logging.ERROR)
    ctx.obj = Session(
        debug, url=es_url, api_key=api_key, username=username, password=password,
        cloud_id=cloud_id, ca_certs=ca_certs, verify_certs=not insecure, request_timeout=request_timeout,
    )


# (module, command attribute names) registered on the group; one module per command group.
_COMMANDS: list[tuple[str, tuple[str, ...]]] = [
    ("es_semantic.cli.mappings", ("install_mappings", "set_min_score")),
    ("es_semantic.cli.reindex", ("reindex", "status")),
    ("es_semantic.cli.testserver", ("test_server",)),
    ("es_semantic.cli.search", ("search", "eval_")),
    ("es_semantic.cli.demo", ("demo",)),
]


def _register() -> None:
    for module_name, names in _COMMANDS:
        module = importlib.import_module(module_name)
        for name in names:
            cli.add_command(getattr(module, name))


if __name__ != "__main__":  # run as ``python -m es_semantic.cli.main``, main() below imports the module itself
    _register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="es-semantic")
    except ConfigError as exc:  # raised while click parses, before the group's handler
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    # The command modules import ``es_semantic.cli.main``, which is not this ``__main__`` copy:
    # run the real module's entry point, so the commands register once, on it.
    from es_semantic.cli.main import main as _main

    _main()
