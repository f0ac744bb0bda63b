"""Retrying transient Elasticsearch failures with exponential backoff and jitter (tenacity).

Transient: HTTP 429 (rejected, queue full), 502/503/504 (node restarting, overloaded) and
connection errors or timeouts. Everything else (400 bad request, 404, 409 conflicts) is
returned to the caller at once: retrying it would only repeat the same answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from elasticsearch import ApiError, ConnectionTimeout
from elasticsearch import ConnectionError as EsConnectionError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed request is worth repeating after a pause."""
    if isinstance(exc, (EsConnectionError, ConnectionTimeout)):
        return True
    if isinstance(exc, ApiError):
        return exc.meta.status in RETRYABLE_STATUS
    return False


class RetryPolicy:
    """How often and how patiently to retry; ``call`` runs a request under it.

    ``on_retry`` is told about every retry (the report counts them).
    """

    def __init__(self, max_retries: int = 8, initial_s: float = 0.5, max_s: float = 30.0,
                 on_retry: Callable[[BaseException], None] | None = None) -> None:
        self.max_retries = max_retries
        self.initial_s = initial_s
        self.max_s = max_s
        self.on_retry = on_retry

    def wait(self) -> Any:
        # initial * 2^n capped at max, plus up to ``initial`` of jitter so that many clients
        # rejected at the same moment do not come back at the same moment.
        return wait_exponential(multiplier=self.initial_s, max=self.max_s) + wait_random(0, self.initial_s)

    def _before_sleep(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("retrying after %s (attempt %d)", exc, state.attempt_number)
        if self.on_retry is not None and exc is not None:
            self.on_retry(exc)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retried on transient failures; the last failure is raised."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self.wait(),
            retry=retry_if_exception(is_retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(fn, *args, **kwargs)

    def backoff_seconds(self, attempt: int) -> float:
        """Pause before retry number ``attempt`` (1-based) of items rejected inside a bulk response."""
        import random

        base = min(self.max_s, self.initial_s * (2 ** (attempt - 1)))
        return min(self.max_s, base + random.uniform(0, self.initial_s))


def no_transport_retries(es: Any) -> Any:
    """The client with its own immediate retries off: ours back off, the transport's do not."""
    return es.options(max_retries=0, retry_on_timeout=False)
