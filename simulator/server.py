"""The process around the app: fail at start, bind, wait out the load, serve, crash, stop.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 3 for --fail-start,
4 when the port cannot be bound, --crash-exit-code (default 1) for
--crash-after-s, and death by signal 9 when SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from simulator.app import build_app
from simulator.clock import StartClock
from simulator.config import EXIT_BIND_FAILED, EXIT_FAIL_START, EXIT_OK, SimConfig
from simulator.events import emit, say
from simulator.loop import new_event_loop, sleep_until
from simulator.profiles import PROFILES
from simulator.state import SimState

# Streams still running at SIGTERM get this long to finish before uvicorn cancels them;
# well inside Docker's default 10 s stop grace period.
GRACEFUL_SHUTDOWN_S = 5.0
BACKLOG = 2048


class _SimServer(uvicorn.Server):
    """uvicorn's server with our own signal handling."""

    def __init__(self, config: uvicorn.Config, state: SimState) -> None:
        super().__init__(config)
        self.sim = state

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would install its own handlers and re-raise SIGTERM after shutdown,
        # which ends the process by signal instead of exit 0. Ours live on the loop.
        yield


def uvicorn_config(app: ASGIApp) -> uvicorn.Config:
    """The server settings; the image build imports through this too, to see what gets loaded."""
    return uvicorn.Config(
        app,
        http="h11",  # pure Python, like everything in the image
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,  # 100 concurrent streams would drown the events in access lines
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=BACKLOG,
    )


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    # Lets a restarted simulator reuse the port at once; without SO_REUSEPORT a
    # second live simulator on the same port still fails loudly.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    return sock


def _arm_crash(config: SimConfig, clock: StartClock, after_s: float) -> None:
    code = config.crash_exit_code

    def crash() -> None:
        say(f"simulator: crashing as asked (--crash-after-s {after_s:g}), exit code {code}")
        emit("crash", code=code)
        os._exit(code)  # abrupt on purpose: no cleanup, open streams are cut like a real crash

    # A thread, not the event loop: the crash must come on time even if the loop is busy.
    timer = threading.Timer(max(0.0, clock.mono + after_s - time.monotonic()), crash)
    timer.daemon = True
    timer.start()


def _listen(state: SimState, sock: socket.socket) -> None:
    """Start accepting connections and log it; the moment counts towards readiness.

    Listening here rather than inside uvicorn's startup makes the moment exact:
    connections that arrive while uvicorn finishes starting wait in the backlog.
    """
    sock.listen(BACKLOG)
    state.listening_at = time.monotonic()
    port = sock.getsockname()[1]
    emit("listening", state.clock.epoch_at(state.listening_at), host=state.config.host, port=port)


async def _announce_ready(state: SimState) -> None:
    ready = state.ready_moment()
    await sleep_until(ready)
    # The line carries the exact gate moment, so a late wake-up only delays the line.
    emit("ready", state.clock.epoch_at(ready), model=state.config.model_id)


async def _wait_for_load(state: SimState, stop: asyncio.Event) -> bool:
    """True once the simulated load is done; False if a stop signal came first."""
    loaded = asyncio.ensure_future(sleep_until(state.load_done_at))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loaded, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (loaded, stopped):
        task.cancel()
    return not stop.is_set()


def _handle_signal(sig: signal.Signals, server: _SimServer, stop: asyncio.Event) -> None:
    if sig == signal.SIGTERM and server.sim.config.ignore_sigterm:
        emit("sigterm_ignored")
        return
    emit("stopping", signal=sig.name)
    if server.should_exit and sig == signal.SIGINT:
        server.force_exit = True  # a second Ctrl+C skips the graceful wait
    server.should_exit = True
    stop.set()


async def _serve(state: SimState, sock: socket.socket) -> int:
    server = _SimServer(uvicorn_config(build_app(state)), state)
    # Import uvicorn's protocol classes now, not at the ready moment: a vLLM-style
    # late listener would otherwise answer its first requests ~20 ms late.
    server.config.load()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _handle_signal, sig, server, stop)

    cfg = state.config
    # vLLM-style: port bound but not listening, so connections are refused until loaded.
    listen_now = PROFILES[cfg.engine].listens_while_loading or cfg.serve_while_loading
    if listen_now or await _wait_for_load(state, stop):
        _listen(state, sock)
        announcer = asyncio.ensure_future(_announce_ready(state))
        await server.serve(sockets=[sock])
        announcer.cancel()
    sock.close()
    emit("stopped", code=EXIT_OK)
    return EXIT_OK


def run(config: SimConfig, clock: StartClock) -> int:
    if config.fail_start:
        say("simulator: failing at start as asked (--fail-start)")
        emit("fail_start", code=EXIT_FAIL_START)
        return EXIT_FAIL_START
    if config.crash_after_s is not None:
        _arm_crash(config, clock, config.crash_after_s)
    try:
        sock = _bind(config.host, config.port)
    except OSError as exc:
        say(f"simulator: cannot bind {config.host}:{config.port}: {exc}")
        return EXIT_BIND_FAILED
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_serve(SimState(config, clock), sock))
