"""Evaluation over two gloo processes (torchrun) equals one process, byte for byte; a failing rank stops both."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from evaluation.datasets import EvalSequence
from evaluation.results_folder import MANIFEST, RECORD
from evaluation.sharding import shares
from tests.conftest import ROOT, free_port

TOY_EVAL = ["TEST_BACKEND", "torch", "MODEL_MAX_MEM", "4", "TEST_ENCODE_BATCH", "3"]



def _command(davis, weights, out, processes: int, *extra):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                 "--master_addr", "127.0.0.1", "--master_port", str(free_port())] if processes > 1
                else [sys.executable])
    return [*launcher, "eval.py", "--ckpt_path", weights, "--out", str(out), *extra, "--opts", "DIR_DAVIS", str(davis),
            *TOY_EVAL]


# One thread per process in every run (torchrun's default for several processes): float sums of
# another thread count round differently, and a random-weight model's near-ties can flip a pixel.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _eval(davis, weights, out, processes: int, *extra):
    return subprocess.run(_command(davis, weights, out, processes, *extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=ONE_THREAD)


def _files(folder) -> dict[str, bytes]:
    found = {}
    for base, _, names in os.walk(folder):
        for name in names:
            if name.endswith((".png", ".csv")):
                path = os.path.join(base, name)
                found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


def test_shares_are_balanced_by_frame_count():
    seqs = [EvalSequence(name, ["f"] * frames) for name, frames in (("a", 10), ("b", 3), ("c", 6), ("d", 5))]
    split = shares(seqs, 2)
    assert [[s.name for s in part] for part in split] == [["a", "b"], ["c", "d"]]  # 13 and 11 frames
    assert [[s.name for s in part] for part in shares(seqs, 1)] == [["a", "b", "c", "d"]]


def test_two_processes_give_the_same_results_and_a_failing_rank_stops_both(toy_root, toy_weights, tmp_path):
    davis = tmp_path / "DAVIS"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), davis)
    one = _eval(davis, toy_weights, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _eval(davis, toy_weights, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    single, sharded = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(single) == sorted(sharded) and any(k.endswith(".csv") for k in single)
    assert all(single[k] == sharded[k] for k in single)
    # Rank 1's sequence (toy-val-01: equal lengths go in list order) has a damaged frame.
    frame = davis / "JPEGImages" / "480p" / "toy-val-01" / "00002.jpg"
    data = bytearray(frame.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\0" * 64
    frame.write_bytes(bytes(data))
    failed = _eval(davis, toy_weights, tmp_path / "failed", 2)
    assert failed.returncode != 0
    # Only torchrun's own report of the failed processes has a traceback; none of our frames is in one.
    ours = [line for line in failed.stderr.splitlines()
            if line.strip().startswith(f'File "{os.path.join(ROOT, "")}') and "site-packages" not in line]
    assert ours == []
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert any("rank 1 failed" in line and "00002.jpg" in line for line in errors), failed.stderr[-3000:]
    assert not [n for n in os.listdir(tmp_path / "failed") if n.endswith(".csv")]


def test_a_killed_sharded_evaluation_resumes(toy_root, toy_weights, tmp_path):
    davis = tmp_path / "DAVIS"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), davis)
    assert _eval(davis, toy_weights, tmp_path / "one", 1).returncode == 0
    results = tmp_path / "two"
    # torchrun and both ranks in a process group of their own, killed together (kill -9) once a
    # sequence is recorded done: the other is then unfinished (some of its masks written or none).
    proc = subprocess.Popen(_command(davis, toy_weights, results, 2), cwd=ROOT, env=ONE_THREAD,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (results / MANIFEST).exists() and "done " in (results / MANIFEST).read_text():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    if proc.returncode == 0:
        pytest.fail("the evaluation finished before it could be killed")
    resumed = _eval(davis, toy_weights, results, 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((results / RECORD).read_text())["resumed_sequences"]
    single, sharded = _files(tmp_path / "one"), _files(results)
    assert sorted(single) == sorted(sharded)
    assert all(single[k] == sharded[k] for k in single)
