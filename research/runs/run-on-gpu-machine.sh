#!/bin/bash
# Runs a jobs file of training runs (ml.batch) on the lent GPU machine, which has JAX and
# PyTorch but neither TensorFlow nor Django, and leaves in $OUT what may come back from it (at
# most 8 files of 16 MiB): results.tar.gz (every run's metadata, history, plots, predictions and
# colour report, the logs, the GPU's utilisation) and the model files small enough to return
# (the ConvNets in one tar, each MobileNetV2 on its own). ResNet50 and VGG19 files (80-95 MB)
# stay behind; their metrics and per-image predictions come back.
#
# Device call: carry [".devdata", ".whl"] (.devdata/original: a copy of the data set;
# .whl: ../shared/tools/device-keras-wheels.sh, plus Python 3.12 wheels of scikit-learn 1.9.1 and
# its dependencies scipy, joblib, threadpoolctl and narwhals, which ml's metrics need), then
#   bash research/runs/run-on-gpu-machine.sh research/runs/gpu-224.jobs SECONDS PARALLEL
set -uo pipefail
jobs=${1:?jobs file}; seconds=${2:-450}; parallel=${3:-8}
runs=/tmp/runs
mkdir -p "$runs"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
# The compilation cache lets later runs of an architecture reuse what its first run compiled.
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache KERAS_BACKEND=jax
if ! python3 -c "import jax, keras; assert any(d.platform == 'gpu' for d in jax.devices())" > "$runs/backend-check.log" 2>&1; then
    echo "JAX does not see the GPU (backend-check.log): training with PyTorch instead"
    export KERAS_BACKEND=torch
fi
nvidia-smi -L > "$runs/gpu.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$runs/gpu-usage.csv" 2>&1 &
monitor=$!
python3 -m ml.batch --jobs "$jobs" --data .devdata/original --out "$runs" --parallel "$parallel" \
    --seconds "$seconds" --reserve 80 --min-start 200 2>&1 | tee "$runs/batch.log"
kill "$monitor" 2>/dev/null
cd "$runs" || exit 4
tar czf "$OUT/results.tar.gz" --exclude='*.keras' --exclude=checkpoints --exclude=backup .
compgen -G 'convnet*/model.keras' > /dev/null && tar cf "$OUT/convnet-models.tar" convnet*/model.keras
for model in mobilenetv2*/model.keras; do
    [ -f "$model" ] && cp "$model" "$OUT/$(dirname "$model").keras"
done
ls -la "$OUT"
