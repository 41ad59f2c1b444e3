"""The worker's end of the control channel: what it sends, and what it does when told."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txcaddy._control import encode_message
from txcaddy._reactor import default_reactor
from txcaddy._worker import WorkerControl
from txcaddy.logs._values import Duration
from txcaddy.reverseproxy.hosts import HostRegistry
from txcaddy.service import CaddyService


class _Reactor(Clock):
    stopped = False

    def stop(self) -> None:
        self.stopped = True


class WorkerControlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.control = WorkerControl(self.reactor)
        self.transport = StringTransport()
        self.control.makeConnection(self.transport)

    def sent(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.transport.value().splitlines()]

    def test_log_entries_go_to_the_supervisor_with_their_types(self) -> None:
        """A log entry is one ``log`` message; its fields keep their tags."""
        self.control.send_log("http.log.access", "info", "handled request", [("duration", Duration(3))], 5.0)
        (message,) = self.sent()
        self.assertEqual(message, {"type": "log", "logger": "http.log.access", "level": "info",
                                   "message": "handled request", "fields": [["duration", {"$d": 3}]], "time": 5.0})

    def test_twisted_events_go_as_text_with_tracebacks(self) -> None:
        """A ``twisted.logger`` event is sent formatted, a failure's traceback included."""
        try:
            raise ValueError("boom")
        except ValueError:
            failure = Failure()
        self.control.observe({"log_format": "handler {name} failed", "name": "x", "log_namespace": "txcaddy.http",
                              "log_level": LogLevel.error, "log_failure": failure})
        (message,) = self.sent()
        self.assertEqual((message["type"], message["namespace"], message["level"]), ("event", "txcaddy.http", "error"))
        self.assertTrue(message["text"].startswith("handler x failed\n"))
        self.assertIn("ValueError: boom", message["text"])

    def test_health_marks_apply_to_the_registry_host(self) -> None:
        """``health`` sets the active mark of the host with that address; others are ignored."""
        config = {"apps": {"http": {"servers": {"s": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [
            {"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.0.1:80"}]}]}]}}}}}
        self.control.service = CaddyService(config, reactor=default_reactor(), inherited=[])
        host = self.control.service.runtime.get(HostRegistry).get("10.0.0.1:80")
        assert host is not None
        self.control.dataReceived(encode_message("health", address="10.0.0.1:80", healthy=False))
        self.assertTrue(host.unhealthy)
        self.control.dataReceived(encode_message("health", address="10.0.0.9:80", healthy=False))
        self.control.dataReceived(encode_message("health", address="10.0.0.1:80", healthy=True))
        self.assertFalse(host.unhealthy)

    def test_supervisor_gone_stops_the_worker(self) -> None:
        """When the control pipe closes (the supervisor died) the worker stops its reactor."""
        self.control.connectionLost(Failure(ConnectionError("gone")))
        self.reactor.advance(0)
        self.assertTrue(self.reactor.stopped)

    def test_bad_config_exits_with_status_one(self) -> None:
        """A config the worker cannot serve is reported as an error event and ends it with 1."""
        self.control.dataReceived(encode_message("config", config={"apps": {"nope": {}}}, listeners={}, marks={},
                                                 slot=1))
        self.reactor.advance(0)
        self.assertEqual((self.control.exit_code, self.reactor.stopped), (1, True))
        (message,) = self.sent()
        self.assertEqual((message["type"], message["level"]), ("event", "error"))
        self.assertIn("module not registered: nope", message["text"])
