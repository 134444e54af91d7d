"""Console + file logging for rank 0 (other ranks only warn), tqdm-friendly.

Every logger of the project is a child of `lsta`; library code logs to `logging.getLogger("lsta.<part>")`
and reaches the console and the run's log file through the handlers set up here.
"""
from __future__ import annotations

import logging
import os
import sys

from tqdm import tqdm


class _TqdmHandler(logging.Handler):
    # Through tqdm, so that a progress bar is redrawn below the line; warnings and errors on stderr.
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr if record.levelno >= logging.WARNING else sys.stdout)


ROOT_LOGGER = "lsta"


def setup_logger(name: str, path: str | None, is_main: bool = True) -> logging.Logger:
    """The project's loggers write to the console (through tqdm) and, on rank 0, to `path`; returns `lsta.<name>`."""
    # A full disk must not turn each later log line into a traceback on the console.
    logging.raiseExceptions = False
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in logger.handlers:
        handler.close()
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
    return logging.getLogger(name if name.startswith(ROOT_LOGGER + ".") else f"{ROOT_LOGGER}.{name}")
