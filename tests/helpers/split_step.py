"""One training step of a saved global batch under torchrun: each rank takes its share.

    torchrun --nproc_per_node N -m tests.helpers.split_step BATCH.pt OUT.pt KEY VALUE ...

The model is in eval mode (no dropout, BN running statistics), so that its outputs do not depend
on which samples share a pass; rank 0 writes the updated weights and every rank's losses.
"""
import sys

from config import Config
from training.build import build_trainer
from utils.checkpoint import read_checkpoint, save_checkpoint
from utils.distributed import cleanup, gather_objects, init_distributed
from utils.logger import setup_logger


def main() -> None:
    batch_path, out_path, *opts = sys.argv[1:]
    cfg = Config()
    cfg.apply_preset("toy")
    cfg.apply_opts(opts)
    info = init_distributed("cpu")
    parts = build_trainer(cfg, info, setup_logger("split_step", None, info.is_main))
    parts.wrap_distributed()
    parts.model.eval()
    batch = read_checkpoint(batch_path, "saved batch")
    share = slice(info.rank * parts.rank_batch, (info.rank + 1) * parts.rank_batch)
    mine = {k: [t[share] for t in v] if isinstance(v, list) else v[share] for k, v in batch.items()}
    result = parts.step(mine, 10)
    losses = gather_objects(result.losses, info)
    if info.is_main:
        save_checkpoint({"state_dict": parts.lsta.state_dict(), "losses": losses}, out_path)
    cleanup()


if __name__ == "__main__":
    main()
