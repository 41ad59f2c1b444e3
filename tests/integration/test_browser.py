"""A real browser trusts txcaddy's local CA after ``txcaddy trust``.

txcaddy serves ``localhost`` with a certificate from its local CA (temporary storage,
``skip_install_trust`` so the server itself installs nothing); ``txcaddy trust`` with
``TRUST_STORES=nss`` and a temporary ``$HOME`` puts the root into that home's NSS database
(``~/.pki/nssdb``, where Chromium on Linux looks); headless Chromium with the same ``$HOME``
then renders the page.  Without the root (a fresh database, or after ``txcaddy untrust``)
Chromium refuses the certificate.

The server runs in this process on the test's reactor; ``txcaddy trust`` and Chromium run as
child processes through ``reactor.spawnProcess`` so the server keeps serving while they work.
Needs ``chromium`` and ``certutil`` (``apt-get install chromium libnss3-tools``).  A run
takes about 1.5 s per Chromium start on a 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from typing import Any, cast

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.test_https import free_port
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = "TXCADDY-TRUSTED-PAGE"
COLOUR = (0x12, 0xC8, 0x5A)
PAGE = (
    '<!doctype html><html><head><title>txcaddy</title></head>'
    f'<body style="margin:0;background:#{"".join(f"{c:02x}" for c in COLOUR)}">'
    f'<h1 style="margin:0;font-size:40px">{MARKER}</h1></body></html>\n'
)
PROCESS_TIMEOUT = 60.0
"""Seconds before a child process (Chromium, ``txcaddy trust``) is killed."""


class _Collect(ProcessProtocol):
    """Gathers a child's stdout and stderr; fires ``done`` with (out, err, exit code or None)."""

    def __init__(self, done: Deferred[tuple[bytes, bytes, int | None]]) -> None:
        self.done = done
        self.out = bytearray()
        self.err = bytearray()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.done.callback((bytes(self.out), bytes(self.err), getattr(reason.value, "exitCode", None)))


def run_process(argv: list[str], env: dict[str, str]) -> Deferred[tuple[bytes, bytes, int | None]]:
    """Run ``argv`` without blocking the reactor; killed after ``PROCESS_TIMEOUT`` seconds."""
    reactor = cast(IReactorProcess, default_reactor())
    done: Deferred[tuple[bytes, bytes, int | None]] = Deferred()
    transport = reactor.spawnProcess(_Collect(done), argv[0], argv, env=env, path=PROJECT)
    killer = default_reactor().callLater(PROCESS_TIMEOUT, transport.signalProcess, "KILL")

    def stop_timer(result: Any) -> Any:
        if killer.active():
            killer.cancel()
        return result

    return done.addBoth(stop_timer)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit, non-interlaced RGB or RGBA PNG, decoded
    with zlib alone (no imaging library needed)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    offset, idat, header = 8, bytearray(), b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace {interlace}")
    size = 3 if colour_type == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * size
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                corner = previous[i - size] if i >= size else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        previous = line
        rows.append(bytes(line) if size == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3))
    return width, height, rows


def colour_share(rows: list[bytes], colour: tuple[int, int, int], tolerance: int = 3) -> float:
    """The part of the pixels within ``tolerance`` of ``colour`` on each channel."""
    match = total = 0
    for row in rows:
        for i in range(0, len(row), 3):
            total += 1
            if all(abs(row[i + c] - colour[c]) <= tolerance for c in range(3)):
                match += 1
    return match / total if total else 0.0


class BrowserTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        self.certutil = shutil.which("certutil")
        if self.chromium is None or self.certutil is None:
            raise SkipTest("needs chromium and certutil: apt-get install chromium libnss3-tools")
        self.dir = os.path.abspath(self.mktemp())
        self.home = os.path.join(self.dir, "home")
        self.database = os.path.join(self.home, ".pki", "nssdb")
        os.makedirs(self.database)
        subprocess.run([self.certutil, "-N", "-d", "sql:" + self.database, "--empty-password"], check=True)
        site = os.path.join(self.dir, "site")
        os.makedirs(site)
        with open(os.path.join(site, "index.html"), "w") as f:
            f.write(PAGE)
        self.https_port = free_port()
        self.caddyfile = os.path.join(self.dir, "Caddyfile")
        with open(self.caddyfile, "w") as f:
            f.write(
                f"{{\n\thttp_port {free_port()}\n\thttps_port {self.https_port}\n\tadmin off\n\tskip_install_trust\n"
                f"\tstorage file_system {{\n\t\troot {os.path.join(self.dir, 'storage')}\n\t}}\n}}\n"
                f"localhost {{\n\troot * {site}\n\trespond /proto \"{{http.request.proto}}\"\n\tfile_server\n}}\n"
            )
        self.url = f"https://localhost:{self.https_port}/"

    @inlineCallbacks
    def start(self) -> Any:
        service = fromCaddyfile(self.caddyfile, reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        assert service.tls is not None and service.tls.manager is not None
        yield service.tls.manager.ready

    @inlineCallbacks
    def txcaddy(self, command: str) -> Any:
        """``python3 -m txcaddy.cli <command> --config …`` for this home, NSS only."""
        env = dict(os.environ, HOME=self.home, TRUST_STORES="nss", PYTHONPATH=PROJECT)
        out, err, code = yield run_process([sys.executable, "-m", "txcaddy.cli", command, "--config", self.caddyfile], env)
        self.assertEqual(code, 0, err.decode())
        return err.decode()

    @inlineCallbacks
    def chromium_run(self, *arguments: str, url: str | None = None) -> Any:
        """Headless Chromium with this home (its NSS database) and a profile of its own."""
        assert self.chromium is not None
        argv = [
            self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", f"--user-data-dir={os.path.join(self.dir, 'profile')}", *arguments, url or self.url,
        ]
        env = {"HOME": self.home, "PATH": os.environ.get("PATH", os.defpath)}
        out, err, code = yield run_process(argv, env)
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        return out.decode(errors="replace"), err.decode(errors="replace")

    @inlineCallbacks
    def test_trusted_root_renders_the_page(self) -> Any:
        """After ``txcaddy trust`` Chromium shows the page: the screenshot is the page's colour
        and the DOM holds its text."""
        yield self.start()
        err = yield self.txcaddy("trust")
        self.assertIn("installed properly in NSS security databases", err)
        shot = os.path.join(self.dir, "shot.png")
        yield self.chromium_run("--hide-scrollbars", "--window-size=800,600", f"--screenshot={shot}")
        with open(shot, "rb") as f:
            width, height, rows = png_pixels(f.read())
        self.assertEqual((width, height), (800, 600))
        share = colour_share(rows, COLOUR)
        self.assertGreater(share, 0.8, f"only {share:.0%} of the screenshot has the page's colour")
        dom, _ = yield self.chromium_run("--dump-dom")
        self.assertIn(MARKER, dom)

    @inlineCallbacks
    def test_page_comes_over_http2(self) -> Any:
        """Chromium speaks HTTP/2 to the site (ALPN h2, on by default as in Caddy): the route
        answering ``{http.request.proto}`` says ``HTTP/2.0``."""
        yield self.start()
        yield self.txcaddy("trust")
        dom, _ = yield self.chromium_run("--dump-dom", url=self.url + "proto")
        self.assertIn("HTTP/2.0", dom)

    @inlineCallbacks
    def test_untrusted_root_is_refused(self) -> Any:
        """Without the root in the NSS database Chromium refuses the certificate: no page text."""
        yield self.start()
        dom, err = yield self.chromium_run("--dump-dom")
        self.assertNotIn(MARKER, dom)
        self.assertIn("ERR_CERT_AUTHORITY_INVALID", err)

    @inlineCallbacks
    def test_untrust_removes_the_root(self) -> Any:
        """``txcaddy untrust`` takes the root out again: Chromium refuses the certificate once more."""
        yield self.start()
        yield self.txcaddy("trust")
        dom, _ = yield self.chromium_run("--dump-dom")
        self.assertIn(MARKER, dom)
        err = yield self.txcaddy("untrust")
        self.assertIn("uninstalled properly from NSS security databases", err)
        dom, err = yield self.chromium_run("--dump-dom")
        self.assertNotIn(MARKER, dom)
        self.assertIn("ERR_CERT_AUTHORITY_INVALID", err)
