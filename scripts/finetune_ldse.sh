#!/usr/bin/env bash
# Stage 2 of the packaged LDSE-NET weights: fine-tune the stage-1 network
# (scripts/train_ldse.sh -> runs/ldse/last.ckpt) on the same specimens, now with brightfield
# phase in the realistic range (peak 0.2–1.5 rad, defocus_sim.PHASE_RAD; stage 1 used
# 0.05–0.6 rad, too weak for the sign to be learnt) and a heavier weight on the sign term. Fresh optimiser and schedule; writes the packaged weights.
#
# Exact command used for the committed weights:
#   nohup scripts/finetune_ldse.sh > runs/ldse_ft.log 2>&1 &
# Resume an interrupted run:
#   nohup scripts/finetune_ldse.sh --resume >> runs/ldse_ft.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
mkdir -p runs/ldse_ft
exec "$PY" -m napari_gplws.core.train_ldse ldse \
    --out-dir runs/ldse_ft \
    --init-weights "${INIT:-runs/ldse/last.ckpt}" \
    --seed 1 \
    --optics 20x \
    --max-minutes "${MAX_MINUTES:-75}" \
    --batch-size 32 \
    --lr 1e-3 \
    --n-aberrations 8 \
    --crop-px 128 \
    --full-fraction 0.2 \
    --aux-sign-weight 1.0 \
    --ckpt-minutes 4 \
    --val-minutes 10 \
    --threads 0 \
    --weights-out src/napari_gplws/weights/ldse_default.safetensors \
    "$@"
