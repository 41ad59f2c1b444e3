"""Load-balancing policies: which upstream of a pool serves a request.

One class per ``lb_policy``, each registered as Caddy's runtime module
``http.reverse_proxy.selection_policies.<name>``. A policy only ever picks an
upstream whose ``available()`` is true and returns None when there is none
(the handler answers 503). Policies with state (the round-robin counters)
keep it on the instance, and each handler loads its own instance.

The hash policies are Caddy 2.6.2's rendezvous hashing: every available
upstream scores ``FNV-1a-32(key + dial)`` and the strictly highest score
wins, so a key keeps its upstream while others come and go. The ``cookie``
policy's value is Caddy's (hex HMAC-SHA256 of the dial with the secret as
key), so sticky sessions survive a move between Caddy and txcaddy.

Randomness comes from a ``random.Random`` passed in (``rng``), by default
the module's ``DEFAULT_RANDOM``; tests pass a seeded one. Policies loaded
from JSON use the ``rng`` attribute of the load context when it has one.

The default policy differs from Caddy's on purpose (DESIGN.md §1): a pool
without ``selection_policy`` is served round-robin, starting at the first
upstream.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zope.interface import classImplements

from txcaddy._go.fnv import MASK32, PRIME32, fnv1a_32
from txcaddy._go.http import request_cookie, valid_cookie_name
from txcaddy._go.net import AddrError, split_host_port
from txcaddy._go.textproto import canonical_mime_header_key as canonical_key
from txcaddy._go.url import parse_query
from txcaddy.config.registry import module
from txcaddy.config.schema import INT, STRING, ListOf, Module, Obj
from txcaddy.config.values import parse_caddy_duration, string
from txcaddy.errors import ConfigError
from txcaddy.interfaces import ISelectionPolicy

if TYPE_CHECKING:
    from txcaddy.http.request import Request
    from txcaddy.http.response import Response
    from txcaddy.reverseproxy.hosts import Upstream

__all__ = [
    "DEFAULT_RANDOM",
    "NAMESPACE",
    "ClientIPHashSelection",
    "CookieHashSelection",
    "FirstSelection",
    "HeaderHashSelection",
    "IPHashSelection",
    "LeastConnSelection",
    "QueryHashSelection",
    "RandomChoiceSelection",
    "RandomSelection",
    "RoundRobinSelection",
    "URIHashSelection",
    "WeightedRoundRobinSelection",
    "cookie_value",
    "hash_choice",
    "load_selection_policy",
]

NAMESPACE = "http.reverse_proxy.selection_policies"

#: The generator policies use unless given another.
DEFAULT_RANDOM = random.Random()


# -- helpers shared by the policies ------------------------------------------------


def _wire_bytes(text: str) -> bytes:
    """The bytes a string from the wire stood for (the server decodes them as latin-1)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def hash_choice(pool: Sequence[Upstream], key: bytes) -> Upstream | None:
    """Rendezvous hashing as in Caddy 2.6.2: the available upstream with the highest
    ``FNV-1a-32(key + dial)``; ties keep the earlier upstream, a zero score never wins."""
    prefix = fnv1a_32(key)  # the key comes first, so its part of the hash is shared
    best = None
    highest = 0
    for upstream in pool:
        if not upstream.available():
            continue
        score = prefix
        for byte in upstream.dial.encode("utf-8", "surrogateescape"):
            score = ((score ^ byte) * PRIME32) & MASK32  # fnv1a_32, inlined
        if score > highest:
            highest = score
            best = upstream
    return best


def _least_loaded(candidates: list[Upstream], rng: random.Random) -> Upstream | None:
    """The candidate with the fewest requests in flight; ties broken at random."""
    best: list[Upstream] = []
    least = -1
    for upstream in candidates:
        load = upstream.num_requests
        if least < 0 or load < least:
            least = load
            best = [upstream]
        elif load == least:
            best.append(upstream)
    if not best:
        return None
    return best[0] if len(best) == 1 else rng.choice(best)


def cookie_value(secret: str, dial: str) -> str:
    """Caddy's sticky-session cookie value for an upstream: hex HMAC-SHA256 of its dial."""
    return hmac.new(secret.encode("utf-8"), dial.encode("utf-8"), hashlib.sha256).hexdigest()


# -- the policies ---------------------------------------------------------------------


class RandomSelection:
    """``random``: any available upstream, uniformly."""

    __slots__ = ("rng",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else DEFAULT_RANDOM

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        available = [u for u in pool if u.available()]
        if len(available) < 2:
            return available[0] if available else None
        return self.rng.choice(available)


classImplements(RandomSelection, ISelectionPolicy)


class RandomChoiceSelection:
    """``random_choose N``: the least loaded of N upstreams drawn at random.

    "Power of N choices": nearly as even as ``least_conn`` without every
    request herding onto the same idle upstream.
    """

    __slots__ = ("choose", "rng")

    def __init__(self, choose: int = 2, rng: random.Random | None = None) -> None:
        if choose < 2:
            raise ValueError("choose must be at least 2")
        self.choose = choose
        self.rng = rng if rng is not None else DEFAULT_RANDOM

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        available = [u for u in pool if u.available()]
        if len(available) > self.choose:
            available = self.rng.sample(available, self.choose)
        return _least_loaded(available, self.rng)


classImplements(RandomChoiceSelection, ISelectionPolicy)


class LeastConnSelection:
    """``least_conn``: the available upstream with the fewest requests in flight."""

    __slots__ = ("rng",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else DEFAULT_RANDOM

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        return _least_loaded([u for u in pool if u.available()], self.rng)


classImplements(LeastConnSelection, ISelectionPolicy)


class RoundRobinSelection:
    """``round_robin``: each upstream in turn, skipping unavailable ones.

    txcaddy's first request goes to the first upstream (Caddy's to the
    second); a skipped upstream uses up its turn, as in Caddy.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        count = len(pool)
        if not count:
            return None
        start = self._next
        for offset in range(count):
            index = (start + offset) % count
            upstream = pool[index]
            if upstream.available():
                self._next = index + 1
                return upstream
        self._next = start % count
        return None


classImplements(RoundRobinSelection, ISelectionPolicy)


class WeightedRoundRobinSelection:
    """``weighted_round_robin w1 w2 …`` (Caddy 2.7; zero weights from 2.9).

    Weight ``i`` belongs to upstream ``i``. A counter over the total weight
    picks a turn; turns are laid out upstream after upstream (weights 3 1
    give A A A B). Upstreams with weight 0, or beyond the list of weights,
    are never chosen. As in Caddy, the turn's position is taken among the
    available weighted upstreams, so an unavailable upstream's turns go to
    the ones that follow it. Fewer than two weights: the first available
    upstream.
    """

    __slots__ = ("weights", "_bounds", "_total", "_next")

    def __init__(self, weights: Sequence[int]) -> None:
        weights = list(weights)
        if any(w < 0 for w in weights):
            raise ValueError(f"weights must not be negative: {weights}")
        if len(weights) >= 2 and not any(weights):
            raise ValueError("at least one weight must be positive")
        self.weights = weights
        bounds = []
        total = 0
        for weight in weights:
            if weight > 0:
                total += weight
                bounds.append(total)
        self._bounds = bounds  # cumulative weights of the positive weights
        self._total = total
        self._next = 0

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        weights = self.weights
        if len(weights) < 2:
            for upstream in pool:
                if upstream.available():
                    return upstream
            return None
        turn = self._next
        self._next = (turn + 1) % self._total
        slot = bisect.bisect_right(self._bounds, turn)
        wanted = len(self._bounds)
        candidates = []
        for upstream, weight in zip(pool, weights, strict=False):  # extra upstreams have no weight
            if weight and upstream.available():
                candidates.append(upstream)
                if len(candidates) == wanted:
                    break
        if not candidates:
            return None
        return candidates[slot % len(candidates)]


classImplements(WeightedRoundRobinSelection, ISelectionPolicy)


class FirstSelection:
    """``first``: the first available upstream in configured order (failover)."""

    __slots__ = ()

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        for upstream in pool:
            if upstream.available():
                return upstream
        return None


classImplements(FirstSelection, ISelectionPolicy)


class IPHashSelection:
    """``ip_hash``: hash of the connecting peer's IP address."""

    __slots__ = ()

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        remote = request.remote
        return hash_choice(pool, _wire_bytes(remote[0] if remote else ""))


classImplements(IPHashSelection, ISelectionPolicy)


class ClientIPHashSelection:
    """``client_ip_hash`` (Caddy 2.7): hash of the client IP, which is the peer's
    address unless the server trusts a proxy that said otherwise."""

    __slots__ = ()

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        address = request.vars.get("client_ip")
        if not address:
            remote = request.remote
            address = remote[0] if remote else ""
        else:
            try:
                address = split_host_port(address)[0]
            except AddrError:
                pass
        return hash_choice(pool, _wire_bytes(address))


classImplements(ClientIPHashSelection, ISelectionPolicy)


class URIHashSelection:
    """``uri_hash``: hash of the request target as the client sent it."""

    __slots__ = ()

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        return hash_choice(pool, _wire_bytes(request.request_uri))


classImplements(URIHashSelection, ISelectionPolicy)


class HeaderHashSelection:
    """``header <field>``: hash of the field's first value; ``Host`` is the request's host.

    Without a value the ``fallback`` policy chooses (``random`` by default).
    """

    __slots__ = ("field", "fallback", "_is_host")

    def __init__(self, field: str, fallback: Any = None, rng: random.Random | None = None) -> None:
        if not field:
            raise ValueError("header field is required")
        self.field = field
        self.fallback = fallback if fallback is not None else RandomSelection(rng)
        self._is_host = canonical_key(field) == "Host"

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        value = request.host if self._is_host else request.headers.get(self.field)
        if not value:
            return self.fallback.select(pool, request, response)
        return hash_choice(pool, _wire_bytes(value))


classImplements(HeaderHashSelection, ISelectionPolicy)


class QueryHashSelection:
    """``query <key>`` (Caddy 2.7): hash of the key's query values joined with commas.

    All values count, so a client cannot pick its upstream by repeating the
    key. Without a value the ``fallback`` policy chooses (``random`` by default).
    """

    __slots__ = ("key", "fallback")

    def __init__(self, key: str, fallback: Any = None, rng: random.Random | None = None) -> None:
        if not key:
            raise ValueError("query key is required")
        self.key = key
        self.fallback = fallback if fallback is not None else RandomSelection(rng)

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        values = parse_query(request.query)[0].get(self.key)
        joined = ",".join(values) if values else ""
        if not joined:
            return self.fallback.select(pool, request, response)
        # query values are decoded text (UTF-8 for escaped bytes), as Go's are bytes
        return hash_choice(pool, joined.encode("utf-8", "surrogateescape"))


classImplements(QueryHashSelection, ISelectionPolicy)


class CookieHashSelection:
    """``cookie [<name> [<secret>]]``: sticky sessions.

    A request whose cookie names an available upstream goes there; any other
    (no cookie, an unknown value, that upstream unavailable) is placed by the
    ``fallback`` policy (``random`` by default) and the response gets
    ``Set-Cookie: <name>=<value>; Path=/`` — exactly Caddy 2.6.2's cookie, also
    on HTTPS (no ``Secure``, ``HttpOnly`` or ``SameSite``), with Caddy 2.9's
    ``; Max-Age=<seconds>`` when ``max_age`` is set.
    """

    __slots__ = ("name", "secret", "fallback", "max_age", "_valid_name", "_suffix", "_values")

    #: Upstream dials whose cookie value is remembered, at most (dynamic upstreams churn).
    CACHE_SIZE = 1024

    def __init__(
        self,
        name: str = "lb",
        secret: str = "",
        fallback: Any = None,
        rng: random.Random | None = None,
        max_age: int = 0,
    ) -> None:
        self.name = name or "lb"
        self.secret = secret
        self.fallback = fallback if fallback is not None else RandomSelection(rng)
        self.max_age = max_age  # whole seconds; 0: a session cookie
        self._suffix = f"; Path=/; Max-Age={max_age}" if max_age > 0 else "; Path=/"
        # Go neither reads nor writes a cookie whose name is not a token
        self._valid_name = valid_cookie_name(self.name)
        self._values: dict[str, str] = {}

    def value_for(self, dial: str) -> str:
        """The cookie value that leads to the upstream ``dial``."""
        value = self._values.get(dial)
        if value is None:
            if len(self._values) >= self.CACHE_SIZE:
                self._values.clear()
            value = self._values[dial] = cookie_value(self.secret, dial)
        return value

    def select(self, pool: Sequence[Upstream], request: Request, response: Response | None) -> Upstream | None:
        if self._valid_name and "Cookie" in request.headers:
            wanted = request_cookie(request.headers, self.name)
            if wanted is not None:
                for upstream in pool:
                    if upstream.available() and self.value_for(upstream.dial) == wanted:
                        return upstream
        chosen: Upstream | None = self.fallback.select(pool, request, response)
        if chosen is not None and response is not None and self._valid_name:
            response.headers.add("Set-Cookie", f"{self.name}={self.value_for(chosen.dial)}{self._suffix}")
        return chosen


classImplements(CookieHashSelection, ISelectionPolicy)


# -- loading from JSON ----------------------------------------------------------------


def load_selection_policy(config: Any, context: Any) -> ISelectionPolicy:
    """The policy a handler's ``load_balancing.selection_policy`` describes.

    None (no ``selection_policy``) gives txcaddy's default, round-robin from
    the first upstream; otherwise the module named by ``policy`` is loaded,
    a plugin's included.
    """
    if config is None:
        return RoundRobinSelection()
    policy = context.load_module(NAMESPACE, config, "policy")
    if not ISelectionPolicy.providedBy(policy):
        name = config.get("policy")
        raise ConfigError(
            f"module {NAMESPACE}.{name} is not a selection policy: "
            "its object must provide ISelectionPolicy (@implementer(ISelectionPolicy))"
        )
    return policy


def _rng(context: Any) -> random.Random:
    rng = getattr(context, "rng", None)
    return rng if rng is not None else DEFAULT_RANDOM


def _check_fields(config: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f'unknown field "{unknown[0]}"')


def _string(config: dict[str, Any], key: str) -> str:
    return string(config.get(key), key)


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def _whole_seconds(value: Any, what: str) -> int:
    """A Caddy duration (nanoseconds, or a string like ``"1h"``) in whole seconds."""
    if value is None:
        return 0
    if isinstance(value, str):
        try:
            value = parse_caddy_duration(value)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a duration, got {value!r}")
    return int(value / 1_000_000_000)


def _fallback(config: dict[str, Any], context: Any) -> Any:
    raw = config.get("fallback")
    if raw is None:
        return RandomSelection(_rng(context))
    try:
        return load_selection_policy(raw, context)
    except ConfigError as e:
        raise ConfigError(f"loading fallback selection policy: {e}") from None


_NO_FIELDS: frozenset[str] = frozenset()


@module(f"{NAMESPACE}.random")
def _load_random(config: dict[str, Any], context: Any) -> RandomSelection:
    _check_fields(config, _NO_FIELDS)
    return RandomSelection(_rng(context))


@module(f"{NAMESPACE}.random_choose", schema=Obj({"choose": INT}))
def _load_random_choose(config: dict[str, Any], context: Any) -> RandomChoiceSelection:
    _check_fields(config, frozenset({"choose"}))
    choose = config.get("choose")
    choose = 0 if choose is None else _integer(choose, "choose")
    return RandomChoiceSelection(choose or 2, _rng(context))  # 0 means the default, as in Caddy


@module(f"{NAMESPACE}.least_conn")
def _load_least_conn(config: dict[str, Any], context: Any) -> LeastConnSelection:
    _check_fields(config, _NO_FIELDS)
    return LeastConnSelection(_rng(context))


@module(f"{NAMESPACE}.round_robin")
def _load_round_robin(config: dict[str, Any], context: Any) -> RoundRobinSelection:
    _check_fields(config, _NO_FIELDS)
    return RoundRobinSelection()


@module(f"{NAMESPACE}.weighted_round_robin", schema=Obj({"weights": ListOf(INT)}))
def _load_weighted_round_robin(config: dict[str, Any], context: Any) -> WeightedRoundRobinSelection:
    _check_fields(config, frozenset({"weights"}))
    weights = config.get("weights") or []
    if not isinstance(weights, list):
        raise ValueError("weights must be a list of integers, one per upstream")
    return WeightedRoundRobinSelection([_integer(w, "each weight") for w in weights])


@module(f"{NAMESPACE}.first")
def _load_first(config: dict[str, Any], context: Any) -> FirstSelection:
    _check_fields(config, _NO_FIELDS)
    return FirstSelection()


@module(f"{NAMESPACE}.ip_hash")
def _load_ip_hash(config: dict[str, Any], context: Any) -> IPHashSelection:
    _check_fields(config, _NO_FIELDS)
    return IPHashSelection()


@module(f"{NAMESPACE}.client_ip_hash")
def _load_client_ip_hash(config: dict[str, Any], context: Any) -> ClientIPHashSelection:
    _check_fields(config, _NO_FIELDS)
    return ClientIPHashSelection()


@module(f"{NAMESPACE}.uri_hash")
def _load_uri_hash(config: dict[str, Any], context: Any) -> URIHashSelection:
    _check_fields(config, _NO_FIELDS)
    return URIHashSelection()


@module(f"{NAMESPACE}.header", schema=Obj({"field": STRING, "fallback": Module(NAMESPACE, "policy")}))
def _load_header(config: dict[str, Any], context: Any) -> HeaderHashSelection:
    _check_fields(config, frozenset({"field", "fallback"}))
    field = _string(config, "field")
    if not field:
        raise ValueError("header field is required")
    return HeaderHashSelection(field, _fallback(config, context))


@module(f"{NAMESPACE}.query", schema=Obj({"key": STRING, "fallback": Module(NAMESPACE, "policy")}))
def _load_query(config: dict[str, Any], context: Any) -> QueryHashSelection:
    _check_fields(config, frozenset({"key", "fallback"}))
    key = _string(config, "key")
    if not key:
        raise ValueError("query key is required")
    return QueryHashSelection(key, _fallback(config, context))


@module(f"{NAMESPACE}.cookie", schema=Obj({"name": STRING, "secret": STRING, "fallback": Module(NAMESPACE, "policy")}))
def _load_cookie(config: dict[str, Any], context: Any) -> CookieHashSelection:
    _check_fields(config, frozenset({"name", "secret", "max_age", "fallback"}))
    policy = CookieHashSelection(
        _string(config, "name"),
        _string(config, "secret"),
        _fallback(config, context),
        max_age=_whole_seconds(config.get("max_age"), "max_age"),
    )
    if not policy._valid_name:
        context.log.warn(
            "lb_policy cookie: {name!r} is not a valid cookie name; no cookie is read or set, "
            "so every request is placed by the fallback policy",
            name=policy.name,
        )
    return policy
