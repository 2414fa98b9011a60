#!/usr/bin/env bash
# Set up and run the main job on the embedded default: search the CIMNAS space (MobileNetV2 +
# per-block bits + 32 nm RRAM CIM chip) scored by the embedded analytic CIM model and the shipped
# accuracy surrogate, re-verify the finalists (hardware by the analytic model, accuracy measured
# on Fashion-MNIST test images with the shipped quantization-aware supernet), and write a report.
# Extra arguments go to experiments/cimnas.py (e.g. --generations=200 --population=1000).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import jax, flax, optax, orbax.checkpoint, absl, matplotlib" 2>/dev/null \
  || python3 -m pip install -q -r requirements.txt
DATA=/usr/share/datasets/fashion-mnist
if [ ! -e "$DATA/t10k-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }) >/dev/null
  else
    echo "Fashion-MNIST is missing: install the Debian package dataset-fashion-mnist" \
         "(sudo apt-get install dataset-fashion-mnist), or pass --data_dir=FOLDER holding" \
         "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz" >&2
  fi
fi
exec python3 experiments/cimnas.py --out_dir=runs/main "$@"
