"""The inference client: SSE decoding, the chunk fold, and its typed errors against real sockets.

Failure paths use real TCP servers in this process (a listener that never
answers, a server that sends canned bytes), not mocks: the client must
recognise what the kernel and httpx really report.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from inference import (
    ANSWER,
    REASONING,
    AsyncChatStream,
    ChatRequest,
    ChatStream,
    Piece,
    ProtocolViolation,
    RequestTimedOut,
    ServerError,
    ServerUnreachable,
    StreamInterrupted,
    achat,
    chat,
    chat_url,
)
from inference.result import StreamAccumulator
from inference.sse import SSEDecoder
from tests.support import free_port

PROMPT = [{"role": "user", "content": "hi"}]


def frame(delta: dict, finish: str | None = None, **extra: object) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


STREAM = (
    "data: " + frame({"role": "assistant", "content": None}) + "\n\n"
    ": keep-alive comment\n\n"
    "data: " + frame({"content": "Hello"}) + "\n\n"
    "data: " + frame({"content": " wörld"}) + "\r\n\r\n"
    "data: " + frame({}, "stop") + "\n\n"
    'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}\n\n'
    "data: [DONE]\n\n"
).encode()


# --- SSE decoding ------------------------------------------------------------------------------


def test_decoder_gives_the_same_events_however_bytes_are_cut() -> None:
    whole = SSEDecoder().feed(STREAM)
    assert len(whole) == 6
    assert whole[-1] == "[DONE]"
    for cut in range(1, len(STREAM)):
        decoder = SSEDecoder()
        assert decoder.feed(STREAM[:cut]) + decoder.feed(STREAM[cut:]) == whole
        assert not decoder.pending


def test_decoder_joins_multiline_data_and_waits_for_the_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\ndata: a\ndata: b\n") == []
    assert decoder.pending
    assert decoder.feed(b"\n") == ["a\nb"]


# --- the fold ----------------------------------------------------------------------------------


def fold(payloads: list[str]) -> StreamAccumulator:
    acc = StreamAccumulator("http://x/v1/chat/completions", started_at=10.0)
    for i, payload in enumerate(payloads):
        acc.add(payload, at=10.1 + i * 0.05)
    return acc


def test_role_only_frame_is_not_a_token_and_usage_wins() -> None:
    acc = fold(SSEDecoder().feed(STREAM))
    result = acc.partial(ended_at=11.0)
    assert result.text == "Hello wörld"
    assert len(result.token_times) == 2
    # Frame 0 (role, null content) arrived at 10.10 and frame 1 ("Hello") at 10.15: TTFT counts content.
    assert result.ttft_s == pytest.approx(0.15)
    assert (result.output_tokens, result.tokens_from_usage, result.prompt_tokens) == (2, True, 4)
    assert result.finish_reason == "stop"
    assert acc.done


def test_without_usage_tokens_are_counted_and_rate_is_decode_only() -> None:
    acc = fold([frame({"content": w}) for w in ("a", "b", "c", "d", "e")] + ["[DONE]"])
    result = acc.partial(ended_at=11.0)
    assert (result.output_tokens, result.tokens_from_usage) == (5, False)
    assert result.inter_token_s == pytest.approx((0.05,) * 4)
    assert result.tokens_per_s == pytest.approx(20.0)  # 4 gaps of 50 ms; TTFT excluded


def test_single_chunk_has_no_rate() -> None:
    assert fold([frame({"content": "all at once"}), "[DONE]"]).partial(11.0).tokens_per_s is None


def test_error_frame_mid_stream_is_a_server_error_with_the_partial_reply() -> None:
    with pytest.raises(ServerError) as info:
        fold([frame({"content": "par"}), json.dumps({"error": {"message": "engine died"}})])
    assert info.value.detail == "engine died"
    assert info.value.partial is not None
    assert info.value.partial.text == "par"


def test_non_json_frame_is_a_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation):
        fold(["not json"])


# --- reasoning: the second channel -------------------------------------------------------------


def thinking_stream(field: str) -> list[str]:
    """A reasoning model's frames as ``field`` names its thinking: role-only (in llama.cpp's
    null-content shape, thinking field null too), two thoughts, two answer words, usage."""
    return [
        frame({"role": "assistant", "content": None, field: None}),
        frame({field: "Hmm,"}),
        frame({field: " easy."}),
        frame({"content": "", field: None}),  # vLLM's empty hand-over frame between the phases
        frame({"content": "Four"}),
        frame({"content": "."}, "stop"),
        json.dumps({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 4}}),
        "[DONE]",
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_is_kept_apart_from_the_answer_with_its_own_times(field: str) -> None:
    acc = fold(thinking_stream(field))
    result = acc.partial(ended_at=11.0)
    assert (result.reasoning, result.text) == ("Hmm, easy.", "Four.")
    # Frames arrive 50 ms apart from 10.10; the role frame (10.10) and the empty hand-over
    # frame (10.25) carry no text and stamp nothing.
    assert result.reasoning_times == pytest.approx((10.15, 10.20))
    assert result.answer_times == pytest.approx((10.30, 10.35))
    assert result.token_times == pytest.approx((10.15, 10.20, 10.30, 10.35))
    assert result.ttft_s == pytest.approx(0.15)  # first token on any channel: the first thought
    assert result.ttf_thought_s == pytest.approx(0.15)
    assert result.ttfa_s == pytest.approx(0.30)
    # Usage counts the thinking too, so the decode rate spans both channels: 3 tokens / 0.2 s.
    assert (result.output_tokens, result.tokens_from_usage) == (4, True)
    assert result.tokens_per_s == pytest.approx(15.0)
    assert result.finish_reason == "stop"


def test_add_returns_each_frames_text_by_channel() -> None:
    acc = StreamAccumulator("http://x/v1/chat/completions", started_at=10.0)
    returned = [acc.add(payload, at=10.1) for payload in thinking_stream("reasoning_content")]
    assert returned == [
        [],
        [Piece(REASONING, "Hmm,")],
        [Piece(REASONING, " easy.")],
        [],
        [Piece(ANSWER, "Four")],
        [Piece(ANSWER, ".")],
        [],
        [],
    ]


def test_a_frame_with_both_channels_gives_thinking_first_and_one_token_time() -> None:
    acc = StreamAccumulator("http://x/v1/chat/completions", started_at=10.0)
    pieces = acc.add(frame({"reasoning": "so", "content": "Yes"}), at=10.5)
    assert pieces == [Piece(REASONING, "so"), Piece(ANSWER, "Yes")]
    result = acc.partial(ended_at=11.0)
    assert (result.token_times, result.reasoning_times, result.answer_times) == ((10.5,), (10.5,), (10.5,))


def test_without_usage_thinking_chunks_count_as_output_tokens() -> None:
    frames = [p for p in thinking_stream("reasoning") if "usage" not in p]
    result = fold(frames).partial(ended_at=11.0)
    assert (result.output_tokens, result.tokens_from_usage) == (4, False)


def test_a_reply_without_thinking_has_no_thought_times() -> None:
    result = fold(SSEDecoder().feed(STREAM)).partial(ended_at=11.0)
    assert (result.reasoning, result.reasoning_times, result.ttf_thought_s) == ("", (), None)
    assert result.answer_times == result.token_times
    assert result.ttfa_s == result.ttft_s


def test_thinking_that_is_cut_off_stays_in_the_partial_reply() -> None:
    with pytest.raises(ServerError) as info:
        fold([frame({"reasoning_content": "Let me"}), json.dumps({"error": {"message": "oom"}})])
    partial = info.value.partial
    assert partial is not None
    assert (partial.reasoning, partial.text, partial.ttfa_s) == ("Let me", "", None)


def test_a_delta_that_is_not_an_object_carries_nothing() -> None:
    acc = StreamAccumulator("http://x/v1/chat/completions", started_at=10.0)
    assert acc.add(json.dumps({"choices": [{"index": 0, "delta": "oops"}]}), at=10.1) == []


def test_chat_url_accepts_bases_with_or_without_v1() -> None:
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


# --- typed errors against real sockets ---------------------------------------------------------


def test_connection_refused_is_server_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachable) as info:
        chat(ChatRequest(url, "m", PROMPT))
    assert "Is the model server running?" in str(info.value)


@contextmanager
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def test_silent_server_is_a_timeout() -> None:
    with listener() as sock:  # the kernel completes the handshake; nobody ever answers
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(RequestTimedOut) as info:
            chat(ChatRequest(url, "m", PROMPT, read_timeout_s=0.3))
    assert "sent nothing for 0.3 s" in str(info.value)


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)


@contextmanager
def canned_server(raw_response: bytes) -> Iterator[str]:
    """A real HTTP peer that answers one request with exactly these bytes, then closes."""
    with listener() as sock:

        def serve() -> None:
            conn, _ = sock.accept()
            with conn:
                _read_request(conn)
                conn.sendall(raw_response)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        thread.join(5)


def sse_head(extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n{extra}".encode()


def test_sync_and_async_clients_read_a_whole_stream() -> None:
    raw = sse_head(f"content-length: {len(STREAM)}\r\n\r\n") + STREAM
    with canned_server(raw) as url:
        sync = chat(ChatRequest(url, "m", PROMPT))
    with canned_server(raw) as url:
        other = asyncio.run(achat(ChatRequest(url, "m", PROMPT)))
    for result in (sync, other):
        assert (result.text, result.output_tokens, result.tokens_from_usage) == ("Hello wörld", 2, True)
        # TTFT counts from the moment the transport started writing the request.
        assert result.started_at < result.sent_at <= result.token_times[0]


THINKING_STREAM = "".join(f"data: {p}\n\n" for p in thinking_stream("reasoning_content")).encode()


def test_streams_yield_the_answer_or_every_piece_with_its_channel() -> None:
    raw = sse_head(f"content-length: {len(THINKING_STREAM)}\r\n\r\n") + THINKING_STREAM
    expected = [
        Piece(REASONING, "Hmm,"),
        Piece(REASONING, " easy."),
        Piece(ANSWER, "Four"),
        Piece(ANSWER, "."),
    ]
    with canned_server(raw) as url:
        stream = ChatStream(ChatRequest(url, "m", PROMPT))
        assert list(stream) == ["Four", "."]  # plain iteration: the answer, for st.write_stream
    with canned_server(raw) as url:
        stream = ChatStream(ChatRequest(url, "m", PROMPT))
        assert list(stream.pieces()) == expected
    assert (stream.result.reasoning, stream.result.text) == ("Hmm, easy.", "Four.")

    async def answer_async(url: str) -> list[str]:
        return [text async for text in AsyncChatStream(ChatRequest(url, "m", PROMPT))]

    async def pieces_async(url: str) -> list[Piece]:
        return [piece async for piece in AsyncChatStream(ChatRequest(url, "m", PROMPT)).pieces()]

    with canned_server(raw) as url:
        assert asyncio.run(answer_async(url)) == ["Four", "."]
    with canned_server(raw) as url:
        assert asyncio.run(pieces_async(url)) == expected
    with canned_server(raw) as url:
        result = chat(ChatRequest(url, "m", PROMPT))
    # One read can hold the whole canned stream, so both channels may share a stamp.
    assert result.sent_at <= result.reasoning_times[0] <= result.answer_times[0]
    assert result.ttft_s == result.ttf_thought_s


def test_http_error_status_carries_the_servers_message() -> None:
    body = b'{"error": {"message": "boom", "type": "InternalError"}}'
    raw = b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
    raw += b"content-length: %d\r\n\r\n%s" % (len(body), body)
    with canned_server(raw) as url, pytest.raises(ServerError) as info:
        chat(ChatRequest(url, "m", PROMPT))
    assert (info.value.status, info.value.detail) == (500, "boom")
    assert "answered HTTP 500: boom" in str(info.value)


def test_json_instead_of_a_stream_is_a_protocol_violation() -> None:
    body = b'{"choices": []}'
    raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    with canned_server(raw) as url, pytest.raises(ProtocolViolation):
        chat(ChatRequest(url, "m", PROMPT))


def test_connection_cut_mid_stream_is_interrupted_with_partial_text() -> None:
    chunk = ("data: " + frame({"content": "Hel"}) + "\n\n").encode()
    # Chunked body whose terminating chunk never comes: the peer just closes.
    raw = sse_head("transfer-encoding: chunked\r\n\r\n") + b"%x\r\n%s\r\n" % (len(chunk), chunk)
    with canned_server(raw) as url, pytest.raises(StreamInterrupted) as info:
        chat(ChatRequest(url, "m", PROMPT))
    assert info.value.partial is not None
    assert info.value.partial.text == "Hel"
    assert "closed the stream after 1 chunks" in str(info.value)


def test_stream_that_ends_without_finishing_is_interrupted() -> None:
    body = ("data: " + frame({"content": "Hel"}) + "\n\n").encode()
    raw = sse_head("connection: close\r\n\r\n") + body  # body ends at close, cleanly, but too early
    with canned_server(raw) as url, pytest.raises(StreamInterrupted) as info:
        chat(ChatRequest(url, "m", PROMPT))
    assert "without finishing" in str(info.value)
