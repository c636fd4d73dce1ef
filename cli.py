"""A small command line for the running app, through its REST API (the same door scripts use).

    python -m cli status [ID]
    python -m cli load ID [--wait] [--timeout S]
    python -m cli unload ID [--wait] [--timeout S]

It talks to http://DXG_HOST:DXG_PORT (or ``--url``) and sends DXG_API_TOKEN when set. Exit
codes: 0 done, 1 the app said no (the reason is printed), 2 the app could not be reached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
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
    return root


def request(client: httpx.Client, args: argparse.Namespace) -> httpx.Response:
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
        body = response.json()
    except ValueError:
        print(f"unexpected answer {response.status_code} from {client.base_url}", file=sys.stderr)
        return EXIT_REFUSED
    if response.is_error:
        print(f"{body.get('error', response.status_code)}: {body.get('detail', '')}", file=sys.stderr)
        return EXIT_REFUSED
    for model in body.get("models", [body]):
        print(describe(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
