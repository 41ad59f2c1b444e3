# -*- test-case-name: tests.reverseproxy.test_upstreams -*-
"""Upstreams found at request time: ``dynamic a``, ``dynamic srv``, ``dynamic multi``
and the deprecated ``lookup_srv`` upstream (Caddy's ``upstreams.go``).

A source answers ``get_upstreams(request)`` before every proxy attempt. The
DNS sources keep their answers in their service's cache (``_dnslookup``: keyed
like Caddy's, the SRV name, or ``name:port`` plus the IP versions for A/AAAA)
for ``refresh``; while an answer is fresh it is returned as it is, so the proxy
goes on without a Deferred. On a miss or after expiry one lookup runs and
every request that needs the same name meanwhile waits for it. The caches
outlive config reloads, as Caddy's package-level maps do. The DNS side (caches,
SRV ordering, resolvers) is in ``_dnscache.py`` and ``_dnslookup.py``; the latter (with
``twisted.names``, 0.65 MB) is imported on first use, as most configs have no dynamic upstreams.

``UpstreamProvider`` is the handler's side: it turns a source's answer into
this handler's ``Upstream``s (sharing per-address ``Host`` state with every
other handler, as ``hosts.py`` describes, so passive health checks see
failures while an address stays in the records), falls back to the static
upstreams when the source fails, and looks up ``lookup_srv`` entries.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._go.net import join_host_port
from txcaddy._reactor import IDialingReactor, default_reactor
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.config.schema import BOOL, DURATION, STRING, STRINGS, ListOf, Module, Obj
from txcaddy.config.values import duration_seconds, integer, string
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IUpstreamSource
from txcaddy.reverseproxy._dnscache import (
    LOOKUP_TIMEOUT,
    DNSCaches,
    DNSLookupError,
    LookupCache,
    _target_of,
    order_srv_records,
)
from txcaddy.reverseproxy._resolver import parse_resolver_addresses
from txcaddy.reverseproxy.hosts import HostRegistry, Upstream

__all__ = [
    "AUpstreams",
    "DNSLookupError",
    "DynamicUpstream",
    "MultiUpstreams",
    "SRVLookupUpstream",
    "SRVUpstreams",
    "UpstreamProvider",
]

log = Logger(namespace="txcaddy.reverseproxy.upstreams")

#: Caddy's default ``refresh`` (1m).
DEFAULT_REFRESH = 60.0
#: Distinct answers a handler keeps provisioned at once (more only when names have placeholders).
_POOLS_KEPT = 8



# -- the upstreams a handler gets ------------------------------------------------------------


class DynamicUpstream(Upstream):
    """An upstream from a dynamic source: active health checks never apply to it.

    It shares the address's ``Host`` (requests in flight, passive failures)
    with every other upstream of that address but ignores the active
    checker's flag, as Caddy keeps that flag on static upstreams only.
    """

    __slots__ = ()

    def healthy(self) -> bool:
        passive = self.passive
        return passive is None or self.host.fails < passive.max_fails


class SRVLookupUpstream(Upstream):
    """A static ``{"lookup_srv": name}`` upstream (deprecated in Caddy 2.6, removed in 2.7).

    Its ``dial`` is the SRV name (Caddy keys its host state by that name);
    before each attempt the name is looked up with the system resolver and
    the first record in RFC 2782 order is dialled.
    """

    __slots__ = ("template",)

    def __init__(self, name: str, host: Any, max_requests: int = 0, passive: Any = None) -> None:
        super().__init__(name, host, max_requests, passive)
        self.template = _template(name)


# -- the sources -------------------------------------------------------------------------------


@implementer(IUpstreamSource)
class SRVUpstreams:
    """``http.reverse_proxy.upstreams.srv``: one upstream per SRV record, ``target:port``.

    The name is ``_service._proto.name`` when ``service`` or ``proto`` is
    given, else ``name`` as written. Placeholders in them are filled per
    request. Upstreams come in RFC 2782 order (``order_srv_records``).
    """

    def __init__(
        self,
        *,
        resolver: Any,
        clock: Any,
        name: str = "",
        service: str = "",
        proto: str = "",
        refresh: float = DEFAULT_REFRESH,
        grace_period: float = 0.0,
        cache: LookupCache | None = None,
        rng: Any = random,
    ) -> None:
        self.resolver = resolver
        self.clock = clock
        self.name = name
        self.service = service
        self.proto = proto
        self.refresh = refresh
        self.grace_period = grace_period
        self.cache = LookupCache() if cache is None else cache
        self.rng = rng
        self._templates = [_template(text) for text in (name, service, proto)]
        self._fixed = None if any(self._templates) else self._address(name, service, proto)

    @staticmethod
    def _address(name: str, service: str, proto: str) -> str:
        if not service and not proto:
            return name
        return f"_{service}._{proto}.{name}"

    def address(self, request: Any) -> str:
        """The name looked up for ``request`` (the cache key)."""
        if self._fixed is not None:
            return self._fixed
        name, service, proto = (
            _render(template, request, text)
            for template, text in zip(self._templates, (self.name, self.service, self.proto), strict=True)
        )
        return self._address(name, service, proto)

    def get_upstreams(self, request: Any) -> list[Upstream] | Deferred[list[Upstream]]:
        key = self.address(request)
        return self.cache.get(key, self.clock, self.refresh, partial(self._lookup, key), self.grace_period)

    def _lookup(self, name: str) -> Deferred[list[Upstream]]:
        log.debug("refreshing SRV upstreams of {name}", name=name)
        d = self.resolver.lookupService(name, timeout=LOOKUP_TIMEOUT)
        return d.addCallback(self._upstreams, name)

    def _upstreams(self, answer: Any, name: str) -> list[Upstream]:
        # imported on first use (module docstring)
        from txcaddy.reverseproxy._dnslookup import srv_records

        records = srv_records(answer, name)
        return [Upstream(join_host_port(target, port)) for target, port in
                ((_target_of(r), r.port) for r in order_srv_records(records, self.rng))]

    def __repr__(self) -> str:
        return f"<SRVUpstreams {self._fixed or self.name}>"


@implementer(IUpstreamSource)
class AUpstreams:
    """``http.reverse_proxy.upstreams.a``: one upstream per A/AAAA address of ``name``, at ``port``.

    IPv4 addresses come first, then IPv6, each in the order of the answer.
    ``ipv4``/``ipv6`` choose the record types (Caddy 2.7's ``versions``).
    """

    def __init__(
        self,
        *,
        resolver: Any,
        clock: Any,
        name: str = "",
        port: str = "80",
        refresh: float = DEFAULT_REFRESH,
        ipv4: bool = True,
        ipv6: bool = True,
        cache: LookupCache | None = None,
    ) -> None:
        self.resolver = resolver
        self.clock = clock
        self.name = name
        self.port = port
        self.refresh = refresh
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.cache = LookupCache() if cache is None else cache
        self.version = "ip4" if not ipv6 else "ip6" if not ipv4 else "ip"
        self._templates = (_template(name), _template(port))

    def get_upstreams(self, request: Any) -> list[Upstream] | Deferred[list[Upstream]]:
        name = _render(self._templates[0], request, self.name)
        port = _render(self._templates[1], request, self.port)
        key = join_host_port(name, port) + self.version
        return self.cache.get(key, self.clock, self.refresh, partial(self._lookup, name, port))

    def _lookup(self, name: str, port: str) -> Deferred[list[Upstream]]:
        if isIPAddress(name) or isIPv6Address(name):
            if (self.ipv4 if isIPAddress(name) else self.ipv6):
                return succeed([Upstream(join_host_port(name, port))])
            return fail(DNSLookupError(f"lookup {name}: no suitable address"))
        log.debug("refreshing A upstreams of {name}", name=name)
        lookups = []
        if self.ipv4:
            lookups.append(self.resolver.lookupAddress(name, timeout=LOOKUP_TIMEOUT))
        if self.ipv6:
            lookups.append(self.resolver.lookupIPV6Address(name, timeout=LOOKUP_TIMEOUT))
        d = DeferredList(lookups, consumeErrors=True)
        return d.addCallback(self._upstreams, name, port)  # type: ignore[arg-type]

    @staticmethod
    def _upstreams(results: list[tuple[bool, Any]], name: str, port: str) -> Any:
        # imported on first use (module docstring)
        from twisted.names import dns

        addresses: list[str] = []
        errors = []
        for ok, answer in results:
            if not ok:
                errors.append(answer)
                continue
            for record in answer[0]:
                if record.type == dns.A:
                    address = record.payload.dottedQuad()
                elif record.type == dns.AAAA:
                    address = socket.inet_ntop(socket.AF_INET6, record.payload.address)
                else:
                    continue
                if address not in addresses:
                    addresses.append(address)
        if not addresses:
            if errors:
                return errors[0]
            raise DNSLookupError(f"lookup {name}: no such host")
        return [Upstream(join_host_port(address, port)) for address in addresses]

    def __repr__(self) -> str:
        return f"<AUpstreams {self.name}:{self.port}>"


@implementer(IUpstreamSource)
class MultiUpstreams:
    """``http.reverse_proxy.upstreams.multi``: the sources' upstreams one after the other.

    A source that fails or finds nothing is logged and skipped, so with the
    ``first`` policy a second source takes over when the first has none.
    """

    def __init__(self, sources: list[Any]) -> None:
        self.sources = sources
        self._last: tuple[tuple[Any, ...], list[Upstream]] | None = None

    def get_upstreams(self, request: Any) -> list[Upstream] | Deferred[list[Upstream]]:
        parts: list[Any] = []
        waiting = False
        for source in self.sources:
            try:
                part = source.get_upstreams(request)
            except Exception:  # noqa: BLE001 - logged with the others in _combine
                part = Failure()
            waiting = waiting or isinstance(part, Deferred)
            parts.append(part)
        if not waiting:
            return self._combine(parts)
        gathered = DeferredList(
            [part if isinstance(part, Deferred) else fail(part) if isinstance(part, Failure) else succeed(part)
             for part in parts],
            consumeErrors=True,
        )
        return gathered.addCallback(lambda results: self._combine([part for _, part in results]))

    def _combine(self, parts: list[Any]) -> list[Upstream]:
        last = self._last
        if last is not None and len(last[0]) == len(parts) and all(a is b for a, b in zip(last[0], parts, strict=True)):
            return last[1]
        upstreams: list[Upstream] = []
        clean = True
        for index, part in enumerate(parts):
            if isinstance(part, Failure):
                clean = False
                log.error("upstream source {index} returned error: {error}", index=index, error=part.getErrorMessage())
            elif not part:
                log.warn("upstream source {index} returned 0 upstreams", index=index)
            else:
                upstreams.extend(part)
        if clean:
            self._last = (tuple(parts), upstreams)
        return upstreams


# -- the handler's side ------------------------------------------------------------------------


class UpstreamProvider:
    """What a handler with dynamic upstreams or ``lookup_srv`` entries asks before each attempt.

    ``pool(request, static)`` returns the list to select from, or a Deferred
    for it while a lookup runs; it never fails: a failing source is logged
    and the static upstreams are used (Caddy's fallback). Upstreams dialled
    somewhere other than their ``dial`` (lookup_srv) get their ``target`` set
    here (``make_target(dial)`` parses one).
    """

    def __init__(
        self,
        *,
        source: Any,
        passive: Any,
        make_target: Callable[[str], Any],
        hosts: HostRegistry,
        srv_resolver: Any = None,
        rng: Any = random,
    ) -> None:
        self.source = source
        self.hosts = hosts
        self.passive = passive
        self.make_target = make_target
        self.srv_resolver = srv_resolver
        self.rng = rng
        # id(source's list) -> (that list, this handler's upstreams for it), oldest first
        self._pools: dict[int, tuple[list[Upstream], list[Upstream]]] = {}
        # lookup_srv: (id(static upstream), dial) -> upstream dialling a looked-up target
        self._srv_found: dict[tuple[int, str], Upstream] = {}
        self._srv_errors: dict[int, Upstream] = {}

    def pool(self, request: Any, static: list[Upstream]) -> list[Upstream] | Deferred[list[Upstream]]:
        source = self.source
        if source is None:
            result = self._static(request, static)
            if isinstance(result, Deferred):
                result.addErrback(self._last_resort, static)
            return result
        try:
            found = source.get_upstreams(request)
        except Exception:  # noqa: BLE001 - Caddy logs and falls back to the static upstreams
            return self._source_failed(Failure(), request, static)
        if isinstance(found, Deferred):
            found.addCallbacks(self._provisioned, self._source_failed, errbackArgs=(request, static))
            found.addErrback(self._last_resort, static)
            return found
        return self._provisioned(found)

    def _source_failed(self, failure: Failure, request: Any, static: list[Upstream]) -> Any:
        log.error("failed getting dynamic upstreams; falling back to static upstreams: {error}",
                  error=failure.getErrorMessage())
        return self._static(request, static)

    @staticmethod
    def _last_resort(failure: Failure, static: list[Upstream]) -> list[Upstream]:
        log.failure("unexpected error while getting upstreams", failure)
        return static

    def _provisioned(self, found: list[Upstream]) -> list[Upstream]:
        """This handler's upstreams for a source's answer, made once per answer."""
        kept = self._pools.get(id(found))
        if kept is not None:
            return kept[1]
        passive = self.passive
        request_limit = passive.unhealthy_request_count if passive is not None else 0
        pool: list[Upstream] = []
        for upstream in found:
            dial = upstream.dial
            pool.append(DynamicUpstream(dial, self.hosts.acquire(dial), upstream.max_requests or request_limit, passive))
        self._pools[id(found)] = (found, pool)
        if len(self._pools) > _POOLS_KEPT:
            self._release(self._pools.pop(next(iter(self._pools)))[1])
        log.debug("provisioned {count} dynamic upstreams", count=len(pool))
        return pool

    def _release(self, pool: list[Upstream]) -> None:
        for upstream in pool:
            self.hosts.release(upstream.host)

    # -- lookup_srv

    def _static(self, request: Any, static: list[Upstream]) -> list[Upstream] | Deferred[list[Upstream]]:
        srv = [(i, u) for i, u in enumerate(static) if isinstance(u, SRVLookupUpstream)]
        if not srv:
            return static
        lookups = [self._lookup_srv(request, upstream) for _, upstream in srv]

        def built(results: list[tuple[bool, Any]]) -> list[Upstream]:
            pool = list(static)
            for (index, upstream), (ok, found) in zip(srv, results, strict=True):
                pool[index] = self._srv_upstream(upstream, found) if ok else self._srv_error(upstream, found)
            return pool

        d = DeferredList(lookups, consumeErrors=True)
        return d.addCallback(built)  # type: ignore[arg-type]

    def _lookup_srv(self, request: Any, upstream: SRVLookupUpstream) -> Deferred[str]:
        name = _render(upstream.template, request, upstream.dial)
        try:
            d = self.srv_resolver.lookupService(name, timeout=LOOKUP_TIMEOUT)
        except Exception:  # noqa: BLE001
            return fail()

        def first(answer: Any) -> str:
            # imported on first use (module docstring)
            from txcaddy.reverseproxy._dnslookup import srv_records

            record = order_srv_records(srv_records(answer, name), self.rng)[0]
            return join_host_port(_target_of(record), record.port)

        return d.addCallback(first)  # type: ignore[no-any-return]

    def _srv_upstream(self, upstream: SRVLookupUpstream, dial: str) -> Upstream:
        key = (id(upstream), dial)
        found = self._srv_found.get(key)
        if found is None:
            if len(self._srv_found) >= 64:
                self._forget_srv()
            # Caddy's lookup_srv upstream has an empty dial (hash and cookie policies see "")
            found = self._srv_found[key] = Upstream("", upstream.host, upstream.max_requests, upstream.passive)
            found.target = self.make_target(dial)
        return found

    def _srv_error(self, upstream: SRVLookupUpstream, failure: Failure) -> Upstream:
        """A stand-in that fails with "making dial info" (502) if selected, as Caddy's lookup does."""
        failed = self._srv_errors.get(id(upstream))
        if failed is None:
            failed = self._srv_errors[id(upstream)] = Upstream(
                upstream.dial, upstream.host, upstream.max_requests, upstream.passive)
        target = self.make_target("")
        target.error = failure.getErrorMessage()
        failed.target = target
        return failed

    def _forget_srv(self) -> None:
        self._srv_found.clear()

    def unload(self) -> None:
        """Give back the shared host state of every upstream handed out."""
        pools, self._pools = self._pools, {}
        for _, pool in pools.values():
            self._release(pool)
        self._forget_srv()
        self._srv_errors.clear()


# -- loading from JSON ------------------------------------------------------------------------


def _template(text: str) -> Any:
    if "{" not in text:
        return None
    return Template(text)


def _render(template: Any, request: Any, text: str) -> str:
    if template is None:
        return text
    return template.render(request, None, empty_unknown=True)  # type: ignore[no-any-return]


def _clock_for(reactor: Any) -> Any:
    """The clock sources read (tests swap it for one they can move)."""
    return reactor


def _reactor(context: Any) -> IDialingReactor:
    return default_reactor(context.reactor)


def _check_fields(config: dict[str, Any], known: frozenset[str], what: str) -> None:
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"dynamic {what} upstreams: unknown field {unknown[0]!r}")


def _string(config: dict[str, Any], key: str, what: str) -> str:
    return string(config.get(key), f"dynamic {what} upstreams: {key}")


def make_resolver(servers: list[tuple[str, int]] | None, reactor: Any, *, hosts_file: bool) -> Any:
    """``_dnslookup.make_resolver``, imported on first use (module docstring)."""
    from txcaddy.reverseproxy import _dnslookup

    return _dnslookup.make_resolver(servers, reactor, hosts_file=hosts_file)


def _common(config: dict[str, Any], context: Any, what: str, hosts_file: bool) -> dict[str, Any]:
    """``refresh``, ``resolver``, ``dial_timeout``, ``dial_fallback_delay``, shared by a and srv."""
    refresh = duration_seconds(config.get("refresh"), f"dynamic {what} upstreams: refresh") or DEFAULT_REFRESH
    for key in ("dial_timeout", "dial_fallback_delay"):
        # Go dials the DNS server with these; twisted.names queries over UDP (no dial).
        duration_seconds(config.get(key), f"dynamic {what} upstreams: {key}")
    reactor = _reactor(context)
    servers = None
    resolver_config = config.get("resolver")
    if resolver_config is not None:
        if not isinstance(resolver_config, dict) or set(resolver_config) - {"addresses"}:
            raise ConfigError(f"dynamic {what} upstreams: resolver must be an object with 'addresses'")
        try:
            servers = parse_resolver_addresses(resolver_config.get("addresses"))
        except ConfigError as e:
            raise ConfigError(str(e).replace("reverse_proxy transport http", f"dynamic {what} upstreams")) from None
    return {
        "refresh": refresh,
        "resolver": make_resolver(servers, reactor, hosts_file=hosts_file),
        "clock": _clock_for(reactor),
    }


_SRV_FIELDS = frozenset({"service", "proto", "name", "refresh", "resolver", "dial_timeout",
                         "dial_fallback_delay", "grace_period"})
_A_FIELDS = frozenset({"name", "port", "refresh", "resolver", "dial_timeout", "dial_fallback_delay", "versions"})


@module("http.reverse_proxy.upstreams.srv", schema=Obj(
    {"service": STRING, "proto": STRING, "name": STRING, "grace_period": DURATION, "resolver": Obj({"addresses": STRINGS}), "dial_timeout": DURATION, "dial_fallback_delay": DURATION, "refresh": DURATION},
))
def load_srv_upstreams(config: dict[str, Any], context: Any) -> SRVUpstreams:
    _check_fields(config, _SRV_FIELDS, "srv")
    grace = duration_seconds(config.get("grace_period"), "dynamic srv upstreams: grace_period") or 0.0
    return SRVUpstreams(
        name=_string(config, "name", "srv"),
        service=_string(config, "service", "srv"),
        proto=_string(config, "proto", "srv"),
        grace_period=grace,
        cache=context.runtime.get(DNSCaches).srv,
        **_common(config, context, "srv", hosts_file=False),
    )


@module("http.reverse_proxy.upstreams.a", schema=Obj(
    {"name": STRING, "port": STRING, "versions": Obj({"ipv4": BOOL, "ipv6": BOOL}), "resolver": Obj({"addresses": STRINGS}), "dial_timeout": DURATION, "dial_fallback_delay": DURATION, "refresh": DURATION},
))
def load_a_upstreams(config: dict[str, Any], context: Any) -> AUpstreams:
    _check_fields(config, _A_FIELDS, "a")
    ipv4 = ipv6 = True
    versions = config.get("versions")
    if versions is not None:
        # Caddy 2.7: naming only one version limits the lookup to it; none or both → both.
        if not isinstance(versions, dict) or set(versions) - {"ipv4", "ipv6"} or \
                not all(isinstance(v, bool) for v in versions.values()):
            raise ConfigError("dynamic a upstreams: versions must be an object with boolean 'ipv4'/'ipv6'")
        named4, named6 = versions.get("ipv4"), versions.get("ipv6")
        if named4 is not None or named6 is not None:
            ipv4, ipv6 = bool(named4), bool(named6)
    return AUpstreams(
        name=_string(config, "name", "a"),
        port=_string(config, "port", "a") or "80",
        ipv4=ipv4,
        ipv6=ipv6,
        cache=context.runtime.get(DNSCaches).a,
        **_common(config, context, "a", hosts_file=True),
    )


@module("http.reverse_proxy.upstreams.multi", schema=Obj(
    {"sources": ListOf(Module("http.reverse_proxy.upstreams", "source"))},
))
def load_multi_upstreams(config: dict[str, Any], context: Any) -> MultiUpstreams:
    _check_fields(config, frozenset({"sources"}), "multi")
    sources = config.get("sources") or []
    if not isinstance(sources, list):
        raise ConfigError("dynamic multi upstreams: sources must be a list")
    return MultiUpstreams([context.load_module("http.reverse_proxy.upstreams", s, "source") for s in sources])


# -- the hook load_reverse_proxy calls --------------------------------------------------------


def lookup_srv_upstream(
    entry: dict[str, Any], passive: Any, active_checks: bool, hosts: HostRegistry
) -> SRVLookupUpstream:
    """A static ``{"lookup_srv": name}`` entry, checked as Caddy 2.6.2 checks it."""
    name = entry["lookup_srv"]
    if not isinstance(name, str):
        raise ConfigError("reverse_proxy: lookup_srv must be a string")
    if active_checks:
        raise ConfigError(f'upstream: lookup_srv is incompatible with active health checks: '
                          f'{{"dial": "{entry.get("dial") or ""}", "lookup_srv": "{name}"}}')
    if entry.get("dial"):
        raise ConfigError(f'upstream: specifying dial address is incompatible with lookup_srv: '
                          f'{{"dial": "{entry["dial"]}", "lookup_srv": "{name}"}}')
    max_requests = integer(entry.get("max_requests"), "reverse_proxy: max_requests")
    if passive is not None and passive.unhealthy_request_count and not max_requests:
        max_requests = passive.unhealthy_request_count
    return SRVLookupUpstream(name, hosts.acquire(name), max_requests, passive)


def system_srv_resolver(reactor: Any) -> Any:
    """The resolver of ``lookup_srv`` (Caddy uses Go's default resolver: the system's DNS)."""
    return make_resolver(None, reactor, hosts_file=False)


def attach(handler: Any, config: Any, context: Any, make_target: Callable[[str], Any]) -> UpstreamProvider | None:
    """Give ``handler`` an ``UpstreamProvider`` if its config needs one (dynamic or lookup_srv)."""
    has_srv = any(isinstance(u, SRVLookupUpstream) for u in handler.upstreams)
    if config is None and not has_srv:
        return None
    source = None
    if config is not None:
        context.path.append("dynamic_upstreams")
        try:
            source = context.load_module("http.reverse_proxy.upstreams", config, "source")
        finally:
            context.path.pop()
    reactor = _reactor(context)
    provider = UpstreamProvider(
        source=source,
        passive=handler.passive,
        make_target=make_target,
        hosts=context.runtime.get(HostRegistry),
        srv_resolver=system_srv_resolver(reactor) if has_srv else None,
    )
    context.on_unload(provider.unload)
    return provider
