"""The entry points run as a user runs them: a subprocess in the project root, and the one line it prints."""
from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def run_script(script: str, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS...` (train.py, eval.py, demo.py, or `-m tools.NAME`) with captured text output."""
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR ")  # train.py's errors come as log lines


def one_error_line(out: subprocess.CompletedProcess) -> str:
    """The single `error:` (or `config error:`) line of a failed run, asserting it printed no traceback."""
    assert out.returncode != 0, out.stdout[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [LOG_PREFIX.sub("", line) for line in out.stderr.splitlines()]
    errors = [line for line in lines if line.startswith(("error:", "config error:"))]
    assert len(errors) == 1, out.stderr[-3000:]
    return errors[0]
