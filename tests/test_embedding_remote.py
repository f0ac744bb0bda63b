"""Remote backend against a small OpenAI-compatible server started on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from es_semantic.embedding import Embedder
from es_semantic.errors import EmbeddingError

SECRET = "sk-test-SECRET-1234567890"
DIM = 8


def fake_vector(text: str) -> np.ndarray:
    """Deterministic, deliberately not unit-length, so client-side normalisation is visible."""
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    return (rng.normal(size=DIM) * 3.0).astype(np.float32)


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.fail_with: list[tuple[int, str, dict]] = []  # (status, body, headers) served first
        self.reject_dimensions = False
        self.max_inputs: int | None = None  # like TEI's max_client_batch_size
        self.max_chars: int | None = None  # longer inputs get vLLM's context-length 400
        self.reply: object = None  # a fixed 200 body instead of real vectors (malformed responses)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    failure = server.fail_with.pop(0) if server.fail_with else None
                if self.path != "/v1/embeddings":
                    return self._send(404, {"error": f"no route {self.path}"})
                if failure:
                    status, text, headers = failure
                    return self._send(status, text if isinstance(text, bytes) else {"error": {"message": text}},
                                      headers)
                if server.max_inputs is not None and len(body["input"]) > server.max_inputs:
                    return self._send(422, {"error": f"batch size {len(body['input'])} > maximum allowed batch size {server.max_inputs}", "error_type": "Validation"})
                if server.max_chars is not None and any(len(t) > server.max_chars for t in body["input"]):
                    return self._send(400, {"error": {"message": "This model's maximum context length is 512 tokens. "
                                                      "However, you requested 900 tokens in the input."}})
                if server.reply is not None:
                    return self._send(200, server.reply)
                if server.reject_dimensions and "dimensions" in body:
                    return self._send(400, {"error": {"message": "This model does not support matryoshka dimensions"}})
                data = []
                for i, t in enumerate(body["input"]):
                    v = fake_vector(t)
                    if "dimensions" in body:
                        v = v[: body["dimensions"]]  # shortened but not renormalised
                    data.append({"object": "embedding", "index": i, "embedding": v.tolist()})
                data.reverse()  # out of order on purpose: the client must sort by index
                tokens = sum(len(t.split()) + 1 for t in body["input"])
                self._send(200, {"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

            def _send(self, status, obj, headers=None):
                raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()  # bytes: sent as they are
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def make(server, **kw):
    e = Embedder("Qwen/Qwen3-Embedding-0.6B", base_url=server.url, **kw)
    e._backend.backoff_base = 0.01  # keep retry sleeps short in tests
    return e


def test_batches_order_and_normalisation(server):
    e = make(server, request_batch_size=3, concurrency=2, dims=DIM)
    texts = [f"document number {i}" for i in range(10)]
    v = e.embed_documents(texts)
    assert v.shape == (10, DIM) and v.dtype == np.float32
    np.testing.assert_allclose(v, unit([fake_vector(t) for t in texts]), atol=1e-6)
    sizes = sorted(len(r["input"]) for r in server.requests)
    assert sizes == [1, 3, 3, 3]
    assert all(r["model"] == "Qwen/Qwen3-Embedding-0.6B" for r in server.requests)
    assert e.stats.texts == 10 and e.stats.requests == 4 and e.stats.tokens > 0


def test_dimensions_sent_and_renormalised(server):
    e = make(server, dims=4)
    v = e.embed_documents(["a", "b"])
    assert server.requests[0]["dimensions"] == 4
    np.testing.assert_allclose(v, unit([fake_vector("a")[:4], fake_vector("b")[:4]]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)


def test_dimensions_rejected_falls_back_to_client_truncation(server):
    server.reject_dimensions = True
    e = make(server, dims=4)
    v = e.embed_documents(["a"])
    assert "dimensions" not in server.requests[-1]
    np.testing.assert_allclose(v[0], unit(fake_vector("a")[:4]), atol=1e-6)


def test_dims_probed_when_not_given(server):
    e = make(server)
    assert e.dims == DIM
    assert e.embed_documents([]).shape == (0, DIM)


def test_retries_429_then_succeeds(server):
    server.fail_with = [(429, "slow down", {"Retry-After": "0"}), (503, "overloaded", {})]
    e = make(server, dims=DIM)
    v = e.embed_documents(["x"])
    np.testing.assert_allclose(v[0], unit(fake_vector("x")), atol=1e-6)
    assert len(server.requests) == 3 and e.stats.retries == 2


def test_400_is_embedding_error_without_retry(server):
    server.fail_with = [(400, "input is too long", {})]
    e = make(server, dims=DIM)
    with pytest.raises(EmbeddingError, match=r"HTTP 400.*input is too long"):
        e.embed_documents(["x"])
    assert len(server.requests) == 1


def test_gives_up_after_max_retries(server):
    server.fail_with = [(500, "broken", {})] * 10
    e = make(server, dims=DIM, max_retries=2)
    with pytest.raises(EmbeddingError, match="failed 3 times"):
        e.embed_documents(["x"])
    assert len(server.requests) == 3


def test_connection_refused_retried_then_clear_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    e = Embedder("m", base_url=f"http://127.0.0.1:{port}/v1", dims=4, max_retries=1)
    e._backend.backoff_base = 0.01
    with pytest.raises(EmbeddingError, match="failed 2 times.*reachable"):
        e.embed_documents(["x"])
    assert e.stats.retries == 1


def test_api_key_sent_but_never_shown(server, monkeypatch):
    server.fail_with = [(401, f"bad key {SECRET}", {})]
    e = make(server, api_key=SECRET, dims=DIM)
    assert SECRET not in repr(e) and SECRET not in repr(e._backend)
    with pytest.raises(EmbeddingError) as ei:
        e.embed_documents(["x"])
    assert SECRET not in str(ei.value) and "API key" in str(ei.value)
    assert server.headers[0]["Authorization"] == f"Bearer {SECRET}"

    monkeypatch.setenv("ES_SEMANTIC_EMBEDDING_API_KEY", "from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "openai-env")
    make(server, dims=DIM).embed_documents(["y"])
    assert server.headers[-1]["Authorization"] == "Bearer from-env"


def test_query_instruction_for_qwen_models_only(server):
    e = make(server, dims=DIM)
    e.embed_query("what is bm25")
    assert server.requests[-1]["input"] == [
        "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:what is bm25"
    ]
    e.embed_documents(["doc"])
    assert server.requests[-1]["input"] == ["doc"]
    plain = Embedder("all-minilm", base_url=server.url, dims=DIM)
    plain.embed_query("what is bm25")
    assert server.requests[-1]["input"] == ["what is bm25"]


def test_remote_fingerprint_and_errors(server):
    e = make(server, dims=DIM)
    fp = e.settings_fingerprint()
    assert fp.startswith("qwen3-embedding-0.6b-8-")
    assert make(server, dims=4).settings_fingerprint() != fp
    assert e.weights_digest is None  # no files to hash: the job compares vectors instead
    with pytest.raises(EmbeddingError, match="http"):
        Embedder("m", base_url="localhost:8000")


def test_too_large_batches_are_split(server):
    server.max_inputs = 2
    e = make(server, request_batch_size=8, concurrency=1, dims=DIM)
    texts = [f"t{i}" for i in range(7)]
    v = e.embed_documents(texts)
    np.testing.assert_allclose(v, unit([fake_vector(t) for t in texts]), atol=1e-6)
    assert e._backend.request_batch_size == 2
    ok = [r for r in server.requests if len(r["input"]) <= 2]
    assert sum(len(r["input"]) for r in ok) == 7


def test_credentials_in_base_url_never_shown():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    e = Embedder("m", base_url=f"http://alice:pw-{SECRET}@127.0.0.1:{port}/v1", dims=4, max_retries=0)
    assert SECRET not in repr(e._backend) and "***@127.0.0.1" in repr(e._backend)
    with pytest.raises(EmbeddingError) as ei:
        e.embed_documents(["x"])
    assert SECRET not in str(ei.value) and "alice" not in str(ei.value)
    with pytest.raises(EmbeddingError) as ei:
        Embedder("m", base_url=f"ftp://alice:{SECRET}@host/v1", dims=4)
    assert SECRET not in str(ei.value)


def _rows(*embeddings, index=True):
    return {"data": [{"index": i, "embedding": e} if index else {"embedding": e} for i, e in enumerate(embeddings)]}


@pytest.mark.parametrize(
    "reply, message",
    [
        (_rows([1.0, 2.0], [None, 1.0], [3.0, 4.0]), r"input 1: it holds null"),
        (_rows([1.0, 2.0], [0.0, 0.0], [3.0, 4.0]), r"input 1\b.*all zeros"),
        (_rows([1.0, 2.0], [3.0, 4.0], [float("nan"), 1.0]), r"input 2\b.*non-finite"),
        (_rows([1.0, float("inf")], [3.0, 4.0], [1.0, 1.0]), r"input 0\b.*non-finite"),
    ],
)
def test_unusable_vectors_are_errors_naming_the_input(server, reply, message):
    server.reply = reply
    with pytest.raises(EmbeddingError, match=message):
        make(server, dims=2).embed_documents(["a", "b", "c"])


def test_unusable_vector_named_by_its_place_in_the_whole_call(server):
    """Inputs go in several requests; the message counts from the caller's list, not the request."""
    e = make(server, dims=DIM, request_batch_size=2, concurrency=1)
    real = e._backend._parse

    def parse(result, n, stats, offset=0):
        if offset == 4:
            next(d for d in result["data"] if d["index"] == 1)["embedding"] = [0.0] * DIM
        return real(result, n, stats, offset)

    e._backend._parse = parse
    with pytest.raises(EmbeddingError, match=r"input 5\b.*all zeros"):
        e.embed_documents([f"t{i}" for i in range(7)])


@pytest.mark.parametrize(
    "reply, message",
    [
        ({"data": [[1.0, 2.0], [3.0, 4.0]]}, r"data\[0\] is list"),
        ({"data": "oops"}, r"'data' is a str"),
        ({"result": []}, r"'data' is missing"),
        ([1, 2], r"body is a JSON list"),
        (_rows([1.0, 2.0], [3.0, 4.0]) | {"usage": {"prompt_tokens": "many"}}, r"usage.prompt_tokens is 'many'"),
        ({"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 0, "embedding": [3.0, 4.0]}]},
         r"'index' values are \[0, 0\]"),
        ({"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 2, "embedding": [3.0, 4.0]}]},
         r"'index' values are \[0, 2\]"),
        ({"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"embedding": [3.0, 4.0]}]}, r"'index' values"),
        ({"data": [{"index": "0", "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [3.0, 4.0]}]}, r"'index' values"),
        (_rows([1.0, 2.0], [3.0]), r"different lengths"),
        (_rows("AACAPwAAAEA=", "AACAPwAAAEA="), r"input 0 is a base64 string"),
        (_rows([1.0, 2.0], ["x", 1.0]), r"input 1: it holds 'x'"),
    ],
)
def test_malformed_responses_say_what_was_wrong(server, reply, message):
    server.reply = reply
    with pytest.raises(EmbeddingError, match=message):
        make(server, dims=2).embed_documents(["a", "b"])


def test_rows_without_index_are_in_input_order(server):
    server.reply = _rows([1.0, 0.0], [0.0, 1.0], index=False)
    v = make(server, dims=2).embed_documents(["a", "b"])
    np.testing.assert_allclose(v, [[1.0, 0.0], [0.0, 1.0]])


def test_input_over_the_server_context_named_by_index(server, caplog):
    import logging

    server.max_chars = 20
    with caplog.at_level(logging.WARNING, logger="es_semantic.embedding.embedder"):
        e = make(server, dims=DIM, max_length=512, request_batch_size=4)
    assert "max_length=512 is not applied with a remote embedding server" in caplog.text
    texts = ["short"] * 6 + ["x" * 50] + ["short"]
    with pytest.raises(EmbeddingError) as ei:
        e.embed_documents(texts)
    msg = str(ei.value)
    assert "Input 6 (50 characters" in msg and "maximum context length" in msg
    assert "--auto-truncate" in msg and "truncate_prompt_tokens" in msg
    # the default max_length says nothing: the server's limit is the only one anyway
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="es_semantic.embedding.embedder"):
        make(server, dims=DIM)
    assert "max_length" not in caplog.text


# -- what a server sends back never carries a credential out (issue 13 items 4, 5) -------------------

KEY = "sk-CONFIGURED-key-0987654321"


def test_a_body_that_is_not_json_is_redacted(server, caplog):
    server.reply = f"<html>auth=Bearer SECRET-TOKEN-42 api_key={KEY}</html>".encode()
    e = make(server, api_key=KEY, dims=DIM)
    with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingError, match="not JSON") as ei:
        e.embed_documents(["x"])
    shown = str(ei.value) + caplog.text
    assert "SECRET-TOKEN-42" not in shown and KEY not in shown
    assert "auth=Bearer ***" in str(ei.value)


def test_error_bodies_are_redacted_on_the_retry_and_the_refusal_paths(server, caplog):
    server.fail_with = [(503, "upstream said auth=Bearer TOKEN-503", {}),
                        (400, b"<html>Authorization: Bearer TOKEN-400 password=hunter2 " + KEY.encode() + b"</html>", {})]
    e = make(server, api_key=KEY, dims=DIM, max_retries=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingError, match="HTTP 400") as ei:
        e.embed_documents(["x"])
    shown = str(ei.value) + caplog.text
    assert "retry 1" in caplog.text  # the 503 was logged, redacted
    for secret in ("TOKEN-503", "TOKEN-400", "hunter2", KEY):
        assert secret not in shown, secret


def test_redact_body():
    from es_semantic.embedding.remote import redact_body

    body = ('{"Authorization": "Bearer abc.DEF-1", "api_key": "k-123", "x-api-key": "k-9"} token=tt1 '
            "see https://alice:pw1@host/v1 and Basic QWxhZGRpbjpvcGVu and sk-own")
    out = redact_body(body, "sk-own")
    for secret in ("abc.DEF-1", "k-123", "k-9", "tt1", "pw1", "QWxhZGRpbjpvcGVu", "sk-own"):
        assert secret not in out, secret
    assert "https://***@host/v1" in out and redact_body("no secrets here: 5 tokens") == "no secrets here: 5 tokens"


def test_repr_never_shows_a_url_password():
    e = Embedder("m", base_url="http://u:PW@h/v1", dims=4)  # no request is made
    assert "PW" not in repr(e) and "u:" not in repr(e) and "***@h" in repr(e)
    assert repr(e) == e.describe() and type(e).__name__ == "RemoteEmbedder"
