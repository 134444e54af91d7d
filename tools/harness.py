"""The benchmarks' shared harness: timing in turn, one cell per process, a busy neighbour, the toy settings,
headless Chromium and local ports (the browser tests use the last two as well).

Every benchmark under tools/ calls the product's own loops (VideoSegmenter, segment_and_write,
Trainer.run, the demo page) and times them with this harness; none copies them.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Callable

from config import Config
from utils.timing import now

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- timing ----

def samples_in_turn(fns: dict[str, Callable[[], Any]], device: str, repeats: int) -> dict[str, list[float]]:
    """Seconds of each of `fns` (name → callable) in each repeat, after one warm-up call each, CUDA-synchronised.

    The functions run in turn within each repeat, so that a shared machine's drifting load weighs on
    all of them alike: compared figures come from interleaved runs, not from one run after another.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = now(device)
            fn()
            times[name].append(now(device) - start)
    return times


def timed_in_turn(fns: dict[str, Callable[[], Any]], device: str, repeats: int) -> dict[str, float]:
    """Median seconds of each of `fns`, run in turn (samples_in_turn)."""
    return {name: statistics.median(t) for name, t in samples_in_turn(fns, device, repeats).items()}


def timed(fn: Callable[[], Any], device: str, repeats: int) -> float:
    """Median seconds of `fn()` after one warm-up call, CUDA-synchronised."""
    return timed_in_turn({"fn": fn}, device, repeats)["fn"]


def cpu_description() -> str:
    """This CPU's model, cores and the instruction sets figures depend on (AVX2, AVX-512, VNNI, BF16, AMX)."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    sets = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX-512 VNNI", "avx512_vnni"),
                                    ("AVX-VNNI", "avx_vnni"), ("AVX-512 BF16", "avx512_bf16"), ("AMX", "amx_tile"))
            if flag in flags]
    return f"{model}, {os.cpu_count()} cores, {', '.join(sets) or 'no AVX2'}"


# ---- one cell per process ----

def run_cell(module: str, args: list[str], threads: int | None = None) -> dict[str, Any]:
    """`python -m MODULE ARGS` in a fresh process (its own peak memory, its own thread count); the JSON object
    it prints last."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


BUSY_LOAD = ("import torch\ntorch.set_num_threads({threads})\na = torch.randn(1024, 1024)\n"
             "while True:\n    a = (a @ a).tanh_()\n")


def busy_neighbour(threads: int) -> subprocess.Popen:
    """A second process computing on the same cores (a matmul loop), as on a shared machine; kill() it after."""
    return subprocess.Popen([sys.executable, "-c", BUSY_LOAD.format(threads=threads)],
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})


# ---- settings ----

def toy_config(data: str, **overrides: Any) -> Config:
    """The toy preset on the toy data at `data`, in a temporary run root, one process, with `overrides`; validated."""
    cfg = Config()
    cfg.apply_preset("toy")
    for key, value in {"DIR_DATA": data, "DIR_ROOT": tempfile.mkdtemp(), "DATA_WORKERS": 0, **overrides}.items():
        cfg.set(key, value)
    return cfg.validate()


def random_resnet101(path: str) -> str:
    """A checkpoint of the released architecture (ResNet-101) with random weights, seeded: its cost, not its masks."""
    import torch

    from networks.checkpoints import save_lsta
    from networks.lsta import LSTA
    torch.manual_seed(0)
    save_lsta(path, LSTA())
    return path


# ---- browser and ports ----

CHROMIUM = "/usr/bin/chromium"  # apt-get install chromium (.ci/run does); Playwright's own download is not used
# No sandbox (CI runs as root); no background connections (refused on machines without network,
# many at a time) and no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from a started `sync_playwright()`."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, alive: Callable[[], bool], seconds: float) -> bool:
    """Poll `url` until it answers (True), or until `alive()` turns False or `seconds` pass (False)."""
    deadline = time.time() + seconds
    while time.time() < deadline and alive():
        try:
            urllib.request.urlopen(url, timeout=5)
            return True
        except OSError:
            time.sleep(0.5)
    return False
