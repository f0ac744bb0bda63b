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
            self._settings = ConnectionSettings.from_env(**self._connection)
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


def _name_env_source(exc: click.BadParameter) -> None:
    """Append ``(from ES_SEMANTIC_REINDEX_WRITERS)`` to a bad value that came from the environment:
    the command line the user looks at does not show it."""
    ctx, param = exc.ctx, exc.param
    if ctx is None or not isinstance(param, click.Option) or not param.name or getattr(exc, "_env_named", False):
        return
    if ctx.get_parameter_source(param.name) is not click.core.ParameterSource.ENVIRONMENT:
        return
    envvar = _resolved_envvar(ctx, param)
    if envvar:
        exc.message = f"{exc.message} (from {envvar})"
        exc._env_named = True  # type: ignore[attr-defined]


class _Context(click.Context):
    """Records itself in the context chain's shared ``meta``: an error that reaches the group can then
    say which option values came from the environment (the subcommand's context is gone by then)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meta.setdefault("es_semantic.contexts", []).append(self)


def _resolved_envvar(ctx: click.Context, param: click.Option) -> str | None:
    envvar = param.envvar or (f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
                              if ctx.auto_envvar_prefix and param.name else None)
    if isinstance(envvar, (list, tuple)):
        envvar = next((name for name in envvar if os.environ.get(name)), envvar[0] if envvar else None)
    return envvar


def name_env_sources(message: str, ctx: click.Context | None) -> str:
    """``message`` with ``(from VAR)`` appended for each option it names (``--bulk-bytes``) whose value
    came from the environment variable VAR: the command line the user looks at does not show it. An
    option given on the command line after the command wins over the same one before it."""
    if ctx is None:
        return message
    contexts = list(ctx.meta.get("es_semantic.contexts", [])) or [ctx]
    seen: set[str] = set()
    added: list[str] = []
    for c in reversed(contexts):  # innermost first
        for param in c.command.params:
            if not isinstance(param, click.Option) or not param.name or param.name in seen:
                continue
            source = c.get_parameter_source(param.name)
            if source is None or source is click.core.ParameterSource.DEFAULT:
                continue
            seen.add(param.name)
            if source is not click.core.ParameterSource.ENVIRONMENT:
                continue
            envvar = _resolved_envvar(c, param)
            if envvar and f"(from {envvar})" not in message and any(
                    re.search(rf"{re.escape(opt)}(?![\w-])", message) for opt in param.opts if opt.startswith("--")):
                added.append(envvar)
    return message + "".join(f" (from {name})" for name in added)


class _Group(click.Group):
    """Turns library errors into one line and an exit code instead of a traceback."""

    context_class = _Context

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            _name_env_source(exc)
            raise
        except ConfigError as exc:  # from a group option's check, before the command runs
            exc.cli_message = name_env_sources(exc.cli_message or str(exc), ctx)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.BadParameter as exc:
            _name_env_source(exc)
            raise
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
            session = ctx.obj if isinstance(ctx.obj, Session) else None
            if session is not None and session.debug:
                # the traceback, then the same line and exit code as without --debug
                import traceback

                traceback.print_exc()
            code, message = _describe(exc)
            if isinstance(exc, ConfigError):
                message = name_env_sources(message, ctx)
            if isinstance(exc, IndexNotFound) and session is not None and session._client is not None:
                message = _with_index_hint(message, session._client)
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
        from ..embedding.model_config import CLI_LOCAL_COPY_HINT, LOCAL_COPY_HINT

        # model-load messages name the Python API and the flag; the command line needs the flag only
        message = (getattr(exc, "cli_message", None) or str(exc)).replace(LOCAL_COPY_HINT, CLI_LOCAL_COPY_HINT)
        return exc.exit_code, message
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

    Connection options are read from ES_URL, ES_API_KEY, ES_USERNAME/ES_PASSWORD, ES_CLOUD_ID and
    ES_CA_CERTS; they may be given before the command or after it (after it wins). Every other
    option is read from ES_SEMANTIC_<COMMAND>_<OPTION> (shown in each command's --help); an
    ES_SEMANTIC_* variable that matches no option is warned about.
    """
    warn_unknown_env()
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


#: Commands that never connect to a cluster (the test server, and the demo with its own).
_OFFLINE_COMMANDS = frozenset({"test-server", "demo"})

#: ES_SEMANTIC_* variables read outside the command options (scripts and tests).
OTHER_ENV_VARS = frozenset({"ES_SEMANTIC_DATASETS", "ES_SEMANTIC_EVAL_CACHE", "ES_SEMANTIC_TEST_ES_IMAGE"})


def _connection_options() -> list[click.Option]:
    """The group's connection options, also accepted after the subcommand (no environment variables
    of their own: the group reads ES_URL and the others)."""
    def option(*decls: str, **kwargs: Any) -> click.Option:
        return click.Option(decls, default=None, show_default=False, allow_from_autoenv=False, **kwargs)

    return [
        option("--es-url", help="As before the command: Elasticsearch URL (given here, it wins)."),
        option("--api-key", help="As before the command: API key."),
        option("--username", help="As before the command: basic-auth user."),
        option("--password", help="As before the command: basic-auth password."),
        option("--cloud-id", help="As before the command: Elastic Cloud id."),
        option("--ca-certs", type=click.Path(dir_okay=False), help="As before the command: CA certificate bundle."),
        option("--insecure", is_flag=True, flag_value=True, help="As before the command: do not verify TLS certificates."),
        option("--request-timeout", type=float, help="As before the command: per-request timeout in seconds."),
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


def _show_envvars(command: click.Command) -> None:
    """Every option's --help names the environment variable it is read from (click shows the
    ES_SEMANTIC_<COMMAND>_<OPTION> ones only when asked)."""
    for param in command.params:
        if isinstance(param, click.Option) and (param.envvar or param.allow_from_autoenv) and not param.hidden:
            if param.name not in ("help", "version"):
                param.show_envvar = True


def known_env_vars() -> set[str]:
    """Every ES_SEMANTIC_* name some option of some command reads (click's auto_envvar_prefix scheme
    and the explicit ``envvar=``), plus those the scripts and tests read."""
    prefix = CONTEXT_SETTINGS["auto_envvar_prefix"]
    known = set(OTHER_ENV_VARS)

    def add(command: click.Command, command_prefix: str) -> None:
        for param in command.params:
            if not isinstance(param, click.Option) or not param.name:
                continue
            if param.envvar:
                known.update([param.envvar] if isinstance(param.envvar, str) else param.envvar)
            elif param.allow_from_autoenv:
                known.add(f"{command_prefix}_{param.name.upper()}")

    add(cli, prefix)
    for name, command in cli.commands.items():
        add(command, f"{prefix}_{name.upper().replace('-', '_')}")
    return {name for name in known if name.startswith(f"{prefix}_")}


def warn_unknown_env(environ: Any = None) -> None:
    """A warning on stderr for each ES_SEMANTIC_* variable no option reads (a typo such as
    ES_SEMANTIC_REINDX_INDEX would otherwise be ignored in silence), with the closest known name."""
    import difflib

    env = os.environ if environ is None else environ
    prefix = f"{CONTEXT_SETTINGS['auto_envvar_prefix']}_"
    unknown = sorted(name for name in env if name.startswith(prefix) and name not in known_env_vars())
    if not unknown:
        return
    known = sorted(known_env_vars())
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]}?" if close else "see the options' env vars in --help of each command"
        click.echo(f"warning: environment variable {name} matches no option of any command and is ignored; {hint}",
                   err=True)


def _register() -> None:
    for module_name, names in _COMMANDS:
        module = importlib.import_module(module_name)
        for name in names:
            command = getattr(module, name)
            command.context_class = _Context
            _accept_connection_options(command)
            _show_envvars(command)
            cli.add_command(command)
    _show_envvars(cli)


if __name__ != "__main__":  # run as ``python -m es_semantic.cli.main``, main() below imports the module itself
    _register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="es-semantic")
    except ConfigError as exc:  # raised while click parses, before the group's handler
        click.echo(f"error: {redact(exc.cli_message or str(exc), None)}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    # The command modules import ``es_semantic.cli.main``, which is not this ``__main__`` copy:
    # run the real module's entry point, so the commands register once, on it.
    from es_semantic.cli.main import main as _main

    _main()
