"""Evaluation spread over processes (torchrun, on one machine or several): who does which sequence.

Each rank segments its share of the sequences and writes their masks into the one results
folder; rank 0 owns the folder (lock, record) and, once every rank has finished, scores and writes
the tables. A rank that fails stops the others: every rank learns who failed and why, and no
table is written (the folder stays resumable with --resume).
"""
from __future__ import annotations

import traceback
from typing import Callable, TypeVar

from evaluation.datasets import EvalSequence
from utils.distributed import DistInfo, gather_objects
from utils.errors import UserError, user_message

T = TypeVar("T")


def shares(sequences: list[EvalSequence], world_size: int) -> list[list[EvalSequence]]:
    """Sequences per rank, balanced by frame count (longest first to the least loaded rank), each in list order."""
    load = [0] * world_size
    owner: dict[str, int] = {}
    for seq in sorted(sequences, key=lambda s: -max(len(s.images), 1)):  # stable: ties keep list order
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[seq.name] = rank
        load[rank] += max(len(seq.images), 1)
    return [[s for s in sequences if owner[s.name] == rank] for rank in range(world_size)]


class RankFailed(UserError):
    """Another rank of a sharded evaluation failed; this one stops too."""


def on_main_then_share(world: DistInfo, work: Callable[[], T]) -> T:
    """Run `work` on rank 0 and hand its result to every rank; an error there stops every rank."""
    outcome: tuple[str, object] | None = None
    if world.is_main:
        try:
            outcome = ("ok", work())
        except Exception as err:
            if world.world_size > 1:
                gather_objects(("error", user_message(err)), world)
            raise
    outcome = gather_objects(outcome, world)[0]
    if outcome[0] == "error":
        raise RankFailed(f"rank 0 failed: {outcome[1]}")
    return outcome[1]  # type: ignore[return-value]


def on_every_rank(world: DistInfo, work: Callable[[], None]) -> None:
    """Run `work` on every rank; if any rank fails, every rank stops, naming the first that failed.

    The failing rank re-raises its own error (a bug keeps its traceback); the others raise
    RankFailed with that rank's one-line message.
    """
    error: BaseException | None = None
    try:
        work()
    except Exception as err:
        error = err
    message = None if error is None else (user_message(error) if isinstance(error, (UserError, OSError))
                                          else "".join(traceback.format_exception_only(error)).strip())
    messages = gather_objects(message, world)
    if error is not None:
        raise error
    failed = [(rank, text) for rank, text in enumerate(messages) if text]
    if failed:
        rank, text = failed[0]
        raise RankFailed(f"rank {rank} failed: {text}; no table was written: fix it and rerun with --resume")
