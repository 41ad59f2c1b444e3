"""Listener kinds (unix socket, IPv6) and the maintenance-page error fallback, for real."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor


def raw_exchange(family: int, address: Any, request: bytes) -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(address)
        s.sendall(request)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


GET = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


class ListenerTests(TestCase):
    timeout = 30

    def serve(self, caddyfile: str) -> Any:
        service = fromCaddyfile(caddyfile, reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def test_unix_socket(self) -> Any:
        # AF_UNIX paths are limited to 107 bytes: use a short directory, not the trial temp tree.
        """A site bound to a unix socket serves over it."""
        directory = tempfile.mkdtemp(prefix="txc")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "s.sock")
        self.serve(f":80 {{\n\tbind unix/{path}\n\trespond \"over unix\"\n}}\n")
        out = yield deferToThread(raw_exchange, socket.AF_UNIX, path, GET)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out)
        self.assertTrue(out.endswith(b"over unix"))

    @inlineCallbacks
    def test_ipv6_loopback(self) -> Any:
        """A site bound to ::1 serves over IPv6 and sees the client's ::1 address."""
        if not socket.has_ipv6:
            raise SkipTest("no IPv6")
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            raise SkipTest("::1 is not available")
        service = self.serve("http://[::1]:0 {\n\tbind ::1\n\trespond \"over ipv6 {http.request.remote.host}\"\n}\n")
        (address,) = next(iter(service.boundAddresses().values()))
        out = yield deferToThread(raw_exchange, socket.AF_INET6, ("::1", address.port), GET.replace(b"localhost", b"[::1]"))
        self.assertTrue(out.endswith(b"over ipv6 ::1"), out)

    @inlineCallbacks
    def test_maintenance_page_status_when_the_page_is_missing(self) -> Any:
        # DESIGN.md §1: `try_files … =503` in handle_errors with no page answers 503.
        """handle_errors' try_files =503 answers 503 with no page; with it, the error's status."""
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        service = self.serve(
            "http://127.0.0.1:0 {\n\tbind 127.0.0.1\n\terror /down* 502\n"
            f"\thandle_errors {{\n\t\troot * {root}\n\t\ttry_files /maintenance.html =503\n\t\tfile_server\n\t}}\n}}\n"
        )
        (address,) = next(iter(service.boundAddresses().values()))
        request = b"GET /down HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        out = yield deferToThread(raw_exchange, socket.AF_INET, ("127.0.0.1", address.port), request)
        self.assertTrue(out.startswith(b"HTTP/1.1 503 "), out)
        # With the page present it is served with the original error's status (as Caddy).
        with open(os.path.join(root, "maintenance.html"), "w") as f:
            f.write("be right back")
        out = yield deferToThread(raw_exchange, socket.AF_INET, ("127.0.0.1", address.port), request)
        self.assertTrue(out.startswith(b"HTTP/1.1 502 "), out)
        self.assertTrue(out.endswith(b"be right back"), out)
