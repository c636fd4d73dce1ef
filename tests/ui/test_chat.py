"""The chat page: streamed replies from simulated models, their metrics, and every way a reply
can fail, shown inline while the page stays usable."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lifecycle.service import LifecycleService
from simulator.tokens import expected_reasoning, expected_text
from tests.catalogs import sim_process
from tests.support import free_port
from tests.ui.harness import UiEnv, no_exception, shown_text, ui_env, wait_for_stream
from ui.chat_render import NO_ANSWER, THINKING
from ui.chat_view import CONVERSATIONS_KEY, request_messages

CHAT = "pages/chat.py"


def chat_env(
    tmp_path: Path, *sim_args: str, models: tuple[str, ...] = ("sim-a",)
) -> AbstractContextManager[UiEnv]:
    return ui_env(tmp_path, *(sim_process(m, free_port(), *sim_args) for m in models))


def assistant_replies(at: AppTest) -> list[str]:
    # The answer is the message's last markdown: a Thinking block, if any, comes before it.
    return [m.markdown[-1].value for m in at.chat_message if m.name == "assistant"]


def thinking_shown(at: AppTest) -> list[tuple[str, bool, str]]:
    """(label, open?, text) of each assistant message's Thinking block."""
    return [
        (e.label, e.proto.expanded, e.markdown[0].value)
        for m in at.chat_message
        if m.name == "assistant"
        for e in m.expander
    ]


def test_without_a_loaded_model_the_page_points_to_the_chips(tmp_path: Path) -> None:
    with chat_env(tmp_path) as env:
        at = no_exception(env.app(CHAT))
        assert "chip" in at.info[0].value
        assert not at.chat_input


def test_a_reply_streams_in_with_its_metrics_and_stays_in_the_conversation(tmp_path: Path) -> None:
    with chat_env(tmp_path) as env:
        env.load("sim-a")
        at = no_exception(env.app(CHAT))
        at.number_input(key="chat:max_tokens").set_value(12)
        at.text_area(key="chat:system").set_value("Be brief.")
        at.chat_input[0].set_value("Hello there").run()
        no_exception(at)
        assert [m.name for m in at.chat_message] == ["user", "assistant"]
        assert at.chat_message[0].get("text")[0].value == "Hello there"
        assert assistant_replies(at) == [expected_text(12)]
        caption = at.chat_message[1].caption[0].value
        assert caption.startswith("TTFT ")
        assert "12 output tokens (server usage)" in caption
        assert "tokens/s" in caption
        assert not thinking_shown(at)  # a model that does not think gets no empty Thinking block

        at.run()  # any later run redraws the conversation, metrics included
        assert assistant_replies(at) == [expected_text(12)]
        assert at.chat_message[1].caption[0].value == caption

        at.button[0].click().run()  # Clear
        assert not at.chat_message


def test_a_reasoning_models_thinking_streams_into_a_collapsed_block_above_its_answer(
    tmp_path: Path,
) -> None:
    thinking = 4
    with chat_env(tmp_path, "--reasoning-tokens", str(thinking)) as env:
        env.load("sim-a")
        at = no_exception(env.app(CHAT))
        at.number_input(key="chat:max_tokens").set_value(12)
        at.chat_input[0].set_value("Think first").run()
        no_exception(at)
        reply = at.chat_message[1]
        assert [type(e).__name__ for e in reply.children.values()] == ["Expander", "Markdown", "Caption"]
        assert thinking_shown(at) == [(THINKING, False, expected_reasoning(thinking))]
        assert assistant_replies(at) == [expected_text(12 - thinking)]
        caption = reply.caption[0].value
        assert caption.startswith("First thought ")
        assert " · first answer " in caption
        assert "12 output tokens, thinking included (server usage)" in caption

        at.run()  # the stored turn keeps the thinking: a redraw shows the same reply
        assert thinking_shown(at) == [(THINKING, False, expected_reasoning(thinking))]
        assert assistant_replies(at) == [expected_text(12 - thinking)]
        assert at.chat_message[1].caption[0].value == caption
        # ...but the thinking is never sent back to the model with the next question.
        turns = at.session_state[CONVERSATIONS_KEY]["sim-a"].turns
        assert turns[1].reasoning == expected_reasoning(thinking)
        assert expected_reasoning(thinking) not in str(request_messages("", turns, "next"))

        # A reply that runs out of tokens while still thinking says so where the answer goes.
        at.number_input(key="chat:max_tokens").set_value(3)
        at.chat_input[0].set_value("Think less").run()
        assert thinking_shown(no_exception(at))[1] == (THINKING, False, expected_reasoning(3))
        assert assistant_replies(at)[1] == NO_ANSWER
        assert "first answer —" in at.chat_message[3].caption[0].value
        at.run()
        assert assistant_replies(at)[1] == NO_ANSWER


def test_each_model_has_its_own_conversation(tmp_path: Path) -> None:
    with chat_env(tmp_path, models=("sim-a", "sim-b")) as env:
        env.load("sim-a")
        env.load("sim-b")
        at = no_exception(env.app(CHAT))
        at.selectbox(key="chat:model").set_value("sim-a").run()
        at.chat_input[0].set_value("for a").run()
        assert len(at.chat_message) == 2
        at.selectbox(key="chat:model").set_value("sim-b").run()
        assert not at.chat_message
        at.selectbox(key="chat:model").set_value("sim-a").run()
        assert at.chat_message[0].get("text")[0].value == "for a"


def test_a_model_unloaded_mid_reply_ends_the_reply_with_a_message(tmp_path: Path) -> None:
    with chat_env(tmp_path, "--tokens-per-s", "20") as env:
        url = env.load("sim-a").url
        at = no_exception(env.app(CHAT))
        at.number_input(key="chat:max_tokens").set_value(400)  # 20 s if nothing stopped it

        def unload_once_streaming() -> None:
            wait_for_stream(url)
            env.service.unload("sim-a", actor="test")

        unloader = threading.Thread(target=unload_once_streaming)
        unloader.start()
        at.chat_input[0].set_value("Tell me a long story").run(timeout=30)
        unloader.join(10)
        no_exception(at)
        error = at.chat_message[1].error[0].value
        assert "stopped before it was complete" in error
        reply = assistant_replies(at)[0]
        assert reply.startswith("Simulated tokens")  # what arrived before the cut stays
        assert len(reply.split()) < 400

        env.service.wait("sim-a", "stopped", 30)
        at.run()  # the page is still usable and says why there is nothing to chat with
        assert "No model is loaded" in no_exception(at).info[0].value


def test_a_silent_server_times_out_with_a_message(tmp_path: Path) -> None:
    with chat_env(tmp_path, "--ttft-ms", "5000") as env:
        env.load("sim-a")
        at = no_exception(env.app(CHAT))
        at.number_input(key="chat:timeout_s").set_value(1)
        at.chat_input[0].set_value("Anyone there?").run()
        error = no_exception(at).chat_message[1].error[0].value
        assert "took too long to answer" in error
        assert "sent nothing for 1 s" in error
        assert at.chat_input  # ready for the next question


def test_a_refused_connection_is_reported_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server goes away between the page reading the status and sending the question: the
    # service reports it loaded at an address where nothing listens any more.
    with chat_env(tmp_path) as env:
        env.load("sim-a")
        status = LifecycleService.status
        dead = f"http://127.0.0.1:{free_port()}"
        monkeypatch.setattr(
            LifecycleService, "status", lambda self: [replace(s, url=dead) for s in status(self)]
        )
        at = no_exception(env.app(CHAT))
        at.chat_input[0].set_value("Hello?").run()
        error = no_exception(at).chat_message[1].error[0].value
        assert "does not answer" in error
        assert "Cannot connect" in shown_text(at)


def test_a_streaming_reply_marks_the_model_in_use_so_it_does_not_idle_out(tmp_path: Path) -> None:
    with chat_env(tmp_path, "--tokens-per-s", "40") as env:
        url = env.load("sim-a").url
        at = no_exception(env.app(CHAT))
        at.number_input(key="chat:max_tokens").set_value(40)  # a 1 s reply
        seen: list[bool] = []

        def look_while_streaming() -> None:
            wait_for_stream(url)
            seen.append(env.service.activity.busy("sim-a"))

        looker = threading.Thread(target=look_while_streaming)
        looker.start()
        at.chat_input[0].set_value("Hello").run(timeout=30)
        looker.join(10)
        no_exception(at)
        assert seen == [True]  # in use while the reply streamed
        assert not env.service.activity.busy("sim-a")
        assert env.service.activity.last_used("sim-a") is not None  # idle counts from the reply's end
