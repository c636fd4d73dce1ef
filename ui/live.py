"""Live parts of a page: fast refreshes while anything moves, slow ones at rest.

A model's ready moment should show as a green dot within 300 ms, yet an idle tab should cost
nothing; no single ``run_every`` does both. A fragment's interval reaches the browser only
when the fragment is called through its wrapper (on a full run, or inline from a fragment
around it), never from its own timed reruns, so a fragment can't change its own pace. Hence a
pacer: an outer fragment ticks every ``REST_S``, asks whether anything moves (``in_motion``)
and calls the part drawn as an inner fragment with ``FAST_S`` while something does and
``IDLE_S`` at rest. The browser swaps the inner's timer when its interval changes and drops it
when the inner is no longer drawn. At rest the inner redraws on the outer's tick, so the part
still refreshes every second; ``IDLE_S`` is long rather than None because None sends no
interval, and the browser would keep a fast timer running.

The pacer only notices motion on its own tick, up to ``REST_S`` late; a click that starts
motion (Load, Unload, Retry) calls ``hurry`` from its callback, which reruns the
named pacers at once instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

import streamlit as st
from streamlit.errors import StreamlitAPIException

from lifecycle.core.states import LOADED, Phase
from lifecycle.core.status_view import ModelStatus
from service_access import get_service

log = logging.getLogger(__name__)

REST_S: Final = 1.0  # the pacer's own tick: how often a part refreshes when nothing moves
# While something moves. Ready -> green is this at worst, plus the service noticing (its probe
# polls every 50 ms) and a redraw: under 300 ms. One rerun costs the app about 30 ms of CPU
# on a small machine (status() itself 1-2 ms), plus Streamlit's gc.collect() after every run
# (70-120 ms here) unless runner.postScriptGC is off, which this pace needs.
FAST_S: Final = 0.1
IDLE_S: Final = 60.0  # the inner fragment's own timer at rest (the pacer redraws it anyway)
PACE_KEY_PREFIX: Final = "live-pace:"  # session state: each live part's current interval

# Phases that end by themselves, soon: a server starting or stopping, a crash or a restart
# about to be decided or waited for.
_MOVING_PHASES: Final = frozenset({Phase.STARTING, Phase.STOPPING, Phase.CRASHED, Phase.BACKOFF})


def model_in_motion(status: ModelStatus) -> bool:
    """The model is on its way somewhere: loading, unloading, restarting, or asked to and not
    started on it yet. External servers never are (the app neither starts nor stops them)."""
    if not status.can_load:
        return False
    if status.phase in _MOVING_PHASES:
        return True
    settled = Phase.READY if status.desired == LOADED else Phase.STOPPED
    return status.phase in (Phase.READY, Phase.STOPPED) and status.phase != settled and status.available


def in_motion(statuses: Iterable[ModelStatus]) -> bool:
    """Anything moves: a model loading, unloading or restarting.

    A benchmark run does not count. Its progress bars are fine at one refresh a second, and a
    faster pace (the app redrawing, the browser repainting ten times a second) takes CPU from
    the run's own process: on 2 cores it pushed the runner's loop lag past its 5 ms limit and
    voided the levels, which is the measurement the page is for.
    """
    return any(model_in_motion(s) for s in statuses)


def interval(moving: bool) -> float:
    """The inner fragment's ``run_every``."""
    return FAST_S if moving else IDLE_S


def anything_moving() -> bool:
    """``in_motion`` over the service's models; False when they can't be read (the app is
    stopping, the store is locked): the parts say so themselves, no faster."""
    try:
        statuses = get_service().status()
    except Exception:  # ServiceNotRunning, or a passing store error: the next tick tries again
        log.debug("reading what moves failed", exc_info=True)
        return False
    return in_motion(statuses)


def live(key: str, body: Callable[..., None], *args: Any) -> None:
    """Draw ``body(*args)`` as a live part that refreshes every ``FAST_S`` while anything moves
    and every ``REST_S`` otherwise. ``key`` names the part for ``hurry`` (unique on the page)."""
    st.fragment(_pacer, run_every=REST_S, key=key)(key, body, args)


def _pacer(key: str, body: Callable[..., None], args: tuple[Any, ...]) -> None:
    every = interval(anything_moving())
    st.session_state[PACE_KEY_PREFIX + key] = every  # for tests and a look in a debugger
    st.fragment(body, run_every=every)(*args)


def hurry(*keys: str) -> None:
    """From a widget callback that just started motion: rerun the live parts ``keys`` now, so
    they pick the fast pace without waiting up to ``REST_S`` for their own tick. This replaces
    the click's default rerun (the fragment holding the widget), so name that part too when it
    is a live part. A part not drawn in this session yet makes it a no-op (default rerun)."""
    try:
        st.rerun(list(keys))
    except StreamlitAPIException:
        log.debug("no live part to hurry among %s", keys, exc_info=True)
