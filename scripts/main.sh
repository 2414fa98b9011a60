#!/usr/bin/env bash
# Set up and run the main job on the embedded default: search the CIMNAS space (MobileNetV2 +
# per-block bits + 32 nm RRAM CIM chip) scored by the embedded analytic CIM model and the shipped
# accuracy surrogate, verify the finalists (hardware by the analytic model -- or real CiMLoop where it
# is installed, see --verify_hw -- accuracy measured on Fashion-MNIST test images with the shipped
# quantization-aware supernet), and write a report.
# Each call writes a new run folder runs/main-<date>-<time> (runs/latest points at it); extra
# arguments go to `cimnas-jax run` (e.g. --generations=200 --population=1000, or
# --out_dir=runs/main-... --resume to continue a killed run).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import importlib.metadata as m; m.version('cimnas-jax')" 2>/dev/null \
   || ! python3 -c "import jax, flax, optax, orbax.checkpoint, absl, matplotlib" 2>/dev/null; then
  echo "installing cimnas-jax and its requirements (pip install -e .)" >&2
  python3 -m pip install -q -r requirements.txt
  python3 -m pip install -q --no-deps --no-build-isolation -e .
fi
DATA=/usr/share/datasets/fashion-mnist
if [ ! -e "$DATA/t10k-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)" >&2
    (apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }) >/dev/null
  else
    echo "Fashion-MNIST is missing: install the Debian package dataset-fashion-mnist" \
         "(sudo apt-get install dataset-fashion-mnist), or pass --data_dir=FOLDER holding" \
         "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, or --measure_accuracy=false" >&2
  fi
fi
OUT="runs/main-$(date +%Y%m%d-%H%M%S)"
mkdir -p runs
ln -sfn "$(basename "$OUT")" runs/latest
exec python3 -m cimnas_jax run --out_dir="$OUT" "$@"
