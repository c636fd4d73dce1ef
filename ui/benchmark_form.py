"""The benchmark page's form as plain values: a preset fills them, the values build a workload.

Pure: no streamlit. The page keeps one value per field (``FIELDS``) in session state; here
those values become a validated ``SweepWorkload`` or ``DepthWorkload``, and every problem is
reported under the field the person has to fix, pydantic's errors included (their ``loc``
names the workload field, which ``_FIELD_OF_LOC`` maps back to a form field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from benchmark.presets import PRESETS
from benchmark.workload import (
    MAX_LEVELS,
    DepthWorkload,
    SweepWorkload,
    Workload,
    parse_levels,
)

CUSTOM: Final = "custom"
PRESET_NAMES: Final = tuple(PRESETS)  # what the preset buttons offer; CUSTOM is any edited form
PRESET_LABELS: Final = {"quick": "Quick", "depth": "Depth", CUSTOM: "Custom"}
# Under the preset buttons: what Start would run, so the form never hides an edit.
PRESET_NOTES: Final = {
    **{name: f"Start runs the {PRESET_LABELS[name]} preset: {w.summary()}." for name, w in PRESETS.items()},
    CUSTOM: "Start runs a custom workload (the fields below); a preset button fills them again.",
}
KINDS: Final = {"sweep": "Sweep (serving under load)", "depth": "Depth (llama-bench style)"}
AXES: Final = {"concurrency": "Concurrency (requests in flight)", "rates": "Rate (requests per second)"}
GENERAL: Final = "general"  # errors that belong to no single field: shown by the Start button

# Every form field, grouped by the workload kind that uses it (sampling is shared).
SWEEP_FIELDS: Final = (
    "axis",
    "levels",
    "arrival",
    "requests_per_level",
    "seconds_per_level",
    "warmup_requests",
    "isl_mean",
    "isl_sd",
    "osl_mean",
    "osl_sd",
    "ttft_limit_ms",
    "itl_limit_ms",
)
DEPTH_FIELDS: Final = ("pp", "tg", "depths", "runs", "prefix_cache")
SAMPLING_FIELDS: Final = ("temperature", "seed", "ignore_eos", "timeout_s")
FIELDS: Final = ("kind", *SWEEP_FIELDS, *DEPTH_FIELDS, *SAMPLING_FIELDS)

# Where pydantic reports a problem (its loc without list indexes) -> the form field to mark.
_FIELD_OF_LOC: Final[Mapping[tuple[str, ...], str]] = {
    ("concurrency",): "levels",
    ("rates",): "levels",
    ("arrival",): "arrival",
    ("requests_per_level",): "requests_per_level",
    ("seconds_per_level",): "seconds_per_level",
    ("warmup_requests",): "warmup_requests",
    ("input_tokens", "mean"): "isl_mean",
    ("input_tokens", "sd"): "isl_sd",
    ("output_tokens", "mean"): "osl_mean",
    ("output_tokens", "sd"): "osl_sd",
    ("limits", "ttft_ms"): "ttft_limit_ms",
    ("limits", "itl_ms"): "itl_limit_ms",
    ("pp",): "pp",
    ("tg",): "tg",
    ("depths",): "depths",
    ("runs",): "runs",
    ("prefix_cache",): "prefix_cache",
    ("sampling", "temperature"): "temperature",
    ("sampling", "seed"): "seed",
    ("sampling", "ignore_eos"): "ignore_eos",
    ("sampling", "timeout_s"): "timeout_s",
}


def _join(values: list[int] | list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _sweep_values(w: SweepWorkload) -> dict[str, Any]:
    return {
        "axis": w.axis if w.axis == "concurrency" else "rates",
        "levels": _join(w.levels),
        "arrival": w.arrival,
        "requests_per_level": w.requests_per_level,
        "seconds_per_level": w.seconds_per_level,
        "warmup_requests": w.warmup_requests,
        "isl_mean": w.input_tokens.mean,
        "isl_sd": float(w.input_tokens.sd),
        "osl_mean": w.output_tokens.mean,
        "osl_sd": float(w.output_tokens.sd),
        "ttft_limit_ms": w.limits.ttft_ms,
        "itl_limit_ms": w.limits.itl_ms,
    }


def _depth_values(w: DepthWorkload) -> dict[str, Any]:
    return {
        "pp": _join(w.pp),
        "tg": _join(w.tg),
        "depths": _join(w.depths),
        "runs": w.runs,
        "prefix_cache": w.prefix_cache,
    }


def _sampling_values(w: Workload) -> dict[str, Any]:
    s = w.sampling
    return {
        "temperature": s.temperature,
        "seed": s.seed,
        "ignore_eos": s.ignore_eos,
        "timeout_s": s.timeout_s,
    }


def form_values(workload: Workload) -> dict[str, Any]:
    """Every field's value for ``workload``; the other kind's fields keep their preset's values,
    so switching kind in Custom starts from something sensible."""
    sweep, depth = PRESETS["quick"], PRESETS["depth"]
    assert isinstance(sweep, SweepWorkload)
    assert isinstance(depth, DepthWorkload)
    values: dict[str, Any] = {"kind": workload.kind, **_sweep_values(sweep), **_depth_values(depth)}
    if isinstance(workload, SweepWorkload):
        values.update(_sweep_values(workload))
    else:
        values.update(_depth_values(workload))
    values.update(_sampling_values(workload))
    return values


def preset_values(name: str) -> dict[str, Any]:
    return form_values(PRESETS[name])


@dataclass(frozen=True)
class FormResult:
    workload: Workload | None
    errors: dict[str, str] = field(default_factory=dict)  # form field (or GENERAL) -> message


def _levels(values: Mapping[str, Any], name: str, *, integers: bool, errors: dict[str, str]) -> list[float]:
    text = str(values.get(name) or "").strip()
    if not text:
        errors[name] = "give at least one value, e.g. 1, 4, 16"
        return []
    try:
        # Zero passes here on purpose: the workload's own bounds then say what is allowed.
        levels = parse_levels(text, integers=integers, allow_zero=True)
    except ValueError as exc:
        errors[name] = str(exc)
        return []
    if len(levels) > MAX_LEVELS:
        errors[name] = f"give at most {MAX_LEVELS} values, not {len(levels)}"
    return levels


def _sampling(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: values.get(name) for name in SAMPLING_FIELDS}


def _sweep_raw(values: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    axis = "rates" if values.get("axis") == "rates" else "concurrency"
    levels = _levels(values, "levels", integers=axis == "concurrency", errors=errors)
    if values.get("requests_per_level") is None and values.get("seconds_per_level") is None:
        errors["requests_per_level"] = "give requests per level, seconds per level, or both"
    return {
        "kind": "sweep",
        axis: levels,
        "arrival": values.get("arrival"),
        "requests_per_level": values.get("requests_per_level"),
        "seconds_per_level": values.get("seconds_per_level"),
        "warmup_requests": values.get("warmup_requests"),
        "input_tokens": {"mean": values.get("isl_mean"), "sd": values.get("isl_sd") or 0.0},
        "output_tokens": {"mean": values.get("osl_mean"), "sd": values.get("osl_sd") or 0.0},
        "limits": {"ttft_ms": values.get("ttft_limit_ms"), "itl_ms": values.get("itl_limit_ms")},
        "sampling": _sampling(values),
    }


def _depth_raw(values: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "depth",
        "pp": _levels(values, "pp", integers=True, errors=errors),
        "tg": _levels(values, "tg", integers=True, errors=errors),
        "depths": _levels(values, "depths", integers=True, errors=errors),
        "runs": values.get("runs"),
        "prefix_cache": bool(values.get("prefix_cache")),
        "sampling": _sampling(values),
    }


def field_of(loc: tuple[int | str, ...]) -> str:
    """The form field a pydantic error location points at; GENERAL when it names none."""
    names = tuple(str(part) for part in loc if not isinstance(part, int))
    return _FIELD_OF_LOC.get(names) or _FIELD_OF_LOC.get(names[:1]) or GENERAL


def _message(error: Mapping[str, Any]) -> str:
    text = str(error["msg"]).removeprefix("Value error, ")
    # A list item's error says which value is wrong: "greater than or equal to 1 (got 0)".
    if any(isinstance(part, int) for part in error["loc"]):
        text = f"{text} (got {error['input']!r})"
    return text


def matching_preset(values: Mapping[str, Any]) -> str:
    """The preset the form would run, or CUSTOM: judged on the workload built, so "1,4,16" and
    "1, 4, 16" are both Quick, and the other kind's fields (kept for switching back) don't count."""
    workload = build_workload(values).workload
    return next((name for name, preset in PRESETS.items() if workload == preset), CUSTOM)


def build_workload(values: Mapping[str, Any]) -> FormResult:
    """The workload the form describes, or the errors per field (the first one per field)."""
    errors: dict[str, str] = {}
    sweep = values.get("kind") != "depth"
    raw = _sweep_raw(values, errors) if sweep else _depth_raw(values, errors)
    if errors:
        return FormResult(None, errors)
    model = SweepWorkload if sweep else DepthWorkload
    try:
        return FormResult(model.model_validate(raw))
    except ValidationError as exc:
        for error in exc.errors():
            errors.setdefault(field_of(error["loc"]), _message(error))
        return FormResult(None, errors)
