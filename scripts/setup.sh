#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with es-semantic and its test dependencies.
#
# Without an NVIDIA GPU it installs PyTorch's CPU build first, so that the `torch` requirement
# does not pull several GB of CUDA packages. Override the interpreter with PYTHON=python3.12 and
# the PyTorch version with TORCH_VERSION=2.x.y.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

"$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing torch==$TORCH_VERSION with CUDA"
    $PIP install "torch==$TORCH_VERSION"
  else
    echo "setup: no NVIDIA GPU, installing the CPU build of torch==$TORCH_VERSION"
    # The CPU wheels live on PyTorch's own index; pip prefers the +cpu build it finds there.
    $PIP install --retries 1 "torch==$TORCH_VERSION" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi

$PIP install -e ".[dev]"

# The 8.x Python client (oldest supported and newest), beside the 9.x one the venv uses, for
# tests/test_client_compat.py: 8.x clusters need an 8.x client. Only the client and its transport go
# there (--no-deps; the rest comes from the venv), and the test puts them first on PYTHONPATH.
for pair in "8.13:elasticsearch==8.13.*" "8-latest:elasticsearch>=8.19,<9"; do
  name=${pair%%:*} spec=${pair#*:}
  rm -rf ".venv/clients/es-$name"
  $PIP install --quiet --no-deps --target ".venv/clients/es-$name" "$spec" "elastic-transport>=8.15.1,<9" \
    || echo "setup: could not install $spec; tests/test_client_compat.py will skip it"
done
echo "setup: done. Activate with: . .venv/bin/activate"
