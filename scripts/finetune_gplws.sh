#!/usr/bin/env bash
# Fine-tune the packaged GPLWS-Net weights (second stage of src/napari_gplws/weights/gplws_default.*).
#
# The first stage trained the network from scratch (scripts/train_gplws.sh, 150 minutes).
# This stage continues from those fused weights with a fresh, lower learning-rate schedule
# on newly drawn synthetic stacks (seed 1), ground truth only:
#   nohup scripts/finetune_gplws.sh > runs/gplws_finetune.log 2>&1 &
# Resume an interrupted run (same budget, the schedule follows wall time):
#   nohup scripts/finetune_gplws.sh --resume >> runs/gplws_finetune.log 2>&1 &
# INIT=path/to/first-stage.safetensors chooses the starting weights (default: the packaged
# ones). To repeat the committed run, start from the first-stage weights, which are in the
# git history:
#   git show d5b8dfd:src/napari_gplws/weights/gplws_default.safetensors > /tmp/first-stage.safetensors
#   INIT=/tmp/first-stage.safetensors nohup scripts/finetune_gplws.sh > runs/gplws_finetune.log 2>&1 &
# Extra arguments are passed to `gplws train gplws` (see --help; --teacher-weights adds a
# distillation target).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # do not spin on a shared CPU
exec "$PY" -m napari_gplws.cli.train gplws \
    --out-dir runs/ft_gtonly \
    --seed 1 \
    --max-minutes "${MAX_MINUTES:-80}" \
    --batch-size 6 \
    --lr 5e-4 \
    --n-frames 8 32 \
    --n-choices 8 12 16 20 24 32 \
    --size-choices 64 96 \
    --synth-fraction 0.5 \
    --epoch-steps 150 \
    --ckpt-minutes 4 \
    --log-every 25 \
    --threads 1 \
    --benchmark 30 \
    --init-weights "${INIT:-gplws_default}" \
    --weights-out src/napari_gplws/weights/gplws_default.safetensors \
    "$@"
