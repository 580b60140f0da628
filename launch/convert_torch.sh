#!/usr/bin/env bash
# Converts a published PyTorch checkpoint into an Orbax checkpoint directory.
#
# Usage: launch/convert_torch.sh TASK TORCH_CHECKPOINT OUTPUT_DIR
#   TASK: parsing | detection | attribution
# Needs torch (pip install -r requirements-torch.txt). Set PYTHON to choose
# the interpreter (default: python on PATH, e.g. the activated .venv).
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 {parsing|detection|attribution} TORCH_CHECKPOINT OUTPUT_DIR" >&2
  exit 2
fi

# Run from anywhere: put the repository on the path rather than cd into it,
# so relative checkpoint and output paths keep meaning what the caller meant.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"

exec "${PYTHON:-python}" -m jaxfp.convert_torch --task="$1" \
  --torch_checkpoint="$2" --output="$3"
