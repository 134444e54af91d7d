"""Train LSTA: one process on CPU or one GPU, or many under torchrun.

    python train.py --preset stage1 [--exp_name NAME] [--opts KEY VALUE ...]
    torchrun --nproc_per_node 4 train.py --preset stage2
    bash train.sh              # both stages of the authors' recipe

Steps run 0..TRAIN_TOTAL_STEPS inclusive. Checkpoints `log/<exp>/ckpt/save_step_<N>.pth` are
written atomically and hold everything an exact resume needs; a rerun of the same command resumes
from the newest one that loads. SIGTERM / SIGINT save a checkpoint and stop cleanly.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import signal
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from config import Config
from dataloaders.loader import build_train_loader
from dataloaders.train_datasets import build_train_dataset
from networks.lsta import LSTA
from utils.checkpoint import CheckpointError, load_pretrained, read_checkpoint, save_checkpoint, state_dict_of
from utils.cli import add_config_args, load_config, save_run_config
from utils.distillation import StmTeacher
from utils.distributed import DistInfo, all_true, any_true, cleanup, init_distributed, ranks_in_sync
from utils.logger import setup_logger
from utils.losses import batch_iou, distillation_kl, ohem_cross_entropy
from utils.rng import rng_state, seed_everything, set_rng_state
from utils.schedule import learning_rate
from utils.timing import now, peak_memory_mb

CKPT_PATTERN = re.compile(r"save_step_(\d+)\.pth$")


def checkpoints_newest_first(folder: str) -> list[tuple[int, str]]:
    """(step, path) of every `save_step_<N>.pth` in `folder`, newest first."""
    found = []
    for path in glob.glob(os.path.join(folder, "save_step_*.pth")):
        match = CKPT_PATTERN.search(path)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


class Trainer:
    """The training loop of PIPELINE.md §3 with the fixes of QUIRKS.md."""

    def __init__(self, cfg: Config, info: DistInfo, stop_step: int | None = None,
                 teacher_model: nn.Module | None = None) -> None:
        self.cfg, self.info, self.stop_step = cfg, info, stop_step
        self.log = setup_logger("lsta.train", os.path.join(cfg.DIR_RESULT, "train.log"), info.is_main)
        if cfg.TRAIN_BATCH_SIZE % info.world_size:
            raise ValueError(f"TRAIN_BATCH_SIZE {cfg.TRAIN_BATCH_SIZE} is not divisible by the "
                             f"{info.world_size} processes")
        self.batch = cfg.TRAIN_BATCH_SIZE // info.world_size  # per rank
        self.pass_size = min(self.batch, cfg.TRAIN_MAX_BATCH_PER_PASS or self.batch)
        if cfg.TRAIN_AMP not in ("off", "bf16", "fp16"):
            raise ValueError(f"TRAIN_AMP must be off, bf16 or fp16, not {cfg.TRAIN_AMP!r}")
        self.amp = cfg.TRAIN_AMP if info.device.type == "cuda" else "off"
        if self.amp != cfg.TRAIN_AMP:
            self.log.warning(f"TRAIN_AMP {cfg.TRAIN_AMP} needs CUDA: training in float32 on {info.device}")

        seed_everything(cfg.TRAIN_SEED)  # the same initial weights on every rank
        dataset = build_train_dataset(cfg)
        self.loader, self.sampler = build_train_loader(dataset, cfg, self.batch, info.rank, info.world_size)
        self.steps_per_epoch = self.sampler.num_samples // self.batch

        model = LSTA(cfg).to(info.device)
        if cfg.TRAIN_CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        # The authors' optimiser: every trainable parameter outside the encoder (LTM.w is fixed),
        # one lr and weight decay for all; the encoder joins only with MODEL_TRAIN_ENCODER.
        self.trainable = [p for n, p in model.named_parameters() if p.requires_grad
                          and (cfg.MODEL_TRAIN_ENCODER or not n.startswith("feature_extractor."))]
        self.optimizer = torch.optim.SGD(self.trainable, lr=cfg.TRAIN_LR, momentum=cfg.TRAIN_MOMENTUM,
                                         nesterov=True, weight_decay=cfg.TRAIN_WEIGHT_DECAY)
        # TRAIN_AUTHORS_ENCODER_GRAD: the frozen encoder is back-propagated through, its gradients are
        # never zeroed (zero_grad only sees the optimiser's parameters) and they count in the clip norm.
        self.clip_params = list(model.parameters()) if cfg.TRAIN_AUTHORS_ENCODER_GRAD else self.trainable
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.start_step = self.resume_or_initialise()
        seed_everything(cfg.TRAIN_SEED + 1000 * info.rank + self.start_step)
        if self.resumed_rng is not None:
            set_rng_state(self.resumed_rng)

        if info.world_size > 1:
            if info.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            else:
                self.log.info("CPU processes: the refine head's BN keeps per-rank statistics "
                              "(SyncBatchNorm needs CUDA); DDP broadcasts rank 0's buffers")
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
        self.teacher = None
        if cfg.MODEL_DISTILLATION:
            self.teacher = StmTeacher(cfg, info.device, teacher_model)
        self.stop_requested = False
        self.nonfinite_in_row = self.nonfinite_total = 0
        self.tb = self._tensorboard()

    # ---- checkpoints ----
    def resume_or_initialise(self) -> int:
        """Resume from the newest loadable checkpoint (auto-resume), else initialise; returns the first step."""
        cfg = self.cfg
        self.resumed_rng = None
        if cfg.TRAIN_AUTO_RESUME:
            for step, path in checkpoints_newest_first(cfg.DIR_CKPT):
                try:
                    ckpt = read_checkpoint(path, "training checkpoint")
                    self.model.load_state_dict(state_dict_of(ckpt, path, "training checkpoint"))
                except (CheckpointError, RuntimeError) as err:
                    self.log.warning(f"skipping checkpoint {path}: {err}")
                    continue
                self.optimizer.load_state_dict(ckpt["optimizer"])
                if ckpt.get("scaler"):
                    self.scaler.load_state_dict(ckpt["scaler"])
                rng = ckpt.get("rng") or []
                self.resumed_rng = rng[self.info.rank] if self.info.rank < len(rng) else None
                self.log.info(f"resumed from {path} (step {ckpt['step']})")
                return ckpt["step"] + 1
        if cfg.PRETRAIN:
            path = cfg.PRETRAIN_MODEL
            if os.path.isdir(path):  # a run's ckpt folder: its newest checkpoint (stage 2 from stage 1)
                found = checkpoints_newest_first(path)
                if not found:
                    raise CheckpointError(f"PRETRAIN_MODEL folder {path} holds no save_step_*.pth; "
                                          f"run the earlier stage first")
                path = found[0][1]
            try:
                load_pretrained(self.model, path)
            except CheckpointError as err:
                raise CheckpointError(f"{err}\nPRETRAIN_MODEL initialises the encoder (see pretrained/README.md);"
                                      f" to start from random weights pass --opts PRETRAIN False") from None
        return cfg.TRAIN_START_STEP

    def save(self, step: int) -> None:
        """Atomically write save_step_<step>.pth on rank 0 (every rank's RNG state included); prune old ones."""
        states = [rng_state()]
        if self.info.world_size > 1:
            states = [None] * self.info.world_size
            dist.all_gather_object(states, rng_state())
        if not self.info.is_main:
            return
        model = self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model
        path = os.path.join(self.cfg.DIR_CKPT, f"save_step_{step}.pth")
        save_checkpoint({"state_dict": model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "step": step, "scaler": self.scaler.state_dict(), "rng": states,
                         "config": self.cfg.to_dict()}, path)
        for _, old in checkpoints_newest_first(self.cfg.DIR_CKPT)[self.cfg.TRAIN_MAX_KEEP_CKPT:]:
            os.remove(old)
        self.log.info(f"saved {path}")

    # ---- one step ----
    def train_step(self, batch: dict, step: int) -> tuple[list[float], list[float]] | None:
        """Forward, loss, backward and update on one batch; None when the loss was not finite."""
        cfg, device = self.cfg, self.info.device
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        frames = len(batch["curr_img"])
        frame_losses, frame_ious = [0.0] * frames, [0.0] * frames
        starts = list(range(0, self.batch, self.pass_size))
        for index, start in enumerate(starts):
            part = {k: _slice(v, start, start + self.pass_size, device, cfg.TRAIN_CHANNELS_LAST)
                    for k, v in batch.items() if k != "meta"}
            sync = index == len(starts) - 1 or not isinstance(self.model, nn.parallel.DistributedDataParallel)
            share = part["ref_img"].shape[0] / self.batch  # this pass's part of the rank's batch
            with contextlib.nullcontext() if sync else self.model.no_sync():
                losses = self._frame_losses(part, frame_ious, share)
                if cfg.TRAIN_LOSS_LAST_FRAME_ONLY:
                    loss = 2 * losses[-1] / frames  # the authors' objective: the last frame only
                else:
                    loss = torch.stack(losses).mean()
                loss = loss * share
                if not all_true(bool(torch.isfinite(loss)), self.info):
                    return None
                self.scaler.scale(loss).backward()
            for i, frame_loss in enumerate(losses):
                frame_losses[i] += frame_loss.item() * share
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.clip_params, cfg.TRAIN_CLIP_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return frame_losses, frame_ious

    def _frame_losses(self, part: dict, ious: list[float], weight: float) -> list[torch.Tensor]:
        cfg = self.cfg
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        with torch.autocast(self.info.device.type, dtype=dtype, enabled=dtype is not None):
            outputs = self.model(part["ref_img"], part["prev_img"], part["curr_img"])
        losses = []
        teacher_prev = part["prev_img"]
        teacher_mask = part["prev_label" if cfg.MODEL_DISTILLATION_TEACHER_AS_DESIGNED else "prev_ids"]
        for i, logits in enumerate(outputs):
            target = part["curr_label"][i][:, 0].long()
            loss = ohem_cross_entropy(logits, target)
            if self.teacher is not None:
                teacher_logits = self.teacher.logits(teacher_prev, teacher_mask, part["curr_img"][i])
                w = cfg.MODEL_DISTILLATION_LOSS_WEIGHT
                loss = (1 - w) * loss + w * distillation_kl(logits, teacher_logits)
                teacher_prev = part["curr_img"][i]
                teacher_mask = part["curr_label" if cfg.MODEL_DISTILLATION_TEACHER_AS_DESIGNED else "curr_ids"][i]
            losses.append(loss)
            ious[i] += batch_iou(logits.detach(), target) * weight
        return losses

    # ---- the loop ----
    def run(self) -> None:
        """Train from the start (or resume) step through TRAIN_TOTAL_STEPS, or until stopped."""
        total = self.cfg.TRAIN_TOTAL_STEPS
        if self.start_step > total:
            self.log.info(f"nothing to do: checkpoint step {self.start_step - 1} is the final step {total}")
            return
        previous_handlers = self._install_signal_handlers()
        try:
            self._loop()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)

    def _loop(self) -> None:
        cfg, info = self.cfg, self.info
        total = cfg.TRAIN_TOTAL_STEPS
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        self.sampler.set_position(epoch, offset * self.batch)
        batches = iter(self.loader)
        self.log.info(f"training steps {self.start_step}..{total} on {info.world_size} process(es), "
                      f"{info.device}, batch {cfg.TRAIN_BATCH_SIZE} ({self.batch} per rank, passes of "
                      f"{self.pass_size}), AMP {self.amp}, {len(self.trainable)} trainable tensors")
        window = _Window(cfg.DATA_CURR_SEQ_LEN)
        bar = tqdm(total=total + 1, initial=self.start_step, disable=not info.is_main, dynamic_ncols=True)
        step = self.start_step
        while step <= total:
            start = now(info.device)
            try:
                batch = next(batches)
            except StopIteration:
                epoch += 1
                self.sampler.set_position(epoch, 0)
                batches = iter(self.loader)
                batch = next(batches)
            data_time = now(info.device) - start
            result = self.train_step(batch, step)
            step_time = now(info.device) - start
            if result is None:
                self.nonfinite_in_row += 1
                self.nonfinite_total += 1
                self.log.warning(f"step {step}: non-finite loss, update skipped "
                                 f"({self.nonfinite_in_row} in a row, {self.nonfinite_total} in all)")
                if self.nonfinite_in_row >= cfg.TRAIN_MAX_NONFINITE:
                    raise RuntimeError(f"{self.nonfinite_in_row} non-finite losses in a row at step {step}; "
                                       f"lower TRAIN_LR or check the data")
            else:
                self.nonfinite_in_row = 0
                window.add(*result, step_time, data_time, int(batch["meta"]["skipped_bad"].sum()))
            bar.update(1)
            if result is not None:
                bar.set_postfix(loss=f"{sum(result[0]) / len(result[0]):.4f}")
                if self.tb is not None and step % cfg.TRAIN_TBLOG_STEP == 0:
                    for i, (loss, iou) in enumerate(zip(*result)):
                        self.tb.add_scalar(f"loss/frame{i}", loss, step)
                        self.tb.add_scalar(f"iou/frame{i}", iou, step)
                    self.tb.add_scalar("lr", learning_rate(step, cfg), step)
                    self.tb.add_scalar("seconds_per_step", step_time, step)
            if step % cfg.TRAIN_LOG_STEP == 0 or step == total:
                self._log(step, window)
            stop = any_true(self.stop_requested, info) or step == self.stop_step
            if step % cfg.TRAIN_SAVE_STEP == 0 or step == total or stop:
                self.save(step)
            if stop:
                self.log.info(f"stopped after step {step}; rerun the same command to resume")
                break
            step += 1
        bar.close()
        in_sync = ranks_in_sync(self.model, info)
        self.log.info(f"done at step {min(step, total)}; rank weights in sync: {in_sync}")

    def _log(self, step: int, window: "_Window") -> None:
        if not window.count:
            return
        cfg, info = self.cfg, self.info
        losses = " ".join(f"{v:.4f}" for v in window.mean(window.losses))
        ious = " ".join(f"{v:.3f}" for v in window.mean(window.ious))
        step_time = window.step_time / window.count
        message = (f"step {step} lr {learning_rate(step, cfg):.2e} loss [{losses}] iou [{ious}] "
                   f"{step_time:.3f} s/step {cfg.TRAIN_BATCH_SIZE / step_time:.2f} samples/s "
                   f"data-wait {window.data_time / window.step_time:.1%} "
                   f"peak-mem {peak_memory_mb(info.device):.0f} MiB")
        if window.skipped_bad:
            message += f" skipped-bad-samples {window.skipped_bad}"
        self.log.info(message)
        window.reset()

    def _tensorboard(self):
        if not (self.cfg.TRAIN_TBLOG and self.info.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log.warning("TRAIN_TBLOG is on but tensorboard is not installed (pip install tensorboard)")
            return None
        return SummaryWriter(self.cfg.DIR_TB_LOG)

    def _install_signal_handlers(self) -> dict:
        def request_stop(signum, _frame):
            self.log.warning(f"received {signal.Signals(signum).name}: saving a checkpoint after this step")
            self.stop_requested = True
        return {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}


class _Window:
    """Running sums between two log lines."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.reset()

    def reset(self) -> None:
        self.losses, self.ious = [0.0] * self.frames, [0.0] * self.frames
        self.count, self.step_time, self.data_time, self.skipped_bad = 0, 0.0, 0.0, 0

    def add(self, losses, ious, step_time, data_time, skipped_bad) -> None:
        self.losses = [a + b for a, b in zip(self.losses, losses)]
        self.ious = [a + b for a, b in zip(self.ious, ious)]
        self.count += 1
        self.step_time += step_time
        self.data_time += data_time
        self.skipped_bad += skipped_bad

    def mean(self, values: list[float]) -> list[float]:
        return [v / self.count for v in values]


def _slice(value, start: int, end: int, device: torch.device, channels_last: bool):
    """Batch entries start:end of a tensor or list of tensors, moved to `device`."""
    if isinstance(value, list):
        return [_slice(v, start, end, device, channels_last) for v in value]
    value = value[start:end].to(device, non_blocking=True)
    if channels_last and value.dim() == 4 and value.is_floating_point():
        value = value.contiguous(memory_format=torch.channels_last)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--stop_step", type=int, default=None,
                        help="save a checkpoint and stop after this step (time-limited jobs); rerun to resume")
    args = parser.parse_args()
    cfg = load_config(args)
    info = init_distributed(cfg.DEVICE)
    try:
        if info.is_main:
            save_run_config(cfg, os.path.join(cfg.DIR_RESULT, "config.json"))
        Trainer(cfg, info, args.stop_step).run()
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
