"""Console + file logging for rank 0 (other ranks only warn), tqdm-friendly."""
from __future__ import annotations

import logging
import os

from tqdm import tqdm


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


def setup_logger(name: str, path: str | None, is_main: bool = True) -> logging.Logger:
    """A logger writing to the console (through tqdm) and, on rank 0, to `path`."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(fmt)
    logger.addHandler(console)
    if is_main and path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        file_handler = logging.FileHandler(path)
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger
