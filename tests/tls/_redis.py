"""A throwaway ``redis-server`` on a free loopback port, for the Redis storage's tests.

Started with no persistence; ``start`` returns once the server logs that it accepts
connections (a blocking read of its output, bounded by ``select``: no polling, no sleep);
``stop`` ends it by its PID.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
from typing import Any

from tests._child import free_port

REDIS_SERVER = shutil.which("redis-server")
NO_REDIS = "redis-server is not installed (apt-get install redis-server)"

try:
    import redis  # noqa: F401
except ImportError:  # pragma: no cover - the test extra installs it
    REDIS_SERVER = None
    NO_REDIS = "redis-py is not installed (pip install 'txcaddy[redis]')"


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        assert REDIS_SERVER is not None
        process = self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        output = b""
        fd = process.stdout.fileno()
        while b"Ready to accept connections" not in output:
            readable, _, _ = select.select([fd], [], [], timeout)
            chunk = os.read(fd, 65536) if readable else b""
            if not chunk:
                self.stop()
                raise AssertionError(f"redis-server did not start on port {self.port}:\n{output.decode()}")
            output += chunk

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
