"""Chat with a loaded model; each reply streams in (a reasoning model's thinking in a collapsed
Thinking block above its answer) with its TTFT, output tokens and tokens/s."""

from __future__ import annotations

import streamlit as st

from inference import ChatRequest
from ui.chat_render import render_turn, stream_reply
from ui.chat_view import Turn, conversation, request_messages
from ui.routing import ensure_routed
from ui.service_gate import require_service
from ui.widgets import rerun_when

WATCH_S = 2.0
NO_MODEL_TEXT = (
    "No model is loaded yet. Click a model's chip at the bottom of the page, then **🚀 Load Model**; "
    "it shows up here once its dot is green."
)

ensure_routed()
service = require_service()
loaded = {s.id: s for s in service.status() if s.loaded}
if not loaded:
    st.info(NO_MODEL_TEXT, icon=":material/arrow_downward:")
    rerun_when(lambda: any(s.loaded for s in service.status()), every_s=WATCH_S)
    st.stop()

with st.container(horizontal=True, vertical_alignment="bottom"):
    model_id = st.selectbox("Model", list(loaded), format_func=lambda i: loaded[i].name, key="chat:model")
    with st.popover("Settings", icon=":material/tune:"):
        system_prompt = st.text_area("System prompt", key="chat:system", placeholder="Optional")
        max_tokens = st.number_input("Max tokens", 1, 32_768, 512, step=64, key="chat:max_tokens")
        temperature = st.slider("Temperature", 0.0, 2.0, 0.7, step=0.05, key="chat:temperature")
        timeout_s = st.number_input(
            "Give up after this many seconds of silence",
            1,
            3600,
            120,
            key="chat:timeout_s",
            help="A big model can think a while before its first token.",
        )
    chat = conversation(st.session_state, model_id)
    # Never disabled: a reply streamed in this run would leave a disabled button behind it.
    st.button("Clear", icon=":material/delete_sweep:", on_click=chat.clear)

status = loaded[model_id]
for turn in chat.turns:
    render_turn(turn)

if prompt := st.chat_input(f"Message {status.name}"):
    request = ChatRequest(
        base_url=status.url,
        model=status.served_model,
        messages=request_messages(system_prompt, chat.turns, prompt),
        max_tokens=int(max_tokens),
        temperature=float(temperature),
        read_timeout_s=float(timeout_s),
        api_key=service.upstream_key(model_id),
    )
    user_turn = Turn("user", prompt)
    chat.add(user_turn)
    render_turn(user_turn)
    with service.activity.using(model_id):  # an open chat stream keeps the model from idling out
        stream_reply(request, status.name, chat)
