"""The simulator's start moment, shared by every delay it schedules."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class StartClock:
    """A monotonic instant paired with the wall-clock epoch it corresponds to.

    Delays are scheduled on the monotonic clock (immune to NTP steps), while
    log lines carry epochs so other processes on the host can compare them.
    """

    mono: float
    epoch: float

    @classmethod
    def now(cls) -> StartClock:
        return cls(mono=time.monotonic(), epoch=time.time())

    def epoch_at(self, mono: float) -> float:
        """The wall-clock epoch of a moment given on the monotonic clock."""
        return self.epoch + (mono - self.mono)


def iso_ms(epoch: float) -> str:
    """ISO 8601 in UTC with milliseconds; UTC because the scratch image has no zoneinfo."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
