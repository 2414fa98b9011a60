#!/usr/bin/env bash
# Train the Fashion-MNIST supernet on one GPU within a fixed time budget, export it, label
# random subnets' accuracy with it, and time the search / surrogate on the GPU.  This is how the
# shipped cimnas_jax/assets/supernet_fmnist was made (see its MANIFEST.md for the numbers).
#
#   bash scripts/gpu_supernet.sh OUT_DIR [DATA_DIR]
#
# Stages write into OUT_DIR as they finish (supernet.tgz, labels.tgz, *.log), so a run cut short
# still leaves the finished stages.  Minutes per stage come from the environment:
#   TRAIN_MIN (training budget, compiles included), LABEL_S (seconds of labelling), BENCH_S.
set -uo pipefail
OUT=${1:?usage: gpu_supernet.sh OUT_DIR [DATA_DIR]}
DATA=${2:-/usr/share/datasets/fashion-mnist}
TRAIN_MIN=${TRAIN_MIN:-4.5}
LABEL_S=${LABEL_S:-100}
BENCH_S=${BENCH_S:-45}
N_LABELS=${N_LABELS:-4000}
WORK=${WORK:-/tmp/gpu_supernet}
cd "$(dirname "$0")/.."
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp "devices: $(python3 -c 'import jax; print(jax.devices())' 2>&1 | tail -1)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

stamp "train supernet (${TRAIN_MIN} min budget)"
python3 experiments/train_supernet.py --data_dir="$DATA" --out_dir="$WORK/run" \
  --export_dir="$WORK/supernet_fmnist" --time_budget_minutes="$TRAIN_MIN" --full_time_frac=0.4 \
  --width_mult=0.35 --resolution=32 --stem_stride=1 --batch_size=256 --lr=1e-2 --n_val=10000 \
  --eval_every=1000 --n_val_eval=2000 --ckpt_every=2000 --log_every=200 --n_calib=2048 \
  2>&1 | grep --line-buffered -v "^[IW]1" | tee "$OUT/train.log"
tar czf "$OUT/supernet.tgz" -C "$WORK" supernet_fmnist && stamp "exported"

stamp "label accuracy (${LABEL_S} s)"
timeout "$LABEL_S" python3 experiments/label_accuracy.py --supernet_dir="$WORK/supernet_fmnist" \
  --data_dir="$DATA" --n="$N_LABELS" --seed=0 --split=val --n_images=0 --n_calib=2048 --chunk=100 \
  --out_dir="$WORK/accuracy_labels" 2>&1 | grep --line-buffered -v "^[IW]1" | tail -n 30 | tee "$OUT/label.log"
tar czf "$OUT/labels.tgz" -C "$WORK" accuracy_labels && stamp "labels packed"

stamp "search speed, 3x400 MLP fitness"
timeout "$BENCH_S" python3 benchmarks/bench_search.py --parts=speed --mlp_fitness --skip_pymoo \
  --population=100000 --generations=60 --chunk=20 --json_out="$OUT/bench_search_gpu.json" \
  2>&1 | grep --line-buffered -v "^[IW]1" | tail -n 20 | tee "$OUT/bench_search.log"
stamp "surrogate throughput"
timeout "$BENCH_S" python3 benchmarks/bench_surrogate.py --sizes=1000,10000,100000,1000000 \
  --json_out="$OUT/bench_surrogate_gpu.json" 2>&1 | grep --line-buffered -v "^[IW]1" | tail -n 20 \
  | tee "$OUT/bench_surrogate.log"
stamp "done"
