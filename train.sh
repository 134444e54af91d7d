#!/usr/bin/env bash
# The authors' two-stage recipe, each stage in its own log/<exp>/ folder (docs/training.md):
#   bash train.sh            stage 1 (DAVIS-2017, from the pretrained DeepLab), then stage 2
#                            (YouTube-VOS + DAVIS, from stage 1's final weights)
#   bash train.sh 1 | 2      one stage only
#   bash train.sh [1|2] [train.py args: --opts KEY VALUE ..., --stop_step N, --restart]
#   RECIPE=clean bash train.sh   the corrected recipe (presets stage1_clean, stage2_clean: every
#                            frame's loss, no gradient through the frozen encoder); default: the authors'
# Processes per node: NPROC if set, else the stage's TRAIN_GPUS as resolved with its preset and
# --opts (0 = every visible GPU; 1 on a CPU-only machine). Several processes run under torchrun.
# Several nodes: TORCHRUN_ARGS="--nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500".
# A stage that stops before its final step (Ctrl-C, SIGTERM, --stop_step, an error) exits non-zero
# and ends this script, so stage 2 never starts from an unfinished stage 1. Rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}

SUFFIX=""
case "${RECIPE:-authors}" in
  authors) ;;
  clean) SUFFIX=_clean ;;
  *) echo "error: RECIPE must be authors or clean, not '${RECIPE}'" >&2; exit 2 ;;
esac
STAGES="1 2"
if [[ "${1:-}" =~ ^[12]$ ]]; then STAGES=$1; shift; fi

for stage in $STAGES; do
  nproc=${NPROC:-}
  if [ -z "$nproc" ]; then
    nproc=$("$PY" train.py --preset "stage$stage$SUFFIX" "$@" --print_config | "$PY" -c \
      "import json, sys, torch; n = json.load(sys.stdin)['TRAIN_GPUS']; print(n or max(torch.cuda.device_count(), 1))")
  fi
  echo "=== stage $stage: $nproc process(es) ==="
  if [ "$nproc" -gt 1 ] || [ -n "${TORCHRUN_ARGS:-}" ]; then
    # shellcheck disable=SC2086
    "$PY" -m torch.distributed.run --nproc_per_node "$nproc" ${TORCHRUN_ARGS:-} train.py --preset "stage$stage$SUFFIX" "$@"
  else
    "$PY" train.py --preset "stage$stage$SUFFIX" "$@"
  fi
done
