"""The one line a user sees for an error they can fix."""
from __future__ import annotations


def user_message(err: BaseException) -> str:
    """`err`'s message on one line; for an error re-raised from a DataLoader worker, the worker's own message.

    torch re-raises a worker's exception in the main process with the worker's whole traceback
    as its message; the useful part (the file and the cause) is its last line.
    """
    text = str(err).strip()
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        text = last.split(": ", 1)[1] if ": " in last else last
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(err).__name__
