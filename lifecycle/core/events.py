"""Lifecycle events: past-tense facts, their stream names, serialisation and redaction.

Pure: no I/O, no framework imports. Every event is a frozen dataclass with a
stable ``TYPE`` name (what is stored; never derive it from the class name, so a
class can be renamed without orphaning old rows) and a JSON payload made of its
fields. Times are UNIX epoch seconds (UTC) as floats, rounded to milliseconds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

from lifecycle.core import secrets

# --- streams -----------------------------------------------------------------

APP_STREAM: Final = "app"
MODEL_STREAM_PREFIX: Final = "model:"
MODEL_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class InvalidStream(ValueError):
    """A stream name or model id outside the allowed alphabet."""


def check_model_id(model_id: str) -> str:
    # Ids end up in stream names, file names (logs/{id}.log) and container names.
    if not MODEL_ID_RE.fullmatch(model_id):
        raise InvalidStream(
            f"model id {model_id!r} is not allowed: use 1-64 characters from a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return model_id


def model_stream(model_id: str) -> str:
    return MODEL_STREAM_PREFIX + check_model_id(model_id)


def model_id_of(stream: str) -> str | None:
    """The model id of a ``model:<id>`` stream, None for other streams."""
    if not stream.startswith(MODEL_STREAM_PREFIX):
        return None
    return stream[len(MODEL_STREAM_PREFIX) :]


def check_stream(stream: str) -> str:
    model_id = model_id_of(stream)
    if model_id is not None:
        check_model_id(model_id)
    elif stream != APP_STREAM:
        raise InvalidStream(f"stream {stream!r} is not allowed: use {APP_STREAM!r} or 'model:<id>'")
    return stream


# --- event types ---------------------------------------------------------------

_REGISTRY: dict[str, type[Event]] = {}
_FIELDS: dict[type[Event], frozenset[str]] = {}


@dataclass(frozen=True)
class Event:
    """Base of all events. Subclasses set ``TYPE`` and are registered automatically."""

    TYPE: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.TYPE:
            return
        if cls.TYPE in _REGISTRY:
            raise TypeError(f"event type {cls.TYPE!r} is registered twice")
        _REGISTRY[cls.TYPE] = cls

    @property
    def type(self) -> str:
        return self.TYPE

    def payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# "abandoned": every gateway request waiting for the load left (DXG_GATEWAY_CANCEL_ABANDONED_LOADS).
UnloadReason = Literal["user", "shutdown", "removed", "adopt-unwanted", "idle", "evicted", "abandoned"]


@dataclass(frozen=True)
class LoadRequested(Event):
    TYPE: ClassVar[str] = "LoadRequested"


@dataclass(frozen=True)
class UnloadRequested(Event):
    TYPE: ClassVar[str] = "UnloadRequested"
    reason: UnloadReason | str = "user"


@dataclass(frozen=True)
class StartIssued(Event):
    """A server was launched; ``handle`` is the runtime's JSON reference (pid, container id, ...)."""

    TYPE: ClassVar[str] = "StartIssued"
    handle: dict[str, Any]
    attempt: int = 1


@dataclass(frozen=True)
class ReadyObserved(Event):
    TYPE: ClassVar[str] = "ReadyObserved"
    load_duration_s: float


@dataclass(frozen=True)
class StartFailed(Event):
    """The server never became ready: premature exit, startup timeout, missing image, ..."""

    TYPE: ClassVar[str] = "StartFailed"
    reason: str
    exit_code: int | None = None
    log_tail: str = ""


@dataclass(frozen=True)
class Crashed(Event):
    """A server that had started exited without being asked to."""

    TYPE: ClassVar[str] = "Crashed"
    exit_code: int | None = None
    oom: bool = False
    log_tail: str = ""


@dataclass(frozen=True)
class Unhealthy(Event):
    """A ready server stopped answering its liveness probe: it runs, but hangs (a frozen
    process, a paused container). It is killed and restarted like a crash."""

    TYPE: ClassVar[str] = "Unhealthy"
    reason: str
    failures: int


@dataclass(frozen=True)
class RestartScheduled(Event):
    TYPE: ClassVar[str] = "RestartScheduled"
    delay_s: float
    attempt: int
    at: float


@dataclass(frozen=True)
class GaveUp(Event):
    TYPE: ClassVar[str] = "GaveUp"
    reason: str
    crashes: int


@dataclass(frozen=True)
class StopIssued(Event):
    """We sent the stop (SIGTERM / docker stop) and wait for the server to go."""

    TYPE: ClassVar[str] = "StopIssued"
    reason: str = "unload"


@dataclass(frozen=True)
class Stopped(Event):
    TYPE: ClassVar[str] = "Stopped"
    reason: str = "unload"
    exit_code: int | None = None


@dataclass(frozen=True)
class Adopted(Event):
    """A server left over from an earlier run of the app was found and taken over."""

    TYPE: ClassVar[str] = "Adopted"
    handle: dict[str, Any]
    ready: bool = False


@dataclass(frozen=True)
class AppStarted(Event):
    TYPE: ClassVar[str] = "AppStarted"
    instance: str = ""
    pid: int | None = None


@dataclass(frozen=True)
class AppStopped(Event):
    TYPE: ClassVar[str] = "AppStopped"
    reason: str = "shutdown"


@dataclass(frozen=True)
class BenchmarkStarted(Event):
    """A benchmark run began measuring this model's server.

    It sits in the model's stream between the load it measures and any crash or
    unload, so History shows which load (and which restart) each run measured.
    """

    TYPE: ClassVar[str] = "BenchmarkStarted"
    run_id: str
    kind: str  # "sweep" or "depth"
    workload: str = ""  # one line, e.g. "concurrency 1,8,64 x 64 requests"


@dataclass(frozen=True)
class BenchmarkFinished(Event):
    TYPE: ClassVar[str] = "BenchmarkFinished"
    run_id: str
    status: str  # complete / partial / invalid / failed
    summary: str = ""


@dataclass(frozen=True)
class UnknownEvent(Event):
    """A stored event this version of the code does not know (newer or retired type).

    Reads keep it instead of failing, so old or newer data never breaks the app.
    """

    type_name: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.type_name

    def payload(self) -> dict[str, Any]:
        return dict(self.data)


def event_types() -> dict[str, type[Event]]:
    return dict(_REGISTRY)


def to_record(event: Event) -> tuple[str, dict[str, Any]]:
    return event.type, event.payload()


def from_record(type_name: str, payload: Mapping[str, Any] | None) -> Event:
    """Rebuild an event; unknown types and payloads that no longer fit become ``UnknownEvent``."""
    data = dict(payload or {})
    cls = _REGISTRY.get(type_name)
    if cls is None:
        return UnknownEvent(type_name, data)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    try:
        # Extra keys come from newer writers: ignore them rather than lose the event.
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return UnknownEvent(type_name, data)


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: its place in the global order and in its stream, who and when."""

    position: int
    stream: str
    version: int
    event: Event
    actor: str
    ts: float

    @property
    def type(self) -> str:
        return self.event.type


# --- redaction -------------------------------------------------------------------

REDACTED: Final = secrets.REDACTED

# Words that mark a secret when they end a name, as a whole segment: HF_TOKEN,
# NGC_API_KEY, db-password, client.secret. "max_tokens", "token_count" and
# "HF_TOKEN_FILE" (a path, not the secret) do not match on purpose.
_SENSITIVE_WORDS = (
    r"api[_-]?key",
    "apikey",
    "token",
    "secret",
    r"secret[_-]?key",
    "password",
    "passwd",
    r"access[_-]?key",
    r"private[_-]?key",
    "credentials?",
    "authorization",
)
_SENSITIVE = "(?:" + "|".join(_SENSITIVE_WORDS) + ")"
_SECRET_KEY_RE: Final = re.compile(rf"(?i)(?:^|[_.-]){_SENSITIVE}$")
_SECRET_ASSIGNMENT_RE: Final = re.compile(
    rf"""(?ix)
    (?<![A-Za-z0-9])
    ((?:[A-Za-z0-9]+[_.-])*{_SENSITIVE})          # the name
    (["']?\s*[=:]\s*["']?)                        # = or : and quotes
    (?!\*\*\*)(?:Bearer\s+)?([^\s"',;}}]+)        # the value
    """
)
_SECRET_FLAG_NAME = rf"--?(?:[a-z0-9]+-)*{_SENSITIVE}"
_SECRET_FLAG_ONLY_RE: Final = re.compile(rf"(?i){_SECRET_FLAG_NAME}")
_SECRET_FLAG_RE: Final = re.compile(rf"(?i)({_SECRET_FLAG_NAME}\s+)(?!\*\*\*|-)(\S+)")
_BEARER_RE: Final = re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]+")
_NGC_KEY_RE: Final = re.compile(r"\bnvapi-[A-Za-z0-9_-]{8,}")


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY_RE.search(key))


def redact_text(text: str) -> str:
    """Hide secret values inside free text such as log tails.

    Every secret value the app handed to a server (``secrets.KNOWN``) becomes ``***`` wherever it
    stands; ``NGC_API_KEY=nvapi-...`` becomes ``NGC_API_KEY=***``; so do ``--api-key v``,
    ``Bearer v`` and bare NGC keys.
    """
    text = secrets.KNOWN.mask(text)  # the values the app handed out, however they are printed
    text = _SECRET_ASSIGNMENT_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _SECRET_FLAG_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _NGC_KEY_RE.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secrets replaced by ``***``: values under secret-looking
    keys, and secret assignments inside any string."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_key(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return _redact_argv(value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def _redact_argv(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    """Lists are often argv: the item after ``--api-key`` is the secret."""
    redacted: list[Any] = []
    hide_next = False
    for item in items:
        redacted.append(REDACTED if hide_next and isinstance(item, str) else redact(item))
        hide_next = isinstance(item, str) and bool(_SECRET_FLAG_ONLY_RE.fullmatch(item))
    return redacted


# Events that mean something went wrong; they are logged as warnings, the rest as info.
FAILURE_TYPES: Final = frozenset({"StartFailed", "Crashed", "Unhealthy", "GaveUp"})
_LOG_PAYLOAD_CHARS: Final = 300


def audit_line(recorded: RecordedEvent) -> str:
    """One log line per stored event, so the app log tells the same story as the history page."""
    payload = {k: v for k, v in recorded.event.payload().items() if k != "log_tail"}
    details = ", ".join(f"{k}={v}" for k, v in payload.items())
    if len(details) > _LOG_PAYLOAD_CHARS:
        details = details[:_LOG_PAYLOAD_CHARS] + "..."
    return f"{recorded.stream} {recorded.type} by {recorded.actor}" + (f": {details}" if details else "")
