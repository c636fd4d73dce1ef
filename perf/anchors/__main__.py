"""Check that both anchors install and run offline against the simulator, with small settings.

    .venv/bin/python -m perf.anchors                  # installs on first use (~4 min, ~1.5 GB)
    .venv/bin/python -m perf.anchors --dir /tmp/anchors --skip llama-benchy

Prints one JSON document: each venv's install record, and each anchor's figures next to what
the simulator was configured to do (TTFT, 1 / rate as ITL, rate as tg t/s).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from perf.anchors.aiperf import run_aiperf
from perf.anchors.llama_benchy import run_llama_benchy
from perf.anchors.tokenizer import ensure_book, ensure_tokenizer
from perf.anchors.venvs import ANCHORS, ensure_venv
from perf.common import add_dir_argument, log, run_and_print
from simulator.process import SimulatorProcess

MODEL = "m"


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    wanted = [name for name in ANCHORS if name not in args.skip]
    installs = {name: ensure_venv(ANCHORS[name]) for name in wanted}
    start = time.monotonic()
    tokenizer_dir, book = ensure_tokenizer(), ensure_book()
    result: dict[str, Any] = {
        "installs": installs,
        "tokenizer": {"dir": str(tokenizer_dir), "ready_s": round(time.monotonic() - start, 1)},
        "simulator": {"engine": "vllm", "ttft_ms": args.ttft_ms, "tokens_per_s": args.rate},
        "expected": {"ttft_ms": args.ttft_ms, "itl_ms": round(1000.0 / args.rate, 3), "tg_tps": args.rate},
    }
    sim_args = ("--ttft-ms", f"{args.ttft_ms:g}", "--tokens-per-s", f"{args.rate:g}")
    with SimulatorProcess("vllm", MODEL, 0, sim_args) as sim:
        port = sim.wait_event("listening").fields["port"]  # --port 0: the log names the port
        sim.wait_event("ready")
        url = f"http://127.0.0.1:{port}"
        if "aiperf" in wanted:
            result["aiperf"] = run_aiperf(
                url, MODEL, args.concurrency, args.requests, 64, 32, tokenizer_dir, folder / "aiperf"
            )
        if "llama-benchy" in wanted:
            found = run_llama_benchy(url, MODEL, [128], [32], [0, 256], 2, tokenizer_dir, book)
            result["llama_benchy"] = {key: value for key, value in found.items() if key != "raw"}
    log("done")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_dir_argument(parser)
    parser.add_argument("--skip", nargs="*", default=[], choices=list(ANCHORS), help="anchors to leave out")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=100.0, help="simulator tokens per second")
    parser.add_argument("--concurrency", type=int, default=4, help="AIPerf streams")
    parser.add_argument("--requests", type=int, default=20, help="AIPerf profiled requests")
    run_and_print(parser.parse_args(argv), run, prefix="perf-anchors-")


if __name__ == "__main__":
    main()
