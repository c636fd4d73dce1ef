"""What the swarm runtime reads from a manager's JSON (lifecycle.runtimes.swarm_view) and what the
catalog takes for ``runtime: swarm``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from lifecycle.catalog import load_catalog
from lifecycle.catalog.errors import CatalogError
from lifecycle.runtimes.swarm_view import (
    find_node,
    newest_task,
    node_memory_gb,
    node_problem,
    placement,
    task_note,
    task_observation,
)


def node(
    node_id: str, label: str | None, state: str = "ready", availability: str = "active", gpus: int = 0
) -> Any:
    resources = [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": gpus}}] if gpus else []
    return {
        "ID": node_id,
        "Spec": {"Labels": {"dxg.host": label} if label else {}, "Availability": availability},
        "Description": {"Hostname": "box", "Resources": {"GenericResources": resources}},
        "Status": {
            "State": state,
            "Addr": "10.0.0.2",
            "Message": "heartbeat failure" if state == "down" else "",
        },
    }


def task(state: str, created: str, code: int | None = None, err: str = "") -> Any:
    status: dict[str, Any] = {"State": state, "Err": err}
    if code is not None:
        status["ContainerStatus"] = {"ExitCode": code}
    return {"ID": "t" + created[-2:] + "x" * 20, "CreatedAt": created, "NodeID": "n2", "Status": status}


NODES = [node("n1", "spark-1"), node("n2", "spark-2", gpus=2)]


def test_a_node_is_found_by_its_label_or_its_id_and_pinned_the_same_way() -> None:
    assert find_node(NODES, "spark-2")["ID"] == "n2"
    assert find_node(NODES, "n1")["ID"] == "n1"
    assert find_node(NODES, "spark-9") is None
    assert placement("spark-2", NODES[1]) == "node.labels.dxg.host==spark-2"
    assert placement("n1", NODES[0]) == "node.id==n1"


@pytest.mark.parametrize(
    ("nodes", "gpus", "words"),
    [
        (NODES, None, None),
        (NODES, 2, None),
        (NODES, 3, "advertises 2 NVIDIA-GPU resources and the model reserves 3"),
        (
            [node("n2", "spark-2", state="down")],
            None,
            "swarm node spark-2 (n2) at 10.0.0.2 is down: heartbeat failure",
        ),
        ([node("n2", "spark-2", availability="drain")], None, "is drain, so nothing new is placed on it"),
        ([node("n1", "spark-1")], None, "no swarm node is labelled dxg.host=spark-2"),
    ],
)
def test_why_a_node_cannot_take_a_model_is_said_in_words(
    nodes: Any, gpus: int | None, words: str | None
) -> None:
    problem = node_problem("spark-2", nodes, gpus)
    if words is None:
        assert problem is None
    else:
        assert problem is not None
        assert words in problem


def test_a_nodes_memory_is_what_its_engine_reported() -> None:
    reported = {"Description": {"Resources": {"MemoryBytes": 128 * 1024**3}}}
    assert node_memory_gb(reported) == 128.0
    assert node_memory_gb(NODES[0]) is None


def test_the_newest_task_decides_and_a_failed_one_carries_its_exit_code() -> None:
    old = task("failed", "2026-11-29T10:00:00.000000001Z", code=3)
    new = task("running", "2026-11-29T10:05:00.000000001Z")
    assert newest_task([new, old]) is new
    assert task_observation(new).running
    ended = task_observation(old)
    assert not ended.running
    assert ended.exit_code == 3
    assert task_observation(None).missing
    rejected = task("rejected", "2026-11-29T10:06:00.000000001Z", err="No such image: dxg-sim:local")
    assert task_observation(rejected).exit_code is None
    note = task_note(rejected, {"n2": NODES[1]})
    assert "on node spark-2 (n2) is rejected; No such image: dxg-sim:local" in note


def _catalog(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


ENTRY = """
    models:
      - id: m
        url: http://10.0.0.2:8000
        engine: nim
        runtime: swarm
        swarm: {image: "img:1", node: spark-2, ports: {8000: 8000}%s}
"""


def test_the_catalogs_swarm_manager_reaches_every_swarm_entry_that_names_none(tmp_path: Path) -> None:
    catalog = load_catalog(
        _catalog(tmp_path, "swarm_manager: tcp://10.0.0.1:2376\n" + textwrap.dedent(ENTRY % ""))
    )
    spec = catalog["m"]
    assert spec.swarm is not None
    assert spec.swarm.manager == "tcp://10.0.0.1:2376"
    own = load_catalog(_catalog(tmp_path, textwrap.dedent(ENTRY % ", manager: unix:///run/m.sock")))
    assert own["m"].swarm is not None
    assert own["m"].swarm.manager == "unix:///run/m.sock"


@pytest.mark.parametrize(
    ("top", "fields", "words"),
    [
        ("swarm_manager: 10.0.0.1:2376\n", "", "swarm_manager: '10.0.0.1:2376' is not a Docker endpoint"),
        ("", ", gpus: 0", "greater than or equal to 1"),
        ("", ", node: 'bad node'", "is not a node name"),
    ],
)
def test_bad_swarm_settings_are_refused_in_words(tmp_path: Path, top: str, fields: str, words: str) -> None:
    entry = (
        textwrap.dedent(ENTRY % fields).replace("node: spark-2, ", "")
        if "node:" in fields
        else textwrap.dedent(ENTRY % fields)
    )
    with pytest.raises(CatalogError, match=words.replace("(", r"\(").replace("?", r"\?")):
        load_catalog(_catalog(tmp_path, top + entry))


def test_a_swarm_entry_must_publish_its_urls_port(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no entry publishes the url's port 8000"):
        load_catalog(_catalog(tmp_path, textwrap.dedent(ENTRY % "").replace("{8000: 8000}", "{8000: 9000}")))
