"""``twistd -n caddy`` as a real process: serves, then stops cleanly on SIGTERM; as root,
binds :80 and then serves as ``--uid nobody``."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv = ['twistd'] + sys.argv[1:]; run()"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_output(process: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """Read the process's output until ``marker`` shows up (the event we wait on)."""
    deadline = time.monotonic() + timeout
    seen = b""
    output = process.stdout
    assert output is not None  # started with stdout=PIPE
    while marker not in seen:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([output], [], [], max(remaining, 0))
        if not ready:
            raise AssertionError(f"no {marker!r} within {timeout}s; output so far: {seen!r}")
        chunk = os.read(output.fileno(), 65536)
        if not chunk:
            raise AssertionError(f"process ended before {marker!r}: {seen!r}")
        seen += chunk
    return seen


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def serve_in_process(testcase: SynchronousTestCase, argv: list[str], answer: str) -> tuple[int, bytes, bytes]:
    """Start a server process on a Caddyfile answering ``answer``; GET it; SIGTERM it.

    Returns the exit status, the HTTP reply and the process output.
    """
    workdir = os.path.abspath(testcase.mktemp())
    os.makedirs(workdir)
    port = free_port()
    with open(os.path.join(workdir, "Caddyfile"), "w") as f:
        f.write(f"http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n\trespond \"{answer}\"\n}}\n")
    # autosave.json goes to the test's folder, not the user's ~/.config/caddy.
    env = dict(os.environ, PYTHONPATH=CHECKOUT, XDG_CONFIG_HOME=os.path.join(workdir, "config"))
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for_output(process, b"listening on [", 30)
        reply = http_get(port, "/")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, reply, output


class TwistdTests(SynchronousTestCase):
    def test_serves_and_stops_on_sigterm(self) -> None:
        """twistd -n caddy serves its Caddyfile and stops cleanly on SIGTERM."""
        status, reply, output = serve_in_process(
            self, ["-c", TWISTD, "-n", "--pidfile=", "caddy", "-c", "Caddyfile"], "from twistd"
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply)
        self.assertTrue(reply.endswith(b"\r\n\r\nfrom twistd"), reply)
        # twistd stops cleanly and then exits through the same signal (Twisted's
        # documented behaviour), so the status is "terminated by SIGTERM".
        self.assertEqual(status, -signal.SIGTERM, output)
        self.assertNotIn(b"Traceback", output)
        self.assertIn(b"Main loop terminated", output)


class TxcaddyRunTests(SynchronousTestCase):
    def test_run_serves_and_exits_zero_on_sigterm(self) -> None:
        """txcaddy run serves its Caddyfile and exits 0 on SIGTERM."""
        status, reply, output = serve_in_process(
            self, ["-m", "txcaddy.cli", "run", "--config", "Caddyfile"], "from txcaddy run"
        )
        self.assertTrue(reply.endswith(b"\r\n\r\nfrom txcaddy run"), reply)
        self.assertEqual(status, 0, output)
        self.assertNotIn(b"Traceback", output)

    def test_run_reports_a_bad_config_in_one_line(self) -> None:
        """txcaddy run with a bad Caddyfile exits 1 with one error line and a suggestion."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        with open(os.path.join(workdir, "Caddyfile"), "w") as f:
            f.write(":8080 {\n\tfile_servr\n}\n")
        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        result = subprocess.run(
            [sys.executable, "-m", "txcaddy.cli", "run", "--config", "Caddyfile"],
            cwd=workdir, env=env, capture_output=True, timeout=60,
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr,
            b"Error: Caddyfile:2: unrecognized directive: file_servr (did you mean 'file_server'?)\n",
        )


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _uid_of(pid: int) -> int:
    """The real uid of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError(f"no Uid line for process {pid}")


class TwistdPrivilegesTests(SynchronousTestCase):
    def setUp(self) -> None:
        import grp
        import pwd

        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            raise self.skipTest("binding port 80 and dropping privileges needs root")
        if not os.path.isdir("/proc/self"):
            raise self.skipTest("reading a process's uid needs /proc")
        try:
            self.nobody = pwd.getpwnam("nobody").pw_uid
            grp.getgrnam("nogroup")
        except KeyError:
            raise self.skipTest("no user nobody / group nogroup here") from None
        if _port_in_use(80):
            raise self.skipTest("port 80 is in use on 127.0.0.1")

    def test_binds_port_80_as_root_then_serves_as_nobody(self) -> None:
        """twistd --uid/--gid binds :80 before dropping privileges, then serves as nobody."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        os.chmod(workdir, 0o755)
        with open(os.path.join(workdir, "Caddyfile"), "w") as f:
            f.write('http://127.0.0.1:80 {\n\tbind 127.0.0.1\n\trespond "unprivileged"\n}\n')
        env = dict(os.environ, PYTHONPATH=CHECKOUT, PYTHONDONTWRITEBYTECODE="1")
        argv = ["-c", TWISTD, "-n", "--pidfile=", "--uid", "nobody", "--gid", "nogroup",
                "caddy", "-c", "Caddyfile"]
        process = subprocess.Popen(
            [sys.executable, *argv], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            wait_for_output(process, b"listening on [", 30)
            reply = http_get(80, "/")
            uid = _uid_of(process.pid)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.assertTrue(reply.endswith(b"\r\n\r\nunprivileged"), reply)
        self.assertEqual(uid, self.nobody, output)
        self.assertNotIn(b"Traceback", output)
