"""Tests for txcaddy.service: listeners through Twisted's service machinery, stopping, and
what an embedding application gets (the reactor left alone unless it asks)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txcaddy import _twisted, cli, tap
from txcaddy._reactor import default_reactor
from txcaddy.reverseproxy.hosts import HostRegistry
from txcaddy.service import CaddyService, ListenerService, fromCaddyfile, fromConfig


def _static_config(*, upstream: str | None = None) -> dict[str, Any]:
    """One server on a free loopback port answering "hi" (or proxying to ``upstream``)."""
    handler: dict[str, Any] = {"handler": "static_response", "body": "hi"}
    if upstream is not None:
        handler = {"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}
    return {"apps": {"http": {"servers": {"srv0": {
        "listen": ["127.0.0.1:0"], "routes": [{"handle": [handler]}]}}}}}


class _Port:
    def __init__(self) -> None:
        self.listening = True

    def stopListening(self) -> Deferred[None]:
        self.listening = False
        return succeed(None)


class _Endpoint:
    """An endpoint that counts its listen() calls."""

    def __init__(self, error: Exception | None = None) -> None:
        self.ports: list[_Port] = []
        self.error = error

    def listen(self, factory: Any) -> Deferred[Any]:
        if self.error is not None:
            return fail(self.error)
        self.ports.append(_Port())
        return succeed(self.ports[-1])


class ListenerServiceTests(SynchronousTestCase):
    def listener(self, endpoint: _Endpoint) -> ListenerService:
        return ListenerService(endpoint, Factory(), "127.0.0.1:80")  # type: ignore[arg-type]

    def test_privileged_start_binds_and_start_does_not_bind_again(self) -> None:
        """privilegedStartService binds (twistd calls it as root); startService keeps that port."""
        endpoint = _Endpoint()
        listener = self.listener(endpoint)
        listener.privilegedStartService()
        self.assertEqual(len(endpoint.ports), 1)
        self.assertIs(listener.port, endpoint.ports[0])
        listener.startService()
        self.assertEqual(len(endpoint.ports), 1)
        self.assertTrue(listener.running)

    def test_start_alone_binds(self) -> None:
        """Started without privilegedStartService (an embedding application), it binds then."""
        endpoint = _Endpoint()
        listener = self.listener(endpoint)
        listener.startService()
        self.assertEqual(len(endpoint.ports), 1)

    def test_bind_failure_raises_at_start(self) -> None:
        """An address in use fails the start loudly instead of being only logged."""
        listener = self.listener(_Endpoint(CannotListenError("127.0.0.1", 80, OSError("in use"))))
        self.assertRaises(CannotListenError, listener.privilegedStartService)

    def test_stop_unbinds_and_a_restart_binds_again(self) -> None:
        """Stopping closes the port; starting again listens anew."""
        endpoint = _Endpoint()
        listener = self.listener(endpoint)
        listener.startService()
        self.successResultOf(listener.stopService())
        self.assertFalse(endpoint.ports[0].listening)
        self.assertIsNone(listener.port)
        self.assertFalse(listener.running)
        listener.startService()
        self.assertEqual(len(endpoint.ports), 2)

    def test_stop_without_start(self) -> None:
        """A listener that never started (a sibling failed to bind first) stops quietly."""
        listener = self.listener(_Endpoint())
        self.assertIsNone(self.successResultOf(listener.stopService()))


class CaddyServiceTests(TestCase):
    timeout = 30

    def service(self, **kwargs: Any) -> CaddyService:
        return fromConfig(_static_config(), **kwargs)

    async def test_privileged_start_binds_the_listeners(self) -> None:
        """privilegedStartService binds every listener; startService then binds nothing more."""
        service = self.service()
        service.privilegedStartService()
        try:
            (bound,) = service.boundAddresses()["srv0"]
            ports = [child.port for child in service if isinstance(child, ListenerService)]
            service.startService()
            self.assertEqual([child.port for child in service if isinstance(child, ListenerService)], ports)
            self.assertEqual(service.boundAddresses()["srv0"], [bound])
        finally:
            await service.stopService()

    async def test_stop_waits_for_what_unloading_closes(self) -> None:
        """stopService fires only after the Deferreds the unload hooks return (pools closing)."""
        service = self.service()
        closed: Deferred[None] = Deferred()
        service.context.on_unload(lambda: closed)
        service.startService()
        stopped = service.stopService()
        for _ in range(3):  # the listener's stopListening takes a reactor turn
            await _turn()
        self.assertNoResult(stopped)
        closed.callback(None)
        await stopped

    async def test_embedding_leaves_the_reactor_loop_alone(self) -> None:
        """A service built by fromCaddyfile without fast_io does not touch the reactor's loop."""
        service = fromCaddyfile('http://127.0.0.1:0 {\n\tbind 127.0.0.1\n\trespond "hi"\n}\n')
        self.assertFalse(service.fast_io)
        service.startService()
        try:
            self.assertNotIn("doIteration", vars(reactor))
            self.assertFalse(_twisted.fast_io_installed(reactor))
        finally:
            await service.stopService()

    async def test_fast_io_is_installed_while_running(self) -> None:
        """fast_io=True puts txcaddy's loop on the reactor from start until stop."""
        service = self.service(fast_io=True)
        self.assertFalse(_twisted.fast_io_installed(reactor))  # building it changes nothing
        service.startService()
        try:
            self.assertTrue(_twisted.fast_io_installed(reactor))
            self.assertIsNotNone(service.runtime.send_batch)
        finally:
            await service.stopService()
        self.assertFalse(_twisted.fast_io_installed(reactor))
        self.assertNotIn("doIteration", vars(reactor))

    def test_two_services_share_no_upstream_state(self) -> None:
        """Two embedded services proxying to one address keep separate host state."""
        first = fromConfig(_static_config(upstream="10.0.0.1:80"))
        second = fromConfig(_static_config(upstream="10.0.0.1:80"))
        hosts = first.runtime.get(HostRegistry), second.runtime.get(HostRegistry)
        self.assertIsNot(hosts[0], hosts[1])
        self.assertIsNot(hosts[0].get("10.0.0.1:80"), hosts[1].get("10.0.0.1:80"))
        self.assertIsNotNone(hosts[0].get("10.0.0.1:80"))


class ProcessOwnersTests(SynchronousTestCase):
    """``twistd caddy`` and ``txcaddy run`` own the process: they turn the fast path on."""

    def caddyfile(self) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('http://127.0.0.1:0 {\n\tbind 127.0.0.1\n\trespond "hi"\n}\n')
        return os.path.abspath(path)

    def test_twistd_plugin_asks_for_fast_io(self) -> None:
        """The service twistd caddy builds runs with fast_io (installed when it starts)."""
        options = tap.Options()
        options.parseOptions(["-c", self.caddyfile()])
        self.assertTrue(options.service.fast_io)

    def test_txcaddy_run_asks_for_fast_io(self) -> None:
        """The service txcaddy run builds runs with fast_io."""
        service = cli.run_service(argparse.Namespace(config=self.caddyfile(), adapter=None))
        self.assertTrue(service.fast_io)


class WorkersSettingTests(SynchronousTestCase):
    """``workers``: where the number comes from, and what it changes in the service."""

    def caddyfile(self, options: str = "") -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f'{{\n\tadmin off\n{options}}}\nhttp://127.0.0.1:0 {{\n\tbind 127.0.0.1\n\trespond "hi"\n}}\n')
        return os.path.abspath(path)

    def test_default_is_one_process(self) -> None:
        """Without the setting the service is one process: no pool, listeners accept."""
        service = cli.run_service(argparse.Namespace(config=self.caddyfile(), adapter=None))
        self.assertEqual((service.workers, service.supervising, service.pool), (1, False, None))
        self.assertTrue(all(child.accept for child in service._listeners.values()))

    def test_config_option_and_flags(self) -> None:
        """The Caddyfile's ``workers`` sets it; ``--workers`` (twistd and run) wins over it."""
        service = cli.run_service(argparse.Namespace(config=self.caddyfile("\tworkers 3\n"), adapter=None))
        self.assertEqual((service.workers, service.pool.count), (3, 3))
        self.assertFalse(any(child.accept for child in service._listeners.values()))
        service = cli.run_service(argparse.Namespace(config=self.caddyfile("\tworkers 3\n"), adapter=None,
                                                     workers="2"))
        self.assertEqual(service.workers, 2)
        options = tap.Options()
        options.parseOptions(["-c", self.caddyfile(), "--workers", "auto"])
        self.assertEqual(options.service.workers, len(os.sched_getaffinity(0)))
        self.assertEqual(options.service.supervising, options.service.workers > 1)

    def test_bad_flag_is_a_config_error(self) -> None:
        """``twistd caddy --workers 0`` fails before anything starts, with exit status 1."""
        options = tap.Options()
        with self.assertRaises(SystemExit) as raised:
            options.parseOptions(["-c", self.caddyfile(), "--workers", "0"])
        self.assertEqual(raised.exception.code, 1)

    def test_supervisor_holds_the_socket_without_accepting(self) -> None:
        """A supervisor binds its listeners but the reactor never reads them (workers accept)."""
        service = CaddyService({"workers": 2, "apps": {"http": {"servers": {"s": {
            "listen": ["127.0.0.1:0"], "routes": []}}}}}, reactor=default_reactor(), inherited=[])
        (child,) = service._listeners.values()
        child.privilegedStartService()
        self.addCleanup(child.stopService)
        port: Any = child.port
        self.assertNotIn(port, reactor.getReaders())
        self.assertEqual(list(service._worker_sockets(1).values()), [port.fileno()])


class _FailingPool:
    """A worker pool whose new workers never start."""

    running = True
    rolling = False
    count = 2

    def roll(self) -> Deferred[None]:
        from txcaddy.errors import ConfigError

        return fail(ConfigError("starting the workers with the new config: exited"))


class RollTests(SynchronousTestCase):
    def test_failed_roll_puts_the_supervisor_back_on_the_served_config(self) -> None:
        """When the new workers cannot start, the reload fails and the supervisor's config
        (what the admin API shows) is again the one the old workers serve."""
        def config(body: str) -> dict[str, Any]:
            return {"workers": 2, "apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [
                {"handle": [{"handler": "static_response", "body": body}]}]}}}}}

        service = CaddyService(config("old"), reactor=default_reactor(), inherited=[])
        service.pool = _FailingPool()
        results: list[bool] = []
        service.on_reload.append(results.append)
        self.failureResultOf(service.reload(config("new")))
        self.assertEqual(service.config, config("old"))
        self.assertEqual(results[-1], False)


def _turn() -> Deferred[None]:
    """A Deferred that fires on the next reactor iteration."""
    d: Deferred[None] = Deferred()
    reactor.callLater(0, d.callback, None)
    return d


class LazyImportTests(SynchronousTestCase):
    """Optional modules' heavy libraries are imported only by configs that use them."""

    def test_plain_proxy_config_imports_no_optional_library(self) -> None:
        """Building a service for a plain HTTP proxy imports neither the CEL bindings, the markdown
        and YAML libraries, OpenTelemetry, aioquic, certbot's ACME library (client or the JWS the
        acme_server handler reads), nor any of twisted.web (the admin API's server, twisted_resource's bridge
        or the client; each costs MBs of RSS in every worker)."""
        import subprocess
        import sys

        script = (
            "import sys\n"
            "from txcaddy.service import fromCaddyfile\n"
            "fromCaddyfile('{\\n\\tadmin off\\n}\\nhttp://127.0.0.1:1 {\\n\\treverse_proxy 127.0.0.1:2\\n}\\n')\n"
            "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
            "print('acme.client' in sys.modules)\n"
            "print('twisted.web.client' in sys.modules)\n"
            "print(sorted(name for name in sys.modules if name.startswith('twisted.web')))\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              cwd=root, env={**os.environ, "PYTHONPATH": root})
        self.assertEqual(done.returncode, 0, done.stderr)
        top_level, acme_client, web_client, web_modules = done.stdout.splitlines()
        for heavy in ("cel", "markdown_it", "yaml", "opentelemetry", "aioquic", "grpc", "acme", "josepy"):
            self.assertNotIn(heavy, top_level.split(), heavy)
        self.assertEqual(acme_client, "False")
        self.assertEqual(web_client, "False")
        self.assertEqual(web_modules, "[]")  # no admin API, no twisted_resource: no twisted.web at all


class LazyProtocolImportTests(SynchronousTestCase):
    """HTTP/2, ``twisted.names`` and prometheus_client are imported only by configs that need them
    (together 3 to 4 MB of RSS in every process)."""

    _LIBRARIES = ("h2", "hpack", "hyperframe", "twisted.names", "prometheus_client", "zstandard")

    def _imported_after_start(self, caddyfile: str) -> set[str]:
        """Which of ``_LIBRARIES`` a fresh interpreter imported to build, start and stop a service
        for ``caddyfile``."""
        import subprocess
        import sys

        script = (
            "import sys\n"
            "from twisted.internet import reactor\n"
            "from txcaddy.service import fromCaddyfile\n"
            f"service = fromCaddyfile({caddyfile!r}, reactor=reactor)\n"
            "service.startService()\n"
            "service.stopService()\n"
            f"print(' '.join(name for name in {self._LIBRARIES!r} if name in sys.modules))\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              cwd=root, env={**os.environ, "PYTHONPATH": root})
        self.assertEqual(done.returncode, 0, done.stderr)
        return set(done.stdout.split())

    def test_plain_proxy_imports_none(self) -> None:
        """A plain HTTP reverse proxy, with or without the admin API, imports none of them."""
        site = "http://127.0.0.1:0 {\n\treverse_proxy 127.0.0.1:2\n}\n"
        self.assertEqual(self._imported_after_start("{\n\tadmin off\n}\n" + site), set())
        self.assertEqual(self._imported_after_start("{\n\tadmin localhost:0\n}\n" + site), set())

    def test_h2c_imports_h2(self) -> None:
        """A server with h2c imports the HTTP/2 stack (but not the others)."""
        imported = self._imported_after_start(
            "{\n\tadmin off\n\tservers {\n\t\tprotocols h1 h2 h2c\n\t}\n}\n"
            "http://127.0.0.1:0 {\n\trespond ok\n}\n")
        self.assertEqual(imported, {"h2", "hpack", "hyperframe"})

    def test_h2c_upstream_imports_h2(self) -> None:
        """A reverse_proxy speaking h2c to its upstream imports the HTTP/2 stack."""
        imported = self._imported_after_start(
            "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\treverse_proxy h2c://127.0.0.1:2\n}\n")
        self.assertEqual(imported, {"h2", "hpack", "hyperframe"})

    def test_dynamic_upstreams_import_twisted_names(self) -> None:
        """``dynamic a`` imports ``twisted.names`` for its resolver."""
        imported = self._imported_after_start(
            "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\treverse_proxy {\n"
            "\t\tdynamic a app.invalid 8080\n\t}\n}\n")
        self.assertEqual(imported, {"twisted.names"})

    def test_transport_resolver_imports_twisted_names(self) -> None:
        """A transport with ``resolvers`` imports ``twisted.names``."""
        imported = self._imported_after_start(
            "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\treverse_proxy app.invalid:2 {\n"
            "\t\ttransport http {\n\t\t\tresolvers 127.0.0.1\n\t\t}\n\t}\n}\n")
        self.assertEqual(imported, {"twisted.names"})

    def test_metrics_handler_imports_prometheus_client(self) -> None:
        """The ``metrics`` handler imports prometheus_client (its registry is made at load)."""
        imported = self._imported_after_start(
            "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\tmetrics /metrics\n}\n")
        self.assertEqual(imported, {"prometheus_client"})

    def test_zstd_imports_zstandard(self) -> None:
        """``encode zstd`` imports zstandard."""
        imported = self._imported_after_start(
            "{\n\tadmin off\n}\nhttp://127.0.0.1:0 {\n\tencode zstd\n\trespond ok\n}\n")
        self.assertEqual(imported, {"zstandard"})
