import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.models import resnet101
from torchvision.models.segmentation import deeplabv3_resnet101

from config import Config
from evaluation.results_folder import RECORD
from inference.segmenter import VideoSegmenter
from networks.checkpoints import save_lsta
from networks.deeplab import DeepLab
from networks.lsta import LSTA
from networks.stm import STM
from networks.weights import load_lsta_weights, load_pretrained, load_stm_teacher
from tests.conftest import ROOT
from tests.helpers.builders import TOY_EVAL
from tests.helpers.runs import one_error_line, run_script
from utils.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    read_checkpoint,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def r101_model():
    return LSTA()


def _assert_loaded(model, file_state, mapping):
    ours = model.state_dict()
    for src, dst in mapping.items():
        assert torch.equal(ours[dst], file_state[src]), dst


def test_cfbi_deeplab_file(tmp_path, r101_model):
    torch.manual_seed(1)
    deeplab = DeepLab("resnet101", freeze_bn=False)  # CFBI's file: plain BN with counters
    state = deeplab.state_dict()
    state["decoder.last_conv.8.weight"] = torch.randn(21, 256, 1, 1)
    state["decoder.last_conv.8.bias"] = torch.randn(21)
    # As pytorch-deeplab-xception saves it: best_pred is a numpy scalar (safe to load: data only).
    torch.save({"state_dict": state, "epoch": 50, "best_pred": np.float64(0.78), "optimizer": {}},
               tmp_path / "resnet101-deeplabv3p.pth.tar")
    report = load_pretrained(r101_model, str(tmp_path / "resnet101-deeplabv3p.pth.tar"))
    encoder_keys = [k for k in r101_model.state_dict() if k.startswith("feature_extractor.")]
    assert len(report.loaded) == len(encoder_keys) and not report.missing and not report.mismatched
    assert "decoder.last_conv.8.weight" in report.skipped
    _assert_loaded(r101_model, state, {k[len("feature_extractor."):]: k for k in encoder_keys})


def test_torchvision_deeplabv3_backbone_only(tmp_path, r101_model):
    torch.manual_seed(2)
    state = deeplabv3_resnet101(weights=None, weights_backbone=None, aux_loss=True).state_dict()
    torch.save(state, tmp_path / "deeplabv3.pth")
    report = load_pretrained(r101_model, str(tmp_path / "deeplabv3.pth"))
    assert any(s.startswith("classifier.") for s in report.skipped)
    assert any(s.startswith("aux_classifier.") for s in report.skipped)
    # Reported for the whole encoder: a backbone-only file leaves ASPP and decoder uninitialised.
    assert report.missing and all(n.startswith(("feature_extractor.aspp.", "feature_extractor.decoder."))
                                  for n in report.missing)
    assert not report.mismatched
    _assert_loaded(r101_model, state, {"backbone.layer4.2.conv2.weight": "feature_extractor.backbone.layer4.2.conv2.weight",
                                       "backbone.bn1.running_var": "feature_extractor.backbone.bn1.running_var"})


def test_torchvision_imagenet_resnet101(tmp_path, r101_model):
    torch.manual_seed(3)
    state = resnet101(weights=None).state_dict()
    torch.save(state, tmp_path / "resnet101.pth")
    report = load_pretrained(r101_model, str(tmp_path / "resnet101.pth"))
    assert "fc.weight" in report.skipped
    assert {n.split(".")[1] for n in report.missing} == {"aspp", "decoder"}
    _assert_loaded(r101_model, state, {"layer3.22.conv3.weight": "feature_extractor.backbone.layer3.22.conv3.weight"})


def test_lsta_checkpoint_with_module_prefix(tmp_path):
    cfg = Config()
    cfg.set("MODEL_BACKBONE", "resnet18")
    torch.manual_seed(4)
    source = LSTA.from_config(cfg)
    state = {"module." + k: v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "optimizer": {}}, tmp_path / "ckpt.pth")
    torch.manual_seed(5)
    target = LSTA.from_config(cfg)
    report = load_lsta_weights(target, str(tmp_path / "ckpt.pth"))
    assert not report.missing and not report.unexpected
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def test_stm_official_weights(tmp_path):
    torch.manual_seed(6)
    state = {"module." + k: v for k, v in STM().state_dict().items()}
    torch.save(state, tmp_path / "STM_weights.pth")
    teacher = STM()
    report = load_stm_teacher(teacher, str(tmp_path / "STM_weights.pth"))
    assert len(report.loaded) == 558
    assert torch.equal(teacher.Decoder.pred2.weight, state["module.Decoder.pred2.weight"])


def test_clear_errors(tmp_path):
    cfg = Config()
    cfg.set("MODEL_BACKBONE", "resnet18")
    model = LSTA.from_config(cfg)
    with pytest.raises(CheckpointError, match="not found: .*nothing.pth"):
        load_lsta_weights(model, str(tmp_path / "nothing.pth"))
    save_checkpoint({"state_dict": model.state_dict()}, str(tmp_path / "good.pth"))
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_lsta_weights(model, str(tmp_path / "cut.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_lsta_weights(model, str(tmp_path / "list.pth"))
    torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="matches too little"):
        load_lsta_weights(model, str(tmp_path / "other.pth"))
    with pytest.raises(CheckpointError, match="no known format"):
        load_pretrained(model, str(tmp_path / "other.pth"))


def test_a_file_with_objects_is_refused_then_converted_once_on_trust(tmp_path):
    source = tmp_path / "best_LSTA.pth"
    weights = {"conv.weight": torch.randn(2, 3)}
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=0.1), "epoch": np.int64(7)}, source)
    with pytest.raises(UnsafeCheckpointError, match=r"best_LSTA.pth refused.*argparse.Namespace.*--trust"):
        read_checkpoint(str(source), "LSTA weights")
    tool = [sys.executable, "-m", "tools.convert_checkpoint"]
    refused = subprocess.run(tool + [str(source)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "--trust" in refused.stderr
    done = subprocess.run(tool + ["--trust", str(source)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    safe = read_checkpoint(str(tmp_path / "best_LSTA.safe.pth"), "LSTA weights")
    assert torch.equal(safe["state_dict"]["conv.weight"], weights["conv.weight"])
    assert safe["epoch"] == 7 and "args" not in safe
    again = subprocess.run(tool + ["--trust", str(source)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "exists" in again.stderr  # never overwritten


def _toy_checkpoint(path, backbone: str) -> str:
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("MODEL_BACKBONE", backbone)
    torch.manual_seed(1)
    model = LSTA.from_config(cfg)
    save_lsta(str(path), model, step=3, config=cfg.to_dict())
    return str(path)


def test_a_checkpoint_of_another_architecture_is_refused_or_rebuilt(davis_copy, tmp_path):
    r34 = _toy_checkpoint(tmp_path / "r34.pth", "resnet34")
    # --preset toy asks for ResNet-18: before, 222 loaded, 80 unexpected, evaluated as ResNet-18.
    out = run_script("eval.py", "--preset", "toy", "--ckpt_path", r34, "--out", str(tmp_path / "a"), "--opts",
              "DIR_DAVIS", str(davis_copy), *TOY_EVAL)
    line = one_error_line(out)
    assert "resnet34" in line and "resnet18" in line and "MODEL_BACKBONE" in line
    # Without a preset, the checkpoint's own record builds the model.
    out = run_script("eval.py", "--ckpt_path", r34, "--out", str(tmp_path / "b"), "--opts", "DIR_DAVIS", str(davis_copy),
              *TOY_EVAL)
    assert out.returncode == 0, out.stderr[-3000:]
    settings = Config()
    settings.set("TEST_BACKEND", "torch")  # inference settings only: the model is the checkpoint's
    segmenter = VideoSegmenter.from_checkpoint(r34, settings)
    assert segmenter.model.args.backbone == "resnet34"
    # A state_dict of a larger backbone loaded into a smaller model: refused, naming both.
    small = LSTA.from_config(_toy_cfg("resnet18"))
    from networks.weights import load_lsta_weights
    from utils.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="resnet34.*resnet18"):
        load_lsta_weights(small, r34)
    unrecorded = tmp_path / "bare.pth"
    torch.save({"state_dict": LSTA.from_config(_toy_cfg("resnet34")).state_dict()}, unrecorded)
    with pytest.raises(CheckpointError, match="lacks"):
        load_lsta_weights(small, str(unrecorded))


def _toy_cfg(backbone):
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.set("MODEL_BACKBONE", backbone)
    return cfg


def test_a_toy_checkpoint_evaluates_without_a_preset(toy_root, tmp_path):
    # The checkpoint records its architecture, window and data: `eval.py --ckpt_path X` is enough.
    cfg = _toy_cfg("resnet18")
    cfg.apply_opts(["DIR_DATA", toy_root, "MODEL_MAX_MEM", "4"])
    torch.manual_seed(2)
    model = LSTA.from_config(cfg)
    path = str(tmp_path / "save_step_300.pth")
    save_lsta(path, model, step=300, config=cfg.to_dict())
    # (TEST_BACKEND torch spares the test an ONNX export; the checkpoint alone picks the model and data.)
    out = run_script("eval.py", "--ckpt_path", path, "--out", str(tmp_path / "res"), "--opts", "TEST_BACKEND", "torch")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "res" / RECORD).read_text())
    assert record["model"]["backbone"] == "resnet18" and record["settings"]["DIR_DATA"] == toy_root
    assert record["settings"]["MODEL_MAX_MEM"] == 4
