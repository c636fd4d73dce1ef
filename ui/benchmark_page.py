"""The benchmark page's building blocks: model picker, workload form, live runs, results, compare.

Runs belong to the app's ``BenchmarkJobs`` (started in the lifespan), never to this script: a
reload, a closed tab or a second browser only changes who watches. The decisions live in the
pure modules (``ui.benchmark_form``, ``ui.benchmark_view``, ``ui.benchmark_tables``,
``ui.benchmark_charts``); here they become widgets. Widget state lives under ``bench:`` keys.

The page never writes into a widget the browser already shows. The browser sends every widget's
value with every rerun request, the fragments' timed refreshes (picker, live part, chips)
included, and a request it sent before it received the page's write carries the old value, which
Streamlit takes for a user's edit: a write into a live widget can be undone a moment later. (A
preset radio that an edit set to Custom came back as Quick that way, and its callback refilled
the form with the preset while the user typed.) So what the page itself sets (the form after a
preset, the runs shown after a Start or a run's end) lives in plain session state, and the widget
showing it is replaced by a fresh one, under a new key generation, whose first value comes from
that state; a model that stops gets a disabled box of its own rather than an unticked one. Plain
state also outlives the widgets, which Streamlit forgets on any run that doesn't draw them
(another page), so the form and the picked runs survive a visit elsewhere.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

import streamlit as st

from benchmark.export import run_to_csv, run_to_json
from benchmark.records import RunRecord, RunStatus
from lifecycle.core.errors import LifecycleError
from lifecycle.service import LifecycleService
from service_access import ServiceNotRunning, get_benchmarks, get_service
from ui.benchmark_charts import (
    AnyChart,
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
    FIELDS,
    GENERAL,
    KINDS,
    PRESET_LABELS,
    PRESET_NAMES,
    PRESET_NOTES,
    build_workload,
    matching_preset,
    preset_values,
)
from ui.benchmark_tables import (
    METRIC_HELP,
    ComparisonView,
    compare_view,
    depth_rows,
    run_markdown,
    sweep_rows,
)
from ui.benchmark_view import (
    ALL,
    KIND_LABELS,
    STATUS_LABELS,
    LruCache,
    RunFilters,
    ended_since,
    export_name,
    filter_runs,
    frame_count,
    history_rows,
    model_name,
    model_rows,
    request_options,
    run_caption,
    run_dot,
    run_option,
    run_progress,
    run_version,
    settled,
    store_query,
)
from ui.format import escape_md
from ui.live import live
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


_T = TypeVar("_T")

LIVE_RUNS_KEY: Final = "live-runs"  # the progress part's live key (ui.live)
MODELS_S: Final = 2.0  # model picker: a model being loaded turns selectable without a click
HISTORY_LIMIT: Final = 200
PRESET_KEY_PREFIX: Final = "bench:preset:"  # one button per preset
FORM_KEY: Final = "bench:form"  # form field -> value: what Start runs (plain state, see the docstring)
FORM_GEN_KEY: Final = "bench:form:gen"  # the form widgets' key generation
ERRORS_KEY: Final = "bench:errors"  # form field -> message, from the last Start
NOTICE_KEY: Final = "bench:notice"  # what the last command did, shown once
ACTIVE_KEY: Final = "bench:active"  # run ids the live part saw last time
SHOW_KEY: Final = "bench:show"  # run ids picked under "Show runs" (plain state, see the docstring)
SHOW_PICKER_KEY: Final = "bench:show:runs"  # the "Show runs" multiselect, in its key generation
SHOW_GEN_KEY: Final = "bench:show:gen"
MODEL_KEY_PREFIX: Final = "bench:model:"
LOAD_KEY_PREFIX: Final = "bench:load:"
CANCEL_KEY_PREFIX: Final = "bench:cancel:"
START_KEY: Final = "bench:start"
SIGN_IN: Final = "sign in first: this app is protected by a token"
# Finished runs held for every session: a rerun must not read 10,000 requests again. Bounded by
# frames (about 60 bytes each as Python lists), so a few long runs fit in ~200 MB.
CACHE_ENTRIES: Final = 64
CACHE_FRAMES: Final = 3_000_000
PER_REQUEST_LABEL: Final = "Per-request charts: TTFT histogram and token gaps"
PER_REQUEST_HELP: Final = "Reads every request of the shown runs (a couple of seconds for 10,000)"
_RUN: Final = "run"  # the first part of a cached run's key (other entries: what was built from runs)


def generation_key(base: str, generation: int) -> str:
    """The key of a widget in a generation: ``base`` first, ``base@2`` after two replacements."""
    return base if generation == 0 else f"{base}@{generation}"


def fkey(name: str, generation: int = 0) -> str:
    """The widget key of a form field (tests set fields through it too)."""
    return generation_key(f"bench:{name}", generation)


def show_key(generation: int = 0) -> str:
    """The widget key of the "Show runs" picker."""
    return generation_key(SHOW_PICKER_KEY, generation)


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


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {escape_md(line)}" for line in lines)


# --- what the page keeps of stored runs ------------------------------------------------------------


@dataclass
class _Memory:
    """What the page keeps for every session of the app, one per store (a test process opens
    many), gone with its store."""

    cache: LruCache[Any]  # finished runs, and what was built from them
    # The runs last picked under "Show runs" or last started: a new session (a reload, a second
    # tab) opens on them. One user works this app, so theirs are the last picks made anywhere.
    shown: list[str] = field(default_factory=list)


_memories: weakref.WeakKeyDictionary[Any, _Memory] = weakref.WeakKeyDictionary()
_memories_lock = threading.Lock()


def _memory(store: RunStore) -> _Memory:
    with _memories_lock:
        memory = _memories.get(store)
        if memory is None:
            memory = _memories[store] = _Memory(LruCache(CACHE_ENTRIES, CACHE_FRAMES))
        return memory


def forget_runs(*, keep_runs: bool = False) -> None:
    """Drop every cached run and what was built from them, or only the latter (a cold start, for
    measuring: with the runs kept, what the page itself adds to the store's read)."""
    with _memories_lock:
        memories = list(_memories.values())
    for memory in memories:
        memory.cache.clear(keep=lambda key: keep_runs and isinstance(key, tuple) and key[0] == _RUN)


def stored_run(store: RunStore, listed: RunRecord) -> RunRecord | None:
    """The run ``listed`` (from the history) with its requests. A settled run is read once and
    kept; a running one is read afresh, since its requests grow level by level."""
    if not settled(listed):
        return store.get(listed.run_id)
    key = (_RUN, *run_version(listed))
    run: RunRecord | None = _memory(store).cache.get_or_make(
        key, lambda: store.get(listed.run_id), frame_count
    )
    return run


def _built(store: RunStore, runs: Sequence[RunRecord], what: str, make: Callable[[], _T], *extra: Any) -> _T:
    """``make()``, kept while every run it is built from is settled (a running run's figures
    move). A None from ``make`` is not kept, so it is made again next time (it is cheap)."""
    if not all(settled(run) for run in runs):
        return make()
    return cast(_T, _memory(store).cache.get_or_make((what, *map(run_version, runs), *extra), make))


def chart_spec(chart: AnyChart | None) -> dict[str, Any] | None:
    """The chart as the Vega-Lite spec Streamlit would send, built once per set of runs.

    Not validated against the Vega-Lite schema here, unlike ``st.altair_chart``: that check is
    half a chart's cost, and every chart builder's spec is validated by its unit tests.
    """
    if chart is None:
        return None
    spec = chart.to_dict(validate=False)
    # Streamlit draws Altair charts without Altair's default theme (a fixed 300 px view).
    spec.pop("config", None)
    return spec


def _draw(spec: dict[str, Any] | None) -> None:
    if spec is not None:
        st.vega_lite_chart(spec, width="stretch")


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


def model_key(model_id: str, *, off: bool = False) -> str:
    """The picker's checkbox of a model: ``off`` for the disabled one of a model that can't run."""
    return f"{MODEL_KEY_PREFIX}{model_id}{':off' if off else ''}"


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
            if row.selectable:
                st.checkbox(row.label, key=model_key(row.id), width="content")
            else:
                # Unticked under a key of its own rather than by writing False into the ticked
                # box (see the module docstring); the ticked one is forgotten, so a model that
                # comes back starts unpicked.
                off = model_key(row.id, off=True)
                st.checkbox(row.label, value=False, key=off, disabled=True, width="content")
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


def _form_generation() -> int:
    return int(st.session_state.get(FORM_GEN_KEY, 0))


def _stored_form() -> dict[str, Any]:
    form: dict[str, Any] | None = st.session_state.get(FORM_KEY)
    if form is None:
        form = st.session_state[FORM_KEY] = preset_values("quick")
    return form


def current_form() -> dict[str, Any]:
    """Every field's value as the user last set it: the drawn widgets' values (the browser sent
    them with this request, before any callback runs), the stored form for the rest."""
    generation, form = _form_generation(), _stored_form()
    return {
        name: st.session_state[key] if (key := fkey(name, generation)) in st.session_state else form[name]
        for name in FIELDS
    }


def _apply_preset(name: str) -> None:
    """A preset button's callback: the form becomes the preset, in fresh widgets (see the module
    docstring); a preset already in the form changes nothing."""
    values = preset_values(name)
    if values != current_form():
        st.session_state[FORM_KEY] = values
        st.session_state[FORM_GEN_KEY] = _form_generation() + 1
    st.session_state.pop(ERRORS_KEY, None)


def _edited(name: str, generation: int) -> None:
    """A field's callback: keep its value in the stored form (it outlives the widget)."""
    if generation != _form_generation():
        return  # a widget the page has replaced, its value sent before the browser knew
    _stored_form()[name] = st.session_state[fkey(name, generation)]
    st.session_state.get(ERRORS_KEY, {}).pop(name, None)


def _field(name: str, widget: Callable[..., Any], label: str, **kwargs: Any) -> None:
    """A form widget with its validation message right under it.

    A widget of a new generation (or one Streamlit forgot while it wasn't drawn) starts from the
    stored form, and no earlier request can overwrite it. The value goes in as the widget's own
    default rather than through session state: a browser that draws the widget before it took
    in the value (a click right after the page loaded, on a busy machine) gets the widget again
    without it, and shows, then sends back, the widget's default.
    """
    generation = _form_generation()
    key = fkey(name, generation)
    value = _stored_form()[name]
    if "value" in kwargs:
        # A number that may be left empty keeps None as its default (the browser won't clear a
        # field back past a default number), so its first value can only go in this way.
        if key not in st.session_state:
            st.session_state[key] = value
    elif "options" in kwargs:
        options = list(kwargs["options"])
        kwargs["index"] = options.index(value) if value in options else 0
    else:
        kwargs["value"] = value
    widget(label, key=key, on_change=_edited, args=(name, generation), **kwargs)
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


def _sweep_fields(rates: bool) -> None:
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


def _preset_buttons() -> None:
    """A button per preset, the one the form matches highlighted, and what Start would run.

    Buttons rather than a radio: a click is an event the browser sends once, where a radio's
    value goes out again with every request and can undo the page's own "Custom" (see the module
    docstring); which preset the form holds is worked out from the form instead.
    """
    current = matching_preset(current_form())
    with st.container(horizontal=True, vertical_alignment="center"):
        for name in PRESET_NAMES:
            st.button(
                PRESET_LABELS[name],
                key=PRESET_KEY_PREFIX + name,
                type="primary" if name == current else "secondary",
                on_click=_apply_preset,
                args=(name,),
            )
        st.caption(PRESET_NOTES[current], width="stretch")


def workload_form() -> None:
    _preset_buttons()
    _field("kind", st.radio, "Kind", options=list(KINDS), format_func=KINDS.get, horizontal=True)
    form = current_form()
    if form["kind"] == "depth":
        _depth_fields()
    else:
        _sweep_fields(rates=form["axis"] == "rates")
    with st.expander("Sampling", expanded=True):
        _sampling_fields()


def _start() -> None:
    """Start callback: one run per picked model, queued in the app's BenchmarkJobs; the batch
    joins the runs shown under Results."""
    if not signed_in():
        _notice("error", SIGN_IN)
        return
    result = build_workload(current_form())
    errors = dict(result.errors)
    models = selected_models()
    if not models:
        errors[GENERAL] = "pick at least one loaded model"
    st.session_state[ERRORS_KEY] = errors
    if errors or result.workload is None:
        return
    jobs, store = get_benchmarks()
    started = []
    for model_id in models:
        try:
            job = jobs.submit(model_id, result.workload, actor="ui")
        except LifecycleError as exc:
            _notice("error", f"{model_id}: {exc}")
        else:
            started.append(job.run_id)
            _notice(
                "ok", f"{model_id}: run {job.run_id} queued; it runs in the app, so it goes on if you leave"
            )
    shown = st.session_state.get(SHOW_KEY, [])
    _show(store, [*shown, *(i for i in started if i not in shown)])


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


def live_runs() -> None:
    """Queued and running runs with a bar per level. Only this part refreshes: every
    ``ui.live.FAST_S`` while anything moves (a run queued or running, a model loading), every
    second at rest."""
    live(LIVE_RUNS_KEY, _live_runs)


def _live_runs() -> None:
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


def _run_block(store: RunStore, run: RunRecord) -> None:
    """One run from its stored summary: the table and the exports, which read its requests
    only when clicked."""
    st.markdown(f"{run_dot(run.status)} **{escape_md(model_name(run))}** · run `{run.run_id}`")
    st.caption(run_caption(run))
    if run.status == RunStatus.RUNNING:
        st.caption("Still running: its figures are computed when it ends; its progress is above.")
    _table(depth_rows(run) if run.kind == "depth" else sweep_rows(run))
    with st.container(horizontal=True):
        # The files are built when clicked (on a thread of their own), not on every rerun: a
        # run of 10,000 requests takes seconds to write out.
        st.download_button(
            "CSV",
            lambda: run_to_csv(stored_run(store, run) or run),
            file_name=export_name(run, "csv"),
            mime="text/csv",
            icon=":material/download:",
            on_click="ignore",
            key=f"bench:csv:{run.run_id}",
        )
        st.download_button(
            "JSON",
            lambda: json.dumps(run_to_json(stored_run(store, run) or run)),
            file_name=export_name(run, "json"),
            mime="application/json",
            icon=":material/download:",
            on_click="ignore",
            key=f"bench:json:{run.run_id}",
        )
    with st.expander("Markdown table to copy"):
        st.code(run_markdown(run), language="markdown")


def _chart_specs(runs: Sequence[RunRecord]) -> list[dict[str, Any] | None]:
    sweeps = [r for r in runs if r.kind == "sweep"]
    depths = [r for r in runs if r.kind == "depth"]
    charts = [throughput_chart(sweeps), ttft_chart(sweeps), itl_chart(sweeps), tradeoff_chart(sweeps)]
    charts += [depth_chart(depths)]
    return [chart_spec(chart) for chart in charts]


def _charts(store: RunStore, runs: list[RunRecord]) -> None:
    for spec in _built(store, runs, "charts", lambda: _chart_specs(runs)):
        _draw(spec)
    excluded = excluded_levels(runs)
    if excluded:
        st.markdown(
            "**Left out of the charts** (the runner voided these levels: it measured itself, not the server)"
        )
        st.markdown(_bullets(excluded))


def _per_request(store: RunStore, listed: list[RunRecord]) -> None:
    """The charts drawn from every request (a TTFT histogram, one request's token gaps). The
    rest of the page is drawn from each run's stored figures; these read the requests (about
    2 s for 10,000 the first time), so they are drawn when asked for."""
    if not st.toggle(PER_REQUEST_LABEL, key="bench:per-request", help=PER_REQUEST_HELP):
        return
    runs = [run for listed_run in listed if (run := stored_run(store, listed_run)) is not None]
    sweeps = [r for r in runs if r.kind == "sweep"]
    _draw(_built(store, sweeps, "histogram", lambda: chart_spec(ttft_histogram(sweeps))))
    _token_gaps(store, runs)


def _token_gaps(store: RunStore, runs: list[RunRecord]) -> None:
    st.markdown("**Token gaps of one request**")
    by_id = {r.run_id: r for r in runs}
    with st.container(horizontal=True):
        run_id = st.selectbox(
            "Run", list(by_id), format_func=lambda i: run_option(by_id[i]), key="bench:gaps:run"
        )
        run = by_id.get(run_id) if run_id is not None else None
        options = _built(store, [run], "requests", lambda: request_options(run)) if run else {}
        ordinal = st.selectbox("Request", list(options), format_func=options.get, key="bench:gaps:request")
    if run is not None and ordinal is not None:
        spec = _built(store, [run], "gaps", lambda: chart_spec(token_gaps_chart(run, ordinal)), ordinal)
        if spec is None:
            st.caption("This request has no token frames to show.")
        else:
            _draw(spec)


def _show(store: RunStore, run_ids: list[str]) -> None:
    st.session_state[SHOW_KEY] = run_ids
    _memory(store).shown = run_ids


def _pick_shown(listed: tuple[str, ...], generation: int) -> None:
    """The "Show runs" callback: the picks become the shown runs; picks the history can't list
    right now (filtered out, or queued and not stored yet) stay."""
    if generation != st.session_state.get(SHOW_GEN_KEY, 0):
        return  # a picker the page has replaced, its value sent before the browser knew
    hidden = [i for i in st.session_state.get(SHOW_KEY, []) if i not in listed]
    _show(get_benchmarks()[1], [*st.session_state[show_key(generation)], *hidden])


def _show_picker(store: RunStore, runs: list[RunRecord]) -> list[str]:
    """The runs to show in full: what the user picked (kept across pages and, app-wide, across
    reloads), plus each batch they start and each run that ends while they watch; the newest
    run when there is nothing of that."""
    by_id = {r.run_id: r for r in runs}
    if SHOW_KEY not in st.session_state:
        remembered = [i for i in _memory(store).shown if i in by_id]
        # The newest otherwise, so a finished run shows at once.
        st.session_state[SHOW_KEY] = remembered or [runs[0].run_id]
    wanted = [i for i in st.session_state[SHOW_KEY] if i in by_id]
    generation = int(st.session_state.get(SHOW_GEN_KEY, 0))
    if show_key(generation) in st.session_state and st.session_state[show_key(generation)] != wanted:
        # The shown runs changed outside the picker (a run ended or started, the filters moved):
        # a fresh picker shows them, rather than a write the browser could undo.
        generation += 1
        st.session_state[SHOW_GEN_KEY] = generation
    key = show_key(generation)
    picked: list[str] = st.multiselect(
        "Show runs",
        list(by_id),
        default=wanted,  # its first value, as the form's fields get theirs (see _field)
        format_func=lambda i: run_option(by_id[i]),
        key=key,
        on_change=_pick_shown,
        args=(tuple(by_id), generation),
    )
    return picked


def results(service: LifecycleService, store: RunStore) -> list[RunRecord]:
    """The filtered run history, and the picked runs in full; returns the history (for Compare)."""
    filters = _filters(service)
    runs = filter_runs(store.list(**store_query(filters, HISTORY_LIMIT)), filters.models)
    if not runs:
        st.caption("No runs match. Start one on the Run tab.")
        return []
    st.dataframe(history_rows(runs), hide_index=True, key="bench:history")
    by_id = {r.run_id: r for r in runs}
    # The history's records carry each run's figures: the tables and curves need no request.
    shown = [by_id[i] for i in _show_picker(store, runs)]
    for run in shown:
        with st.container(border=True):
            _run_block(store, run)
    if shown:
        _charts(store, shown)
        _per_request(store, shown)
    return runs


def _comparison(store: RunStore, a: RunRecord, b: RunRecord) -> ComparisonView:
    return _built(store, [a, b], "compare", lambda: compare_view(a, b))


def _run_choice(by_id: dict[str, RunRecord], side: str) -> str | None:
    return st.selectbox(
        f"Run {side}",
        list(by_id),
        format_func=lambda i: run_option(by_id[i]),
        key=f"bench:cmp:{side.lower()}",
        index=None,
        placeholder=f"Pick run {side}",
    )


def compare(store: RunStore, runs: list[RunRecord]) -> None:
    if len(runs) < 2:
        st.caption("Two stored runs are needed to compare.")
        return
    by_id = {r.run_id: r for r in runs}
    with st.container(horizontal=True):
        first, second = (_run_choice(by_id, side) for side in ("A", "B"))
    if first is None or second is None:
        return
    a, b = stored_run(store, by_id[first]), stored_run(store, by_id[second])
    if a is None or b is None:
        st.warning("That run is no longer stored.")
        return
    if a.kind != b.kind:
        st.warning(f"Run A is a {a.kind} run and run B a {b.kind} run: compare like with like.")
        return
    view = _comparison(store, a, b)
    _table(view.rows)
    if view.verdicts:
        st.markdown(_bullets(view.verdicts))
    if view.left_out:
        st.markdown(
            "**Left out of the comparison** (a run voided these levels: it measured itself, not the "
            "server there, so no verdict is drawn from them)\n" + _bullets(view.left_out)
        )
