"""What the server says about itself: its models, its engine's metadata, and its tokenizer.

Read before a run and stored with it, so a result always names what it
measured. ``/tokenize`` (llama.cpp and vLLM) gives exact token counts without
downloading a tokenizer, which the results use to check usage counts.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from benchmark.transport import Target
from inference.result import error_detail

TIMEOUT_S: Final = 10.0
# owned_by in /v1/models -> the engine; NIM lists "system".
OWNERS: Final = {"llamacpp": "llamacpp", "vllm": "vllm", "system": "nim"}


class TargetError(Exception):
    """The endpoint can't be benchmarked; the message says why and what to do."""


def _get_json(client: httpx.Client, url: str) -> Any | None:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def discover(
    base_url: str, model: str | None = None, api_key: str | None = None, **known: Any
) -> tuple[Target, dict[str, Any]]:
    """The target to benchmark at ``base_url`` and the metadata to store with the run.

    ``model`` picks one of the served models; without it the server must serve exactly one.
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=TIMEOUT_S, headers=headers) as client:
        try:
            response = client.get(f"{root}/v1/models")
        except httpx.HTTPError as exc:
            raise TargetError(f"cannot reach {root}: {exc}. Is the model server running?") from None
        if response.status_code != 200:
            detail = error_detail(response.content) or "(no details)"
            raise TargetError(f"{root}/v1/models answered HTTP {response.status_code}: {detail}")
        try:
            listing = response.json()
            served = [m["id"] for m in listing["data"]]
        except (ValueError, KeyError, TypeError):
            raise TargetError(
                f"{root}/v1/models is not an OpenAI model list; is this an OpenAI-compatible server?"
            ) from None
        meta: dict[str, Any] = {"models": listing}
        props = _get_json(client, f"{root}/props")
        if isinstance(props, dict):
            meta["props"] = props
        version = _get_json(client, f"{root}/version")
        if isinstance(version, dict):
            meta["version"] = version
    name = _pick(root, served, model)
    owner = next((m.get("owned_by") for m in listing["data"] if m.get("id") == name), None)
    engine = (
        known.pop("engine", None) or OWNERS.get(str(owner)) or ("llamacpp" if "props" in meta else "openai")
    )
    return Target(base_url=root, served_model=name, api_key=api_key, engine=engine, **known), meta


def _pick(root: str, served: list[str], model: str | None) -> str:
    if model is not None:
        if served and model not in served:
            listed = ", ".join(served)
            raise TargetError(f"{root} does not serve {model!r}; it serves: {listed}")
        return model
    if not served:
        raise TargetError(f"{root} lists no models yet (is it still loading?)")
    if len(served) > 1:
        raise TargetError(f"{root} serves several models ({', '.join(served)}); name one with --served-model")
    return served[0]


def tokenize_count(target: Target, text: str, engine: str | None) -> int | None:
    """Tokens in ``text`` by the server's own tokenizer, or None where it has no /tokenize."""
    if engine == "llamacpp":
        body: dict[str, Any] = {"content": text, "add_special": False}
    elif engine == "vllm":
        body = {"model": target.served_model, "prompt": text, "add_special_tokens": False}
    else:
        return None
    try:
        response = httpx.post(
            f"{target.root_url}/tokenize", json=body, headers=target.headers(), timeout=TIMEOUT_S
        )
        data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("count"), int):
        return data["count"]
    tokens = data.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None
