"""systemd socket activation and ``sd_notify`` (``txcaddy._systemd``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
from typing import Any

import treq
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests._child import spawn_txcaddy
from txcaddy import _systemd
from txcaddy._reactor import default_reactor
from txcaddy._systemd import AdoptedEndpoint, InheritedSocket, NotifyService, match_endpoint
from txcaddy.service import CaddyService, ListenerService, QUICListenerService


def notify_socket(testcase: Any) -> tuple[socket.socket, str]:
    """A unix datagram socket in a short temporary directory, as systemd's ``NOTIFY_SOCKET``."""
    directory = tempfile.mkdtemp(prefix="txc")  # short: unix socket paths have 108 bytes
    testcase.addCleanup(shutil.rmtree, directory)
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    testcase.addCleanup(sock.close)
    sock.bind(path)
    sock.settimeout(5)  # a bounded wait: the message is sent before recv is called
    return sock, path


class NotifyTests(SynchronousTestCase):
    def test_notify_sends_the_state(self) -> None:
        """notify sends the state as one datagram to the NOTIFY_SOCKET path."""
        sock, path = notify_socket(self)
        self.assertTrue(_systemd.notify("READY=1", {"NOTIFY_SOCKET": path}))
        self.assertEqual(sock.recv(100), b"READY=1")

    def test_abstract_namespace(self) -> None:
        """A NOTIFY_SOCKET starting with @ names a socket in the abstract namespace."""
        name = f"txcaddy-test-{os.getpid()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind("\0" + name)
        sock.settimeout(5)
        self.assertTrue(_systemd.notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}))
        self.assertEqual(sock.recv(100), b"STOPPING=1")

    def test_no_manager(self) -> None:
        """Without NOTIFY_SOCKET nothing is sent; a socket that is gone is logged, not raised."""
        self.assertFalse(_systemd.notify("READY=1", {}))
        missing = os.path.join(os.path.abspath(self.mktemp()), "gone")
        self.assertFalse(_systemd.notify("READY=1", {"NOTIFY_SOCKET": missing}))
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_service_tells_ready_and_stopping(self) -> None:
        """NotifyService sends READY=1 when started and STOPPING=1 when stopped."""
        sock, path = notify_socket(self)
        service = NotifyService({"NOTIFY_SOCKET": path})
        service.startService()
        self.assertEqual(sock.recv(100), b"READY=1")
        service.stopService()
        self.assertEqual(sock.recv(100), b"STOPPING=1")
        self.assertFalse(service.running)

    def test_attach_only_under_a_manager(self) -> None:
        """attach_notifier adds the notifier as the last child only when NOTIFY_SOCKET is set."""
        service = CaddyService({})
        self.assertFalse(_systemd.attach_notifier(service, {}))
        self.assertEqual(list(service), [])
        self.assertTrue(_systemd.attach_notifier(service, {"NOTIFY_SOCKET": "/run/x"}))
        self.assertIsInstance(list(service)[-1], NotifyService)

    def test_reload_tells_reloading_then_ready(self) -> None:
        """A reload sends RELOADING=1 as it begins and READY=1 once it is over, also when the new
        config fails (the old one still serves)."""
        sock, path = notify_socket(self)
        service = CaddyService({}, reactor=default_reactor())
        _systemd.attach_notifier(service, {"NOTIFY_SOCKET": path})
        self.successResultOf(service.reload({}))
        self.assertEqual((sock.recv(100), sock.recv(100)), (b"RELOADING=1", b"READY=1"))
        self.failureResultOf(service.reload({"apps": {"nope": {}}}))
        self.assertEqual((sock.recv(100), sock.recv(100)), (b"RELOADING=1", b"READY=1"))


IPV4_ANY = InheritedSocket(3, socket.AF_INET, ("0.0.0.0", 80))
IPV6_ANY = InheritedSocket(4, socket.AF_INET6, ("::", 443, 0, 0))
LOOPBACK = InheritedSocket(5, socket.AF_INET, ("127.0.0.1", 8080))
IPV6_LOOPBACK = InheritedSocket(6, socket.AF_INET6, ("::1", 8443, 0, 0))
UNIX = InheritedSocket(7, socket.AF_UNIX, "/run/caddy.sock")
ALL = [IPV4_ANY, IPV6_ANY, LOOPBACK, IPV6_LOOPBACK, UNIX]


class SocketActivationTests(SynchronousTestCase):
    def test_listen_fds(self) -> None:
        """LISTEN_FDS counts fds from 3, only when LISTEN_PID is this process."""
        self.assertEqual(_systemd.listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, pid=42), [3, 4])
        self.assertEqual(_systemd.listen_fds({"LISTEN_PID": "41", "LISTEN_FDS": "2"}, pid=42), [])
        self.assertEqual(_systemd.listen_fds({"LISTEN_FDS": "2"}, pid=42), [])
        self.assertEqual(_systemd.listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "x"}, pid=42), [])

    def test_twisted_parses_the_environment(self) -> None:
        """Twisted's parse of LISTEN_* (which empties them from os.environ) is where txcaddy reads them."""
        from twisted.internet.endpoints import _SystemdParser

        self.assertEqual(_systemd.twisted_listen_fds(), list(_SystemdParser._sddaemon.inheritedDescriptors()))
        self.assertEqual(_systemd.twisted_listen_fds(), [])  # the test runner got none

    def test_inherited_sockets_keep_listeners_only(self) -> None:
        """inherited_sockets keeps the sockets among the fds, close-on-exec and non-blocking."""
        stream = socket.socket()
        self.addCleanup(stream.close)
        stream.bind(("127.0.0.1", 0))
        stream.listen()
        stream.set_inheritable(True)
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        found = _systemd.inherited_sockets([stream.fileno(), read])
        self.assertEqual([s.fd for s in found], [stream.fileno()])
        self.assertFalse(stream.get_inheritable())
        self.assertFalse(os.get_blocking(stream.fileno()))

    def test_describe_reads_the_bound_address(self) -> None:
        """describe gives a listening socket's family and address, and leaves the fd open."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        found = _systemd.describe(sock.fileno())
        self.assertEqual(found, InheritedSocket(sock.fileno(), socket.AF_INET, sock.getsockname()))
        self.assertEqual(sock.getsockname()[0], "127.0.0.1")  # still open

    def test_describe_datagram_sockets(self) -> None:
        """A datagram socket is described as one (HTTP/3 adopts it); a pipe is not a socket."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        found = _systemd.describe(sock.fileno())
        assert found is not None
        self.assertEqual((found.type, found.address), (socket.SOCK_DGRAM, sock.getsockname()))
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        self.assertIsNone(_systemd.describe(read))

    def test_datagram_sockets_match_only_http3(self) -> None:
        """A UDP socket matches HTTP/3's port and interface, never a TCP listener (and vice versa)."""
        udp = InheritedSocket(8, socket.AF_INET6, ("::", 443, 0, 0), socket.SOCK_DGRAM)
        self.assertIs(_systemd.match_datagram(443, "", [*ALL, udp]), udp)
        self.assertIsNone(_systemd.match_datagram(443, "127.0.0.1", [*ALL, udp]))
        self.assertIsNone(_systemd.match_datagram(443, "", ALL))
        self.assertIs(match_endpoint("tcp:443", [udp, *ALL]), IPV6_ANY)

    def test_http3_adopts_the_udp_socket(self) -> None:
        """QUICListenerService adopts its inherited UDP socket instead of binding one."""
        reactor = MemoryReactor()
        udp = InheritedSocket(8, socket.AF_INET6, ("::", 443, 0, 0), socket.SOCK_DGRAM)
        listener: Any = DatagramProtocol()
        changes: list[None] = []
        service = QUICListenerService(reactor, listener, 443, "", ":443", lambda: changes.append(None), 1.0, udp)
        service.privilegedStartService()
        self.assertEqual(reactor.adoptedPorts, [(8, socket.AF_INET6, listener, 8192)])
        self.assertFalse(getattr(reactor, "udpServers", []))  # nothing bound
        self.assertEqual(len(changes), 1)

    def test_wildcard_listener_matches_any_address(self) -> None:
        """':80' adopts a socket bound to 0.0.0.0:80, ':443' one bound to [::]:443."""
        self.assertIs(match_endpoint("tcp:80", ALL), IPV4_ANY)
        self.assertIs(match_endpoint("tcp:443", ALL), IPV6_ANY)

    def test_host_listener_matches_that_address(self) -> None:
        """A listener on a host adopts only a socket bound to that address (IPv6 compared as addresses)."""
        self.assertIs(match_endpoint("tcp:8080:interface=127.0.0.1", ALL), LOOPBACK)
        self.assertIs(match_endpoint("tcp6:8443:interface=0\\:0\\:\\:1", ALL), IPV6_LOOPBACK)
        self.assertIsNone(match_endpoint("tcp:80:interface=127.0.0.1", ALL))
        self.assertIsNone(match_endpoint("tcp:8080", ALL))  # wildcard wants a wildcard socket
        self.assertIsNone(match_endpoint("tcp:8080:interface=localhost", ALL))

    def test_unix_and_other_listeners(self) -> None:
        """A unix listener adopts the socket at its path; port 0 and other ports never match."""
        self.assertIs(match_endpoint("unix:/run/caddy.sock", ALL), UNIX)
        self.assertIsNone(match_endpoint("unix:/run/other.sock", ALL))
        self.assertIsNone(match_endpoint("tcp:0", ALL))
        self.assertIsNone(match_endpoint("tcp:81", ALL))

    def test_adopted_endpoint_listens_again(self) -> None:
        """AdoptedEndpoint adopts the fd on each listen (a service restarted adopts it again)."""
        reactor = MemoryReactor()
        endpoint = AdoptedEndpoint(reactor, IPV4_ANY)
        factory = Factory()
        ports: list[Any] = []
        endpoint.listen(factory).addCallback(ports.append)
        endpoint.listen(factory).addCallback(ports.append)
        self.assertEqual(reactor.adoptedPorts, [(3, socket.AF_INET, factory)] * 2)
        self.assertEqual(len(ports), 2)

    def test_service_adopts_matching_listeners(self) -> None:
        """CaddyService listens through an inherited socket where one is bound, else binds."""
        config = {"apps": {"http": {"servers": {"s": {"listen": [":80", ":8081"], "routes": []}}}}}
        service = CaddyService(config, inherited=[IPV4_ANY])
        endpoints = {child.address: child.endpoint for child in service if isinstance(child, ListenerService)}
        self.assertIsInstance(endpoints[":80"], AdoptedEndpoint)
        self.assertNotIsInstance(endpoints[":8081"], AdoptedEndpoint)


class _Datagrams(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.waiting: dict[bytes, Deferred[None]] = {}

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)
        waiter = self.waiting.pop(datagram, None)
        if waiter is not None:
            waiter.callback(None)

    def wait_for(self, message: bytes) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        if message in self.received:
            waiter.callback(None)
        else:
            self.waiting[message] = waiter
        return waiter.addTimeout(30, default_reactor())


class ActivatedProcessTests(TestCase):
    @inlineCallbacks
    def test_run_adopts_the_inherited_socket_and_notifies(self) -> Any:
        """txcaddy run with LISTEN_FDS=1 serves on the inherited socket; it tells READY=1, then STOPPING=1."""
        reactor: Any = default_reactor()
        directory = tempfile.mkdtemp(prefix="txc")
        self.addCleanup(shutil.rmtree, directory)
        datagrams = _Datagrams()
        port = reactor.listenUNIXDatagram(os.path.join(directory, "notify"), datagrams)
        self.addCleanup(port.stopListening)

        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        number = listening.getsockname()[1]
        config = os.path.join(directory, "caddy.json")
        with open(config, "w") as f:
            json.dump({"apps": {"http": {"servers": {"s": {
                "listen": [f"127.0.0.1:{number}"],
                "routes": [{"handle": [{"handler": "static_response", "body": "adopted"}]}],
            }}}}}, f)

        child, process = spawn_txcaddy(
            self, ["run", "--config", config],
            env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web", "NOTIFY_SOCKET": os.path.join(directory, "notify")},
            child_fds={3: listening.fileno()}, shell_prefix="LISTEN_PID=$$; export LISTEN_PID;",
        )
        yield datagrams.wait_for(b"READY=1")
        response = yield treq.get(f"http://127.0.0.1:{number}/", persistent=False)
        body = yield treq.content(response)
        self.assertEqual(body, b"adopted")
        self.assertIn(f"tcp:{number}:interface=127.0.0.1 adopts inherited socket fd 3", child.text())

        os.kill(process.pid, signal.SIGTERM)
        yield datagrams.wait_for(b"STOPPING=1")
        status = yield child.ended
        self.assertEqual(status, 0)
        self.assertEqual(datagrams.received, [b"READY=1", b"STOPPING=1"])
