"""Who holds a TCP port: the answer behind "port 8000 is already in use by ...".

The holder is named so the user can act: a process (pid and command) or, when a Docker
client is given, the container publishing the port.
"""

from __future__ import annotations

import socket
from typing import Any

import psutil


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``port`` (connect-based, so it also sees other namespaces' proxies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) != 0


def _process_holder(port: int) -> str | None:
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                proc = psutil.Process(conn.pid)
                command = " ".join(proc.cmdline()) or proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                command = "?"
            return f"process {conn.pid} ({command[:160]})"
    return None


def _container_holder(port: int, docker_client: Any) -> str | None:
    try:
        containers = docker_client.containers.list()
    except Exception:  # Docker being down must not hide the process answer
        return None
    for container in containers:
        published = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        for bindings in published.values():
            for binding in bindings or []:
                if str(binding.get("HostPort")) == str(port):
                    return f"container {container.name} ({container.short_id})"
    return None


def port_holder(port: int, docker_client: Any = None) -> str | None:
    """Describe what listens on ``port``, preferring the container over its docker-proxy process."""
    if docker_client is not None:
        holder = _container_holder(port, docker_client)
        if holder:
            return holder
    return _process_holder(port)
