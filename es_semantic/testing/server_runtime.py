"""``start_server`` / ``TestServer``: run the test server's HTTP layer in background threads."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from es_semantic.testing.faults import Faults
from es_semantic.testing.server import DEFAULT_VERSION, Api, TestServerHTTP
from es_semantic.testing.store import Store

log = logging.getLogger(__name__)


class TestServer:
    """A running test server. Use as a context manager, or call :meth:`stop`.

    ``url`` is the base URL for the client; ``store`` gives white-box access to the indices;
    ``faults`` is the fault-injection API (see :mod:`es_semantic.testing.faults`).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, version: str = DEFAULT_VERSION,
                 refresh_interval: str = "1s", seed: int = 0) -> None:
        self.store = Store(refresh_interval=refresh_interval)
        self.faults = Faults(seed=seed)
        self.api = Api(self.store, self.faults, version=version)
        self._httpd = TestServerHTTP((host, port), self.api)
        self.host = host
        self.port = self._httpd.server_address[1]
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> TestServer:
        serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="es-test-server-http", daemon=True)
        refresher = threading.Thread(target=self._refresh_loop, name="es-test-server-refresh", daemon=True)
        self._threads = [serve, refresher]
        for thread in self._threads:
            thread.start()
        return self

    def _refresh_loop(self) -> None:
        # Periodic refresh, like index.refresh_interval; each index decides if it is due.
        while not self._stopped.wait(0.1):
            try:
                self.store.periodic_refresh()
            except Exception:
                log.exception("periodic refresh failed")

    def reset(self) -> None:
        """Delete all indices, points in time and scrolls, and clear faults."""
        self.store.clear()
        self.faults.clear()

    def serve_forever(self) -> None:
        """Run in the foreground (the CLI) until interrupted."""
        refresher = threading.Thread(target=self._refresh_loop, daemon=True)
        refresher.start()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._stopped.set()
            self._httpd.server_close()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TestServer:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_server(host: str = "127.0.0.1", port: int = 0, *, version: str = DEFAULT_VERSION,
                 refresh_interval: str = "1s", seed: int = 0) -> TestServer:
    """Start a test server in background threads and return it (``port=0`` picks a free port)."""
    return TestServer(host, port, version=version, refresh_interval=refresh_interval, seed=seed).start()
