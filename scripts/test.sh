#!/usr/bin/env bash
# The project's test command (README and .ci/run): install what is missing, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import jax, flax, optax, orbax.checkpoint, absl, pymoo, matplotlib, pytest" 2>/dev/null \
  || python3 -m pip install -q -r requirements.txt
exec python3 -m pytest -q -p no:cacheprovider tests
