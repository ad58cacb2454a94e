#!/usr/bin/env bash
# OOD attack (source 004) on the library-defaults MNIST models, those of the committed attack results
# (benchmarks/results/attack-mnist*; made when the MNIST benchmark ran the defaults, from its cache).
# Train them first: bash benchmarks/run_mnist.sh --set jigsaw=0 --out benchmarks/results/defaults-mnist
# (cached in benchmarks/results/defaults-mnist/models/, which git does not keep).  `--set jigsaw=0`
# turns off the warped negatives that benchmarks/configs/mnist.toml now adds.
# Fashion-MNIST test images are pushed, within an L2 ball (pixels in [-1, 1], 784 of them),
# towards the penultimate features of random MNIST test images (feature attack), or straight
# down the garbage-aware UE score (adaptive attack).
set -euo pipefail
cd "$(dirname "$0")/.."
export NIOOD_DATA="${NIOOD_DATA:-$HOME/.cache/niood/data}"
common=(--config benchmarks/configs/mnist.toml --set jigsaw=0 --cache-dir benchmarks/results/defaults-mnist/models
        --start fashionmnist
        --norm l2 --eps 0,1,2,4,8 --steps 30 --lr 0.05 --n 500 --test-limit 2000 --quiet
        --detectors ue,garbage,msp,energy,mahalanobis,knn)
niood-bench attack "${common[@]}" --method inversion,standard,fig,bal --out benchmarks/results/attack-mnist
niood-bench attack "${common[@]}" --method inversion,standard --adaptive --out benchmarks/results/attack-mnist-adaptive
# Stronger feature attack (100 steps instead of 30), and the adaptive attack in an L-inf ball
# (pixels in [-1, 1]: eps 0.05 is 6.4/255 of the [0, 1] range).
niood-bench attack "${common[@]}" --steps 100 --method inversion,standard,fig,bal --out benchmarks/results/attack-mnist-100steps
niood-bench attack "${common[@]/l2/linf}" --eps 0,0.05,0.1,0.2,0.3 --method inversion,standard --adaptive \
                   --out benchmarks/results/attack-mnist-adaptive-linf
