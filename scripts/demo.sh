#!/usr/bin/env bash
# Installs what is missing, builds, and trains `cnn` on Fashion-MNIST (configs/fashion_mnist_cnn.yaml).
#   scripts/demo.sh                       # the full demo (3 epochs)
#   scripts/demo.sh --set run.epochs=1    # extra arguments go to the trainer
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TANDEM_BUILD_DIR:-$root/build}
export TANDEM_BUILD_DIR=$build

"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "$root"
config=configs/fashion_mnist_cnn.yaml
echo "demo: standalone training of $config"
"$build/trainers/edge_trainer" --config "$config" --standalone "$@"
echo "demo: runs/fashion_mnist_cnn/summary-edge.json:"
sed -n '1,/"history"/p' runs/fashion_mnist_cnn/summary-edge.json
