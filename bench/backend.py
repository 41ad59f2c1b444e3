"""The backend: nginx (fixed answers, static files) and the SSE event source.

For the gRPC scenarios nginx also listens for h2c (``h2c_port``) and answers
the scenarios' paths with prepared gRPC messages and a ``grpc-status`` trailer.

A fast C server on the loopback interface, so that what is measured is the
proxy between it and wrk.  Target ``direct`` measures it alone: the ceiling
of the load side on this machine.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from bench.procs import HOST, ManagedProcess, cpu_seconds, descendants
from bench.rendering import TEMPLATES, render, render_file
from bench.scenarios import REGISTRY, grpc_message

#: The answer of /small and /post: exactly 100 bytes.
SMALL_BODY = (b"txcaddy bench: the small answer, " * 4)[:99] + b"\n"
STATIC_FILES = {"64k.bin": 64 * 1024, "1m.bin": 1024 * 1024}


def grpc_answers() -> dict[str, bytes]:
    """The h2c listener's answer bodies by path: each gRPC scenario's messages, concatenated."""
    return {s.path: grpc_message() * s.grpc_messages for s in REGISTRY.values() if s.grpc}


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a one-shot HTTP/1.1 GET on 127.0.0.1 (reads until close)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
                  .encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    fields = head.split(b" ", 2)
    if not head.startswith(b"HTTP/1.") or len(fields) < 2:
        raise OSError(f"not an HTTP answer: {head[:80]!r}")
    return int(fields[1]), body


def wait_until_serving(port: int, timeout: float, process: ManagedProcess | None = None) -> None:
    """Wait until GET /small on ``port`` gives the backend's exact answer."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise RuntimeError(f"{process.name} exited ({process.popen.returncode}) while "
                               f"starting:\n{process.log_tail()}")
        try:
            status, body = http_get(port, "/small")
            if status == 200 and body == SMALL_BODY:
                return
            last = (status, body[:100])
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"no correct answer on {HOST}:{port}/small within {timeout:.0f} s "
                       f"(last: {last!r})")


def wait_listening(port: int, timeout: float, process: ManagedProcess) -> None:
    """Wait until something accepts TCP connections on ``port`` (the SSE source)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or not process.running():
                raise RuntimeError(f"{process.name} did not start:\n{process.log_tail()}")
            time.sleep(0.1)


class Backend:
    """nginx + the SSE source, both on the load CPUs (inherited from the harness)."""

    def __init__(self, workdir: str, port: int, sse_port: int, workers: int = 1,
                 h2c_port: int | None = None) -> None:
        self.dir = os.path.join(workdir, "backend")
        self.port = port
        self.sse_port = sse_port
        #: The h2c listener with the gRPC answers; None: not started.
        self.h2c_port = h2c_port
        self.workers = workers
        self.processes: list[ManagedProcess] = []

    def _prepare(self) -> str:
        www = os.path.join(self.dir, "www")
        os.makedirs(www, exist_ok=True)
        for path in (os.path.dirname(self.dir), self.dir, www):
            os.chmod(path, 0o755)  # nginx's workers may run as another user when we are root
        for name, size in STATIC_FILES.items():
            path = os.path.join(www, name)
            with open(path, "wb") as f:
                f.write((b"0123456789abcdef" * (size // 16 + 1))[:size])
            os.chmod(path, 0o644)
        values: dict[str, object] = {
            "workers": self.workers, "dir": self.dir, "listen": f"{HOST}:{self.port}",
            "sse": f"{HOST}:{self.sse_port}",
            "small_body": SMALL_BODY.decode().replace("\n", "\\n"), "grpc_server": ""}
        if self.h2c_port is not None:
            self._write_grpc_answers()
            values["grpc_listen"] = f"{HOST}:{self.h2c_port}"
            with open(os.path.join(TEMPLATES, "backend-grpc-server.conf"), encoding="utf-8") as f:
                values["grpc_server"] = render(f.read(), values)
        return render_file(os.path.join(TEMPLATES, "backend-nginx.conf"), values,
                           os.path.join(self.dir, "nginx.conf"))

    def _write_grpc_answers(self) -> None:
        root = os.path.join(self.dir, "grpc")
        for path, body in grpc_answers().items():
            out = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(body)
            os.chmod(out, 0o644)
        for folder, _dirs, _files in os.walk(root):
            os.chmod(folder, 0o755)

    def start(self) -> None:
        """Write the files and config, start nginx and the source, wait until both serve."""
        conf = self._prepare()
        error_log = os.path.join(self.dir, "backend-error.log")
        nginx = ManagedProcess("backend nginx", ["nginx", "-p", self.dir, "-c", conf,
                                                 "-e", error_log],
                               log_path=os.path.join(self.dir, "nginx.out"))
        self.processes.append(nginx)
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sse_source.py")
        events = ManagedProcess("SSE source", [sys.executable, source, "--port",
                                               str(self.sse_port)],
                                log_path=os.path.join(self.dir, "sse.out"))
        self.processes.append(events)
        wait_until_serving(self.port, 20, nginx)
        wait_listening(self.sse_port, 20, events)
        if self.h2c_port is not None:
            wait_listening(self.h2c_port, 20, nginx)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(descendants(p.pid)) for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes = []
