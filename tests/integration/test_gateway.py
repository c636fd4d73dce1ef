"""/v1 against the app's lifespan and real simulator processes, through the real ``openai`` client:
routing by catalog id or served name, loads on demand, and every refusal in OpenAI's shape."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.routes import routes as gateway_routes
from settings import Settings
from tests.app_harness import api_settings, serve
from tests.catalogs import external, sim_process, write_catalog
from tests.support import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

TOKEN = "gw-test-token-0123456789abcdef"  # noqa: S105 - a test's own token
SERVED_B = "org/served-b"
HELLO = [{"role": "user", "content": "hello"}]


def served_as(entry: dict[str, object], served: str) -> dict[str, object]:
    """A simulator entry whose server answers to ``served``, not to its catalog id."""
    command = str(entry["load_command"]).replace(f"--model-id {entry['id']}", f"--model-id {served}")
    return {**entry, "load_command": command, "served_model": served}


def catalog(tmp_path: Path) -> Path:
    return write_catalog(
        tmp_path / "models.yaml",
        sim_process("gw-a", free_port(), "--tokens-per-s", "2000"),
        served_as(sim_process("gw-b", free_port()), SERVED_B),
        sim_process("gw-broken", free_port(), "--no-such-flag"),  # exits at once: the start fails
        external("gw-ext", free_port()),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path, catalog(tmp_path))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with serve(settings) as client:
        yield client


def user(client: TestClient, api_key: str = "unused") -> openai.OpenAI:
    """The ``openai`` package as a user points it at the app (its HTTP goes through the test client)."""
    return openai.OpenAI(base_url=f"{client.base_url}/v1", api_key=api_key, http_client=client, max_retries=0)


def events(client: TestClient, model_id: str) -> list[dict[str, object]]:
    return list(client.get("/api/events", params={"model": model_id}).json()["events"])


def test_models_lists_the_catalog_with_each_models_state(client: TestClient) -> None:
    listed = user(client).models.list()
    by_id = {m.id: m for m in listed.data}
    assert list(by_id) == ["gw-a", "gw-b", "gw-broken", "gw-ext"]
    assert by_id["gw-b"].model_extra is not None
    assert by_id["gw-b"].model_extra["served_model"] == SERVED_B
    assert by_id["gw-a"].model_extra is not None
    assert by_id["gw-a"].model_extra["loaded"] is False


def test_a_cold_model_is_loaded_on_demand_and_answers(client: TestClient) -> None:
    reply = user(client).chat.completions.create(model="gw-a", messages=HELLO, max_tokens=8)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 8
    loads = [e for e in events(client, "gw-a") if e["type"] == "LoadRequested"]
    assert [e["actor"] for e in loads] == ["gateway"]
    assert client.get("/api/models/gw-a").json()["phase"] == "ready"


def test_a_served_name_routes_and_the_stream_arrives_whole(client: TestClient) -> None:
    stream = user(client).chat.completions.create(
        model=SERVED_B,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert {c.model for c in chunks} == {SERVED_B}  # the server's own name, passed back untouched
    assert [e["actor"] for e in events(client, "gw-b") if e["type"] == "LoadRequested"] == ["gateway"]


def test_an_unknown_model_gets_404_with_the_known_ones(client: TestClient) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        user(client).chat.completions.create(model="gpt-9", messages=HELLO)  # type: ignore[arg-type]
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "model_not_found"
    assert (
        error["message"] == "model 'gpt-9' is not in the catalog; known models: gw-a, gw-b, gw-broken, gw-ext"
    )


def test_an_external_model_that_is_not_running_gets_503_with_how_to_start_it(client: TestClient) -> None:
    answer = client.post("/v1/chat/completions", json={"model": "gw-ext", "messages": HELLO})
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "model_not_running"
    assert "Run ./start-it.sh on the GPU box" in error["message"]
    assert events(client, "gw-ext") == []  # nothing was asked of it


def test_a_start_that_fails_gets_503_with_the_reason_and_retry_after(client: TestClient) -> None:
    answer = client.post("/v1/chat/completions", json={"model": "gw-broken", "messages": HELLO})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "30"
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("service_unavailable", "model_not_ready")
    assert error["message"].startswith("gw-broken could not be loaded: ")
    assert "exited with code 2" in error["message"]  # the server's own failure, from its log


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_body"),
        (b'{"messages": []}', 400, "missing_model"),
        (b'{"model": 7}', 400, "missing_model"),
    ],
)
def test_a_bad_body_is_refused_in_openais_shape(
    client: TestClient, body: bytes, status: int, code: str
) -> None:
    answer = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code


def test_routes_the_server_lacks_pass_its_answer_back(client: TestClient) -> None:
    # The simulator serves chat only: its own 404 for /v1/embeddings reaches the client as sent.
    user(client).chat.completions.create(model="gw-a", messages=HELLO, max_tokens=1)  # type: ignore[arg-type]
    answer = client.post("/v1/embeddings", json={"model": "gw-a", "input": "hi"})
    assert answer.status_code == 404


def test_a_cross_site_page_cannot_load_a_model_through_v1(client: TestClient) -> None:
    answer = client.post(
        "/v1/chat/completions",
        json={"model": "gw-a", "messages": HELLO},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert events(client, "gw-a") == []


def test_the_token_is_required_on_v1_when_set(tmp_path: Path) -> None:
    settings = api_settings(tmp_path, catalog(tmp_path), api_token=SecretStr(TOKEN))
    with serve(settings) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            user(client, api_key="wrong").models.list()
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["code"] == "invalid_api_key"
        assert TOKEN not in caught.value.response.text
        assert next(m.id for m in user(client, api_key=TOKEN).models.list().data) == "gw-a"
        assert client.get("/metrics").status_code == 401  # what a scraper sees without the token
        assert scrape(client, Authorization=f"Bearer {TOKEN}")[
            ("dxg_model_state", (("model", "gw-a"), ("phase", "stopped")))
        ]


def scrape(client: TestClient, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus_client's own parser: (sample name, labels) -> value."""
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_metrics_move_with_loads_crashes_and_requests(client: TestClient) -> None:
    before = scrape(client)
    assert before[("dxg_model_state", (("model", "gw-a"), ("phase", "stopped")))] == 1.0
    assert ("dxg_model_loads_total", (("model", "gw-a"),)) not in before
    chat = user(client).chat.completions.create
    chat(model="gw-a", messages=HELLO, max_tokens=8)  # type: ignore[arg-type]
    usage = {"include_usage": True}
    list(chat(model="gw-a", messages=HELLO, max_tokens=4, stream=True, stream_options=usage))  # type: ignore[arg-type]
    client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": HELLO})
    client.post("/v1/chat/completions", json={"model": "gw-broken", "messages": HELLO})
    after = scrape(client)
    assert after[("dxg_model_state", (("model", "gw-a"), ("phase", "ready")))] == 1.0
    assert after[("dxg_model_loads_total", (("model", "gw-a"),))] == 1.0
    assert after[("dxg_model_failed_starts_total", (("model", "gw-broken"),))] == 1.0
    assert after[("dxg_model_load_duration_seconds_count", (("model", "gw-a"),))] == 1.0
    assert after[("dxg_gateway_requests_total", (("model", "gw-a"), ("status", "200")))] == 2.0
    assert after[("dxg_gateway_requests_total", (("model", "(none)"), ("status", "404")))] == 1.0
    assert after[("dxg_gateway_requests_total", (("model", "gw-broken"), ("status", "503")))] == 1.0
    assert after[("dxg_gateway_tokens_total", (("kind", "completion"), ("model", "gw-a")))] == 12.0
    assert after[("dxg_gateway_time_to_first_byte_seconds_count", (("model", "gw-a"),))] == 2.0
    assert after[("dxg_gateway_in_flight", (("model", "gw-a"),))] == 0.0
    # A crash: the server dies under the app, which records it and (crash limit 1) gives up.
    (server,) = [p for p in psutil.process_iter(["cmdline"]) if "gw-a" in (p.info["cmdline"] or [])]
    server.kill()
    wait_until(lambda: scrape(client).get(("dxg_model_crashes_total", (("model", "gw-a"),))) == 1.0, 20,
               what="the crash to be counted")  # fmt: skip


UPSTREAM_KEY = "upstream-key-5b1f0c9e7d3a"


def test_a_servers_key_comes_from_the_catalog_and_is_never_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_KEY", UPSTREAM_KEY)
    port = free_port()
    keyed = {
        **sim_process("gw-keyed", port, "--api-key-env", "GW_TEST_KEY"),
        "env": {"GW_TEST_KEY": None},
        "api_key_env": "GW_TEST_KEY",
    }
    settings = api_settings(tmp_path, write_catalog(tmp_path / "models.yaml", keyed))
    with serve(settings) as client:
        # The client's own key is not the server's: the gateway sends the catalog's instead.
        reply = user(client, api_key="the-clients-own-key").chat.completions.create(
            model="gw-keyed",
            messages=HELLO,  # type: ignore[arg-type]
            max_tokens=3,
        )
        assert reply.usage is not None
        assert reply.usage.completion_tokens == 3
        bare = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "gw-keyed"})
        assert bare.status_code == 401  # the server does want a key
        seen = [
            client.get("/v1/models").text,
            client.get("/api/models/gw-keyed").text,
            client.get("/api/events", params={"model": "gw-keyed"}).text,
            client.get("/api/models/gw-keyed/logs").text,
            client.get("/metrics").text,
        ]
        assert all(UPSTREAM_KEY not in text for text in seen)


class EchoServer:
    """An OpenAI-compatible stand-in that records what reaches it: the gateway's side of the hop."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        app = Starlette(routes=[Route("/v1/{path:path}", self.answer, methods=["GET", "POST"])])
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def answer(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({"object": "list", "data": [{"id": "echo", "object": "model"}]})
        body = await request.json()
        self.seen.append((request.url.path, body, dict(request.headers)))
        return JSONResponse(
            {"object": "list", "data": [{"embedding": [0.5, 0.25], "index": 0}], "model": "x"}
        )

    def __enter__(self) -> EchoServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 10, what="the echo server")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_the_body_goes_upstream_untouched_but_model_and_so_do_no_client_headers(tmp_path: Path) -> None:
    with EchoServer() as echo:
        served = {**external("gw-echo", echo.port), "served_model": "org/echo-7b"}
        settings = api_settings(tmp_path, write_catalog(tmp_path / "models.yaml", served))
        with serve(settings) as client:
            wait_until(
                lambda: client.get("/api/models/gw-echo").json()["loaded"], 10, what="gw-echo to answer"
            )
            body = {
                "model": "gw-echo",
                "input": ["naïve café", "second"],
                "encoding_format": "float",
                "dimensions": 2,
                "user": "u-1",
                "extra_vendor_field": {"nested": [1, 2.5, None, True]},
            }
            answer = client.post(
                "/v1/embeddings",
                json=body,
                headers={"Authorization": "Bearer the-clients-token", "X-Trace": "t1"},
            )
            assert answer.status_code == 200
            assert answer.json()["data"][0]["embedding"] == [0.5, 0.25]  # the server's answer, passed back
    ((path, seen, headers),) = echo.seen
    assert path == "/v1/embeddings"
    assert seen == {**body, "model": "org/echo-7b"}  # only model rewritten, to the served name
    assert "authorization" not in headers
    assert "x-trace" not in headers


def test_a_load_that_outlasts_the_gateways_limit_gets_503_and_goes_on(tmp_path: Path) -> None:
    slow = sim_process("gw-slow", free_port(), startup_s=3.0)
    settings = api_settings(
        tmp_path, write_catalog(tmp_path / "models.yaml", slow), gateway_load_timeout_s=0.5
    )
    with serve(settings) as client:
        answer = client.post("/v1/chat/completions", json={"model": "gw-slow", "messages": HELLO})
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "30"
        assert answer.json()["error"]["message"].startswith(
            "gw-slow could not be loaded: it was not ready within 0.5 s"
        )
        wait_until(
            lambda: client.get("/api/models/gw-slow").json()["phase"] == "ready", 20, what="the load to go on"
        )


def test_while_the_app_starts_or_stops_every_route_answers_503_in_openais_shape() -> None:
    def no_service() -> Any:
        raise RuntimeError("the lifecycle service is not running")  # service_access's ServiceNotRunning

    app = Starlette(routes=gateway_routes(no_service, None, lambda: True))
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        answers = [
            client.get("/v1/models"),
            client.post("/v1/chat/completions", json={"model": "gw-a", "messages": HELLO}),
            client.get("/metrics"),
        ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["error"]["code"] == "app_not_running"
