#!/usr/bin/env bash
# Fresh machine, main job: venv + install, MNIST and Fashion-MNIST, the default benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e '.[bench]'
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
bash benchmarks/get_data.sh
niood-bench run "$@"
