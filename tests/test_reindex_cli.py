"""The ``reindex`` and ``status`` commands as a scheduler runs them: real subprocesses, exit codes,
reports, and a job killed with SIGKILL then started again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_reindex_support import all_sources, assert_vectors_match, make_index

from es_semantic.reindexing.lock import JobLock

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
    assert bad.returncode == 2 and "Invalid value for '--query': query is not valid JSON" in bad.stderr
    down = run_cli("http://127.0.0.1:9", "reindex", "--index", "faq")
    assert down.returncode == 2 and "cannot reach Elasticsearch" in down.stderr
    missing = run_cli(es_server.url, "reindex", "--index", "no-such-index")
    assert missing.returncode == 2 and "error: index 'no-such-index' not found" in missing.stderr


def test_locked_exits_3(es_client, es_server, tiny_model):
    es = es_client
    make_index(es, "faq", tiny_model, 3)
    holder = JobLock(es, "faq", lock_index="es-semantic-locks", ttl_s=600, owner="batch-7:4242").acquire()
    try:
        locked = run_cli(es_server.url, "reindex", "--index", "faq", "--no-progress")
    finally:
        holder.release()
    assert locked.returncode == 3, locked.stderr
    line, = [line for line in locked.stderr.splitlines() if line.startswith("error: ")]
    assert "another job holds the lock on 'faq'" in line and "owner batch-7:4242" in line
    assert line.endswith("or delete it with: curl -X DELETE '<ES_URL>/es-semantic-locks/_doc/faq'"), line
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
    assert "Invalid value for '--report': the folder /nonexistent/dir does not exist" in bad.stderr
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
    for args, message in ((["--dims", "32"], "holds no vector yet, so change it in place"), (["--bulk-size", "0"], "--bulk-size must be an integer >= 1"),
                          (["--max-length", "0"], "--max-length must be an integer >= 1"),
                          (["--delete-old"], "delete_old only applies to a blue/green reindex (new_index) (--delete-old)")):
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


def test_help_is_short_and_points_at_the_docs():
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    for name in ("reindex", "status", "install-mappings", "set-min-score", "test-server", "search", "eval", "demo"):
        text = CliRunner().invoke(cli, [name, "--help"]).output
        assert len(text.splitlines()) <= 50 and "Example:" in text, text
        assert "docs/" in text or name == "demo", text
    text = CliRunner().invoke(cli, ["reindex", "--help"]).output
    assert "--keep-alive" in text and "Exit: 0 done" in text and "docs/reindex.md" in text


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "0", "-5"])
def test_lock_ttl_must_be_a_finite_number_of_seconds(value):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    result = CliRunner().invoke(cli, ["reindex", "--index", "faq", "--lock-ttl", value])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--lock-ttl': must be a number of seconds > 0 and <= 604800" in result.output


@pytest.mark.parametrize("index, reason", [("", "it is empty"), ("*", "it contains '*'"), ("_all", "it starts with '_'"),
                                           ("../b", "it contains '/'")])
def test_names_of_no_one_index_are_refused_before_connecting(index, reason):
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    for command in ("reindex", "status", "install-mappings"):
        result = CliRunner().invoke(cli, ["--es-url", "http://127.0.0.1:9", command, "--index", index])
        assert result.exit_code == 2, result.output
        line = result.output.strip().splitlines()[-1]
        assert line == f"Error: Invalid value for '--index': invalid index name {index!r}: {reason}", line
        assert "es-semantic-locks" not in result.output and "cannot reach" not in result.output


def test_query_nested_too_deep_is_a_usage_error():
    from click.testing import CliRunner

    from es_semantic.cli.main import cli

    deep = '{"bool": {"must": ' * 1500 + "{}" + "}}" * 1500
    result = CliRunner().invoke(cli, ["reindex", "--index", "faq", "--query", deep])
    assert result.exit_code == 2 and "query nests deeper than 100 levels" in result.output, result.output[-300:]
    listed = CliRunner().invoke(cli, ["search", "--index", "faq", "--filter", "[" * 3000 + "]" * 3000, "q"])
    assert listed.exit_code == 2 and "Invalid value for '--filter': nests deeper than 100 levels" in listed.output


def test_json_summary_on_stdout_and_the_report_from_the_environment(es_client, es_server, tiny_model, tmp_path: Path):
    make_index(es_client, "faq", tiny_model, 6)
    report_file = tmp_path / "env.json"
    env_report = {**os.environ, "ES_URL": es_server.url, "ES_SEMANTIC_REINDEX_REPORT": str(report_file)}
    done = subprocess.run([*CLI, "reindex", "--index", "faq", "--json", "--no-progress"], capture_output=True,
                          text=True, timeout=180, env=env_report, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # one JSON document, nothing else on stdout
    assert summary["embedded"] == 6 and summary["exit_code"] == 0
    assert summary == {**json.loads(report_file.read_text()), "exit_code": 0}
    for name in ("started_at", "finished_at"):  # ISO 8601 with a zone
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", summary[name]), summary[name]
    # a run the library refuses: the partial report on stdout as JSON too, the error on stderr
    refused = run_cli(es_server.url, "reindex", "--index", "faq", "--json", "--delete-old")
    assert refused.returncode == 2 and json.loads(refused.stdout)["exit_code"] == 2
    assert "error: delete_old only applies" in refused.stderr


def test_lines_on_a_non_terminal_stderr_carry_a_timestamp(es_client, es_server, tiny_model):
    make_index(es_client, "faq", tiny_model, 3)
    done = run_cli(es_server.url, "--debug", "reindex", "--index", "faq", "--no-progress", "--limit", "1")
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.splitlines() if " DEBUG " in line or " INFO " in line]
    assert logged and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line) for line in logged), logged[:3]
