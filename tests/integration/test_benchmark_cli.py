"""``python -m benchmark`` end to end: real simulator processes, a real SQLite file named by
DXG_DB_URL, the command line run in-process through ``benchmark.cli.main`` (and once as a real
subprocess, for the entry point and its exit codes).

The machine is shared and noisy, so a level may be voided by the runner's own loop-lag check:
runs are judged by the shape of what they wrote and by a status of complete or invalid, and by
exit code 0 only where the run says it is complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from benchmark.cli import EXIT_NOT_COMPLETE, EXIT_OK, EXIT_USAGE, main
from benchmark.export import CSV_COLUMNS
from benchmark.records import RunStatus
from db.benchmark_store import BenchmarkStore
from db.migrate import upgrade_to_head
from db.session import make_engine
from settings import get_settings
from simulator.process import SimulatorProcess
from tests.catalogs import sim_process, write_catalog
from tests.support import REPO_ROOT, free_port, simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MODEL: Final = "bench-sim"
TTFT_MS: Final = 20.0
TOKENS_PER_S: Final = 200.0
SIM_ARGS: Final = ("--ttft-ms", f"{TTFT_MS:g}", "--tokens-per-s", f"{TOKENS_PER_S:g}")
OSL: Final = 16
TINY: Final = ("--requests", "8", "--isl", "32", "--osl", str(OSL))
# What a finished run may be on this machine: complete, or voided by the runner's health check.
FINISHED: Final = (RunStatus.COMPLETE, RunStatus.INVALID)
EXIT_FOR: Final = {RunStatus.COMPLETE: EXIT_OK, RunStatus.INVALID: EXIT_NOT_COMPLETE}
DIST_KEYS: Final = {"p50", "p90", "p99", "mean"}
LEVEL_KEYS: Final = {
    "valid",
    "ttft_ms",
    "ttfa_ms",
    "itl_ms",
    "e2e_ms",
    "output_tokens_per_s",
    "requests_per_s",
    "errors",
}


# --- running the command line ------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The one line a refusal writes to stderr (the documented contract for exit 2)."""
        assert self.code == EXIT_USAGE, f"exit {self.code}, stdout:\n{self.out}\nstderr:\n{self.err}"
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        assert lines[0].startswith("error: ")
        return lines[0]


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """An instance of its own under ``root``: nothing lands in the repo's data/ or logs/."""
    return {
        "DXG_DB_URL": f"sqlite:///{root / 'bench.db'}",
        "DXG_LOG_DIR": str(root / "logs"),
        "DXG_RUN_DIR": str(root / "run"),
        **extra,
    }


def invoke(env: Mapping[str, str], *argv: str | Path) -> Outcome:
    """``python -m benchmark ARGV`` in this process, with ``env`` set for exactly this call."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()  # the CLI reads its settings through the cached accessor
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main([str(arg) for arg in argv])
        except SystemExit as exc:  # argparse refuses malformed arguments by exiting
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            get_settings.cache_clear()
    return Outcome(code, out.getvalue(), err.getvalue())


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def assert_finished(outcome: Outcome, result: Mapping[str, Any]) -> None:
    """Complete or invalid, and the exit code that status promises."""
    assert result["status"] in FINISHED, f"{result['status']}: {result.get('error')}\n{outcome.err}"
    assert outcome.code == EXIT_FOR[result["status"]]
    entries = result.get("levels") or result.get("cells") or []
    if result["status"] == RunStatus.COMPLETE:
        assert all(entry["valid"] for entry in entries)
    else:  # invalid: some level broke the runner's limits, and the error says which
        assert any(not entry["valid"] for entry in entries)
        assert result["error"]


def stored_requests(env: Mapping[str, str], run_id: str, folder: Path) -> list[dict[str, Any]]:
    """The run's requests as ``show --json`` exports them."""
    path = folder / f"{run_id}.json"
    assert invoke(env, "show", run_id, "--json", path).code == EXIT_OK
    requests = read_json(path)["requests"]
    assert isinstance(requests, list)
    return requests


# --- shared fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    """A vLLM-dialect simulator with a known TTFT and token rate, shared by the module's runs."""
    with simulator("vllm", MODEL, *SIM_ARGS) as server:
        server.wait_event("ready")
        yield server


@dataclass(frozen=True)
class Stored:
    """Runs made once for the tests that read them back: two sweeps and a depth run."""

    env: dict[str, str]
    folder: Path
    sweep: dict[str, Any]  # sweep A's --json
    sweep_outcome: Outcome
    other_sweep_id: str
    depth: dict[str, Any]
    depth_outcome: Outcome


@pytest.fixture(scope="module")
def stored(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    folder = tmp_path_factory.mktemp("stored")
    env = cli_env(folder)
    url = sim.base_url
    sweep_outcome = invoke(
        env, "sweep", "--url", url, "--concurrency", "1,4", *TINY, "--json", folder / "a.json"
    )
    invoke(
        env, "sweep", "--url", url, "--concurrency", "1,4", *TINY, "--seed", "1", "--json", folder / "b.json"
    )
    depth_outcome = invoke(
        env,
        "depth",
        "--url",
        url,
        *("--pp", "64", "--tg", str(OSL), "--depth", "0,256", "--runs", "2"),
        *("--json", folder / "depth.json"),
    )
    return Stored(
        env=env,
        folder=folder,
        sweep=read_json(folder / "a.json"),
        sweep_outcome=sweep_outcome,
        other_sweep_id=read_json(folder / "b.json")["run_id"],
        depth=read_json(folder / "depth.json"),
        depth_outcome=depth_outcome,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


@pytest.fixture
def catalog_env(tmp_path: Path) -> dict[str, str]:
    """A catalog with one simulated model that nobody has loaded, and a migrated database (as
    any app start leaves it); DXG_PORT names a port where no app answers."""
    catalog = write_catalog(tmp_path / "models.yaml", sim_process("sim-a", free_port()))
    values = cli_env(tmp_path, DXG_CATALOG=str(catalog), DXG_PORT=str(free_port()))
    upgrade_to_head(values["DXG_DB_URL"])
    return values


# --- refusals: exit 2, one line, and what to do ------------------------------------------------


def test_bad_levels_are_refused_naming_the_item(env: dict[str, str]) -> None:
    outcome = invoke(env, "sweep", "--url", "http://127.0.0.1:9", "--concurrency", "0,-1")
    assert outcome.code == EXIT_USAGE
    # One line, like every refusal: no usage block above it.
    assert outcome.err.strip().splitlines() == [
        "error: python -m benchmark sweep: argument --concurrency: every value must be above 0; '0' is not"
    ]


def test_a_bad_workload_value_is_refused_naming_the_field(env: dict[str, str]) -> None:
    outcome = invoke(env, "sweep", "--url", "http://127.0.0.1:9", "--concurrency", "1", "--requests", "0")
    assert outcome.error_line() == "error: requests_per_level: Input should be greater than 0"


def test_an_unreachable_url_is_refused_and_nothing_is_stored(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = invoke(env, "sweep", "--url", url, "--concurrency", "1", *TINY).error_line()
    assert line.startswith(f"error: cannot reach {url}: ")
    assert line.endswith("Is the model server running?")
    upgrade_to_head(env["DXG_DB_URL"])
    engine = make_engine(env["DXG_DB_URL"])
    try:
        assert BenchmarkStore(engine).list() == []  # nothing was measured, so no run is saved
    finally:
        engine.dispose()


def test_an_unknown_catalog_model_is_refused_listing_the_known_ones(catalog_env: dict[str, str]) -> None:
    line = invoke(catalog_env, "sweep", "--model", "no-such-model", "--concurrency", "1").error_line()
    assert "'no-such-model'" in line
    assert "sim-a" in line


def test_a_model_that_is_not_loaded_is_refused_saying_how_to_load_it(catalog_env: dict[str, str]) -> None:
    line = invoke(catalog_env, "sweep", "--model", "sim-a", "--concurrency", "1").error_line()
    assert line.startswith("error: model 'sim-a' is not loaded (Available (Not Loaded))")
    assert "`python -m cli load sim-a --wait`" in line
    assert "--load" in line


def test_a_model_is_refused_clearly_on_a_database_the_app_never_created(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "models.yaml", sim_process("sim-a", free_port()))
    values = cli_env(tmp_path, DXG_CATALOG=str(catalog))
    line = invoke(values, "sweep", "--model", "sim-a", "--concurrency", "1").error_line()
    assert "is not loaded" in line


def test_load_without_a_running_app_says_to_start_it(catalog_env: dict[str, str]) -> None:
    line = invoke(catalog_env, "sweep", "--model", "sim-a", "--load", "--concurrency", "1").error_line()
    app_url = f"http://127.0.0.1:{catalog_env['DXG_PORT']}"
    assert line.startswith(f"error: --load goes through the running app; nothing answers at {app_url}")
    assert "start it" in line


def test_a_prompt_file_error_names_its_line(env: dict[str, str], tmp_path: Path) -> None:
    prompts = tmp_path / "chats.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    prompts.write_text(f"{good}\n{{not json\n", encoding="utf-8")
    line = invoke(
        env, "sweep", "--url", "http://127.0.0.1:9", "--concurrency", "1", "--prompts", prompts
    ).error_line()
    assert f"{prompts}:2: not JSON" in line


def test_an_api_key_variable_that_is_not_set_is_refused(
    env: dict[str, str], sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DXG_TEST_UNSET_BENCH_KEY", raising=False)
    outcome = invoke(
        env, "sweep", "--url", sim.base_url, "--concurrency", "1", "--api-key-env", "DXG_TEST_UNSET_BENCH_KEY"
    )
    assert outcome.error_line() == (
        "error: --api-key-env DXG_TEST_UNSET_BENCH_KEY: that environment variable is not set"
    )


def test_showing_an_unknown_run_is_refused(env: dict[str, str]) -> None:
    line = invoke(env, "show", "feedc0ffee00").error_line()
    assert line == "error: no benchmark run 'feedc0ffee00'; `python -m benchmark list` shows the stored runs"


# --- what a run writes -------------------------------------------------------------------------


def test_a_concurrency_sweep_writes_the_documented_json(stored: Stored) -> None:
    result = stored.sweep
    assert_finished(stored.sweep_outcome, result)
    assert isinstance(result["run_id"], str)
    assert result["run_id"] in stored.sweep_outcome.out  # the table names the run
    levels = result["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    for level in levels:
        assert "rate" not in level
        assert level.keys() >= LEVEL_KEYS
        for key in ("ttft_ms", "ttfa_ms", "itl_ms", "e2e_ms"):
            assert level[key].keys() >= DIST_KEYS, key
        assert isinstance(level["valid"], bool)
        assert level["errors"] == 0
        assert level["completed"] == 8
        # The simulator's schedule is a floor no measurement can beat: its TTFT, then OSL - 1
        # tokens at its rate. Noise only adds to these.
        assert level["ttft_ms"]["p50"] >= TTFT_MS
        assert level["e2e_ms"]["p50"] >= TTFT_MS + (OSL - 1) * 1000 / TOKENS_PER_S
        assert level["ttfa_ms"]["p50"] == level["ttft_ms"]["p50"]  # no reasoning channel here
        assert level["output_tokens"]["p50"] == OSL  # --osl honoured, counted from usage
        assert level["output_tokens_per_s"] > 0
        assert level["requests_per_s"] > 0


def test_a_rate_sweep_reports_rates(sim: SimulatorProcess, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "rate.json"
    outcome = invoke(
        env, "sweep", "--url", sim.base_url, "--rate", "40,80", "--arrival", "constant", *TINY, "--json", out
    )
    result = read_json(out)
    assert_finished(outcome, result)
    assert [level["rate"] for level in result["levels"]] == [40.0, 80.0]
    for level in result["levels"]:
        assert "concurrency" not in level
        assert level.keys() >= LEVEL_KEYS
        assert level["completed"] == 8


def test_a_depth_run_writes_cells_and_a_llama_bench_table(stored: Stored) -> None:
    result = stored.depth
    assert_finished(stored.depth_outcome, result)
    cells = result["cells"]
    assert [(c["pp"], c["tg"], c["depth"]) for c in cells] == [(64, OSL, 0), (64, OSL, 256)]
    for cell in cells:
        assert {"mean", "sd"} <= cell["pp_tps"].keys()
        assert {"mean", "sd"} <= cell["tg_tps"].keys()
        assert cell["completed"] == 2
        # tg t/s = (tokens - 1) / (last - first token): the simulator's 200 tokens/s, give or take
        # this machine's noise; a chunk counted as a token or a wrong span misses by far more.
        assert 0.5 * TOKENS_PER_S < cell["tg_tps"]["mean"] < 2 * TOKENS_PER_S
    rows = stored.depth_outcome.out.splitlines()
    assert "| model | engine | test | t/s |" in rows
    assert any(row.startswith(f"| {MODEL} | vllm | tg{OSL} @ d256 | ") for row in rows)
    assert any(row.startswith(f"| {MODEL} | vllm | pp64 | ") for row in rows)


def test_a_sweep_over_a_prompt_file_sends_its_conversations(
    sim: SimulatorProcess, env: dict[str, str], tmp_path: Path
) -> None:
    # The simulator counts a prompt's tokens as the words of all its messages, so each
    # conversation has a prompt size no synthetic --isl 32 prompt has.
    short = [{"role": "user", "content": "Name three colours."}]
    long = [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital city of France please?"},
        {"role": "assistant", "content": "It is Paris, France."},
        {"role": "user", "content": "And which river runs through it?"},
    ]
    prompts = tmp_path / "chats.jsonl"
    prompts.write_text(f"{json.dumps({'messages': short})}\n\n{json.dumps(long)}\n", encoding="utf-8")
    out = tmp_path / "prompts.json"
    outcome = invoke(
        env, "sweep", "--url", sim.base_url, "--concurrency", "2", *TINY, "--prompts", prompts, "--json", out
    )
    result = read_json(out)
    assert_finished(outcome, result)
    measured = [r for r in stored_requests(env, result["run_id"], tmp_path) if not r["warmup"]]
    assert len(measured) == 8
    sizes = {sum(len(m["content"].split()) for m in conversation) for conversation in (short, long)}
    assert sizes == {3, 24}
    assert {r["prompt_tokens"] for r in measured} == sizes  # both conversations, nothing else
    assert all(r["requested_prompt_tokens"] is None for r in measured)  # no synthetic length asked


# --- reading stored runs back ------------------------------------------------------------------


def test_list_shows_the_runs_and_filters_them(stored: Stored) -> None:
    # Rich lays a table out to the terminal's width; wide enough that no run id is cut.
    wide = {**stored.env, "COLUMNS": "200"}
    sweep_id, depth_id = stored.sweep["run_id"], stored.depth["run_id"]
    everything = invoke(wide, "list")
    assert everything.code == EXIT_OK
    for run_id in (sweep_id, stored.other_sweep_id, depth_id):
        assert run_id in everything.out
    depths = invoke(wide, "list", "--kind", "depth")
    assert depth_id in depths.out
    assert sweep_id not in depths.out


def test_show_exports_json_with_frames_and_csv_with_a_row_per_request(stored: Stored) -> None:
    run_id = stored.sweep["run_id"]
    json_path, csv_path = stored.folder / "show.json", stored.folder / "show.csv"
    outcome = invoke(stored.env, "show", run_id, "--json", json_path, "--csv", csv_path)
    assert outcome.code == EXIT_OK
    assert run_id in outcome.out
    exported = read_json(json_path)
    assert exported["run_id"] == run_id
    assert exported["results"]["levels"] == stored.sweep["levels"]
    requests = exported["requests"]
    measured = [r for r in requests if not r["warmup"]]
    assert sorted((r["level"], r["seq"]) for r in measured) == [(lv, s) for lv in (0, 1) for s in range(8)]
    for request in measured:
        assert request["error_class"] is None
        assert len(request["frame_ns"]) == len(request["frame_bytes"]) == len(request["frame_channel"]) > 0
        assert request["frame_ns"] == sorted(request["frame_ns"])
        assert "text" not in request  # prompts and replies are never stored
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + len(requests)
    ttft = CSV_COLUMNS.index("ttft_ms")
    warmup = CSV_COLUMNS.index("warmup")
    assert all(float(row[ttft]) >= TTFT_MS for row in rows[1:] if row[warmup] == "0")


def test_compare_prints_a_verdict_per_level_and_metric(stored: Stored) -> None:
    a, b = stored.sweep["run_id"], stored.other_sweep_id
    outcome = invoke(stored.env, "compare", a, b)
    assert outcome.code == EXIT_OK, outcome.err
    lines = outcome.out.splitlines()
    for label in ("concurrency 1", "concurrency 4"):
        verdicts = [line for line in lines if line.startswith(f"{label}: {MODEL} vs {MODEL}: ")]
        assert len(verdicts) == 3, f"{label}: {verdicts}"  # TTFT, ITL and E2E


def test_comparing_a_sweep_with_a_depth_run_is_refused(stored: Stored) -> None:
    sweep_id, depth_id = stored.sweep["run_id"], stored.depth["run_id"]
    line = invoke(stored.env, "compare", sweep_id, depth_id).error_line()
    assert line == f"error: run {sweep_id} is a sweep run and {depth_id} a depth run; compare like with like"


def test_a_repeated_run_never_reuses_a_cached_prompt(env: dict[str, str], tmp_path: Path) -> None:
    # A simulator of its own: an empty prefix cache, so the first run shows the premise holds.
    with simulator("vllm", MODEL, *SIM_ARGS) as server:
        server.wait_event("ready")
        argv = ("sweep", "--url", server.base_url, "--concurrency", "1", "--requests", "4", "--warmup", "0")
        runs = []
        for name in ("first", "second"):
            out = tmp_path / f"{name}.json"
            invoke(env, *argv, "--isl", "64", "--osl", "4", "--json", out)
            runs.append(read_json(out)["run_id"])
    for run_id in runs:
        measured = [r for r in stored_requests(env, run_id, tmp_path) if not r["warmup"]]
        assert len(measured) == 4
        assert [r["cached_tokens"] or 0 for r in measured] == [0, 0, 0, 0], run_id


# --- the real entry point ----------------------------------------------------------------------


def test_python_m_benchmark_runs_and_exits_by_status(
    sim: SimulatorProcess, env: dict[str, str], tmp_path: Path
) -> None:
    # COLUMNS: rich fits the run table to 80 columns when stdout is a pipe, and may wrap an id.
    child_env = {**os.environ, **env, "COLUMNS": "200"}

    def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "benchmark", *map(str, argv)]
        return subprocess.run(
            command, cwd=REPO_ROOT, env=child_env, capture_output=True, text=True, timeout=120
        )

    out = tmp_path / "sub.json"
    done = run("sweep", "--url", sim.base_url, "--concurrency", "2", *TINY, "--json", out)
    result = read_json(out)
    assert_finished(Outcome(done.returncode, done.stdout, done.stderr), result)
    assert result["run_id"] in run("list").stdout  # saved where DXG_DB_URL points

    refused = run("show", "not-a-run")
    assert (
        Outcome(refused.returncode, refused.stdout, refused.stderr)
        .error_line()
        .startswith("error: no benchmark run 'not-a-run'")
    )
