"""Building a Trainer from the config: the model (initialised as PRETRAIN_MODEL says), the authors' optimiser,
the scaler, the losses. Stepping is the Trainer's (training/trainer.py), as detectron2 separates
DefaultTrainer's building from SimpleTrainer.run_step.

    trainer = build_trainer(cfg, world, log)                      # fresh, or pretrained=PATH (stage 2)
    trainer = build_trainer(cfg, world, log, encoder_parts=[...]) # to resume: the parts the run trains
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch

from config import Config
from networks.checkpoints import read_lsta
from networks.lsta import LSTA, ModelArgs
from networks.weights import PRETRAINED_WHAT, load_pretrained, model_args_for
from training.losses import build_losses
from training.schedule import Schedule
from training.trainer import StepSettings, Trainer, TrainerParts
from utils.checkpoint import CheckpointError, LoadReport
from utils.distributed import DistInfo
from utils.errors import SettingError
from utils.rng import seed_everything


def build_trainer(cfg: Config, world: DistInfo, log: logging.Logger, pretrained: str | None = None,
                  encoder_parts: Sequence[str] = ()) -> Trainer:
    """A Trainer for `cfg` on this process: `pretrained` initialises the model (an LSTA checkpoint or an
    encoder file), `encoder_parts` are encoder parts trained although the encoder is frozen."""
    if cfg.TRAIN_BATCH_SIZE % world.world_size:
        raise SettingError(f"TRAIN_BATCH_SIZE {cfg.TRAIN_BATCH_SIZE} is not divisible by the "
                           f"{world.world_size} processes")
    settings = StepSettings.from_config(cfg, world.world_size)
    if settings.amp != "off" and world.device.type != "cuda":
        log.warning(f"TRAIN_AMP {settings.amp} on {world.device}: autocast works there but is slower than float32")
    seed_everything(cfg.TRAIN_SEED)  # the same initial weights on every rank
    model, parts = build_model(cfg, log, pretrained, encoder_parts)
    model = model.to(world.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # The authors' optimiser: every trainable parameter outside the encoder (LTM.w is fixed),
    # one lr and weight decay for all; the encoder joins with MODEL_TRAIN_ENCODER, and those of
    # its parts no pretrained file initialised with PRETRAIN_PARTIAL_ENCODER "train".
    trained = tuple(f"feature_extractor.{name}." for name in parts)
    trainable = [p for n, p in model.named_parameters() if p.requires_grad and (
        cfg.MODEL_TRAIN_ENCODER or not n.startswith("feature_extractor.") or n.startswith(trained))]
    optimizer = torch.optim.SGD(trainable, lr=cfg.TRAIN_LR, momentum=cfg.TRAIN_MOMENTUM,
                                nesterov=True, weight_decay=cfg.TRAIN_WEIGHT_DECAY)
    # TRAIN_AUTHORS_ENCODER_GRAD: the frozen encoder is back-propagated through, its gradients are
    # never zeroed (zero_grad only sees the optimiser's parameters) and they count in the clip norm.
    clip_params = list(model.parameters()) if cfg.TRAIN_AUTHORS_ENCODER_GRAD else trainable
    in_optimizer = {id(p) for p in trainable}
    scaler = torch.amp.GradScaler(world.device.type, enabled=settings.amp == "fp16")
    losses = build_losses(cfg, world.device)
    return Trainer(TrainerParts(model, optimizer, scaler, losses, clip_params,
                                [p for p in clip_params if id(p) not in in_optimizer], parts),
                   settings, Schedule.from_config(cfg), world, log)


def build_model(cfg: Config, log: logging.Logger, pretrained: str | None,
                encoder_parts: Sequence[str]) -> tuple[LSTA, list[str]]:
    """The model, initialised from `pretrained` when given, and the encoder parts it trains (sorted)."""
    # An LSTA checkpoint to start from (stage 2) records its architecture: the model is built so.
    source = read_lsta(pretrained, PRETRAINED_WHAT) if pretrained else None  # read once, used twice
    args = model_args_for(source.model_args, cfg, pretrained) if source else ModelArgs.from_config(cfg)
    model = LSTA(args, cfg.MODEL_TRAIN_ENCODER, encoder_grad=cfg.TRAIN_AUTHORS_ENCODER_GRAD)
    parts = list(encoder_parts)
    if source:
        report = load_pretrained(model, pretrained, source.content)
        parts += _uninitialised_encoder_parts(cfg, report, log)
    model.train_encoder_parts(parts)
    return model, sorted(set(parts))


def _uninitialised_encoder_parts(cfg: Config, report: LoadReport, log: logging.Logger) -> list[str]:
    """Encoder parts (aspp, decoder) a pretrained file left at random: to train, or a one-line error."""
    parts = sorted({n.split(".")[1] for n in report.missing
                    if n.startswith("feature_extractor.") and not n.endswith("num_batches_tracked")})
    if not parts or cfg.MODEL_TRAIN_ENCODER:  # a trained encoder learns them anyway
        return []
    names = ", ".join(f"feature_extractor.{p}" for p in parts)
    if cfg.PRETRAIN_PARTIAL_ENCODER == "error":
        raise CheckpointError(f"PRETRAIN_MODEL {report.path} ({report.what}) leaves {names} uninitialised, and the "
                              f"encoder is frozen: they would stay random; use CFBI's resnet101-deeplabv3p.pth.tar "
                              f"(the file the authors' config names) or an LSTA checkpoint, or pass --opts "
                              f"PRETRAIN_PARTIAL_ENCODER train to train them")
    log.warning(f"PRETRAIN_MODEL {report.path} ({report.what}) leaves {names} uninitialised: they are trained "
                f"(PRETRAIN_PARTIAL_ENCODER train); the rest of the encoder stays frozen")
    return parts
