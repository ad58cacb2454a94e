#!/usr/bin/env bash
# The committed MNIST benchmark: benchmarks/results/mnist/ (see benchmarks/configs/mnist.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
bash benchmarks/get_data.sh >/dev/null
niood-bench run --config benchmarks/configs/mnist.toml --quiet "$@"
