#!/usr/bin/env bash
# Multi-process training with torchrun (one process per GPU, or per CPU worker
# on machines without CUDA: a gloo process group is used there).
#   tools/dist_train.sh CONFIG NPROC [train.py args...]
set -euo pipefail
CONFIG=${1:?usage: tools/dist_train.sh CONFIG NPROC [args]}
NPROC=${2:?usage: tools/dist_train.sh CONFIG NPROC [args]}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
