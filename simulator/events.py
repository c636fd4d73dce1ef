"""Machine-readable log lines: ``<iso> SIM_EVENT <name> t=<epoch> key=value ...``.

The lifecycle and benchmark code compare these moments (start, listening,
ready, crash, stopped) with what they observed, so the format is a contract:
one line per event, epoch seconds with microseconds, values without spaces.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field

from simulator.clock import iso_ms

MARKER = "SIM_EVENT"
_LINE_RE = re.compile(rf"{MARKER} (?P<name>[a-z_]+) t=(?P<t>[0-9]+(?:\.[0-9]+)?)(?P<rest>.*)$")


@dataclass(frozen=True)
class SimEvent:
    name: str
    t: float
    fields: dict[str, str] = field(default_factory=dict)


def format_event(name: str, t: float, **fields: object) -> str:
    extra = "".join(f" {key}={value}" for key, value in fields.items())
    return f"{iso_ms(t)} {MARKER} {name} t={t:.6f}{extra}"


def parse_event(line: str) -> SimEvent | None:
    """The event on a log line, or None for any other line."""
    match = _LINE_RE.search(line.rstrip("\n"))
    if match is None:
        return None
    pairs = (item.split("=", 1) for item in match["rest"].split() if "=" in item)
    return SimEvent(name=match["name"], t=float(match["t"]), fields=dict(pairs))


def say(line: str) -> None:
    """Write one log line to stderr at once: readers time events by when lines appear."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def emit(name: str, t: float | None = None, **fields: object) -> None:
    say(format_event(name, time.time() if t is None else t, **fields))
