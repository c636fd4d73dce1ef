"""What the app serves besides Streamlit's UI: /api (lifecycle and benchmarks), /v1 (the
gateway) and /auth.

One list for app.py and for the tests that serve the same routes in-process.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute

import service_access
from benchmark import api as benchmark_api
from gateway import routes as gateway
from lifecycle.api import endpoints, session
from settings import Settings


def api_routes(settings: Settings) -> list[BaseRoute]:
    return [
        *endpoints.routes(
            service_access.get_service,
            settings.api_token,
            service_access.stopping,
            extra=benchmark_api.routes(service_access.get_benchmarks),
        ),
        *session.routes(settings.api_token),
        *gateway.routes(
            service_access.get_service,
            settings.api_token,
            service_access.stopping,
            settings.gateway_load_timeout_s,
            cancel_abandoned=settings.gateway_cancel_abandoned_loads,
        ),
    ]


def middleware(bind_host: str, settings: Settings, routes: list[BaseRoute]) -> list[Middleware]:
    """The checks around everything, then /v1 taken straight to the gateway (``routes``: the
    app's, so the shortcut serves the very same gateway and its figures)."""
    # /v1 changes state too (a request loads a model): the same Origin and form checks as /api.
    checks = endpoints.middleware(bind_host, settings.allowed_host_names(), [gateway.PREFIX])
    return [*checks, Middleware(gateway.Shortcut, routes=routes)]
