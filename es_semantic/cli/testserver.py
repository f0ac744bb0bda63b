"""``es-semantic test-server``: run the in-memory Elasticsearch-compatible test server."""

from __future__ import annotations

import click


@click.command("test-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=9200, show_default=True, type=int, envvar="ES_SEMANTIC_TEST_SERVER_PORT",
              help="Port to listen on (0 picks a free one). Env: ES_SEMANTIC_TEST_SERVER_PORT.")
@click.option("--refresh-interval", default="1s", show_default=True,
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

    server = TestServer(host, port, refresh_interval=refresh_interval)
    click.echo(f"es-semantic test server listening on {server.url} (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
