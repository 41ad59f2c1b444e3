"""Active health checks with a Clock and a fake transport: rounds, rules, thresholds, stop."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from tests.reverseproxy.test_handler import FakeTransport, HandlerTestCase
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.reverseproxy import handler as handler_module
from txcaddy.reverseproxy.health import (
    ActiveHealthChecker,
    ActiveHealthConfig,
    PassiveHealth,
    ProbeTimeout,
    load_active_health,
)
from txcaddy.reverseproxy.hosts import Host, Upstream
from txcaddy.reverseproxy.transport import DialError
from txcaddy.testing import make_request

SECOND = 1_000_000_000


def _observer(events: list[dict[str, Any]]) -> Any:
    """A log observer collecting events (any callable taking an event is one)."""
    return events.append


def _active(config: dict[str, Any]) -> ActiveHealthConfig:
    active = ActiveHealthConfig.from_config(config)
    assert active is not None
    return active


class CheckerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = FakeTransport()
        self.events: list[dict[str, Any]] = []

    def checker(self, config: dict[str, Any], *dials: str) -> tuple[ActiveHealthChecker, list[Upstream]]:
        active = _active(config)
        upstreams = [Upstream(dial, Host(dial)) for dial in dials or ("10.0.0.1:80",)]
        checker = ActiveHealthChecker(active, upstreams, self.transport, self.clock,
                                      Logger(observer=_observer(self.events)))
        checker.startService()
        self.addCleanup(self.stop, checker)
        return checker, upstreams

    def stop(self, checker: ActiveHealthChecker) -> None:
        if checker.running:
            checker.stopService()

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.events]

    @property
    def exchanges(self) -> list[Any]:
        return self.transport.exchanges


class RoundTests(CheckerTestCase):
    def test_first_round_at_start_then_every_interval(self) -> None:
        """The first round probes every upstream at start, the next ones every interval."""
        self.checker({"uri": "/health", "interval": 10 * SECOND}, "10.0.0.1:80", "10.0.0.2:81")
        self.assertEqual([e.dial for e in self.exchanges], ["10.0.0.1:80", "10.0.0.2:81"])
        for e in self.exchanges:
            e.respond(200)
        self.clock.advance(9.9)
        self.assertEqual(len(self.exchanges), 2)
        self.clock.advance(0.1)
        self.assertEqual(len(self.exchanges), 4)

    def test_default_interval_is_30s(self) -> None:
        """Without an interval, rounds come every 30 seconds."""
        self.checker({"uri": "/health"})
        self.exchanges[0].respond(200)
        self.clock.advance(29.9)
        self.assertEqual(len(self.exchanges), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.exchanges), 2)

    def test_request_line_host_and_headers(self) -> None:
        """A probe GETs the uri less its fragment, with the dial as Host, Go's User-Agent,
        then the configured headers."""
        self.checker({"uri": "/health?full=1#frag", "headers": {"X-Probe": ["a", "b"]}}, "example.com:8080")
        (exchange,) = self.exchanges
        self.assertEqual((exchange.method, exchange.target, exchange.body_length), (b"GET", b"/health?full=1", None))
        self.assertEqual(exchange.headers, [
            (b"Host", b"example.com:8080"), (b"User-Agent", b"Go-http-client/1.1"),
            (b"X-Probe", b"a"), (b"X-Probe", b"b"),
        ])

    def test_health_headers_override_host_and_user_agent(self) -> None:
        """health_headers may replace the probe's Host and User-Agent."""
        self.checker({"uri": "/", "headers": {"Host": ["app.internal"], "User-Agent": ["probe/1"]}})
        self.assertEqual(self.exchanges[0].headers, [(b"Host", b"app.internal"), (b"User-Agent", b"probe/1")])

    def test_health_port_replaces_the_dial_port_and_the_host_port(self) -> None:
        """health_port replaces the port in both the address dialled and the Host."""
        self.checker({"uri": "/h", "port": 9090}, "10.0.0.1:80", "[::1]:80")
        self.assertEqual([(e.address.host, e.address.port) for e in self.exchanges],
                         [("10.0.0.1", 9090), ("::1", 9090)])
        self.assertEqual([e.headers[0][1] for e in self.exchanges], [b"10.0.0.1:9090", b"[::1]:9090"])

    def test_port_alone_enables_checks_on_slash(self) -> None:
        """A health port alone enables checks of "/"."""
        self.checker({"port": 9090})
        self.assertEqual(self.exchanges[0].target, b"/")

    def test_unix_upstream_uses_localhost(self) -> None:
        """A unix socket upstream is probed over its socket with Host "localhost"."""
        self.checker({"uri": "/h"}, "unix//run/app.sock")
        (exchange,) = self.exchanges
        self.assertEqual((exchange.address.network, exchange.address.path), ("unix", "/run/app.sock"))
        self.assertEqual(exchange.headers[0], (b"Host", b"localhost"))

    def test_unix_upstream_with_health_port_is_skipped(self) -> None:
        """A unix socket upstream with a health port is skipped with a logged error."""
        self.checker({"uri": "/h", "port": 81}, "unix//run/app.sock", "10.0.0.1:80")
        self.assertEqual([e.dial for e in self.exchanges], ["10.0.0.1:81"])
        self.assertTrue(any("unix socket" in m for m in self.messages()))

    def test_network_prefix_is_dropped(self) -> None:
        """A dial's network prefix is dropped from the probe's address."""
        self.checker({"uri": "/h"}, "tcp/10.0.0.3:80")
        self.assertEqual(self.exchanges[0].dial, "10.0.0.3:80")

    def test_request_placeholders_skip_the_upstream_with_an_error(self) -> None:
        """A dial with request placeholders is not probed, logs an error and stays healthy."""
        _, (upstream, _other) = self.checker({"uri": "/h"}, "{http.request.header.X-Up}:80", "10.0.0.1:80")
        self.assertEqual([e.dial for e in self.exchanges], ["10.0.0.1:80"])
        self.assertTrue(any("invalid use of placeholders" in m for m in self.messages()))
        self.assertFalse(upstream.host.unhealthy)

    def test_global_placeholders_are_filled_in(self) -> None:
        """Global placeholders in a dial are filled in; one that fills in empty is skipped."""
        import os

        os.environ["TXCADDY_HEALTH_TEST_HOST"] = "10.9.9.9"
        self.addCleanup(os.environ.pop, "TXCADDY_HEALTH_TEST_HOST")
        self.checker({"uri": "/h"}, "{env.TXCADDY_HEALTH_TEST_HOST}:80", "{env.TXCADDY_HEALTH_UNSET}:80")
        self.assertEqual([e.dial for e in self.exchanges], ["10.9.9.9:80"])  # an empty value is an error

    def test_port_range_is_skipped(self) -> None:
        """A dial with a port range is not probed and logs "multiple addresses"."""
        self.checker({"uri": "/h"}, "10.0.0.1:80-81")
        self.assertEqual(self.exchanges, [])
        self.assertTrue(any("multiple addresses" in m for m in self.messages()))

    def test_one_probe_per_address(self) -> None:
        """Upstreams sharing an address are probed once per round."""
        active = _active({"uri": "/"})
        host = Host("10.0.0.1:80")
        checker = ActiveHealthChecker(active, [Upstream("10.0.0.1:80", host), Upstream("10.0.0.1:80", host)],
                                      self.transport, self.clock)
        checker.startService()
        self.addCleanup(checker.stopService)
        self.assertEqual(len(self.exchanges), 1)

    def test_a_running_probe_is_not_started_twice(self) -> None:
        """A round starts no second probe of a host whose probe is still running."""
        self.checker({"uri": "/", "interval": 1 * SECOND, "timeout": 5 * SECOND})
        self.clock.advance(1)
        self.assertEqual(len(self.exchanges), 1)
        self.exchanges[0].respond(200)
        self.clock.advance(1)
        self.assertEqual(len(self.exchanges), 2)

    def test_next_round_fires_when_every_host_has_a_verdict(self) -> None:
        """next_round fires once every host of the round has its verdict."""
        checker, (a, b) = self.checker({"uri": "/", "interval": 1 * SECOND}, "10.0.0.1:80", "10.0.0.2:80")
        for e in self.exchanges:
            e.respond(200)
        done: list[Any] = []
        checker.next_round().addCallback(done.append)
        self.clock.advance(1)
        self.exchanges[2].respond(500)
        self.assertEqual(done, [])
        self.exchanges[3].fail(DialError("refused"))
        self.assertEqual(done, [None])
        self.assertEqual((a.host.unhealthy, b.host.unhealthy), (True, True))


class RuleTests(CheckerTestCase):
    def verdict(self, config: dict[str, Any], status: int, body: bytes = b"") -> bool:
        _, (upstream,) = self.checker(dict({"uri": "/"}, **config))
        self.exchanges[-1].respond(status, body=body)
        return not upstream.host.unhealthy

    def test_default_status_range_is_200_to_399(self) -> None:
        """Without expect_status, statuses 200 to 399 are healthy."""
        for status, healthy in [(200, True), (204, True), (302, True), (399, True),
                                (199, False), (400, False), (404, False), (500, False)]:
            self.assertEqual(self.verdict({}, status), healthy, status)

    def test_expect_status_exact_and_class(self) -> None:
        """expect_status is an exact status, or a single digit for a whole class."""
        self.assertTrue(self.verdict({"expect_status": 204}, 204))
        self.assertFalse(self.verdict({"expect_status": 200}, 204))
        self.assertTrue(self.verdict({"expect_status": 2}, 299))
        self.assertFalse(self.verdict({"expect_status": 2}, 301))
        self.assertTrue(self.verdict({"expect_status": 4}, 418))  # whatever the class says

    def test_expect_body_is_a_go_regexp_searched_anywhere(self) -> None:
        """expect_body is a Go regexp searched anywhere in the body, $ only at its very end."""
        self.assertTrue(self.verdict({"expect_body": r"status: \w+ok"}, 200, b'{"status: allok"}'))
        self.assertFalse(self.verdict({"expect_body": "^ok$"}, 200, b"ok\n"))  # Go's $ is the very end
        self.assertTrue(self.verdict({"expect_body": "^ok$"}, 200, b"ok"))

    def test_expect_body_needs_the_status_too(self) -> None:
        """A matching body does not make a failing status healthy."""
        self.assertFalse(self.verdict({"expect_body": "ok"}, 500, b"ok"))

    def test_max_size_limits_what_the_regexp_sees(self) -> None:
        """expect_body sees only max_size bytes; the rest is not read."""
        self.assertFalse(self.verdict({"expect_body": "ready", "max_size": 5}, 200, b"0123456789ready"))
        self.assertIsInstance(self.exchanges[-1].aborted, Exception)  # the rest is never read
        self.assertTrue(self.verdict({"expect_body": "ready", "max_size": 15}, 200, b"0123456789ready"))

    def test_a_body_cut_off_fails_expect_body(self) -> None:
        """A body cut off before its end fails expect_body and logs the read error."""
        from twisted.python.failure import Failure

        from txcaddy.reverseproxy.transport import ResponseHead, UpstreamConnectionLost

        _, (upstream,) = self.checker({"uri": "/", "expect_body": "ok"})
        exchange = self.exchanges[0]
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 200, b"OK", []))
        exchange.consumer.body_data(b"ok")
        exchange.consumer.body_finished(Failure(UpstreamConnectionLost("reset")))
        self.assertTrue(upstream.host.unhealthy)
        self.assertTrue(any("failed to read response body" in m for m in self.messages()))

    def test_connection_failure_is_unhealthy(self) -> None:
        """A failed dial marks the host unhealthy and logs the failure."""
        _, (upstream,) = self.checker({"uri": "/"})
        self.exchanges[0].fail(DialError("connection refused"))
        self.assertTrue(upstream.host.unhealthy)
        self.assertTrue(any("HTTP request failed" in m and "refused" in m for m in self.messages()))


class TimeoutTests(CheckerTestCase):
    def test_no_head_within_the_timeout(self) -> None:
        """A probe with no response head within the timeout is aborted and fails."""
        _, (upstream,) = self.checker({"uri": "/", "timeout": 2 * SECOND})
        exchange = self.exchanges[0]
        self.clock.advance(1.9)
        self.assertIsNone(exchange.aborted)
        self.clock.advance(0.1)
        self.assertIsInstance(exchange.aborted, ProbeTimeout)
        self.assertTrue(upstream.host.unhealthy)

    def test_default_timeout_is_5s(self) -> None:
        """Without a timeout, a probe fails after 5 seconds."""
        _, (upstream,) = self.checker({"uri": "/"})
        self.clock.advance(4.9)
        self.assertFalse(upstream.host.unhealthy)
        self.clock.advance(0.1)
        self.assertTrue(upstream.host.unhealthy)

    def test_timeout_covers_the_body_when_it_is_needed(self) -> None:
        """With expect_body, a body not finished within the timeout fails the probe."""
        from txcaddy.reverseproxy.transport import ResponseHead

        _, (upstream,) = self.checker({"uri": "/", "timeout": 2 * SECOND, "expect_body": "ok"})
        exchange = self.exchanges[0]
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"100")]))
        exchange.consumer.body_data(b"ok")  # matches, but the body never ends
        self.clock.advance(2)
        self.assertIsInstance(exchange.aborted, ProbeTimeout)
        self.assertTrue(upstream.host.unhealthy)

    def test_a_slow_body_does_not_matter_without_expect_body(self) -> None:
        """Without expect_body, a slow body is given up on but the verdict stays healthy."""
        from txcaddy.reverseproxy.transport import ResponseHead

        _, (upstream,) = self.checker({"uri": "/", "timeout": 2 * SECOND})
        exchange = self.exchanges[0]
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"100")]))
        self.clock.advance(2)
        self.assertIsInstance(exchange.aborted, ProbeTimeout)  # the drain gives up
        self.assertFalse(upstream.host.unhealthy)

    def test_the_timer_is_cancelled_after_the_response(self) -> None:
        """A response cancels the probe's timeout, leaving only the next round's timer."""
        self.checker({"uri": "/", "interval": 60 * SECOND})
        self.exchanges[0].respond(200)
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [60.0])


class TransitionTests(CheckerTestCase):
    def round(self, *statuses: int) -> None:
        for exchange, status in zip(self.exchanges[-len(statuses):], statuses, strict=True):
            exchange.respond(status)
        self.clock.advance(1)

    def test_upstreams_start_healthy_one_failure_downs_one_success_ups(self) -> None:
        """Hosts start healthy; by default one failure downs and one success ups, both logged."""
        _, (upstream,) = self.checker({"uri": "/", "interval": 1 * SECOND})
        self.assertFalse(upstream.host.unhealthy)
        self.round(500)
        self.assertTrue(upstream.host.unhealthy)
        self.round(200)
        self.assertFalse(upstream.host.unhealthy)
        messages = self.messages()
        self.assertTrue(any(m == "host is down: 10.0.0.1:80" for m in messages), messages)
        self.assertTrue(any(m == "host is up: 10.0.0.1:80" for m in messages), messages)

    def test_fails_and_passes_thresholds_count_in_a_row(self) -> None:
        """fails and passes count consecutive results; a change of result starts over."""
        _, (upstream,) = self.checker({"uri": "/", "interval": 1 * SECOND, "fails": 3, "passes": 2})
        for status in (500, 500, 200, 500, 500):  # a success in between starts over
            self.round(status)
            self.assertFalse(upstream.host.unhealthy, status)
        self.round(500)
        self.assertTrue(upstream.host.unhealthy)
        self.round(200)
        self.assertTrue(upstream.host.unhealthy)
        self.round(500)
        self.round(200)
        self.assertTrue(upstream.host.unhealthy)
        self.round(200)
        self.assertFalse(upstream.host.unhealthy)

    def test_transitions_are_logged_once(self) -> None:
        """A host going down is logged once; each failing probe logs its reason."""
        self.checker({"uri": "/", "interval": 1 * SECOND})
        self.round(500)
        self.round(500)
        self.round(500)
        self.assertEqual(sum(m.startswith("host is down") for m in self.messages()), 1)
        self.assertEqual(sum("status code out of tolerances 500" in m for m in self.messages()), 3)


class StopTests(CheckerTestCase):
    def test_stop_cancels_the_probe_and_the_timers(self) -> None:
        """Stopping aborts the running probe and timers, leaving the host's state unjudged."""
        checker, (upstream,) = self.checker({"uri": "/", "interval": 1 * SECOND})
        exchange = self.exchanges[0]
        waiter = checker.next_round()
        waiter.addErrback(lambda f: None)
        checker.stopService()
        self.assertIsNotNone(exchange.aborted)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(len(self.exchanges), 1)
        self.assertFalse(upstream.host.unhealthy)  # a cancelled probe is no verdict

    def test_the_flag_is_cleared_when_the_last_checker_of_a_host_stops(self) -> None:
        """A host's unhealthy flag survives a reload and clears when its last checker stops."""
        active = _active({"uri": "/"})
        host = Host("10.0.0.1:80")
        old = ActiveHealthChecker(active, [Upstream(host.address, host)], self.transport, self.clock)
        old.startService()
        self.exchanges[0].respond(503)
        self.assertTrue(host.unhealthy)
        # a reload: the new config's checker starts before the old one stops
        new = ActiveHealthChecker(active, [Upstream(host.address, host)], self.transport, self.clock)
        new.startService()
        old.stopService()
        self.assertTrue(host.unhealthy)  # the state survives the reload
        new.stopService()
        self.assertFalse(host.unhealthy)

    def test_hosts_of_two_services_are_judged_apart(self) -> None:
        """Checkers of one address in two services (two registries) keep separate verdicts."""
        active = _active({"uri": "/", "fails": 1})
        mine, theirs = Host("10.0.0.1:80"), Host("10.0.0.1:80")
        first = ActiveHealthChecker(active, [Upstream(mine.address, mine)], self.transport, self.clock)
        second = ActiveHealthChecker(active, [Upstream(theirs.address, theirs)], self.transport, self.clock)
        first.startService()
        second.startService()
        self.exchanges[0].respond(503)
        self.exchanges[1].respond(200)
        self.assertTrue(mine.unhealthy)
        self.assertFalse(theirs.unhealthy)
        first.stopService()
        self.assertIsNone(mine.active_checks)  # nothing of the stopped service's checks is kept
        self.assertIsNotNone(theirs.active_checks)
        second.stopService()


class ConfigTests(SynchronousTestCase):
    def test_off_without_uri_path_or_port(self) -> None:
        """Active checks are off without uri, path or port."""
        self.assertIsNone(ActiveHealthConfig.from_config({"interval": SECOND, "expect_status": 200}))

    def test_targets(self) -> None:
        """The probe target is the uri, escaped and given a leading slash; path is only a path."""
        def target(**config: Any) -> bytes:
            active = ActiveHealthConfig.from_config(config)
            assert active is not None
            return active.target

        self.assertEqual(target(uri="/health?x=1&y=%20"), b"/health?x=1&y=%20")
        self.assertEqual(target(uri="health"), b"/health")
        self.assertEqual(target(uri="/a b/%41"), b"/a%20b/A")
        self.assertEqual(target(uri="?q"), b"/?q")
        self.assertEqual(target(path="/a?b"), b"/a%3Fb")  # a path is only a path
        self.assertEqual(target(path="/old", uri="/new"), b"/new")

    def test_errors(self) -> None:
        """Unsupported and invalid active check options fail with errors naming them."""
        for config, text in [
            ({"uri": "/", "method": "HEAD"}, "Caddy 2.9"),
            ({"uri": "/", "follow_redirects": True}, "Caddy 2.8"),
            ({"uri": "/", "bogus": 1}, "unknown field"),
            ({"uri": "/", "expect_body": "(?<x"}, "expect_body"),
            ({"uri": "/%zz"}, "invalid URL escape"),
            ({"uri": "/", "headers": {"X": ["a\r\nb"]}}, "invalid header value"),
            ({"uri": "/", "headers": {"X": "a"}}, "list of strings"),
            ({"uri": "/", "interval": "-1s"}, "negative"),
            ({"port": 70000}, "not a port"),
            ({"uri": "/", "passes": "2"}, "integer"),
        ]:
            with self.assertRaises(ConfigError, msg=str(config)) as caught:
                ActiveHealthConfig.from_config(config)
            self.assertIn(text, str(caught.exception))

    def test_thresholds_default_to_one(self) -> None:
        """passes and fails under 1 become 1."""
        active = ActiveHealthConfig.from_config({"uri": "/", "passes": 0, "fails": -3})
        assert active is not None
        self.assertEqual((active.passes, active.fails), (1, 1))

    def test_load_warns_for_path_and_for_nothing_to_check(self) -> None:
        """Loading warns about nothing to check and the deprecated path, registering the checker."""
        events: list[dict[str, Any]] = []
        context = LoadContext(reactor=Clock(), log=Logger(observer=_observer(events)))
        self.assertIsNone(load_active_health({"interval": SECOND}, [], FakeTransport(), Clock(), context))
        checker = load_active_health({"path": "/old"}, [], FakeTransport(), Clock(), context)
        self.assertEqual(context.services, [checker])
        from twisted.logger import formatEvent

        texts = [formatEvent(e) for e in events]
        self.assertIn("none is set", texts[0])
        self.assertIn("'path' option is deprecated", texts[1])


class HandlerIntegrationTests(HandlerTestCase):
    """The handler's hook: its checker probes through its transport and selection obeys it."""

    def test_unhealthy_upstreams_are_not_selected(self) -> None:
        """Upstreams failing active checks are not selected; with all down the handler gives 503."""
        handler = self.load({
            "upstreams": [{"dial": "10.1.0.1:80"}, {"dial": "10.1.0.2:80"}],
            "health_checks": {"active": {"uri": "/health", "interval": SECOND}},
        })
        self.assertIs(handler.passive, None)
        (checker,) = self.context.services
        checker.startService()
        self.addCleanup(checker.stopService)
        first, second = self.transport.exchanges
        self.assertEqual((first.target, second.target), (b"/health", b"/health"))
        first.respond(500)
        second.respond(200)
        down = self.hosts.get("10.1.0.1:80")
        self.assertTrue(down is not None and down.unhealthy)
        for _ in range(2):
            self.serve(handler, make_request())
        self.assertEqual([e.dial for e in self.transport.exchanges[2:]], ["10.1.0.2:80", "10.1.0.2:80"])
        for e in self.transport.exchanges[2:]:
            e.respond(200)
        self.clock.advance(1)
        for e in self.transport.exchanges[4:]:
            e.respond(500)
        response, outcome = self.serve(handler, make_request())
        self.assertEqual(outcome[0].value.status, 503)  # every upstream is down

    def test_passive_health_is_still_importable_from_the_handler(self) -> None:
        """PassiveHealth is still importable from the handler module."""
        self.assertIs(handler_module.PassiveHealth, PassiveHealth)


class PassiveWarningTests(SynchronousTestCase):
    def warnings(self, config: dict[str, Any]) -> list[str]:
        from twisted.logger import formatEvent

        events: list[dict[str, Any]] = []
        PassiveHealth(config, Clock(), Logger(observer=_observer(events)))
        return [formatEvent(e) for e in events]

    def test_the_262_quirk_is_named(self) -> None:
        """unhealthy_request_count warns about Caddy 2.6.2's quirk; other options do not."""
        (text,) = self.warnings({"unhealthy_request_count": 3})
        self.assertIn("Caddy 2.6.2 counts every upstream as down", text)
        self.assertEqual(self.warnings({"fail_duration": SECOND}), [])
        self.assertEqual(self.warnings({"max_fails": 2}), [])


class RobustnessTests(CheckerTestCase):
    def test_an_error_probing_one_upstream_keeps_the_checker_going(self) -> None:
        """A transport raising for one upstream fails that probe; the checker goes on."""
        calls: list[Any] = []
        original = self.transport.request

        def request(address: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(address)
            if address.host == "10.0.0.1":
                raise RuntimeError("bug")
            return original(address, *args, **kwargs)

        self.transport.request = request  # type: ignore[method-assign]
        _, (bad, good) = self.checker({"uri": "/", "interval": SECOND}, "10.0.0.1:80", "10.0.0.2:80")
        self.assertTrue(bad.host.unhealthy)  # a transport that refuses the request fails the probe
        self.exchanges[0].respond(200)
        self.clock.advance(1)
        self.assertEqual(len(calls), 4)
        self.assertFalse(good.host.unhealthy)


class MarkWatcherTests(CheckerTestCase):
    def test_registry_watchers_hear_each_flip_once(self) -> None:
        """Each change of a registry host's active mark is told to the registry's watchers
        (a supervisor pushes it to its workers); a repeated verdict is not."""
        from txcaddy.reverseproxy.hosts import HostRegistry

        registry = HostRegistry()
        heard: list[tuple[str, bool]] = []
        registry.watchers.append(lambda host: heard.append((host.address, host.unhealthy)))
        host = registry.acquire("10.0.0.1:80")
        checker = ActiveHealthChecker(_active({"uri": "/", "interval": 1 * SECOND}), [Upstream("10.0.0.1:80", host)],
                                      self.transport, self.clock, Logger(observer=_observer(self.events)))
        checker.startService()
        self.exchanges[-1].respond(500)
        self.clock.advance(1)
        self.exchanges[-1].respond(500)
        self.clock.advance(1)
        self.exchanges[-1].respond(200)
        self.assertEqual(heard, [("10.0.0.1:80", True), ("10.0.0.1:80", False)])
        self.clock.advance(1)
        self.exchanges[-1].respond(500)
        checker.stopService()  # nobody checks it any more: up again, and told
        self.assertEqual(heard[-2:], [("10.0.0.1:80", True), ("10.0.0.1:80", False)])
