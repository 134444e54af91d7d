"""Faults a training run must survive: signals, kills, full disks, damaged or foreign files, a
second run, changed settings, and an unfinished earlier stage."""
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from config import Config
from networks.checkpoints import checkpoints_newest_first, read_training
from networks.lsta import LSTA
from tests.conftest import ROOT
from tests.helpers.builders import CPU, TINY, preset_config, summary, tiny_cfg
from tests.helpers.runs import error_line, one_error_line, run_script
from training.launch import EXIT_STOPPED, train
from training.run_record import Checkpointer, RunFolder, RunFolderError
from utils.checkpoint import UnsafeCheckpointError, read_checkpoint, save_checkpoint


def snapshot(folder) -> dict:
    """Every file under `folder` with its size and modification time."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            stat = os.stat(path)
            out[path] = (stat.st_size, stat.st_mtime_ns)
    return out


def cli(tmp_root, toy_root, *extra, steps=6, workers=0):
    return [sys.executable, "train.py", "--preset", "toy", *extra, "--opts", *TINY, "DIR_DATA", toy_root,
            "DIR_ROOT", str(tmp_root), "TRAIN_TOTAL_STEPS", str(steps), "DATA_WORKERS", str(workers)]




# ---- stopping and resuming ----

def test_sigterm_to_the_process_group_then_resume_is_bitwise_uninterrupted(toy_root, tmp_path):
    steps = 40
    full = subprocess.run(cli(tmp_path / "full", toy_root, steps=steps), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    run = tmp_path / "split"
    proc = subprocess.Popen(cli(run, toy_root, steps=steps, workers=2), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    summary_path = run / "log" / "toy" / "summary.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if summary_path.exists() and json.loads(summary_path.read_text()).get("last_step", -1) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # as Slurm, Kubernetes and `timeout` do: every process of the group
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_STOPPED, stderr[-2000:]
    assert _group_ends(proc.pid), "loader workers outlived the main process"
    stopped = json.loads(summary_path.read_text())
    assert stopped["status"] == "stopped" and 3 <= stopped["last_step"] < steps
    assert checkpoints_newest_first(str(run / "log" / "toy" / "ckpt"))[0][0] == stopped["last_step"]
    resumed = subprocess.run(cli(run, toy_root, steps=steps, workers=2), cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(summary_path.read_text())["start_step"] == stopped["last_step"] + 1
    a = read_training(str(tmp_path / "full" / "log" / "toy" / "ckpt" / f"save_step_{steps}.pth")).state_dict()
    b = read_training(str(run / "log" / "toy" / "ckpt" / f"save_step_{steps}.pth")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _group_ends(pgid: int, seconds: float = 30) -> bool:
    # multiprocessing's resource tracker leaves a moment after its parent; workers are gone already.
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_truncated_newest_checkpoint_is_skipped(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=6, TRAIN_SAVE_STEP=1)
    assert train(cfg, CPU, stop_step=3) == EXIT_STOPPED
    newest = checkpoints_newest_first(cfg.DIR_CKPT)[0][1]
    data = open(newest, "rb").read()
    open(newest, "wb").write(data[: len(data) // 3])
    assert train(cfg, CPU, stop_step=3) == EXIT_STOPPED
    assert summary(cfg)["start_step"] == 3  # resumed from step 2, the newest that loads


def test_stale_temporary_file_of_a_killed_save_is_removed(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=4)
    assert train(cfg, CPU, stop_step=1) == EXIT_STOPPED
    # What `kill -9` in the middle of a save leaves: the previous checkpoint and a partial temporary.
    good = checkpoints_newest_first(cfg.DIR_CKPT)[0][1]
    stale = os.path.join(cfg.DIR_CKPT, "save_step_2.pth.tmp.99999")
    open(stale, "wb").write(open(good, "rb").read()[:1000])
    assert train(cfg, CPU) == 0
    assert not os.path.exists(stale)
    assert summary(cfg)["start_step"] == 2


def test_pruning_keeps_good_checkpoints_beside_damaged_newer_ones(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=6, TRAIN_SAVE_STEP=1, TRAIN_MAX_KEEP_CKPT=2)
    assert train(cfg, CPU, stop_step=3) == EXIT_STOPPED
    assert [s for s, _ in checkpoints_newest_first(cfg.DIR_CKPT)] == [3, 2]
    for step in (9, 8):  # damaged files with higher step numbers
        open(os.path.join(cfg.DIR_CKPT, f"save_step_{step}.pth"), "wb").write(b"PK\x03\x04 damaged")
    assert train(cfg, CPU) == 0
    assert [s for s, _ in checkpoints_newest_first(cfg.DIR_CKPT)] == [9, 8, 6, 5]
    assert read_training(os.path.join(cfg.DIR_CKPT, "save_step_6.pth")).step == 6


def test_checkpointer_never_prunes_unverified_files(tmp_path):
    keeper = Checkpointer(str(tmp_path), keep=1)
    model = LSTA.from_config(preset_config("toy"))
    for step in (1, 2):
        keeper.save(step, model, {}, {})
    assert [s for s, _ in checkpoints_newest_first(str(tmp_path))] == [2]
    (tmp_path / "save_step_7.pth").write_bytes(b"not a checkpoint")
    keeper.save(3, model, {}, {})
    assert [s for s, _ in checkpoints_newest_first(str(tmp_path))] == [7, 3]
    with pytest.raises(ValueError, match="TRAIN_MAX_KEEP_CKPT"):
        Checkpointer(str(tmp_path), keep=0)


# ---- the run folder: other settings, a second run ----

def test_incompatible_rerun_is_refused_and_changes_nothing(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=4)
    assert train(cfg, CPU, stop_step=1) == EXIT_STOPPED
    before = snapshot(cfg.DIR_RESULT)
    out = subprocess.run(cli(tmp_path, toy_root, steps=4) + ["DATA_CURR_SEQ_LEN", "3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    line = error_line(out.stderr)
    assert "DATA_CURR_SEQ_LEN 2 → 3" in line and "TRAIN_TOTAL_STEPS" not in line
    assert snapshot(cfg.DIR_RESULT) == before
    # --restart sets the earlier run aside (nothing deleted) and starts again.
    other = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=4, DATA_CURR_SEQ_LEN=3)
    assert train(other, CPU, restart=True) == 0
    archived = os.listdir(os.path.join(cfg.DIR_RESULT, "archive"))
    assert len(archived) == 1
    old_ckpts = os.listdir(os.path.join(cfg.DIR_RESULT, "archive", archived[0], "ckpt"))
    assert sorted(old_ckpts) == ["save_step_0.pth", "save_step_1.pth"]


def test_second_run_on_the_same_folder_is_refused(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=4)
    assert train(cfg, CPU, stop_step=1) == EXIT_STOPPED
    holder = RunFolder(cfg.DIR_RESULT, cfg.DIR_CKPT, cfg.DIR_TB_LOG)
    holder.lock()  # as a running training holds it
    try:
        before = snapshot(cfg.DIR_RESULT)
        with pytest.raises(RunFolderError, match=f"pid {os.getpid()}.*another --exp_name"):
            train(cfg, CPU)
        assert snapshot(cfg.DIR_RESULT) == before
    finally:
        holder.unlock()
    # A lock left by a process that died is taken over.
    with open(os.path.join(cfg.DIR_RESULT, "run.lock"), "w") as f:
        f.write("pid 999999 on elsewhere since 2026-01-01T00:00:00\n")
    assert train(cfg, CPU) == 0


# ---- faults while saving ----

def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def test_full_disk_at_save_keeps_the_last_checkpoint(toy_root, tmp_path):
    run = tmp_path / "run"
    ckpt_dir = run / "log" / "toy" / "ckpt"
    first = subprocess.run(cli(run, toy_root, "--stop_step", "0"), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == EXIT_STOPPED, first.stderr[-2000:]
    size = os.path.getsize(ckpt_dir / "save_step_0.pth")  # every checkpoint of the run has this size
    if _can_mount_tmpfs():
        # A real full disk: a tmpfs with room for one checkpoint, in a private mount namespace.
        kept = tmp_path / "kept"
        kept.mkdir()
        script = (f"cp -a {ckpt_dir} {tmp_path}/ckpt_copy && mount -t tmpfs -o size={int(size * 1.5)} tmpfs {ckpt_dir}"
                  f" && cp {tmp_path}/ckpt_copy/* {ckpt_dir}/ && {shlex.join(cli(run, toy_root) + ['TRAIN_SAVE_STEP', '1'])};"
                  f" rc=$?; cp -a {ckpt_dir}/. {kept}/; exit $rc")
        out = subprocess.run(["unshare", "-Urm", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        files = sorted(os.listdir(kept))
        cause = "No space left on device"
    else:
        # Else a write the kernel refuses: files larger than half a checkpoint are not allowed.
        def limit():
            import resource
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))
        out = subprocess.run(cli(run, toy_root) + ["TRAIN_SAVE_STEP", "1"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300, preexec_fn=limit)
        files = sorted(os.listdir(ckpt_dir))
        cause = "too large"
    assert out.returncode == 1, out.stderr[-2000:]
    line = error_line(out.stderr)
    assert "save_step_1.pth" in line and cause in line and "save_step_0.pth" in line
    assert files == ["save_step_0.pth"]  # the last good checkpoint, and no temporary file
    log = (run / "log" / "toy" / "train.log").read_text()
    assert line.split("error: ", 1)[1] in log
    assert json.loads((run / "log" / "toy" / "summary.json").read_text())["status"] == "failed"


# ---- stages ----

def stage_cfg(toy_root, tmp_path, stage: int, **overrides):
    extra = dict(EXP_NAME=f"stage{stage}", TRAIN_TOTAL_STEPS=2)
    if stage == 2:
        extra.update(PRETRAIN=True, PRETRAIN_MODEL=os.path.join(str(tmp_path), "log", "stage1", "ckpt"))
    return tiny_cfg(toy_root, tmp_path, **{**extra, **overrides})


def test_interrupted_stage_1_stops_train_sh(toy_root, tmp_path):
    # TRAIN_GPUS from --opts decides the processes (no NPROC): torchrun with two gloo ranks.
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    out = subprocess.run(["bash", "train.sh", "--stop_step", "0", "--opts", *TINY, "DIR_DATA", toy_root,
                          "DIR_ROOT", str(tmp_path), "MODEL_BACKBONE", "resnet18", "PRETRAIN", "False",
                          "MODEL_DISTILLATION", "False", "TRAIN_GPUS", "2"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode != 0, out.stderr[-2000:]
    stage1 = tmp_path / "log" / "lsta_stage1"
    assert json.loads((stage1 / "summary.json").read_text())["world_size"] == 2
    assert json.loads((stage1 / "summary.json").read_text())["status"] == "stopped"
    assert os.path.exists(stage1 / "ckpt" / "save_step_0.pth")
    assert not os.path.exists(tmp_path / "log" / "lsta_stage2")


def test_stage_2_refuses_an_unfinished_or_changed_stage_1(toy_root, tmp_path):
    assert train(stage_cfg(toy_root, tmp_path, 1), CPU, stop_step=0) == EXIT_STOPPED
    second = stage_cfg(toy_root, tmp_path, 2)
    assert train(second, CPU) == 1
    assert "reached step 0 of 2" in summary(second)["error"]
    assert not checkpoints_newest_first(second.DIR_CKPT)
    assert train(stage_cfg(toy_root, tmp_path, 1), CPU) == 0
    assert train(second, CPU) == 0
    source = json.load(open(os.path.join(second.DIR_RESULT, "run.json")))["initialised_from"]
    assert source["step"] == 2 and source["path"].endswith("save_step_2.pth") and len(source["sha256"]) == 64
    assert train(second, CPU) == 0 and summary(second)["status"] == "completed"  # nothing to do
    # Stage 1 trained again, further: stage 2 says so instead of keeping its old result.
    assert train(stage_cfg(toy_root, tmp_path, 1, TRAIN_TOTAL_STEPS=3), CPU, restart=True) == 0
    assert train(second, CPU) == 1
    assert "changed since this run started" in summary(second)["error"]
    assert train(second, CPU, restart=True) == 0
    assert json.load(open(os.path.join(second.DIR_RESULT, "run.json")))["initialised_from"]["step"] == 3


# ---- files that would run code ----

class _Payload:
    """Unpickling this creates a folder: the proof that loading ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _evil(path, marker) -> str:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "step": 5, "x": _Payload(str(marker))}, path)
    return str(path)


def test_malicious_files_run_nothing(toy_root, tmp_path):
    marker = tmp_path / "code_ran"
    # Resume: a planted newest checkpoint.
    cfg = tiny_cfg(toy_root, tmp_path / "resume", TRAIN_TOTAL_STEPS=4)
    assert train(cfg, CPU, stop_step=0) == EXIT_STOPPED
    _evil(os.path.join(cfg.DIR_CKPT, "save_step_3.pth"), marker)
    assert train(cfg, CPU) == 1
    assert "save_step_3.pth refused" in summary(cfg)["error"] and "--trust" in summary(cfg)["error"]
    # Pretrained encoder and STM teacher.
    evil = _evil(tmp_path / "evil.pth", marker)
    for key in ("PRETRAIN_MODEL", "MODEL_DISTILLATION_PRETRAINED_TEACHER"):
        other = tiny_cfg(toy_root, tmp_path / key, PRETRAIN=True, MODEL_DISTILLATION=True,
                         **{"PRETRAIN_MODEL": evil, "MODEL_DISTILLATION_PRETRAINED_TEACHER": evil})
        if key == "MODEL_DISTILLATION_PRETRAINED_TEACHER":
            other.set("PRETRAIN", False)
        assert train(other, CPU) == 1
        error = summary(other)["error"]
        assert "evil.pth refused" in error and "\n" not in error
    # Evaluation weights, through the command line: one line, no traceback.
    out = subprocess.run([sys.executable, "eval.py", "--preset", "toy", "--ckpt_path", evil, "--opts",
                          "DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path / "eval")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "evil.pth refused" in error_line(out.stderr)
    assert not Checkpointer(str(tmp_path), 1).is_loadable(evil)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth refused"):
        read_checkpoint(evil, "weights")
    assert not marker.exists()


# ---- the weak cases of a run: links that lead nowhere, changed settings, a cut line, a storm of signals ----

def test_a_checkpoint_name_that_is_a_symlink_loop_does_not_stop_later_saves(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=4, TRAIN_SAVE_STEP=1)
    assert train(cfg, CPU, stop_step=1) == EXIT_STOPPED
    loop = os.path.join(cfg.DIR_CKPT, "save_step_9.pth")
    os.symlink(loop, loop)  # a link to itself: stat() fails with ELOOP
    assert train(cfg, CPU) == 0  # before: every save after the loop appeared failed
    assert summary(cfg)["start_step"] == 2 and summary(cfg)["last_step"] == 4
    assert [s for s, _ in checkpoints_newest_first(cfg.DIR_CKPT)][:2] == [9, 4]
    assert os.path.islink(loop)  # not the run's to remove


def test_a_resumed_run_records_every_changed_setting(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=3)
    assert train(cfg, CPU, stop_step=1) == EXIT_STOPPED
    faster = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=3, TRAIN_LR=0.5, TRAIN_LOG_STEP=2)
    assert train(faster, CPU) == 0
    changed = summary(faster)["changed_settings"]
    assert changed == {"TRAIN_LR": [cfg.TRAIN_LR, 0.5], "TRAIN_LOG_STEP": [1, 2]}


def test_a_scalars_line_cut_by_a_crash_is_repaired_on_resume(toy_root, tmp_path):
    from training.curves import read_scalars
    from training.run_record import SCALARS
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=4, TRAIN_TBLOG_STEP=1)
    assert train(cfg, CPU, stop_step=1) == EXIT_STOPPED
    scalars = os.path.join(cfg.DIR_RESULT, SCALARS)
    with open(scalars, "a") as f:
        f.write('{"step": 2, "loss/fra')  # what a crash in the middle of a write leaves
    assert train(cfg, CPU) == 0
    lines = open(scalars).read().splitlines()
    assert all(json.loads(line) for line in lines)
    assert read_scalars(scalars)["lr"][0] == [0, 1, 2, 3, 4]


def test_a_storm_of_sigterms_still_ends_with_status_3(toy_root, tmp_path):
    proc = subprocess.Popen(cli(tmp_path, toy_root, steps=400), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    summary_path = tmp_path / "log" / "toy" / "summary.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if summary_path.exists() and json.loads(summary_path.read_text()).get("status") == "running":
            break
        time.sleep(0.05)
    sent = 0
    while proc.poll() is None and sent < 2000:  # through the step, the save and the way out
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        sent += 1
        time.sleep(0.005)
    _, stderr = proc.communicate(timeout=300)
    assert sent > 1
    assert proc.returncode == EXIT_STOPPED, stderr[-2000:]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list a process tree")
def test_loader_workers_end_when_the_trainer_is_killed(toy_root, tmp_path):
    proc = subprocess.Popen([sys.executable, "train.py", "--preset", "toy", "--opts", "DIR_DATA", toy_root,
                             "DIR_ROOT", str(tmp_path), "DATA_WORKERS", "2", "TRAIN_TOTAL_STEPS", "100000",
                             "TRAIN_LOG_STEP", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    summary = tmp_path / "log" / "toy" / "summary.json"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # until the first step has run: workers are up
            if summary.exists() and json.loads(summary.read_text() or "{}").get("history"):
                break
            time.sleep(0.2)
        run_processes = _descendants(proc.pid)
        assert len(run_processes) >= 2, "the run started no loader workers"
        proc.kill()
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in run_processes):
            time.sleep(0.2)
        assert not [p for p in run_processes if _alive(p)]
    finally:
        for pid in _descendants(proc.pid) | {proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_an_unusable_run_folder_is_one_line_and_leaves_no_lock(toy_root, tmp_path):
    (tmp_path / "log").write_text("a file where the log folder should be")
    out = run_script("train.py", "--preset", "toy", "--opts", "DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path))
    assert "log" in one_error_line(out)
    assert sorted(os.listdir(tmp_path)) == ["log"]


def test_resume_with_gradients_of_unknown_parameters_is_one_line(toy_root, tmp_path):
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.apply_opts(["DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path), "TRAIN_TOTAL_STEPS", "2", "DATA_WORKERS", "0",
                    "TRAIN_WARM_UP_STEPS", "0", "DATA_RANDOMCROP", "(65, 65)", "DATA_SHORT_EDGE_LEN", "70"])
    assert train(cfg, CPU, stop_step=0) == 3
    path = os.path.join(cfg.DIR_CKPT, "save_step_0.pth")
    # A file whose saved encoder gradients name a parameter the model lacks.
    content = {**read_training(path).content, "accumulated_grads": {"feature_extractor.not_a_layer.weight":
                                                                    torch.zeros(3)}}
    save_checkpoint(content, path)
    assert train(cfg, CPU) == 1
    error = json.loads((tmp_path / "log" / "toy" / "summary.json").read_text())["error"]
    assert "not_a_layer" in error and "save_step_0.pth" in error and "\n" not in error
