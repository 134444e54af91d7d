"""Shared fixtures: toy data made by the project's own tool, and the optional ../shared folder."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.make_toy_data import make_toy_data  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def shared_path(*parts: str) -> str:
    """A path under ../shared, skipping the test when ../shared is absent (a user's clone)."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (../shared exists only in the development workplace)")
    return path


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> str:
    """Toy data in both layouts, written once per test session."""
    root = str(tmp_path_factory.mktemp("toy"))
    make_toy_data(root, seed=0)
    return root
