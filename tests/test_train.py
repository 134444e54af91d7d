import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from config import Config
from networks.stm import STM
from tests.conftest import ROOT
from train import Trainer, checkpoints_newest_first
from utils.distributed import DistInfo
from utils.losses import ohem_cross_entropy
from utils.schedule import learning_rate

CPU = DistInfo(0, 1, 0, torch.device("cpu"))
TINY = ["DATA_RANDOMCROP", "(65, 65)", "DATA_CURR_SEQ_LEN", "2", "TRAIN_BATCH_SIZE", "2", "DATA_WORKERS", "0",
        "TRAIN_LOG_STEP", "1", "TRAIN_WARM_UP_STEPS", "2", "DATA_SHORT_EDGE_LEN", "70"]


def tiny_cfg(toy_root: str, tmp_path, **overrides) -> Config:
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.apply_opts(TINY)
    cfg.set("DIR_DATA", toy_root)
    cfg.set("DIR_ROOT", str(tmp_path))
    for key, value in overrides.items():
        cfg.set(key, value)
    return cfg


def final_state(cfg: Config) -> dict:
    step, path = checkpoints_newest_first(cfg.DIR_CKPT)[0]
    assert step == cfg.TRAIN_TOTAL_STEPS
    return torch.load(path, weights_only=False)["state_dict"]


def test_schedule_and_ohem():
    cfg = Config()
    assert learning_rate(0, cfg) == cfg.TRAIN_MIN_LR
    assert learning_rate(500, cfg) == pytest.approx(3e-3)
    assert learning_rate(1000, cfg) == pytest.approx(6e-3)
    assert learning_rate(50000, cfg) == pytest.approx(max(6e-3 * (1 / 49001) ** 0.9, 1e-5))
    # OHEM: 4 of 64 pixels wrong → exactly the ⌊64/16⌋ = 4 hard ones are averaged.
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 1] = 3.0
    labels = torch.ones(1, 8, 8, dtype=torch.long)
    labels[0, 0, :4] = 0
    hard = torch.nn.functional.cross_entropy(logits, labels, reduction="none")[0, 0, 0]
    assert ohem_cross_entropy(logits, labels).item() == pytest.approx(hard.item())
    # All easy: the hardest quarter-of-a-sixteenth is averaged instead of nothing.
    assert ohem_cross_entropy(logits, torch.ones(1, 8, 8, dtype=torch.long)).item() > 0


def test_updates_reduce_the_loss_on_a_batch(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_LR=0.01, TRAIN_WARM_UP_STEPS=0)
    trainer = Trainer(cfg, CPU)
    batch = next(iter(trainer.loader))
    losses = [sum(trainer.train_step(batch, step=10)[0]) for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_frozen_encoder_is_left_unchanged(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True, TRAIN_TOTAL_STEPS=2)
    trainer = Trainer(cfg, CPU)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("feature_extractor."))
    assert not torch.equal(before["pred.weight"], after["pred.weight"])
    assert torch.equal(before["LTM.w"], after["LTM.w"])


def test_resume_is_bitwise_identical(toy_root, tmp_path):
    # Dropout in the trained encoder, BN statistics and momentum all have to be restored exactly.
    full = tiny_cfg(toy_root, tmp_path / "full", TRAIN_TOTAL_STEPS=5)
    Trainer(full, CPU).run()
    split = tiny_cfg(toy_root, tmp_path / "split", TRAIN_TOTAL_STEPS=5)
    Trainer(split, CPU, stop_step=2).run()
    assert [s for s, _ in checkpoints_newest_first(split.DIR_CKPT)][0] == 2
    resumed = Trainer(split, CPU)
    assert resumed.start_step == 3
    resumed.run()
    a, b = final_state(full), final_state(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_truncated_newest_checkpoint_is_skipped(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=3, TRAIN_SAVE_STEP=1)
    Trainer(cfg, CPU).run()
    (step, newest), (older_step, _) = checkpoints_newest_first(cfg.DIR_CKPT)[:2]
    data = open(newest, "rb").read()
    open(newest, "wb").write(data[: len(data) // 3])
    trainer = Trainer(cfg, CPU)
    assert trainer.start_step == older_step + 1 == step
    assert "skipping checkpoint" in open(os.path.join(cfg.DIR_RESULT, "train.log")).read()


def test_checkpoint_contents_and_pruning(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=4, TRAIN_SAVE_STEP=1, TRAIN_MAX_KEEP_CKPT=2)
    Trainer(cfg, CPU).run()
    found = checkpoints_newest_first(cfg.DIR_CKPT)
    assert [s for s, _ in found] == [4, 3]
    ckpt = torch.load(found[0][1], weights_only=False)
    assert set(ckpt) == {"state_dict", "optimizer", "step", "scaler", "rng", "config"}
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert not [f for f in os.listdir(cfg.DIR_CKPT) if ".tmp" in f]


def test_distillation_with_random_teacher(toy_root, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "STM_weights.pth"
    torch.save({"module." + k: v for k, v in STM().state_dict().items()}, path)
    for as_designed in (False, True):
        cfg = tiny_cfg(toy_root, tmp_path / str(as_designed), MODEL_DISTILLATION=True, TRAIN_TOTAL_STEPS=1,
                       MODEL_DISTILLATION_PRETRAINED_TEACHER=str(path),
                       MODEL_DISTILLATION_TEACHER_AS_DESIGNED=as_designed)
        trainer = Trainer(cfg, CPU)
        assert trainer.teacher.model.training is not as_designed
        trainer.run()
        assert final_state(cfg)["pred.weight"].isfinite().all()
    missing = tiny_cfg(toy_root, tmp_path / "x", MODEL_DISTILLATION=True,
                       MODEL_DISTILLATION_PRETRAINED_TEACHER=str(tmp_path / "none.pth"))
    with pytest.raises(RuntimeError, match="MODEL_DISTILLATION False"):
        Trainer(missing, CPU)


def test_authors_loss_and_encoder_gradient_switches(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_LOSS_LAST_FRAME_ONLY=True, TRAIN_AUTHORS_ENCODER_GRAD=True,
                   MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True)
    trainer = Trainer(cfg, CPU)
    batch = next(iter(trainer.loader))
    trainer.train_step(batch, 5)
    grad = trainer.model.feature_extractor.backbone.conv1.weight.grad.clone()
    trainer.train_step(batch, 6)
    # Never zeroed: the encoder's gradients accumulate over steps, as in the authors' code.
    assert trainer.model.feature_extractor.backbone.conv1.weight.grad.norm() > grad.norm()


def test_missing_pretrained_file_says_how_to_turn_it_off(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, PRETRAIN=True, PRETRAIN_MODEL=str(tmp_path / "nope.pth.tar"))
    with pytest.raises(RuntimeError, match="nope.pth.tar.*\n.*PRETRAIN False"):
        Trainer(cfg, CPU)


def _cli(tmp_path, toy_root, steps):
    return ["train.py", "--preset", "toy", "--opts", *TINY, "DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path),
            "TRAIN_TOTAL_STEPS", str(steps)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_gloo(toy_root, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()),
           *_cli(tmp_path, toy_root, 2)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = open(tmp_path / "log" / "toy" / "train.log").read()
    assert "2 process(es)" in log and "(1 per rank" in log
    assert "rank weights in sync: True" in log
    assert os.path.exists(tmp_path / "log" / "toy" / "ckpt" / "save_step_2.pth")


def test_sigterm_leaves_a_loadable_checkpoint(toy_root, tmp_path):
    cmd = [sys.executable, *_cli(tmp_path, toy_root, 10000), "TRAIN_SAVE_STEP", "100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "log" / "toy" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "step 2 " in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-2000:]
    (step, path), *_ = checkpoints_newest_first(str(tmp_path / "log" / "toy" / "ckpt"))
    assert 2 <= step < 10000
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["step"] == step and "stopped after step" in log.read_text()
