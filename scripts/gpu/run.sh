#!/usr/bin/env bash
# Run ON THE GPU MACHINE (device tool), with .gpu/ from scripts/gpu/prepare.sh carried:
# the CUDA tests and the GPU benchmarks of issue #5 and #6, one after the other, each writing its
# output under $OUT (what comes back). About 6 minutes on one H200; every step runs even if an
# earlier one failed, and the exit code says whether any did.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/.gpu/site:$PWD" ES_SEMANTIC_DATASETS="$PWD/.gpu/datasets"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/es-semantic-gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
failed=0
step() {  # step NAME COMMAND...: run, keep its output in $OUT/NAME.txt, note a failure
  local name=$1; shift
  echo "== $name: $*"
  local started=$SECONDS
  "$@" >"$OUT/$name.txt" 2>&1 || { echo "   FAILED (exit $?)"; failed=1; }
  echo "   $((SECONDS - started)) s; last lines:"; tail -n 3 "$OUT/$name.txt" | sed 's/^/   /'
}
step env bash -c "nvidia-smi -L; $PY -c 'import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__, torch.cuda.get_device_name(0))'"
step tests "$PY" -m pytest -q -p no:cacheprovider tests/test_embedding_gpu.py tests/test_embedding_qwen3.py tests/test_embedding_units.py
step bench_embed "$PY" scripts/bench_embed.py --random-qwen3-0.6b --device cuda --n-docs 5000 --repeat 2
step bench_reindex "$PY" scripts/bench_reindex.py --random-qwen3-0.6b --device cuda --sizes 5000,20000
exit $failed
