#!/usr/bin/env bash
# Set up and run the main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import jax, flax, optax, orbax.checkpoint, absl, matplotlib" 2>/dev/null \
  || python3 -m pip install -q -r requirements.txt
python3 -m cimnas_jax.space --space=mbv2_rram --describe
python3 -m cimnas_jax.space --space=mbv2_rram --sample=2 --seed=0
