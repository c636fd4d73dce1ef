"""Pidfiles: how a later app instance finds the processes an earlier one started.

One JSON file per model in ``{run_dir}/{instance}/{model_id}.pid``. The file alone proves
nothing (pids are reused); ``ProcessRuntime`` checks the process's start time and its
environment marker before it trusts a record.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lifecycle.core.events import check_model_id


@dataclass(frozen=True)
class PidRecord:
    pid: int
    pgid: int
    # psutil's create_time of the pid: tells the process from a later one with a reused pid.
    create_time: float
    model_id: str
    instance: str
    # Unique per start; also in the process's environment (see process.LAUNCH_ENV).
    launch: str
    # Redacted: pidfiles are readable by anyone who can read the run folder.
    argv: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PidRecord:
        return cls(
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            create_time=float(data["create_time"]),
            model_id=check_model_id(str(data["model_id"])),
            instance=str(data["instance"]),
            launch=str(data["launch"]),
            argv=tuple(str(word) for word in data.get("argv") or ()),
        )


class PidDir:
    """The pidfiles of one app instance."""

    def __init__(self, run_dir: Path, instance: str) -> None:
        # The instance name is validated by Settings; it is a single path segment.
        self.root = run_dir / instance

    def path(self, model_id: str) -> Path:
        # The id alphabet has no '/' and no leading '.', so '../x' and 'a/b' never name a file elsewhere.
        check_model_id(model_id)
        return self.root / f"{model_id}.pid"

    def write(self, record: PidRecord) -> Path:
        """Write atomically, so a reader never sees half a record after a crash."""
        path = self.path(record.model_id)
        self.root.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(record.to_json(), indent=1), encoding="utf-8")
        temp.replace(path)
        return path

    def read(self, model_id: str) -> PidRecord | None:
        """The model's record, or None when there is none or it can't be read."""
        return _load(self.path(model_id))

    def read_all(self) -> tuple[list[PidRecord], list[Path]]:
        """Every readable record, and the unreadable files (for the caller to remove)."""
        records: list[PidRecord] = []
        broken: list[Path] = []
        for path in sorted(self.root.glob("*.pid")):
            record = _load(path)
            # A record filed under another name was copied or hand-edited: don't trust it.
            if record is None or path.name != f"{record.model_id}.pid":
                broken.append(path)
            else:
                records.append(record)
        return records, broken

    def remove(self, model_id: str, pid: int | None = None) -> None:
        """Remove the model's pidfile; with ``pid``, only if it still describes that pid."""
        if pid is not None:
            record = self.read(model_id)
            if record is not None and record.pid != pid:
                return  # a newer start of the same model owns the file now
        self.path(model_id).unlink(missing_ok=True)


def _load(path: Path) -> PidRecord | None:
    try:
        return PidRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
