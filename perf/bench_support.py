"""What the benchmark-vs-anchor harnesses share: simulators on one port, CPU accounting, anchors.

``perf.benchmark_capacity`` and ``perf.benchmark_agreement`` both put our runner and an anchor
(AIPerf, llama-benchy) against the same simulator(s) and print one JSON document.

Several simulators behind one URL: the runner takes one base URL, and one simulator process
(pure-Python h11, ~55 us CPU per SSE frame) saturates one core near 17-20k frames/s, about what
one runner process takes too, so the runner's own limit needs two or more simulators on cores of
their own. ``python -m perf.bench_support simulator ARGS`` runs
``python -m simulator ARGS`` with SO_REUSEPORT on its listening socket, so N of them share one
port and the kernel spreads the connections over them: one URL, N server processes, and both
clients see the very same server setup.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from perf.anchors.tokenizer import ANCHOR_DATA
from perf.anchors.venvs import LLAMA_BENCHY, Anchor, ensure_venv, executable
from perf.common import log
from simulator.process import SimulatorProcess

MODEL = "m"


# --- simulators sharing one port ---------------------------------------------------------------


class SharedPortSimulator(SimulatorProcess):
    """A ``SimulatorProcess`` started through this module, so its socket has SO_REUSEPORT."""

    def __init__(self, model_id: str, port: int, args: Sequence[str] = ()) -> None:
        super().__init__("vllm", model_id, port, args)
        # argv is [python, "-m", "simulator", ...]: same arguments, our entry point in front.
        self.argv = [sys.executable, "-m", "perf.bench_support", "simulator", *self.argv[3:]]


@dataclass(frozen=True)
class SimFarm:
    url: str
    procs: list[psutil.Process]

    def cpu_s(self) -> float:
        """User + system CPU seconds of every simulator so far."""
        return sum(sum(p.cpu_times()[:2]) for p in self.procs)


@contextmanager
def simulators(count: int, sim_args: Sequence[str]) -> Iterator[SimFarm]:
    """``count`` vLLM-dialect simulators on one OS-chosen port; every one is killed on exit."""
    with ExitStack() as stack:
        procs: list[psutil.Process] = []
        port = 0
        for _ in range(count):
            sim = stack.enter_context(SharedPortSimulator(MODEL, port, sim_args))
            # --port 0 for the first: the log names the port, the others then join it.
            port = int(sim.wait_event("listening").fields["port"])
            sim.wait_event("ready")
            procs.append(psutil.Process(sim.proc.pid))
        yield SimFarm(f"http://127.0.0.1:{port}", procs)


def _simulator_main(argv: list[str]) -> int:
    """``python -m simulator`` with SO_REUSEPORT set before the bind."""
    import simulator.server as server
    from simulator.__main__ import main

    def shared_bind(host: str, port: int) -> socket.socket:
        # As simulator.server._bind, plus SO_REUSEPORT: without it a second live simulator on
        # the port fails to bind (on purpose, there). Every sharer must set it, the first too.
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        return sock

    if not callable(getattr(server, "_bind", None)):
        raise RuntimeError("simulator.server._bind is gone: update perf.bench_support.shared_bind")
    server._bind = shared_bind  # the one seam the simulator offers for its socket
    return main(argv)


# --- CPU accounting ----------------------------------------------------------------------------


def children_cpu_s() -> float:
    """CPU seconds of every descendant this process has reaped (a finished anchor run's whole tree)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_s() -> float:
    return time.process_time()


class TreeCpu:
    """Samples the CPU of this process's descendants (an anchor's whole process tree) in a thread.

    An anchor's total CPU includes its start-up (AIPerf: ~15 s of imports and services), which
    says nothing about its cost per chunk; with samples, the CPU inside its measured window can
    be read off. ``exclude`` keeps the simulators (also our children) out of the sum.
    """

    def __init__(self, exclude: Sequence[psutil.Process], period_s: float = 0.2) -> None:
        self.exclude = {p.pid for p in exclude}
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []  # (epoch s, cumulative CPU s)
        self._last: dict[int, float] = {}  # pid -> CPU last seen: an exited process keeps its share
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-cpu", daemon=True)

    def _sample(self) -> None:
        for proc in psutil.Process().children(recursive=True):
            if proc.pid in self.exclude:
                continue
            try:
                self._last[proc.pid] = sum(proc.cpu_times()[:2])
            except psutil.Error:  # gone between listing and reading: its last figure stands
                continue
        self.samples.append((time.time(), sum(self._last.values())))

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> TreeCpu:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, epoch_s: float) -> float | None:
        """Cumulative CPU at ``epoch_s``, interpolated between the samples around it."""
        for (t0, c0), (t1, c1) in itertools.pairwise(self.samples):
            if t0 <= epoch_s <= t1:
                return c0 + (c1 - c0) * (epoch_s - t0) / (t1 - t0) if t1 > t0 else c0
        return None

    def between(self, start_s: float, end_s: float) -> float | None:
        a, b = self.at(start_s), self.at(end_s)
        return None if a is None or b is None else b - a


# --- the benchmark's own text, and a tokenizer that counts like the simulator ----------------------

CORPUS_DIR = Path(__file__).resolve().parents[1] / "benchmark" / "corpus"

_WORD_TOKENIZER = """
import sys
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

book, out = sys.argv[1], sys.argv[2]
tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
# Every word of the book in the vocabulary: no [UNK] in prompts cut from it.
trainer = trainers.WordLevelTrainer(
    vocab_size=10_000_000, min_frequency=1, special_tokens=["[UNK]"], show_progress=False
)
tok.train([book], trainer)
tok.save(out)
"""


def ensure_corpus_book(path: Path = ANCHOR_DATA / "corpus-book.txt") -> Path:
    """benchmark/corpus/*.txt concatenated: the text our runner cuts its prompts from."""
    text = "\n\n".join(p.read_text() for p in sorted(CORPUS_DIR.glob("*.txt")))
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def ensure_word_tokenizer(book: Path, out_dir: Path = ANCHOR_DATA / "word-tokenizer") -> Path:
    """A whitespace word-level tokenizer trained on ``book``: it counts as the simulator does.

    The simulator's token is a whitespace-separated word (simulator/tokens.py). An anchor that
    counts prompts with any other tokenizer asks for, and reports, a different number of tokens
    than the server processed (llama-benchy uses its own count when the server's usage differs
    by more than 20%: with the anchors' BPE its pp read twice the truth). Against a real server
    the anchor would load the model's own tokenizer; this is the simulator's.
    """
    stamp = out_dir / "book.sha256"
    digest = hashlib.sha256(book.read_bytes()).hexdigest()
    if (out_dir / "tokenizer.json").exists() and stamp.exists() and stamp.read_text() == digest:
        return out_dir
    ensure_venv(LLAMA_BENCHY)  # its venv has ``tokenizers``; ours does not and should not
    out_dir.mkdir(parents=True, exist_ok=True)
    python = str(executable(LLAMA_BENCHY, "python"))
    subprocess.run([python, "-c", _WORD_TOKENIZER, str(book), str(out_dir / "tokenizer.json")], check=True)
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(settings))
    stamp.write_text(digest)
    return out_dir


# --- anchors and small sums --------------------------------------------------------------------


def anchor_ready(anchor: Anchor) -> dict[str, Any] | str:
    """The anchor's install record, or why it could not be installed (no registry, say)."""
    try:
        return ensure_venv(anchor)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log(f"{anchor.name}: not installable: {exc}")
        return f"{anchor.requirement} could not be installed: {str(exc)[-500:]}"


def rel_diff(ours: float | None, theirs: float | None) -> float | None:
    """(ours - theirs) / theirs, rounded; None where either side is missing."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round((ours - theirs) / theirs, 4)


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def machine() -> dict[str, Any]:
    """What the figures are only as good as: the cores and how busy they were."""
    return {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "simulator":
        sys.exit("usage: python -m perf.bench_support simulator SIMULATOR-ARGS")
    sys.exit(_simulator_main(sys.argv[2:]))
