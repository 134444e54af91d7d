"""Hooks of the training loop: progress bar, log lines and summary, scalars (TensorBoard, curves), stop requests, checkpoints."""
from __future__ import annotations

import json
import logging
from typing import Any

from tqdm import tqdm

from training.curves import write_curves
from training.run_record import Checkpointer, RunFolder
from training.trainer import HookBase, LoopState, RunSummary, StepResult, Trainer
from utils.distributed import any_true
from utils.stop_signals import StopRequest
from utils.timing import peak_memory_mb


class ProgressHook(HookBase):
    """A tqdm bar on rank 0 with the step's mean loss."""

    def before_train(self, trainer: Trainer, state: LoopState) -> None:
        self.bar = tqdm(total=trainer.settings.total_steps + 1, initial=state.step + 1,
                        disable=not trainer.world.is_main, dynamic_ncols=True)

    def after_step(self, trainer: Trainer, state: LoopState) -> None:
        if state.result is not None:
            self.bar.set_postfix(loss=f"{sum(state.result.losses) / len(state.result.losses):.4f}")
        self.bar.update(1)

    def after_train(self, trainer: Trainer, state: LoopState) -> None:
        self.bar.close()


class _Window:
    """Running sums between two log lines."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.ious: list[float] = []
        self.count, self.step_time, self.data_time, self.skipped_bad, self.clip = 0, 0.0, 0.0, 0, 0.0

    def add(self, result: StepResult, state: LoopState, clip_norm: float) -> None:
        self.losses = [a + b for a, b in zip(self.losses or [0.0] * len(result.losses), result.losses)]
        self.ious = [a + b for a, b in zip(self.ious or [0.0] * len(result.ious), result.ious)]
        self.count += 1
        self.step_time += state.step_time
        self.data_time += state.data_time
        self.skipped_bad += state.skipped_bad
        self.clip += result.clip_coefficient(clip_norm)


class MetricsHook(HookBase):
    """Every `every` steps and at the last: one log line, the summary's figures and history, summary.json."""

    def __init__(self, every: int, summary: RunSummary, folder: RunFolder, log: logging.Logger) -> None:
        self.every, self.summary, self.folder, self.log = every, summary, folder, log
        self.window = _Window()

    def before_train(self, trainer: Trainer, state: LoopState) -> None:
        self.summary.status = "running"

    def after_step(self, trainer: Trainer, state: LoopState) -> None:
        summary = self.summary
        summary.last_step, summary.nonfinite_steps = state.step, state.nonfinite_steps
        if state.result is not None:
            summary.skipped_bad_samples += state.skipped_bad
            self.window.add(state.result, state, trainer.settings.clip_norm)
        if (state.step % self.every == 0 or state.step == trainer.settings.total_steps) and self.window.count:
            self._log(trainer, state.step)

    def _log(self, trainer: Trainer, step: int) -> None:
        w = self.window
        losses, ious = [v / w.count for v in w.losses], [v / w.count for v in w.ious]
        step_time = w.step_time / w.count
        figures: dict[str, Any] = {
            "step": step, "lr": trainer.schedule.learning_rate(step), "losses": losses, "ious": ious,
            "clip_coefficient": w.clip / w.count, "seconds_per_step": step_time,
            "samples_per_second": trainer.settings.global_batch / step_time,
            "data_wait_fraction": w.data_time / w.step_time, "peak_memory_mb": peak_memory_mb(trainer.device)}
        message = (f"step {step} lr {figures['lr']:.2e} loss [{' '.join(f'{v:.4f}' for v in losses)}] "
                   f"iou [{' '.join(f'{v:.3f}' for v in ious)}] clip {figures['clip_coefficient']:.3f} "
                   f"{step_time:.3f} s/step {figures['samples_per_second']:.2f} samples/s "
                   f"data-wait {figures['data_wait_fraction']:.1%} peak-mem {figures['peak_memory_mb']:.0f} MiB")
        if w.skipped_bad:
            message += f" skipped-bad-samples {w.skipped_bad}"
        self.log.info(message)
        self.summary.figures = figures
        self.summary.history.append({"step": step, "loss": sum(losses) / len(losses), "iou": sum(ious) / len(ious)})
        if trainer.world.is_main:
            self.folder.write_summary(self.summary.to_json())
        self.window = _Window()


class ScalarsHook(HookBase):
    """Scalars every `every` steps (rank 0): loss and IoU per frame, lr, clip coefficient, speed.

    Each logged step is a line of `scalars` (JSON, appended and flushed, so a resumed run continues
    it) and, when `tensorboard` names a folder, TensorBoard scalars there; when training stops, the
    lines are plotted into `curves` (training/curves.py).
    """

    def __init__(self, scalars: str, every: int, curves: str, tensorboard: str | None = None) -> None:
        self.scalars, self.every, self.curves, self.tensorboard = scalars, every, curves, tensorboard
        self.file, self.writer = None, None

    def before_train(self, trainer: Trainer, state: LoopState) -> None:
        if not trainer.world.is_main:
            return
        cut = repair_last_line(self.scalars)
        if cut:
            trainer.log.warning(f"{self.scalars}: removed its last line, cut short by an earlier crash ({cut} bytes); "
                                f"new lines follow it")
        self.file = open(self.scalars, "a")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(self.tensorboard)

    def after_step(self, trainer: Trainer, state: LoopState) -> None:
        result, step = state.result, state.step
        if self.file is None or result is None or step % self.every:
            return
        scalars = {}
        for i, (loss, iou) in enumerate(zip(result.losses, result.ious)):
            scalars[f"loss/frame{i}"], scalars[f"iou/frame{i}"] = float(loss), float(iou)
        scalars["lr"] = trainer.schedule.learning_rate(step)
        scalars["clip_coefficient"] = result.clip_coefficient(trainer.settings.clip_norm)
        scalars["seconds_per_step"] = state.step_time
        scalars["samples_per_second"] = trainer.settings.global_batch / state.step_time
        self.file.write(json.dumps({"step": step, **scalars}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)

    def after_train(self, trainer: Trainer, state: LoopState) -> None:
        if self.file is None:
            return
        self.file.close()
        if self.writer is not None:
            self.writer.close()
        try:
            written = write_curves(self.scalars, self.curves)
        except OSError as err:  # a picture is not worth failing a finished run for
            trainer.log.warning(f"could not write {self.curves}: {err}")
            return
        trainer.log.info(f"training curves: {written or 'none (no step was logged)'}")


def repair_last_line(path: str) -> int:
    """Truncate a text file of lines after its last newline (a line a crash cut short); the bytes removed."""
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return 0
            keep = data.rfind(b"\n") + 1
            f.truncate(keep)
            return len(data) - keep
    except FileNotFoundError:
        return 0


class StopHook(HookBase):
    """Ends the loop after a step when a stop signal arrived (on any rank) or --stop_step is reached."""

    def __init__(self, stop: StopRequest, stop_step: int | None) -> None:
        self.stop, self.stop_step = stop, stop_step

    def after_step(self, trainer: Trainer, state: LoopState) -> None:
        if any_true(self.stop.requested, trainer.world):
            state.stop_reason = f"signal {self.stop.signal_name}"
        elif self.stop_step is not None and state.step >= self.stop_step:
            state.stop_reason = f"--stop_step {self.stop_step}"


class CheckpointHook(HookBase):
    """Saves every `every` steps, at the last step and when the loop is stopping (after StopHook)."""

    def __init__(self, checkpointer: Checkpointer, every: int, config: dict[str, Any], summary: RunSummary,
                 log: logging.Logger) -> None:
        self.checkpointer, self.every, self.config, self.summary, self.log = checkpointer, every, config, summary, log

    def after_step(self, trainer: Trainer, state: LoopState) -> None:
        step = state.step
        if step % self.every and step != trainer.settings.total_steps and state.stop_reason is None:
            return
        training = trainer.training_state()  # collective: every rank takes part
        if training is not None:
            path = self.checkpointer.save(step, trainer.lsta, self.config, training)
            self.log.info(f"saved {path}")
            self.summary.last_checkpoint = path


def default_hooks(trainer: Trainer, summary: RunSummary, folder: RunFolder, checkpointer: Checkpointer,
                  stop: StopRequest, options: dict[str, Any]) -> list[HookBase]:
    """The hooks of a training run, in the order they run after each step."""
    hooks: list[HookBase] = [ProgressHook(), MetricsHook(options["log_every"], summary, folder, trainer.log)]
    hooks.append(ScalarsHook(options["scalars"], options["scalars_every"], options["curves"],
                             options["tensorboard_dir"] if options["tensorboard"] else None))
    hooks += [StopHook(stop, options["stop_step"]),
              CheckpointHook(checkpointer, options["save_every"], options["config"], summary, trainer.log)]
    return hooks


