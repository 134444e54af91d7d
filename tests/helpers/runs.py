"""The entry points run as a user runs them: a subprocess in the project root, and the one line it prints."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT
from tests.helpers.builders import TOY_EVAL


def run_script(script: str, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS...` (train.py, eval.py, demo.py, or `-m tools.NAME`) with captured text output."""
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


EVAL_TOY = ("eval.py", "--preset", "toy")  # eval.py as the toy model's evaluations run it
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR ")  # train.py's errors come as log lines


def one_error_line(out: subprocess.CompletedProcess) -> str:
    """The single `error:` (or `config error:`) line of a failed run, asserting it printed no traceback."""
    assert out.returncode != 0, out.stdout[-2000:]
    return error_line(out.stderr)


def error_line(stderr: str) -> str:
    """The single `error:` (or `config error:`) line of a run's stderr, asserting it printed no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [LOG_PREFIX.sub("", line) for line in stderr.splitlines()]
    errors = [line for line in lines if line.startswith(("error:", "config error:"))]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def eval_davis(davis, weights: str, out, *extra: str, opts: tuple = ()) -> subprocess.CompletedProcess:
    """eval.py on a DAVIS root with the toy weights' short window (TOY_EVAL)."""
    return run_script("eval.py", "--ckpt_path", weights, "--out", str(out), *extra, "--opts", "DIR_DAVIS", str(davis),
                      *TOY_EVAL, *opts)


def files_under(folder) -> dict[str, float]:
    """Every file under `folder` (relative path → modification time): what a refused run must leave as it was."""
    found = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            found[os.path.relpath(path, folder)] = os.path.getmtime(path)
    return found
