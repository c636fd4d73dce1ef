"""The benchmark page's building blocks: model picker, workload form, live runs, results, compare.

Runs belong to the app's ``BenchmarkJobs`` (started in the lifespan), never to this script: a
reload, a closed tab or a second browser only changes who watches. The decisions live in the
pure modules (``ui.benchmark_form``, ``ui.benchmark_view``, ``ui.benchmark_tables``,
``ui.benchmark_charts``); here they become widgets. Widget state lives under ``bench:`` keys.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import streamlit as st

from benchmark.export import run_to_csv, run_to_json
from benchmark.records import RunRecord, RunStatus
from lifecycle.core.errors import LifecycleError
from lifecycle.service import LifecycleService
from service_access import ServiceNotRunning, get_benchmarks, get_service
from ui.benchmark_charts import (
    depth_chart,
    excluded_levels,
    itl_chart,
    throughput_chart,
    token_gaps_chart,
    tradeoff_chart,
    ttft_chart,
    ttft_histogram,
)
from ui.benchmark_form import (
    AXES,
    CUSTOM,
    FIELDS,
    GENERAL,
    KINDS,
    PRESET_LABELS,
    build_workload,
    preset_values,
)
from ui.benchmark_tables import METRIC_HELP, comparison_rows, depth_rows, run_markdown, sweep_rows, verdicts
from ui.benchmark_view import (
    ALL,
    KIND_LABELS,
    STATUS_LABELS,
    RunFilters,
    ended_since,
    export_name,
    filter_runs,
    history_rows,
    model_name,
    model_rows,
    request_options,
    run_caption,
    run_dot,
    run_option,
    run_progress,
    store_query,
)
from ui.format import escape_md
from ui.session_gate import signed_in

if TYPE_CHECKING:
    from benchmark.jobs import BenchmarkJobs


class RunStore(Protocol):
    """What the page reads of the benchmark store (``ui/`` may not import ``db``)."""

    def list(
        self,
        model_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> builtins.list[RunRecord]: ...

    def get(self, run_id: str, with_requests: bool = True) -> RunRecord | None: ...


LIVE_S: Final = 1.0  # progress bars: about as often as the runner reports
MODELS_S: Final = 2.0  # model picker: a model being loaded turns selectable without a click
HISTORY_LIMIT: Final = 200
PRESET_KEY: Final = "bench:preset"
ERRORS_KEY: Final = "bench:errors"  # form field -> message, from the last Start
NOTICE_KEY: Final = "bench:notice"  # what the last command did, shown once
ACTIVE_KEY: Final = "bench:active"  # run ids the live part saw last time
SHOW_KEY: Final = "bench:show"
MODEL_KEY_PREFIX: Final = "bench:model:"
LOAD_KEY_PREFIX: Final = "bench:load:"
CANCEL_KEY_PREFIX: Final = "bench:cancel:"
START_KEY: Final = "bench:start"
SIGN_IN: Final = "sign in first: this app is protected by a token"


def fkey(name: str) -> str:
    """The session-state key of a form field (tests set fields through it too)."""
    return f"bench:{name}"


def require_benchmarks() -> tuple[BenchmarkJobs, RunStore]:
    try:
        return get_benchmarks()
    except ServiceNotRunning as exc:
        st.error(str(exc), icon=":material/power_off:")
        st.stop()


def _notice(kind: str, text: str) -> None:
    st.session_state.setdefault(NOTICE_KEY, []).append((kind, text))


def _show_notices() -> None:
    for kind, text in st.session_state.pop(NOTICE_KEY, []):
        (st.success if kind == "ok" else st.error)(escape_md(text))


# --- models --------------------------------------------------------------------------------------


def _load(model_id: str) -> None:
    """Load button callback, as the model dialog's: the service loads in the background."""
    if not signed_in():  # callbacks run before the page's own gate
        _notice("error", SIGN_IN)
        return
    try:
        get_service().load(model_id, actor="ui")
    except LifecycleError as exc:
        _notice("error", str(exc))


def selected_models() -> list[str]:
    prefix = MODEL_KEY_PREFIX
    return [k.removeprefix(prefix) for k, v in st.session_state.items() if str(k).startswith(prefix) and v]


@st.fragment(run_every=MODELS_S)
def model_picker() -> None:
    service, (jobs, _) = get_service(), get_benchmarks()
    rows = model_rows(service.status(), jobs.active(), time.time())
    if not rows:
        st.caption("The catalog lists no models: add them to models.yaml.")
        return
    st.markdown("**Models**")
    for row in rows:
        with st.container(horizontal=True, vertical_alignment="center"):
            key = MODEL_KEY_PREFIX + row.id
            if not row.selectable:
                st.session_state[key] = False  # a model that stopped can't stay picked
            st.checkbox(row.label, key=key, disabled=not row.selectable, width="content")
            busy = f" · {row.busy} benchmark(s) queued or running" if row.busy else ""
            st.caption(row.status + busy, width="content")
            if row.offer_load:
                st.button(
                    "Load",
                    key=LOAD_KEY_PREFIX + row.id,
                    icon=":material/rocket_launch:",
                    on_click=_load,
                    args=(row.id,),
                )


# --- the workload form ---------------------------------------------------------------------------


def _fill(values: dict[str, Any]) -> None:
    for name in FIELDS:
        st.session_state[fkey(name)] = values[name]


def _apply_preset() -> None:
    """The preset picker's callback: a named preset fills every field (Custom keeps them)."""
    chosen = st.session_state[PRESET_KEY]
    if chosen != CUSTOM:
        _fill(preset_values(chosen))
    st.session_state.pop(ERRORS_KEY, None)


def _edited(name: str) -> None:
    """Any edit makes the form Custom, so the preset shown is always what Start would run."""
    st.session_state[PRESET_KEY] = CUSTOM
    st.session_state.get(ERRORS_KEY, {}).pop(name, None)


def _init_form() -> None:
    if PRESET_KEY not in st.session_state:
        st.session_state[PRESET_KEY] = "quick"
    # Streamlit forgets the state of widgets it did not draw (the other kind's fields), so
    # missing ones start again from the presets.
    defaults = preset_values("depth" if st.session_state.get(fkey("kind")) == "depth" else "quick")
    for name in FIELDS:
        if fkey(name) not in st.session_state:
            st.session_state[fkey(name)] = defaults[name]


def _field(name: str, widget: Callable[..., Any], label: str, **kwargs: Any) -> None:
    """A form widget with its validation message right under it."""
    widget(label, key=fkey(name), on_change=_edited, args=(name,), **kwargs)
    if message := st.session_state.get(ERRORS_KEY, {}).get(name):
        st.error(escape_md(message), icon=":material/error:")


def _grid(fields: Sequence[tuple[str, Callable[..., Any], str, dict[str, Any]]], per_row: int = 4) -> None:
    for start in range(0, len(fields), per_row):
        columns = st.columns(per_row)
        for column, (name, widget, label, kwargs) in zip(
            columns, fields[start : start + per_row], strict=False
        ):
            with column:
                _field(name, widget, label, **kwargs)


def _int(**extra: Any) -> dict[str, Any]:
    # No min/max here: the workload's own bounds judge, and say so next to the field.
    return {"step": 1, "format": "%d", **extra}


def _sweep_fields() -> None:
    rates = st.session_state.get(fkey("axis")) == "rates"
    _grid(
        [
            ("axis", st.radio, "Load", {"options": list(AXES), "format_func": AXES.get}),
            (
                "levels",
                st.text_input,
                "Levels",
                {"help": "Comma-separated, e.g. 1, 4, 16 (or rates 0.5, 2, 8)"},
            ),
            (
                "arrival",
                st.selectbox,
                "Arrival",
                {
                    "options": ["poisson", "constant"],
                    "disabled": not rates,
                    "help": "How requests are spaced at a given rate",
                },
            ),
            ("warmup_requests", st.number_input, "Warm-up requests", _int()),
            ("requests_per_level", st.number_input, "Requests per level", _int(value=None)),
            (
                "seconds_per_level",
                st.number_input,
                "Seconds per level",
                {"value": None, "step": 10.0, "help": "Optional time limit per level"},
            ),
            ("isl_mean", st.number_input, "Input tokens (mean)", _int()),
            ("isl_sd", st.number_input, "Input tokens (sd)", {"step": 8.0}),
            ("osl_mean", st.number_input, "Output tokens (mean)", _int()),
            ("osl_sd", st.number_input, "Output tokens (sd)", {"step": 8.0}),
            (
                "ttft_limit_ms",
                st.number_input,
                "Goodput: TTFT limit (ms)",
                {"value": None, "step": 50.0, "help": "Optional"},
            ),
            (
                "itl_limit_ms",
                st.number_input,
                "Goodput: ITL limit (ms)",
                {"value": None, "step": 5.0, "help": "Optional"},
            ),
        ]
    )


def _depth_fields() -> None:
    _grid(
        [
            ("pp", st.text_input, "Prompt tokens (pp)", {"help": "Comma-separated, e.g. 512, 2048"}),
            ("tg", st.text_input, "Generated tokens (tg)", {"help": "Comma-separated, e.g. 32, 128"}),
            ("depths", st.text_input, "Context depths", {"help": "Comma-separated, e.g. 0, 4096, 8192"}),
            ("runs", st.number_input, "Runs per cell", _int()),
            (
                "prefix_cache",
                st.checkbox,
                "Prefix cache",
                {"help": "Load the context first, then measure the prompt over the cached context"},
            ),
        ]
    )


def _sampling_fields() -> None:
    _grid(
        [
            ("temperature", st.number_input, "Temperature", {"step": 0.1}),
            ("seed", st.number_input, "Seed", _int(help="Seeds prompts and arrivals: a run can be repeated")),
            ("timeout_s", st.number_input, "Timeout (s of silence)", {"step": 30.0}),
            (
                "ignore_eos",
                st.checkbox,
                "Ignore EOS",
                {"help": "Ask for exactly the requested output length"},
            ),
        ]
    )


def workload_form() -> None:
    _init_form()
    st.radio(
        "Preset",
        list(PRESET_LABELS),
        format_func=PRESET_LABELS.get,
        key=PRESET_KEY,
        on_change=_apply_preset,
        horizontal=True,
    )
    _field("kind", st.radio, "Kind", options=list(KINDS), format_func=KINDS.get, horizontal=True)
    if st.session_state[fkey("kind")] == "depth":
        _depth_fields()
    else:
        _sweep_fields()
    with st.expander("Sampling", expanded=True):
        _sampling_fields()


def _start() -> None:
    """Start callback: one run per picked model, queued in the app's BenchmarkJobs."""
    if not signed_in():
        _notice("error", SIGN_IN)
        return
    result = build_workload({name: st.session_state.get(fkey(name)) for name in FIELDS})
    errors = dict(result.errors)
    models = selected_models()
    if not models:
        errors[GENERAL] = "pick at least one loaded model"
    st.session_state[ERRORS_KEY] = errors
    if errors or result.workload is None:
        return
    jobs, _ = get_benchmarks()
    for model_id in models:
        try:
            job = jobs.submit(model_id, result.workload, actor="ui")
        except LifecycleError as exc:
            _notice("error", f"{model_id}: {exc}")
        else:
            _notice(
                "ok", f"{model_id}: run {job.run_id} queued; it runs in the app, so it goes on if you leave"
            )


def start_button() -> None:
    st.button("Start", key=START_KEY, type="primary", icon=":material/play_arrow:", on_click=_start)
    if message := st.session_state.get(ERRORS_KEY, {}).get(GENERAL):
        st.error(escape_md(message), icon=":material/error:")
    _show_notices()


# --- live runs -----------------------------------------------------------------------------------


def _cancel(run_id: str) -> None:
    if not signed_in():
        _notice("error", SIGN_IN)
        return
    jobs, _ = get_benchmarks()
    try:
        jobs.cancel(run_id)
    except LifecycleError as exc:
        _notice("error", str(exc))
    else:
        _notice("ok", f"run {run_id} cancelled: what it measured so far is kept as partial")


@st.fragment(run_every=LIVE_S)
def live_runs() -> None:
    """Queued and running runs with a bar per level; only this part refreshes while they run."""
    jobs, _ = get_benchmarks()
    views = jobs.active()
    before = st.session_state.get(ACTIVE_KEY, [])
    st.session_state[ACTIVE_KEY] = [str(v["run_id"]) for v in views]
    if ended := ended_since(before, views):
        # A run ended: show it among the results, and redraw the page around this live part,
        # whose history and results are stale now. (A run cancelled while queued was never
        # stored; the results' picker drops ids it does not know.)
        shown = st.session_state.get(SHOW_KEY)
        if shown is not None:
            st.session_state[SHOW_KEY] = [*shown, *sorted(ended - set(shown))]
        st.rerun(scope="app")
    if not views:
        return
    st.markdown("**In progress**")
    for progress in map(run_progress, views):
        with st.container(border=True):
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(progress.headline, width="stretch")
                st.button(
                    "Cancel",
                    key=CANCEL_KEY_PREFIX + progress.run_id,
                    icon=":material/stop:",
                    on_click=_cancel,
                    args=(progress.run_id,),
                )
            for line in progress.levels:
                if line.fraction is None:
                    st.caption(line.text)
                else:
                    st.progress(line.fraction, text=line.text)
            if not progress.levels and not progress.queued:
                st.caption("Starting: reading the server's facts, then the warm-up requests")


# --- results -------------------------------------------------------------------------------------


def _filters(service: LifecycleService) -> RunFilters:
    with st.container(horizontal=True):
        picked = st.session_state.get("bench:f:models", [])
        options = sorted({s.id for s in service.status()} | set(picked))
        models = st.multiselect("Model", options, key="bench:f:models", placeholder="All models")
        kind = st.selectbox("Kind", list(KIND_LABELS), format_func=KIND_LABELS.get, key="bench:f:kind")
        status = st.selectbox(
            "Status", list(STATUS_LABELS), format_func=STATUS_LABELS.get, key="bench:f:status"
        )
        days = st.date_input("Started between", value=(), key="bench:f:days")
    chosen = list(days) if isinstance(days, (tuple, list)) else [days]
    return RunFilters(
        models=tuple(models),
        kind=kind or ALL,
        status=status or ALL,
        first_day=chosen[0] if chosen else None,
        last_day=chosen[-1] if chosen else None,
    )


def _table(rows: list[dict[str, Any]]) -> None:
    help_for = {
        c: st.column_config.Column(help=METRIC_HELP[c]) for c in (rows[0] if rows else {}) if c in METRIC_HELP
    }
    st.dataframe(rows, hide_index=True, column_config=help_for)


def _run_block(run: RunRecord) -> None:
    st.markdown(f"{run_dot(run.status)} **{escape_md(model_name(run))}** · run `{run.run_id}`")
    st.caption(run_caption(run))
    if run.status == RunStatus.RUNNING:
        st.caption("Still running: the figures fill in as levels finish.")
    _table(depth_rows(run) if run.kind == "depth" else sweep_rows(run))
    with st.container(horizontal=True):
        st.download_button(
            "CSV",
            run_to_csv(run),
            file_name=export_name(run, "csv"),
            mime="text/csv",
            icon=":material/download:",
            on_click="ignore",
            key=f"bench:csv:{run.run_id}",
        )
        st.download_button(
            "JSON",
            json.dumps(run_to_json(run)),
            file_name=export_name(run, "json"),
            mime="application/json",
            icon=":material/download:",
            on_click="ignore",
            key=f"bench:json:{run.run_id}",
        )
    with st.expander("Markdown table to copy"):
        st.code(run_markdown(run), language="markdown")


def _charts(runs: list[RunRecord]) -> None:
    sweeps = [r for r in runs if r.kind == "sweep"]
    depths = [r for r in runs if r.kind == "depth"]
    charts = [throughput_chart(sweeps), ttft_chart(sweeps), itl_chart(sweeps), tradeoff_chart(sweeps)]
    charts += [ttft_histogram(sweeps), depth_chart(depths)]
    for chart in charts:
        if chart is not None:
            st.altair_chart(chart, width="stretch")
    excluded = excluded_levels(runs)
    if excluded:
        st.markdown(
            "**Left out of the charts** (the runner voided these levels: it measured itself, not the server)"
        )
        st.markdown("\n".join(f"- {escape_md(line)}" for line in excluded))


def _token_gaps(runs: list[RunRecord]) -> None:
    st.markdown("**Token gaps of one request**")
    by_id = {r.run_id: r for r in runs}
    with st.container(horizontal=True):
        run_id = st.selectbox(
            "Run", list(by_id), format_func=lambda i: run_option(by_id[i]), key="bench:gaps:run"
        )
        options = request_options(by_id[run_id]) if run_id else {}
        ordinal = st.selectbox("Request", list(options), format_func=options.get, key="bench:gaps:request")
    if run_id is not None and ordinal is not None:
        chart = token_gaps_chart(by_id[run_id], ordinal)
        if chart is None:
            st.caption("This request has no token frames to show.")
        else:
            st.altair_chart(chart, width="stretch")


def results(service: LifecycleService, store: RunStore) -> list[RunRecord]:
    """The filtered run history, and the picked runs in full; returns the history (for Compare)."""
    filters = _filters(service)
    runs = filter_runs(store.list(**store_query(filters, HISTORY_LIMIT)), filters.models)
    if not runs:
        st.caption("No runs match. Start one on the Run tab.")
        return []
    st.dataframe(history_rows(runs), hide_index=True, key="bench:history")
    by_id = {r.run_id: r for r in runs}
    if SHOW_KEY not in st.session_state:
        st.session_state[SHOW_KEY] = [runs[0].run_id]  # the newest, so a finished run shows at once
    else:
        st.session_state[SHOW_KEY] = [i for i in st.session_state[SHOW_KEY] if i in by_id]
    shown_ids = st.multiselect(
        "Show runs", list(by_id), format_func=lambda i: run_option(by_id[i]), key=SHOW_KEY
    )
    shown = [run for i in shown_ids if (run := store.get(i)) is not None]
    for run in shown:
        with st.container(border=True):
            _run_block(run)
    if shown:
        _charts(shown)
        _token_gaps(shown)
    return runs


def compare(store: RunStore, runs: list[RunRecord]) -> None:
    if len(runs) < 2:
        st.caption("Two stored runs are needed to compare.")
        return
    by_id = {r.run_id: r for r in runs}
    with st.container(horizontal=True):
        first = st.selectbox(
            "Run A",
            list(by_id),
            format_func=lambda i: run_option(by_id[i]),
            key="bench:cmp:a",
            index=None,
            placeholder="Pick run A",
        )
        second = st.selectbox(
            "Run B",
            list(by_id),
            format_func=lambda i: run_option(by_id[i]),
            key="bench:cmp:b",
            index=None,
            placeholder="Pick run B",
        )
    if first is None or second is None:
        return
    a, b = store.get(first), store.get(second)
    if a is None or b is None:
        st.warning("That run is no longer stored.")
        return
    if a.kind != b.kind:
        st.warning(f"Run A is a {a.kind} run and run B a {b.kind} run: compare like with like.")
        return
    _table(comparison_rows(a, b))
    st.markdown("\n".join(f"- {escape_md(sentence)}" for sentence in verdicts(a, b)))
