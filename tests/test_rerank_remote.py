"""The served reranker against a local fake ``/rerank`` server speaking the Jina/Cohere (vLLM,
Infinity) and TEI bodies."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from es_semantic import Reranker
from es_semantic.errors import InvalidValue, RerankError

SECRET = "sk-very-secret-key"


def relevance(query: str, doc: str) -> float:
    """A score the test can recompute: shared words, then a small length term to break ties."""
    return len(set(query.lower().split()) & set(doc.lower().split())) + 1.0 / (1 + len(doc))


class FakeRerankServer:
    """``style`` "jina" or "tei"; ``script`` a list of (status, body) answers given before the real ones."""

    def __init__(self, style: str = "jina", max_batch: int | None = None) -> None:
        self.style, self.max_batch = style, max_batch
        self.script: list[tuple[int, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, **body})
                server.auth.append(self.headers.get("Authorization"))
                self._send(*server.answer(body))

            def _send(self, status: int, obj: Any) -> None:
                raw = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict[str, Any]) -> tuple[int, Any]:
        if self.script:
            return self.script.pop(0)
        key = "texts" if self.style == "tei" else "documents"
        if key not in body:
            return 422, "Failed to deserialize the JSON body into the target type: missing field `texts`"
        docs = body[key]
        if self.max_batch is not None and len(docs) > self.max_batch:
            return 413, {"error": f"batch size {len(docs)} > maximum allowed batch size {self.max_batch}"}
        scored = sorted(((relevance(body["query"], d), i) for i, d in enumerate(docs)), reverse=True)
        if self.style == "tei":
            return 200, [{"index": i, "score": s} for s, i in scored]
        top = scored[: body.get("top_n", len(docs))]
        return 200, {"id": "rerank-1", "model": body["model"],
                     "results": [{"index": i, "relevance_score": s, "document": None} for s, i in top]}


@pytest.fixture
def server() -> Iterator[FakeRerankServer]:
    s = FakeRerankServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


QUERY = "capital of France"
DOCS = ["Paris is the capital of France", "Berlin is a city", "the capital", "cats", "France", "of of of"]


def expected(docs=DOCS) -> np.ndarray:
    return np.array([relevance(QUERY, d) for d in docs], dtype=np.float32)


def test_jina_body_batches_and_input_order(server):
    reranker = Reranker("BAAI/bge-reranker-v2-m3", base_url=server.url + "/v1", request_batch_size=4)
    scores = reranker.score(QUERY, DOCS)
    np.testing.assert_allclose(scores, expected(), rtol=1e-6)
    assert scores.dtype == np.float32
    assert [len(r["documents"]) for r in server.requests] == [4, 2]
    first = server.requests[0]
    assert first == {"path": "/v1/rerank", "model": "BAAI/bge-reranker-v2-m3", "query": QUERY,
                     "documents": DOCS[:4], "top_n": 4}
    assert reranker.stats.requests == 2 and reranker.stats.texts == len(DOCS)


def test_tei_body_detected_from_the_servers_refusal():
    tei = FakeRerankServer(style="tei")
    try:
        reranker = Reranker("bge", base_url=tei.url)
        np.testing.assert_allclose(reranker.score(QUERY, DOCS), expected(), rtol=1e-6)
        assert reranker.api == "tei"
        assert [sorted(k for k in r if k != "path") for r in tei.requests] == [
            ["documents", "model", "query", "top_n"], ["query", "texts"]]
        reranker.score(QUERY, DOCS[:2])  # remembered: one request
        assert len(tei.requests) == 3 and tei.requests[-1]["texts"] == DOCS[:2]
        explicit = Reranker("bge", base_url=tei.url, api="tei")
        np.testing.assert_allclose(explicit.score(QUERY, DOCS), expected(), rtol=1e-6)
        assert "documents" not in tei.requests[-1]
    finally:
        tei.httpd.shutdown()
        tei.httpd.server_close()


def test_429_and_503_are_retried(server):
    server.script = [(429, {"error": "rate limited"}), (503, "loading")]
    reranker = Reranker("m", base_url=server.url, max_retries=3)
    reranker.backoff_base = 0.01  # seconds: keep the test fast
    np.testing.assert_allclose(reranker.score(QUERY, DOCS), expected(), rtol=1e-6)
    assert len(server.requests) == 3 and reranker.stats.retries == 2


def test_gives_up_after_max_retries_without_showing_secrets(server):
    echo = f"upstream http://admin:hunter2@10.0.0.1:8000/x failed for key {SECRET}; Authorization: Bearer other-token"
    server.script = [(500, echo)] * 3
    reranker = Reranker("m", base_url=server.url, api_key=SECRET, max_retries=2)
    reranker.backoff_base = 0.01
    with pytest.raises(RerankError) as info:
        reranker.score(QUERY, DOCS)
    message = str(info.value)
    assert "failed 3 times" in message and "HTTP 500" in message and "10.0.0.1" in message
    assert SECRET not in message and "hunter2" not in message and "other-token" not in message and "***" in message
    assert SECRET not in repr(reranker)
    assert server.auth == [f"Bearer {SECRET}"] * 3


def test_credentials_in_the_url_are_never_shown():
    reranker = Reranker("m", base_url="http://admin:hunter2@127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(RerankError) as info:
        reranker.score(QUERY, DOCS)
    assert "hunter2" not in str(info.value) and "http://***@127.0.0.1:9/v1/rerank" in str(info.value)
    assert "hunter2" not in repr(reranker)


def test_refusal_is_not_retried_and_names_the_key(server, monkeypatch):
    monkeypatch.setenv("ES_SEMANTIC_RERANK_API_KEY", SECRET)
    server.script = [(401, {"error": f"invalid key {SECRET}"})]
    with pytest.raises(RerankError, match=r"refused the request \(HTTP 401\).*check the API key") as info:
        Reranker("m", base_url=server.url).score(QUERY, DOCS)
    assert SECRET not in str(info.value) and len(server.requests) == 1


def test_too_large_batches_are_halved():
    small = FakeRerankServer(max_batch=2)
    try:
        reranker = Reranker("m", base_url=small.url, request_batch_size=8)
        np.testing.assert_allclose(reranker.score(QUERY, DOCS), expected(), rtol=1e-6)
        assert reranker.request_batch_size == 2
    finally:
        small.httpd.shutdown()
        small.httpd.server_close()


@pytest.mark.parametrize(("reply", "message"), [
    ({"results": [{"index": 0, "relevance_score": 1.0}]}, "1 results for 6 documents"),
    ({"results": [{"index": 9, "relevance_score": 1.0}]}, "index outside 0..5 or repeated"),
    ({"results": [{"index": 0, "relevance_score": "high"}]}, "has no finite score"),
    ({"data": []}, "without a 'results' list"),
    ("not json", "not JSON"),
])
def test_malformed_responses(server, reply, message):
    server.script = [(200, reply)]
    with pytest.raises(RerankError, match=message):
        Reranker("m", base_url=server.url).score(QUERY, DOCS)


def test_bad_settings():
    with pytest.raises(InvalidValue, match="base_url must be an http:// or https:// URL"):
        Reranker("m", base_url="localhost:8080")
    with pytest.raises(InvalidValue, match="api must be one of jina, tei, or None to detect it, got 'cohere'"):
        Reranker("m", base_url="http://localhost:8080", api="cohere")
