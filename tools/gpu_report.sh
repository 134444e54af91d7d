#!/usr/bin/env bash
# The GPU checks and figures behind the README's GPU section, in one run (needs a CUDA GPU):
#
#   bash tools/gpu_report.sh [OUT_DIR]        # default log/gpu_report
#
# Environment: PYTHON (interpreter), FRAMES (300: frames of the 480p pipeline), TOY_STEPS (300),
# DEVICE (cuda) and BACKBONE (resnet101), the last two only to rehearse the script on a CPU.
#
# 1. the streaming pipeline at 480p, ResNet-101 with random weights: FPS with I/O (as eval.py runs),
#    of the model alone (synchronised) and as the authors timed it, for each TEST_PRECISION; then
#    the same frames as 4 videos in flight (TEST_VIDEOS_IN_FLIGHT's GPU default);
# 2. the toy model trained on the GPU with bf16 autocast (TRAIN_AMP), then the pipeline again with
#    its trained weights on a toy video: each precision's mask agreement with float32;
# 3. the toy model evaluated by one process and by two torchrun ranks: masks and CSVs byte-identical?
# 4. the per-part costs (encoder batches, head, STA, multi-scale).
# Each step's output is kept under OUT_DIR; a failing step is reported and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-log/gpu_report}
PY=${PYTHON:-python}
FRAMES=${FRAMES:-300}
DEVICE=${DEVICE:-cuda}
BACKBONE=${BACKBONE:-resnet101}
mkdir -p "$OUT_DIR"
step() {  # step NAME COMMAND...: run, keep its output in OUT_DIR/NAME.txt, report failure
    local name=$1; shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$OUT_DIR/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || echo "== $name FAILED (exit $rc)"
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT_DIR/gpu.txt" 2>&1
"$PY" -c "import os, sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda',
torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), os.cpu_count(), 'CPUs')" >> "$OUT_DIR/gpu.txt"
cat "$OUT_DIR/gpu.txt"

# 1.
step pipeline "$PY" -m tools.bench_model --device "$DEVICE" --backbone "$BACKBONE" --only pipeline --pipeline_frames "$FRAMES"
step pipeline_4_videos "$PY" -m tools.bench_model --device "$DEVICE" --backbone "$BACKBONE" --only pipeline \
    --pipeline_frames "$FRAMES" --pipeline_videos 4

# 2.
TOY=$OUT_DIR/toy_data
step toy_data "$PY" -m tools.make_toy_data --out "$TOY"
step toy_train "$PY" train.py --preset toy --exp_name gpu_toy --opts DIR_DATA "$TOY" DEVICE "$DEVICE" TRAIN_AMP bf16 \
    TRAIN_TOTAL_STEPS "${TOY_STEPS:-300}" DIR_RESULT "$OUT_DIR/gpu_toy"
CKPT=$(ls -v "$OUT_DIR"/gpu_toy/ckpt/save_step_*.pth 2>/dev/null | tail -1)
step toy_agreement "$PY" -m tools.bench_model --device "$DEVICE" --only pipeline --checkpoint "$CKPT" \
    --frames "$TOY/DAVIS/JPEGImages/480p/toy-val-00"

# 3.
EVAL=(eval.py --ckpt_path "$CKPT" --opts DIR_DAVIS "$TOY/DAVIS" DEVICE "$DEVICE" TEST_BACKEND torch)
step eval_one_process "$PY" "${EVAL[@]:0:3}" --out "$OUT_DIR/eval_1" "${EVAL[@]:3}"
step eval_two_ranks "$PY" -m torch.distributed.run --nproc_per_node 2 "${EVAL[@]:0:3}" --out "$OUT_DIR/eval_2" \
    "${EVAL[@]:3}"
step eval_compare "$PY" - "$OUT_DIR/eval_1" "$OUT_DIR/eval_2" <<'EOF'
import os, sys
def files(root):
    return {os.path.relpath(os.path.join(b, n), root): open(os.path.join(b, n), "rb").read()
            for b, _, names in os.walk(root) for n in names if n.endswith((".png", ".csv"))}
one, two = map(files, sys.argv[1:3])
same = sorted(k for k in one if two.get(k) == one[k])
print(f"{len(one)} files from one process, {len(two)} from two ranks, {len(same)} byte-identical")
print("differ:", sorted(set(one) ^ set(two) | {k for k in one if k in two and one[k] != two[k]})[:10])
sys.exit(0 if len(same) == len(one) == len(two) else 1)
EOF

# 4.
step costs "$PY" -m tools.bench_model --device "$DEVICE" --backbone "$BACKBONE" --only costs --memory_frames
