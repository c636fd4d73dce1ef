"""llama-benchy 0.4 against one server: llama-bench style pp t/s and tg t/s per (pp, tg, depth).

llama-benchy cuts its prompts from a "book" it fetches over HTTP (``file://`` fails) and counts
them with a tokenizer, both of which it would otherwise download. So the book is served from
127.0.0.1 by ``python -m http.server`` and the tokenizer is a local directory (a wrong path
silently falls back to a hub download, hence the check). ``--latency-mode none`` skips its
latency probe, ``--skip-coherence`` its answer check (the simulator's words are not an answer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from perf.anchors.venvs import LLAMA_BENCHY, ensure_venv, executable
from perf.common import log


@contextmanager
def served_file(path: Path) -> Iterator[str]:
    """``path`` over HTTP on 127.0.0.1 at an OS-chosen port; yields its URL."""
    argv = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"]
    argv += ["--directory", str(path.parent)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if proc.stdout is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
            raise RuntimeError("no stdout pipe")
        # "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ...": -u sends it at once.
        line = proc.stdout.readline()
        if " port " not in line:
            raise RuntimeError(f"http.server did not start: {line!r}")
        port = int(line.split(" port ")[1].split()[0])
        yield f"http://127.0.0.1:{port}/{path.name}"
    finally:
        proc.kill()
        proc.wait()


def metric(run: dict[str, Any], name: str) -> float | None:
    found = run.get(name)
    return round(float(found["mean"]), 2) if found else None


def run_llama_benchy(
    url: str,
    model: str,
    pp: Sequence[int],
    tg: Sequence[int],
    depths: Sequence[int],
    runs: int,
    tokenizer_dir: Path,
    book_path: Path,
) -> dict[str, Any]:
    """Run llama-benchy once over every (pp, tg, depth) and return its figures.

    ``url`` is the server's base (``http://127.0.0.1:PORT``). Returns ``{"command": [...],
    "wall_s": float, "results": [{"pp", "tg", "depth", "concurrency", "pp_tps", "tg_tps",
    "ttfr_ms", "e2e_ttft_ms", "peak_tps"}, ...], "notes": [str], "raw": <llama-benchy's JSON>}``,
    the figures being llama-benchy's means over ``runs``. Its pp t/s is prompt tokens over
    TTFR (first frame with ``choices``), so a server that sends a role-only frame before
    prefill ends makes it meaningless; tg t/s does not depend on that.
    """
    if not (tokenizer_dir / "tokenizer.json").exists():
        raise FileNotFoundError(f"no tokenizer.json in {tokenizer_dir}: llama-benchy would try a download")
    ensure_venv(LLAMA_BENCHY)
    with tempfile.TemporaryDirectory(prefix="llama-benchy-") as tmp, served_file(book_path) as book_url:
        out = Path(tmp) / "result.json"
        command = [
            str(executable(LLAMA_BENCHY)),
            *("--base-url", f"{url.rstrip('/')}/v1", "--model", model, "--tokenizer", str(tokenizer_dir)),
            *("--pp", *map(str, pp), "--tg", *map(str, tg), "--depth", *map(str, depths)),
            *("--runs", str(runs), "--book-url", book_url, "--latency-mode", "none", "--skip-coherence"),
            *("--format", "json", "--save-result", str(out)),
        ]
        # A proxy in the environment would catch the 127.0.0.1 requests (the book and the server).
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        log(f"llama-benchy: pp={list(pp)} tg={list(tg)} depth={list(depths)} runs={runs}")
        start = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=tmp)
        wall_s = time.monotonic() - start
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"llama-benchy failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        raw = json.loads(out.read_text())
    results = [
        {
            "pp": run["prompt_size"],
            "tg": run["response_size"],
            "depth": run["context_size"],
            "concurrency": run["concurrency"],
            "pp_tps": metric(run, "pp_throughput"),
            "tg_tps": metric(run, "tg_throughput"),
            "ttfr_ms": metric(run, "ttfr"),
            "e2e_ttft_ms": metric(run, "e2e_ttft"),
            "peak_tps": metric(run, "peak_throughput"),
        }
        for run in raw["benchmarks"]
        if not run.get("is_context_prefill_phase")
    ]
    # Where its token counts came from, and how far its tokenizer is from the server's: the
    # lines that say whether the figures rest on the server's usage or on a local guess.
    notes = [line.strip() for line in done.stdout.splitlines() if "Delta" in line or "token count" in line]
    return {
        "command": command,
        "wall_s": round(wall_s, 1),
        "results": results,
        "notes": sorted(set(notes)),
        "raw": raw,
    }
