"""A function run through `torch.compile`, falling back to the function itself if the compiler fails."""
import logging
from typing import Callable

import torch
import torch._dynamo.exc

log = logging.getLogger("lsta.compile")


class CompiledOrEager:
    """`fn` compiled by torch.compile (Inductor); where compiling fails (no C++ compiler, an
    unsupported operation), one warning and `fn` as it is from then on, so results never depend on it."""

    def __init__(self, fn: Callable[..., torch.Tensor], label: str, cuda_graphs: bool = False) -> None:
        self.eager, self.label, self.cuda_graphs = fn, label, cuda_graphs
        # reduce-overhead: Inductor's kernels replayed as CUDA graphs (on CUDA inputs)
        self.compiled: Callable[..., torch.Tensor] | None = torch.compile(
            fn, mode="reduce-overhead" if cuda_graphs else None)
        self.failure: str | None = None  # why it runs eagerly, once it does

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        """`fn(*args)`, compiled while the compiler works (each new input shape compiles once)."""
        if self.compiled is not None:
            try:
                if self.cuda_graphs:
                    # A graph's output lives in memory its next replay overwrites: callers keep a copy.
                    torch.compiler.cudagraph_mark_step_begin()
                    return self.compiled(*args).clone()
                return self.compiled(*args)
            except torch._dynamo.exc.TorchDynamoException as err:
                self.failure = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                log.warning(f"torch.compile of the {self.label} failed ({self.failure}); running it uncompiled")
                self.compiled = None
        return self.eager(*args)
