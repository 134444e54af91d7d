"""The recipe presets train the authors' step exactly; the clean variant differs; AMP unscales every clipped gradient.

The reference step below is written from the authors' rules, not from train.py: their frame loop
overwrites `loss`, so only the last current frame's `2·loss_T/T` is back-propagated; the frozen
encoder is back-propagated through and its gradients are never zeroed; clipping covers every
parameter with a gradient; then SGD (Nesterov, weight decay) on the head.
"""
import copy
import logging

import pytest
import torch

from config import Config
from dataloaders.loader import LoaderSettings, build_train_loader
from dataloaders.train_datasets import build_train_dataset
from tests.helpers.builders import CPU
from training.build import build_trainer
from training.losses import ohem_cross_entropy

LOG = logging.getLogger("tests")
STEP = 500  # in the warm-up: lr = TRAIN_LR · 500 / 1000
# The preset's training rules are kept; only the model and crop are shrunk to CPU size, the
# teacher is off (no STM weights here) and the encoder starts from random weights.
SMALL = {"MODEL_BACKBONE": "resnet18", "MODEL_ASPP_OUTDIM": 64, "MODEL_SHORTCUT_DIM": 16,
         "MODEL_SEMANTIC_EMBEDDING_DIM": 32, "MODEL_DISTILLATION": False, "PRETRAIN": False,
         "DATA_RANDOMCROP": (49, 49), "DATA_SHORT_EDGE_LEN": 52, "DATA_CURR_SEQ_LEN": 3, "DATA_WORKERS": 0}


def preset_cfg(preset: str, toy_root: str, tmp_path, **extra) -> Config:
    cfg = Config()
    cfg.apply_preset(preset)
    for key, value in {**SMALL, "DIR_DATA": toy_root, "DIR_ROOT": str(tmp_path), **extra}.items():
        cfg.set(key, value)
    return cfg.validate()


def fixed_batch(cfg: Config) -> dict:
    loader, _ = build_train_loader(build_train_dataset(cfg), LoaderSettings.from_config(cfg), cfg.TRAIN_BATCH_SIZE)
    return {k: v for k, v in next(iter(loader)).items() if k != "meta"}


def planted_encoder_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Gradients earlier steps left on the encoder (the authors never zero them)."""
    gen = torch.Generator().manual_seed(3)
    return {n: 0.05 * torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()
            if n.startswith("feature_extractor.")}


def authors_reference_step(model, batch, planted, cfg):
    """(last frame's mean loss, updated parameters by name, clip coefficient), by the authors' rules."""
    torch.manual_seed(11)  # the dropout draws of the step under test
    outputs = model(batch["ref_img"], batch["prev_img"], batch["curr_img"])
    frames, samples = len(outputs), batch["ref_img"].shape[0]
    target = batch["curr_label"][-1][:, 0].long()
    # One sample per GPU, DDP averaging over the two: the mean of per-sample OHEM losses.
    last = torch.stack([ohem_cross_entropy(outputs[-1][j:j + 1], target[j:j + 1]) for j in range(samples)]).mean()
    params = dict(model.named_parameters())
    for name, grad in planted.items():
        params[name].grad = grad.clone()
    (2 * last / frames).backward()
    grads = [p.grad for p in params.values() if p.grad is not None]
    total = torch.sqrt(sum(g.double().pow(2).sum() for g in grads)).item()
    coefficient = min(1.0, cfg.TRAIN_CLIP_GRAD_NORM / (total + 1e-6))
    lr = cfg.TRAIN_LR * STEP / cfg.TRAIN_WARM_UP_STEPS
    updated = {}
    with torch.no_grad():
        for name, p in params.items():
            if name.startswith("feature_extractor.") or not p.requires_grad or p.grad is None:
                continue
            d = p.grad * coefficient + cfg.TRAIN_WEIGHT_DECAY * p     # weight decay
            d = d + cfg.TRAIN_MOMENTUM * d                              # Nesterov, first step: buffer = d
            updated[name] = p - lr * d
    return last.item(), updated, coefficient


def run_step(cfg, batch, planted):
    parts = build_trainer(cfg, CPU, LOG)
    params = dict(parts.lsta.named_parameters())
    for name, grad in planted.items():
        params[name].grad = grad.clone()
    parts.model.train()
    torch.manual_seed(11)
    result = parts.step(batch, STEP)
    return parts, result


def test_stage1_preset_is_the_authors_step_and_clean_differs(toy_root, tmp_path):
    cfg = preset_cfg("stage1", toy_root, tmp_path / "a")
    assert cfg.TRAIN_LOSS_LAST_FRAME_ONLY and cfg.TRAIN_AUTHORS_ENCODER_GRAD
    batch = fixed_batch(cfg)
    reference_model = build_trainer(cfg, CPU, LOG).lsta  # same seed → same initial weights as run_step's
    planted = planted_encoder_grads(reference_model)
    before = copy.deepcopy(reference_model.state_dict())
    reference_model.train()
    loss, expected, coefficient = authors_reference_step(reference_model, batch, planted, cfg)
    assert coefficient < 0.5  # the planted encoder gradients dominate the clip norm

    parts, result = run_step(cfg, batch, planted)
    assert result.losses[-1] == pytest.approx(loss, rel=1e-5)
    assert result.clip_coefficient(cfg.TRAIN_CLIP_GRAD_NORM) == pytest.approx(coefficient, rel=1e-4)
    got = dict(parts.lsta.named_parameters())
    assert set(expected) == {n for n, p in got.items() if any(p is q for q in parts.optimizer.param_groups[0]["params"])}
    for name, value in expected.items():  # the updates agree to the float32 rounding of the weights
        want = value - before[name]
        torch.testing.assert_close(got[name].detach() - before[name], want, rtol=1e-3,
                                   atol=1e-3 * want.abs().max().item() + 4 * torch.finfo(torch.float32).eps * before[name].abs().max().item())
    # The encoder is not stepped, and its gradient is the planted one plus this step's, clipped.
    encoder = [n for n in got if n.startswith("feature_extractor.")]
    assert all(torch.equal(got[n].detach(), before[n]) for n in encoder)
    name = "feature_extractor.backbone.conv1.weight"
    torch.testing.assert_close(got[name].grad, dict(reference_model.named_parameters())[name].grad * coefficient,
                               rtol=1e-4, atol=1e-9)

    clean = preset_cfg("stage1_clean", toy_root, tmp_path / "c")
    assert not (clean.TRAIN_LOSS_LAST_FRAME_ONLY or clean.TRAIN_AUTHORS_ENCODER_GRAD)
    clean_parts, clean_result = run_step(clean, batch, {})
    # The clean step clips over the head only and descends the mean of every frame's loss.
    assert clean_result.losses == pytest.approx(result.losses, rel=1e-5)  # same forward, same draws
    assert clean_result.clip_coefficient(clean.TRAIN_CLIP_GRAD_NORM) > 2 * coefficient
    head = dict(clean_parts.lsta.named_parameters())
    assert not torch.allclose(head["pred.weight"] - before["pred.weight"], expected["pred.weight"] - before["pred.weight"],
                              rtol=0.1, atol=0)
    assert all(p.grad is None for n, p in head.items() if n.startswith("feature_extractor."))


def test_stage2_presets_pair_with_their_stage1():
    for suffix, authors in (("", True), ("_clean", False)):
        one, two = Config(), Config()
        one.apply_preset("stage1" + suffix)
        two.apply_preset("stage2" + suffix)
        assert two.PRETRAIN_MODEL.rstrip("/").endswith(f"{one.EXP_NAME}/ckpt")
        assert one.TRAIN_AUTHORS_ENCODER_GRAD is two.TRAIN_AUTHORS_ENCODER_GRAD is authors
        assert one.TRAIN_LOSS_LAST_FRAME_ONLY is two.TRAIN_LOSS_LAST_FRAME_ONLY is authors


def _update(cfg, batch, planted, amp):
    """The head's update vector and the clip coefficient of one step in eval mode (no dropout draws)."""
    cfg.set("TRAIN_AMP", amp)
    parts = build_trainer(cfg, CPU, LOG)
    params = dict(parts.lsta.named_parameters())
    for name, grad in planted.items():
        params[name].grad = grad.clone()
    head = [n for n, p in params.items() if not n.startswith("feature_extractor.") and p.requires_grad]
    before = torch.cat([params[n].detach().flatten().clone() for n in head])
    parts.model.eval()
    result = parts.step(batch, STEP)
    assert result is not None
    after = torch.cat([params[n].detach().flatten() for n in head])
    return after - before, result.clip_coefficient(cfg.TRAIN_CLIP_GRAD_NORM)


@pytest.mark.parametrize("preset", ["stage1", "stage1_clean"])
def test_mixed_precision_steps_follow_the_float32_step(toy_root, tmp_path, preset):
    # fp16 scales the loss: in the authors' mode the encoder's gradients (outside the optimiser)
    # must be unscaled too, or they swamp the clip norm and the head barely moves.
    cfg = preset_cfg(preset, toy_root, tmp_path)
    batch = fixed_batch(cfg)
    planted = planted_encoder_grads(build_trainer(cfg, CPU, LOG).lsta) if cfg.TRAIN_AUTHORS_ENCODER_GRAD else {}
    reference, ref_coefficient = _update(cfg, batch, planted, "off")
    for amp in ("bf16", "fp16"):
        update, coefficient = _update(cfg, batch, planted, amp)
        cosine = torch.nn.functional.cosine_similarity(update, reference, dim=0).item()
        assert cosine > 0.98, (amp, cosine)
        assert update.norm() / reference.norm() == pytest.approx(1.0, abs=0.05), amp
        assert coefficient == pytest.approx(ref_coefficient, rel=0.05), amp
