import json
import logging
import os
import subprocess
import sys

import cv2
import pytest
import torch

from config import Config, ConfigError
from dataloaders.loader import LoaderSettings, build_train_loader
from dataloaders.train_datasets import build_train_dataset
from networks.checkpoints import checkpoints_newest_first, read_training
from networks.stm import STM
from tests.conftest import ROOT
from tests.helpers.builders import CPU, TINY, summary, tiny_cfg
from tools.harness import free_port
from training.build import build_trainer
from training.curves import read_scalars
from training.launch import EXIT_STOPPED, train
from training.losses import ohem_cross_entropy
from training.run_record import CURVES, SCALARS
from training.schedule import Schedule
from utils.checkpoint import read_checkpoint

LOG = logging.getLogger("tests")






def final_state(cfg: Config) -> dict:
    step, path = checkpoints_newest_first(cfg.DIR_CKPT)[0]
    assert step == cfg.TRAIN_TOTAL_STEPS
    return read_training(path).state_dict()


def first_batch(cfg: Config, parts) -> dict:
    loader, _ = build_train_loader(build_train_dataset(cfg), LoaderSettings.from_config(cfg), parts.rank_batch)
    return next(iter(loader))


def test_schedule_and_ohem():
    cfg = Config()
    assert Schedule.from_config(cfg).learning_rate(0) == cfg.TRAIN_MIN_LR
    assert Schedule.from_config(cfg).learning_rate(500) == pytest.approx(3e-3)
    assert Schedule.from_config(cfg).learning_rate(1000) == pytest.approx(6e-3)
    assert Schedule.from_config(cfg).learning_rate(50000) == pytest.approx(max(6e-3 * (1 / 49001) ** 0.9, 1e-5))
    # OHEM: 4 of 64 pixels wrong → exactly the ⌊64/16⌋ = 4 hard ones are averaged.
    logits = torch.zeros(1, 2, 8, 8)
    logits[:, 1] = 3.0
    labels = torch.ones(1, 8, 8, dtype=torch.long)
    labels[0, 0, :4] = 0
    hard = torch.nn.functional.cross_entropy(logits, labels, reduction="none")[0, 0, 0]
    assert ohem_cross_entropy(logits, labels).item() == pytest.approx(hard.item())
    # All easy: the hardest sixteenth is averaged instead of nothing.
    assert ohem_cross_entropy(logits, torch.ones(1, 8, 8, dtype=torch.long)).item() > 0


def _batch_loss(parts, batch, cfg) -> float:
    """The training objective on `batch` with fixed dropout draws, parameters untouched."""
    torch.manual_seed(123)
    with torch.no_grad():
        per_frame, _ = parts.frame_losses({k: v for k, v in batch.items() if k != "meta"})
    return torch.stack(per_frame).mean().item()


def test_small_steps_lower_the_loss_on_their_batch(toy_root, tmp_path):
    # Gradient descent with a small step lowers the objective it descends: a property of the
    # computation, not of one machine's trajectory (here ~30 % lower; asserted: 5 %).
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_LR=2e-3, TRAIN_WARM_UP_STEPS=0, TRAIN_TOTAL_STEPS=1000)
    parts = build_trainer(cfg, CPU, LOG)
    batch = first_batch(cfg, parts)
    before = _batch_loss(parts, batch, cfg)
    for step in range(5):
        assert parts.step(batch, step) is not None
    assert _batch_loss(parts, batch, cfg) < 0.95 * before


def test_frozen_encoder_is_left_unchanged(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True)
    parts = build_trainer(cfg, CPU, LOG)
    batch = first_batch(cfg, parts)
    before = {k: v.clone() for k, v in parts.lsta.state_dict().items()}
    for step in (5, 6):
        parts.step(batch, step)
    after = parts.lsta.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("feature_extractor."))
    assert not torch.equal(before["pred.weight"], after["pred.weight"])
    assert torch.equal(before["LTM.w"], after["LTM.w"])


@pytest.mark.parametrize("authors_grad", [False, True])
def test_resume_is_bitwise_identical(toy_root, tmp_path, authors_grad):
    # Dropout in the trained encoder, BN statistics, momentum, and (authors' mode) the encoder's
    # never-zeroed gradients all have to be restored exactly.
    settings = dict(TRAIN_TOTAL_STEPS=5, TRAIN_AUTHORS_ENCODER_GRAD=authors_grad,
                    MODEL_TRAIN_ENCODER=not authors_grad, MODEL_FREEZE_BN=authors_grad)
    full = tiny_cfg(toy_root, tmp_path / "full", **settings)
    assert train(full, CPU) == 0
    split = tiny_cfg(toy_root, tmp_path / "split", **settings)
    assert train(split, CPU, stop_step=2) == EXIT_STOPPED
    assert summary(split)["status"] == "stopped" and summary(split)["last_step"] == 2
    assert train(split, CPU) == 0
    assert summary(split)["start_step"] == 3 and summary(split)["status"] == "completed"
    a, b = final_state(full), final_state(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = read_training(checkpoints_newest_first(split.DIR_CKPT)[0][1])
    assert bool(ckpt.training_state("accumulated_grads")) is authors_grad


def test_distillation_with_random_teacher(toy_root, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "STM_weights.pth"
    torch.save({"module." + k: v for k, v in STM().state_dict().items()}, path)
    for as_designed in (False, True):
        cfg = tiny_cfg(toy_root, tmp_path / str(as_designed), MODEL_DISTILLATION=True,
                       MODEL_DISTILLATION_PRETRAINED_TEACHER=str(path),
                       TRAIN_DISTILLATION_TEACHER_AS_DESIGNED=as_designed)
        parts = build_trainer(cfg, CPU, LOG)
        assert parts.losses.names == ["ohem", "distillation"]
        teacher = parts.losses.terms[1][0].teacher
        assert teacher.model.training is not as_designed
        result = parts.step(first_batch(cfg, parts), 5)
        assert result is not None and all(torch.isfinite(torch.tensor(result.losses)))
        assert parts.lsta.pred.weight.isfinite().all()
    missing = tiny_cfg(toy_root, tmp_path / "x", MODEL_DISTILLATION=True,
                       MODEL_DISTILLATION_PRETRAINED_TEACHER=str(tmp_path / "none.pth"))
    with pytest.raises(RuntimeError, match="none.pth.*MODEL_DISTILLATION False"):
        build_trainer(missing, CPU, LOG)


def test_authors_loss_and_encoder_gradient_switches(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_LOSS_LAST_FRAME_ONLY=True, TRAIN_AUTHORS_ENCODER_GRAD=True,
                   MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True)
    parts = build_trainer(cfg, CPU, LOG)
    batch = first_batch(cfg, parts)
    parts.step(batch, 5)
    conv1 = parts.lsta.feature_extractor.backbone.conv1.weight
    grad = conv1.grad.clone()
    parts.step(batch, 6)
    # Never zeroed: the encoder's gradients accumulate over steps, as in the authors' code.
    assert conv1.grad.norm() > grad.norm()


def test_missing_pretrained_file_says_how_to_turn_it_off(toy_root, tmp_path):
    cfg = tiny_cfg(toy_root, tmp_path, PRETRAIN=True, PRETRAIN_MODEL=str(tmp_path / "nope.pth.tar"))
    assert train(cfg, CPU) == 1
    error = summary(cfg)["error"]
    assert "nope.pth.tar" in error and "PRETRAIN False" in error and "\n" not in error


def _cli(tmp_path, toy_root, steps, *extra):
    return ["train.py", "--preset", "toy", *extra, "--opts", *TINY, "DIR_DATA", toy_root, "DIR_ROOT", str(tmp_path),
            "TRAIN_TOTAL_STEPS", str(steps)]



def test_torchrun_two_processes_gloo(toy_root, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), *_cli(tmp_path, toy_root, 2)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "log" / "toy" / "summary.json").read_text())
    assert result["world_size"] == 2 and result["ranks_in_sync"] is True and result["status"] == "completed"
    assert os.path.exists(tmp_path / "log" / "toy" / "ckpt" / "save_step_2.pth")


def _easy_and_hard_batch(cfg) -> dict:
    parts = build_trainer(cfg, CPU, LOG)
    batch = {k: v for k, v in first_batch(cfg, parts).items() if k != "meta"}
    # Sample 1's targets inverted: every pixel is hard there, few are in sample 0.
    batch["curr_label"] = [torch.stack([label[0], 1 - label[1]]) for label in batch["curr_label"]]
    return batch


def test_the_loss_does_not_depend_on_how_the_batch_is_split(toy_root, tmp_path):
    # One pass, two accumulated passes and two processes must give the same update: OHEM picks
    # each sample's hardest pixels, as on the authors' one sample per GPU. The model is in eval
    # mode so that its outputs do not depend on which samples share a pass.
    opts = dict(TRAIN_WARM_UP_STEPS=0, MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True)
    cfg = tiny_cfg(toy_root, tmp_path, **opts)
    batch = _easy_and_hard_batch(cfg)
    results = {}
    for passes, per_pass in (("one pass", 0), ("two passes", 1)):
        cfg.set("TRAIN_MAX_BATCH_PER_PASS", per_pass)
        parts = build_trainer(cfg, CPU, LOG)
        parts.model.eval()
        result = parts.step(batch, 10)
        results[passes] = (result.losses, parts.lsta.state_dict())
    torch.save(batch, tmp_path / "batch.pt")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "tests.helpers.split_step",
           str(tmp_path / "batch.pt"), str(tmp_path / "out.pt"), *TINY, "DIR_DATA", toy_root,
           *[str(x) for kv in opts.items() for x in kv]]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    two = read_checkpoint(str(tmp_path / "out.pt"), "split step result")
    per_rank = two["losses"]  # rank r's losses are its own sample's
    results["two processes"] = ([sum(f) / 2 for f in zip(*per_rank)], two["state_dict"])
    # The samples' losses differ, so OHEM over both at once would not average to this.
    assert abs(per_rank[0][0] - per_rank[1][0]) > 0.1
    reference_losses, reference = results["one pass"]
    for name, (losses, state) in results.items():
        assert losses == pytest.approx(reference_losses, rel=1e-5), name
        for key, value in reference.items():
            if value.is_floating_point():
                assert torch.allclose(state[key], value, rtol=1e-5, atol=1e-7), (name, key)


def test_precision_is_true_float32_unless_tf32_is_asked_for(toy_root, tmp_path):
    for allow, expected in ((False, "ieee"), (True, "tf32"), (False, "ieee")):
        cfg = tiny_cfg(toy_root, tmp_path / str(allow), TRAIN_TOTAL_STEPS=2, DEVICE_ALLOW_TF32=allow)
        assert train(cfg, CPU, stop_step=0) == EXIT_STOPPED
        # The flags the run set for CUDA convolutions and matmuls (read without a GPU).
        assert torch.backends.cudnn.conv.fp32_precision == expected
        assert torch.backends.cuda.matmul.fp32_precision == expected
        assert summary(cfg)["precision"] == "float32"  # this run's own device is the CPU


def test_scalars_read_back_from_tensorboard_and_scalars_jsonl(toy_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_TOTAL_STEPS=2, TRAIN_TBLOG=True, TRAIN_TBLOG_STEP=1)
    assert train(cfg, CPU) == 0
    events = EventAccumulator(cfg.DIR_TB_LOG)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/frame0", "loss/frame1", "iou/frame0", "iou/frame1", "lr", "seconds_per_step",
            "samples_per_second"} <= tags
    assert [e.step for e in events.Scalars("loss/frame0")] == [0, 1, 2]
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([Schedule.from_config(cfg).learning_rate(s) for s in range(3)])
    assert summary(cfg)["losses"][0] == pytest.approx(events.Scalars("loss/frame0")[-1].value, rel=1e-6)
    # The same scalars, machine-readable beside the run, and their picture.
    scalars = read_scalars(os.path.join(cfg.DIR_RESULT, SCALARS))
    assert scalars["loss/frame0"] == ([0, 1, 2], pytest.approx([e.value for e in events.Scalars("loss/frame0")]))
    curves = cv2.imread(os.path.join(cfg.DIR_RESULT, CURVES))
    assert curves is not None and curves.shape[0] > 100 and curves.std() > 0


def _backbone_only_file(path, fmt: str) -> str:
    from torchvision.models import resnet18
    torch.manual_seed(7)
    state = resnet18(weights=None).state_dict()
    if fmt == "torchvision deeplabv3":  # backbone.* plus a classifier, as torchvision's segmentation models
        state = {**{"backbone." + k: v for k, v in state.items() if not k.startswith("fc.")},
                 "classifier.4.weight": torch.zeros(21, 256, 1, 1)}
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("fmt", ["torchvision deeplabv3", "ImageNet resnet"])
def test_backbone_only_initial_file_never_leaves_random_frozen_parts(toy_root, tmp_path, fmt):
    path = _backbone_only_file(tmp_path / "init.pth", fmt)
    settings = dict(MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True, PRETRAIN=True, PRETRAIN_MODEL=path,
                    TRAIN_TOTAL_STEPS=3)
    refused = tiny_cfg(toy_root, tmp_path / "error", **settings)
    assert train(refused, CPU) == 1
    error = summary(refused)["error"]
    assert "feature_extractor.aspp, feature_extractor.decoder" in error and "PRETRAIN_PARTIAL_ENCODER" in error
    assert not checkpoints_newest_first(refused.DIR_CKPT)
    # "train": ASPP and decoder learn with the head; the loaded backbone stays as loaded.
    cfg = tiny_cfg(toy_root, tmp_path / "train", PRETRAIN_PARTIAL_ENCODER="train", **settings)
    parts = build_trainer(cfg, CPU, LOG, pretrained=path)
    assert parts.trained_encoder_parts == ["aspp", "decoder"]
    before = {k: v.clone() for k, v in parts.lsta.state_dict().items()}
    parts.step(first_batch(cfg, parts), 1)
    after = parts.lsta.state_dict()
    changed = {k.split(".")[1] for k in before if k.startswith("feature_extractor.")
               and not torch.equal(before[k], after[k])}
    assert changed == {"aspp", "decoder"}
    # The choice is recorded, so a resumed run trains the same parts.
    assert train(cfg, CPU, stop_step=1) == EXIT_STOPPED
    assert json.load(open(os.path.join(cfg.DIR_RESULT, "run.json")))["trained_encoder_parts"] == ["aspp", "decoder"]
    assert train(cfg, CPU) == 0


def test_a_new_loss_is_one_class_and_one_registry_line(toy_root, tmp_path, monkeypatch):
    # What a maintainer writes: a FrameLoss in a file of its own, and one line in training.losses.LOSSES.
    from training.losses import LOSSES, FrameLoss

    class MeanForeground(FrameLoss):
        name = "mean_foreground"

        def __call__(self, outputs, batch):
            return [torch.softmax(logits.float(), 1)[:, 1].flatten(1).mean(1) for logits in outputs]

    monkeypatch.setitem(LOSSES, "mean_foreground", MeanForeground)
    cfg = tiny_cfg(toy_root, tmp_path, TRAIN_EXTRA_LOSSES={"mean_foreground": 0.5}, MODEL_TRAIN_ENCODER=False,
                   MODEL_FREEZE_BN=True).validate()
    plain = build_trainer(tiny_cfg(toy_root, tmp_path, MODEL_TRAIN_ENCODER=False, MODEL_FREEZE_BN=True), CPU, LOG)
    extra = build_trainer(cfg, CPU, LOG)
    assert extra.losses.names == ["ohem", "mean_foreground"]
    batch = first_batch(cfg, extra)
    part = {k: v for k, v in batch.items() if k != "meta"}
    plain.model.eval()
    extra.model.eval()
    with torch.no_grad():
        base, _ = plain.frame_losses(part)
        total, _ = extra.frame_losses(part)
        outputs = extra.model(part["ref_img"], part["prev_img"], part["curr_img"])
        added = MeanForeground()(outputs, part)
    for b, t, a in zip(base, total, added):
        assert torch.allclose(t, b + 0.5 * a)
    # An unknown name is a config error naming the key.
    with pytest.raises(ConfigError, match="TRAIN_EXTRA_LOSSES"):
        tiny_cfg(toy_root, tmp_path, TRAIN_EXTRA_LOSSES={"no_such_loss": 1.0}).validate()
