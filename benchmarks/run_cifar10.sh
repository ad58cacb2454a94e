#!/usr/bin/env bash
# The committed CIFAR-10 benchmark: benchmarks/results/cifar10/ (see benchmarks/configs/cifar10.toml)
# and benchmarks/results/cifar10-report/ (benchmarks/configs/cifar10-report.toml)..
#   bash benchmarks/run_cifar10.sh                      # seed 0
#   bash benchmarks/run_cifar10.sh --seed 1 --out benchmarks/results/cifar10-seed1
#   CONFIG=benchmarks/configs/cifar10-report.toml bash benchmarks/run_cifar10.sh   # the report's settings
set -euo pipefail
cd "$(dirname "$0")/.."
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
bash benchmarks/get_data.sh >/dev/null
niood-bench run --config "${CONFIG:-benchmarks/configs/cifar10.toml}" --quiet "$@"
