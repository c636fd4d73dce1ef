"""The frame every page shares (Home.py): model chips, the model dialog and the catalog banner,
against a real lifecycle service with simulated model servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lifecycle.core.errors import StoreUnwritable
from tests.catalogs import external, offline, sim_process
from tests.integration.test_store_unwritable import refusing_writes
from tests.support import free_port, wait_until
from tests.ui.harness import HOME, UiEnv, no_exception, shown_text, ui_env
from ui.chips import DIALOG_KEY, EMPTY_TEXT

LOAD = "🚀 Load Model"
UNLOAD = "⏹️ Unload Model"


def chip_labels(at: AppTest) -> dict[str, str]:
    return {b.key.removeprefix("chip-"): b.label for b in at.button if b.key and b.key.startswith("chip-")}


def dialog_buttons(at: AppTest) -> list[str]:
    return [b.label for b in at.button if b.key and b.key.startswith("dialog-")]


def open_dialog(env: UiEnv, model_id: str) -> AppTest:
    return no_exception(env.app(**{DIALOG_KEY: model_id}))


def test_chips_show_one_dot_per_model_by_phase(tmp_path: Path) -> None:
    models = (
        sim_process("ready", free_port()),
        sim_process("starting", free_port(), startup_s=120),
        sim_process("failing", free_port(), "--fail-start"),
        external("ext", free_port()),
        offline("off", free_port(), tmp_path / "missing.gguf"),
    )
    with ui_env(tmp_path, *models) as env:
        at = no_exception(env.app())
        assert EMPTY_TEXT in shown_text(at)
        assert set(chip_labels(at).values()) == {f":red[●] {m['id']}" for m in models}

        env.load("ready")
        env.service.load("starting", actor="test")
        env.service.load("failing", actor="test")
        wait_until(lambda: env.status("starting").phase == "starting", 10, what="starting")
        wait_until(lambda: env.status("failing").phase == "failed", 10, what="failing gave up")

        at = no_exception(at.run())
        assert chip_labels(at) == {
            "ready": ":green[●] ready",
            "starting": ":orange[●] starting",
            "failing": ":red[●] failing",
            "ext": ":red[●] ext",
            "off": ":red[●] off",
        }
        assert EMPTY_TEXT not in shown_text(at)


def test_clicking_a_chip_opens_its_dialog_and_load_then_unload_call_the_service(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        at = no_exception(env.app())
        assert DIALOG_KEY not in at.session_state
        at.button(key="chip-sim-a").click().run()
        assert at.session_state[DIALOG_KEY] == "sim-a"
        text = shown_text(no_exception(at))
        assert "Available (Not Loaded)" in text
        assert "llamacpp" in text
        assert "simulated" in text
        assert dialog_buttons(at) == [LOAD]

        at.button(key="dialog-load").click().run()
        loads = [e for e in env.service.history("sim-a") if e.type == "LoadRequested"]
        assert [e.actor for e in loads] == ["ui"]
        assert dialog_buttons(no_exception(at)) == [UNLOAD]

        env.service.wait("sim-a", "ready", 30)
        at.run()
        assert "Loaded & Ready" in shown_text(no_exception(at))
        at.button(key="dialog-unload").click().run()
        unloads = [e for e in env.service.history("sim-a") if e.type == "UnloadRequested"]
        assert [(e.actor, e.event.payload()["reason"]) for e in unloads] == [("ui", "user")]
        assert env.service.wait("sim-a", "stopped", 30).phase == "stopped"
        assert dialog_buttons(no_exception(at.run())) == [LOAD]


def test_dialog_shows_progress_usual_time_and_log_while_loading(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port(), startup_s=2)) as env:
        env.load("sim-a")  # one past load: "usually takes 0:02" from now on
        env.service.unload("sim-a")
        env.service.wait("sim-a", "stopped", 30)
        env.service.load("sim-a")
        at = open_dialog(env, "sim-a")
        text = shown_text(at)
        assert "Loading…" in text
        assert "usually takes 0:02" in text
        assert "starting sim-a" in text  # the live log tail
        assert dialog_buttons(at) == [UNLOAD]


def test_external_model_shows_how_it_is_started_and_no_buttons(tmp_path: Path) -> None:
    with ui_env(tmp_path, external("ext", free_port())) as env:
        at = open_dialog(env, "ext")
        text = shown_text(at)
        assert "Offline" in text
        assert "not answering" in text  # the reason, always
        assert "Run ./start-it.sh on the GPU box" in text
        assert dialog_buttons(at) == []


def test_offline_model_says_why_and_cannot_be_loaded(tmp_path: Path) -> None:
    with ui_env(tmp_path, offline("off", free_port(), tmp_path / "missing.gguf")) as env:
        at = open_dialog(env, "off")
        assert "Offline: model files not found" in shown_text(at)
        assert at.button(key="dialog-load").disabled


def test_refused_load_is_shown_in_the_dialog(tmp_path: Path) -> None:
    weights = tmp_path / "weights.gguf"
    weights.write_text("w")
    with ui_env(tmp_path, offline("m", free_port(), weights)) as env:
        at = open_dialog(env, "m")
        weights.unlink()  # gone between showing the dialog and the click
        at.button(key="dialog-load").click().run()
        assert "can't be loaded: model files not found" in shown_text(no_exception(at))
        assert [e.type for e in env.service.history("m")] == []


def test_failed_model_shows_the_error_and_retry_loads_again(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("bad", free_port(), "--fail-start")) as env:
        env.service.load("bad", actor="test")
        assert env.service.wait("bad", "ready", 30).phase == "failed"
        at = open_dialog(env, "bad")
        assert "The last load failed" in shown_text(at)
        assert "exit" in shown_text(at)
        assert dialog_buttons(at) == ["Retry"]
        at.button(key="dialog-retry").click().run()
        assert [e.actor for e in env.service.history("bad") if e.type == "LoadRequested"] == ["ui", "test"]


def test_dialog_of_a_model_no_longer_in_the_catalog_closes(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        at = open_dialog(env, "gone")
        assert DIALOG_KEY not in at.session_state
        assert dialog_buttons(at) == []


def test_broken_catalog_shows_a_banner(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        broken = env.catalog.with_name("broken.yaml")
        broken.write_text("models:\n  - id: Bad Id!\n", encoding="utf-8")
        broken.replace(env.catalog)  # whole, so the poller never reads half a file
        wait_until(lambda: "Bad Id" in (env.service.catalog_error or ""), 10, what="the catalog error")
        at = no_exception(env.app())
        banner = at.error[0].value
        assert "models.yaml has an error" in banner
        assert "Bad Id" in banner
        assert "sim-a" in chip_labels(at)  # the last good catalog stays in use


def test_without_the_app_every_page_says_how_to_start_it() -> None:
    at = AppTest.from_file(str(HOME), default_timeout=30).run()
    assert not at.exception
    assert "streamlit run app.py" in at.error[0].value
    assert not at.button


def test_a_store_that_cannot_be_written_shows_a_banner_and_unknown_models(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        with refusing_writes(env.service.store.engine):
            with pytest.raises(StoreUnwritable):
                env.service.load("sim-a")
            at = no_exception(env.app())
            banner = at.error[0].value
            assert "Nothing can be recorded right now" in banner
            assert "attempt to write a readonly database" in banner
            assert chip_labels(at)["sim-a"].startswith(":orange["), chip_labels(at)  # unknown, not red
        env.service.load("sim-a")  # writable again: recorded as usual
        assert not no_exception(env.app()).error
