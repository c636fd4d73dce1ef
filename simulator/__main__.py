"""``python -m simulator``: see ``python -m simulator --help``."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from simulator.clock import StartClock
from simulator.config import EXIT_OK, SimConfig, parse_args
from simulator.events import emit


def _stop_during_boot(signum: int, frame: FrameType | None) -> None:
    emit("stopped", code=EXIT_OK, signal=signal.Signals(signum).name)
    raise SystemExit(EXIT_OK)


def _early_signals(config: SimConfig) -> None:
    # Importing uvicorn takes a moment; a SIGTERM in that window must already
    # behave as configured. The event loop installs the lasting handlers later.
    signal.signal(signal.SIGTERM, signal.SIG_IGN if config.ignore_sigterm else _stop_during_boot)


def main(argv: Sequence[str] | None = None) -> int:
    # Taken before the heavy imports, so --startup-s and --crash-after-s
    # count from (almost) process start, as a real server's load would.
    clock = StartClock.now()
    config = parse_args(argv)
    _early_signals(config)
    emit(
        "start",
        clock.epoch,
        engine=config.engine,
        model=config.model_id,
        port=config.port,
        startup_s=config.startup_s,
        ttft_ms=config.ttft_ms,
        tokens_per_s=config.tokens_per_s,
        pid=os.getpid(),
    )
    from simulator.server import run  # deliberately after the clock and the signals

    return run(config, clock)


if __name__ == "__main__":
    sys.exit(main())
