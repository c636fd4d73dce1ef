"""Small text formatters shared by every page: dots, durations, times, escaped markdown.

Pure: no streamlit. Dots are Streamlit's coloured-markdown directives (``:green[●]``), never an
emoji, because the machines this runs on have no emoji font and an emoji dot would be a box.
"""

from __future__ import annotations

import re
import time
from typing import Final

from lifecycle.core.states import Dot, clock

__all__ = ["clock", "dot_md", "duration", "escape_md", "local_time", "size_label"]

DOT: Final = "●"
_KNOWN_DOTS: Final = frozenset(d.value for d in Dot)
# Characters that Streamlit's markdown reads as formatting, HTML, maths, tables, links or
# directives (``:red[..]``, ``:material/x:``) anywhere in a line ...
_MD_INLINE: Final = re.compile(r"([\\`*_\[\]<>$~|:])")
# ... and the ones that only matter at the start of a line (headings, lists, quotes).
_MD_LINE_MARK: Final = re.compile(r"^(\s*)([#+-])", re.MULTILINE)
_MD_LINE_NUMBER: Final = re.compile(r"^(\s*\d+)([.)])", re.MULTILINE)
NOT_SET: Final = "—"


def dot_md(dot: str) -> str:
    """The coloured dot for a status; an unknown colour reads as red (not ready) rather than fail."""
    return f":{dot if dot in _KNOWN_DOTS else Dot.RED.value}[{DOT}]"


def escape_md(text: str) -> str:
    """Model names and reasons come from a user-edited file or an error: show them literally."""
    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_LINE_MARK.sub(r"\1\\\2", text)
    return _MD_LINE_NUMBER.sub(r"\1\\\2", text)


def duration(seconds: float | None, digits: int = 2) -> str:
    """``0.21 s`` below a minute, ``m:ss`` above; ``—`` when there is nothing to show."""
    if seconds is None:
        return NOT_SET
    if seconds < 60:
        return f"{seconds:.{digits}f} s"
    return clock(seconds)


def local_time(ts: float) -> str:
    """An event time as the person at the desk reads it (the machine's local time zone)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def size_label(size: str | None, fmt: str | None = None) -> str:
    """``20B · GGUF`` under a chip; ``size n/a`` keeps chips the same height when unknown."""
    parts = [p for p in (size, fmt) if p]
    return " · ".join(parts) if parts else "size n/a"
