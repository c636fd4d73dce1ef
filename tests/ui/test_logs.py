"""The logs page: a model's log tail, as many lines as asked, live while the model loads."""

from __future__ import annotations

from pathlib import Path

from tests.catalogs import sim_process
from tests.support import free_port, wait_until
from tests.ui.harness import no_exception, ui_env

LOGS = "pages/logs.py"


def test_logs_show_the_tail_of_the_chosen_model(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port()), sim_process("sim-b", free_port())) as env:
        env.load("sim-b")
        at = no_exception(env.app(LOGS))
        assert at.code[0].value.startswith("(the log is empty")  # sim-a never ran

        at.selectbox(key="logs:model").set_value("sim-b").run()
        log = no_exception(at).code[0].value
        assert "started sim-b" in log
        assert "SIM_EVENT ready" in log
        assert "refreshing" not in at.caption[0].value  # settled: no live refresh

        at.segmented_control(key="logs:lines").set_value(50).run()
        assert no_exception(at).code[0].value.splitlines() == env.service.logs("sim-b", 50).splitlines()
        assert len(env.service.logs("sim-b", 2).splitlines()) == 2


def test_logs_of_a_loading_model_refresh_live(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("slow", free_port(), startup_s=120)) as env:
        env.service.load("slow", actor="test")
        wait_until(lambda: env.status("slow").phase == "starting", 10, what="slow starting")
        at = no_exception(env.app(LOGS))
        assert "Loading" in at.caption[0].value
        assert "refreshing every second" in at.caption[0].value
        assert "starting slow" in at.code[0].value
