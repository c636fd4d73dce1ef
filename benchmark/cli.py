"""``python -m benchmark``: run, list, show and compare benchmarks from a terminal.

    python -m benchmark sweep --url http://127.0.0.1:8100 --concurrency 1,8,64 --requests 64 \\
        --isl 128 --osl 128 --json out.json
    python -m benchmark depth --model gpt-oss-20b --pp 2048 --tg 32 --depth 0,4096,8192 --runs 3
    python -m benchmark list | show RUN | compare RUN_A RUN_B

Runs are saved in DXG_DB_URL, the app's database, through the same code the page uses.
Exit codes: 0 a complete run (or a command done), 1 a run that ended partial, invalid or
failed (it is saved; the table says why), 2 bad input or nothing to measure (one line on stderr).
Ctrl+C cancels a run and saves it as partial; a second Ctrl+C stops at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final, NoReturn

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchmark.compare import compare_runs
from benchmark.execute import Job, execute
from benchmark.export import run_to_csv, run_to_json
from benchmark.loop_health import CancelToken
from benchmark.orphans import close_orphans
from benchmark.prompts import PromptFileError, load_prompt_file
from benchmark.records import RunRecord, RunStatus
from benchmark.report import compare_table, depth_markdown, runs_table, sweep_table
from benchmark.runner import Progress as RunProgress
from benchmark.server_info import TargetError, discover
from benchmark.targets import catalog_entry, load_through_app, model_target
from benchmark.workload import (
    DepthWorkload,
    GoodputLimits,
    LengthSpec,
    Sampling,
    SweepWorkload,
    Workload,
    parse_levels,
)
from db.benchmark_store import BenchmarkStore
from db.migrate import upgrade_to_head
from db.session import make_engine
from lifecycle.service import LifecycleService
from settings import Settings, get_settings

EXIT_OK: Final = 0
EXIT_NOT_COMPLETE: Final = 1
EXIT_USAGE: Final = 2


class UsageError(Exception):
    """Bad input or nothing to measure: one line, exit 2."""


def _levels(integers: bool, allow_zero: bool = False) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        try:
            return parse_levels(text, integers=integers, allow_zero=allow_zero)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _length(text: str) -> LengthSpec:
    try:
        return LengthSpec.parse(text)
    except (ValueError, ValidationError) as exc:
        raise argparse.ArgumentTypeError(str(exc).splitlines()[0]) from None


def _target_args(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="a catalog model id (it must be loaded, or pass --load)")
    where.add_argument("--url", help="any OpenAI-compatible server, e.g. http://127.0.0.1:8100")
    command.add_argument("--served-model", help="the model name to request, when the server serves several")
    command.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="read the server's API key from this environment variable (never from the command line)",
    )
    command.add_argument("--load", action="store_true", help="load the catalog model through the app first")
    command.add_argument("--load-timeout", type=float, default=600.0, help="seconds to wait for --load")
    command.add_argument("--temperature", type=float, default=0.0)
    command.add_argument("--seed", type=int, default=0, help="seeds prompts, arrivals and sampling")
    command.add_argument(
        "--no-ignore-eos", action="store_true", help="let the model stop early (no ignore_eos/min_tokens)"
    )
    command.add_argument(
        "--timeout", type=float, default=300.0, help="longest silence within one request (s)"
    )
    command.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")


class _Parser(argparse.ArgumentParser):
    """Bad arguments get one line and exit 2, like every other refusal (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message}\n")


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="python -m benchmark", description="Benchmark model servers.")
    commands = root.add_subparsers(dest="command", required=True)

    sweep = commands.add_parser("sweep", help="serving under load: concurrency levels or request rates")
    _target_args(sweep)
    axis = sweep.add_mutually_exclusive_group(required=True)
    axis.add_argument("--concurrency", type=_levels(True), help="levels, e.g. 1,8,64 (closed loop)")
    axis.add_argument("--rate", type=_levels(False), help="requests per second, e.g. 2,4,8 (open loop)")
    sweep.add_argument("--arrival", choices=("poisson", "constant"), default="poisson", help="for --rate")
    sweep.add_argument("--requests", type=int, default=None, help="requests per level (default 32)")
    sweep.add_argument("--seconds", type=float, default=None, help="seconds per level")
    sweep.add_argument("--warmup", type=int, default=2, help="warm-up requests per level, not counted")
    sweep.add_argument("--isl", type=_length, default=LengthSpec(mean=128), help="input tokens, MEAN[:SD]")
    sweep.add_argument("--osl", type=_length, default=LengthSpec(mean=128), help="output tokens, MEAN[:SD]")
    sweep.add_argument(
        "--prompts", type=Path, help="JSONL file of conversations instead of synthetic prompts"
    )
    sweep.add_argument("--ttft-limit", type=float, help="goodput: TTFT limit in ms")
    sweep.add_argument("--itl-limit", type=float, help="goodput: ITL limit in ms")

    depth = commands.add_parser("depth", help="llama-bench style pp/tg at context depths, one at a time")
    _target_args(depth)
    depth.add_argument("--pp", type=_levels(True), default=[512], help="prompt sizes, e.g. 512,2048")
    depth.add_argument("--tg", type=_levels(True), default=[32], help="generation sizes, e.g. 32,128")
    depth.add_argument("--depth", type=_levels(True, allow_zero=True), default=[0], help="e.g. 0,4096,8192")
    depth.add_argument("--runs", type=int, default=3, help="runs per cell (mean ± sd)")
    depth.add_argument("--prefix-cache", action="store_true", help="measure the prompt over a cached context")

    listing = commands.add_parser("list", help="stored runs, newest first")
    listing.add_argument("--model")
    listing.add_argument("--kind", choices=("sweep", "depth"))
    listing.add_argument("--status", choices=RunStatus.ALL)
    listing.add_argument("--limit", type=int, default=20)

    show = commands.add_parser("show", help="one stored run")
    show.add_argument("run")
    show.add_argument("--json", type=Path, metavar="PATH", help="write the run (timelines included) as JSON")
    show.add_argument("--csv", type=Path, metavar="PATH", help="write one row per request as CSV")

    compare = commands.add_parser("compare", help="two runs side by side, with 95% CIs")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    return root


def _sampling(args: argparse.Namespace) -> Sampling:
    return Sampling(
        temperature=args.temperature,
        seed=args.seed,
        ignore_eos=not args.no_ignore_eos,
        timeout_s=args.timeout,
    )


def workload_of(args: argparse.Namespace) -> Workload:
    try:
        if args.command == "depth":
            return DepthWorkload(
                pp=args.pp,
                tg=args.tg,
                depths=args.depth,
                runs=args.runs,
                prefix_cache=args.prefix_cache,
                sampling=_sampling(args),
            )
        per_level = args.requests if args.requests is not None or args.seconds is not None else 32
        return SweepWorkload(
            concurrency=args.concurrency,
            rates=args.rate,
            arrival=args.arrival,
            requests_per_level=per_level,
            seconds_per_level=args.seconds,
            warmup_requests=args.warmup,
            input_tokens=args.isl,
            output_tokens=args.osl,
            prompt_file=str(args.prompts) if args.prompts else None,
            limits=GoodputLimits(ttft_ms=args.ttft_limit, itl_ms=args.itl_limit),
            sampling=_sampling(args),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "workload"
        raise UsageError(f"{where}: {first['msg']}") from None


def _api_key(args: argparse.Namespace) -> str | None:
    if not args.api_key_env:
        return None
    key = os.environ.get(args.api_key_env)
    if not key:
        raise UsageError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    return key


class _Bar:
    """A rich progress bar per level, fed by the runner's progress callback."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[int, Any] = {}

    def __call__(self, update: RunProgress) -> None:
        task = self.tasks.get(update.level)
        if task is None:
            task = self.progress.add_task(update.label, total=update.total, detail="")
            self.tasks[update.level] = task
        rate = update.output_tokens_per_s
        detail = [
            f"TTFT {update.last_ttft_ms:.0f} ms" if update.last_ttft_ms is not None else "",
            f"{rate:.0f} tok/s" if rate is not None else "",
            f"{update.errors} errors" if update.errors else "",
        ]
        self.progress.update(task, completed=update.done, detail=", ".join(d for d in detail if d))


def _interrupts(cancel: CancelToken, console: Console) -> Callable[[int, FrameType | None], None]:
    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        console.print("[yellow]cancelling: the run is kept as partial (Ctrl+C again to stop at once)[/]")
        cancel.cancel()

    return on_sigint


def _store(settings: Settings) -> BenchmarkStore:
    upgrade_to_head(settings.db_url)  # the command line may run before the app ever has
    store = BenchmarkStore(make_engine(settings.db_url))
    close_orphans(store)  # runs whose process died (a killed CLI) show as partial, not running
    return store


def run_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    workload = workload_of(args)
    conversations = None
    if isinstance(workload, SweepWorkload) and args.prompts is not None:
        try:
            conversations = load_prompt_file(args.prompts)
        except PromptFileError as exc:
            raise UsageError(str(exc)) from None
    store = _store(settings)  # migrated first: the service reads the same database
    service = LifecycleService(settings) if args.model else None
    entry = None
    try:
        if service is not None:
            if args.load:
                load_through_app(settings, args.model, args.load_timeout)
            target, meta = model_target(service, args.model)
            entry = catalog_entry(service, args.model)
        else:
            target, meta = discover(args.url, args.served_model, _api_key(args))
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    cancel = CancelToken()
    previous = signal.signal(signal.SIGINT, _interrupts(cancel, console))
    bar = _Bar(console)
    try:
        with bar.progress:
            run = execute(
                Job(target, workload, meta, entry, conversations), store, service, progress=bar, cancel=cancel
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_run(console, run)
    if args.json:
        _write(args.json, json.dumps(results_json(run), indent=2))
    return EXIT_OK if run.status == RunStatus.COMPLETE else EXIT_NOT_COMPLETE


def results_json(run: RunRecord) -> dict[str, Any]:
    """The documented shape: run_id, status, and levels (sweep) or cells (depth)."""
    return {"run_id": run.run_id, "status": run.status, "error": run.error, "kind": run.kind, **run.results}


def _print_run(console: Console, run: RunRecord) -> None:
    if run.kind == "depth":
        console.print(f"run {run.run_id}: {run.status}" + (f" ({run.error})" if run.error else ""))
        print(depth_markdown(run))  # plain print: the markdown must reach the terminal unstyled
    else:
        console.print(sweep_table(run))
        if run.error:
            console.print(f"run {run.run_id} is {run.status}: {run.error}")


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _get(store: BenchmarkStore, run_id: str) -> RunRecord:
    run = store.get(run_id)
    if run is None:
        raise UsageError(f"no benchmark run {run_id!r}; `python -m benchmark list` shows the stored runs")
    return run


def stored_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    store = _store(settings)
    if args.command == "list":
        runs = store.list(model_id=args.model, kind=args.kind, status=args.status, limit=args.limit)
        console.print(runs_table(runs))
    elif args.command == "show":
        run = _get(store, args.run)
        _print_run(console, run)
        if args.json:
            _write(args.json, json.dumps(run_to_json(run), indent=2))
        if args.csv:
            _write(args.csv, run_to_csv(run))
    else:
        a, b = _get(store, args.run_a), _get(store, args.run_b)
        try:
            rows = compare_runs(a, b)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        console.print(compare_table(a, b, rows))
        for row in rows:
            console.print(f"{row.level}: {row.verdict}", soft_wrap=True)  # one line each, for grep
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(stderr=False, highlight=False)
    settings = get_settings()
    try:
        if args.command in ("sweep", "depth"):
            return run_command(args, settings, console)
        return stored_command(args, settings, console)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
