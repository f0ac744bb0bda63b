"""Option callbacks and output helpers shared by the command modules (no commands here, so that
every command module can import it without registering commands from a half-loaded module)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import ConfigError, InvalidValue

#: The longest time an option takes, in seconds (a week): beyond it, timers overflow.
MAX_SECONDS = 7 * 24 * 3600


def seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Option callback: a finite number of seconds > 0 (not ``nan``, ``inf`` or ``1e300``)."""
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise click.BadParameter(f"must be a number of seconds > 0 and <= {MAX_SECONDS}, got {value!r}")
    return value


def library_check(parse: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback that parses the value with the library's ``parse`` (one check for the CLI
    and the Python API); its ``ConfigError`` becomes click's usage error for the option."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except InvalidValue as exc:
            raise click.BadParameter(f"must be {exc.expected}, got {exc.value!r}") from None
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
    return callback


def log_format(stream: Any) -> str:
    """Log lines carry a timestamp where ``stream`` is no terminal (a cron or pod log)."""
    stamp = "" if _is_terminal(stream) else "%(asctime)s "
    return stamp + "%(levelname)s %(name)s: %(message)s"


def say(message: str) -> None:
    """A line for humans on stderr; stamped with the time (ISO 8601) where stderr is no terminal."""
    if not _is_terminal(sys.stderr):
        from datetime import datetime

        message = f"{datetime.now().astimezone().isoformat(timespec='seconds')} {message}"
    click.echo(message, err=True)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
