#!/usr/bin/env bash
# One prepared GPU run (a few minutes on an H100): CIFAR-shaped ResNet-18 requests, this project
# vs an emulation of the authors' loops, plus pretraining throughput. Writes docs/perf_gpu.json
# (or $OUT/perf_gpu.json) and prints a table. Extra arguments go to benchmarks/gpu_bench.py,
# e.g. `benchmarks/gpu.sh --k 16` for a shorter run; `PYTHON=python3 benchmarks/gpu.sh` picks
# the interpreter (default: .venv/bin/python when it exists, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
out_dir="${OUT:-docs}"
mkdir -p "$out_dir"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to PyTorch'; print(torch.__version__, torch.cuda.get_device_name())"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" benchmarks/gpu_bench.py --device cuda --out "$out_dir/perf_gpu.json" "$@"
