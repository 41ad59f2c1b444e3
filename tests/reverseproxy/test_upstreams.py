"""Dynamic upstream sources with a fake resolver and a Clock: caching, refresh, shared
lookups, failures, ordering; and the proxy loop using them (FakeTransport)."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.reverseproxy.test_handler import HandlerTestCase
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IUpstreamSource
from txcaddy.reverseproxy import _dnslookup, upstreams
from txcaddy.reverseproxy._dnslookup import (
    DNSCaches,
    DNSLookupError,
    LookupCache,
    order_srv_records,
)
from txcaddy.reverseproxy.hosts import HostRegistry, Upstream
from txcaddy.reverseproxy.transport import DialError
from txcaddy.reverseproxy.upstreams import AUpstreams, MultiUpstreams, SRVUpstreams
from txcaddy.testing import make_request


class FakeResolver:
    """Answers from tables; with ``hold`` set, answers wait until ``release()``."""

    def __init__(self) -> None:
        self.srv: dict[str, list[tuple[int, int, int, str]]] = {}  # name -> (priority, weight, port, target)
        self.a: dict[str, list[str]] = {}
        self.aaaa: dict[str, list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self.hold = False
        self._held: list[tuple[Deferred[Any], str, str]] = []

    def lookupService(self, name: str, timeout: Any = None) -> Deferred[Any]:
        return self._query("SRV", name)

    def lookupAddress(self, name: str, timeout: Any = None) -> Deferred[Any]:
        return self._query("A", name)

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> Deferred[Any]:
        return self._query("AAAA", name)

    def _query(self, kind: str, name: str) -> Deferred[Any]:
        self.queries.append((kind, name))
        if self.hold:
            d: Deferred[Any] = Deferred()
            self._held.append((d, kind, name))
            return d
        return self._answer(kind, name)

    def release(self) -> None:
        held, self._held = self._held, []
        for d, kind, name in held:
            self._answer(kind, name).chainDeferred(d)

    def _answer(self, kind: str, name: str) -> Deferred[Any]:
        table: Any = {"SRV": self.srv, "A": self.a, "AAAA": self.aaaa}[kind]
        if name not in table:
            return fail(DNSNameError(f"{name}: no such domain"))
        records = []
        for value in table[name]:
            if kind == "SRV":
                priority, weight, port, target = value
                # the root name "." (no such service) decodes from the wire as b""
                payload: Any = dns.Record_SRV(priority, weight, port, b"" if target == "." else target)
                records.append(dns.RRHeader(name, dns.SRV, payload=payload))
            elif kind == "A":
                records.append(dns.RRHeader(name, dns.A, payload=dns.Record_A(value)))  # type: ignore[arg-type]
            else:
                records.append(dns.RRHeader(name, dns.AAAA, payload=dns.Record_AAAA(value)))  # type: ignore[arg-type]
        return succeed((records, [], []))


def dials(found: Any) -> list[str]:
    return [u.dial for u in found]


class _Record:
    def __init__(self, priority: int, weight: int, name: str) -> None:
        self.priority, self.weight, self.name = priority, weight, name


class _ScriptedRandom:
    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.calls: list[int] = []

    def randrange(self, n: int) -> int:
        self.calls.append(n)
        return self.values.pop(0)


class OrderTests(SynchronousTestCase):
    def test_lower_priority_first(self) -> None:
        """SRV records are ordered by priority, lowest first."""
        records = [_Record(20, 0, "c"), _Record(5, 0, "a"), _Record(10, 0, "b")]
        self.assertEqual([r.name for r in order_srv_records(records)], ["a", "b", "c"])

    def test_weighted_draw_within_a_priority(self) -> None:
        # sorted by weight first (light, heavy); a draw below the light weight picks the light one
        """Within a priority, records sorted by weight are drawn by weight, as Go's net package."""
        records = [_Record(1, 3, "heavy"), _Record(1, 1, "light"), _Record(0, 5, "top")]
        rng = _ScriptedRandom(0)
        self.assertEqual([r.name for r in order_srv_records(records, rng)], ["top", "light", "heavy"])
        self.assertEqual(rng.calls, [4])  # only the priority-1 group (total weight 4) is drawn from
        rng = _ScriptedRandom(1)
        self.assertEqual([r.name for r in order_srv_records(records, rng)], ["top", "heavy", "light"])

    def test_heavier_records_come_first_proportionally(self) -> None:
        """A record comes first in proportion to its weight."""
        rng = random.Random(7)
        records = [_Record(1, 1, "light"), _Record(1, 3, "heavy")]
        heavy_first = sum(order_srv_records(records, rng)[0].name == "heavy" for _ in range(2000))
        self.assertTrue(1350 < heavy_first < 1650, heavy_first)  # 3/4 expected

    def test_zero_weights_keep_their_order(self) -> None:
        """Records of weight 0 keep their order, with no random draw."""
        records = [_Record(1, 0, "x"), _Record(1, 0, "y")]
        self.assertEqual([r.name for r in order_srv_records(records, _ScriptedRandom())], ["x", "y"])


class SRVSourceTests(SynchronousTestCase):
    NAME = "_api._tcp.example.com"

    def setUp(self) -> None:
        self.clock = Clock()
        self.resolver = FakeResolver()
        self.cache = LookupCache()
        self.resolver.srv[self.NAME] = [(10, 0, 8002, "b.example.com"), (5, 0, 8001, "a.example.com.")]

    def source(self, **kw: Any) -> SRVUpstreams:
        kw.setdefault("name", self.NAME)
        return SRVUpstreams(resolver=self.resolver, clock=self.clock, cache=self.cache, **kw)

    def test_provides_the_interface(self) -> None:
        """The SRV source provides IUpstreamSource."""
        verifyObject(IUpstreamSource, self.source())

    def test_each_record_is_an_upstream_in_priority_order(self) -> None:
        """Each SRV record is an upstream, in priority order, the target's final dot dropped."""
        found = self.source().get_upstreams(make_request())
        self.assertEqual(dials(found), ["a.example.com:8001", "b.example.com:8002"])  # final dot dropped
        self.assertEqual(self.resolver.queries, [("SRV", self.NAME)])

    def test_answer_is_cached_until_refresh(self) -> None:
        """An answer is served from the cache, as the same list, until refresh passes."""
        source = self.source(refresh=30.0)
        first = source.get_upstreams(make_request())
        self.resolver.srv[self.NAME] = [(1, 0, 9000, "c.example.com")]
        self.clock.advance(29.9)
        self.assertIs(source.get_upstreams(make_request()), first)  # same list: no Deferred, no query
        self.assertEqual(len(self.resolver.queries), 1)
        self.clock.advance(0.1)
        self.assertEqual(dials(source.get_upstreams(make_request())), ["c.example.com:9000"])
        self.assertEqual(len(self.resolver.queries), 2)

    def test_default_refresh_is_a_minute(self) -> None:
        """Without refresh, answers are cached for a minute."""
        source = self.source()
        source.get_upstreams(make_request())
        self.clock.advance(59)
        source.get_upstreams(make_request())
        self.assertEqual(len(self.resolver.queries), 1)
        self.clock.advance(1)
        source.get_upstreams(make_request())
        self.assertEqual(len(self.resolver.queries), 2)

    def test_concurrent_misses_share_one_lookup(self) -> None:
        """Concurrent misses for a name, from any handler, share one lookup and its answer."""
        self.resolver.hold = True
        source = self.source()
        other_handler = self.source()  # another handler naming the same SRV name
        d1: Any = source.get_upstreams(make_request())
        d2: Any = other_handler.get_upstreams(make_request())
        self.assertIsInstance(d1, Deferred)
        self.assertNoResult(d1)
        self.assertEqual(len(self.resolver.queries), 1)
        self.resolver.release()
        self.assertIs(self.successResultOf(d1), self.successResultOf(d2))
        self.assertEqual(dials(other_handler.get_upstreams(make_request())), ["a.example.com:8001", "b.example.com:8002"])
        self.assertEqual(len(self.resolver.queries), 1)

    def test_failed_lookup_fails_every_waiter_and_is_retried(self) -> None:
        """A failed lookup fails every waiter and is not cached: the next request asks again."""
        self.resolver.hold = True
        source = self.source(name="_gone._tcp.example.com")
        d1, d2 = source.get_upstreams(make_request()), source.get_upstreams(make_request())
        self.resolver.release()
        self.failureResultOf(d1, DNSNameError)
        self.failureResultOf(d2, DNSNameError)
        self.assertNotIn("_gone._tcp.example.com", self.cache)  # nothing cached: the next request asks again
        self.resolver.hold = False
        self.assertRaises(DNSNameError, source.get_upstreams, make_request())
        self.assertEqual(len(self.resolver.queries), 2)

    def test_stale_answer_is_not_served_when_the_refresh_fails(self) -> None:
        """When a refresh fails, the expired answer is not served; every request retries."""
        source = self.source()
        source.get_upstreams(make_request())
        del self.resolver.srv[self.NAME]
        self.clock.advance(60)
        self.assertRaises(DNSNameError, source.get_upstreams, make_request())
        self.assertRaises(DNSNameError, source.get_upstreams, make_request())  # every request retries
        self.assertEqual(len(self.resolver.queries), 3)

    def test_grace_period_keeps_the_previous_answer(self) -> None:
        # Caddy 2.8's srv grace_period
        """With grace_period, a failed refresh keeps the previous answer that long."""
        source = self.source(grace_period=10.0)
        first = source.get_upstreams(make_request())
        del self.resolver.srv[self.NAME]
        self.clock.advance(60)
        self.assertIs(source.get_upstreams(make_request()), first)
        self.clock.advance(9)
        self.assertIs(source.get_upstreams(make_request()), first)
        self.assertEqual(len(self.resolver.queries), 2)
        self.clock.advance(1)
        source.get_upstreams(make_request())
        self.assertEqual(len(self.resolver.queries), 3)

    def test_an_answer_without_records_is_an_error(self) -> None:
        """An SRV answer with no records, or only ".", is "no such host"."""
        self.resolver.srv["_none._tcp.example.com"] = [(1, 1, 0, ".")]  # "." : no such service
        self.resolver.srv["_empty._tcp.example.com"] = []
        for name in ("_none._tcp.example.com", "_empty._tcp.example.com"):
            error = self.assertRaises(DNSLookupError, self.source(name=name).get_upstreams, make_request())
            self.assertEqual(str(error), f"lookup {name}: no such host")

    def test_service_and_proto_make_the_name(self) -> None:
        """service and proto make the "_service._proto.name" asked."""
        source = self.source(service="api", proto="tcp", name="example.com")
        source.get_upstreams(make_request())
        self.assertEqual(self.resolver.queries, [("SRV", self.NAME)])

    def test_placeholders_in_the_name(self) -> None:
        """Placeholders in the name are filled in from the request before the lookup."""
        self.resolver.srv["_api._tcp.blue.example"] = [(1, 1, 80, "blue.example")]
        source = self.source(service="api", proto="tcp", name="{http.request.header.X-Pool}.example")
        found = source.get_upstreams(make_request(headers={"X-Pool": "blue"}))
        self.assertEqual(dials(found), ["blue.example:80"])
        self.assertIn("_api._tcp.blue.example", self.cache)

    def test_cache_keeps_a_bounded_number_of_names(self) -> None:
        """The lookup cache keeps at most its size of names, dropping the oldest."""
        self.cache = LookupCache(size=2)
        for name in ("_a._tcp.x", "_b._tcp.x", "_c._tcp.x"):
            self.resolver.srv[name] = [(1, 1, 80, "h.x")]
            self.source(name=name).get_upstreams(make_request())
        self.assertEqual(len(self.cache), 2)
        self.assertNotIn("_a._tcp.x", self.cache)


class ASourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resolver = FakeResolver()
        self.cache = LookupCache()
        self.resolver.a["app.example"] = ["10.0.0.1", "10.0.0.2"]
        self.resolver.aaaa["app.example"] = ["fd00::1"]

    def source(self, **kw: Any) -> AUpstreams:
        kw.setdefault("name", "app.example")
        return AUpstreams(resolver=self.resolver, clock=self.clock, cache=self.cache, **kw)

    def test_one_upstream_per_address(self) -> None:
        """The A source makes an upstream per A and AAAA address, on the port given."""
        found = self.source(port="8080").get_upstreams(make_request())
        self.assertEqual(dials(found), ["10.0.0.1:8080", "10.0.0.2:8080", "[fd00::1]:8080"])
        verifyObject(IUpstreamSource, self.source())

    def test_default_port_is_80(self) -> None:
        """The A source's default port is 80."""
        self.assertEqual(dials(self.source().get_upstreams(make_request()))[0], "10.0.0.1:80")

    def test_cached_per_name_and_port(self) -> None:
        """A answers are cached per name and port until refresh passes."""
        self.source(port="1").get_upstreams(make_request())
        self.source(port="1").get_upstreams(make_request())
        self.assertEqual(len(self.resolver.queries), 2)  # A and AAAA, once
        self.source(port="2").get_upstreams(make_request())
        self.assertEqual(len(self.resolver.queries), 4)
        self.clock.advance(60)
        self.source(port="1").get_upstreams(make_request())
        self.assertEqual(len(self.resolver.queries), 6)

    def test_versions_limit_the_record_types(self) -> None:
        """versions limit the lookups to A or AAAA records."""
        found = self.source(ipv6=False).get_upstreams(make_request())
        self.assertEqual(dials(found), ["10.0.0.1:80", "10.0.0.2:80"])
        self.assertEqual(self.resolver.queries, [("A", "app.example"), ])
        found = self.source(ipv4=False).get_upstreams(make_request())
        self.assertEqual(dials(found), ["[fd00::1]:80"])

    def test_one_record_type_failing_is_fine(self) -> None:
        """A name with only A records still gives upstreams when AAAA fails."""
        self.resolver.a["v4only.example"] = ["10.9.9.9"]
        self.assertEqual(dials(self.source(name="v4only.example").get_upstreams(make_request())), ["10.9.9.9:80"])

    def test_no_address_is_an_error(self) -> None:
        """A name with no addresses is a lookup error."""
        self.assertRaises(DNSNameError, self.source(name="missing.example").get_upstreams, make_request())

    def test_an_ip_address_is_used_as_it_is(self) -> None:
        """An IP address as the name is dialled as it is, without a lookup."""
        self.assertEqual(dials(self.source(name="192.0.2.7", port="81").get_upstreams(make_request())),
                         ["192.0.2.7:81"])
        self.assertEqual(self.resolver.queries, [])


class HostsFileTests(SynchronousTestCase):
    def test_a_name_in_the_hosts_file_is_not_asked_of_dns(self) -> None:
        """A name in the hosts file is answered from it; other names are asked of DNS."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("127.0.0.1 localhost app.local\n")
        names = FakeResolver()
        names.a["other.example"] = ["10.0.0.1"]
        resolver = _dnslookup._HostsFirst(path.encode(), names)
        source = AUpstreams(resolver=resolver, clock=Clock(), name="app.local", port="81", cache=LookupCache())
        self.assertEqual(dials(source.get_upstreams(make_request())), ["127.0.0.1:81"])
        self.assertEqual(names.queries, [])  # no AAAA question to DNS for a hosts-file name
        source = AUpstreams(resolver=resolver, clock=Clock(), name="other.example", cache=LookupCache())
        self.assertEqual(dials(source.get_upstreams(make_request())), ["10.0.0.1:80"])
        self.assertEqual(names.queries, [("A", "other.example"), ("AAAA", "other.example")])


class _FixedSource:
    def __init__(self, result: Any) -> None:
        self.result = result

    def get_upstreams(self, request: Any) -> Any:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class MultiSourceTests(SynchronousTestCase):
    def test_concatenates_and_skips_failing_or_empty_sources(self) -> None:
        """multi concatenates its sources' upstreams, skipping failing and empty ones."""
        one, two = [Upstream("a:1")], [Upstream("b:2"), Upstream("c:3")]
        multi = MultiUpstreams([_FixedSource(one), _FixedSource(RuntimeError("boom")), _FixedSource([]),
                                _FixedSource(two)])
        found = multi.get_upstreams(make_request())
        self.assertEqual(dials(found), ["a:1", "b:2", "c:3"])

    def test_unchanged_answers_give_the_same_list(self) -> None:
        """multi gives the same list while its sources' answers are unchanged."""
        one, two = [Upstream("a:1")], [Upstream("b:2")]
        first, second = _FixedSource(one), _FixedSource(two)
        multi = MultiUpstreams([first, second])
        found = multi.get_upstreams(make_request())
        self.assertIs(multi.get_upstreams(make_request()), found)  # the handler provisions it once
        second.result = [Upstream("c:3")]
        self.assertEqual(dials(multi.get_upstreams(make_request())), ["a:1", "c:3"])

    def test_waits_for_sources_that_look_up(self) -> None:
        """multi waits for sources still looking up before answering."""
        pending: Deferred[list[Upstream]] = Deferred()
        multi = MultiUpstreams([_FixedSource([Upstream("a:1")]), _FixedSource(pending),
                                _FixedSource(fail(DNSNameError("x")))])
        d: Any = multi.get_upstreams(make_request())
        self.assertNoResult(d)
        pending.callback([Upstream("b:2")])
        self.assertEqual(dials(self.successResultOf(d)), ["a:1", "b:2"])


class LoadTests(SynchronousTestCase):
    def load(self, config: dict[str, Any]) -> Any:
        self.context = LoadContext(reactor=Clock())
        return self.context.load_module("http.reverse_proxy.upstreams", config, "source")

    def test_srv_fields(self) -> None:
        """The srv source loads its fields, resolver addresses with default port 53."""
        source = self.load({"source": "srv", "service": "api", "proto": "tcp", "name": "example.com",
                            "refresh": "30s", "resolver": {"addresses": ["127.0.0.1:5353", "10.0.0.53"]},
                            "dial_timeout": "1s", "grace_period": 5_000_000_000})
        self.assertIsInstance(source, SRVUpstreams)
        self.assertEqual(source.address(make_request()), "_api._tcp.example.com")
        self.assertEqual((source.refresh, source.grace_period), (30.0, 5.0))
        self.assertEqual(source.resolver.servers, [("127.0.0.1", 5353), ("10.0.0.53", 53)])
        self.assertIs(source.cache, self.context.runtime.get(DNSCaches).srv)

    def test_a_fields_and_defaults(self) -> None:
        """The a source defaults to port 80, a minute's refresh and both IP versions."""
        source = self.load({"source": "a", "name": "app.example"})
        self.assertEqual((source.port, source.refresh, source.version), ("80", 60.0, "ip"))
        self.assertEqual(self.load({"source": "a", "name": "x", "versions": {"ipv6": True}}).version, "ip6")
        self.assertEqual(self.load({"source": "a", "name": "x", "versions": {"ipv4": True, "ipv6": True}}).version, "ip")

    def test_multi_loads_its_sources(self) -> None:
        """The multi source loads each of its sources."""
        multi = self.load({"source": "multi", "sources": [{"source": "a", "name": "x"}, {"source": "srv", "name": "y"}]})
        self.assertEqual([type(s) for s in multi.sources], [AUpstreams, SRVUpstreams])

    def test_bad_configs(self) -> None:
        """Bad source configs fail with messages naming the field or module."""
        for config, message in [
            ({"source": "srv", "name": "x", "weight": 1}, "unknown field 'weight'"),
            ({"source": "a", "name": "x", "port": 80}, "port of type string"),
            ({"source": "a", "name": "x", "refresh": "soon"}, "refresh"),
            ({"source": "srv", "name": "x", "resolver": {"addresses": ["1.1.1.1:1-2"]}}, "exactly one address"),
            ({"source": "a", "name": "x", "versions": {"ipv5": True}}, "versions"),
            ({"source": "dns"}, "module not registered"),
        ]:
            error = self.assertRaises(ConfigError, self.load, config)
            self.assertIn(message, str(error))


class DynamicProxyTests(HandlerTestCase):
    """The proxy loop with dynamic upstreams."""

    def setUp(self) -> None:
        super().setUp()
        self.resolver = FakeResolver()
        self.resolver.srv["_api._tcp.example.com"] = [(1, 0, 8001, "10.0.0.1"), (2, 0, 8002, "10.0.0.2")]
        self.resolver.a["app.example"] = ["10.0.1.1", "10.0.1.2"]
        self.patch(upstreams, "make_resolver", lambda servers, reactor, hosts_file: self.resolver)
        self.patch(upstreams, "system_srv_resolver", lambda reactor: self.resolver)

    SRV = {"source": "srv", "name": "_api._tcp.example.com", "refresh": "10s"}
    FIRST = {"selection_policy": {"policy": "first"}}

    def test_requests_go_to_the_records(self) -> None:
        """Requests are proxied to the upstreams the SRV records name."""
        handler = self.load({"dynamic_upstreams": self.SRV, "load_balancing": self.FIRST})
        response, outcome = self.serve(handler, make_request())
        self.assertEqual(self.transport.exchanges[0].dial, "10.0.0.1:8001")
        self.transport.exchanges[0].respond(200, body=b"ok")
        self.assertEqual((outcome, response.body), ([None], b"ok"))

    def test_round_robin_spreads_over_a_records(self) -> None:
        """The default round robin spreads requests over the A records' addresses."""
        handler = self.load({"dynamic_upstreams": {"source": "a", "name": "app.example", "port": "9000"}})
        for _ in range(4):
            self.serve(handler, make_request())
        self.assertEqual([e.dial for e in self.transport.exchanges],
                         ["10.0.1.1:9000", "10.0.1.2:9000", "10.0.1.1:9000", "10.0.1.2:9000"])

    def test_request_waits_for_the_lookup(self) -> None:
        """Requests wait for a lookup in progress, sharing it."""
        self.resolver.hold = True
        handler = self.load({"dynamic_upstreams": self.SRV, "load_balancing": self.FIRST})
        response, outcome = self.serve(handler, make_request())
        self.serve(handler, make_request())
        self.assertEqual(self.transport.exchanges, [])
        self.assertEqual(len(self.resolver.queries), 1)  # the second request shares the lookup
        self.resolver.release()
        self.assertEqual([e.dial for e in self.transport.exchanges], ["10.0.0.1:8001", "10.0.0.1:8001"])

    def test_records_changes_are_followed_after_refresh(self) -> None:
        """Changed records are followed once the refresh interval has passed."""
        handler = self.load({"dynamic_upstreams": self.SRV, "load_balancing": self.FIRST})
        self.serve(handler, make_request())
        self.resolver.srv["_api._tcp.example.com"] = [(1, 0, 7000, "10.0.0.7")]
        self.clock.advance(9)
        self.serve(handler, make_request())
        self.clock.advance(1)
        self.serve(handler, make_request())
        self.assertEqual([e.dial for e in self.transport.exchanges], ["10.0.0.1:8001", "10.0.0.1:8001", "10.0.0.7:7000"])

    def test_every_retry_asks_the_source_again(self) -> None:
        """Each retry asks the dynamic source for upstreams again."""
        handler = self.load({"dynamic_upstreams": self.SRV,
                             "load_balancing": {"selection_policy": {"policy": "first"}, "retries": 2}})
        asked: list[Any] = []
        source = handler.dynamic.source
        handler.dynamic.source = _Spy(source, asked)
        self.serve(handler, make_request())
        self.transport.exchanges[0].fail(DialError("refused"))
        self.transport.exchanges[1].fail(DialError("refused"))
        self.assertEqual(len(asked), 3)
        self.assertEqual(len(self.transport.exchanges), 3)

    def test_failure_falls_back_to_static_upstreams(self) -> None:
        """A failed lookup falls back to the static upstreams."""
        config = {"dynamic_upstreams": {"source": "srv", "name": "_gone._tcp.example.com"},
                  "upstreams": [{"dial": "10.9.9.9:80"}]}
        handler = self.load(config)
        self.serve(handler, make_request())
        self.assertEqual(self.transport.exchanges[0].dial, "10.9.9.9:80")

    def test_failure_without_static_upstreams_is_503(self) -> None:
        """A failed lookup with no static upstreams answers 503 without dialling."""
        self.resolver.hold = True
        handler = self.load({"dynamic_upstreams": {"source": "a", "name": "missing.example"}})
        response, outcome = self.serve(handler, make_request())
        self.assertEqual(outcome, [])
        self.resolver.release()
        self.assertEqual(outcome[0].value.status, 503)
        self.assertEqual(self.transport.exchanges, [])

    def test_an_empty_answer_from_multi_is_503_not_static(self) -> None:
        """multi's empty answer is a 503, not a fallback to the static upstreams."""
        config = {"dynamic_upstreams": {"source": "multi", "sources": [{"source": "srv", "name": "_gone._tcp.x"}]},
                  "upstreams": [{"dial": "10.9.9.9:80"}]}
        handler = self.load(config)
        response, outcome = self.serve(handler, make_request())
        self.assertEqual(outcome[0].value.status, 503)

    def test_hosts_are_shared_and_released_on_unload(self) -> None:
        """Dynamic upstreams share Host state with static ones and release theirs on unload."""
        context = LoadContext(reactor=self.clock)
        from txcaddy.config import registry

        original = registry.MODULES["http.reverse_proxy.transport.http"]
        registry.MODULES["http.reverse_proxy.transport.http"] = lambda cfg, ctx: self.transport
        try:
            from txcaddy.reverseproxy.handler import load_reverse_proxy

            handler = load_reverse_proxy({"dynamic_upstreams": self.SRV, "load_balancing": self.FIRST}, context)
        finally:
            registry.MODULES["http.reverse_proxy.transport.http"] = original
        hosts = context.runtime.get(HostRegistry)
        static = hosts.acquire("10.0.0.1:8001")  # a static upstream of another handler
        self.addCleanup(hosts.release, static)
        self.serve(handler, make_request())
        self.assertEqual(static.num_requests, 1)  # the dynamic upstream counts on the shared host
        context.unload()
        self.assertIsNone(hosts.get("10.0.0.2:8002"))
        self.assertIs(hosts.get("10.0.0.1:8001"), static)

    def test_passive_health_applies_active_flag_does_not(self) -> None:
        """Passive health applies to dynamic upstreams; a static host's active flag does not."""
        config = {"dynamic_upstreams": self.SRV, "load_balancing": self.FIRST,
                  "health_checks": {"passive": {"fail_duration": "30s", "max_fails": 1}}}
        handler = self.load(config)
        self.serve(handler, make_request())
        self.transport.exchanges[0].respond(200)
        host: Any = self.hosts.get("10.0.0.1:8001")
        host.unhealthy = True  # the active checker's flag (for a static upstream of that address)
        self.addCleanup(setattr, host, "unhealthy", False)
        self.serve(handler, make_request())
        self.assertEqual(self.transport.exchanges[1].dial, "10.0.0.1:8001")
        self.transport.exchanges[1].fail(DialError("refused"))
        self.assertEqual(host.fails, 1)
        self.serve(handler, make_request())  # 10.0.0.1 failed: the next record takes over
        self.assertEqual(self.transport.exchanges[2].dial, "10.0.0.2:8002")


class _Spy:
    def __init__(self, source: Any, asked: list[Any]) -> None:
        self.source = source
        self.asked = asked

    def get_upstreams(self, request: Any) -> Any:
        self.asked.append(request)
        return self.source.get_upstreams(request)


class LookupSRVTests(HandlerTestCase):
    """The deprecated ``{"lookup_srv": name}`` static upstream (Caddy 2.6.2)."""

    def setUp(self) -> None:
        super().setUp()
        self.resolver = FakeResolver()
        self.resolver.srv["_api._tcp.example.com"] = [(2, 0, 8002, "10.0.0.2"), (1, 0, 8001, "10.0.0.1")]
        self.patch(upstreams, "system_srv_resolver", lambda reactor: self.resolver)

    def test_first_record_is_dialled_and_looked_up_every_attempt(self) -> None:
        """lookup_srv dials the first record, looked up every attempt, state keyed by name."""
        handler = self.load({"upstreams": [{"lookup_srv": "_api._tcp.example.com"}]})
        self.serve(handler, make_request())
        self.resolver.srv["_api._tcp.example.com"] = [(1, 0, 7000, "10.0.0.7")]
        self.serve(handler, make_request())
        self.assertEqual([e.dial for e in self.transport.exchanges], ["10.0.0.1:8001", "10.0.0.7:7000"])
        self.assertEqual(len(self.resolver.queries), 2)  # no cache (Caddy looks up per attempt)
        self.assertEqual(getattr(self.hosts.get("_api._tcp.example.com"), "num_requests", None), 2)  # state keyed by the name

    def test_lookup_failure_is_502(self) -> None:
        """A failed lookup_srv answers 502 "making dial info" without dialling."""
        handler = self.load({"upstreams": [{"lookup_srv": "_gone._tcp.example.com"}]})
        response, outcome = self.serve(handler, make_request())
        self.assertIsInstance(outcome[0], Failure)
        self.assertEqual(outcome[0].value.status, 502)
        self.assertIn("making dial info", str(outcome[0].value))
        self.assertEqual(self.transport.exchanges, [])

    def test_mixed_with_static_upstreams(self) -> None:
        """lookup_srv upstreams take their turns among static ones."""
        handler = self.load({"upstreams": [{"dial": "10.5.5.5:80"}, {"lookup_srv": "_api._tcp.example.com"}],
                             "load_balancing": {"selection_policy": {"policy": "round_robin"}}})
        for _ in range(3):
            self.serve(handler, make_request())
        self.assertEqual([e.dial for e in self.transport.exchanges], ["10.5.5.5:80", "10.0.0.1:8001", "10.5.5.5:80"])

    def test_incompatible_settings(self) -> None:
        """lookup_srv with active health checks or a dial address is a config error."""
        active = {"active": {"uri": "/health"}}
        error = self.assertRaises(ConfigError, self.load,
                                  {"upstreams": [{"lookup_srv": "_a._tcp.x"}], "health_checks": active})
        self.assertIn("lookup_srv is incompatible with active health checks", str(error))
        error = self.assertRaises(ConfigError, self.load, {"upstreams": [{"lookup_srv": "_a._tcp.x", "dial": "h:1"}]})
        self.assertIn("specifying dial address is incompatible with lookup_srv", str(error))
