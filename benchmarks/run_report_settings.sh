#!/usr/bin/env bash
# "Our faithful run of the report's settings": the `report` preset (section 10: lr 1e-4 constant,
# batch 32, 100 inversion steps per epoch, temperature-1 conditioning vectors, the last step's
# samples to a keep-all pool, ngf 64), scaled down only where the 2-core CPU forces it:
#   - 220 samples per inversion step instead of 11,000 (50x fewer; one report step alone costs
#     45 s here, see perf.json), so each epoch adds 220 garbage images instead of 11,000;
#   - 10 epochs instead of 20.
# Inversion method only (the plain model and the peers are in the main benchmarks).
# Writes benchmarks/results/report-settings-{mnist,fashionmnist}/.
set -euo pipefail
cd "$(dirname "$0")/.."
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
bash benchmarks/get_data.sh >/dev/null
common=(--method inversion --preset report --epochs 10 --set samples_per_step=220 --quiet)
niood-bench run --id mnist --ood fashionmnist,cifar10-jpeg,tinyimagenet,gaussian,uniform "${common[@]}" \
                --out benchmarks/results/report-settings-mnist
niood-bench run --id fashionmnist --ood mnist,cifar10-jpeg,tinyimagenet,gaussian,uniform "${common[@]}" \
                --out benchmarks/results/report-settings-fashionmnist
