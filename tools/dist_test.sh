#!/usr/bin/env bash
# Multi-process evaluation with torchrun.
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]
set -euo pipefail
CONFIG=${1:?usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [args]}
CHECKPOINT=${2:?usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [args]}
NPROC=${3:?usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [args]}
PORT=${PORT:-29500}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
