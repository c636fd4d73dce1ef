"""A real two-node Docker Swarm on one machine, for the swarm runtime's tests.

    python -m tests.swarm_bed up      # prints the bed as JSON
    python -m tests.swarm_bed down    # removes every trace; safe to run at any time

Node 1 is this machine's own engine (the manager). Node 2 is a second ``dockerd`` in its own
network namespace, joined over a veth pair on a private /24 made here and removed again:

- ``nsenter --net=...``, not ``ip netns exec``: the latter remounts /sys, which hides the
  cgroups, and dockerd then fails with "Devices cgroup isn't mounted";
- the simulator's image is copied with ``docker save | docker load``; no registry is needed;
- nodes carry ``dxg.host=node-1`` / ``node-2`` labels, as a user labels theirs;
- node 2 advertises two NVIDIA-GPU generic resources (named, as on a GPU host);
- the manager node also carries ``dxg.bed=1``: ``down`` leaves only a swarm it made, never a
  user's, and ``up`` starts with ``down``, so a run that died midway leaves nothing for the next.

Needs root, ``ip``, ``nsenter`` and ``dockerd``; ``why_unavailable`` says what is missing.
Traffic goes only to the bed's own addresses and loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import psutil

NETNS: Final = "dxg-swarm-node2"
VETH_HOST: Final = "dxgsw0"
VETH_NODE: Final = "dxgsw1"
HOST_ADDR: Final = "10.231.7.1"
NODE_ADDR: Final = "10.231.7.2"
PREFIX: Final = 24
ROOT: Final = Path("/var/lib/dxg-swarm-node2")
SOCKET: Final = ROOT / "docker.sock"
PIDFILE: Final = ROOT / "docker.pid"
BED_LABEL: Final = "dxg.bed"
NODE1: Final = "node-1"
NODE2: Final = "node-2"
START_TIMEOUT_S: Final = 60.0
# How often nodes report to the manager: a node that stops counts as down after a few of these.
HEARTBEAT: Final = "1s"
# Node 2 advertises two GPUs as named generic resources, as dockerd does on a GPU host
# (node-generic-resources in daemon.json); without the NVIDIA runtime they only count.
NODE2_GPUS: Final = ("GPU-dxg-bed-0", "GPU-dxg-bed-1")


@dataclass(frozen=True)
class Bed:
    node1_id: str
    node2_id: str
    node1_addr: str
    node2_addr: str
    node2_host: str  # DOCKER_HOST of node 2's own engine


def _run(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


def _docker(*argv: str, node2: bool = False, check: bool = True) -> str:
    host = ["-H", f"unix://{SOCKET}"] if node2 else []
    result = _run("docker", *host, *argv, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _in_node2(*argv: str) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{NETNS}", *argv]


def why_unavailable() -> str | None:
    """Why a bed can't be made here, or None."""
    if os.geteuid() != 0:
        return "the swarm test bed needs root (a network namespace and a second dockerd)"
    for tool in ("ip", "nsenter", "dockerd", "docker"):
        if shutil.which(tool) is None:
            return f"the swarm test bed needs {tool!r}, which is not installed"
    if _run("docker", "info", check=False).returncode != 0:
        return "the swarm test bed needs this machine's Docker engine, which does not answer"
    state = _docker("info", "--format", "{{.Swarm.LocalNodeState}}", check=False)
    if state == "active" and not _ours():
        return "this Docker engine is already part of a swarm the test bed did not make; it leaves it alone"
    return None


def _ours() -> bool:
    """The engine's swarm is the bed's: labelled so, or advertised on the bed's own address (a run
    that died between ``swarm init`` and the label left it so)."""
    labels = _docker("node", "inspect", "self", "--format", "{{json .Spec.Labels}}", check=False)
    with contextlib.suppress(ValueError):
        if BED_LABEL in (json.loads(labels or "{}") or {}):
            return True
    return _docker("info", "--format", "{{.Swarm.NodeAddr}}", check=False) == HOST_ADDR


def _node2_process() -> psutil.Process | None:
    """Node 2's dockerd, if its pidfile names one: a stale pidfile's pid may be anyone's now."""
    try:
        process = psutil.Process(int(PIDFILE.read_text().strip()))
        if "dockerd" in process.name() and str(ROOT) in " ".join(process.cmdline()):
            return process
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def stop_node2(sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
    """Stop node 2's dockerd (SIGKILL to play a node that dies) and wait until it is gone."""
    process = _node2_process()
    if process is None:
        return
    with contextlib.suppress(psutil.Error):
        process.send_signal(sig)
        try:
            process.wait(timeout_s)  # reaps it too when this process started it
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(10)


def start_node2() -> None:
    """Node 2's dockerd in its namespace; after ``stop_node2`` it rejoins the swarm by itself."""
    (ROOT / "data").mkdir(parents=True, exist_ok=True)
    (ROOT / "exec").mkdir(parents=True, exist_ok=True)
    # Its own (empty) daemon.json, so a developer's /etc/docker/daemon.json (hosts, data-root,
    # live-restore) never reaches it, and its own containerd namespaces.
    config = ROOT / "daemon.json"
    config.write_text("{}\n", encoding="utf-8")
    argv = _in_node2(
        "dockerd",
        "--config-file", str(config),
        "--data-root", str(ROOT / "data"),
        "--exec-root", str(ROOT / "exec"),
        "--pidfile", str(PIDFILE),
        "--containerd-namespace", "dxg-node2",
        "--containerd-plugins-namespace", "dxg-node2-plugins",
        "-H", f"unix://{SOCKET}",
        *(f"--node-generic-resource=NVIDIA-GPU={gpu}" for gpu in NODE2_GPUS),
    )  # fmt: skip
    with (ROOT / "dockerd.log").open("ab") as log:
        subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while _run("docker", "-H", f"unix://{SOCKET}", "info", check=False).returncode != 0:
        if time.monotonic() > deadline:
            tail = (ROOT / "dockerd.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"node 2's dockerd did not come up in {START_TIMEOUT_S:g}s:\n{tail}")
        time.sleep(0.2)


def down() -> None:
    """Remove the bed, or what a run that died left of it. Never touches a swarm it did not make."""
    engine_up = shutil.which("docker") is not None and _run("docker", "info", check=False).returncode == 0
    if engine_up and _ours():
        if _docker("info", "--format", "{{.Swarm.ControlAvailable}}", check=False) == "true":
            import docker

            from lifecycle.runtimes.swarm import retire

            client = docker.from_env(timeout=30)
            for service in client.services.list():
                retire(service)
            client.close()
        _docker("swarm", "leave", "--force", check=False)
    if _node2_process() is not None:
        if SOCKET.exists():
            containers = _docker("ps", "-aq", node2=True, check=False).split()
            if containers:
                _docker("rm", "-f", *containers, node2=True, check=False)
            _docker("swarm", "leave", "--force", node2=True, check=False)
        stop_node2()
    _kill_leftovers()
    if shutil.which("ip") is not None:
        _run("ip", "netns", "del", NETNS, check=False)
        _run("ip", "link", "del", VETH_HOST, check=False)
    if ROOT.exists():
        # Mounts dockerd left (its data root, overlays, netns files) would make the removal fail.
        for mount in sorted(_mounts_under(ROOT), key=len, reverse=True):
            _run("umount", "-l", mount, check=False)
        shutil.rmtree(ROOT, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    with contextlib.suppress(OSError):
        lines = Path("/proc/self/mounts").read_text().splitlines()
        return [f for line in lines if (f := line.split()[1]).startswith(str(root))]
    return []


def _kill_leftovers() -> None:
    """Shims and containers of a node 2 that was killed (a node "losing power" leaves them)."""
    mine = [p for p in psutil.process_iter(["cmdline"]) if str(ROOT) in " ".join(p.info["cmdline"] or [])]
    for process in mine:
        with contextlib.suppress(psutil.Error):
            for child in process.children(recursive=True):
                child.kill()
            process.kill()
    psutil.wait_procs(mine, timeout=10)


def up(image: str) -> Bed:
    """A fresh two-node swarm with ``image`` on node 2."""
    reason = why_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    down()
    _run("ip", "netns", "add", NETNS)
    _run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NODE)
    _run("ip", "link", "set", VETH_NODE, "netns", NETNS)
    _run("ip", "addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", VETH_HOST)
    _run("ip", "link", "set", VETH_HOST, "up")
    _run(*_in_node2("ip", "addr", "add", f"{NODE_ADDR}/{PREFIX}", "dev", VETH_NODE))
    _run(*_in_node2("ip", "link", "set", VETH_NODE, "up"))
    _run(*_in_node2("ip", "link", "set", "lo", "up"))
    start_node2()
    _docker(
        "swarm", "init", "--advertise-addr", HOST_ADDR, "--listen-addr", f"{HOST_ADDR}:2377",
        "--dispatcher-heartbeat", HEARTBEAT,
    )  # fmt: skip
    node1 = _docker("node", "inspect", "self", "--format", "{{.ID}}")
    _docker("node", "update", "--label-add", f"{BED_LABEL}=1", "--label-add", f"dxg.host={NODE1}", node1)
    token = _docker("swarm", "join-token", "-q", "worker")
    _docker("swarm", "join", "--token", token, "--advertise-addr", NODE_ADDR, f"{HOST_ADDR}:2377", node2=True)
    node2 = _docker("info", "--format", "{{.Swarm.NodeID}}", node2=True)
    _docker("node", "update", "--label-add", f"dxg.host={NODE2}", node2)
    copy_image(image)
    return Bed(node1, node2, HOST_ADDR, NODE_ADDR, f"unix://{SOCKET}")


def copy_image(image: str) -> None:
    """``docker save | docker load`` into node 2's engine."""
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    load = subprocess.run(
        ["docker", "-H", f"unix://{SOCKET}", "load"],
        stdin=save.stdout, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    if save.stdout is not None:
        save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise RuntimeError(f"copying {image} to node 2 failed: {load.stderr.strip()}")


def node2_client() -> Any:
    """A Docker SDK client of node 2's own engine (what runs there, seen from the node)."""
    import docker

    return docker.DockerClient(base_url=f"unix://{SOCKET}", version="auto", timeout=30)


def node_state(node_id: str) -> str:
    """The manager's word on a node: ready, down, unknown."""
    return _docker("node", "inspect", node_id, "--format", "{{.Status.State}}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"]:
        from tests.catalogs import SIM_IMAGE

        print(json.dumps(asdict(up(argv[1] if len(argv) > 1 else SIM_IMAGE))))
        return 0
    if argv[:1] == ["down"]:
        down()
        return 0
    print("usage: python -m tests.swarm_bed up [IMAGE] | down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
