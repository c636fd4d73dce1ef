"""Drawing chat turns and streaming a reply into the page (the Streamlit half of the chat)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import streamlit as st

from inference import ChatRequest, ChatStream, InferenceError
from ui.chat_view import Conversation, Turn, error_text, metrics_caption
from ui.format import escape_md

NO_TEXT: Final = "*(no text arrived)*"
INTERRUPTED: Final = "Interrupted: the page reloaded (a click elsewhere) while this reply was streaming."


def render_turn(turn: Turn) -> None:
    with st.chat_message(turn.role):
        if turn.role == "user":
            st.text(turn.content)  # literal: a question is not markup
        else:
            st.markdown(turn.content or NO_TEXT)
        if turn.error:
            st.error(escape_md(turn.error), icon=":material/error:")
        if turn.caption:
            st.caption(turn.caption)


def stream_reply(request: ChatRequest, model_name: str, chat: Conversation) -> None:
    """Stream one reply into an assistant message as it arrives and add it to ``chat``.

    A failed request ends the reply inline with its reason. A rerun that stops the script mid
    reply (the user clicked something) still keeps what had arrived, marked as interrupted.
    """
    stream = ChatStream(request)
    arrived: list[str] = []
    failures: list[InferenceError] = []

    def pieces() -> Iterator[str]:
        # Failures are caught inside the generator so write_stream keeps what is on screen.
        try:
            for piece in stream:
                arrived.append(piece)
                yield piece
        except InferenceError as exc:
            failures.append(exc)

    turn: Turn | None = None
    try:
        with st.chat_message("assistant"):
            st.write_stream(pieces())
            text = "".join(arrived)
            if failures:
                message = error_text(failures[0], model_name)
                st.error(escape_md(message), icon=":material/error:")
                turn = Turn("assistant", text, error=message)
            else:
                turn = Turn("assistant", text, caption=metrics_caption(stream.result))
                st.caption(turn.caption)
    finally:
        chat.add(turn or Turn("assistant", "".join(arrived), error=INTERRUPTED))
