"""The Trainer steps: it owns the model, optimiser, scaler and losses that training/build.py made for it.

    trainer = build_trainer(cfg, world, log)           # training/build.py; or with pretrained=PATH
    result = trainer.step(batch, step)                 # one update; None when not finite
    trainer.run(batches, start_step, hooks)            # a plain loop, hooks for everything else
    state = trainer.training_state()                   # optimiser, scaler, RNG: networks.checkpoints saves it
    start_step, rng = trainer.load_state_dict(read_training(path))

Every setting a step needs is a field of StepSettings; the Trainer reads no config. The loop is
in `run`; logging, TensorBoard, checkpoints and stop requests are hooks (training/hooks.py).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from config import Config
from networks.checkpoints import LstaCheckpoint
from networks.lsta import LSTA
from training.losses import LossComputer, batch_iou
from training.schedule import Schedule
from utils.checkpoint import CheckpointError
from utils.distributed import DistInfo, all_true, gather_objects
from utils.errors import UserError
from utils.rng import rng_state
from utils.timing import now

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DivergedError(UserError):
    """Too many non-finite losses in a row."""


@dataclass
class StepResult:
    """Loss and IoU per current frame, averaged over this process's samples; the clipped gradient norm."""
    losses: list[float]
    ious: list[float]
    grad_norm: float = 0.0   # total norm of the clipped gradients, before clipping

    def clip_coefficient(self, max_norm: float) -> float:
        """The factor clipping scaled this step's gradients by (1: not clipped)."""
        return min(1.0, max_norm / (self.grad_norm + 1e-6))


@dataclass
class StepSettings:
    """What a step does, resolved from the config once."""
    last_frame_only: bool         # TRAIN_LOSS_LAST_FRAME_ONLY: the authors' objective
    clip_norm: float              # TRAIN_CLIP_GRAD_NORM
    channels_last: bool           # TRAIN_CHANNELS_LAST
    max_nonfinite: int            # TRAIN_MAX_NONFINITE
    total_steps: int              # TRAIN_TOTAL_STEPS (steps 0..total inclusive)
    global_batch: int             # TRAIN_BATCH_SIZE
    rank_batch: int               # this process's share of the batch
    pass_size: int                # samples per forward/backward pass (TRAIN_MAX_BATCH_PER_PASS)
    amp: str                      # TRAIN_AMP: off | bf16 | fp16

    @classmethod
    def from_config(cls, cfg: Config, world_size: int) -> "StepSettings":
        """The step's settings from `cfg`, for `world_size` processes."""
        rank_batch = cfg.TRAIN_BATCH_SIZE // world_size
        return cls(cfg.TRAIN_LOSS_LAST_FRAME_ONLY, cfg.TRAIN_CLIP_GRAD_NORM, cfg.TRAIN_CHANNELS_LAST,
                   cfg.TRAIN_MAX_NONFINITE, cfg.TRAIN_TOTAL_STEPS, cfg.TRAIN_BATCH_SIZE, rank_batch,
                   min(rank_batch, cfg.TRAIN_MAX_BATCH_PER_PASS or rank_batch), cfg.TRAIN_AMP)


@dataclass
class TrainerParts:
    """What a Trainer works with, made by training/build.py."""
    model: LSTA
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    losses: LossComputer
    clip_params: list[nn.Parameter]          # clipped together (the authors': every parameter with a gradient)
    outside_optimizer: list[nn.Parameter]    # clipped but not optimised: the authors' frozen encoder
    trained_encoder_parts: list[str]         # encoder parts trained although the encoder is frozen


@dataclass
class LoopState:
    """Where the loop is, for hooks: the step just done and its figures."""
    step: int = 0
    result: StepResult | None = None
    step_time: float = 0.0
    data_time: float = 0.0
    skipped_bad: int = 0
    nonfinite_in_row: int = 0
    nonfinite_steps: int = 0
    stop_reason: str | None = None  # set by a hook to end the loop after this step


class HookBase:
    """A hook of the training loop; the Trainer calls these in order around the loop and each step."""

    def before_train(self, trainer: "Trainer", state: LoopState) -> None:
        """Once, before the first step."""

    def after_step(self, trainer: "Trainer", state: LoopState) -> None:
        """After every step (its result may be None: a non-finite step that was skipped)."""

    def after_train(self, trainer: "Trainer", state: LoopState) -> None:
        """Once, after the last step (not after an error)."""


class Trainer:
    """Model, optimiser, scaler and losses of one process; `step`, `run`, `training_state`."""

    def __init__(self, parts: TrainerParts, settings: StepSettings, schedule: Schedule, world: DistInfo,
                 log: logging.Logger) -> None:
        self.world, self.device, self.log = world, world.device, log
        self.settings, self.schedule = settings, schedule
        self.rank_batch, self.pass_size, self.amp = settings.rank_batch, settings.pass_size, settings.amp
        self.model: nn.Module = parts.model  # LSTA, or DistributedDataParallel around it (wrap_distributed)
        self.optimizer, self.scaler, self.losses = parts.optimizer, parts.scaler, parts.losses
        self.clip_params, self.outside_optimizer = parts.clip_params, parts.outside_optimizer
        self.trained_encoder_parts = parts.trained_encoder_parts

    @property
    def lsta(self) -> LSTA:
        """The model itself, without a DDP wrapper."""
        return self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model

    def wrap_distributed(self) -> None:
        """DistributedDataParallel (and SyncBatchNorm on GPU) for several processes; a no-op for one."""
        if self.world.world_size == 1:
            return
        model = self.model
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            self.log.info("CPU processes: the refine head's BN keeps per-rank statistics "
                          "(SyncBatchNorm needs CUDA); DDP broadcasts rank 0's buffers")
        self.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ---- one step ----
    def step(self, batch: dict, step: int) -> StepResult | None:
        """Forward, loss, backward and update on this process's batch; None when the loss was not finite.

        The model's mode is the caller's (the loop trains in train mode, as the authors did). The
        loss is the mean over the global batch of per-sample losses, so it does not depend on how
        the batch is split over processes (DDP averages) or passes (accumulated shares).
        """
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.learning_rate(step)
        self.optimizer.zero_grad(set_to_none=True)
        # Gradients that are clipped but not the optimiser's (the authors' never-zeroed encoder
        # gradients) are set aside while fp16 backpropagates scaled values, then unscaled and added back.
        held = self._hold_outside_grads() if self.scaler.is_enabled() else None
        frames = len(batch["curr_img"])
        losses, ious = [0.0] * frames, [0.0] * frames
        starts = list(range(0, self.rank_batch, self.pass_size))
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        for index, start in enumerate(starts):
            part = {k: self._slice(v, start, start + self.pass_size) for k, v in batch.items() if k != "meta"}
            share = part["ref_img"].shape[0] / self.rank_batch
            sync = index == len(starts) - 1 or not ddp
            with contextlib.nullcontext() if sync else self.model.no_sync():
                per_frame, pass_ious = self.frame_losses(part)  # each (samples,)
                if self.settings.last_frame_only:
                    per_sample = 2 * per_frame[-1] / frames  # the authors' objective: the last frame only
                else:
                    per_sample = torch.stack(per_frame).mean(0)
                loss = per_sample.sum() / self.rank_batch
                if not all_true(bool(torch.isfinite(loss)), self.world):
                    return None
                self.scaler.scale(loss).backward()
            for i, frame_loss in enumerate(per_frame):
                losses[i] += frame_loss.detach().sum().item() / self.rank_batch
                ious[i] += pass_ious[i] * share
        self.scaler.unscale_(self.optimizer)
        if held is not None and not self._unscale_outside_grads(held):
            return None
        grad_norm = nn.utils.clip_grad_norm_(self.clip_params, self.settings.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return StepResult(losses, ious, float(grad_norm))

    def frame_losses(self, part: dict) -> tuple[list[torch.Tensor], list[float]]:
        """Per current frame: the per-sample loss (samples,), the named losses summed, and one pass's batch IoU."""
        dtype = AMP_DTYPES.get(self.amp)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            outputs = self.model(part["ref_img"], part["prev_img"], part["curr_img"])
        losses = self.losses.total(self.losses(outputs, part))
        ious = [batch_iou(logits.detach(), part["curr_label"][i][:, 0].long()) for i, logits in enumerate(outputs)]
        return losses, ious

    def _slice(self, value, start: int, end: int):
        """Batch entries start:end of a tensor or list of tensors, on the device."""
        if isinstance(value, list):
            return [self._slice(v, start, end) for v in value]
        value = value[start:end].to(self.device, non_blocking=True)
        if self.settings.channels_last and value.dim() == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        return value

    def _hold_outside_grads(self) -> dict[nn.Parameter, torch.Tensor | None]:
        held = {p: p.grad for p in self.outside_optimizer}
        for p in held:
            p.grad = None
        return held

    def _unscale_outside_grads(self, held: dict[nn.Parameter, torch.Tensor | None]) -> bool:
        """Unscale this step's gradients of `held`'s parameters and add the held ones back.

        False (the step is skipped and the loss scale lowered, as GradScaler does for its own
        parameters) when one of them overflowed.
        """
        inverse = 1.0 / self.scaler.get_scale()
        new = {p: p.grad for p in held}
        if any(g is not None and not torch.isfinite(g).all() for g in new.values()):
            for p, old in held.items():
                p.grad = old
            self.scaler.update(self.scaler.get_scale() * self.scaler.get_backoff_factor())
            return False
        for p, old in held.items():
            g = new[p]
            if g is not None:
                g.mul_(inverse)
            p.grad = g if old is None else (old if g is None else old.add_(g))
        return True

    # ---- the checkpoint's training state ----
    def training_state(self) -> dict[str, Any] | None:
        """What an exact resume needs besides the weights, on rank 0 (None elsewhere); every rank must call it.

        Optimiser, scaler, every rank's RNG and the gradients zero_grad never clears (the authors'
        mode), as networks.checkpoints.save_lsta's `training`.
        """
        states = gather_objects(rng_state(), self.world)
        if not self.world.is_main:
            return None
        outside = {id(p) for p in self.outside_optimizer}
        accumulated = {n: p.grad.detach().clone() for n, p in self.lsta.named_parameters()
                       if p.grad is not None and id(p) in outside}
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": states,
                "accumulated_grads": accumulated}

    def load_state_dict(self, ckpt: LstaCheckpoint) -> tuple[int, dict | None]:
        """Restore a training checkpoint; (first step to run, this rank's RNG state or None)."""
        path = ckpt.path
        try:
            self.lsta.load_state_dict(ckpt.state_dict())
            self.optimizer.load_state_dict(ckpt.training_state("optimizer"))
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path} does not fit this model and optimiser ({str(err).splitlines()[0]}); "
                                  f"train under another --exp_name, or pass --restart") from None
        if ckpt.training_state("scaler"):
            self.scaler.load_state_dict(ckpt.training_state("scaler"))
        params = dict(self.lsta.named_parameters())
        for name, grad in ckpt.training_state("accumulated_grads", {}).items():
            if name not in params or params[name].shape != grad.shape:
                raise CheckpointError(f"{path}: its saved encoder gradients name {name!r}, which this model "
                                      f"{'lacks' if name not in params else 'has in another shape'}; the file does "
                                      f"not belong to this run: train under another --exp_name, or pass --restart")
            params[name].grad = grad.to(self.device)
        states = ckpt.training_state("rng") or []
        rank = self.world.rank
        self.log.info(f"resumed from {path} (step {ckpt.step})")
        return ckpt.step + 1, states[rank] if rank < len(states) else None

    # ---- the loop ----
    def run(self, batches: Iterator[dict], start_step: int, hooks: Sequence[HookBase]) -> LoopState:
        """Steps start_step..TRAIN_TOTAL_STEPS, or until a hook sets `stop_reason`; the last LoopState."""
        state = LoopState(step=start_step - 1)
        for hook in hooks:
            hook.before_train(self, state)
        # The whole model in train mode, the frozen encoder too: ASPP's dropout is active, as in the
        # authors' training (frozen BN layers do not depend on the mode).
        self.model.train()
        step = start_step
        while step <= self.settings.total_steps:
            start = now(self.device)
            batch = next(batches)
            data_time = now(self.device) - start
            result = self.step(batch, step)
            state.step, state.result = step, result
            state.step_time, state.data_time = now(self.device) - start, data_time
            state.skipped_bad = int(batch["meta"]["skipped_bad"].sum()) if result is not None else 0
            self._count_nonfinite(state)
            for hook in hooks:
                hook.after_step(self, state)
            if state.stop_reason is not None:
                break
            step += 1
        for hook in hooks:
            hook.after_train(self, state)
        return state

    def _count_nonfinite(self, state: LoopState) -> None:
        if state.result is not None:
            state.nonfinite_in_row = 0
            return
        state.nonfinite_in_row += 1
        state.nonfinite_steps += 1
        self.log.warning(f"step {state.step}: non-finite loss or gradient, update skipped "
                         f"({state.nonfinite_in_row} in a row, {state.nonfinite_steps} in all)")
        if state.nonfinite_in_row >= self.settings.max_nonfinite:
            raise DivergedError(f"{state.nonfinite_in_row} non-finite losses in a row at step {state.step}; "
                                f"lower TRAIN_LR or check the data")


@dataclass
class RunSummary:
    """summary.json: how a run stands and ended, for tools and tests (never parse the log)."""
    exp_name: str
    total_steps: int
    world_size: int
    device: str
    status: str = "starting"          # starting | running | completed | stopped | failed
    exit_code: int | None = None
    precision: str = "float32"
    start_step: int = 0
    last_step: int = -1
    last_checkpoint: str | None = None
    error: str | None = None
    stop_reason: str | None = None
    nonfinite_steps: int = 0
    skipped_bad_samples: int = 0
    changed_settings: dict[str, list] = field(default_factory=dict)  # resumed: key → [saved, now]
    ranks_in_sync: bool | None = None
    wall_seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)   # the last log line's figures
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The summary as written to summary.json (the last figures at the top level)."""
        data = {k: v for k, v in vars(self).items() if k != "figures"}
        return {**self.figures, **data}
