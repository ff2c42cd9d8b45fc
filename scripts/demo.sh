#!/usr/bin/env bash
# Set everything up and reconstruct the bundled sample into out/sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/gplws reconstruct --sample -o out/sample "$@"
