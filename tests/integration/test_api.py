"""The REST API through HTTP, with the app's real lifespan, service, SQLite and simulator servers.

Most tests serve the API as tests/app_harness.py does (app.py's routes and lifespan in a plain
Starlette app); ``test_the_real_app_object`` drives app.py's own ``st.App`` once, Streamlit's
routes included, and tests/e2e runs the app as ``streamlit run``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from streamlit.runtime import Runtime

import cli
import service_access
from app_routes import api_routes
from db.session import make_engine
from db.store import EventStore
from lifecycle.api.request_guard import POLICY_VIOLATION
from lifecycle.core.events import model_stream
from lifecycle.runtimes.container_labels import LABEL_INSTANCE
from lifecycle.runtimes.ports import port_is_free
from settings import get_settings
from tests.app_harness import api_settings, serve
from tests.catalogs import external, offline, sim_docker, sim_process, write_catalog
from tests.support import free_port, wait_until

TOKEN = "t0ken-for-tests-" + "x" * 16
LOCAL = "http://127.0.0.1:8080"  # what a browser on this machine sends as Host
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATUS_KEYS = {
    "id", "name", "url", "engine", "runtime", "size", "format", "supports_tools", "simulated",
    "loaded", "available", "can_load", "phase", "status", "desired", "since", "restarts", "last_error",
}  # fmt: skip
EVENT_KEYS = {"position", "stream", "model", "version", "type", "ts", "actor", "payload"}


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write_catalog(
        tmp_path / "models.yaml",
        sim_process("sim-a", free_port()),
        sim_process("sim-slow", free_port(), startup_s=60),
        sim_process("sim-broken", free_port(), "--fail-start"),
        external("ext", free_port()),
        offline("off", free_port(), tmp_path / "weights" / "missing.gguf"),
    )


@pytest.fixture
def client(tmp_path: Path, catalog: Path) -> Iterator[TestClient]:
    with serve(api_settings(tmp_path, catalog)) as test_client:
        yield test_client


def model(client: TestClient, model_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.get(f"/api/models/{model_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- reads -------------------------------------------------------------------------------------


def test_models_lists_every_model_with_its_status_words(client: TestClient) -> None:
    response = client.get("/api/models")
    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["models"]}
    assert set(models) == {"sim-a", "sim-slow", "sim-broken", "ext", "off"}
    for entry in models.values():
        assert set(entry) >= STATUS_KEYS, STATUS_KEYS - set(entry)

    sim = models["sim-a"]
    assert (sim["loaded"], sim["available"], sim["can_load"]) == (False, True, True)
    assert sim["status"] == "Available (Not Loaded)"
    assert (sim["phase"], sim["desired"], sim["simulated"]) == ("stopped", "unloaded", True)
    assert models["ext"]["can_load"] is False
    offline_model = models["off"]
    assert offline_model["available"] is False
    assert offline_model["status"].startswith("Offline")
    assert "missing.gguf" in offline_model["status"]


def test_health_is_json_and_reports_catalog_and_docker(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["catalog"]["error"] is None
    assert body["catalog"]["models"] == 5
    assert isinstance(body["docker"]["reachable"], bool)


def test_health_is_503_and_names_the_problem_when_the_catalog_breaks(
    client: TestClient, catalog: Path
) -> None:
    catalog.write_text("models:\n  - id: Not Valid\n", encoding="utf-8")

    def unhealthy() -> dict[str, Any] | None:
        response = client.get("/api/health")
        return response.json() if response.status_code == 503 else None

    body = wait_until(unhealthy, 10, what="health to report the broken catalog")
    assert body["ok"] is False
    assert "models.yaml" in body["catalog"]["error"]
    # The last good catalog stays in use: the same models, not an empty list.
    models = client.get("/api/models").json()["models"]
    assert [m["id"] for m in models] == ["sim-a", "sim-slow", "sim-broken", "ext", "off"]


# --- commands ----------------------------------------------------------------------------------


def test_load_wait_unload_wait_runs_and_stops_the_server(client: TestClient) -> None:
    url = model(client, "sim-a")["url"]

    response = client.post("/api/models/sim-a/load")
    assert response.status_code == 202, response.text
    assert response.json()["desired"] == "loaded"

    response = client.post("/api/models/sim-a/load?wait=true&timeout_s=30")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["loaded"] is True
    assert body["status"] == "Loaded & Ready"
    assert answers(f"{url}/health")

    detail = model(client, "sim-a")
    assert set(detail["events"][0]) >= EVENT_KEYS
    types = [e["type"] for e in detail["events"]]
    assert "LoadRequested" in types
    assert "ReadyObserved" in types
    assert types.count("StartIssued") == 1, "a second load of a loading model must not start another"
    assert {e["actor"] for e in detail["events"] if e["type"] == "LoadRequested"} == {"api"}
    positions = [e["position"] for e in detail["events"]]
    assert positions == sorted(positions, reverse=True)

    response = client.post("/api/models/sim-a/unload?wait=1&timeout_s=30")
    assert response.status_code == 200, response.text
    assert (response.json()["phase"], response.json()["loaded"]) == ("stopped", False)
    assert port_is_free(int(url.rsplit(":", 1)[1]))


def test_wait_that_runs_out_answers_504_with_the_status(client: TestClient) -> None:
    body = assert_error(client.post("/api/models/sim-slow/load?wait=true&timeout_s=0.5"), 504, "timeout")
    assert body["status"]["phase"] == "starting"
    assert body["status"]["desired"] == "loaded"
    assert client.post("/api/models/sim-slow/unload?wait=true&timeout_s=30").status_code == 200


def test_wait_for_a_load_that_fails_answers_409_with_the_reason(client: TestClient) -> None:
    body = assert_error(client.post("/api/models/sim-broken/load?wait=true&timeout_s=30"), 409, "load_failed")
    assert body["status"]["phase"] == "failed"
    assert body["status"]["loaded"] is False


def test_logs_as_json_lines_or_plain_text(client: TestClient) -> None:
    assert client.post("/api/models/sim-a/load?wait=true&timeout_s=30").status_code == 200

    body = client.get("/api/models/sim-a/logs?tail=50").json()
    assert (body["model"], body["tail"]) == ("sim-a", 50)
    assert 0 < len(body["lines"]) <= 50
    assert any("sim-a" in line for line in body["lines"])

    response = client.get("/api/models/sim-a/logs?tail=3", headers={"Accept": "text/plain"})
    assert response.headers["content-type"].startswith("text/plain")
    assert 0 < len(response.text.splitlines()) <= 3


def test_events_newest_first_then_as_a_feed_after_a_cursor(client: TestClient) -> None:
    assert client.post("/api/models/sim-a/load?wait=true&timeout_s=30").status_code == 200

    latest = client.get("/api/events?limit=3").json()
    positions = [e["position"] for e in latest["events"]]
    assert len(positions) == 3
    assert positions == sorted(positions, reverse=True)
    assert latest["cursor"] == positions[0]

    everything = client.get("/api/events?limit=1000").json()["events"]
    first = min(e["position"] for e in everything)
    feed = client.get(f"/api/events?after={first}&limit=1000").json()
    assert [e["position"] for e in feed["events"]] == sorted(e["position"] for e in everything)[1:]

    for_model = client.get("/api/events?model=sim-a").json()["events"]
    assert for_model
    assert {e["model"] for e in for_model} == {"sim-a"}
    assert {e["stream"] for e in for_model} == {model_stream("sim-a")}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/models/nope"),
        ("POST", "/api/models/nope/load"),
        ("POST", "/api/models/nope/unload"),
        ("GET", "/api/models/nope/logs"),
        ("GET", "/api/events?model=nope"),
        ("GET", "/api/models/Not%20An%20Id"),
    ],
)
def test_unknown_model_is_404(client: TestClient, method: str, path: str) -> None:
    assert_error(client.request(method, path), 404, "unknown_model")


def test_external_model_cannot_be_loaded_and_says_how_to_start_it(client: TestClient) -> None:
    body = assert_error(client.post("/api/models/ext/load"), 409, "cannot_load")
    assert "start-it.sh" in body["detail"]


def test_offline_model_cannot_be_loaded_and_says_why(client: TestClient) -> None:
    body = assert_error(client.post("/api/models/off/load?wait=true"), 409, "cannot_load")
    assert "missing.gguf" in body["detail"]
    assert model(client, "off")["desired"] == "unloaded"


@pytest.mark.parametrize(
    "path",
    [
        "/api/events?limit=0",
        "/api/events?limit=1001",
        "/api/events?limit=ten",
        "/api/events?after=-1",
        "/api/events?after=1.5",
        "/api/models/sim-a/logs?tail=0",
        "/api/models/sim-a/logs?tail=5001",
    ],
)
def test_bad_read_parameters_are_422(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 422, "invalid_request")


@pytest.mark.parametrize(
    "query",
    ["wait=maybe", "wait=true&timeout_s=0", "wait=true&timeout_s=nan", "timeout_s=3601", "timeout_s=x"],
)
def test_bad_command_parameters_are_422_and_change_nothing(client: TestClient, query: str) -> None:
    assert_error(client.post(f"/api/models/sim-a/load?{query}"), 422, "invalid_request")
    assert model(client, "sim-a")["desired"] == "unloaded"


def test_routing_errors_are_json_too(client: TestClient) -> None:
    assert_error(client.get("/api/nothing-here"), 404, "not_found")
    response = client.get("/api/models/sim-a/load")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_unexpected_failure_is_a_logged_500_without_traceback(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(service_access.get_service(), "status", broken)
    with caplog.at_level(logging.ERROR, logger="lifecycle.api.endpoints"):
        body = assert_error(client.get("/api/models"), 500, "internal_error")
    assert "ZeroDivisionError" not in str(body)
    assert "Traceback" not in str(body)
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


# --- security ----------------------------------------------------------------------------------


def test_token_guards_every_route_but_health(
    tmp_path: Path, catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = api_settings(tmp_path, catalog, api_token=SecretStr(TOKEN))
    caplog.set_level(logging.DEBUG)
    with serve(settings) as client:
        for method, path in [
            ("GET", "/api/models"),
            ("GET", "/api/models/sim-a"),
            ("POST", "/api/models/sim-a/load"),
            ("POST", "/api/models/sim-a/unload"),
            ("GET", "/api/models/sim-a/logs"),
            ("GET", "/api/events"),
            ("GET", "/api/no-such-route"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                response = client.request(method, path, headers=headers)
                assert_error(response, 401, "unauthorized")
                assert response.headers["www-authenticate"].startswith("Bearer")
        assert model(client, "sim-a", AUTH)["desired"] == "unloaded", "a refused load must not happen"

        anonymous = client.get("/api/health")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"ok": True}, "details are for callers with the token"
        detailed = client.get("/api/health", headers=AUTH).json()
        assert detailed["ok"] is True
        assert detailed["catalog"]["path"] == str(catalog)
        assert client.get("/api/models", headers=AUTH).status_code == 200
        assert client.post("/api/models/sim-a/load", headers=AUTH).status_code == 202
    assert TOKEN not in caplog.text


def test_no_cross_origin_access_is_granted(client: TestClient) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    response = client.get("/api/models", headers=origin)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/api/models/sim-a/load", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code >= 400


def test_a_cross_site_page_cannot_change_anything(client: TestClient, tmp_path: Path) -> None:
    """CSRF: browsers send Origin on every cross-site POST, and a plain form can only send form
    or text bodies. Neither may load a model; the refusals are JSON and record nothing."""
    evil = {"Origin": "http://evil.example"}
    assert_error(client.post("/api/models/sim-a/load", headers=evil), 403, "cross_origin")
    assert_error(client.post("/api/models/sim-a/unload", headers=evil), 403, "cross_origin")
    for form in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = client.post("/api/models/sim-a/load", headers={"Content-Type": form}, content=b"a=b")
        assert_error(response, 415, "unsupported_media_type")
    assert client.get("/api/models/sim-a", headers=evil).status_code == 200  # reading is harmless
    assert [e["type"] for e in client.get("/api/events?model=sim-a").json()["events"]] == []
    # The app's own origin, JSON and the CLI's bare POST still work.
    own = {"Origin": "http://127.0.0.1:8080", "Content-Type": "application/json"}
    assert client.post("/api/models/sim-a/unload", headers=own, content=b"{}").status_code == 202
    assert client.post("/api/models/sim-a/unload").status_code == 202


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "192.0.2.10", "127.0.0.1.evil.example"]
)
def test_a_rebound_dns_name_is_refused(client: TestClient, host: str) -> None:
    """DNS rebinding: a name the attacker points at 127.0.0.1 reaches the app with its own Host."""
    body = assert_error(client.get("/api/models", headers={"Host": host}), 421, "host_not_allowed")
    assert "DXG_ALLOWED_HOSTS" in body["detail"]
    assert_error(client.post("/api/models/sim-a/load", headers={"Host": host}), 421, "host_not_allowed")
    for local in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080"):
        assert client.get("/api/models", headers={"Host": local}).status_code == 200, local


def test_allowed_hosts_extend_the_names_the_app_answers_to(tmp_path: Path, catalog: Path) -> None:
    settings = api_settings(tmp_path, catalog, allowed_hosts="box.lan, gpu-box")
    with serve(settings) as client:
        assert client.get("/api/models", headers={"Host": "box.lan:8080"}).status_code == 200
        assert client.get("/api/models", headers={"Host": "gpu-box"}).status_code == 200
        assert_error(client.get("/api/models", headers={"Host": "other.lan"}), 421, "host_not_allowed")


def test_the_ui_refuses_a_rebound_host_too(app_module: Any) -> None:
    with TestClient(app_module.app, base_url=LOCAL) as client:
        refused = client.get("/", headers={"Host": "evil.example"})
        assert refused.status_code == 421
        assert "DXG_ALLOWED_HOSTS" in refused.text
        assert client.get("/").status_code == 200
        # The UI's WebSocket is how a page drives the app: closed before it is accepted.
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/_stcore/stream", headers={"Host": "evil.example"}),
        ):
            pass
        assert closed.value.code == POLICY_VIOLATION


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "myhost.example"])
def test_start_refuses_a_network_address_without_a_token(tmp_path: Path, catalog: Path, host: str) -> None:
    settings = api_settings(tmp_path, catalog)
    with pytest.raises(RuntimeError, match="DXG_API_TOKEN"), serve(settings, bind=(host, 8080)):
        pass
    assert not (tmp_path / "dxg.db").exists(), "nothing may start before the address is accepted"


def test_start_on_a_network_address_with_a_token(tmp_path: Path, catalog: Path) -> None:
    settings = api_settings(tmp_path, catalog, api_token=SecretStr(TOKEN))
    with serve(settings, bind=("0.0.0.0", 8080)) as client:
        assert client.get("/api/models", headers=AUTH).status_code == 200


def test_start_refuses_an_address_other_than_the_settings_ask_for(tmp_path: Path, catalog: Path) -> None:
    settings = api_settings(tmp_path, catalog, port=9123)
    with pytest.raises(RuntimeError, match=r"--server\.port 9123"), serve(settings, bind=("127.0.0.1", 8080)):
        pass


# --- the real app object -------------------------------------------------------------------------


@pytest.fixture
def app_module(tmp_path: Path, catalog: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """app.py imported fresh with DXG_* pointing at this test's files (it reads them at import)."""
    env = {
        "DXG_DB_URL": f"sqlite:///{tmp_path / 'dxg.db'}",
        "DXG_LOG_DIR": str(tmp_path / "logs"),
        "DXG_RUN_DIR": str(tmp_path / "run"),
        "DXG_CATALOG": str(catalog),
        # Streamlit's default address (when no config says otherwise) is every interface.
        "DXG_API_TOKEN": TOKEN,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    monkeypatch.delitem(sys.modules, "app", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield importlib.import_module("app")
    finally:
        sys.modules.pop("app", None)
        get_settings.cache_clear()
        # app.py configures process-wide logging for the server; give the test process its own back.
        root.handlers[:] = handlers
        root.setLevel(level)
        # Streamlit allows one runtime per process and keeps the stopped one; forget it as its
        # own AppTest does, so later tests can start another.
        Runtime._instance = None


def test_the_real_app_object(app_module: Any) -> None:
    with TestClient(app_module.app, base_url=LOCAL) as client:
        assert client.get("/_stcore/health").text == "ok"
        assert client.get("/api/health").status_code == 200
        assert_error(client.get("/api/models"), 401, "unauthorized")
        models = client.get("/api/models", headers=AUTH).json()["models"]
        assert {m["id"] for m in models} >= {"sim-a", "ext", "off"}
        assert app_module.app.state["service"] is service_access.get_service()
    with pytest.raises(service_access.ServiceNotRunning):
        service_access.get_service()


# Ids as they stand in a URL: traversal (plain, encoded, double-encoded), NUL and control bytes,
# UNC and drive roots, absolute paths, bytes that are not UTF-8, header injection, markup, SQL, a
# case the id rule refuses and one far too long.
HOSTILE_IDS = [
    "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2e%2e%2f%2e%2e%2fetc", "%252e%252e%252f", "..%5C..%5Cwindows",
    "%00", "sim-a%00", "%0d%0aSet-Cookie:%20x=1", "%5C%5Cserver%5Cshare", "C%3A%5CWindows",
    "%2Fetc%2Fpasswd", "%ff%fe", "%E2%80%AE", "%3Cscript%3E", "'%3B%20DROP%20TABLE%20events%3B--",
    "SIM-A", "~", "a" * 300,
]  # fmt: skip
MODEL_ROUTES = [
    ("GET", "/api/models/{id}"),
    ("POST", "/api/models/{id}/load"),
    ("POST", "/api/models/{id}/unload"),
    ("GET", "/api/models/{id}/logs"),
    ("GET", "/api/events?model={id}"),
]


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def test_every_route_answers_hostile_ids_in_json_and_touches_nothing(app_module: Any, tmp_path: Path) -> None:
    """Through app.py's own st.App, Streamlit's path-security middleware included: it answers a
    bare-text 400 to '..' and NUL paths, so the API's guard must answer them first."""
    with TestClient(app_module.app, base_url=LOCAL) as client:
        before = files_under(tmp_path)
        for method, template in MODEL_ROUTES:
            for raw in HOSTILE_IDS:
                url = template.format(id=raw)
                response = client.request(method, url, headers=AUTH)
                assert response.status_code in (404, 422), (method, url, response.status_code, response.text)
                assert response.headers["content-type"].startswith("application/json"), (url, response.text)
                body = response.json()
                assert body["error"] in {"not_found", "unknown_model", "invalid_request"}, (url, body)
                assert body["detail"], url
        for path in ("/API/models", "/Api/health", "/api/MODELS"):
            response = client.get(path, headers=AUTH)
            assert response.status_code == 404, (path, response.text[:200])
            assert response.json()["error"] == "not_found", path
        service = service_access.get_service()
        streams = {event.stream for event in service.history(limit=1000)}
        assert streams == {"app"}, streams  # no command reached a model stream
        # Only the database's own files may change (WAL); nothing new appears anywhere.
        assert {p for p in files_under(tmp_path) - before if not p.name.startswith("dxg.db")} == set()


# --- concurrency, with a real container ------------------------------------------------------------


def container_count(docker_client: Any, instance: str) -> int:
    return len(docker_client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={instance}"}))


def run_together(count: int, action: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """``count`` calls released at the same moment from their own threads."""
    barrier = threading.Barrier(count)
    results: list[httpx.Response | BaseException] = [RuntimeError("did not run")] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action()
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, httpx.Response)]


@pytest.mark.docker
@pytest.mark.slow
def test_ten_concurrent_loads_start_one_container(tmp_path: Path, docker_client: Any, sim_image: str) -> None:
    catalog = write_catalog(tmp_path / "models.yaml", sim_docker("sim-box", free_port()))
    settings = api_settings(tmp_path, catalog)
    store = EventStore(make_engine(settings.db_url))
    try:
        with serve(settings) as client:
            responses = run_together(10, lambda: client.post("/api/models/sim-box/load"))
            assert [r.status_code for r in responses] == [202] * 10, [r.text for r in responses]

            response = client.post("/api/models/sim-box/load?wait=true&timeout_s=60")
            assert response.status_code == 200, response.text
            assert container_count(docker_client, settings.instance) == 1
            events = store.read_stream(model_stream("sim-box"))
            assert [e.type for e in events].count("StartIssued") == 1
            assert [e.type for e in events].count("LoadRequested") >= 1

            assert client.post("/api/models/sim-box/unload?wait=true&timeout_s=60").status_code == 200
            wait_until(
                lambda: container_count(docker_client, settings.instance) == 0, 30, what="container gone"
            )
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_INSTANCE}={settings.instance}"}
        ):
            container.remove(force=True)
        store.engine.dispose()


# --- the command line, through the same API ----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument with the TestClient")
def test_cli_loads_unloads_and_reports(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["load", "sim-a", "--wait", "--timeout", "30"], client=client) == 0
    assert capsys.readouterr().out.strip() == "sim-a: Loaded & Ready"

    assert cli.main(["status"], client=client) == 0
    assert "sim-a: Loaded & Ready" in capsys.readouterr().out.splitlines()

    assert cli.main(["load", "ext"], client=client) == cli.EXIT_REFUSED
    assert capsys.readouterr().err.startswith("cannot_load: ")

    assert cli.main(["unload", "sim-a", "--wait"], client=client) == 0
    assert capsys.readouterr().out.strip() == "sim-a: Available (Not Loaded)"


def test_cli_says_when_the_app_is_not_running(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["--url", url, "status"]) == cli.EXIT_UNREACHABLE
    assert capsys.readouterr().err.startswith(f"cannot reach the app at {url}")


def test_before_the_service_is_published_api_routes_answer_503_not_running() -> None:
    # service_access before the lifespan published anything (or after it took it away).
    app = Starlette(routes=api_routes(get_settings()))
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        answers = {path: client.get(path) for path in ("/api/models", "/api/benchmarks")}
    details = {path: (a.status_code, a.json()["error"], a.json()["detail"]) for path, a in answers.items()}
    why = "is not running (starting or stopping)"
    assert details == {
        "/api/models": (503, "not_running", f"the lifecycle service {why}"),
        "/api/benchmarks": (503, "not_running", f"the benchmark service {why}"),
    }
