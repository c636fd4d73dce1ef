"""Command-line knobs of the simulator, parsed into one frozen ``SimConfig``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

ENGINES = ("nim", "llamacpp", "vllm")

# Exit codes are part of the contract with the lifecycle code and its tests.
EXIT_OK = 0
EXIT_FAIL_START = 3
EXIT_BIND_FAILED = 4
DEFAULT_CRASH_EXIT_CODE = 1

DEFAULT_PREFIX_CACHE_TOKENS = 65536
DEFAULT_MAX_MODEL_LEN = 4096


@dataclass(frozen=True)
class SimConfig:
    engine: str
    port: int
    model_id: str
    host: str = "127.0.0.1"
    startup_s: float = 0.0
    ttft_ms: float = 100.0
    tokens_per_s: float = 50.0
    crash_after_s: float | None = None
    crash_exit_code: int = DEFAULT_CRASH_EXIT_CODE
    fail_start: bool = False
    ignore_sigterm: bool = False
    max_tokens_default: int = 64
    serve_while_loading: bool = False
    # The serving model (simulator/serving.py); every default leaves the timing above unchanged.
    prefill_tokens_per_s: float = 0.0  # 0: prefill is instant
    decode_slowdown_per_1k: float = 0.0
    max_batch: int = 0  # 0: no limit
    batch_slowdown: float = 0.0
    prefix_cache_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS  # 0: off
    reasoning_tokens: int = 0
    natural_length: int = 0  # 0: every reply runs to max_tokens
    early_role_frame: bool = False  # the role-only frame at arrival instead of with the first token
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    # Required as "Authorization: Bearer <key>" on /v1/*, as vLLM's and llama-server's --api-key.
    api_key: str | None = field(default=None, repr=False)

    @property
    def ttft_s(self) -> float:
        return self.ttft_ms / 1000.0


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number > 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def _exit_code(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must be 1..255 (0 would look like a clean stop), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulated NIM / llama.cpp / vLLM model server with deterministic timing.",
    )
    p.add_argument("--engine", choices=ENGINES, required=True, help="which server's HTTP dialect to speak")
    p.add_argument("--port", type=int, required=True, help="TCP port (0 lets the OS pick; see the log)")
    p.add_argument("--model-id", required=True, help="model name served in /v1/models and replies")
    p.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 inside a container)")
    p.add_argument("--startup-s", type=_non_negative, default=0.0, help="seconds from start until ready")
    p.add_argument("--ttft-ms", type=_non_negative, default=100.0, help="request arrival to first token")
    p.add_argument("--tokens-per-s", type=_positive, default=50.0, help="token rate after the first one")
    p.add_argument(
        "--crash-after-s", type=_positive, default=None, help="exit abruptly this long after start"
    )
    p.add_argument(
        "--crash-exit-code",
        type=_exit_code,
        default=DEFAULT_CRASH_EXIT_CODE,
        help=f"exit code of --crash-after-s (default {DEFAULT_CRASH_EXIT_CODE}; 137 mimics an OOM kill)",
    )
    p.add_argument("--fail-start", action="store_true", help=f"exit {EXIT_FAIL_START} before listening")
    p.add_argument("--ignore-sigterm", action="store_true", help="survive SIGTERM; only SIGKILL ends it")
    p.add_argument(
        "--max-tokens-default",
        type=_positive_int,
        default=64,
        help="reply length in tokens when a request sets no max_tokens",
    )
    p.add_argument(
        "--serve-while-loading",
        action="store_true",
        help="vllm only: answer HTTP while loading (/health 200, empty /v1/models) instead of "
        "refusing connections like real vLLM",
    )
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require the key in this environment variable as a bearer token on /v1/* (the key "
        "itself never goes on a command line)",
    )
    _add_serving_model(p)
    return p


def _add_serving_model(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("serving model", "how prompts, batches and replies shape the timing")
    g.add_argument(
        "--prefill-tokens-per-s",
        type=_non_negative,
        default=0.0,
        help="prompt processing rate: TTFT grows by uncached prompt tokens / rate (default 0: instant)",
    )
    g.add_argument(
        "--decode-slowdown-per-1k",
        type=_non_negative,
        default=0.0,
        help="K: a request's token rate is tokens-per-s / (1 + K * prompt tokens / 1000)",
    )
    g.add_argument(
        "--max-batch",
        type=_non_negative_int,
        default=0,
        help="at most this many sequences decode at once, the rest wait in FIFO order (0: no limit)",
    )
    g.add_argument(
        "--batch-slowdown",
        type=_non_negative,
        default=0.0,
        help="S: joining a batch of n sequences stretches the token interval by 1 + S * (n - 1)",
    )
    g.add_argument(
        "--prefix-cache-tokens",
        type=_non_negative_int,
        default=DEFAULT_PREFIX_CACHE_TOKENS,
        help="LRU prefix cache size in tokens, blocks of 16; only uncached tokens cost prefill "
        f"(default {DEFAULT_PREFIX_CACHE_TOKENS}; 0: off)",
    )
    g.add_argument(
        "--reasoning-tokens",
        type=_non_negative_int,
        default=0,
        help="the first N tokens of a reply stream on the reasoning channel",
    )
    g.add_argument(
        "--early-role-frame",
        action="store_true",
        help="send the role-only first frame on arrival, before queueing and prefill (real vLLM and "
        "llama-server send it with the first token): a trap for clients that take it for a token",
    )
    g.add_argument(
        "--natural-length",
        type=_non_negative_int,
        default=0,
        help="replies stop (finish_reason stop) after N tokens unless the request sets ignore_eos "
        "or min_tokens >= max_tokens (default 0: replies run to max_tokens)",
    )
    g.add_argument(
        "--max-model-len",
        type=_positive_int,
        default=DEFAULT_MAX_MODEL_LEN,
        help="context length reported by /props, /slots and /tokenize (not enforced)",
    )


def parse_args(argv: Sequence[str] | None = None) -> SimConfig:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not 0 <= ns.port <= 65535:
        parser.error(f"--port must be 0..65535, got {ns.port}")
    api_key = None
    if ns.api_key_env:
        api_key = os.environ.get(ns.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env {ns.api_key_env}: that environment variable is not set")
    if ns.serve_while_loading and ns.engine != "vllm":
        parser.error("--serve-while-loading only applies to --engine vllm (the others always answer)")
    return SimConfig(
        engine=ns.engine,
        port=ns.port,
        model_id=ns.model_id,
        host=ns.host,
        startup_s=ns.startup_s,
        ttft_ms=ns.ttft_ms,
        tokens_per_s=ns.tokens_per_s,
        crash_after_s=ns.crash_after_s,
        crash_exit_code=ns.crash_exit_code,
        fail_start=ns.fail_start,
        ignore_sigterm=ns.ignore_sigterm,
        max_tokens_default=ns.max_tokens_default,
        serve_while_loading=ns.serve_while_loading,
        prefill_tokens_per_s=ns.prefill_tokens_per_s,
        decode_slowdown_per_1k=ns.decode_slowdown_per_1k,
        max_batch=ns.max_batch,
        batch_slowdown=ns.batch_slowdown,
        prefix_cache_tokens=ns.prefix_cache_tokens,
        reasoning_tokens=ns.reasoning_tokens,
        natural_length=ns.natural_length,
        early_role_frame=ns.early_role_frame,
        max_model_len=ns.max_model_len,
        api_key=api_key,
    )
