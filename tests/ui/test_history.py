"""The history page: the audit table newest first, its filters, load statistics and CSV export."""

from __future__ import annotations

from pathlib import Path

from tests.catalogs import sim_process
from tests.support import free_port
from tests.ui.harness import no_exception, shown_text, ui_env

HISTORY = "pages/history.py"


def test_history_lists_filters_and_summarises_loads(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port()), sim_process("sim-b", free_port())) as env:
        for _ in range(2):
            env.load("sim-a")
            env.service.unload("sim-a", actor="test")
            env.service.wait("sim-a", "stopped", 30)
        env.load("sim-b")

        at = no_exception(env.app(HISTORY))
        table = at.dataframe[0].value
        assert list(table.columns) == ["position", "time", "model", "event", "actor", "details"]
        assert list(table["position"]) == sorted(table["position"], reverse=True)  # newest first
        assert table["event"].iloc[0] == "ReadyObserved"
        assert table["model"].iloc[0] == "sim-b"
        assert {"LoadRequested", "ReadyObserved", "Stopped", "AppStarted"} <= set(table["event"])
        assert any(d.startswith("took ") for d in table["details"])

        stats = at.dataframe[1].value.set_index("model")
        assert stats.loc["sim-a", "loads"] == 2
        assert stats.loc["sim-b", "loads"] == 1
        assert stats.loc["sim-a", "crashes"] == 0
        assert stats.loc["sim-a", "p50 load"].endswith(" s")

        at.multiselect(key="history:models").set_value(["sim-a"]).run()
        table = no_exception(at).dataframe[0].value
        assert set(table["model"]) == {"sim-a"}
        assert list(at.dataframe[1].value["model"]) == ["sim-a"]

        at.multiselect(key="history:events").set_value(["LoadRequested", "UnloadRequested"]).run()
        table = no_exception(at).dataframe[0].value
        assert list(table["event"]) == ["UnloadRequested", "LoadRequested"] * 2
        assert list(table["actor"]) == ["test", "test"] * 2
        assert "4 of the latest" in shown_text(at)
        assert at.get("download_button")[0].label == "Download CSV"


def test_history_before_any_load(tmp_path: Path) -> None:
    with ui_env(tmp_path, sim_process("sim-a", free_port())) as env:
        at = no_exception(env.app(HISTORY))
        assert list(at.dataframe[0].value["event"]) == ["AppStarted"]
        assert "No model has been loaded yet" in shown_text(at)
