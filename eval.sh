#!/usr/bin/env bash
# Evaluate on DAVIS-2016 val: masks under log/<exp>/eval/davis2016-val/, then the J/F table.
#   bash eval.sh [CKPT] [eval.py args ...]      CKPT defaults to ./best_LSTA.pth (the authors' weights)
# Data: DIR_DAVIS (default data/DAVIS); override with --opts DIR_DAVIS /path/to/DAVIS.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
CKPT=./best_LSTA.pth
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then CKPT=$1; shift; fi
exec "$PY" eval.py --ckpt_path "$CKPT" "$@"
