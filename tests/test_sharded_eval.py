"""Evaluation over two gloo processes (torchrun) equals one process, byte for byte; a failing rank stops both;
a killed evaluation resumes."""
import contextlib
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
from tests.conftest import ROOT
from tests.helpers.builders import TOY_EVAL
from tools.harness import free_port


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


def _children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(child) for child in f.read().split()]
    return found


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


@pytest.fixture(scope="module")
def davis4(toy_root, tmp_path_factory):
    """The toy DAVIS-2016 val with its two sequences copied under two more names: 2 per rank."""
    root = tmp_path_factory.mktemp("davis4") / "DAVIS"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), root)
    for source, copy in (("toy-val-00", "toy-val-02"), ("toy-val-01", "toy-val-03")):
        for kind in ("JPEGImages", "Annotations"):
            shutil.copytree(root / kind / "480p" / source, root / kind / "480p" / copy)
    (root / "ImageSets" / "2016" / "val.txt").write_text("toy-val-00\ntoy-val-01\ntoy-val-02\ntoy-val-03\n")
    return root


@pytest.fixture(scope="module")
def single(davis4, toy_weights, tmp_path_factory):
    """`davis4` evaluated by one process: its masks and tables."""
    out = tmp_path_factory.mktemp("single") / "one"
    one = _eval(davis4, toy_weights, out, 1)
    assert one.returncode == 0, one.stderr[-3000:]
    return _files(out)


def test_two_processes_give_the_same_results_and_a_failing_rank_stops_both(davis4, toy_weights, single, tmp_path):
    davis = tmp_path / "DAVIS"
    shutil.copytree(davis4, davis)
    two = _eval(davis, toy_weights, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    sharded = _files(tmp_path / "two")
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


def test_a_killed_sharded_evaluation_resumes(davis4, toy_weights, single, tmp_path):
    davis = davis4
    results = tmp_path / "two"
    # Both ranks and torchrun killed (kill -9) once a sequence is recorded done: each rank then has
    # another sequence to do, unfinished (some of its masks written, or none).
    proc = subprocess.Popen(_command(davis, toy_weights, results, 2), cwd=ROOT, env=ONE_THREAD,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (results / MANIFEST).exists() and "\"done\"" in (results / MANIFEST).read_text():
            for pid in _children(proc.pid) + [proc.pid]:  # torchrun starts each rank in a session of its own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    if json.loads((results / RECORD).read_text())["status"] == "complete":
        pytest.fail("the evaluation finished before it could be killed")
    # Without --resume the folder is refused, with one line offering --resume and --overwrite.
    refused = _eval(davis, toy_weights, results, 1)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode != 0 and len(errors) == 1 and "--resume" in errors[0] and "--overwrite" in errors[0]
    resumed = _eval(davis, toy_weights, results, 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((results / RECORD).read_text())
    assert record["status"] == "complete" and record["resumed_sequences"]
    sharded = _files(results)
    assert sorted(single) == sorted(sharded)
    assert all(single[k] == sharded[k] for k in single)
