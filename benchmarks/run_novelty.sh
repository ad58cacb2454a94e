#!/usr/bin/env bash
# The novelty term (not in the report; `--set novelty=1`): during inversion the generator is
# also pushed to make images whose penultimate features point away from the mean feature of
# the ID class they are conditioned on, so the garbage class learns the inputs a classifier
# calls "class c" without looking like class c.  Same settings as run_mnist.sh /
# run_fashionmnist.sh (fast preset, 10 epochs, seed 0, full test sets), inversion method only:
# the plain model and the peers are in the main benchmarks.
# Writes benchmarks/results/novelty-{mnist,fashionmnist}/.
set -euo pipefail
cd "$(dirname "$0")/.."
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
bash benchmarks/get_data.sh >/dev/null
for id in fashionmnist mnist; do
  niood-bench run --config "benchmarks/configs/$id.toml" --method inversion --set novelty=1 --quiet \
                  --out "benchmarks/results/novelty-$id"
done
