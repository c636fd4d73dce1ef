"""AIPerf 0.13 against one server: TTFT, ITL and throughput from its ``profile`` command.

The flags that make it work offline and read true (DESIGN.md, "Benchmark facts"):
``--tokenizer DIR`` (a local tokenizer; ``builtin`` tries a download and fails),
``--use-server-token-count`` (without it ITL reads ~7% low: its tokenizer is not the server's),
``--no-gpu-telemetry`` (no DCGM here), ``--ui-type none`` (no TTY), warm-up requests (the first
connections and the server's first replies are not steady state), and ``--artifact-dir``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from perf.anchors.venvs import AIPERF, ensure_venv, executable
from perf.common import log

SUMMARY = "profile_export_aiperf.json"
RANDOM_SEED = 42  # the same synthetic prompts every run


def stat(summary: dict[str, Any], metric: str, key: str) -> float | None:
    """One statistic (``avg``, ``p50``, ``sum``...) of one metric, or None when absent."""
    found = summary.get(metric) or {}
    value = found.get(key)
    return None if value is None else round(float(value), 3)


def run_aiperf(
    url: str,
    model: str,
    concurrency: int,
    request_count: int,
    isl: int,
    osl: int,
    tokenizer_dir: Path,
    artifact_dir: Path,
    warmup_requests: int | None = None,
) -> dict[str, Any]:
    """Run ``aiperf profile`` once (closed loop at ``concurrency``) and return its figures.

    ``url`` is the server's base (``http://127.0.0.1:PORT``); ``isl``/``osl`` are AIPerf's
    synthetic input and output lengths in tokens (input counted by ``tokenizer_dir``, so the
    server's count may differ; output sent as ``max_completion_tokens``). Warm-up defaults to
    one request per stream. Returns ``{"command", "wall_s", "artifact_dir", "ttft_p50_ms",
    "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "output_token_throughput" (tokens/s),
    "request_throughput" (requests/s), "chunks_per_s", "request_count", "error_rate_pct",
    "benchmark_duration_s"}``. ``chunks_per_s`` is the HTTP chunks AIPerf received in the
    profiling phase over its duration: the load its client actually handled.
    """
    if not (tokenizer_dir / "tokenizer.json").exists():
        raise FileNotFoundError(f"no tokenizer.json in {tokenizer_dir}: AIPerf would try a download")
    ensure_venv(AIPERF)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    warmup = concurrency if warmup_requests is None else warmup_requests
    command = [
        str(executable(AIPERF)),
        "profile",
        *("--model", model, "--url", url.rstrip("/"), "--endpoint-type", "chat", "--streaming"),
        *("--tokenizer", str(tokenizer_dir), "--use-server-token-count"),
        *("--concurrency", str(concurrency), "--request-count", str(request_count)),
        *("--isl", str(isl), "--isl-stddev", "0", "--osl", str(osl), "--osl-stddev", "0"),
        *("--warmup-request-count", str(warmup), "--random-seed", str(RANDOM_SEED)),
        *("--ui-type", "none", "--no-gpu-telemetry", "--artifact-dir", str(artifact_dir)),
    ]
    log(f"aiperf: concurrency={concurrency} requests={request_count} isl={isl} osl={osl}")
    start = time.monotonic()
    # cwd: AIPerf writes nothing outside --artifact-dir, but keep a stray file out of the repo.
    # HF_HUB_OFFLINE=1 makes AIPerf 0.13 take even an absolute tokenizer path for a hub repo id
    # ("HFValidationError: Repo id must be...") and fail; unset, the local directory just loads.
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=artifact_dir, env=env)
    wall_s = time.monotonic() - start
    (artifact_dir / "aiperf_stdout.txt").write_text(done.stdout + done.stderr)
    summary_path = artifact_dir / SUMMARY
    if done.returncode != 0 or not summary_path.exists():
        raise RuntimeError(f"aiperf failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text())
    duration = stat(summary, "benchmark_duration", "avg")
    chunks = stat(summary, "http_req_chunks_received", "sum")
    return {
        "command": command,
        "wall_s": round(wall_s, 1),
        "artifact_dir": str(artifact_dir),
        "ttft_p50_ms": stat(summary, "time_to_first_token", "p50"),
        "ttft_p99_ms": stat(summary, "time_to_first_token", "p99"),
        "itl_p50_ms": stat(summary, "inter_token_latency", "p50"),
        "itl_p99_ms": stat(summary, "inter_token_latency", "p99"),
        "output_token_throughput": stat(summary, "output_token_throughput", "avg"),
        "request_throughput": stat(summary, "request_throughput", "avg"),
        "chunks_per_s": round(chunks / duration, 1) if chunks and duration else None,
        "request_count": stat(summary, "request_count", "avg"),
        "error_rate_pct": stat(summary, "request_error_rate", "avg"),
        "benchmark_duration_s": duration,
    }
