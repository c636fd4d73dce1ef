"""logs/{id}.log: ids can't name files elsewhere, rotation is copy-truncate, tails are the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.runtimes.logfile import log_path, open_append, rotate_if_large, tail, write_note

ESCAPES = ["../x", "a/b", "/etc/passwd", "..", ".", ".hidden", "a\\b", "x\n", "", "UPPER", "a" * 65, "a b"]


@pytest.mark.parametrize("model_id", ESCAPES)
def test_ids_that_could_escape_are_rejected(tmp_path: Path, model_id: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        log_path(tmp_path / "logs", model_id)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model_id", ["gpt-oss-20b", "qwen2.5-7b", "a", "m_1.q4"])
def test_valid_ids_stay_inside_the_log_dir(tmp_path: Path, model_id: str) -> None:
    logs = tmp_path / "logs"
    path = log_path(logs, model_id)
    assert path.parent == logs.resolve()
    assert path.name == f"{model_id}.log"


def test_rotation_copies_then_truncates_under_a_live_writer(tmp_path: Path) -> None:
    path = tmp_path / "m.log"
    with open_append(path) as writer:  # as a server holds it: opened once, O_APPEND
        writer.write(b"old line\n" * 20)
        assert not rotate_if_large(path, max_bytes=1000)
        assert rotate_if_large(path, max_bytes=100)
        writer.write(b"new line\n")
    # The writer's next write lands at the new end: no hole of NULs where the old bytes were.
    assert path.read_bytes() == b"new line\n"
    assert path.with_name("m.log.1").read_bytes() == b"old line\n" * 20


def test_rotation_keeps_only_the_given_backups(tmp_path: Path) -> None:
    path = tmp_path / "m.log"
    for generation in range(4):
        path.write_bytes(f"generation {generation}\n".encode() * 10)
        assert rotate_if_large(path, max_bytes=10, backups=2)
    assert path.with_name("m.log.1").read_text().startswith("generation 3")
    assert path.with_name("m.log.2").read_text().startswith("generation 2")
    assert not path.with_name("m.log.3").exists()
    assert not rotate_if_large(tmp_path / "absent.log", max_bytes=0)


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.log"
    path.write_bytes(b"".join(f"line {n}\n".encode() for n in range(100_000)))
    assert tail(path, 3) == "line 99997\nline 99998\nline 99999"
    assert tail(path, 0) == ""
    assert tail(tmp_path / "absent.log", 5) == ""
    path.write_bytes(b"short\nbad \xff byte\n")
    assert tail(path, 10) == "short\nbad \ufffd byte"


def test_notes_are_redacted_and_timestamped(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "m.log"
    write_note(path, "starting m: server --api-key sk-live-123 NGC_API_KEY=nvapi-abcdefghijkl")
    line = path.read_text()
    assert line.startswith("[dxg ")
    assert "--api-key ***" in line
    assert "NGC_API_KEY=***" in line
    assert "sk-live-123" not in line
    assert "nvapi-abcdefghijkl" not in line
