"""Names the project writes files under or lists in records: what a name may hold, and how names are ordered."""
from __future__ import annotations

import re
import unicodedata

_DIGITS = re.compile(r"(\d+)")
_UNSAFE = re.compile(r"[^\w.\-]")


def safe_file_name(name: str) -> str:
    """`name` with every character outside letters, digits, '.', '-' and '_' replaced by '_' (no path, no spaces)."""
    return _UNSAFE.sub("_", name)


def control_characters(name: str) -> list[str]:
    """The control characters in `name` (newline, tab, NUL, ...), as escapes such as '\\n'."""
    return [repr(c)[1:-1] for c in dict.fromkeys(name) if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers inside names by value: frame_2 before frame_10, then by the name itself.

    Case is ignored for the letters between numbers (Frame_1, frame_2); equal keys fall back to
    the plain name, so the order is total and the same on every machine.
    """
    parts = tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(_DIGITS.split(name)))
    return parts, name
