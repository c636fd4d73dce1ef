"""/api/benchmarks: start, watch, cancel and export benchmark runs, with the API's auth and errors.

====================================================  ====================================================
POST /api/benchmarks                                  body ``{"models": [id, ...], "preset": "quick"}`` or
                                                      ``{"models": [...], "workload": {...}}``: 202
                                                      ``{"runs": [view, ...]}``, one run per model (queued
                                                      behind that model's running one). 422
                                                      ``invalid_request`` names the field; 409
                                                      ``not_loaded`` unless ``?load=true``; 404
                                                      ``unknown_model``
GET  /api/benchmarks?model=&kind=&status=&limit=      200 ``{"active": [view, ...], "runs": [stored, ...]}``
GET  /api/benchmarks/{id}                             200 the run: queued/running state and progress, or the
                                                      stored run with its results; 404 ``unknown_run``
POST /api/benchmarks/{id}/cancel                      202 the run (kept as partial); 409 ``finished``
GET  /api/benchmarks/{id}/export?format=csv|json      200 the run, timelines included (json) or one row per
                                                      request (csv)
====================================================  ====================================================

The routes are mounted inside the lifecycle API's ``/api`` (its bearer auth and JSON routing
errors apply); they reach the lifecycle only through ``BenchmarkJobs`` and the service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Final

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from benchmark.export import run_to_csv, run_to_json
from benchmark.jobs import BenchmarkJobs
from benchmark.presets import preset
from benchmark.records import RunRecord, RunStatus
from benchmark.workload import WORKLOADS, Workload
from db.benchmark_store import BenchmarkStore
from lifecycle.api.errors import ApiError, json_errors, provided
from lifecycle.core.events import MODEL_ID_RE

log = logging.getLogger(__name__)

ACTOR: Final = "api"
LIST_LIMIT_MAX: Final = 500
_RUN_ID_CHARS: Final = frozenset("0123456789abcdef")

JobsProvider = Callable[[], tuple[BenchmarkJobs, BenchmarkStore]]


def _invalid(detail: str, field: str | None = None) -> ApiError:
    return ApiError(422, "invalid_request", detail, **({"field": field} if field else {}))


def stored_view(run: RunRecord) -> dict[str, Any]:
    """A stored run without its timelines: what lists and the page's tables need."""
    return {
        "run_id": run.run_id,
        "model_id": run.model_id,
        "kind": run.kind,
        "engine": run.engine,
        "served_model": run.served_model,
        "state": "done" if run.status != RunStatus.RUNNING else "running",
        "status": run.status,
        "error": run.error,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "workload": run.workload,
        "health": run.health,
        "results": run.results,
    }


def parse_workload(body: Any) -> Workload:
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object with models and a preset or a workload")
    if "preset" in body and "workload" in body:
        raise _invalid("give a preset or a workload, not both", "preset")
    if "preset" in body:
        try:
            return preset(str(body["preset"]))
        except ValueError as exc:
            raise _invalid(str(exc), "preset") from None
    raw = body.get("workload")
    kind = raw.get("kind", "sweep") if isinstance(raw, dict) else None
    model = WORKLOADS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise _invalid("workload must be an object whose kind is sweep or depth", "workload.kind")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["workload", *(str(p) for p in first["loc"])])
        raise _invalid(f"{where}: {first['msg']}", where) from None


def parse_models(body: dict[str, Any]) -> list[str]:
    models = body.get("models")
    if isinstance(body.get("model"), str) and models is None:
        models = [body["model"]]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise _invalid("models must be a non-empty list of model ids", "models")
    for model_id in models:
        if not MODEL_ID_RE.fullmatch(model_id):
            raise _invalid(f"{model_id!r} is not a model id", "models")
    return list(dict.fromkeys(models))


def _run_id(request: Request) -> str:
    run_id = request.path_params["run_id"]
    if not (1 <= len(run_id) <= 32 and set(run_id) <= _RUN_ID_CHARS):
        raise ApiError(404, "unknown_run", f"no benchmark run {run_id[:40]!r}")
    return str(run_id)


class BenchmarkApi:
    def __init__(self, provider: JobsProvider) -> None:
        self._provider = provider

    def _parts(self) -> tuple[BenchmarkJobs, BenchmarkStore]:
        return provided(self._provider, "benchmark service")

    @json_errors
    async def start(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise _invalid("the body is not JSON") from None
        workload = parse_workload(body)
        models = parse_models(body)
        load = request.query_params.get("load", "").lower() in ("1", "true", "yes")
        jobs, _ = self._parts()

        def submit_all() -> list[dict[str, Any]]:
            # All refusals first, so a bad second model leaves no half-started batch behind.
            if not load:
                for model_id in models:
                    jobs.check_loaded(model_id)
            return [jobs.view(jobs.submit(m, workload, load=load, actor=ACTOR)) for m in models]

        runs = await run_in_threadpool(submit_all)
        return JSONResponse({"runs": runs}, status_code=202)

    @json_errors
    async def runs(self, request: Request) -> Response:
        query = request.query_params
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise _invalid(f"limit must be a whole number, not {query.get('limit')!r}", "limit") from None
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise _invalid(f"limit must be 1-{LIST_LIMIT_MAX}", "limit")
        status = query.get("status") or None
        if status is not None and status not in RunStatus.ALL:
            raise _invalid(f"status must be one of {', '.join(RunStatus.ALL)}", "status")
        jobs, store = self._parts()
        model, kind = query.get("model") or None, query.get("kind") or None
        stored = await run_in_threadpool(store.list, model, kind, status, None, None, limit)
        return JSONResponse({"active": jobs.active(model), "runs": [stored_view(r) for r in stored]})

    async def _stored(self, run_id: str) -> RunRecord | None:
        _, store = self._parts()
        return await run_in_threadpool(store.get, run_id)

    @json_errors
    async def run(self, request: Request) -> Response:
        run_id = _run_id(request)
        jobs, _ = self._parts()
        active = jobs.job(run_id)
        stored = await self._stored(run_id)
        if stored is None and active is None:
            raise ApiError(404, "unknown_run", f"no benchmark run {run_id!r}")
        body = {**(stored_view(stored) if stored else {}), **(active or {})}
        if stored is not None and (active is None or active["state"] == "done"):
            body.update(state="done", status=stored.status, error=stored.error)
        return JSONResponse(body)

    @json_errors
    async def cancel(self, request: Request) -> Response:
        run_id = _run_id(request)
        jobs, _ = self._parts()
        active = jobs.job(run_id)
        if active is None or active["state"] not in ("queued", "running"):
            if active is None and await self._stored(run_id) is None:
                raise ApiError(404, "unknown_run", f"no benchmark run {run_id!r}")
            raise ApiError(409, "finished", f"benchmark run {run_id} has already finished")
        return JSONResponse(jobs.view(jobs.cancel(run_id)), status_code=202)

    @json_errors
    async def export(self, request: Request) -> Response:
        run_id = _run_id(request)
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise _invalid(f"format must be csv or json, not {fmt!r}", "format")
        stored = await self._stored(run_id)
        if stored is None:
            raise ApiError(404, "unknown_run", f"no stored benchmark run {run_id!r} (still queued?)")
        name = f"benchmark-{run_id}.{fmt}"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        if fmt == "csv":
            return PlainTextResponse(run_to_csv(stored), media_type="text/csv", headers=disposition)
        return JSONResponse(run_to_json(stored), headers=disposition)


def routes(provider: JobsProvider) -> list[BaseRoute]:
    """The routes to mount inside ``/api`` (see ``lifecycle.api.endpoints.routes``)."""
    api = BenchmarkApi(provider)
    return [
        Route("/benchmarks", api.start, methods=["POST"]),
        Route("/benchmarks", api.runs, methods=["GET"]),
        Route("/benchmarks/{run_id}", api.run, methods=["GET"]),
        Route("/benchmarks/{run_id}/cancel", api.cancel, methods=["POST"]),
        Route("/benchmarks/{run_id}/export", api.export, methods=["GET"]),
    ]
