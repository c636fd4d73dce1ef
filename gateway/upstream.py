"""Passing a request to a model's server and its answer back, chunk by chunk as it arrives.

The body is forwarded as the client sent it except ``model``, which becomes the name the
server serves. The answer's bytes are relayed as they are read (``aiter_raw``: no decoding,
no re-chunking), so a stream's timing survives the hop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.openai_errors import UNAVAILABLE, GatewayError

if TYPE_CHECKING:
    from lifecycle.service import ModelStatus

log = logging.getLogger(__name__)

# Headers of the server's answer that mean something to the client; hop-by-hop ones and the
# length (the body is relayed as a stream) are the gateway's own business.
PASSED_BACK: Final = ("content-type", "content-encoding", "cache-control", "x-request-id")
# A long generation may pause (prefill of a large prompt): no read timeout. Connecting to a
# server that is up is quick, so a short one there names a dead server fast.
TIMEOUT: Final = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=None)


class Relay(StreamingResponse):
    """A streamed answer that says when it is over, however it ends: relayed whole, cut off
    by the client, or never started because the client left before the first byte."""

    def __init__(self, content: AsyncIterator[bytes], status_code: int, headers: Mapping[str, str]) -> None:
        super().__init__(content, status_code=status_code, headers=headers)
        self._on_end: list[Callable[[], None]] = []

    def on_end(self, callback: Callable[[], None]) -> None:
        self._on_end.append(callback)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for callback in self._on_end:
                callback()


class Upstream:
    """One aiohttp session for every model's server.

    Not httpx: its connection pool's bookkeeping grows with the square of the pooled
    connections (httpcore 1.0.9), about 20 ms of the event loop per request at 64 streams,
    which measured as +800 ms TTFT and 0.69x throughput through the gateway
    (perf/gateway_overhead.py). aiohttp relays a frame for a quarter of the CPU.
    """

    def __init__(self) -> None:
        self._client: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the serving event loop it will live in.
        if self._client is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._client = aiohttp.ClientSession(
                connector=connector, timeout=TIMEOUT, auto_decompress=False, trust_env=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def forward(
        self,
        model: ModelStatus,
        path: str,
        body: Mapping[str, Any],
        accept: str | None,
        api_key: str | None = None,
    ) -> Relay:
        url = model.url.rstrip("/") + path
        # Only what the server needs: the client's own headers (its token for this app above
        # all) never go upstream, and the server's key comes from the catalog, not the client.
        headers = {"content-type": "application/json"}
        if accept:
            headers["accept"] = accept
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        content = json.dumps({**body, "model": model.served_model}).encode()
        try:
            response = await self._http().post(url, data=content, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("gateway: %s at %s did not answer: %r", model.id, url, exc)
            message = f"{model.id}'s server at {url} did not answer: {exc!r}"
            raise GatewayError(502, message, "upstream_unreachable", UNAVAILABLE) from None
        passed = {name: response.headers[name] for name in PASSED_BACK if name in response.headers}
        return Relay(_relay(response), response.status, passed)


async def _relay(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():  # as read: no re-chunking
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:  # the server died mid-answer: the stream ends
        log.warning("gateway: the answer from %s broke off: %r", response.url, exc)
    finally:
        response.release()
