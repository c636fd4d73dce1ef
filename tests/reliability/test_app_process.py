"""The whole app as ``streamlit run app.py``, with real servers (processes and containers), real
SQLite and real HTTP: hard and soft kills of the app, a storm of requests across an app kill, and
a second instance on the same database."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import httpx
import pytest

from lifecycle.core.events import RecordedEvent
from tests.catalogs import sim_docker, sim_process, write_catalog
from tests.e2e.app_process import (
    CLEAN_EXIT,
    LOAD_TIMEOUT_S,
    SHUTDOWN_BUDGET_S,
    START_TIMEOUT_S,
    AppFiles,
    RunningApp,
    launch,
    start_app,
    streamlit_argv,
)
from tests.reliability.conftest import Record
from tests.support import free_port, instance_processes, wait_until

pytestmark = pytest.mark.slow

PROCESS_MODELS: Final = ("sim-p1", "sim-p2")
CONTAINER_MODELS: Final = ("sim-c1", "sim-c2")
# uvicorn's exit status when the app's startup fails (the database's lease is taken).
INSTANCE_REFUSED: Final = 3
STORM_REQUESTS: Final = 200
STORM_THREADS: Final = 16
STORM_KILL_AFTER: Final = 100
STORM_DEADLINE_S: Final = 90.0
# Event times and the client's clock are the same machine's; this covers rounding to the ms.
CLOCK_SKEW_S: Final = 0.01


def loaded(app: RunningApp, models: tuple[str, ...]) -> bool:
    statuses = {m["id"]: m for m in app.client.get("/api/models", timeout=5).json()["models"]}
    return all(statuses[model]["loaded"] for model in models)


def count(events: list[RecordedEvent], type_name: str) -> int:
    return sum(1 for e in events if e.type == type_name)


def start_with_four(files: AppFiles, docker_client: Any) -> tuple[RunningApp, tuple[str, ...]]:
    """The app over two process and two container models, all four loaded and ready."""
    files.docker = docker_client
    write_catalog(
        files.catalog,
        *(sim_process(model, free_port()) for model in PROCESS_MODELS),
        *(sim_docker(model, free_port()) for model in CONTAINER_MODELS),
    )
    models = PROCESS_MODELS + CONTAINER_MODELS
    app = start_app(files)
    for model in models:
        assert app.client.post(f"/api/models/{model}/load").status_code == 202
    wait_until(lambda: loaded(app, models), LOAD_TIMEOUT_S, interval_s=0.1, what="all four ready")
    return app, models


def stop_by(
    files: AppFiles, app: RunningApp, models: tuple[str, ...], signum: signal.Signals
) -> dict[str, Any]:
    """Signal the app; how long until it and every server are gone, and what is left."""
    began = time.monotonic()
    code = app.signal(signum, SHUTDOWN_BUDGET_S)
    with contextlib.suppress(AssertionError):  # what is left is the figure
        wait_until(lambda: not files.servers(), SHUTDOWN_BUDGET_S, interval_s=0.05, what="no servers left")
    stopped = [m for m in models if any(e.type == "Stopped" for e in files.events(m)[-3:])]
    return {
        "shutdown_s": round(time.monotonic() - began, 2),
        "exit": code,
        "leftovers": len(files.servers()),
        "stops_recorded": len(stopped),
    }


def assert_clean_stop(figure: dict[str, Any], clean: tuple[int, ...], app: RunningApp) -> None:
    assert figure["exit"] in clean, app.output()
    assert figure["shutdown_s"] < SHUTDOWN_BUDGET_S
    assert figure["leftovers"] == 0
    assert figure["stops_recorded"] == len(PROCESS_MODELS + CONTAINER_MODELS)


@pytest.mark.docker
def test_sigkill_is_adopted_and_sigterm_stops_two_processes_and_two_containers(
    files: AppFiles, docker_client: Any, sim_image: str, record: Record
) -> None:
    app, models = start_with_four(files, docker_client)
    running = files.servers()
    starts_before = {m: count(files.events(m), "StartIssued") for m in models}

    # SIGKILL: the servers outlive the app, and the next start adopts each of them once.
    assert app.signal(signal.SIGKILL, 10) == -signal.SIGKILL
    survived = files.servers()
    app = start_app(files)
    wait_until(lambda: loaded(app, models), LOAD_TIMEOUT_S, interval_s=0.1, what="all four adopted")
    adopted = {m: count(files.events(m), "Adopted") for m in models}
    restarted = {m: count(files.events(m), "StartIssued") - starts_before[m] for m in models}
    after = files.servers()
    figure_kill = {
        "adopted": sum(adopted.values()),
        "duplicates": len(after) - len(models),
        "new_starts": sum(restarted.values()),
        "servers_survived": len(survived),
    }
    record("app SIGKILL then restart (2 proc + 2 ctr)", "adopted", figure_kill)

    # SIGTERM: the app exits cleanly and takes every server with it, within the budget.
    figure_term = stop_by(files, app, models, signal.SIGTERM)
    record(
        "app SIGTERM (2 proc + 2 ctr)",
        "clean exit" if figure_term["exit"] in CLEAN_EXIT else "unclean",
        figure_term,
    )

    assert survived == running
    assert adopted == dict.fromkeys(models, 1)
    assert restarted == dict.fromkeys(models, 0)
    assert after == running
    assert_clean_stop(figure_term, CLEAN_EXIT, app)


@pytest.mark.docker
def test_sigint_stops_two_processes_and_two_containers(
    files: AppFiles, docker_client: Any, sim_image: str, record: Record
) -> None:
    app, models = start_with_four(files, docker_client)
    figure = stop_by(files, app, models, signal.SIGINT)
    # Ctrl+C reaches `streamlit run` as KeyboardInterrupt once uvicorn has shut down: click ends
    # the CLI with "Aborted!" and exit status 1, after the app's own clean shutdown.
    aborted = figure["exit"] == 1 and app.output().rstrip().endswith("Aborted!")
    clean = (0, -signal.SIGINT, *((1,) if aborted else ()))
    outcome = (
        "clean stop" + (" (click: Aborted!, exit 1)" if aborted else "")
        if figure["exit"] in clean
        else "unclean"
    )
    record("app SIGINT (2 proc + 2 ctr)", outcome, figure)
    assert "lifecycle service stopped" in app.output()
    assert_clean_stop(figure, clean, app)


@dataclass(frozen=True)
class Answer:
    command: str
    sent: float
    answered: float
    status: int


REQUEST_OF: Final = {"load": "LoadRequested", "unload": "UnloadRequested"}


def committed_by(requests: list[RecordedEvent], answers: list[Answer]) -> list[float]:
    """For each request event, the latest moment it can have been committed: no later than the
    answer of the request that appended it (one of ours whose command matches and that was under
    way at the event's time; +inf when that answer never came), nor than any later event's."""
    bounds = []
    for event in requests:
        appenders = [
            a.answered
            for a in answers
            if REQUEST_OF[a.command] == event.type
            and a.sent - CLOCK_SKEW_S <= event.ts <= a.answered + CLOCK_SKEW_S
        ]
        bounds.append(max(appenders, default=float("inf")))
    for index in range(len(bounds) - 2, -1, -1):  # commits are serial, in position order
        bounds[index] = min(bounds[index], bounds[index + 1])
    return bounds


def acknowledged_and_kept(answer: Answer, requests: list[RecordedEvent], latest: list[float]) -> bool:
    """A 202 promises that its command was the last word at some moment while it ran: either its
    request event is stored with a time inside the call, or an earlier one of the same kind was
    in force then. An event's time is taken before it waits for the write lock, so an event is
    in force from no earlier than the largest time so far (``earliest``) until the next one is
    committed (no later than ``latest``)."""
    kind = REQUEST_OF[answer.command]
    sent, answered = answer.sent - CLOCK_SKEW_S, answer.answered + CLOCK_SKEW_S
    if any(e.type == kind and sent <= e.ts <= answered for e in requests):
        return True
    if kind == "UnloadRequested" and (not requests or latest[0] >= sent):
        return True  # unloaded is the word in force until the first request is committed
    earliest = float("-inf")
    for index, event in enumerate(requests):
        earliest = max(earliest, event.ts)
        if earliest > answered:
            return False
        if event.type == kind and (index + 1 == len(requests) or latest[index + 1] >= sent):
            return True
    return False


def near(answer: Answer, requests: list[RecordedEvent]) -> str:
    """The answer and the request events around it (times from its sending), for a failure message."""
    around = " ".join(
        f"#{e.position}:{e.type[:-9]}@{e.ts - answer.sent:+.3f}"
        for e in requests
        if answer.sent - 0.5 <= e.ts <= answer.answered + 0.5
    )
    return f"{answer.command} 202 answered @{answer.answered - answer.sent:+.3f}: {around}"


class ServerWatch:
    """Samples how many servers of one model exist at once, in its own thread."""

    def __init__(self, instance: str, model: str) -> None:
        self.instance, self.model = instance, model
        self.most = 0
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.most = max(self.most, len(instance_processes(self.instance, self.model)))
            self.samples += 1
            self._done.wait(0.02)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)


def test_two_hundred_loads_and_unloads_across_an_app_kill(files: AppFiles, record: Record) -> None:
    write_catalog(files.catalog, sim_process("sim-s", free_port(), startup_s=0.2))
    base = f"http://127.0.0.1:{files.port}"
    answers: list[Answer] = []
    unanswered = Counter[str]()
    lock = threading.Lock()

    def send(index: int, client: httpx.Client) -> Answer:
        command = "load" if index % 3 else "unload"
        deadline = time.monotonic() + STORM_DEADLINE_S
        while True:  # an unanswered request promised nothing: send it again once the app is back
            sent = time.time()
            try:
                response = client.post(f"{base}/api/models/sim-s/{command}", timeout=10)
            except httpx.TransportError:
                with lock:
                    unanswered["sent again"] += 1
                if time.monotonic() > deadline:
                    raise
                wait_until(lambda: time.monotonic() > deadline or answers_ok(client), 30, interval_s=0.05)
                continue
            answer = Answer(command, sent, time.time(), response.status_code)
            with lock:
                answers.append(answer)
            return answer

    def answers_ok(client: httpx.Client) -> bool:
        try:
            return client.get(f"{base}/api/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    app = start_app(files)
    with (
        ServerWatch(files.instance, "sim-s") as watch,
        httpx.Client() as client,
        ThreadPoolExecutor(max_workers=STORM_THREADS) as pool,
    ):
        futures = [pool.submit(send, i, client) for i in range(STORM_REQUESTS)]
        wait_until(lambda: len(answers) >= STORM_KILL_AFTER, 60, what=f"{STORM_KILL_AFTER} answers")
        killed_after = len(answers)
        assert app.signal(signal.SIGKILL, 10) == -signal.SIGKILL
        app = start_app(files)
        for future in futures:
            future.result(timeout=STORM_DEADLINE_S)
        # The last word holds: the model settles to it, with at most one server throughout.
        final = app.model("sim-s")
        settled = "ready" if final["desired"] == "loaded" else "stopped"
        wait_until(lambda: app.model("sim-s")["phase"] == settled, LOAD_TIMEOUT_S, what=f"sim-s {settled}")
        app.unload_all()
    requests = [e for e in files.events("sim-s") if e.type in ("LoadRequested", "UnloadRequested")]
    codes = Counter(a.status for a in answers)
    latest = committed_by(requests, answers)
    missing = [a for a in answers if a.status == 202 and not acknowledged_and_kept(a, requests, latest)]
    figure = {
        "answers": len(answers),
        "killed_after": killed_after,
        "sent_again": unanswered["sent again"],
        "max_servers": watch.most,
        "ack_missing": len(missing),
        "spurious_409": codes.get(409, 0),
        "codes": {str(k): v for k, v in sorted(codes.items())},
    }
    record("200 load/unload, app SIGKILLed midway", "settled", figure)
    assert app.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT
    assert len(answers) == STORM_REQUESTS
    assert watch.samples > 10
    assert watch.most <= 1
    assert missing == [], "\n".join(near(a, requests) for a in missing[:5])
    assert figure["spurious_409"] == 0
    assert set(codes) == {202}, codes


def test_a_second_instance_on_the_same_database_is_refused(files: AppFiles, record: Record) -> None:
    write_catalog(files.catalog, sim_process("sim-one", free_port()))
    first = start_app(files)
    first.load("sim-one")
    servers = files.servers()
    port = free_port()
    began = time.monotonic()
    second = launch(files, streamlit_argv("127.0.0.1", port), files.env(DXG_PORT=str(port)))
    try:
        code = second.wait(timeout=START_TIMEOUT_S)
    finally:
        second.kill()
        second.wait()
    output = (files.root / f"app-{files.runs}.log").read_text(errors="replace")
    figure = {
        "exit_code": code,
        "refused_in_s": round(time.monotonic() - began, 2),
        "names_holder": f"pid {first.proc.pid}" in output,
        "first_still_ready": first.model("sim-one")["phase"] == "ready",
    }
    record("second instance, same database", "refused" if code == INSTANCE_REFUSED else "not refused", figure)
    assert code == INSTANCE_REFUSED, output
    assert figure["names_holder"], output
    assert figure["first_still_ready"]
    assert files.servers() == servers
    assert first.signal(signal.SIGTERM, SHUTDOWN_BUDGET_S) in CLEAN_EXIT
