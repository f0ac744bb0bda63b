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
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..config import DEFAULT_ES_URL, ConnectionSettings, redact
from ..errors import ConfigError, EsSemanticError, IndexNotFound, InvalidValue
from .common import log_format, seconds

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

    def override(self, **connection: Any) -> None:
        """Connection options given after the subcommand: they win over the group's (and the environment's)."""
        given = {k: v for k, v in connection.items() if v is not None}
        if given:
            self._connection.update(given)
            self._settings = None
            self._client = None

    @property
    def settings(self) -> ConnectionSettings:
        if self._settings is None:
            # click read ES_URL and the others (envvar=): no second look at the environment
            self._settings = ConnectionSettings(**{k: v for k, v in self._connection.items() if v is not None})
        return self._settings

    def redact(self, text: str) -> str:
        """``text`` without the secrets of the connection settings (also when they were refused)."""
        if self._settings is not None:
            return redact(text, self._settings)
        text = redact(text, None)
        for name in ("password", "api_key"):
            secret = self._connection.get(name)
            if secret and len(secret) >= 3:
                text = text.replace(secret, "***")
        return text

    def client(self) -> Any:
        """A client that reached the cluster (``ConnectionFailed`` otherwise)."""
        if self._client is None:
            from ..client import connect

            self._client = connect(self.settings)
        return self._client


class _Group(click.Group):
    """Turns library errors into one line (the error and a hint from its fields) and an exit code."""

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
        except Exception as exc:  # noqa: BLE001 - every error becomes one line and an exit code
            self._fail(ctx, exc)

    def _fail(self, ctx: click.Context, exc: Exception) -> None:
        session = ctx.obj if isinstance(ctx.obj, Session) else None
        if session is not None and session.debug:
            import traceback

            traceback.print_exc()  # the traceback, then the same line and exit code as without --debug
        command = self.commands.get(ctx.invoked_subcommand or "")
        code, message = _describe(exc, command)
        hint = error_hint(exc, session)
        if hint:
            message = f"{message}; {hint}"
        click.echo(f"error: {session.redact(message) if session is not None else redact(message, None)}", err=True)
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


#: Library arguments whose command-line option has another name.
_OPTION_NAMES = {"lock_ttl_s": "lock_ttl", "bulk_max_docs": "bulk_size", "bulk_max_bytes": "bulk_bytes",
                 "url": "es_url"}


def option_flag(command: click.Command | None, option: str) -> str | None:
    """The command-line option for the library argument ``option`` (``num_candidates`` ->
    ``--num-candidates``; ``url`` -> ``--es-url / ES_URL``), or None where ``command`` has none."""
    name = _OPTION_NAMES.get(option, option)
    for param in [*cli.params, *(command.params if command is not None else ())]:
        if isinstance(param, click.Option) and param.name in (name, name.rstrip("_")):
            flag = max(param.opts, key=len)
            return f"{flag} / {param.envvar}" if isinstance(param.envvar, str) else flag
    return None


def error_hint(exc: Exception, session: Session | None) -> str | None:
    """What to do about ``exc`` on the command line, from its type and fields (None: nothing to add)."""
    from ..errors import ConnectionFailed, LockHeld, NotConfigured

    if isinstance(exc, LockHeld):
        return (f"wait for it to finish; if that job is dead the lock expires by itself, or delete it with: "
                f"curl -X DELETE '<ES_URL>/{exc.lock_index}/_doc/{exc.key}'")
    if isinstance(exc, NotConfigured):
        return f"run: es-semantic install-mappings --index {exc.index}"
    if isinstance(exc, IndexNotFound):
        create = f"create it with: es-semantic install-mappings --index {exc.index}"
        es = session._client if session is not None else None
        close = _close_index_names(exc.index, es) if es is not None else ""
        return f"{close} If not, {create}" if close else create
    if isinstance(exc, ConnectionFailed):
        cloud = session is not None and session._settings is not None and session._settings.cloud_id
        setting = "--cloud-id / ES_CLOUD_ID" if cloud else "--es-url / ES_URL"
        return {
            401: "check ES_API_KEY or ES_USERNAME/ES_PASSWORD",
            "tls": "point --ca-certs / ES_CA_CERTS at the cluster's CA certificate, or use --insecure for a test cluster",
            "timeout": f"raise --request-timeout, or check {setting} and that the cluster is running",
            "unreachable": f"check {setting} and that the cluster is running",
        }.get(exc.status or exc.reason or "")
    return None


def _close_index_names(name: str, es: Any) -> str:
    """"did you mean 'faq'?" from the cluster's index and alias names, or ''."""
    try:
        body = es.indices.get_alias(index="*").body
    except Exception:  # noqa: BLE001 - a hint only: never hide the error it adds to
        return ""
    # an index behind aliases is used through them (install-mappings' faq -> faq-v1): suggest the alias
    names = {index for index, entry in body.items() if not index.startswith(".") and not entry.get("aliases")}
    names.update(alias for entry in body.values() for alias in (entry.get("aliases") or {}) if not alias.startswith("."))
    from ..mappings import did_you_mean

    return did_you_mean(name, sorted(names))


def describe(exc: BaseException, command: click.Command | None = None) -> str:
    """The one line the CLI prints for ``exc`` (without the hint)."""
    return _describe(exc, command)[1] if isinstance(exc, Exception) else str(exc) or type(exc).__name__


def _describe(exc: Exception, command: click.Command | None = None) -> tuple[int, str]:
    """The exit code and the one line for ``exc``; a bad value is named by the option of ``command``."""
    if isinstance(exc, InvalidValue):
        flag = option_flag(command, exc.option)
        return exc.exit_code, f"{flag} must be {exc.expected}, got {exc.value!r}" if flag else str(exc)
    if isinstance(exc, ConfigError) and exc.option:
        flag = option_flag(command, exc.option)
        return exc.exit_code, f"{exc} ({flag})" if flag and flag not in str(exc) else str(exc)
    if isinstance(exc, EsSemanticError):
        return exc.exit_code, str(exc)
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
@click.option("--request-timeout", type=float, default=30.0, callback=seconds,
              help="Per-request timeout in seconds.")
@click.option("--debug", is_flag=True, default=False, help="Debug logging and full tracebacks.")
@click.version_option(package_name="es-semantic", allow_from_autoenv=False)
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

    Connection options may be given before the command or after it (after it wins). Every other
    option is read from ES_SEMANTIC_<COMMAND>_<OPTION>, e.g. ES_SEMANTIC_REINDEX_REPORT.
    See docs/configuration.md.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format=log_format(sys.stderr))
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


#: Commands that never connect to a cluster (the test server, and the demo with its own).
_OFFLINE_COMMANDS = frozenset({"test-server", "demo"})


def _connection_options() -> list[click.Option]:
    """The group's connection options, also accepted after the subcommand; hidden from its --help
    (the group's --help lists them) and not read from the environment (the group reads ES_URL...)."""
    def option(*decls: str, **kwargs: Any) -> click.Option:
        return click.Option(decls, default=None, show_default=False, allow_from_autoenv=False, hidden=True,
                            **kwargs)

    return [
        option("--es-url"), option("--api-key"), option("--username"), option("--password"), option("--cloud-id"),
        option("--ca-certs", type=click.Path(dir_okay=False)), option("--insecure", is_flag=True, flag_value=True),
        option("--request-timeout", type=float, callback=seconds),
    ]


_CONNECTION_PARAMS = ("es_url", "api_key", "username", "password", "cloud_id", "ca_certs", "insecure",
                      "request_timeout")


def _accept_connection_options(command: click.Command) -> None:
    """Let ``es-semantic status --index faq --es-url URL`` work like ``es-semantic --es-url URL status ...``."""
    if command.name in _OFFLINE_COMMANDS or any(p.name == "es_url" for p in command.params):
        return
    command.params.extend(_connection_options())
    original = command.callback
    if original is None:
        return

    def callback(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in _CONNECTION_PARAMS}
        session = click.get_current_context().find_object(Session)
        if session is not None:
            insecure = given.pop("insecure")
            session.override(url=given.pop("es_url"), verify_certs=False if insecure else None, **given)
        return original(*args, **kwargs)

    command.callback = callback


def _register() -> None:
    for module_name, names in _COMMANDS:
        module = importlib.import_module(module_name)
        for name in names:
            command = getattr(module, name)
            _accept_connection_options(command)
            cli.add_command(command)


if __name__ != "__main__":  # run as ``python -m es_semantic.cli.main``, main() below imports the module itself
    _register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="es-semantic")


if __name__ == "__main__":
    # The command modules import ``es_semantic.cli.main``, which is not this ``__main__`` copy:
    # run the real module's entry point, so the commands register once, on it.
    from es_semantic.cli.main import main as _main

    _main()
