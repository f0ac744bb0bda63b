"""A local OpenAI-compatible ``/v1/embeddings`` server for tests (as vLLM or TEI would serve a
model), computing its vectors with a function the test gives."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


@contextmanager
def embedding_server(embed: Callable[[list[str]], np.ndarray],
                     state: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Serve ``embed`` at ``http://127.0.0.1:<port>/v1``; yields the URL and ``state`` (a new dict
    if not given) holding what the server saw: ``inputs``, every text asked for, in order; ``auth``,
    each request's Authorization header."""
    seen: dict[str, Any] = state if state is not None else {}
    seen.update(inputs=[], auth=[])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["inputs"] += body["input"]
            seen["auth"].append(self.headers.get("Authorization"))
            vectors = embed(body["input"])
            raw = json.dumps({"data": [{"index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
