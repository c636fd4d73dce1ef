"""From a catalog model id (or a bare URL) to a target to measure, with clear refusals.

A catalog model is looked up through the lifecycle service, which answers
without being started (reads only). Loading one (``--load``) goes through the
running app's REST API: the app is the one supervisor of model servers, and a
second process must not start servers it would then have to keep alive.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from benchmark.server_info import TargetError, discover
from benchmark.transport import Target
from lifecycle.core.errors import LifecycleError
from lifecycle.core.events import redact
from lifecycle.service import LifecycleService, ModelStatus
from settings import Settings

# Headroom over the server-side wait, so the app answers (504) before this client gives up.
CLIENT_SLACK_S: Final = 15.0


def catalog_entry(service: LifecycleService, model_id: str) -> dict[str, Any] | None:
    """The model's catalog entry as it is now, secrets masked (a run keeps it as it was)."""
    spec = service.catalog.get(model_id)
    return redact(spec.model_dump(mode="json")) if spec is not None else None


def _status(service: LifecycleService, model_id: str) -> ModelStatus:
    try:
        return service.status_of(model_id)
    except LifecycleError as exc:  # an unknown model: the message lists the known ones
        raise TargetError(str(exc)) from None


def model_target(service: LifecycleService, model_id: str) -> tuple[Target, dict[str, Any]]:
    status = _status(service, model_id)
    if not status.loaded:
        raise TargetError(
            f"model {model_id!r} is not loaded ({status.status}); load it in the app, "
            f"with `python -m cli load {model_id} --wait`, or pass --load"
        )
    key = service.upstream_key(model_id)
    return discover(status.url, status.served_model, key, model_id=model_id, engine=status.engine)


def load_through_app(settings: Settings, model_id: str, timeout_s: float) -> None:
    """Ask the running app to load the model and wait until it is ready (or says why not)."""
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = settings.app_url()
    try:
        response = httpx.post(
            f"{url}/api/models/{model_id}/load",
            params={"wait": "true", "timeout_s": str(timeout_s)},
            headers=headers,
            timeout=timeout_s + CLIENT_SLACK_S,
        )
    except httpx.HTTPError as exc:
        hint = "start it with `make run`"
        raise TargetError(
            f"--load goes through the running app; nothing answers at {url} ({exc}): {hint}"
        ) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.text
        except (ValueError, AttributeError):
            detail = response.text
        raise TargetError(f"the app could not load {model_id!r} (HTTP {response.status_code}): {detail}")
