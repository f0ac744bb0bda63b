#!/usr/bin/env bash
# Run HERE (after scripts/setup.sh), before a session's GPU check: fills the ignored folder .gpu/
# with what the GPU machine lacks and cannot download (it has no network, but has torch,
# transformers, sentence-transformers, pytest): the pure-Python packages es-semantic needs beyond
# those, installed into .gpu/site, and the SciFact corpus the benchmarks read (../shared does not
# travel to that machine). Then, with the device tool:
#   run(command="bash scripts/gpu/run.sh", carry=[".gpu"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/datasets
# The same versions as this venv's; all pure Python, so the files suit the GPU machine's Python too.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: -d .gpu/wheels \
  "elasticsearch==$(version elasticsearch)" "elastic-transport==$(version elastic-transport)" \
  "tenacity==$(version tenacity)" "sniffio==$(version sniffio)"
"$PY" -m pip install --quiet --no-deps --target .gpu/site .gpu/wheels/*.whl
rm -rf .gpu/wheels
if [ -f ../shared/datasets/scifact/corpus.jsonl ]; then
  mkdir -p .gpu/datasets/scifact && cp ../shared/datasets/scifact/corpus.jsonl .gpu/datasets/scifact/
fi
du -sh .gpu
echo "prepare: done; carry .gpu with the device run (see the top of this file)"
