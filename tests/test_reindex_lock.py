"""The job lock against the test server: dropped answers, failing heartbeats, release with work left."""

from __future__ import annotations

import time
from typing import Any

import pytest
from elasticsearch import ConnectionError as EsConnectionError

from es_semantic.errors import LockHeld
from es_semantic.reindex.lock import JobLock, LockLost
from es_semantic.reindex.retry import RetryPolicy

LOCKS = "es-semantic-locks"
FAST = RetryPolicy(max_retries=2, initial_s=0.01, max_s=0.02)


class _Dropping:
    """The real client, except that the next ``drops[name]`` calls of method ``name`` reach
    Elasticsearch (``after=True``: the write lands) or not, and then raise a dropped connection."""

    def __init__(self, es: Any) -> None:
        self._es = es
        self.drops: dict[str, tuple[int, bool]] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._es, name)
        if name not in ("create", "index", "delete"):
            return real

        def call(**kw: Any) -> Any:
            times, after = self.drops.get(name, (0, False))
            if times <= 0:
                return real(**kw)
            self.drops[name] = (times - 1, after)
            if after:
                real(**kw)
            raise EsConnectionError("connection dropped before the answer")
        return call

    def options(self, **kw: Any) -> _Dropping:
        return self


def test_create_that_landed_before_the_connection_dropped_is_ours(es_client):
    client = _Dropping(es_client)
    client.drops["create"] = (1, True)
    lock = JobLock(client, "faq", lock_index=LOCKS, ttl_s=60, retry=FAST).acquire()
    try:
        assert es_client.get(index=LOCKS, id="faq")["_source"]["owner"] == lock.owner
        lock.set_field("pending_restore", {})  # a write with OCC on the adopted _seq_no
        lock.check()
        assert not lock.lost.is_set()
    finally:
        lock.release()
    assert not es_client.exists(index=LOCKS, id="faq")
    # A genuine conflict is still one: another job holds the lock.
    other = JobLock(es_client, "faq", lock_index=LOCKS, ttl_s=60, owner="elsewhere:1").acquire()
    try:
        with pytest.raises(LockHeld, match="elsewhere:1"):
            JobLock(client, "faq", lock_index=LOCKS, ttl_s=60, retry=FAST).acquire()
    finally:
        other.release()


def test_heartbeat_that_landed_before_the_connection_dropped_keeps_the_lock(es_client):
    client = _Dropping(es_client)
    lock = JobLock(client, "faq", lock_index=LOCKS, ttl_s=60, retry=FAST).acquire()
    try:
        client.drops["index"] = (1, True)
        lock._write()
        assert not lock.lost.is_set()
        lock._write()  # the next heartbeat uses the adopted _seq_no: no conflict
        assert not lock.lost.is_set()
        lock.check()
        # Someone else rewriting the lock is still noticed.
        es_client.index(index=LOCKS, id="faq", document={"owner": "thief:2", "expires_ms": 0})
        lock._write()
        assert lock.lost.is_set()
        with pytest.raises(LockLost):
            lock.check()
    finally:
        lock.release()


def test_failing_heartbeats_expire_the_lease_locally(es_client):
    client = _Dropping(es_client)
    lock = JobLock(client, "faq", lock_index=LOCKS, ttl_s=1.0, retry=FAST).acquire()
    try:
        lock.check()
        client.drops["index"] = (10**6, False)  # every heartbeat fails; nobody else takes the lock
        time.sleep(1.0)
        assert not lock.lost.is_set()
        with pytest.raises(LockLost, match="renewed"):
            lock.check()
    finally:
        client.drops.clear()
        lock.release()


def test_release_with_settings_left_to_restore_leaves_an_expired_lock(es_client):
    lock = JobLock(es_client, "faq", lock_index=LOCKS, ttl_s=60).acquire()
    pending = {"faq-v2": {"index.refresh_interval": "2s", "index.number_of_replicas": "1"}}
    lock.set_field("pending_restore", pending)
    lock.release()
    held = es_client.get(index=LOCKS, id="faq")["_source"]
    assert held["pending_restore"] == pending and held["expires_ms"] < time.time() * 1000
    nxt = JobLock(es_client, "faq", lock_index=LOCKS, ttl_s=60, owner="next:1").acquire()  # no wait
    try:
        assert nxt.previous is not None and nxt.previous["pending_restore"] == pending
    finally:
        nxt.set_field("pending_restore", {})
        nxt.release()
    assert not es_client.exists(index=LOCKS, id="faq")
