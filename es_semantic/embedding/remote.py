"""Remote backend: an OpenAI-compatible ``POST {base_url}/embeddings`` server.

vLLM, SGLang, TEI and Infinity all serve Qwen3-Embedding this way. Plain ``urllib.request``
(no extra dependency; this is not Elasticsearch traffic). Requests go in batches, several at a
time; 429, 5xx and connection errors are retried with exponential backoff and jitter
(honouring ``Retry-After``); other 4xx errors fail at once with the server's message.
The API key never appears in ``repr`` or in error messages.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from es_semantic.config import redact_url
from es_semantic.embedding.stats import EmbedStats
from es_semantic.errors import EmbeddingError

log = logging.getLogger(__name__)

API_KEY_ENV = ("ES_SEMANTIC_EMBEDDING_API_KEY", "OPENAI_API_KEY")
_MAX_CHARS_PER_REQUEST = 400_000


class Retryable(Exception):
    """A failure worth another try (429, 5xx, connection trouble)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _DimensionsRejected(Exception):
    pass


class _BatchTooLarge(Exception):
    """The server refuses this many inputs (or bytes) in one request (413, TEI's 422)."""


class _ContextTooLong(Exception):
    """An input is longer than the served model accepts (vLLM/SGLang 400, TEI 413/422)."""


# How servers word "an input is longer than the model's context" (vLLM, SGLang, TEI, Infinity, OpenAI).
_CONTEXT_TOO_LONG = re.compile(
    r"context length|context window|max_model_len|maximum (?:input |sequence )?length|"
    r"(?:less|fewer) than \d+ tokens|too many tokens|input is too long|too long for|exceeds? the? ?(?:max|limit)",
    re.IGNORECASE,
)
_NUMBERS = object()  # sentinel: every value of a row is a number
TRUNCATION_HINT = (
    "shorten or split the text, or start the server with its truncation option "
    "(TEI: --auto-truncate; vLLM: truncate_prompt_tokens; Infinity and SGLang truncate by their own settings). "
    "max_length is not applied client-side with a remote server"
)


# "Authorization: Bearer X", "api_key=X", '"token": "X"': the value after a credential's name
_CREDENTIAL = re.compile(
    r"(?i)\b(auth(?:orization)?|(?:x-)?api[-_]?key|(?:access[-_]?|refresh[-_]?)?token|password|passwd|secret)"
    r"([\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?([^\s\"'&,;<>]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?!\*\*\*)[A-Za-z0-9._~+/=-]+")


def redact_body(text: str, *secrets: str | None) -> str:
    """A server's answer fit for a message or a log line: credentials after their names
    (Authorization, Bearer, api_key, token, password), URL passwords and each of ``secrets`` are
    replaced by ``***``."""
    text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}***", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = redact_url(text) if "@" in text or "?" in text else text
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def backoff_wait(state: RetryCallState, base: float, cap: float) -> float:
    """Jittered exponential back-off, or the server's ``Retry-After`` when it asks for longer."""
    exc = state.outcome.exception() if state.outcome else None
    jittered = wait_random_exponential(multiplier=base, max=cap)(state)
    if isinstance(exc, Retryable) and exc.retry_after is not None:
        return min(max(exc.retry_after, jittered), cap * 2)
    return jittered


def retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class RemoteBackend:
    """Client for one embeddings endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        request_batch_size: int = 64,
        concurrency: int = 4,
    ) -> None:
        base = base_url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise EmbeddingError(f"base_url must start with http:// or https://, got {redact_url(base_url)!r}.")
        self.base_url = base
        self.url = base if base.endswith("/embeddings") else base + "/embeddings"
        # What messages, logs and repr show: credentials in the URL (https://user:pw@host) never leak.
        self.display_url = redact_url(self.url)
        self.model = model
        self._api_key = api_key or next((os.environ[k] for k in API_KEY_ENV if os.environ.get(k)), None)
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.request_batch_size = max(1, int(request_batch_size))
        self.concurrency = max(1, int(concurrency))
        self.backoff_base = 0.5  # seconds; first retry waits up to this, doubling each time
        self.backoff_max = 30.0
        self._send_dimensions = True  # switched off if the server rejects the field

    def __repr__(self) -> str:
        return f"RemoteBackend(url={self.display_url!r}, model={self.model!r}, api_key={'set' if self._api_key else 'unset'})"

    # ------------------------------------------------------------------ one request
    def _scrub(self, text: str) -> str:
        return redact_body(text, self._api_key)

    def _post(self, payload: dict) -> dict:
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            text = self._scrub(exc.read().decode("utf-8", "replace").strip())[:300]
            if exc.code == 429 or exc.code >= 500:
                raise Retryable(f"HTTP {exc.code}: {text}", retry_after_seconds(exc.headers)) from None
            if exc.code in (400, 413, 422) and _CONTEXT_TOO_LONG.search(text):
                raise _ContextTooLong(f"HTTP {exc.code}: {text}") from None
            if len(payload["input"]) > 1 and (
                exc.code == 413 or (exc.code in (400, 422) and "batch" in text.lower())
            ):
                raise _BatchTooLarge(text) from None
            if exc.code == 400 and "dimensions" in payload and any(
                w in text.lower() for w in ("dimension", "matryoshka")
            ):
                raise _DimensionsRejected(text) from None
            hint = " Check the API key (argument api_key or ES_SEMANTIC_EMBEDDING_API_KEY/OPENAI_API_KEY)." if exc.code in (401, 403) else ""
            raise EmbeddingError(
                f"Embedding server {self.display_url} rejected the request (HTTP {exc.code}): {text or exc.reason}.{hint}"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Retryable(f"{type(exc).__name__}: {self._scrub(str(reason))}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise EmbeddingError(
                f"Embedding server {self.display_url} sent a response that is not JSON: "
                f"{self._scrub(body[:200].decode('utf-8', 'replace'))!r}"
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        return backoff_wait(state, self.backoff_base, self.backoff_max)

    def _retrying(self, stats: EmbedStats) -> Retrying:
        """Retries of 429, 5xx and connection failures, with backoff; each one counted and logged."""
        def before_sleep(state: RetryCallState) -> None:
            stats.add(retries=1)
            log.warning("embedding request to %s failed (%s); retry %d of %d", self.display_url,
                        self._scrub(str(state.outcome.exception())), state.attempt_number, self.max_retries)

        return Retrying(retry=retry_if_exception(lambda e: isinstance(e, Retryable)), wait=self._wait,
                        stop=stop_after_attempt(self.max_retries + 1), before_sleep=before_sleep, reraise=True)

    def _request(self, texts: list[str], dims: int | None, stats: EmbedStats, offset: int = 0) -> np.ndarray:
        """Vectors for ``texts``, which start at input ``offset`` of the caller's list (for messages)."""
        retrying = self._retrying(stats)
        payload: dict = {"model": self.model, "input": texts}
        if dims is not None and self._send_dimensions:
            payload["dimensions"] = dims
        try:
            try:
                stats.add(requests=1)
                result = retrying(self._post, payload)
            except _DimensionsRejected as exc:
                # The server cannot shorten vectors itself: ask for full ones, truncate here.
                log.warning("%s does not accept 'dimensions' (%s); truncating client-side", self.display_url,
                            self._scrub(str(exc)))
                self._send_dimensions = False
                payload.pop("dimensions")
                stats.add(requests=1)
                result = retrying(self._post, payload)
        except _BatchTooLarge as exc:
            # Split and remember the smaller size (TEI allows 32 inputs per request by default).
            half = (len(texts) + 1) // 2
            self.request_batch_size = max(1, min(self.request_batch_size, half))
            log.warning("%s refused %d inputs in one request (%s); sending %d at a time",
                        self.display_url, len(texts), self._scrub(str(exc)), self.request_batch_size)
            return np.concatenate(
                [self._request(texts[:half], dims, stats, offset),
                 self._request(texts[half:], dims, stats, offset + half)], axis=0
            )
        except _ContextTooLong as exc:
            if len(texts) > 1:
                # the server does not say which input: halve until the one too long is alone
                half = len(texts) // 2
                return np.concatenate(
                    [self._request(texts[:half], dims, stats, offset),
                     self._request(texts[half:], dims, stats, offset + half)], axis=0
                )
            raise EmbeddingError(
                f"Input {offset} ({len(texts[0])} characters, prompt included) is longer than the model behind "
                f"{self.display_url} accepts ({exc}); {TRUNCATION_HINT}."
            ) from None
        except Retryable as exc:
            raise EmbeddingError(
                f"Embedding server {self.display_url} failed {self.max_retries + 1} times; last error: {exc}. "
                f"Check that it is running and reachable."
            ) from None
        return self._parse(result, len(texts), stats, offset)

    def _malformed(self, what: str) -> EmbeddingError:
        return EmbeddingError(
            f"Embedding server {self.display_url} sent a malformed response: {what}; expected the OpenAI format "
            f"{{'data': [{{'index': i, 'embedding': [float, ...]}}, ...]}} with one entry per input."
        )

    def _parse(self, result: object, n: int, stats: EmbedStats, offset: int = 0) -> np.ndarray:
        """Check the response as a whole, then every row: a bad vector silently ruins search."""
        if not isinstance(result, dict):
            raise self._malformed(f"the body is a JSON {type(result).__name__}, not an object")
        data = result.get("data")
        if not isinstance(data, list):
            raise self._malformed("'data' is missing" if data is None else f"'data' is a {type(data).__name__}, not a list")
        if len(data) != n:
            raise EmbeddingError(f"Embedding server {self.display_url} returned {len(data)} vectors for {n} inputs.")
        if not all(isinstance(d, dict) and "embedding" in d for d in data):
            pos = next(i for i, d in enumerate(data) if not (isinstance(d, dict) and "embedding" in d))
            raise self._malformed(f"data[{pos}] is {type(data[pos]).__name__} {str(data[pos])[:60]!r} without an 'embedding'")
        rows = self._in_input_order(data, n)
        for i, r in enumerate(rows):
            if not isinstance(r, list) or not r:
                kind = "a base64 string (encoding_format float is what is asked for)" if isinstance(r, str) else \
                    f"{'null' if r is None else type(r).__name__ if r else 'empty'}"
                raise self._malformed(f"the embedding of input {offset + i} is {kind}, not a list of numbers")
        if len({len(r) for r in rows}) != 1:
            raise self._malformed(f"the embeddings have different lengths ({sorted({len(r) for r in rows})})")
        vectors = np.asarray(rows)
        if vectors.dtype.kind not in "fi" or vectors.ndim != 2:  # null, strings or lists among the numbers
            for i, r in enumerate(rows):
                bad = next((v for v in r if isinstance(v, bool) or not isinstance(v, (int, float))), _NUMBERS)
                if bad is not _NUMBERS:
                    raise EmbeddingError(
                        f"Embedding server {self.display_url} returned an unusable embedding for input {offset + i}: "
                        f"it holds {'null' if bad is None else repr(bad)[:40]} where numbers belong. Check the "
                        f"server and the model it serves."
                    )
            raise self._malformed("the embeddings hold values that are not numbers")
        vectors = vectors.astype(np.float32)
        finite = np.isfinite(vectors).all(axis=1)
        zero = ~np.any(vectors != 0, axis=1)
        bad_rows = np.flatnonzero(~finite | zero)
        if bad_rows.size:
            i = int(bad_rows[0])
            why = "non-finite values (NaN or infinity)" if not finite[i] else "all zeros (no direction to normalise)"
            raise EmbeddingError(
                f"Embedding server {self.display_url} returned an unusable embedding for input {offset + i}"
                f"{f' (and {bad_rows.size - 1} more)' if bad_rows.size > 1 else ''}: {why}. Check the server and the "
                f"model it serves (a half-loaded model or a numeric overflow in fp16 does this)."
            )
        stats.add(batches=1, texts=n, tokens=self._usage_tokens(result.get("usage")))
        return vectors

    def _in_input_order(self, data: list[dict], n: int) -> list:
        """The embeddings of ``data`` by their ``index`` (each of 0..n-1 once), else as listed."""
        with_index = ["index" in d for d in data]
        if not any(with_index):
            return [d["embedding"] for d in data]  # no index: in input order
        idx = [d.get("index") for d in data]
        if not all(with_index) or any(isinstance(i, bool) or not isinstance(i, int) for i in idx) \
                or sorted(idx) != list(range(n)):
            raise self._malformed(f"the 'index' values are {idx[:20]}{'...' if n > 20 else ''}, not each of 0..{n - 1} once")
        rows: list = [None] * n
        for i, d in zip(idx, data):
            rows[i] = d["embedding"]
        return rows

    def _usage_tokens(self, usage: object) -> int:
        if usage is None:
            return 0
        if not isinstance(usage, dict):
            raise self._malformed(f"'usage' is a {type(usage).__name__}, not an object")
        for key in ("prompt_tokens", "total_tokens"):
            value = usage.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
                raise self._malformed(f"usage.{key} is {value!r}, not a count of tokens")
            if value:
                return int(value)
        return 0

    # ------------------------------------------------------------------ many requests
    def _plan(self, texts: Sequence[str]) -> list[tuple[int, int]]:
        spans, start, chars = [], 0, 0
        for i, t in enumerate(texts):
            if i > start and (i - start >= self.request_batch_size or chars + len(t) > _MAX_CHARS_PER_REQUEST):
                spans.append((start, i))
                start, chars = i, 0
            chars += len(t)
        spans.append((start, len(texts)))
        return spans

    def embed(self, texts: Sequence[str], stats: EmbedStats, *, dims: int | None = None,
              progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, int]:
        """Vectors (not renormalised) in input order; truncation is the server's business (0).
        ``progress`` is called with the number of texts of each request answered."""
        texts = list(texts)
        spans = self._plan(texts)

        def one(span: tuple[int, int]) -> np.ndarray:
            vectors = self._request(texts[span[0]:span[1]], dims, stats, span[0])
            if progress is not None:
                progress(span[1] - span[0])
            return vectors

        try:
            if len(spans) == 1 or self.concurrency == 1:
                parts = [one(span) for span in spans]
            else:
                with ThreadPoolExecutor(max_workers=min(self.concurrency, len(spans))) as pool:
                    parts = list(pool.map(one, spans))
        except EmbeddingError as exc:  # every path: no server body carries a credential out
            raise EmbeddingError(self._scrub(str(exc))) from None
        widths = {p.shape[1] for p in parts}
        if len(widths) != 1:
            raise EmbeddingError(f"Embedding server {self.display_url} returned vectors of different sizes: {sorted(widths)}.")
        return np.concatenate(parts, axis=0), 0
