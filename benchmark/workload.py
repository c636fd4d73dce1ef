"""What a run measures, as validated, seeded pydantic models saved with every run.

Two kinds, as the field knows them:
- ``sweep``: serving under load. Concurrency levels (closed loop: N requests in
  flight) or request rates (open loop: each request goes out at its intended
  time whether or not earlier ones have finished).
- ``depth``: llama-bench style, one request at a time: prompt processing (pp)
  and generation (tg) speed at several context depths, N runs per cell.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

MAX_LEVELS = 32
MAX_CONCURRENCY = 4096
MAX_TOKENS = 1_000_000


class LengthSpec(BaseModel):
    """A token length drawn per request from a normal distribution, clipped to >= 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: Annotated[int, Field(ge=1, le=MAX_TOKENS)]
    sd: Annotated[float, Field(ge=0, le=MAX_TOKENS, allow_inf_nan=False)] = 0.0

    @classmethod
    def parse(cls, text: str) -> LengthSpec:
        """``"128"``, ``"128:16"`` or ``"128+-16"`` (mean and standard deviation)."""
        parts = re.split(r"\s*(?::|\+-|±)\s*", text.strip())
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise ValueError(f"a length is MEAN or MEAN:SD, e.g. 128 or 128:16, not {text!r}")
        try:
            mean = int(parts[0])
            sd = float(parts[1]) if len(parts) == 2 else 0.0
        except ValueError:
            raise ValueError(f"a length is MEAN or MEAN:SD with numbers, e.g. 128:16, not {text!r}") from None
        return cls(mean=mean, sd=sd)

    def label(self) -> str:
        return f"{self.mean}" if not self.sd else f"{self.mean}±{self.sd:g}"


class GoodputLimits(BaseModel):
    """A request counts towards goodput only if it meets every limit given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ttft_ms: Annotated[float, Field(gt=0)] | None = None
    itl_ms: Annotated[float, Field(gt=0)] | None = None


class Sampling(BaseModel):
    """What makes runs comparable: fixed sampling, and the output length actually enforced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    seed: int = 0  # seeds the prompts and arrivals too, so a run can be repeated exactly
    # Sent as ignore_eos (and min_tokens = max_tokens) so a model that would stop early still
    # produces the requested length; engines that ignore these are caught by the results'
    # "output length honoured" figure.
    ignore_eos: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0  # longest silence within one request


class SweepWorkload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["sweep"] = "sweep"
    concurrency: list[Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]] | None = None
    rates: list[Annotated[float, Field(gt=0, le=100_000)]] | None = None  # requests per second
    arrival: Literal["poisson", "constant"] = "poisson"  # for rates only
    requests_per_level: PositiveInt | None = 32
    seconds_per_level: Annotated[float, Field(gt=0, le=86_400)] | None = None
    warmup_requests: Annotated[int, Field(ge=0, le=10_000)] = 2
    input_tokens: LengthSpec = LengthSpec(mean=128)
    output_tokens: LengthSpec = LengthSpec(mean=128)
    prompt_file: str | None = None  # JSONL, one {"messages": [...]} (or a messages list) per line
    limits: GoodputLimits = GoodputLimits()
    sampling: Sampling = Sampling()

    @model_validator(mode="after")
    def _one_axis(self) -> SweepWorkload:
        if (self.concurrency is None) == (self.rates is None):
            raise ValueError("give either concurrency levels or request rates, not both or neither")
        levels = self.concurrency or self.rates or []
        if not 1 <= len(levels) <= MAX_LEVELS:
            raise ValueError(f"give 1-{MAX_LEVELS} levels, not {len(levels)}")
        if self.requests_per_level is None and self.seconds_per_level is None:
            raise ValueError("give requests per level or seconds per level")
        return self

    @property
    def levels(self) -> list[float]:
        return list(self.concurrency or self.rates or [])

    @property
    def axis(self) -> Literal["concurrency", "rate"]:
        return "concurrency" if self.concurrency is not None else "rate"

    def summary(self) -> str:
        each = f"{self.requests_per_level} requests" if self.requests_per_level else ""
        if self.seconds_per_level:
            each = f"{each} or {self.seconds_per_level:g} s" if each else f"{self.seconds_per_level:g} s"
        levels = ",".join(f"{v:g}" for v in self.levels)
        source = self.prompt_file or f"isl {self.input_tokens.label()}"
        return f"{self.axis} {levels} x {each}, {source}, osl {self.output_tokens.label()}"


class DepthWorkload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["depth"] = "depth"
    pp: list[Annotated[int, Field(ge=1, le=MAX_TOKENS)]] = [512]
    tg: list[Annotated[int, Field(ge=1, le=MAX_TOKENS)]] = [32]
    depths: list[Annotated[int, Field(ge=0, le=MAX_TOKENS)]] = [0]
    runs: Annotated[int, Field(ge=1, le=100)] = 3
    # Load the context first, then measure the prompt over the cached context (what a chat
    # with a long history sees). Off: every run sends a fresh, never-seen context.
    prefix_cache: bool = False
    sampling: Sampling = Sampling()

    @field_validator("pp", "tg", "depths")
    @classmethod
    def _some(cls, values: list[int]) -> list[int]:
        if not 1 <= len(values) <= MAX_LEVELS:
            raise ValueError(f"give 1-{MAX_LEVELS} values, not {len(values)}")
        return values

    def cells(self) -> list[tuple[int, int, int]]:
        """(pp, tg, depth) in llama-bench's order: depth outermost, so a table reads top-down."""
        return [(p, t, d) for d in self.depths for p in self.pp for t in self.tg]

    def summary(self) -> str:
        join = ",".join
        cache = ", prefix cache" if self.prefix_cache else ""
        return (
            f"pp {join(map(str, self.pp))} tg {join(map(str, self.tg))} "
            f"@ depth {join(map(str, self.depths))} x {self.runs} runs{cache}"
        )


Workload = SweepWorkload | DepthWorkload
# A stored or posted workload's ``kind`` names its model.
WORKLOADS: Final[dict[str, type[SweepWorkload] | type[DepthWorkload]]] = {
    "sweep": SweepWorkload,
    "depth": DepthWorkload,
}


def parse_levels(text: str, *, integers: bool, allow_zero: bool = False) -> list[float]:
    """``"1,8,64"`` -> [1, 8, 64]; a clear error naming the bad item otherwise."""
    values: list[float] = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value: float = int(item) if integers else float(item)
        except ValueError:
            kind = "whole numbers" if integers else "numbers"
            raise ValueError(f"levels are {kind} separated by commas, e.g. 1,8,64; {item!r} is not") from None
        if value < 0 or (value == 0 and not allow_zero):
            floor = "0 or more" if allow_zero else "above 0"
            raise ValueError(f"every value must be {floor}; {item!r} is not")
        values.append(value)
    return values
