"""The job lock against the test server: dropped answers, failing heartbeats, release with work left."""

from __future__ import annotations

import time
from typing import Any

import pytest
from elasticsearch import ConnectionError as EsConnectionError

from es_semantic.errors import LockHeld
from es_semantic.reindexing.lock import JobLock, LockLost
from es_semantic.reindexing.retry import RetryPolicy

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


# -- the lock is on the index, whatever name the job was given --------------------------------------

from test_reindex_support import make_index

from es_semantic.reindexing import ReindexOptions, reindex
from es_semantic.reindexing.lock import IndexLock


def _aliased(es: Any, tiny_model: Any, n: int = 6) -> None:
    make_index(es, "lk-v1", tiny_model, n)
    es.indices.put_alias(index="lk-v1", name="lk")


def _locks(es: Any) -> list[str]:
    if not es.indices.exists(index=LOCKS):
        return []
    es.indices.refresh(index=LOCKS)
    return sorted(h["_id"] for h in es.search(index=LOCKS, size=100, source=False)["hits"]["hits"]
                  if not h["_id"].startswith("scan:"))


@pytest.mark.parametrize("held, run", [("lk", "lk-v1"), ("lk-v1", "lk")])
def test_a_job_through_the_alias_and_one_on_its_index_exclude_each_other(es_client, tiny_model, embedder, held, run):
    es = es_client
    _aliased(es, tiny_model)
    holder = IndexLock(es, held, lock_index=LOCKS, ttl_s=60, owner="batch-1:11").acquire()
    try:
        with pytest.raises(LockHeld, match="batch-1:11") as err:
            reindex(es, run, embedder=embedder)
        assert "'lk-v1'" in str(err.value)
        assert _locks(es) == sorted(holder.keys)  # the refused job left no lock of its own behind
    finally:
        holder.release()
    assert reindex(es, run, embedder=embedder).embedded == 6
    assert _locks(es) == []


def test_a_slice_job_and_a_job_over_the_whole_index_exclude_each_other(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model)
    whole = IndexLock(es, "lk", lock_index=LOCKS, ttl_s=60, owner="whole:1").acquire()
    try:
        with pytest.raises(LockHeld, match="a job over the whole index.*owner whole:1"):
            reindex(es, "lk-v1", embedder=embedder, options=ReindexOptions(slices=2, slice_id=0))
        assert _locks(es) == ["lk", "lk-v1"]
    finally:
        whole.release()
    piece = IndexLock(es, "lk-v1", lock_index=LOCKS, slices=2, slice_id=1, ttl_s=60, owner="slice:2").acquire()
    try:
        assert piece.keys == ["lk-v1#slice-1-of-2"]
        with pytest.raises(LockHeld, match="cannot run beside a sliced run.*owner slice:2"):
            reindex(es, "lk", embedder=embedder)
        with pytest.raises(LockHeld, match="run with other slices.*owner slice:2"):
            reindex(es, "lk", embedder=embedder, options=ReindexOptions(slices=3, slice_id=0))
        # the other slice of the same run is welcome
        other = reindex(es, "lk", embedder=embedder, options=ReindexOptions(slices=2, slice_id=0))
        assert other.lock["keys"] == ["lk-v1#slice-0-of-2"]
    finally:
        piece.release()
    assert _locks(es) == []


def test_an_expired_slice_lock_does_not_block_the_whole_index(es_client, tiny_model, embedder):
    es = es_client
    _aliased(es, tiny_model)
    dead = IndexLock(es, "lk-v1", lock_index=LOCKS, slices=2, slice_id=0, ttl_s=0.2, owner="dead:1").acquire()
    for lock in dead.locks:
        lock._stop.set()  # dies without a release
    time.sleep(0.4)
    assert reindex(es, "lk", embedder=embedder).embedded == 6


def test_cli_lock_held_through_the_alias_exits_3(es_client, es_server, tiny_model):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    es = es_client
    _aliased(es, tiny_model)
    holder = IndexLock(es, "lk-v1", lock_index=LOCKS, ttl_s=60, owner="batch-7:4242").acquire()
    try:
        result = CliRunner().invoke(cli, ["--es-url", es_server.url, "reindex", "--index", "lk", "--no-progress"])
    finally:
        holder.release()
    assert result.exit_code == 3, result.output
    assert "batch-7:4242" in result.output and "'lk-v1'" in result.output
