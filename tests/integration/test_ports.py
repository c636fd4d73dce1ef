"""Who holds a port: real listening sockets, in this process and in another one."""

from __future__ import annotations

import os
import socket
import sys

from lifecycle.runtimes.ports import port_holder, port_is_free
from tests.support import free_port, port_held, wait_until


def test_free_port_is_free_and_has_no_holder() -> None:
    port = free_port()
    assert port_is_free(port)
    assert port_holder(port) is None


def test_listening_socket_in_this_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # Bound is not taken: only a listener makes the port busy for a server.
        assert port_is_free(port)
        sock.listen()
        assert not port_is_free(port)
        holder = port_holder(port)
        assert holder is not None
        assert holder.startswith(f"process {os.getpid()} (")
        assert "pytest" in holder or sys.executable in holder
    assert port_is_free(port)


def test_holder_in_another_process_is_named_with_its_command() -> None:
    port = free_port()
    with port_held(port) as holder:
        described = port_holder(port)
        assert described is not None
        assert described.startswith(f"process {holder.pid} ({sys.executable} -c import socket")
    wait_until(lambda: port_is_free(port), timeout_s=5, what="the port to be released")
