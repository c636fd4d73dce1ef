"""Docker's ``die``/``oom`` events for this instance's containers, turned into reconciler kicks.

The reconciler re-inspects every server each tick anyway; this stream only makes it notice a
dead container at once instead of up to a tick later. So the watcher never interprets an
event: it kicks. When the stream breaks (engine restarted, socket gone) it reconnects with
backoff and kicks once more after each (re)connect, because exits during the gap were missed.

Also here: a cached "is Docker reachable" answer for ``health()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger(__name__)

RETRY_FIRST_S: Final = 0.5
RETRY_MAX_S: Final = 30.0
PING_TTL_S: Final = 5.0
PING_TIMEOUT_S: Final = 3


def _client(timeout_s: int | None = None) -> Any:
    import docker  # the process runtime works without the Docker SDK; only this path needs it

    return docker.from_env(timeout=timeout_s) if timeout_s else docker.from_env()


def event_filters(instance: str) -> dict[str, list[str]]:
    from lifecycle.runtimes.container_labels import LABEL_INSTANCE, LABEL_MANAGED

    return {
        "label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={instance}"],
        "type": ["container"],
        "event": ["die", "oom"],
    }


class DockerWatch:
    """One thread following the event stream; ``on_event`` is called for every event and resync."""

    def __init__(
        self,
        instance: str,
        on_event: Callable[[], None],
        filters: dict[str, list[str]] | None = None,
        client: Callable[[], Any] | None = None,
    ) -> None:
        """``filters`` and ``client``: another engine's or another kind of event (a Swarm
        manager's service and node events); by default this instance's container exits."""
        self._filters = filters if filters is not None else event_filters(instance)
        self._client = client or _client
        self._on_event = on_event
        self._closed = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  # the stream is up
        self.attempts = 0  # connections tried so far

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="dxg-docker-events", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._closed.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            # Closing the response ends the blocking read inside the generator.
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _follow(self) -> None:
        delay = RETRY_FIRST_S
        while not self._closed.is_set():
            try:
                self._stream_events()
                delay = RETRY_FIRST_S  # a stream that ended cleanly: reconnect at once-ish
            except Exception as exc:  # the engine is down or went away; try again later
                log.debug("docker event stream: %s; retrying in %.1fs", exc, delay)
                delay = min(delay * 2, RETRY_MAX_S)
            self.connected.clear()
            self._closed.wait(delay)

    def _stream_events(self) -> None:
        self.attempts += 1
        client = self._client()
        try:
            stream = client.events(decode=True, filters=self._filters)
            with self._lock:
                if self._closed.is_set():
                    stream.close()
                    return
                self._stream = stream
            self.connected.set()
            self._on_event()  # resync: exits while we were not listening
            for _event in stream:
                if self._closed.is_set():
                    return
                self._on_event()
        finally:
            with self._lock:
                self._stream = None
            client.close()


class DockerPing:
    """ "Is the engine reachable?", asked at most every ``ttl_s``."""

    def __init__(self, ttl_s: float = PING_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._answer: tuple[float, bool, str] | None = None
        self._lock = threading.Lock()

    def status(self) -> tuple[bool, str]:
        with self._lock:
            if self._answer is not None and time.monotonic() - self._answer[0] < self._ttl_s:
                return self._answer[1], self._answer[2]
        reachable, detail = _ping()
        with self._lock:
            self._answer = (time.monotonic(), reachable, detail)
        return reachable, detail


def _ping() -> tuple[bool, str]:
    try:
        client = _client(PING_TIMEOUT_S)
    except ImportError as exc:
        return False, f"the Docker SDK is not installed: {exc}"
    except Exception as exc:
        return False, f"Docker is not reachable: {exc}"
    try:
        version = client.version()
        return True, f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"
    except Exception as exc:
        return False, f"Docker is not reachable: {exc}"
    finally:
        client.close()
