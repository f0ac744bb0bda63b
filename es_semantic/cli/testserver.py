"""``es-semantic test-server``: run the in-memory Elasticsearch-compatible test server."""

from __future__ import annotations

import errno
import socket
from typing import Any

import click

from ..errors import ConfigError


class _Interval(click.ParamType):
    """An Elasticsearch time value (``1s``, ``500ms``, ``2m``) or ``-1``."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from es_semantic.testing.store import parse_time

        text = str(value).strip()
        try:
            parse_time(text, "refresh_interval")
        except Exception:  # noqa: BLE001 - the store's EsError: one message for every bad value
            self.fail(f"{value!r} is not a time value; give e.g. 1s, 500ms, 2m, or -1 to disable periodic refresh",
                      param, ctx)
        return text


@click.command("test-server", epilog="What it supports and the pytest fixtures: docs/testing.md")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9200, show_default=True, type=click.IntRange(0, 65535),
              envvar="ES_SEMANTIC_TEST_SERVER_PORT", show_envvar=True, help="Port to listen on (0 picks a free one).")
@click.option("--refresh-interval", default="1s", show_default=True, type=_Interval(),
              help="Default index.refresh_interval for new indices ('-1' disables periodic refresh).")
def test_server(host: str, port: int, refresh_interval: str) -> None:
    """Run an in-memory Elasticsearch-compatible TEST server (not for production data).

    It answers the official Elasticsearch client like a 9.3.0 node; data is lost on exit.

    \b
    Example:
      es-semantic test-server --port 9201 &
      curl http://127.0.0.1:9201/
    """
    from es_semantic.testing.server_runtime import TestServer

    try:
        server = TestServer(host, port, refresh_interval=refresh_interval)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} is already in use; pick another --port (0 picks a free one)") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"no permission to listen on port {port} (ports below 1024 need root); "
                                   "pick another --port (0 picks a free one)") from None
        if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            raise ConfigError(f"cannot listen on {host!r} ({exc.strerror or exc}); give an address of this "
                                   "machine with --host, e.g. 127.0.0.1") from None
        raise
    click.echo(f"es-semantic test server listening on {server.url} (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
