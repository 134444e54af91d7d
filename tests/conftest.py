"""Shared fixtures: toy data made by the project's own tool, and the optional ../shared folder."""
import os
import shutil

# pytest-xdist runs the files over several workers (pyproject's addopts). Each worker, and every process
# a test starts, gets an equal share of the cores: PyTorch's OpenMP threads slow down many times over
# when two processes oversubscribe the CPU. Set before anything loads an OpenMP or BLAS runtime.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))

import numpy as np
import pytest
from PIL import Image

from dataloaders.toy_data import make_toy_data
from tools.harness import CHROMIUM, launch_chromium

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core, at most 4 (each builds its own session fixtures)."""
    return min(4, len(os.sched_getaffinity(0)))


def fixture(name: str) -> str:
    """A data file of the test suite (the authors' state_dict listings, the golden head outputs)."""
    return os.path.join(FIXTURES, name)


def shared_path(*parts: str) -> str:
    """A path under ../shared (real DAVIS frames, which the project may not hold), skipping the
    test when ../shared is absent, as in a user's clone."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (../shared exists only in the development workplace)")
    return path


def davis_j_mean(results, davis, sequences) -> float:
    """The DAVIS-2016 J-Mean of the masks under `results`, written out independently of evaluation/."""
    means = []
    for seq in sequences:
        names = sorted(os.listdir(os.path.join(davis, "Annotations/480p", seq)))[1:-1]
        values = []
        for name in names:
            gt = np.array(Image.open(os.path.join(davis, "Annotations/480p", seq, name))) > 0
            pred = np.array(Image.open(os.path.join(results, seq, name))) > 0
            union = (gt | pred).sum()
            values.append(1.0 if union == 0 else (gt & pred).sum() / union)
        means.append(np.mean(values))
    return float(np.mean(means))


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> str:
    """Toy data in both layouts, written once per test session."""
    root = str(tmp_path_factory.mktemp("toy"))
    make_toy_data(root, seed=0)
    return root


@pytest.fixture()
def davis_copy(toy_root, tmp_path):
    """A private copy of the toy DAVIS layout (tests edit its split file or frames)."""
    root = tmp_path / "DAVIS"
    shutil.copytree(os.path.join(toy_root, "DAVIS"), root)
    return root


@pytest.fixture(scope="session")
def toy_weights(tmp_path_factory) -> str:
    """A toy-preset LSTA with random weights (seed 0), saved as the checkpoint of step 7."""
    import torch

    from config import Config
    from networks.checkpoints import save_lsta
    from networks.lsta import LSTA
    cfg = Config()
    cfg.apply_preset("toy")
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("weights") / "toy.pth")
    model = LSTA.from_config(cfg)
    save_lsta(path, model, step=7)
    return path


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by Playwright; skipped with one line where no Chromium is installed."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()
