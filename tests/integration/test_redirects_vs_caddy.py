"""Automatic HTTPS redirects next to Caddy 2.6.2's: the same Caddyfile, the same requests.

Each config is served by ``/usr/bin/caddy`` and then by txcaddy on the same ports (one after
the other), and the heads of their answers on the HTTP port are compared field by field.
Skipped where Caddy is not installed (``apt-get install caddy``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.test_twistd import CHECKOUT, free_port, wait_for_output

CADDY = "/usr/bin/caddy"
COMPARED = (b"location", b"connection", b"content-length")


def exchange(port: int, request: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """(status line, the compared header fields) of the answer to ``request``."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() in COMPARED:
            fields[name.lower()] = value.strip()
    return lines[0], fields


class RedirectsLikeCaddyTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not os.access(CADDY, os.X_OK):
            raise self.skipTest("Caddy 2.6.2 is not installed (apt-get install caddy)")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)

    def serve(self, argv: list[str], marker: bytes, requests: list[bytes], port: int) -> list[object]:
        env = dict(os.environ, PYTHONPATH=CHECKOUT, HOME=self.workdir, XDG_DATA_HOME=self.workdir,
                   XDG_CONFIG_HOME=self.workdir)
        process = subprocess.Popen(argv, cwd=self.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = b""
        try:
            output = wait_for_output(process, marker, 30)
            return [exchange(port, request) for request in requests]
        except OSError as e:
            raise AssertionError(f"{argv[0]} on port {port}: {e}; its output: {output.decode(errors='replace')}") from e
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def compare(self, caddyfile: str, requests: list[bytes], http_port: int) -> None:
        path = os.path.join(self.workdir, "Caddyfile")
        with open(path, "w") as f:
            f.write(caddyfile)
        caddy = self.serve([CADDY, "run", "--config", path, "--adapter", "caddyfile"],
                           b"serving initial configuration", requests, http_port)
        ours = self.serve([sys.executable, "-m", "txcaddy.cli", "run", "--config", path],
                          b"listening on [", requests, http_port)
        for request, theirs, mine in zip(requests, caddy, ours, strict=True):
            self.assertEqual(mine, theirs, request)

    def test_redirects(self) -> None:
        """Names, unknown hosts, other HTTPS ports, ``https_port`` left out, query strings kept."""
        http_port, https_port, other = free_port(), free_port(), free_port()
        caddyfile = (
            f"{{\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tadmin off\n\tskip_install_trust\n"
            f"\tstorage file_system {{\n\t\troot {self.workdir}/storage\n\t}}\n}}\n"
            "localhost, b.localhost {\n\trespond hi\n}\n"
            f"a.localhost:{other} {{\n\trespond a\n}}\n"
        )
        requests = [
            b"GET /x?y=1&z=%20 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            f"GET / HTTP/1.1\r\nHost: b.localhost:{http_port}\r\n\r\n".encode(),
            b"GET /p HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
            b"GET /unknown HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n",
            b"HEAD /h HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ]
        self.compare(caddyfile, requests, http_port)

    def test_redirects_beside_an_http_site(self) -> None:
        """An ``http://`` site on the HTTP port keeps its routes; redirects follow its host routes."""
        http_port, https_port = free_port(), free_port()
        caddyfile = (
            f"{{\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tadmin off\n\tskip_install_trust\n"
            f"\tstorage file_system {{\n\t\troot {self.workdir}/storage\n\t}}\n}}\n"
            "localhost {\n\trespond secure\n}\n"
            f"http://plain.localhost:{http_port} {{\n\trespond plain\n}}\n"
        )
        requests = [
            b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: plain.localhost\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: other.localhost\r\n\r\n",
        ]
        self.compare(caddyfile, requests, http_port)
