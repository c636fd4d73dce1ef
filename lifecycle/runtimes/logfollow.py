"""Copying a container's output into ``logs/{id}.log`` while it runs, one thread per container.

Containers log to Docker, not to our file, so without a follower the log place would differ
between runtimes. Lines are redacted before they are written: servers print what they like,
tokens included. A follower stops by itself when the container's output ends (it exited).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from docker.errors import NotFound

from lifecycle.core.events import redact_text
from lifecycle.runtimes import logfile
from lifecycle.runtimes.dockerhost import DockerHost
from lifecycle.runtimes.protocol import RuntimeFailure

log = logging.getLogger(__name__)

# How often (in bytes written) a follower checks whether the log needs rotating.
ROTATE_CHECK_BYTES = 1024 * 1024
# A line longer than this (progress bars redrawn with \r) is written in pieces, not held forever.
MAX_PENDING_BYTES = 64 * 1024
# A stream that drops while the container still runs is resumed this many times; after that
# the next inspect() starts a fresh follower.
MAX_RESUMES = 3

# Called as on_end(model_id, container_id) in the follower's thread when its output ended.
EndCallback = Callable[[str, str], None]


def _line(raw: bytes) -> bytes:
    return redact_text(raw.decode("utf-8", "replace")).encode() + b"\n"


def copy_lines(chunks: Iterable[bytes], out: IO[bytes], path: Path) -> None:
    """Write ``chunks`` as redacted lines; a line split across chunks is joined first.

    Redacting per line, not per chunk, so a secret cut in two by the stream is still found.
    """
    pending = b""
    written = 0
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_PENDING_BYTES:
            lines.append(pending)
            pending = b""
        for raw in lines:
            data = _line(raw)
            out.write(data)
            written += len(data)
        if written >= ROTATE_CHECK_BYTES:
            logfile.rotate_if_large(path)
            written = 0
    if pending:
        out.write(_line(pending))


class LogFollowers:
    """The follower threads of one runtime, at most one per container."""

    def __init__(self, host: DockerHost, log_dir: Path, on_end: EndCallback) -> None:
        self.host = host
        self.log_dir = log_dir
        self.on_end = on_end
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def follow(self, container_id: str, model_id: str, since: float | None) -> None:
        """Start copying unless a follower already does; ``since`` (epoch) skips older output."""
        with self._lock:
            if container_id in self._threads:
                return
            thread = threading.Thread(
                target=self._run,
                args=(container_id, model_id, since),
                name=f"logs-{model_id}",
                daemon=True,
            )
            self._threads[container_id] = thread
        thread.start()

    def wait(self, container_id: str, timeout_s: float) -> bool:
        """Wait for the follower to write the last lines; True when it has finished."""
        with self._lock:
            thread = self._threads.get(container_id)
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def _run(self, container_id: str, model_id: str, since: float | None) -> None:
        path = logfile.log_path(self.log_dir, model_id)
        try:
            for _ in range(MAX_RESUMES + 1):
                with self.host.calls() as client:
                    container = client.containers.get(container_id)
                    with logfile.open_append(path) as out:
                        copy_lines(container.logs(stream=True, follow=True, since=since), out, path)
                    dropped_at = time.time()
                    container.reload()
                    if container.status != "running":
                        break
                # The stream ended under a live container (a dropped connection): pick up there.
                since = dropped_at
        except NotFound:
            pass  # removed while we followed; nothing left to copy
        except RuntimeFailure as exc:  # the engine went away; inspect() follows again later
            with contextlib.suppress(OSError):
                logfile.write_note(path, f"stopped copying the container's output: {exc}")
        except Exception:  # a broken follower must not die silently
            log.exception("following the logs of %s (%s) failed", model_id, container_id[:12])
        finally:
            with self._lock:
                self._threads.pop(container_id, None)
            self.on_end(model_id, container_id)
