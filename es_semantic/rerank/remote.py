"""Served rerankers: the ``POST {base_url}/rerank`` API of vLLM, TEI and Infinity.

Two request bodies exist: the Jina/Cohere one (vLLM, Infinity, Jina, Cohere)
``{"model", "query", "documents", "top_n"}`` -> ``{"results": [{"index", "relevance_score"}]}``, and
TEI's ``{"query", "texts"}`` -> ``[{"index", "score"}]``. ``api=None`` starts with the first and
switches to TEI's when the server asks for ``texts``. Documents go in batches of
``request_batch_size`` (halved when the server refuses the size); 429, 5xx and connection errors
are retried with backoff as for the remote embedder. The API key and URL credentials never
appear in messages.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import urllib.error
import urllib.request
from typing import Any

import numpy as np
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from es_semantic.config import redact_url
from es_semantic.embedding.remote import Retryable, backoff_wait, redact_body, retry_after_seconds
from es_semantic.embedding.stats import EmbedStats
from es_semantic.errors import InvalidValue, RerankError
from es_semantic.rerank.base import Reranker, model_name

log = logging.getLogger(__name__)

API_KEY_ENV = "ES_SEMANTIC_RERANK_API_KEY"
APIS = ("jina", "tei")


class _TooLarge(Exception):
    """The server refuses this many documents in one request (413, or a 4xx naming the batch size)."""


class _WantsTexts(Exception):
    """A TEI server was sent the Jina body (it asks for ``texts``)."""


class RemoteReranker(Reranker):
    """A reranker served over HTTP. See :class:`~es_semantic.rerank.Reranker`.

    ``api`` ``"jina"`` (also vLLM, Infinity, Cohere) | ``"tei"`` | None (detect); ``api_key`` is sent as
    a bearer token (default: ``ES_SEMANTIC_RERANK_API_KEY``).
    """

    backend = "remote"

    def __init__(self, model: str | os.PathLike[str], *, base_url: str, api_key: str | None = None,
                 api: str | None = None, timeout: float = 60.0, max_retries: int = 6,
                 request_batch_size: int = 32) -> None:
        self.model_id = model_name(model)
        base = str(base_url).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise InvalidValue("base_url", redact_url(base), "an http:// or https:// URL")
        if api is not None and api not in APIS:
            raise InvalidValue("api", api, f"one of {', '.join(APIS)}, or None to detect it")
        self.url = base if base.endswith("/rerank") else base + "/rerank"
        self.display_url = redact_url(self.url)
        self.api = api
        self._detect = api is None
        self._api_key = api_key or os.environ.get(API_KEY_ENV) or None
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.request_batch_size = max(1, int(request_batch_size))
        self.backoff_base, self.backoff_max = 0.5, 30.0
        self.stats = EmbedStats()

    def __repr__(self) -> str:
        return (f"RemoteReranker(model={self.model_id!r}, url={self.display_url!r}, api={self.api!r}, "
                f"api_key={'set' if self._api_key else 'unset'})")

    def _scrub(self, text: str) -> str:
        return redact_body(redact_url(text), self._api_key)

    def _body(self, query: str, documents: list[str]) -> dict[str, Any]:
        if self.api == "tei":
            return {"query": query, "texts": documents}
        return {"model": self.model_id, "query": query, "documents": documents, "top_n": len(documents)}

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc, len(body.get("texts") or body.get("documents") or [])) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise Retryable(f"{type(exc).__name__}: {self._scrub(str(getattr(exc, 'reason', exc)))}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise RerankError(f"rerank server {self.display_url} sent a response that is not JSON: "
                              f"{self._scrub(raw[:200].decode('utf-8', 'replace'))!r}") from None

    def _refusal(self, exc: urllib.error.HTTPError, n: int) -> Exception:
        text = self._scrub(exc.read().decode("utf-8", "replace").strip())[:300]
        if exc.code == 429 or exc.code >= 500:
            return Retryable(f"HTTP {exc.code}: {text}", retry_after_seconds(exc.headers))
        if n > 1 and (exc.code == 413 or (exc.code in (400, 422) and "batch" in text.lower())):
            return _TooLarge(text)
        if self._detect and self.api != "tei" and exc.code in (400, 422) and "texts" in text:
            return _WantsTexts(text)
        hint = f"; check the API key (api_key or {API_KEY_ENV})" if exc.code in (401, 403) else ""
        return RerankError(f"rerank server {self.display_url} refused the request (HTTP {exc.code}): "
                           f"{text or self._scrub(str(exc.reason))}{hint}")

    def _wait(self, state: RetryCallState) -> float:
        return backoff_wait(state, self.backoff_base, self.backoff_max)

    def _send(self, body: dict[str, Any]) -> Any:
        def before_sleep(state: RetryCallState) -> None:
            self.stats.add(retries=1)
            log.warning("rerank request to %s failed (%s); retry %d of %d", self.display_url,
                        state.outcome.exception() if state.outcome else "?", state.attempt_number, self.max_retries)

        retrying = Retrying(retry=retry_if_exception_type(Retryable), wait=self._wait, reraise=True,
                            stop=stop_after_attempt(self.max_retries + 1), before_sleep=before_sleep)
        self.stats.add(requests=1)
        try:
            return retrying(self._post, body)
        except Retryable as exc:
            raise RerankError(f"rerank server {self.display_url} failed {self.max_retries + 1} times; "
                              f"last error: {exc}") from None

    def _request(self, query: str, documents: list[str], offset: int) -> np.ndarray:
        try:
            result = self._send(self._body(query, documents))
        except _WantsTexts:
            log.info("%s asks for 'texts': using the TEI rerank API", self.display_url)
            self.api = "tei"
            return self._request(query, documents, offset)
        except _TooLarge as exc:
            half = (len(documents) + 1) // 2
            self.request_batch_size = min(self.request_batch_size, half)
            log.warning("%s refused %d documents in one request (%s); sending %d at a time",
                        self.display_url, len(documents), exc, half)
            return np.concatenate([self._request(query, documents[:half], offset),
                                   self._request(query, documents[half:], offset + half)])
        return self._parse(result, len(documents))

    def _score(self, query: str, documents: list[str]) -> np.ndarray:
        parts, start = [], 0
        while start < len(documents):
            size = self.request_batch_size
            parts.append(self._request(query, documents[start:start + size], start))
            start += size
        self.stats.add(texts=len(documents), batches=len(parts))
        return np.concatenate(parts)

    def _parse(self, result: Any, n: int) -> np.ndarray:
        """Scores in input order from either response shape, every entry checked."""
        rows = result.get("results") if isinstance(result, dict) else result
        if not isinstance(rows, list):
            raise self._malformed(f"the body is {type(result).__name__} without a 'results' list")
        scores = np.full(n, np.nan, dtype=np.float64)
        for row in rows:
            index = row.get("index") if isinstance(row, dict) else None
            value = (row.get("relevance_score", row.get("score")) if isinstance(row, dict) else None)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n or \
                    not math.isnan(scores[index]):
                raise self._malformed(f"entry {str(row)[:80]!r} has an index outside 0..{n - 1} or repeated")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise self._malformed(f"entry {str(row)[:80]!r} has no finite score")
            scores[index] = value
        if np.isnan(scores).any():
            raise self._malformed(f"{len(rows)} results for {n} documents")
        return scores.astype(np.float32)

    def _malformed(self, what: str) -> RerankError:
        return RerankError(f"rerank server {self.display_url} sent a malformed response: {what}; expected "
                           "{'results': [{'index', 'relevance_score'}]} or [{'index', 'score'}] per document")
