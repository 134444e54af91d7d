"""Train LSTA: one process on CPU or one GPU, or many under torchrun.

    python train.py --preset stage1 [--exp_name NAME] [--opts KEY VALUE ...]
    torchrun --nproc_per_node 4 train.py --preset stage2
    bash train.sh              # both stages of the authors' recipe

Steps run 0..TRAIN_TOTAL_STEPS inclusive. The run folder log/<exp>/ holds the checkpoints
(ckpt/save_step_<N>.pth, written atomically, everything an exact resume needs), train.log,
config.json, run.json (the settings its checkpoints need, where it started from) and
summary.json (step, losses, timings, how it ended). Rerunning the same command resumes.

Exit status: 0 when the run has reached its final step; 3 when it stopped before (SIGINT,
SIGTERM, --stop_step) after saving a checkpoint to resume from; 1 on an error, reported as one
line on the console and in train.log.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from tqdm import tqdm

from config import FINGERPRINT_KEYS, Config
from dataloaders.data_check import check_training_data
from dataloaders.loader import build_train_loader
from dataloaders.train_datasets import build_train_dataset
from networks.lsta import LSTA
from utils.checkpoint import CheckpointError, LoadReport, load_pretrained
from utils.checkpointer import Checkpointer, checkpoints_newest_first, read_training_checkpoint
from utils.cli import add_config_args, load_config, save_run_config
from utils.distillation import StmTeacher
from utils.distributed import DistInfo, all_true, any_true, cleanup, gather_objects, init_distributed, ranks_in_sync
from utils.errors import SettingError, UserError, out_of_memory_message, user_message
from utils.files import file_digest
from utils.logger import setup_logger
from utils.losses import batch_iou, distillation_kl, ohem_cross_entropy
from utils.precision import set_float32_precision
from utils.rng import rng_state, seed_everything, set_rng_state
from utils.run_folder import RunFolder, RunFolderError
from utils.schedule import learning_rate
from utils.stop_signals import StopRequest
from utils.timing import now, peak_memory_mb

EXIT_STOPPED = 3
# Errors a user can fix (settings, files, data, another run, a full or read-only disk): one line,
# no traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, OSError)
OUT_OF_MEMORY_ADVICE = "lower TRAIN_MAX_BATCH_PER_PASS (gradient accumulation), DATA_RANDOMCROP or TRAIN_BATCH_SIZE"


class DivergedError(UserError):
    """Too many non-finite losses in a row."""


@dataclass
class StepParts:
    """What a training step works with, built once from the config."""
    model: nn.Module                 # LSTA, or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    teacher: StmTeacher | None
    clip_params: list[nn.Parameter]  # the parameters whose gradients enter the clipping norm
    device: torch.device
    amp: str                         # off | bf16 | fp16
    rank_batch: int                  # this process's share of TRAIN_BATCH_SIZE
    pass_size: int                   # samples per forward/backward pass (gradient accumulation)
    world: DistInfo
    trained_encoder_parts: list[str] = field(default_factory=list)  # encoder submodules trained with the head

    @property
    def lsta(self) -> LSTA:
        """The model itself, without a DDP wrapper."""
        return self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model


@dataclass
class StepResult:
    """Loss and IoU per current frame, averaged over this process's samples; the clipped gradient norm."""
    losses: list[float]
    ious: list[float]
    grad_norm: float = 0.0   # total norm of the clipped gradients, before clipping

    def clip_coefficient(self, max_norm: float) -> float:
        """The factor clipping scaled this step's gradients by (1: not clipped)."""
        return min(1.0, max_norm / (self.grad_norm + 1e-6))


# ---- build ----

def build_parts(cfg: Config, info: DistInfo, log: logging.Logger, pretrained: str | None = None,
                encoder_parts: Sequence[str] = ()) -> StepParts:
    """Model, optimiser, scaler and teacher for `cfg` on this process's device.

    With `pretrained`, the model is first initialised from that file, and encoder parts it leaves
    uninitialised are handled as PRETRAIN_PARTIAL_ENCODER says; `encoder_parts` are trained in any
    case (a resumed run's record of them).
    """
    if cfg.TRAIN_BATCH_SIZE % info.world_size:
        raise SettingError(f"TRAIN_BATCH_SIZE {cfg.TRAIN_BATCH_SIZE} is not divisible by the "
                         f"{info.world_size} processes")
    rank_batch = cfg.TRAIN_BATCH_SIZE // info.world_size
    amp = cfg.TRAIN_AMP
    if amp != "off" and info.device.type != "cuda":
        log.warning(f"TRAIN_AMP {amp} on {info.device}: autocast works there but is slower than float32")
    seed_everything(cfg.TRAIN_SEED)  # the same initial weights on every rank
    model = LSTA.from_config(cfg, encoder_grad=cfg.TRAIN_AUTHORS_ENCODER_GRAD)
    if pretrained:
        report = load_pretrained(model, pretrained)
        encoder_parts = list(encoder_parts) + uninitialised_encoder_parts(cfg, report, log)
    model.train_encoder_parts(list(encoder_parts))
    model = model.to(info.device)
    if cfg.TRAIN_CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    # The authors' optimiser: every trainable parameter outside the encoder (LTM.w is fixed),
    # one lr and weight decay for all; the encoder joins with MODEL_TRAIN_ENCODER, and those of
    # its parts no pretrained file initialised with PRETRAIN_PARTIAL_ENCODER "train".
    trained = tuple(f"feature_extractor.{name}." for name in encoder_parts)
    trainable = [p for n, p in model.named_parameters() if p.requires_grad and (
        cfg.MODEL_TRAIN_ENCODER or not n.startswith("feature_extractor.") or n.startswith(trained))]
    optimizer = torch.optim.SGD(trainable, lr=cfg.TRAIN_LR, momentum=cfg.TRAIN_MOMENTUM,
                                nesterov=True, weight_decay=cfg.TRAIN_WEIGHT_DECAY)
    # TRAIN_AUTHORS_ENCODER_GRAD: the frozen encoder is back-propagated through, its gradients are
    # never zeroed (zero_grad only sees the optimiser's parameters) and they count in the clip norm.
    clip_params = list(model.parameters()) if cfg.TRAIN_AUTHORS_ENCODER_GRAD else trainable
    teacher = StmTeacher(cfg, info.device) if cfg.MODEL_DISTILLATION else None
    return StepParts(model, optimizer, torch.amp.GradScaler(info.device.type, enabled=amp == "fp16"), teacher, clip_params,
                     info.device, amp, rank_batch, min(rank_batch, cfg.TRAIN_MAX_BATCH_PER_PASS or rank_batch), info,
                     sorted(set(encoder_parts)))


def uninitialised_encoder_parts(cfg: Config, report: LoadReport, log: logging.Logger) -> list[str]:
    """Encoder parts (aspp, decoder) a pretrained file left at random: to train, or a one-line error."""
    parts = sorted({n.split(".")[1] for n in report.missing
                    if n.startswith("feature_extractor.") and not n.endswith("num_batches_tracked")})
    if not parts or cfg.MODEL_TRAIN_ENCODER:  # a trained encoder learns them anyway
        return []
    names = ", ".join(f"feature_extractor.{p}" for p in parts)
    if cfg.PRETRAIN_PARTIAL_ENCODER == "error":
        raise CheckpointError(f"PRETRAIN_MODEL {report.path} ({report.what}) leaves {names} uninitialised, and the "
                              f"encoder is frozen: they would stay random; use CFBI's resnet101-deeplabv3p.pth.tar "
                              f"(the authors' recipe) or an LSTA checkpoint, or pass --opts PRETRAIN_PARTIAL_ENCODER "
                              f"train to train them")
    log.warning(f"PRETRAIN_MODEL {report.path} ({report.what}) leaves {names} uninitialised: they are trained "
                f"(PRETRAIN_PARTIAL_ENCODER train); the rest of the encoder stays frozen")
    return parts


def wrap_distributed(parts: StepParts, log: logging.Logger) -> None:
    """DistributedDataParallel (and SyncBatchNorm on GPU) for several processes; a no-op for one."""
    if parts.world.world_size == 1:
        return
    model = parts.model
    if parts.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        log.info("CPU processes: the refine head's BN keeps per-rank statistics "
                 "(SyncBatchNorm needs CUDA); DDP broadcasts rank 0's buffers")
    parts.model = nn.parallel.DistributedDataParallel(
        model, device_ids=[parts.device.index] if parts.device.type == "cuda" else None)


def fingerprint(cfg: Config) -> dict[str, Any]:
    """The settings a run folder's checkpoints depend on (config.FINGERPRINT_KEYS)."""
    return {key: cfg.to_dict()[key] for key in FINGERPRINT_KEYS}


# ---- initialisation and resume ----

def pretrained_source(path: str) -> dict[str, Any]:
    """Where PRETRAIN_MODEL initialises from: a file, or the newest checkpoint of a finished run's ckpt folder."""
    step = None
    if os.path.isdir(path):
        for _, newest in checkpoints_newest_first(path):
            with contextlib.suppress(CheckpointError):
                ckpt = read_training_checkpoint(newest, mmap=True)
                break
        else:
            raise CheckpointError(f"PRETRAIN_MODEL folder {path} holds no loadable save_step_*.pth; "
                                  f"run the earlier stage first")
        step, total = ckpt["step"], ckpt.get("config", {}).get("TRAIN_TOTAL_STEPS", ckpt["step"])
        if step < total:
            raise CheckpointError(f"PRETRAIN_MODEL {path}: that run is unfinished (it reached step {step} of "
                                  f"{total}, {newest}); finish it first by rerunning its command")
        path = newest
    elif not os.path.isfile(path):
        raise CheckpointError(f"PRETRAIN_MODEL not found: {path}; it initialises the encoder (see "
                              f"pretrained/README.md); to start from random weights pass --opts PRETRAIN False")
    return {"path": os.path.abspath(path), "step": step, "sha256": file_digest(path)}


def check_source_unchanged(cfg: Config, folder: RunFolder, log: logging.Logger) -> None:
    """Refuse to go on when what this run was initialised from (e.g. stage 1) has changed since."""
    recorded = folder.read_record().get("initialised_from")
    if not (recorded and cfg.PRETRAIN and checkpoints_newest_first(cfg.DIR_CKPT)):
        return
    try:
        current = pretrained_source(cfg.PRETRAIN_MODEL)
    except CheckpointError as err:
        log.warning(f"cannot check what this run started from: {err}")
        return
    if (current["path"], current["sha256"]) != (recorded["path"], recorded["sha256"]):
        raise RunFolderError(f"{cfg.PRETRAIN_MODEL} changed since this run started from it (then {recorded['path']}"
                             f" at step {recorded['step']}, now {current['path']} at step {current['step']}); "
                             f"pass --restart to set this run aside and start again from the new one")


def resume(parts: StepParts, ckpt: dict[str, Any], path: str, log: logging.Logger) -> tuple[int, dict | None]:
    """Load a training checkpoint into `parts`; (first step, this rank's RNG state)."""
    try:
        parts.lsta.load_state_dict(ckpt["state_dict"])
        parts.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} does not fit this model and optimiser ({str(err).splitlines()[0]}); "
                              f"train under another --exp_name, or pass --restart") from None
    if ckpt.get("scaler"):
        parts.scaler.load_state_dict(ckpt["scaler"])
    params = dict(parts.lsta.named_parameters())
    for name, grad in ckpt.get("accumulated_grads", {}).items():
        if name not in params or params[name].shape != grad.shape:
            raise CheckpointError(f"{path}: its saved encoder gradients name {name!r}, which this model "
                                  f"{'lacks' if name not in params else 'has in another shape'}; the file does "
                                  f"not belong to this run: train under another --exp_name, or pass --restart")
        params[name].grad = grad.to(parts.device)
    states = ckpt.get("rng") or []
    rank = parts.world.rank
    log.info(f"resumed from {path} (step {ckpt['step']})")
    return ckpt["step"] + 1, states[rank] if rank < len(states) else None


def save(cfg: Config, parts: StepParts, checkpointer: Checkpointer, step: int) -> str | None:
    """Write save_step_<step>.pth on rank 0 with every rank's RNG state; returns its path there."""
    states = gather_objects(rng_state(), parts.world)
    if not parts.world.is_main:
        return None
    lsta = parts.lsta
    in_optimizer = {id(p) for group in parts.optimizer.param_groups for p in group["params"]}
    # Gradients that zero_grad never clears (the authors' encoder mode) are part of the state.
    accumulated = {n: p.grad.detach().clone() for n, p in lsta.named_parameters()
                   if p.grad is not None and id(p) not in in_optimizer}
    return checkpointer.save(step, {"state_dict": lsta.state_dict(), "model_args": lsta.args.to_record(),
                                    "optimizer": parts.optimizer.state_dict(),
                                    "step": step, "scaler": parts.scaler.state_dict(), "rng": states,
                                    "accumulated_grads": accumulated, "config": cfg.to_dict()})


# ---- one step ----

def train_step(parts: StepParts, batch: dict, step: int, cfg: Config) -> StepResult | None:
    """Forward, loss, backward and update on this process's batch; None when the loss was not finite.

    The model's mode is the caller's (the loop trains in train mode, as the authors did). The loss
    is the mean over the global batch of per-sample losses, so it does not depend on how
    the batch is split over processes (DDP averages) or passes (accumulated shares).
    """
    for group in parts.optimizer.param_groups:
        group["lr"] = learning_rate(step, cfg)
    parts.optimizer.zero_grad(set_to_none=True)
    # Gradients that are clipped but not the optimiser's (the authors' never-zeroed encoder
    # gradients) are set aside while fp16 backpropagates scaled values, then unscaled and added back.
    held = _hold_extra_grads(parts) if parts.scaler.is_enabled() else None
    frames = len(batch["curr_img"])
    losses, ious = [0.0] * frames, [0.0] * frames
    starts = list(range(0, parts.rank_batch, parts.pass_size))
    ddp = isinstance(parts.model, nn.parallel.DistributedDataParallel)
    for index, start in enumerate(starts):
        part = {k: _slice(v, start, start + parts.pass_size, parts.device, cfg.TRAIN_CHANNELS_LAST)
                for k, v in batch.items() if k != "meta"}
        share = part["ref_img"].shape[0] / parts.rank_batch
        sync = index == len(starts) - 1 or not ddp
        with contextlib.nullcontext() if sync else parts.model.no_sync():
            per_frame = _frame_losses(parts, part, cfg, ious, share)  # each (samples,)
            if cfg.TRAIN_LOSS_LAST_FRAME_ONLY:
                per_sample = 2 * per_frame[-1] / frames  # the authors' objective: the last frame only
            else:
                per_sample = torch.stack(per_frame).mean(0)
            loss = per_sample.sum() / parts.rank_batch
            if not all_true(bool(torch.isfinite(loss)), parts.world):
                return None
            parts.scaler.scale(loss).backward()
        for i, frame_loss in enumerate(per_frame):
            losses[i] += frame_loss.detach().sum().item() / parts.rank_batch
    parts.scaler.unscale_(parts.optimizer)
    if held is not None and not _unscale_extra_grads(parts, held):
        return None
    grad_norm = nn.utils.clip_grad_norm_(parts.clip_params, cfg.TRAIN_CLIP_GRAD_NORM)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return StepResult(losses, ious, float(grad_norm))


def _hold_extra_grads(parts: StepParts) -> dict[nn.Parameter, torch.Tensor | None]:
    """Take the gradients of clipped parameters outside the optimiser off them (fp16 mode)."""
    in_optimizer = {id(p) for group in parts.optimizer.param_groups for p in group["params"]}
    held = {p: p.grad for p in parts.clip_params if id(p) not in in_optimizer}
    for p in held:
        p.grad = None
    return held


def _unscale_extra_grads(parts: StepParts, held: dict[nn.Parameter, torch.Tensor | None]) -> bool:
    """Unscale this step's gradients of `held`'s parameters and add the held ones back.

    False (the step is skipped and the loss scale lowered, as GradScaler does for its own
    parameters) when one of them overflowed.
    """
    inverse = 1.0 / parts.scaler.get_scale()
    new = {p: p.grad for p in held}
    if any(g is not None and not torch.isfinite(g).all() for g in new.values()):
        for p, old in held.items():
            p.grad = old
        parts.scaler.update(parts.scaler.get_scale() * parts.scaler.get_backoff_factor())
        return False
    for p, old in held.items():
        g = new[p]
        if g is not None:
            g.mul_(inverse)
        p.grad = g if old is None else (old if g is None else old.add_(g))
    return True


def _frame_losses(parts: StepParts, part: dict, cfg: Config, ious: list[float], share: float) -> list[torch.Tensor]:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(parts.amp)
    with torch.autocast(parts.device.type, dtype=dtype, enabled=dtype is not None):
        outputs = parts.model(part["ref_img"], part["prev_img"], part["curr_img"])
    as_designed = cfg.TRAIN_DISTILLATION_TEACHER_AS_DESIGNED
    teacher_prev, teacher_mask = part["prev_img"], part["prev_label" if as_designed else "prev_ids"]
    losses = []
    for i, logits in enumerate(outputs):
        target = part["curr_label"][i][:, 0].long()
        loss = ohem_cross_entropy(logits, target)
        if parts.teacher is not None:
            teacher_logits = parts.teacher.logits(teacher_prev, teacher_mask, part["curr_img"][i])
            w = cfg.TRAIN_DISTILLATION_LOSS_WEIGHT
            loss = (1 - w) * loss + w * distillation_kl(logits, teacher_logits)
            teacher_prev = part["curr_img"][i]
            teacher_mask = part["curr_label" if as_designed else "curr_ids"][i]
        losses.append(loss)
        ious[i] += batch_iou(logits.detach(), target) * share
    return losses


def _slice(value, start: int, end: int, device: torch.device, channels_last: bool):
    """Batch entries start:end of a tensor or list of tensors, moved to `device`."""
    if isinstance(value, list):
        return [_slice(v, start, end, device, channels_last) for v in value]
    value = value[start:end].to(device, non_blocking=True)
    if channels_last and value.dim() == 4 and value.is_floating_point():
        value = value.contiguous(memory_format=torch.channels_last)
    return value


# ---- the run ----

class _Window:
    """Running sums between two log lines."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.reset()

    def reset(self) -> None:
        self.losses, self.ious = [0.0] * self.frames, [0.0] * self.frames
        self.count, self.step_time, self.data_time, self.skipped_bad = 0, 0.0, 0.0, 0
        self.clip_coefficient = 0.0

    def add(self, result: StepResult, step_time: float, data_time: float, skipped_bad: int, max_norm: float) -> None:
        self.clip_coefficient += result.clip_coefficient(max_norm)
        self.losses = [a + b for a, b in zip(self.losses, result.losses)]
        self.ious = [a + b for a, b in zip(self.ious, result.ious)]
        self.count += 1
        self.step_time += step_time
        self.data_time += data_time
        self.skipped_bad += skipped_bad

    def mean(self, values: list[float]) -> list[float]:
        return [v / self.count for v in values]


def train(cfg: Config, info: DistInfo, stop_step: int | None = None, restart: bool = False) -> int:
    """Run (or resume) the training of `cfg` in its run folder; returns the exit status."""
    cfg.validate()
    folder = RunFolder(cfg.DIR_RESULT, cfg.DIR_CKPT, cfg.DIR_TB_LOG)
    checkpointer = Checkpointer(cfg.DIR_CKPT, cfg.TRAIN_MAX_KEEP_CKPT)
    set_aside = previous_holder = None
    if info.is_main:
        if not restart:  # read-only: a refused run changes nothing
            folder.check_settings(fingerprint(cfg), has_checkpoints=bool(checkpoints_newest_first(cfg.DIR_CKPT)))
        previous_holder = folder.lock()
        if restart:
            set_aside = folder.set_aside()
    log = setup_logger("lsta.train", os.path.join(cfg.DIR_RESULT, "train.log"), info.is_main)
    checkpointer.log = log
    summary = {"exp_name": cfg.EXP_NAME, "status": "starting", "exit_code": None, "total_steps": cfg.TRAIN_TOTAL_STEPS,
               "world_size": info.world_size, "device": str(info.device), "started": time.time()}
    try:
        if info.is_main:
            if set_aside:
                log.info(f"--restart: the earlier run of {cfg.DIR_RESULT} was moved to {set_aside}")
            if previous_holder:
                log.info(f"took over {folder.lock_path} from a run that is no longer running ({previous_holder})")
            checkpointer.remove_stale_temporaries()
            save_run_config(cfg, os.path.join(cfg.DIR_RESULT, "config.json"))
            folder.write_record(fingerprint=fingerprint(cfg))
        code = _run(cfg, info, folder, checkpointer, log, summary, stop_step)
    except (*USER_ERRORS, torch.OutOfMemoryError) as err:
        message = (out_of_memory_message(err, OUT_OF_MEMORY_ADVICE) if isinstance(err, torch.OutOfMemoryError)
                   else user_message(err))
        log.error(f"error: {message}")
        summary.update(status="failed", exit_code=1, error=message)
        code = 1
    except Exception as err:
        log.exception(f"unexpected error: {err}")  # a bug: the traceback goes to train.log too
        summary.update(status="failed", exit_code=1, error=f"{type(err).__name__}: {err}")
        raise
    finally:
        summary["wall_seconds"] = time.time() - summary.pop("started", time.time())
        if info.is_main:
            folder.write_summary(summary)
            folder.unlock()
    return code


def _run(cfg: Config, info: DistInfo, folder: RunFolder, checkpointer: Checkpointer, log: logging.Logger,
         summary: dict, stop_step: int | None) -> int:
    stop = StopRequest(lambda name: log.warning(f"received {name}: saving a checkpoint after this step"))
    try:
        check_source_unchanged(cfg, folder, log)
        dataset = build_train_dataset(cfg)
        if info.is_main:  # before step 0, not when a sample first draws a bad file hours later
            check_training_data(dataset.videos_by_set(), os.path.join(os.path.dirname(os.path.abspath(
                cfg.DIR_RESULT)), ".data_check_cache.json"), cfg.DATA_SKIP_BAD_SAMPLES, log)
        cuda_precision = set_float32_precision(cfg.DEVICE_ALLOW_TF32)  # set on every machine: tests read it
        summary["precision"] = cuda_precision if info.device.type == "cuda" else "float32"
        found = checkpointer.load_newest() if cfg.TRAIN_AUTO_RESUME else None
        if found is not None:
            encoder_parts = folder.read_record().get("trained_encoder_parts", [])
            parts = build_parts(cfg, info, log, encoder_parts=encoder_parts)
            start_step, rng = resume(parts, *found, log)
        else:
            source = pretrained_source(cfg.PRETRAIN_MODEL) if cfg.PRETRAIN else None
            parts = build_parts(cfg, info, log, pretrained=source and source["path"])
            if info.is_main:
                folder.write_record(initialised_from=source, trained_encoder_parts=parts.trained_encoder_parts)
            start_step, rng = cfg.TRAIN_START_STEP, None
        summary.update(start_step=start_step, last_step=start_step - 1, last_checkpoint=found and found[1])
        total = cfg.TRAIN_TOTAL_STEPS
        if start_step > total:
            log.info(f"nothing to do: checkpoint step {start_step - 1} is the final step {total}")
            summary.update(status="completed", exit_code=0)
            return 0
        seed_everything(cfg.TRAIN_SEED + 1000 * info.rank + start_step)
        if rng is not None:
            set_rng_state(rng)
        wrap_distributed(parts, log)
        loader, sampler = build_train_loader(dataset, cfg, parts.rank_batch, info.rank, info.world_size)
        return _loop(cfg, parts, loader, sampler, start_step, checkpointer, folder, log, summary, stop, stop_step)
    finally:
        stop.restore()


def _loop(cfg: Config, parts: StepParts, loader, sampler, start_step: int, checkpointer: Checkpointer,
          folder: RunFolder, log: logging.Logger, summary: dict, stop: StopRequest, stop_step: int | None) -> int:
    info, total = parts.world, cfg.TRAIN_TOTAL_STEPS
    steps_per_epoch = sampler.num_samples // parts.rank_batch
    epoch, offset = divmod(start_step, steps_per_epoch)
    sampler.set_position(epoch, offset * parts.rank_batch)
    with stop.ignored_by_new_processes():
        batches = iter(loader)
    tb = _tensorboard(cfg, info, log)
    log.info(f"training steps {start_step}..{total} on {info.world_size} process(es), {info.device}, batch "
             f"{cfg.TRAIN_BATCH_SIZE} ({parts.rank_batch} per rank, passes of {parts.pass_size}), AMP {parts.amp}, "
             f"precision {summary['precision']}, "
             f"{len(parts.optimizer.param_groups[0]['params'])} trainable tensors")
    summary.update(status="running", history=[], nonfinite_steps=0, skipped_bad_samples=0)
    window = _Window(cfg.DATA_CURR_SEQ_LEN)
    # The whole model in train mode, the frozen encoder too: ASPP's dropout is active, as in the
    # authors' training (frozen BN layers do not depend on the mode).
    parts.model.train()
    bar = tqdm(total=total + 1, initial=start_step, disable=not info.is_main, dynamic_ncols=True)
    nonfinite_in_row = 0
    step = start_step
    while step <= total:
        start = now(parts.device)
        try:
            batch = next(batches)
        except StopIteration:
            epoch += 1
            sampler.set_position(epoch, 0)
            batches = iter(loader)
            batch = next(batches)
        data_time = now(parts.device) - start
        result = train_step(parts, batch, step, cfg)
        step_time = now(parts.device) - start
        if result is None:
            nonfinite_in_row += 1
            summary["nonfinite_steps"] += 1
            log.warning(f"step {step}: non-finite loss or gradient, update skipped "
                        f"({nonfinite_in_row} in a row, {summary['nonfinite_steps']} in all)")
            if nonfinite_in_row >= cfg.TRAIN_MAX_NONFINITE:
                raise DivergedError(f"{nonfinite_in_row} non-finite losses in a row at step {step}; "
                                 f"lower TRAIN_LR or check the data")
        else:
            nonfinite_in_row = 0
            skipped = int(batch["meta"]["skipped_bad"].sum())
            summary["skipped_bad_samples"] += skipped
            window.add(result, step_time, data_time, skipped, cfg.TRAIN_CLIP_GRAD_NORM)
            bar.set_postfix(loss=f"{sum(result.losses) / len(result.losses):.4f}")
            if tb is not None and step % cfg.TRAIN_TBLOG_STEP == 0:
                _tensorboard_scalars(tb, cfg, result, step, step_time)
        bar.update(1)
        summary["last_step"] = step
        if step % cfg.TRAIN_LOG_STEP == 0 or step == total:
            _log(cfg, parts, step, window, log, summary, folder)
        stopping = any_true(stop.requested, info) or (stop_step is not None and step >= stop_step)
        if step % cfg.TRAIN_SAVE_STEP == 0 or step == total or stopping:
            path = save(cfg, parts, checkpointer, step)
            if info.is_main:
                log.info(f"saved {path}")
                summary.update(last_checkpoint=path)
        if stopping:
            break
        step += 1
    bar.close()
    if tb is not None:
        tb.close()
    summary["ranks_in_sync"] = ranks_in_sync(parts.model, info)
    if step < total:
        why = f"signal {stop.signal_name}" if stop.requested else f"--stop_step {stop_step}"
        log.info(f"stopped after step {step} ({why}); rerun the same command to resume")
        summary.update(status="stopped", exit_code=EXIT_STOPPED, stop_reason=why)
        return EXIT_STOPPED
    log.info(f"done at step {total}; rank weights in sync: {summary['ranks_in_sync']}")
    summary.update(status="completed", exit_code=0)
    return 0


def _log(cfg: Config, parts: StepParts, step: int, window: _Window, log: logging.Logger, summary: dict,
         folder: RunFolder) -> None:
    if not window.count:
        return
    losses, ious = window.mean(window.losses), window.mean(window.ious)
    step_time = window.step_time / window.count
    figures = {"step": step, "lr": learning_rate(step, cfg), "losses": losses, "ious": ious,
               "seconds_per_step": step_time, "samples_per_second": cfg.TRAIN_BATCH_SIZE / step_time,
               "data_wait_fraction": window.data_time / window.step_time,
               "clip_coefficient": window.clip_coefficient / window.count,
               "peak_memory_mb": peak_memory_mb(parts.device)}
    message = (f"step {step} lr {figures['lr']:.2e} loss [{' '.join(f'{v:.4f}' for v in losses)}] "
               f"iou [{' '.join(f'{v:.3f}' for v in ious)}] clip {figures['clip_coefficient']:.3f} {step_time:.3f} s/step "
               f"{figures['samples_per_second']:.2f} samples/s data-wait {figures['data_wait_fraction']:.1%} "
               f"peak-mem {figures['peak_memory_mb']:.0f} MiB")
    if window.skipped_bad:
        message += f" skipped-bad-samples {window.skipped_bad}"
    log.info(message)
    summary.update(figures)
    summary["history"].append({"step": step, "loss": sum(losses) / len(losses), "iou": sum(ious) / len(ious)})
    if parts.world.is_main:
        folder.write_summary(summary)
    window.reset()


def _tensorboard(cfg: Config, info: DistInfo, log: logging.Logger):
    if not (cfg.TRAIN_TBLOG and info.is_main):
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(cfg.DIR_TB_LOG)


def _tensorboard_scalars(tb, cfg: Config, result: StepResult, step: int, step_time: float) -> None:
    for i, (loss, iou) in enumerate(zip(result.losses, result.ious)):
        tb.add_scalar(f"loss/frame{i}", loss, step)
        tb.add_scalar(f"iou/frame{i}", iou, step)
    tb.add_scalar("lr", learning_rate(step, cfg), step)
    tb.add_scalar("clip_coefficient", result.clip_coefficient(cfg.TRAIN_CLIP_GRAD_NORM), step)
    tb.add_scalar("seconds_per_step", step_time, step)
    tb.add_scalar("samples_per_second", cfg.TRAIN_BATCH_SIZE / step_time, step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--stop_step", type=int, default=None,
                        help="save a checkpoint and stop after this step (time-limited jobs); rerun to resume")
    parser.add_argument("--restart", action="store_true",
                        help="set the run folder's earlier run aside (into log/<exp>/archive/) and start again")
    args = parser.parse_args()
    cfg = load_config(args)
    info = init_distributed(cfg.DEVICE, cfg.DEVICE_ID)
    try:
        code = train(cfg, info, args.stop_step, args.restart)
    except USER_ERRORS as err:  # raised before the run's log exists (another run, other settings)
        print(f"error: {user_message(err)}", file=sys.stderr)
        code = 1
    finally:
        cleanup()
    sys.exit(code)


if __name__ == "__main__":
    main()
