"""What the app serves besides Streamlit's UI: /api (lifecycle and benchmarks) and /auth.

One list for app.py and for the tests that serve the same routes in-process.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

import service_access
from benchmark import api as benchmark_api
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
    ]
