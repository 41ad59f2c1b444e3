"""``txcaddy`` run as a child process for the tests that need a real one.

The child runs this worktree's ``txcaddy.cli`` (``PYTHONPATH``), under the global
reactor's ``spawnProcess``; the test waits for a line of its output or for its end,
each bounded by a timeout (no sleeps), and stops it by its pid with SIGTERM.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from txcaddy._reactor import default_reactor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 30.0  # seconds for the child to start or stop (it imports the whole server)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child(ProcessProtocol):
    """A child's output, and Deferreds for a text appearing in it and for its end."""

    def __init__(self) -> None:
        self.output = {1: b"", 2: b""}
        self.waiting: list[tuple[bytes, Deferred[None]]] = []
        self.ended: Deferred[int | None] = Deferred()
        self.status: int | None = None

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.output[childFD] = self.output.get(childFD, b"") + data
        for text, waiter in list(self.waiting):
            if text in self.output[1] + self.output[2]:
                self.waiting.remove((text, waiter))
                waiter.callback(None)

    def processEnded(self, reason: Failure) -> None:
        error = reason.value
        self.status = 0 if isinstance(error, ProcessDone) else getattr(error, "exitCode", None)
        if isinstance(error, ProcessTerminated) and error.signal is not None:
            self.status = -error.signal
        for _, waiter in self.waiting:
            waiter.errback(AssertionError(f"the child ended first; output:\n{self.text()}"))
        self.waiting.clear()
        self.ended.callback(self.status)

    def text(self) -> str:
        return (self.output[1] + self.output[2]).decode("utf-8", "replace")

    def wait_for(self, text: str) -> Deferred[None]:
        """Fires once ``text`` is in the output (stdout or stderr), fails after ``TIMEOUT``."""
        waiter: Deferred[None] = Deferred()
        if text.encode() in self.output[1] + self.output[2]:
            waiter.callback(None)
            return waiter
        if self.ended.called:
            waiter.errback(AssertionError(f"the child ended; output:\n{self.text()}"))
            return waiter
        self.waiting.append((text.encode(), waiter))
        return waiter.addTimeout(TIMEOUT, default_reactor())


def spawn_txcaddy(
    testcase: Any,
    args: list[str],
    env: Mapping[str, str] | None = None,
    child_fds: dict[int, Any] | None = None,
    shell_prefix: str = "",
    path: str | None = None,
) -> tuple[Child, Any]:
    """Start ``python -m txcaddy.cli ARGS``; the cleanup stops it (SIGTERM) and waits for its end.

    ``shell_prefix`` runs it through ``sh -c '<prefix> exec python ...'`` (to set
    ``LISTEN_PID=$$``, the pid the child keeps across ``exec``).
    """
    reactor: Any = default_reactor()
    child = Child()
    environment = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    command = [sys.executable, "-m", "txcaddy.cli", *args]
    if shell_prefix:
        quoted = " ".join("'" + part.replace("'", "'\\''") + "'" for part in command)
        command = ["/bin/sh", "-c", f"{shell_prefix} exec {quoted}"]
    fds = {0: "w", 1: "r", 2: "r", **(child_fds or {})}
    process = reactor.spawnProcess(child, command[0], command, env=environment, path=path, childFDs=fds)

    def stop() -> Deferred[int | None]:
        if not child.ended.called:
            process.signalProcess("TERM")
        return child.ended.addTimeout(TIMEOUT, reactor)

    testcase.addCleanup(stop)
    return child, process
