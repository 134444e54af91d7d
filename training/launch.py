"""One training run in its run folder: lock, resume or initialise, the Trainer's loop, summary.json.

Exit status of `train`: 0 when the run has reached its final step; 3 when it stopped before
(SIGINT, SIGTERM, --stop_step) after saving a checkpoint to resume from; 1 on an error a user
can fix, reported as one line on the console and in train.log. Anything else is a bug: it keeps
its traceback (in train.log too) and propagates.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import torch

from config import Config
from dataloaders.data_check import check_training_data
from dataloaders.loader import LoaderSettings, build_train_loader, epoch_batches
from dataloaders.train_datasets import build_train_dataset
from networks.checkpoints import checkpoints_newest_first
from training.build import build_trainer
from training.hooks import default_hooks
from training.run_record import (
    CURVES,
    SCALARS,
    Checkpointer,
    RunFolder,
    check_source_unchanged,
    fingerprint,
    pretrained_source,
)
from training.trainer import RunSummary, Trainer
from utils.distributed import DistInfo, ranks_in_sync
from utils.errors import UserError, out_of_memory_message, user_message
from utils.logger import setup_logger
from utils.precision import set_float32_precision
from utils.rng import seed_everything, set_rng_state
from utils.stop_signals import StopRequest

EXIT_STOPPED = 3
# Errors a user can fix (settings, files, data, another run, a full or read-only disk): one line.
USER_ERRORS = (UserError, OSError)
OUT_OF_MEMORY_ADVICE = "lower TRAIN_MAX_BATCH_PER_PASS (gradient accumulation), DATA_RANDOMCROP or TRAIN_BATCH_SIZE"


def train(cfg: Config, info: DistInfo, stop_step: int | None = None, restart: bool = False) -> int:
    """Run (or resume) the training of `cfg` in its run folder; returns the exit status."""
    cfg.validate()
    folder = RunFolder(cfg.DIR_RESULT, cfg.DIR_CKPT, cfg.DIR_TB_LOG)
    set_aside = previous_holder = None
    if info.is_main:
        if not restart:  # read-only: a refused run changes nothing
            folder.check_settings(fingerprint(cfg), has_checkpoints=bool(checkpoints_newest_first(cfg.DIR_CKPT)))
        previous_holder = folder.lock()
        if restart:
            set_aside = folder.set_aside()
    log = setup_logger("lsta.train", os.path.join(cfg.DIR_RESULT, "train.log"), info.is_main)
    checkpointer = Checkpointer(cfg.DIR_CKPT, cfg.TRAIN_MAX_KEEP_CKPT, log)
    summary = RunSummary(cfg.EXP_NAME, cfg.TRAIN_TOTAL_STEPS, info.world_size, str(info.device))
    started = time.time()
    try:
        if info.is_main:
            if set_aside:
                log.info(f"--restart: the earlier run of {cfg.DIR_RESULT} was moved to {set_aside}")
            if previous_holder:
                log.info(f"took over {folder.lock_path} from a run that is no longer running ({previous_holder})")
            checkpointer.remove_stale_temporaries()
            folder.write_settings(cfg)
            folder.write_record(fingerprint=fingerprint(cfg))
        code = _run(cfg, info, RunContext(folder, checkpointer, log, summary), stop_step)
    except (*USER_ERRORS, torch.OutOfMemoryError) as err:
        message = (out_of_memory_message(err, OUT_OF_MEMORY_ADVICE) if isinstance(err, torch.OutOfMemoryError)
                   else user_message(err))
        log.error(f"error: {message}")
        summary.status, summary.exit_code, summary.error = "failed", 1, message
        code = 1
    except Exception as err:
        log.exception(f"unexpected error: {err}")  # a bug: the traceback goes to train.log too
        summary.status, summary.exit_code, summary.error = "failed", 1, f"{type(err).__name__}: {err}"
        raise
    finally:
        summary.wall_seconds = time.time() - started
        if info.is_main:
            folder.write_summary(summary.to_json())
            folder.unlock()
    return code


@dataclass
class RunContext:
    """What a run works with besides its settings: its folder, checkpoints, log and summary."""
    folder: RunFolder
    checkpointer: Checkpointer
    log: logging.Logger
    summary: RunSummary


def _run(cfg: Config, info: DistInfo, run: RunContext, stop_step: int | None) -> int:
    folder, checkpointer, log, summary = run.folder, run.checkpointer, run.log, run.summary
    stop = StopRequest(lambda name: log.warning(f"received {name}: saving a checkpoint after this step"))
    try:
        check_source_unchanged(cfg, folder, log)
        dataset = build_train_dataset(cfg)
        if info.is_main:  # before step 0, not when a sample first draws a bad file hours later
            check_training_data(dataset.videos_by_set(), os.path.join(os.path.dirname(os.path.abspath(
                cfg.DIR_RESULT)), ".data_check_cache.json"), cfg.DATA_SKIP_BAD_SAMPLES, log)
        cuda_precision = set_float32_precision(cfg.DEVICE_ALLOW_TF32)  # set on every machine: tests read it
        summary.precision = cuda_precision if info.device.type == "cuda" else "float32"
        trainer, start_step, rng = _build(cfg, info, run)
        summary.start_step, summary.last_step, summary.last_checkpoint = start_step, start_step - 1, checkpointer.last_good
        if start_step > cfg.TRAIN_TOTAL_STEPS:
            log.info(f"nothing to do: checkpoint step {start_step - 1} is the final step {cfg.TRAIN_TOTAL_STEPS}")
            summary.status, summary.exit_code = "completed", 0
            return 0
        seed_everything(cfg.TRAIN_SEED + 1000 * info.rank + start_step)
        if rng is not None:
            set_rng_state(rng)
        trainer.wrap_distributed()
        loader, sampler = build_train_loader(dataset, LoaderSettings.from_config(cfg), trainer.rank_batch, info.rank,
                                             info.world_size)
        # Loader workers start while stop signals are ignored: the main process saves, then stops them.
        batches = epoch_batches(loader, sampler, start_step, trainer.rank_batch, stop.ignored_by_new_processes)
        options = {"log_every": cfg.TRAIN_LOG_STEP, "tensorboard": cfg.TRAIN_TBLOG, "tensorboard_dir": cfg.DIR_TB_LOG,
                   "scalars_every": cfg.TRAIN_TBLOG_STEP, "save_every": cfg.TRAIN_SAVE_STEP,
                   "scalars": os.path.join(cfg.DIR_RESULT, SCALARS), "curves": os.path.join(cfg.DIR_RESULT, CURVES),
                   "stop_step": stop_step, "config": cfg.to_dict()}
        hooks = default_hooks(trainer, summary, folder, checkpointer, stop, options)
        log.info(f"training steps {start_step}..{cfg.TRAIN_TOTAL_STEPS} on {info.world_size} process(es), "
                 f"{info.device}, batch {cfg.TRAIN_BATCH_SIZE} ({trainer.rank_batch} per rank, passes of "
                 f"{trainer.pass_size}), AMP {trainer.amp}, precision {summary.precision}, "
                 f"{len(trainer.optimizer.param_groups[0]['params'])} trainable tensors")
        state = trainer.run(batches, start_step, hooks)
    finally:
        stop.restore()
    summary.ranks_in_sync = ranks_in_sync(trainer.model, info)
    if state.stop_reason is not None and state.step < cfg.TRAIN_TOTAL_STEPS:
        log.info(f"stopped after step {state.step} ({state.stop_reason}); rerun the same command to resume")
        summary.status, summary.exit_code, summary.stop_reason = "stopped", EXIT_STOPPED, state.stop_reason
        return EXIT_STOPPED
    log.info(f"done at step {cfg.TRAIN_TOTAL_STEPS}; rank weights in sync: {summary.ranks_in_sync}")
    summary.status, summary.exit_code = "completed", 0
    return 0


def _build(cfg: Config, info: DistInfo, run: RunContext) -> tuple[Trainer, int, dict | None]:
    """The Trainer, resumed from the newest checkpoint that loads or initialised; (trainer, first step, RNG)."""
    folder, log = run.folder, run.log
    found = run.checkpointer.load_newest() if cfg.TRAIN_AUTO_RESUME else None
    if found is not None:
        trainer = build_trainer(cfg, info, log, encoder_parts=folder.read_record().get("trained_encoder_parts", []))
        start_step, rng = trainer.load_state_dict(found)
        run.summary.changed_settings = changed_settings(found.config, cfg.to_dict())
        if run.summary.changed_settings:
            changes = "; ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in run.summary.changed_settings.items())
            log.warning(f"resuming {found.path} with {len(run.summary.changed_settings)} setting(s) other than it "
                        f"was saved with: {changes}")
        return trainer, start_step, rng
    source = pretrained_source(cfg.PRETRAIN_MODEL) if cfg.PRETRAIN else None
    trainer = build_trainer(cfg, info, log, pretrained=source and source["path"])
    if info.is_main:
        folder.write_record(initialised_from=source, trained_encoder_parts=trainer.trained_encoder_parts)
    return trainer, cfg.TRAIN_START_STEP, None


def changed_settings(saved: dict, now: dict) -> dict[str, list]:
    """key → [saved value, this run's] for every setting that differs between a checkpoint's record and this run."""
    return {key: [saved[key], now[key]] for key in sorted(set(saved) & set(now)) if saved[key] != now[key]}
