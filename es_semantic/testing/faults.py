"""Fault injection for the test server, driven from Python through ``server.faults``.

Each rule matches requests by HTTP method and a regex searched in the path (``"_bulk"``,
``"^/my-index/_search"``), and fires either for the next ``times`` matching requests or for a
fraction ``p`` of them (seeded RNG, so runs are repeatable)::

    server.faults.reject("_bulk", times=2)            # 429 es_rejected_execution_exception
    server.faults.unavailable("_search", p=0.5)      # 503
    server.faults.drop_connection("_bulk", times=1)  # close the socket without answering
    server.faults.delay("_search", ms=200)           # answer, but late
    server.faults.reject_bulk_items(0.3)             # 429 for ~30% of bulk items; the rest apply
    server.faults.counts["reject"]                   # how many faults fired, per kind
    server.faults.clear()
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from es_semantic.testing.errors import EsError

KINDS = ("reject", "unavailable", "drop", "delay")


@dataclass
class FaultRule:
    kind: str  # reject | unavailable | drop | delay
    path: re.Pattern[str]
    method: str | None = None
    times: int | None = None  # fire for the next N matches (None: unlimited, subject to p)
    p: float = 1.0
    ms: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method.upper()) and self.path.search(path) is not None


def rejected_error(what: str = "coordinating operation") -> EsError:
    """The 429 Elasticsearch answers when a thread pool queue is full."""
    return EsError(429, "es_rejected_execution_exception",
                   f"rejected execution of {what} [injected by es-semantic test server fault injection]")


class Faults:
    """The fault rules of one server. Thread-safe; ``seed`` makes probabilistic faults repeatable."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._seed = seed
        self._rng = random.Random(seed)
        self._item_fraction = 0.0
        self._item_times: int | None = None
        self.counts: Counter[str] = Counter()

    # -- configuration ---------------------------------------------------------------------------

    def add(self, kind: str, path: str = "", *, method: str | None = None, times: int | None = None,
            p: float = 1.0, ms: int = 0) -> FaultRule:
        """Add a rule. ``times=None`` and ``p=1.0`` means every matching request."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be between 0 and 1, got {p}")
        rule = FaultRule(kind=kind, path=re.compile(path), method=method.upper() if method else None,
                         times=times, p=p, ms=ms)
        with self._lock:
            self._rules.append(rule)
        return rule

    def reject(self, path: str = "", **kw: Any) -> FaultRule:
        """Answer 429 ``es_rejected_execution_exception``."""
        return self.add("reject", path, **kw)

    def unavailable(self, path: str = "", **kw: Any) -> FaultRule:
        """Answer 503 ``unavailable_shards_exception``."""
        return self.add("unavailable", path, **kw)

    def drop_connection(self, path: str = "", **kw: Any) -> FaultRule:
        """Close the connection without sending a response."""
        return self.add("drop", path, **kw)

    def delay(self, path: str = "", *, ms: int, **kw: Any) -> FaultRule:
        """Sleep ``ms`` milliseconds before handling the request normally."""
        return self.add("delay", path, ms=ms, **kw)

    def reject_bulk_items(self, fraction: float, *, times: int | None = None) -> None:
        """Reject about ``fraction`` of bulk items with 429 (seeded); rejected items are not applied.

        ``times`` limits the total number of rejected items.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
        with self._lock:
            self._item_fraction = fraction
            self._item_times = times

    def clear(self) -> None:
        """Remove every rule, reset the counters and re-seed the RNG."""
        with self._lock:
            self._rules.clear()
            self._item_fraction = 0.0
            self._item_times = None
            self._rng = random.Random(self._seed)
            self.counts.clear()

    def seed(self, seed: int) -> None:
        with self._lock:
            self._seed = seed
            self._rng = random.Random(seed)

    # -- evaluation (called by the HTTP layer) ---------------------------------------------------

    def pick(self, method: str, path: str) -> list[FaultRule]:
        """The rules that fire for this request (at most one non-delay rule, plus delays)."""
        fired: list[FaultRule] = []
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(method, path):
                    continue
                if rule.kind != "delay" and any(r.kind != "delay" for r in fired):
                    continue
                if rule.p < 1.0 and self._rng.random() >= rule.p:
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                fired.append(rule)
                self.counts[rule.kind] += 1
        return fired

    def reject_item(self) -> bool:
        """Whether to reject the next bulk item."""
        with self._lock:
            if self._item_fraction <= 0.0:
                return False
            if self._item_times is not None and self._item_times <= 0:
                return False
            if self._rng.random() >= self._item_fraction:
                return False
            if self._item_times is not None:
                self._item_times -= 1
            self.counts["bulk_item_reject"] += 1
            return True

    @property
    def active(self) -> bool:
        return bool(self._rules) or self._item_fraction > 0.0
