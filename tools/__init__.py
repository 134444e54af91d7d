"""Commands run as `python -m tools.NAME`: the user's commands, and the benchmarks.

A new benchmark is one module here (a docstring saying what it measures and how to run it, a
`main()`, timing through tools/harness.py and the product's own loops) and one line of BENCHMARKS;
the README lists every entry of both tables (tests/test_structure.py checks it).
"""

COMMANDS = {
    "make_toy_data": "write the toy data (synthetic videos in every dataset's layout)",
    "convert_checkpoint": "turn a trusted checkpoint that holds Python objects into one that loads safely",
    "export_onnx": "export a checkpoint's encoder and head for TEST_BACKEND onnxruntime ahead of time",
}

BENCHMARKS = {
    "bench_model": "streaming cost per 481x849 frame: backends, encoder by batch, head by window, TTA, memory",
    "bench_demo": "the demo page in headless Chromium: time to the first status, first overlay, done",
    "bench_precision": "another precision's (int8's) results against float32's on every benchmark present",
    "bench_eval": "whole evaluations as processes: eval.py (float32, int8) against the authors' loop",
    "bench_data": "training samples/s for 1 and 2 loader workers",
    "bench_data_check": "the check of the training data before step 0",
    "bench_train": "s/step, samples/s and peak memory of a training step; clean vs the authors' step",
    "bench_recipe": "the authors' vs the clean training step on the toy model: loss, clip coefficient",
    "bench_split": "how much a step depends on how its batch is split into passes",
}
