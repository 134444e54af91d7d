"""Headless Chromium for the page tests and the demo benchmark: Debian's package, driven by Playwright."""
from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"  # apt-get install chromium (.ci/run does); Playwright's own download is not used
# No sandbox (CI runs as root); no background connections (refused on machines without network,
# many at a time) and no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def launch_chromium(playwright: Any) -> Any:
    """A headless Chromium browser from a started `sync_playwright()`."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
