#!/usr/bin/env bash
# The committed Fashion-MNIST benchmark: benchmarks/results/fashionmnist/ (see benchmarks/configs/fashionmnist.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
bash benchmarks/get_data.sh >/dev/null
niood-bench run --config benchmarks/configs/fashionmnist.toml --quiet "$@"
