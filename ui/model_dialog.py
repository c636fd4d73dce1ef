"""The model dialog: a model's facts and status, and the buttons that load or unload it.

It opens when ``session_state["dialog_model"]`` names a model (a chip click sets it; so can a
test) and closes by clearing that key. Its body is a live part (``ui.live``): elapsed time,
status and the log tail refresh every ``FAST_S`` while anything moves, every second at rest.
A Load or Unload click hurries it and the chips, so both switch to the fast pace at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import streamlit as st

from lifecycle.core.status_view import ModelStatus
from lifecycle.service import LifecycleError, LifecycleService, UnknownModel
from service_access import ServiceNotRunning, get_benchmarks, get_service
from ui.chips import DIALOG_KEY
from ui.chips import LIVE_KEY as CHIPS_LIVE_KEY
from ui.dialog_view import LOAD_LABEL, RETRY_LABEL, UNLOAD_LABEL, Action, DialogView, dialog_view, memory_text
from ui.format import dot_md, escape_md
from ui.live import hurry, live
from ui.session_gate import signed_in
from ui.widgets import log_box

LIVE_KEY: Final = "live-dialog"  # the dialog body's live part
LOG_LINES: Final = 30
LOG_HEIGHT_PX: Final = 200
ERROR_KEY: Final = "dialog_error"  # the last refused command, shown until the next one
CONFIRM_KEY: Final = "dialog_confirm_unload"  # a model being benchmarked: Unload asks first


def close_dialog() -> None:
    st.session_state.pop(DIALOG_KEY, None)
    st.session_state.pop(ERROR_KEY, None)
    st.session_state.pop(CONFIRM_KEY, None)


def _benchmarked(model_id: str) -> bool:
    try:
        return get_benchmarks()[0].busy(model_id)
    except ServiceNotRunning:
        return False  # no benchmark service, so nothing to interrupt


def _ask_unload(model_id: str) -> None:
    """Unload callback: a model with a benchmark queued or running asks first (unloading it
    cuts the run short); any other model unloads at once."""
    if _benchmarked(model_id):
        st.session_state[CONFIRM_KEY] = model_id
    else:
        _command(model_id, Action.UNLOAD)


def _confirmed_unload(model_id: str) -> None:
    st.session_state.pop(CONFIRM_KEY, None)
    _command(model_id, Action.UNLOAD)


def _keep_loaded() -> None:
    st.session_state.pop(CONFIRM_KEY, None)


def _command(model_id: str, action: Action) -> None:
    """Button callback: runs before the dialog redraws, so the redraw shows the new status."""
    if not signed_in():  # callbacks run before the page's own gate
        st.session_state[ERROR_KEY] = "sign in first: this app is protected by a token"
        return
    service = get_service()
    call: Callable[..., ModelStatus] = service.unload if action == Action.UNLOAD else service.load
    try:
        call(model_id, actor="ui")
    except LifecycleError as exc:
        st.session_state[ERROR_KEY] = str(exc)
    else:
        st.session_state.pop(ERROR_KEY, None)
        hurry(LIVE_KEY, CHIPS_LIVE_KEY)  # something moves now: both go fast without waiting


def _facts(view: DialogView) -> None:
    lines = [f"**{name}:** `{value}`" for name, value in view.facts]
    st.markdown("  \n".join(lines))


def _status_line(status: ModelStatus, view: DialogView) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"{dot_md(status.dot)} **{escape_md(view.headline)}**", width="content")
        if view.simulated:
            st.badge("simulated", icon=":material/science:", color="violet")


def _buttons(model_id: str, view: DialogView) -> None:
    for action in view.actions:
        if action == Action.LOAD:
            st.button(
                LOAD_LABEL,
                key="dialog-load",
                type="primary",
                disabled=view.load_blocked is not None,
                help=view.load_blocked,
                on_click=_command,
                args=(model_id, action),
            )
        elif action == Action.UNLOAD:
            st.button(UNLOAD_LABEL, key="dialog-unload", on_click=_ask_unload, args=(model_id,))
            if st.session_state.get(CONFIRM_KEY) == model_id:
                _confirm_unload(model_id)
        else:
            st.button(
                RETRY_LABEL,
                key="dialog-retry",
                type="primary",
                icon=":material/refresh:",
                on_click=_command,
                args=(model_id, action),
            )


def _confirm_unload(model_id: str) -> None:
    st.warning(
        "A benchmark is queued or running on this model. Unloading it now cuts the run short "
        "(what it measured so far is kept as partial).",
        icon=":material/speed:",
    )
    with st.container(horizontal=True):
        st.button("Unload anyway", key="dialog-unload-confirm", on_click=_confirmed_unload, args=(model_id,))
        st.button("Keep it loaded", key="dialog-unload-keep", on_click=_keep_loaded)


def _log_tail(service: LifecycleService, model_id: str) -> None:
    try:
        text = service.logs(model_id, tail=LOG_LINES)
    except LifecycleError as exc:
        text = f"(no log: {exc})"
    log_box(text, LOG_HEIGHT_PX)


def _body(service: LifecycleService, status: ModelStatus) -> None:
    view = dialog_view(status, time.time())
    _status_line(status, view)
    if view.failed:
        st.error(f"The last load failed: {escape_md(view.reason or '')}", icon=":material/error:")
    elif view.restart_error:
        st.warning(
            f"The server stopped unexpectedly; the app restarts it by itself "
            f"(restart {status.restarts}). Last error: {escape_md(view.restart_error)}",
            icon=":material/restart_alt:",
        )
    elif view.reason:
        st.warning(f"{escape_md(view.headline)}: {escape_md(view.reason)}", icon=":material/cloud_off:")
    if view.manual_start:
        st.info(
            f"This server is started outside the app. {escape_md(view.manual_start)}", icon=":material/info:"
        )
    _facts(view)
    if status.memory_gb is not None:
        st.caption(escape_md(memory_text(service.memory_at(status.id), status.host)))
    if error := st.session_state.get(ERROR_KEY):
        st.error(escape_md(str(error)))
    _buttons(status.id, view)
    if view.loading is not None:
        if view.loading.progress is not None:
            st.progress(view.loading.progress, text=view.loading.text)
        else:
            st.caption(view.loading.text)
        _log_tail(service, status.id)
    elif view.failed:
        with st.expander("Last log lines"):
            _log_tail(service, status.id)


def _live_body(model_id: str) -> None:
    service = get_service()
    try:
        status = service.status_of(model_id)
    except UnknownModel:
        st.warning("This model is no longer in the catalog.")
        return
    _body(service, status)


def model_dialog(model_id: str) -> None:
    """Open the dialog for ``model_id``; a model removed from the catalog just closes it."""
    try:
        status = get_service().status_of(model_id)
    except UnknownModel:
        close_dialog()
        return
    st.dialog(escape_md(status.name), width="medium", on_dismiss=close_dialog)(_dialog)(model_id)


def _dialog(model_id: str) -> None:
    live(LIVE_KEY, _live_body, model_id)
