"""SIGINT / SIGTERM as a request to stop after the current step, for the main process only.

Ctrl-C and schedulers (Slurm, Kubernetes, `timeout`) signal the whole process group. The main
process turns the signal into a flag that the loop reads after each step; loader workers ignore
both signals: the processes that start them (a forkserver, or spawned workers) are started
while both are ignored, and SIG_IGN is inherited; each worker then ignores them itself too. They
live until the main process has saved and stops them.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Installs handlers that record the first stop signal; `restore()` puts the old handlers back."""

    def __init__(self, on_signal: Callable[[str], None] | None = None) -> None:
        self.signal_name: str | None = None
        self._on_signal = on_signal
        self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def _handle(self, signum: int, _frame) -> None:
        if self.signal_name is None and self._on_signal is not None:
            self._on_signal(signal.Signals(signum).name)
        self.signal_name = self.signal_name or signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signal_name is not None

    def restore(self) -> None:
        """Reinstall the handlers that were there before, unless a stop was requested.

        Once a stop is under way the process is on its way out, and later signals (a scheduler
        repeating SIGTERM, Ctrl-C pressed again) are ignored until it has exited with its own status:
        SIG_IGN, because Python resets its own handlers to the default (death by the signal) while
        the interpreter shuts down.
        """
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if self.requested else handler)

    @contextlib.contextmanager
    def ignored_by_new_processes(self) -> Iterator[None]:
        """Processes started inside this block ignore SIGINT/SIGTERM; a signal meanwhile still counts."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        try:
            yield
        finally:
            # A signal that came while ignored is lost to us: the group's other members got it too,
            # and the window is the few milliseconds of starting the processes.
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._handle)
