"""Drawing chat turns and streaming a reply into the page (the Streamlit half of the chat).

A reasoning model's thinking goes into a collapsed "Thinking" expander above its answer, live
while it streams and again on every redraw; a reply without thinking draws no such block.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from inference import ChatRequest, ChatStream, InferenceError
from ui.chat_view import Conversation, Turn, error_text, metrics_caption
from ui.format import escape_md

NO_TEXT: Final = "*(no text arrived)*"
NO_ANSWER: Final = "*(the reply ended before the answer began)*"
INTERRUPTED: Final = "Interrupted: the page reloaded (a click elsewhere) while this reply was streaming."
THINKING: Final = "Thinking"
THINKING_ICON: Final = ":material/psychology:"


def thinking_block(slot: DeltaGenerator | None = None) -> DeltaGenerator:
    """The collapsed Thinking expander, in ``slot`` or else here: thinking can run long, and the
    answer is what most readers want."""
    expander = slot.expander if slot is not None else st.expander
    return expander(THINKING, expanded=False, icon=THINKING_ICON)


def render_turn(turn: Turn) -> None:
    with st.chat_message(turn.role):
        if turn.role == "user":
            st.text(turn.content)  # literal: a question is not markup
        else:
            if turn.reasoning:
                thinking_block().markdown(turn.reasoning)
            st.markdown(turn.content or (NO_ANSWER if turn.reasoning else NO_TEXT))
        if turn.error:
            st.error(escape_md(turn.error), icon=":material/error:")
        if turn.caption:
            st.caption(turn.caption)


class _LiveReply:
    """A reply being streamed into the current chat message: what has arrived on each channel,
    the failure that ended it early if one did, and the Thinking block drawn on first thought.

    Create it inside the assistant's ``st.chat_message``, before the answer is written: its
    placeholder holds the place above the answer and draws nothing until thinking arrives.
    """

    def __init__(self, stream: ChatStream) -> None:
        self.stream = stream
        self.answer: list[str] = []
        self.reasoning: list[str] = []
        self.failure: InferenceError | None = None
        self._slot = st.empty()
        self._thinking: DeltaGenerator | None = None

    def answer_text(self) -> Iterator[str]:
        """The answer's pieces for ``st.write_stream``; thinking goes to its block on the way."""
        # Failures are caught inside the generator so write_stream keeps what is on screen.
        try:
            for piece in self.stream.pieces():
                if piece.is_reasoning:
                    self._think(piece.text)
                else:
                    self.answer.append(piece.text)
                    yield piece.text
        except InferenceError as exc:
            self.failure = exc

    def _think(self, text: str) -> None:
        if self._thinking is None:
            self._thinking = thinking_block(self._slot).empty()
        self.reasoning.append(text)
        # The whole text each time, as write_stream does: a placeholder shows one element.
        self._thinking.markdown("".join(self.reasoning))

    def turn(self, *, caption: str | None = None, error: str | None = None) -> Turn:
        return Turn("assistant", "".join(self.answer), caption, error, "".join(self.reasoning))


def stream_reply(request: ChatRequest, model_name: str, chat: Conversation) -> None:
    """Stream one reply into an assistant message as it arrives and add it to ``chat``.

    A failed request ends the reply inline with its reason. A rerun that stops the script mid
    reply (the user clicked something) still keeps what had arrived, marked as interrupted.
    """
    reply: _LiveReply | None = None
    turn: Turn | None = None
    try:
        with st.chat_message("assistant"):
            reply = _LiveReply(ChatStream(request))
            st.write_stream(reply.answer_text())
            if reply.reasoning and not reply.answer:
                st.markdown(NO_ANSWER)  # as the redraw will show it: thinking alone is not a reply
            if reply.failure is not None:
                message = error_text(reply.failure, model_name)
                turn = reply.turn(error=message)
                st.error(escape_md(message), icon=":material/error:")
            else:
                turn = reply.turn(caption=metrics_caption(reply.stream.result))
                st.caption(turn.caption)
    finally:
        if turn is None:
            turn = reply.turn(error=INTERRUPTED) if reply else Turn("assistant", "", error=INTERRUPTED)
        chat.add(turn)
