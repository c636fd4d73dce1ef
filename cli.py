"""A small command line for the running app, through its REST API (the same door scripts use).

    python -m cli status [ID]
    python -m cli load ID [--wait] [--timeout S]
    python -m cli unload ID [--wait] [--timeout S]
    python -m cli bench start ID [ID ...] (--preset quick|depth | --workload FILE.json) [--load]
    python -m cli bench list [--model ID] | show RUN | cancel RUN | export RUN [--format csv|json]

It talks to http://DXG_HOST:DXG_PORT (or ``--url``) and sends DXG_API_TOKEN when set. Exit
codes: 0 done, 1 the app said no (the reason is printed), 2 the app could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx

from settings import Settings, get_settings

EXIT_REFUSED: Final = 1
EXIT_UNREACHABLE: Final = 2
# Headroom over the server-side wait, so the server answers (504) before the client gives up.
CLIENT_SLACK_S: Final = 15.0


def base_url(settings: Settings) -> str:
    return settings.app_url()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m cli", description="Drive the running app's models.")
    root.add_argument("--url", help="the app's address (default: http://DXG_HOST:DXG_PORT)")
    commands = root.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="every model's status, or one model's")
    status.add_argument("model", nargs="?")
    for name in ("load", "unload"):
        command = commands.add_parser(name, help=f"{name} a model")
        command.add_argument("model")
        command.add_argument("--wait", action="store_true", help="return once it is done (or failed)")
        command.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    bench = commands.add_parser("bench", help="benchmark runs in the app (the Benchmark page's doors)")
    runs = bench.add_subparsers(dest="bench_command", required=True)
    start = runs.add_parser("start", help="queue a run per model")
    start.add_argument("models", nargs="+")
    what = start.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help="quick or depth")
    what.add_argument("--workload", type=Path, help="a JSON workload, as POST /api/benchmarks takes it")
    start.add_argument("--load", action="store_true", help="load models that are not loaded first")
    listing = runs.add_parser("list", help="queued, running and stored runs")
    listing.add_argument("--model")
    for name in ("show", "cancel"):
        runs.add_parser(name, help=f"{name} a run").add_argument("run")
    export = runs.add_parser("export", help="a stored run as CSV or JSON, on stdout")
    export.add_argument("run")
    export.add_argument("--format", choices=("csv", "json"), default="json")
    return root


def bench_request(client: httpx.Client, args: argparse.Namespace) -> httpx.Response:
    match args.bench_command:
        case "start":
            body: dict[str, Any] = {"models": args.models}
            if args.preset:
                body["preset"] = args.preset
            else:
                body["workload"] = json.loads(args.workload.read_text(encoding="utf-8"))
            return client.post("/api/benchmarks", json=body, params={"load": "true"} if args.load else {})
        case "list":
            return client.get("/api/benchmarks", params={"model": args.model} if args.model else {})
        case "show":
            return client.get(f"/api/benchmarks/{args.run}")
        case "cancel":
            return client.post(f"/api/benchmarks/{args.run}/cancel")
        case _:
            return client.get(f"/api/benchmarks/{args.run}/export", params={"format": args.format})


def describe_run(run: dict[str, Any]) -> str:
    status = f" {run['status']}" if run.get("status") else ""
    return f"{run['run_id']} {run.get('model_id') or '-'} {run.get('kind')} {run['state']}{status}"


def print_bench(args: argparse.Namespace, response: httpx.Response, body: Any) -> None:
    if args.bench_command == "export":
        print(response.text if args.format == "csv" else json.dumps(body, indent=2))
    elif args.bench_command == "show":
        print(json.dumps(body, indent=2))
    else:
        runs = body.get("runs", []) if args.bench_command != "cancel" else [body]
        for run in [*body.get("active", []), *runs]:
            print(describe_run(run))


def request(client: httpx.Client, args: argparse.Namespace) -> httpx.Response:
    if args.command == "bench":
        return bench_request(client, args)
    if args.command == "status":
        return client.get(f"/api/models/{args.model}" if args.model else "/api/models")
    params = {"wait": "true", "timeout_s": str(args.timeout)} if args.wait else {}
    timeout = args.timeout + CLIENT_SLACK_S if args.wait else None
    return client.post(f"/api/models/{args.model}/{args.command}", params=params, timeout=timeout)


def describe(model: dict[str, Any]) -> str:
    return f"{model['id']}: {model['status']}"


def main(argv: Sequence[str] | None = None, client: httpx.Client | None = None) -> int:
    args = parser().parse_args(argv)
    owned = client is None
    if client is None:
        settings = get_settings()
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=args.url or base_url(settings), headers=headers, timeout=30.0)
    try:
        response = request(client, args)
    except httpx.HTTPError as exc:
        print(f"cannot reach the app at {client.base_url}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        if owned:  # a client handed in (tests) belongs to the caller
            client.close()
    try:
        body = None if response.headers.get("content-type", "").startswith("text/csv") else response.json()
    except ValueError:
        print(f"unexpected answer {response.status_code} from {client.base_url}", file=sys.stderr)
        return EXIT_REFUSED
    if args.command == "bench" and not response.is_error:
        print_bench(args, response, body)
        return 0
    if response.is_error:
        print(f"{body.get('error', response.status_code)}: {body.get('detail', '')}", file=sys.stderr)
        return EXIT_REFUSED
    for model in body.get("models", [body]):
        print(describe(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
