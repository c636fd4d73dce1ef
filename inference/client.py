"""Streaming chat over httpx, shared by the chat page and the benchmark.

httpx hands over bytes as soon as they are read from the socket, so every
chunk is timestamped when it arrives (``requests.iter_lines`` would buffer
512 bytes and smear the timings).

Each stream can be read two ways, both sending the request once per read:

- ``stream.pieces()`` yields ``Piece(channel, text)`` for both channels in
  arrival order: a reasoning model's thinking (``"reasoning"``), then its
  answer (``"answer"``). The chat page uses it to show the thinking live.
- iterating the stream itself yields the answer's text only, as plain strings
  that ``st.write_stream`` takes as they are.

``ChatStream`` is the sync one, ``AsyncChatStream`` the asyncio one for load
generators. Both share ``_Exchange``, which holds everything except the I/O calls.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing, closing
from dataclasses import dataclass, field
from typing import Any

import httpx

from inference.errors import (
    InferenceError,
    ModelNotReady,
    ProtocolViolation,
    RequestTimedOut,
    ServerError,
    ServerUnreachable,
    StreamInterrupted,
)
from inference.result import ANSWER, ChatResult, Piece, StreamAccumulator, error_detail
from inference.sse import SSEDecoder


def chat_url(base_url: str) -> str:
    """``http://host:port`` or ``http://host:port/v1`` -> the chat completions URL."""
    base = base_url.rstrip("/")
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


@dataclass(frozen=True)
class ChatRequest:
    base_url: str
    model: str
    messages: Sequence[Mapping[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed
    connect_timeout_s: float = 5.0
    # Longest silence allowed between bytes, the first token included: a long
    # prompt on a big model can take a while before anything arrives.
    read_timeout_s: float = 120.0
    include_usage: bool = True

    @property
    def url(self) -> str:
        return chat_url(self.base_url)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(self.messages), "stream": True}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)


class _Exchange:
    """One request/response: status checks, SSE decoding, timestamps, error translation."""

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.url = request.url
        self.decoder = SSEDecoder()
        self.acc: StreamAccumulator | None = None
        self.responded = False

    def build(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        req = self.request
        trace = self._trace_async if isinstance(client, httpx.AsyncClient) else self._trace
        return client.build_request(
            "POST",
            self.url,
            json=req.body(),
            headers=req.headers(),
            timeout=req.timeout(),
            extensions={"trace": trace},
        )

    def mark_started(self) -> None:
        self.acc = StreamAccumulator(self.url, time.perf_counter())

    def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        # httpcore reports "http11.send_request_headers.started" (or http2.) right
        # before the first byte is written, after pool and connection setup: TTFT
        # counts from here. A stamp taken after the write could land after the
        # server had already answered if this process were descheduled; a stamp
        # before it can only make TTFT longer, never shorter than the truth.
        if event.endswith("send_request_headers.started"):
            self._acc().sent_at = time.perf_counter()

    async def _trace_async(self, event: str, info: Mapping[str, Any]) -> None:
        self._trace(event, info)

    def accept_headers(self, response: httpx.Response) -> bool:
        """True if the response is a stream to read; False if its body holds an error to read first."""
        self.responded = True
        if response.status_code >= 400:
            return False
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise ProtocolViolation(
                f"{self.url} answered {content_type or 'no content type'} instead of an event stream; "
                "is this an OpenAI-compatible chat endpoint?",
                self.url,
            )
        return True

    def status_error(self, status: int, body: bytes) -> ServerError:
        detail = error_detail(body) or "(no details)"
        if status == 503:
            return ModelNotReady(
                f"The model server at {self.url} is up but not ready (HTTP 503: {detail}). "
                "Wait until the model shows Loaded & Ready.",
                self.url,
                status,
                detail,
            )
        return ServerError(
            f"The model server at {self.url} answered HTTP {status}: {detail}", self.url, status, detail
        )

    def on_bytes(self, chunk: bytes) -> list[Piece]:
        at = time.perf_counter()  # first thing: this is the arrival time of everything in the chunk
        acc = self._acc()
        return [piece for payload in self.decoder.feed(chunk) for piece in acc.add(payload, at)]

    def finish(self) -> ChatResult:
        acc = self._acc()
        ended_at = time.perf_counter()
        if not acc.finished:
            raise StreamInterrupted(
                f"The stream from {self.url} ended after {len(acc.token_times)} chunks without finishing.",
                self.url,
                acc.partial(ended_at),
            )
        return acc.partial(ended_at)

    def translate(self, exc: httpx.HTTPError) -> InferenceError:
        partial = self.acc.partial(time.perf_counter()) if self.acc else None
        req, url = self.request, self.url
        if isinstance(exc, httpx.ConnectTimeout):
            return RequestTimedOut(f"Could not connect to {url} within {req.connect_timeout_s:g} s.", url)
        if isinstance(exc, httpx.TimeoutException):
            got = f" after {len(partial.token_times)} chunks" if partial and partial.token_times else ""
            return RequestTimedOut(
                f"{url} sent nothing for {req.read_timeout_s:g} s{got}; the request was abandoned.",
                url,
                partial,
            )
        if isinstance(exc, httpx.ConnectError):
            return ServerUnreachable(f"Cannot connect to {url} ({exc}). Is the model server running?", url)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            if not self.responded:
                return StreamInterrupted(
                    f"{url} closed the connection without answering ({exc}).", url, partial
                )
            n = len(partial.token_times) if partial else 0
            return StreamInterrupted(
                f"{url} closed the stream after {n} chunks, before the reply was complete ({exc}).",
                url,
                partial,
            )
        return InferenceError(f"Request to {url} failed: {exc!r}", url, partial)

    def _acc(self) -> StreamAccumulator:
        if self.acc is None:
            raise RuntimeError("mark_started() must come before the request is sent")
        return self.acc


class _ResultHolder:
    def __init__(self) -> None:
        self._result: ChatResult | None = None

    @property
    def result(self) -> ChatResult:
        """The finished reply; available once iteration has ended without an error."""
        if self._result is None:
            raise RuntimeError("the stream has not been read to the end")
        return self._result


class ChatStream(_ResultHolder):
    """Iterate for the answer's text pieces as they arrive, or read ``pieces()`` for the
    reasoning too; then ``result`` has both texts, tokens and timings.

    ``client`` is an optional shared ``httpx.Client``; without one, a client is
    made for this request and closed after it.
    """

    def __init__(self, request: ChatRequest, client: httpx.Client | None = None) -> None:
        super().__init__()
        self.request = request
        self._client = client

    def __iter__(self) -> Iterator[str]:
        # Answer only: what st.write_stream and existing callers expect; thinking is in result.
        # closing(): a caller that stops early ends the request now, not when GC gets to it.
        with closing(self.pieces()) as pieces:
            for piece in pieces:
                if piece.channel == ANSWER:
                    yield piece.text

    def pieces(self) -> Iterator[Piece]:
        """Every text piece on both channels, in arrival order."""
        ex = _Exchange(self.request)
        client = self._client or httpx.Client()
        try:
            req = ex.build(client)
            ex.mark_started()
            response = client.send(req, stream=True)
            try:
                if not ex.accept_headers(response):
                    raise ex.status_error(response.status_code, response.read())
                for chunk in response.iter_bytes():
                    yield from ex.on_bytes(chunk)
            finally:
                response.close()
            self._result = ex.finish()
        except httpx.HTTPError as exc:
            raise ex.translate(exc) from exc
        finally:
            if self._client is None:
                client.close()


class AsyncChatStream(_ResultHolder):
    """The asyncio twin of ``ChatStream``: ``async for text in stream`` (the answer) or
    ``async for piece in stream.pieces()`` (both channels), then ``result``."""

    def __init__(self, request: ChatRequest, client: httpx.AsyncClient | None = None) -> None:
        super().__init__()
        self.request = request
        self._client = client

    async def __aiter__(self) -> AsyncIterator[str]:
        # aclosing(): an async generator left unfinished is otherwise closed only by the loop's
        # finaliser, which would hold the connection open after the caller stopped reading.
        async with aclosing(self.pieces()) as pieces:
            async for piece in pieces:
                if piece.channel == ANSWER:
                    yield piece.text

    async def pieces(self) -> AsyncIterator[Piece]:
        """Every text piece on both channels, in arrival order."""
        ex = _Exchange(self.request)
        client = self._client or httpx.AsyncClient()
        try:
            req = ex.build(client)
            ex.mark_started()
            response = await client.send(req, stream=True)
            try:
                if not ex.accept_headers(response):
                    raise ex.status_error(response.status_code, await response.aread())
                async for chunk in response.aiter_bytes():
                    for piece in ex.on_bytes(chunk):
                        yield piece
            finally:
                await response.aclose()
            self._result = ex.finish()
        except httpx.HTTPError as exc:
            raise ex.translate(exc) from exc
        finally:
            if self._client is None:
                await client.aclose()


def chat(request: ChatRequest, client: httpx.Client | None = None) -> ChatResult:
    """Send a chat request and wait for the whole streamed reply."""
    stream = ChatStream(request, client)
    for _ in stream.pieces():
        pass
    return stream.result


async def achat(request: ChatRequest, client: httpx.AsyncClient | None = None) -> ChatResult:
    """``chat`` for asyncio callers such as the benchmark's load generator."""
    stream = AsyncChatStream(request, client)
    async for _ in stream.pieces():
        pass
    return stream.result
