"""The package's public names: each is what its name says, in any import order, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import es_semantic

PROBE = """
import inspect, es_semantic
from es_semantic import {names}
for name in {names_list!r}:
    value = getattr(es_semantic, name)
    assert not inspect.ismodule(value), (name, value)
    assert value is globals()[name], name
print("ok")
"""


def _probe(names: list[str]) -> subprocess.CompletedProcess[str]:
    code = PROBE.format(names=", ".join(names), names_list=names)
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)


def test_reindex_is_the_function_after_reindex_options_is_imported():
    # A subpackage named like a public function would replace it on the package once imported.
    done = _probe(["ReindexOptions", "reindex"])
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_every_public_name_is_an_object_not_a_module():
    done = _probe(sorted(set(es_semantic.__all__) - {"__version__"}))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
