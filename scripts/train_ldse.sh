#!/usr/bin/env bash
# Train the packaged LDSE-NET weights (src/napari_gplws/weights/ldse_default.*).
#
# Exact commands used for the committed weights (session 3, 2 threads, idle 2-core CPU):
#   MAX_MINUTES=60 nohup scripts/train_ldse.sh > runs/ldse_train.log 2>&1 &
#   MAX_MINUTES=100 nohup scripts/train_ldse.sh --resume >> runs/ldse_train.log 2>&1 &
# (session 3: network with the radial-spectrum branch, 24 aberrations, loss weights that
# let the sign's cross-entropy count: MSE terms are in µm², the cross-entropy ~0.7.)
# Resume an interrupted run (the schedule follows the saved wall time):
#   nohup scripts/train_ldse.sh --resume >> runs/ldse_train.log 2>&1 &
# Extra arguments are passed to `gplws train ldse` (see --help).
# Threads: 1 while a GPLWS-Net training runs on the same machine, else 2 (--threads 0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
mkdir -p runs/ldse
exec "$PY" -m napari_gplws.cli.train ldse \
    --out-dir runs/ldse \
    --seed 0 \
    --optics 20x \
    --max-minutes "${MAX_MINUTES:-88}" \
    --batch-size 32 \
    --lr 2e-3 \
    --n-aberrations 24 \
    --crop-px 128 \
    --full-fraction 0.2 \
    --ckpt-minutes 4 \
    --val-minutes 10 \
    --threads 0 \
    --aux-abs-weight 0.1 \
    --signed-weight 0.1 \
    --aux-sign-weight 1.0 \
    --weights-out src/napari_gplws/weights/ldse_default.safetensors \
    "$@"
