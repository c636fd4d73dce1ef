"""One log place per model: ``{log_dir}/{model_id}.log``, size-capped.

Servers write straight into their log file (processes get it as stdout/stderr, docker
followers append to it), so a server keeps logging after the app dies and can be adopted.
Rotation is therefore copy-then-truncate: the writer opened the file with O_APPEND, so
after a truncate its next write lands at the new end instead of leaving a hole.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

from lifecycle.core.events import check_model_id, redact_text

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 2
# Lines of a server's log kept with a crash or failed start: enough to see why, short enough for an event.
EVENT_TAIL_LINES = 20

# Copy-truncate from two threads at once would copy the same bytes twice.
_rotate_lock = threading.Lock()


def log_path(log_dir: Path, model_id: str) -> Path:
    """The model's log file; the id is validated first so it can never name a path outside ``log_dir``."""
    check_model_id(model_id)
    root = log_dir.resolve()
    path = (root / f"{model_id}.log").resolve()
    if path.parent != root:
        raise ValueError(f"log path for {model_id!r} escapes {root}")
    return path


def rotate_if_large(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> bool:
    """Keep ``path`` under ``max_bytes``: shift ``.1``..``.N`` and copy-truncate the live file."""
    with _rotate_lock:
        try:
            if path.stat().st_size <= max_bytes:
                return False
        except FileNotFoundError:
            return False
        for index in range(backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{index + 1}"))
        if backups > 0:
            shutil.copyfile(path, path.with_name(f"{path.name}.1"))
        with path.open("r+b") as handle:
            handle.truncate(0)
        return True


def open_append(path: Path) -> IO[bytes]:
    """Open for appending with O_APPEND, so copy-truncate rotation stays safe for the writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return os.fdopen(fd, "ab", buffering=0)


def write_note(path: Path, text: str) -> None:
    """Append one line of ours (start, stop, adoption), redacted and timestamped."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with open_append(path) as handle:
        handle.write(f"[dxg {stamp}Z] {redact_text(text)}\n".encode())


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` (empty when there is no log yet)."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as handle:
            # Read only the end of big logs: the last lines rarely need more than this.
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max(64 * 1024, lines * 512)))
            kept = deque(handle.read().splitlines(), maxlen=lines)
    except FileNotFoundError:
        return ""
    return "\n".join(line.decode("utf-8", "replace") for line in kept)
