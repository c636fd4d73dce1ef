"""One streamed chat request, recorded as a timeline: aiohttp, timestamps before parsing.

aiohttp on uvloop was the cheapest client per chunk measured here
(perf/http_clients.py), and it hands each socket read over as it arrives
(``iter_any``), so nothing buffers a frame and delays its timestamp. The
arrival time of a read is taken first, then its frames are parsed; every frame
in one read shares that time, which is when the client could first have seen it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from benchmark.records import Channel, RequestRecord
from inference.deltas import delta_texts
from inference.result import error_detail

DONE: Final = b"[DONE]"
ERROR_BODY_MAX: Final = 4096
STALE_RETRIES: Final = 2


@dataclass(frozen=True)
class Target:
    """Where requests go and what they name: any OpenAI-compatible server."""

    base_url: str
    served_model: str
    api_key: str | None = field(default=None, repr=False)  # never printed, never stored
    model_id: str | None = None  # the catalog id, when the target came from the catalog
    engine: str | None = None

    @property
    def chat_url(self) -> str:
        base = self.base_url.rstrip("/")
        return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"

    @property
    def root_url(self) -> str:
        return self.base_url.rstrip("/").removesuffix("/v1")

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass(frozen=True)
class RequestSpec:
    messages: list[dict[str, Any]]
    max_tokens: int
    requested_prompt_tokens: int | None = None


@dataclass(frozen=True)
class BodyOptions:
    temperature: float = 0.0
    seed: int | None = 0
    # ignore_eos and min_tokens make the model produce the requested length (vLLM, NIM,
    # llama.cpp take them); a server that refuses unknown fields gets a body without them.
    length_controls: bool = True

    def body(self, model: str, spec: RequestSpec) -> bytes:
        body: dict[str, Any] = {
            "model": model,
            "messages": spec.messages,
            "max_tokens": spec.max_tokens,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.length_controls:
            body["ignore_eos"] = True
            body["min_tokens"] = spec.max_tokens
        return json.dumps(body).encode()


def new_session(connections: int) -> aiohttp.ClientSession:
    # One pooled connection per concurrent stream: a request never waits for a socket.
    connector = aiohttp.TCPConnector(limit=max(connections, 1), limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, read_bufsize=2**16)


class _FrameReader:
    """Splits a byte stream into SSE events and folds each into the record."""

    def __init__(self, record: RequestRecord, keep_text: bool) -> None:
        self.record = record
        self.keep_text = keep_text
        self.buffer = b""
        self.done = False
        self.texts: list[str] = []

    def feed(self, chunk: bytes, at: int) -> None:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        buffer = self.buffer + chunk
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            self._event(buffer[start:end], at)
            start = end + 2
        self.buffer = buffer[start:]

    def _event(self, raw: bytes, at: int) -> None:
        payload = b"\n".join(line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:"))
        if not payload:
            return  # a comment or keep-alive line: not a frame of the reply
        record = self.record
        if payload == DONE:
            self.done = True
            return
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise ValueError(f"stream frame is not a JSON object: {payload[:120]!r}")
        if "error" in data or data.get("object") == "error":
            raise _MidStreamError(error_detail(payload))
        channel = self._fold(data)
        record.frame_ns.append(at)
        record.frame_bytes.append(len(raw) + 2)
        record.frame_channel.append(channel)

    def _fold(self, data: dict[str, Any]) -> int:
        record = self.record
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            _take_usage(record, usage)
        timings = data.get("timings")
        if isinstance(timings, Mapping):
            record.server_timings = dict(timings)
        choices = data.get("choices")
        if not choices or not isinstance(choices[0], Mapping):
            return Channel.NONE
        choice = choices[0]
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
        answer, reasoning = delta_texts(choice.get("delta") or {})
        if self.keep_text and (answer or reasoning):
            self.texts.append(reasoning + answer)
        if answer:
            return Channel.CONTENT
        return Channel.REASONING if reasoning else Channel.NONE


class _MidStreamError(Exception):
    pass


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _take_usage(record: RequestRecord, usage: Mapping[str, Any]) -> None:
    record.prompt_tokens = _int(usage.get("prompt_tokens"))
    record.completion_tokens = _int(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    if isinstance(details, Mapping):
        record.reasoning_tokens = _int(details.get("reasoning_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    if isinstance(prompt_details, Mapping):
        record.cached_tokens = _int(prompt_details.get("cached_tokens"))


def _fail(record: RequestRecord, error_class: str, message: str) -> None:
    record.error_class = error_class
    record.error = message[:500]


def _classify(exc: BaseException, url: str, timeout_s: float) -> tuple[str, str]:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ServerUnreachable", f"cannot connect to {url}: {exc.os_error or exc}"
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "Timeout", f"{url} sent nothing for {timeout_s:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "StreamInterrupted", f"{url} closed the stream before the reply was complete ({exc})"
    if isinstance(exc, _MidStreamError):
        return "ServerError", f"{url} reported an error mid-stream: {exc}"
    if isinstance(exc, ValueError):
        return "ProtocolViolation", f"{url} sent a frame that is not OpenAI streaming JSON: {exc}"
    return type(exc).__name__, f"request to {url} failed: {exc!r}"


def _stale(exc: BaseException) -> bool:
    """A pooled connection the server had already closed: it failed before any answer.

    Some servers (llama-server among them) close the connection after each streamed reply
    while still advertising keep-alive, so a pooled connection can be dead by the time it is
    reused. Nothing reached the server's handler, so sending again on a fresh one is safe.
    """
    connect_failure = isinstance(exc, aiohttp.ClientConnectorError)  # refused: the server is gone
    dropped = isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
    return dropped and not connect_failure


async def send(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    record: RequestRecord,
    run_start_ns: int,
    timeout_s: float,
    keep_text: bool = False,
) -> None:
    """Send one request and record everything that came back; never raises, except cancellation."""
    url = target.chat_url
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_s)
    reader = _FrameReader(record, keep_text)
    try:
        for attempt in range(STALE_RETRIES + 1):
            sent = time.perf_counter_ns()  # a retry's clock starts again: the dead socket cost nothing
            record.sent_ns = sent - run_start_ns
            try:
                await _exchange(session, target, body, record, reader, sent, timeout)
                return
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if record.headers_ns is not None or attempt == STALE_RETRIES or not _stale(exc):
                    raise
    except asyncio.CancelledError:
        _fail(record, "Cancelled", "the run was cancelled while this request was in flight")
        raise
    except (TimeoutError, aiohttp.ClientError, _MidStreamError, ValueError) as exc:
        _fail(record, *_classify(exc, url, timeout_s))
    finally:
        if keep_text:
            record.text = "".join(reader.texts)


async def _exchange(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    record: RequestRecord,
    reader: _FrameReader,
    sent: int,
    timeout: aiohttp.ClientTimeout,
) -> None:
    url = target.chat_url
    async with session.post(url, data=body, headers=target.headers(), timeout=timeout) as response:
        record.headers_ns = time.perf_counter_ns() - sent
        record.status = response.status
        if response.status >= 400:
            detail = error_detail(await response.content.read(ERROR_BODY_MAX)) or "(no details)"
            _fail(record, f"HTTP {response.status}", f"{url} answered HTTP {response.status}: {detail}")
            return
        async for chunk in response.content.iter_any():
            reader.feed(chunk, time.perf_counter_ns() - sent)
    if not (reader.done or record.finish_reason):
        _fail(record, "StreamInterrupted", f"{url} ended the stream without finishing the reply")
        return
    record.end_ns = time.perf_counter_ns() - sent
