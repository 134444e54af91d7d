#!/usr/bin/env bash
# The authors' two-stage recipe (PIPELINE.md §3), each stage in its own log/<exp>/ folder:
#   bash train.sh            stage 1 (DAVIS-2017, from the pretrained DeepLab), then stage 2
#                            (YouTube-VOS + DAVIS, from stage 1's final weights)
#   bash train.sh 1 | 2      one stage only
#   bash train.sh [1|2] --opts KEY VALUE ...     extra arguments go to train.py
# Processes: NPROC (default: Config.TRAIN_GPUS, 0 = every visible GPU; 1 on a CPU-only machine).
# Several nodes: TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500".
# Rerunning the same command resumes each stage from its newest checkpoint.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}

STAGES="1 2"
if [[ "${1:-}" =~ ^[12]$ ]]; then STAGES=$1; shift; fi

if [ -z "${NPROC:-}" ]; then
  NPROC=$("$PY" -c "from config import Config; import torch; n = Config().TRAIN_GPUS; print(n or max(torch.cuda.device_count(), 1))")
fi

for stage in $STAGES; do
  echo "=== stage $stage: $NPROC process(es) ==="
  if [ "$NPROC" -gt 1 ] || [ -n "${TORCHRUN_ARGS:-}" ]; then
    # shellcheck disable=SC2086
    "$PY" -m torch.distributed.run --nproc_per_node "$NPROC" ${TORCHRUN_ARGS:-} train.py --preset "stage$stage" "$@"
  else
    "$PY" train.py --preset "stage$stage" "$@"
  fi
done
