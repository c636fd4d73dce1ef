"""The facts in which the three engines' HTTP dialects differ, as plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineProfile:
    name: str
    owned_by: str
    # The first stream frame carries only the role. llama-server sends
    # "content": null there, vLLM-based servers (vLLM, NIM) send "".
    role_content: str | None
    # vLLM-based servers answer 404 for a model name they do not serve;
    # llama-server serves its one loaded model whatever the request names.
    strict_model_name: bool
    # Real vLLM binds its port before loading but only listens once the engine
    # is up, so connections are refused while it loads. NIM and llama-server
    # answer HTTP from the start and report loading through their health routes.
    listens_while_loading: bool


PROFILES: dict[str, EngineProfile] = {
    "nim": EngineProfile("nim", "system", "", strict_model_name=True, listens_while_loading=True),
    "llamacpp": EngineProfile(
        "llamacpp", "llamacpp", None, strict_model_name=False, listens_while_loading=True
    ),
    "vllm": EngineProfile("vllm", "vllm", "", strict_model_name=True, listens_while_loading=False),
}
