#!/usr/bin/env bash
# The checks that need a GPU, in one script for a lent GPU machine (at most about 8 minutes):
#   1. the tests that run only where CUDA is available (and their CPU neighbours);
#   2. the CIFAR-10 benchmark of today's defaults (benchmarks/configs/cifar10-airnet.toml: airnet
#      w64, 26 passes) on the GPU: every method, one seed, a results folder with provenance (commit, GPU, wall time) under benchmarks/results/gpu-check/.
# Without a CUDA GPU it says so and exits 0 (CI has none).
#
#   bash benchmarks/gpu_check.sh [--epochs N]      # default: the cifar-airbench preset's epochs
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] && . .venv/bin/activate
if ! python - <<'EOF'
import sys
import torch
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
then
    echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing checked"
    exit 0
fi
python -c "import torch; print('gpu_check:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
start=$(date +%s)
# 1. CUDA tests: every test file that has a CUDA-only test
python -m pytest -p no:cacheprovider -q --timeout 300 -k "cuda" tests/test_airnet.py tests/test_attack.py tests/test_recipes.py
# 2. the CIFAR-10 benchmark on the GPU, all methods, seed 0
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
bash benchmarks/get_data.sh >/dev/null
niood-bench run --config benchmarks/configs/cifar10-airnet.toml --device cuda --seed 0 --quiet \
    --out benchmarks/results/gpu-check "$@"
echo "gpu_check: done in $(( $(date +%s) - start )) s; results in benchmarks/results/gpu-check"
