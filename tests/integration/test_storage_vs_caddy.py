"""A data directory written by txcaddy serves Caddy 2.6.2, and the other way round.

Each side serves ``localhost`` with the local CA from one storage directory; the other side is
then started on the same directory and must serve the very certificate already stored there
(same serial: nothing re-issued).  Skipped where Caddy is not installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

from cryptography import x509
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.integration.test_acme import fetch
from tests.integration.test_twistd import free_port, wait_for_output
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor

CADDY = "/usr/bin/caddy"


class StorageSharedWithCaddyTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if not os.access(CADDY, os.X_OK):
            raise self.skipTest("Caddy 2.6.2 is not installed (apt-get install caddy)")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.storage = os.path.join(self.workdir, "storage")
        self.http_port, self.https_port = free_port(), free_port()
        self.caddyfile = (
            f"{{\n\thttp_port {self.http_port}\n\thttps_port {self.https_port}\n\tadmin off\n"
            f"\tskip_install_trust\n\tstorage file_system {{\n\t\troot {self.storage}\n\t}}\n}}\n"
            "localhost {\n\trespond hi\n}\n")

    def stored_serial(self) -> int:
        path = os.path.join(self.storage, "certificates", "local", "localhost", "localhost.crt")
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificates(f.read())[0].serial_number

    async def served_serial(self) -> int:
        """The serial the server shows for ``localhost``; Caddy loads or obtains its certificates in
        the background after it says it serves, so a refused handshake is retried (at most 10 s)."""
        for _ in range(200):
            reply, peer = await fetch(self.https_port, "localhost")
            if reply:
                break
            await deferLater(default_reactor(), 0.05)
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK"), reply)
        return int(peer.serial_number)

    async def with_txcaddy(self) -> int:
        service = fromCaddyfile(self.caddyfile, reactor=default_reactor())
        service.startService()
        try:
            assert service.tls is not None and service.tls.manager is not None
            await service.tls.manager.ready
            return await self.served_serial()
        finally:
            await service.stopService()

    async def with_caddy(self, marker: bytes = b"serving initial configuration") -> int:
        path = os.path.join(self.workdir, "Caddyfile")
        with open(path, "w") as f:
            f.write(self.caddyfile)
        env = dict(os.environ, HOME=self.workdir, XDG_DATA_HOME=self.workdir, XDG_CONFIG_HOME=self.workdir)
        process = subprocess.Popen([CADDY, "run", "--config", path, "--adapter", "caddyfile"], cwd=self.workdir,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            # Caddy's start-up line; on a fresh storage its certificate is obtained after it
            # (in the background), so that test waits for the line saying it was.
            wait_for_output(process, marker, 30)
            return await self.served_serial()
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)

    async def test_caddy_serves_what_txcaddy_stored(self) -> Any:
        """Caddy, started on txcaddy's storage, serves txcaddy's certificate (same serial)."""
        ours = await self.with_txcaddy()
        self.assertEqual(ours, self.stored_serial())
        self.assertEqual(await self.with_caddy(), ours)
        self.assertEqual(self.stored_serial(), ours)

    async def test_txcaddy_serves_what_caddy_stored(self) -> Any:
        """txcaddy, started on Caddy's storage, serves Caddy's certificate (same serial)."""
        theirs = await self.with_caddy(b"certificate obtained successfully")
        self.assertEqual(theirs, self.stored_serial())
        self.assertEqual(await self.with_txcaddy(), theirs)
