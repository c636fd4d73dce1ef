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
    # Where reasoning text goes, in a stream delta and in a whole reply's message:
    # newer vLLM renamed the field; llama.cpp and NIM (an older vLLM) keep the old name.
    reasoning_field: str = "reasoning_content"
    # vLLM-based servers report cached prompt tokens in usage.prompt_tokens_details;
    # llama-server reports them as timings.cache_n and adds a timings block to replies.
    usage_cached_tokens: bool = True
    llama_timings: bool = False


PROFILES: dict[str, EngineProfile] = {
    "nim": EngineProfile("nim", "system", "", strict_model_name=True, listens_while_loading=True),
    "llamacpp": EngineProfile(
        "llamacpp",
        "llamacpp",
        None,
        strict_model_name=False,
        listens_while_loading=True,
        usage_cached_tokens=False,
        llama_timings=True,
    ),
    "vllm": EngineProfile(
        "vllm", "vllm", "", strict_model_name=True, listens_while_loading=False, reasoning_field="reasoning"
    ),
}
