#!/usr/bin/env bash
# Train the packaged GPLWS-Net weights (src/napari_gplws/weights/gplws_default.*).
#
# Exact command used for the committed weights:
#   nohup scripts/train_gplws.sh > runs/gplws_train.log 2>&1 &
# Resume an interrupted run (same budget, schedule follows wall time):
#   nohup scripts/train_gplws.sh --resume >> runs/gplws_train.log 2>&1 &
# Extra arguments are passed to `gplws train gplws` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # do not spin on a shared CPU
exec "$PY" -m napari_gplws.cli.train gplws \
    --out-dir runs/gplws_default \
    --seed 0 \
    --max-minutes "${MAX_MINUTES:-75}" \
    --batch-size 6 \
    --lr 2e-3 \
    --widths 16 24 32 48 \
    --s2d 4 \
    --n-frames 8 32 \
    --n-choices 8 12 16 20 24 32 \
    --size-choices 64 96 \
    --synth-fraction 0.5 \
    --epoch-steps 150 \
    --ckpt-minutes 4 \
    --log-every 10 \
    --threads 2 \
    --benchmark 30 \
    --weights-out src/napari_gplws/weights/gplws_default.safetensors \
    "$@"
