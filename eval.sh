#!/usr/bin/env bash
# Evaluate: masks, scores and a summary table (docs/evaluation.md).
#   bash eval.sh [BENCHMARK|all] [CKPT] [eval.py args ...]
#     BENCHMARK   one of config.TEST_SETS (davis2016, the default TEST_DATASET, davis2017, fbms, ...),
#                 `all` (every one whose data is present) or `folder`
#     CKPT        weights (default ./best_LSTA.pth, the authors')
# After each benchmark, eval.py prints the command that compares it with the evaluation of the
# checkpoint before (`eval.py --compare A B`: a page of both side by side, docs/evaluation.md).
# Data roots: DIR_DAVIS, DIR_FBMS, DIR_YTO, ... (default data/<name>); e.g. --opts DIR_FBMS /data/FBMS.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DATASET=()
NAMES=$("$PY" -c 'from config import TEST_SETS; print("|".join(TEST_SETS))')
if [[ "${1:-}" =~ ^(all|folder|${NAMES})$ ]]; then
  DATASET=(--dataset "$1"); shift
fi
CKPT=./best_LSTA.pth
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then CKPT=$1; shift; fi
exec "$PY" eval.py "${DATASET[@]}" --ckpt_path "$CKPT" "$@"
