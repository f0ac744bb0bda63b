"""The ``reindex`` and ``status`` commands as a scheduler runs them: real subprocesses, exit codes,
reports, and a job killed with SIGKILL then started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_reindex_support import all_sources, assert_vectors_match, make_index

from es_semantic.reindex.lock import JobLock

CLI = [sys.executable, "-c", "from es_semantic.cli.main import main; main()"]


def run_cli(url: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ES_URL": url}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def start_cli(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ES_URL": url}
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def embedded_count(es: Any, index: str) -> int:
    es.indices.refresh(index=index)
    return es.count(index=index, query={"exists": {"field": "embedding_info"}})["count"]


@pytest.mark.slow
def test_success_report_and_status(es_client, es_server, tiny_model, embedder, tmp_path: Path):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 25)
    report_file = tmp_path / "report.json"
    done = run_cli(es_server.url, "reindex", "--index", "faq", "--report", str(report_file))
    assert done.returncode == 0, done.stderr
    assert "25 embedded" in done.stdout
    assert "\r" not in done.stderr  # stderr is not a terminal: no bar (a progress line every 30 s)
    data = json.loads(report_file.read_text())
    assert data["embedded"] == 25 and data["failed"] == 0 and data["failures"] == []
    assert data["model"] == str(tiny_model) and data["docs_per_second"] > 0 and data["seconds"] > 0
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)
    status = run_cli(es_server.url, "status", "--index", "faq", "--json")
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert (counts["current"], counts["stale"], counts["missing"], counts["method"]) == (25, 0, 0, "fingerprint")


def test_dry_run_changes_nothing(es_client, es_server, tiny_model, tmp_path: Path):
    es = es_client
    make_index(es, "faq", tiny_model, 12)
    report_file = tmp_path / "dry.json"
    done = run_cli(es_server.url, "reindex", "--index", "faq", "--dry-run", "--no-progress", "--report", str(report_file))
    assert done.returncode == 0, done.stderr
    assert "12 would be embedded" in done.stdout
    assert json.loads(report_file.read_text())["to_embed"] == 12
    assert embedded_count(es, "faq") == 0
    assert not es.indices.exists(index="es-semantic-locks")  # a dry run takes no lock either


def test_usage_and_connection_errors_exit_2(es_server):
    bad = run_cli(es_server.url, "reindex", "--index", "faq", "--query", "{not json")
    assert bad.returncode == 2 and "--query is not valid JSON" in bad.stderr
    down = run_cli("http://127.0.0.1:9", "reindex", "--index", "faq")
    assert down.returncode == 2 and "cannot reach Elasticsearch" in down.stderr
    missing = run_cli(es_server.url, "reindex", "--index", "no-such-index")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_locked_exits_3(es_client, es_server, tiny_model):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    holder = JobLock(es, "faq", lock_index="es-semantic-locks", ttl_s=600, owner="batch-7:4242").acquire()
    try:
        locked = run_cli(es_server.url, "reindex", "--index", "faq", "--no-progress")
    finally:
        holder.release()
    assert locked.returncode == 3, locked.stderr
    assert "batch-7:4242" in locked.stderr and "lock" in locked.stderr
    assert embedded_count(es, "faq") == 0


@pytest.mark.slow
def test_failed_documents_exit_1_and_are_listed(es_client, es_server, tiny_model, tmp_path: Path):
    es = es_client
    make_index(es, "faq", tiny_model, 30)
    es_server.faults.reject_bulk_items(0.4)
    report_file = tmp_path / "partial.json"
    done = run_cli(es_server.url, "reindex", "--index", "faq", "--max-retries", "0", "--no-progress",
                   "--report", str(report_file))
    es_server.faults.clear()
    assert done.returncode == 1, done.stderr
    data = json.loads(report_file.read_text())
    assert data["failed"] > 0 and data["embedded"] + data["failed"] == 30
    assert {"id", "index", "reason"} <= set(data["failures"][0])
    assert f"failed: faq/{data['failures'][0]['id']}" in done.stderr


@pytest.mark.slow
def test_killed_mid_run_then_resumed_after_lock_expiry(es_client, es_server, tiny_model, embedder, tmp_path: Path):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 200)
    es_server.faults.delay("_bulk", ms=300)
    job = start_cli(es_server.url, "reindex", "--index", "faq", "--bulk-size", "10", "--writers", "1",
                    "--page-size", "20", "--lock-ttl", "8", "--no-progress")
    try:
        deadline = time.time() + 120
        while embedded_count(es, "faq") < 20 and time.time() < deadline and job.poll() is None:
            time.sleep(0.1)
        assert job.poll() is None, job.stderr.read() if job.stderr else ""
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        es_server.faults.clear()
        if job.poll() is None:
            job.kill()
    partial = embedded_count(es, "faq")
    assert 20 <= partial < 200
    assert es.exists(index="es-semantic-locks", id="faq")  # the dead job's lock is still there
    early = run_cli(es_server.url, "reindex", "--index", "faq", "--no-progress")
    assert early.returncode == 3, early.stderr  # the lock has not expired yet
    expires_ms = es.get(index="es-semantic-locks", id="faq")["_source"]["expires_ms"]
    time.sleep(max(0.0, expires_ms / 1000 - time.time()) + 0.3)
    report_file = tmp_path / "resume.json"
    again = run_cli(es_server.url, "reindex", "--index", "faq", "--no-progress", "--report", str(report_file))
    assert again.returncode == 0, again.stderr
    data = json.loads(report_file.read_text())
    assert data["lock"]["took_over"] and data["skipped"] >= partial - 10
    assert data["embedded"] + data["skipped"] == 200
    assert_vectors_match(all_sources(es, "faq"), cfg, embedder)


def blue_green_under_way(es: Any, es_server: Any, tiny_model: Path, *, lock_ttl: str) -> subprocess.Popen[str]:
    """A CLI blue/green run (alias faq over faq-v1, 150 docs, slowed bulks) that has copied 20+ docs."""
    make_index(es, "faq-v1", tiny_model, 150)
    es.indices.put_settings(index="faq-v1", settings={"index.number_of_replicas": 1, "index.refresh_interval": "3s"})
    es.indices.put_alias(index="faq-v1", name="faq")
    es_server.faults.delay("_bulk", ms=300)
    job = start_cli(es_server.url, "reindex", "--index", "faq", "--dims", "32", "--new-index", "--bulk-size", "10",
                    "--writers", "1", "--page-size", "20", "--lock-ttl", lock_ttl, "--no-progress")
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None:
        if es.indices.exists(index="faq-v2") and embedded_count(es, "faq-v2") >= 20:
            break
        time.sleep(0.1)
    assert job.poll() is None, "the job ended before it was under way"
    return job


@pytest.mark.slow
def test_blue_green_killed_then_resumed_restores_settings(es_client, es_server, tiny_model, tmp_path: Path):
    es = es_client
    job = blue_green_under_way(es, es_server, tiny_model, lock_ttl="1")
    try:
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        es_server.faults.clear()
        if job.poll() is None:
            job.kill()
    settings = es.indices.get_settings(index="faq-v2", flat_settings=True)["faq-v2"]["settings"]
    assert settings["index.refresh_interval"] == "-1" and settings["index.number_of_replicas"] == "0"
    lock = es.get(index="es-semantic-locks", id="faq")["_source"]
    assert lock["pending_restore"]["faq-v2"]["index.refresh_interval"] == "3s"
    time.sleep(1.5)
    report_file = tmp_path / "bg.json"
    again = run_cli(es_server.url, "reindex", "--index", "faq", "--dims", "32", "--new-index", "--no-progress",
                    "--report", str(report_file))
    assert again.returncode == 0, again.stderr
    data = json.loads(report_file.read_text())
    assert data["blue_green"]["resumed"] and data["blue_green"]["alias_swapped"]
    assert data["settings_restored"]["faq-v2"] == {"index.refresh_interval": "3s", "index.number_of_replicas": "1"}
    settings = es.indices.get_settings(index="faq-v2", flat_settings=True)["faq-v2"]["settings"]
    assert settings["index.refresh_interval"] == "3s" and settings["index.number_of_replicas"] == "1"
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v2"]
    assert es.count(index="faq")["count"] == 150 and embedded_count(es, "faq") == 150


# -- --report: checked before the run, written however the run ends ----------------------------------

def test_report_into_a_missing_folder_is_refused_before_any_work(es_client, es_server, tiny_model):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    bad = run_cli(es_server.url, "reindex", "--index", "faq", "--no-progress", "--report", "/nonexistent/dir/r.json")
    assert bad.returncode == 2, bad.stderr
    assert "--report /nonexistent/dir/r.json" in bad.stderr and "does not exist" in bad.stderr
    assert embedded_count(es, "faq") == 0 and not es.indices.exists(index="es-semantic-locks")


def test_a_report_is_written_when_the_lock_is_held_or_an_option_is_wrong(es_client, es_server, tiny_model,
                                                                         tmp_path: Path):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    locked_report = tmp_path / "locked.json"
    holder = JobLock(es, "faq", lock_index="es-semantic-locks", ttl_s=600, owner="batch-7:4242").acquire()
    try:
        locked = run_cli(es_server.url, "reindex", "--index", "faq", "--no-progress", "--report", str(locked_report))
    finally:
        holder.release()
    assert locked.returncode == 3, locked.stderr
    data = json.loads(locked_report.read_text())
    assert data["exit_code"] == 3 and "LockHeld" in data["error"] and "batch-7:4242" in data["error"]
    for args, message in ((["--dims", "32"], "--new-index"), (["--bulk-size", "0"], "--bulk-size must be >= 1"),
                          (["--max-length", "0"], "--max-length must be >= 1")):
        report_file = tmp_path / f"bad{args[0]}.json"
        bad = run_cli(es_server.url, "reindex", "--index", "faq", "--no-progress", *args, "--report", str(report_file))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        data = json.loads(report_file.read_text())
        assert data["exit_code"] == 2 and message in data["error"] and data["embedded"] == 0
    assert embedded_count(es, "faq") == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_job_cleanly(es_client, es_server, tiny_model, embedder, tmp_path: Path, sig, code):
    es = es_client
    cfg = make_index(es, "faq", tiny_model, 200)
    report_file = tmp_path / "stopped.json"
    es_server.faults.delay("_bulk", ms=300)
    job = start_cli(es_server.url, "reindex", "--index", "faq", "--bulk-size", "10", "--writers", "1",
                    "--page-size", "20", "--lock-ttl", "600", "--no-progress", "--report", str(report_file))
    try:
        deadline = time.time() + 120
        while embedded_count(es, "faq") < 20 and time.time() < deadline and job.poll() is None:
            time.sleep(0.1)
        assert job.poll() is None, job.stderr.read() if job.stderr else ""
        job.send_signal(sig)
        _, stderr = job.communicate(timeout=60)
    finally:
        es_server.faults.clear()
        if job.poll() is None:
            job.kill()
    assert job.returncode == code, stderr
    assert "stopped cleanly" in stderr and "Traceback" not in stderr
    assert not es.exists(index="es-semantic-locks", id="faq")  # released, although its TTL is 10 minutes
    data = json.loads(report_file.read_text())
    assert data["exit_code"] == code and sig.name in data["error"] and 20 <= data["embedded"] < 200
    sources = all_sources(es, "faq")
    done = [i for i, source in sources.items() if "embedding" in source]
    assert len(done) >= data["embedded"]  # what the report counts was written (and is correct)
    assert_vectors_match(sources, cfg, embedder, ids=done)


@pytest.mark.slow
def test_sigterm_during_blue_green_restores_the_bulk_load_settings(es_client, es_server, tiny_model, tmp_path: Path):
    es = es_client
    job = blue_green_under_way(es, es_server, tiny_model, lock_ttl="600")
    try:
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=60)
    finally:
        es_server.faults.clear()
        if job.poll() is None:
            job.kill()
    assert job.returncode == 143, stderr
    settings = es.indices.get_settings(index="faq-v2", flat_settings=True)["faq-v2"]["settings"]
    assert settings["index.refresh_interval"] == "3s" and settings["index.number_of_replicas"] == "1"
    assert list(es.indices.get_alias(name="faq").body) == ["faq-v1"]  # not swapped
    assert not es.exists(index="es-semantic-locks", id="faq") and not es.exists(index="es-semantic-locks", id="faq-v1")


def test_help_documents_the_exit_codes():
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    text = CliRunner().invoke(cli, ["reindex", "--help"]).output
    for line in ("130  stopped by Ctrl-C (SIGINT)", "143  stopped by SIGTERM", "--keep-alive"):
        assert line in text


def test_a_report_is_written_when_click_rejects_the_command_line(tmp_path: Path, monkeypatch):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    for args, message in ((["--index", "faq", "--writers", "abc"], "'--writers': 'abc' is not a valid integer"),
                          (["--index", "faq", "--no-such-option"], "No such option '--no-such-option'"),
                          ([], "Missing option '--index'")):
        report_file = tmp_path / "r.json"
        report_file.unlink(missing_ok=True)
        result = CliRunner().invoke(cli, ["reindex", *args, f"--report={report_file}"])
        assert result.exit_code == 2 and message in result.output, result.output
        data = json.loads(report_file.read_text())
        assert data["exit_code"] == 2 and message in data["error"] and data["embedded"] == 0
        assert data["index"] == ("faq" if args else "")
    # The report path from the environment, as the scheduled units give it.
    report_file = tmp_path / "env.json"
    monkeypatch.setenv("ES_SEMANTIC_REINDEX_REPORT", str(report_file))
    result = CliRunner().invoke(cli, ["reindex", "--index", "faq", "--slices", "x"])
    assert result.exit_code == 2 and "'x' is not a valid integer" in json.loads(report_file.read_text())["error"]
    # A report folder that does not exist: the usage error alone, as before.
    result = CliRunner().invoke(cli, ["reindex", "--writers", "abc", "--report", str(tmp_path / "no" / "r.json")])
    assert result.exit_code == 2 and "'abc' is not a valid integer" in result.output


def test_one_report_env_var_everywhere_and_the_old_name_still_works(tmp_path: Path, monkeypatch):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli, known_env_vars

    assert {"ES_SEMANTIC_REINDEX_REPORT", "ES_SEMANTIC_REINDEX_REPORT_PATH"} <= known_env_vars()
    assert "ES_SEMANTIC_REINDEX_REPORT" in CliRunner().invoke(cli, ["reindex", "--help"]).output
    for name in ("ES_SEMANTIC_REINDEX_REPORT", "ES_SEMANTIC_REINDEX_REPORT_PATH"):
        # a usage error, and a run that stops on a configuration error: both write the report, no warning
        for args, message in ((["--slices", "x"], "'x' is not a valid integer"),
                              (["--bulk-bytes", "huge"], "--bulk-bytes 'huge'")):
            report_file = tmp_path / f"{name}-{args[0]}.json"
            result = CliRunner().invoke(cli, ["reindex", "--index", "faq", *args], env={name: str(report_file)})
            assert result.exit_code == 2, result.output
            assert message in json.loads(report_file.read_text())["error"]
            assert "matches no option" not in result.output
