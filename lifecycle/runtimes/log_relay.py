"""``python -m lifecycle.runtimes.log_relay LOG``: copy a server's output into its log, masked.

A server that was handed secrets may print them (``using key <value>``). Its output then goes
through this small process instead of straight into ``logs/{id}.log``: each line has the
secrets' values (``DXG_RELAY_SECRETS``, a JSON list, passed by the process runtime) and the
usual secret patterns masked before it is appended. It runs apart from the app, so like the
server it outlives a hard-killed app and the log goes on; it ends when the server's side of the
pipe closes (the server and everything it started have exited).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Final

from lifecycle.core import secrets
from lifecycle.core.events import redact_text

SECRETS_ENV: Final = "DXG_RELAY_SECRETS"


def relay(source: int, log_path: str, values: list[str]) -> None:
    secrets.KNOWN.remember(values)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(source, "rb", buffering=0) as reader, os.fdopen(fd, "ab", buffering=0) as out:
        for raw in iter(reader.readline, b""):
            text = raw.decode("utf-8", "replace")
            out.write(redact_text(text).encode())


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m lifecycle.runtimes.log_relay LOG", file=sys.stderr)
        return 2
    values = json.loads(os.environ.pop(SECRETS_ENV, "[]"))
    relay(sys.stdin.fileno(), sys.argv[1], [str(v) for v in values])
    return 0


if __name__ == "__main__":
    sys.exit(main())
