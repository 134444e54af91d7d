"""Loopback networking for local servers (the demo page, torchrun rendezvous in tests)."""
from __future__ import annotations

import socket
import time
import urllib.request
from typing import Callable


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
