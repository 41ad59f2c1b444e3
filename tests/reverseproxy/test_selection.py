"""Load-balancing policies (txcaddy.reverseproxy.selection).

The hash policies must choose exactly what Caddy 2.6.2 chooses. The tables
below were recorded from a live ``caddy`` 2.6.2 on 127.0.0.1 proxying to
three ``respond`` sites (A, B, C at ``127.0.0.1:18101``-``18103``), and a
small FNV-1a written here from the algorithm's definition recomputes them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections import Counter
from typing import Any, TypeVar, cast

from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt_to_json
from txcaddy.config import registry
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.interfaces import ISelectionPolicy
from txcaddy.reverseproxy import selection
from txcaddy.reverseproxy.hosts import Upstream
from txcaddy.reverseproxy.selection import (
    ClientIPHashSelection,
    CookieHashSelection,
    FirstSelection,
    HeaderHashSelection,
    IPHashSelection,
    LeastConnSelection,
    QueryHashSelection,
    RandomChoiceSelection,
    RandomSelection,
    RoundRobinSelection,
    URIHashSelection,
    WeightedRoundRobinSelection,
    hash_choice,
    load_selection_policy,
)
from txcaddy.testing import FakeResponse, FakeTLS, make_request

P = TypeVar("P")

LIVE_DIALS = ("127.0.0.1:18101", "127.0.0.1:18102", "127.0.0.1:18103")
NAMES = dict(zip(LIVE_DIALS, "ABC", strict=True))

# What caddy 2.6.2 answered (A, B or C) for `lb_policy uri_hash`.
LIVE_URI_HASH = {
    "/": "A",
    "/a": "C",
    "/b": "B",
    "/c": "A",
    "/index.html": "C",
    "/search?q=1": "B",
    "/x/y/z": "A",
    "/%41?a=b&c": "A",
    "/foo": "A",
    "/bar": "A",
    "/baz": "A",
    "/qux": "B",
}
# ... for `lb_policy header X-User`
LIVE_HEADER_HASH = {
    "alice": "A",
    "bob": "B",
    "carol": "A",
    "dave": "A",
    "eve": "C",
    "mallory": "C",
    "1": "B",
    "2": "C",
    "3": "A",
    "42": "A",
}
# ... for `lb_policy header Host`
LIVE_HOST_HASH = {"example.com": "A", "a.test": "A", "b.test": "C", "localhost:18116": "A", "c.test": "B"}
# ... and the lb cookie it set (`lb_policy cookie lb s3cret`, `lb_policy cookie`)
LIVE_COOKIE_S3CRET_B = "09c485f66ee92e82d37919f658a783fa276956bca5fc796086bd1164bbbd6e5a"
LIVE_COOKIE_EMPTY_SECRET_C = "c8362d4efb39bd5c1f5a4f6baf549aa2a0357e745cb43f560f3ae07343a4959c"


def fnv1a32(data: bytes) -> int:
    """FNV-1a 32 from its definition (offset basis 2166136261, prime 16777619)."""
    h = 2166136261
    for byte in data:
        h ^= byte
        h = (h * 16777619) % 2**32
    return h


def rendezvous(key: str, dials: list[str]) -> str | None:
    """Caddy 2.6.2's choice: the strictly highest FNV-1a-32 of key + dial."""
    best, highest = None, 0
    for dial in dials:
        score = fnv1a32((key + dial).encode())
        if score > highest:
            best, highest = dial, score
    return best


def cookie_hmac(dial: str, secret: str = "") -> str:
    """The lb cookie as Caddy computes it: hex HMAC-SHA256 of the dial, keyed by the secret."""
    return hmac.new(secret.encode(), dial.encode(), hashlib.sha256).hexdigest()


def make_pool(*dials: str) -> list[Upstream]:
    return [Upstream(dial) for dial in dials]


def live_pool() -> list[Upstream]:
    return make_pool(*LIVE_DIALS)


def down(upstream: Upstream) -> Upstream:
    """Take ``upstream`` out of the pool, as the active health checker does."""
    upstream.host.unhealthy = True
    return upstream


def load(upstream: Upstream, requests: int) -> Upstream:
    """Give ``upstream`` that many requests in flight."""
    upstream.host.num_requests = requests
    return upstream


def dial_of(upstream: Upstream | None) -> str | None:
    """The chosen upstream's dial address, None when nothing was chosen."""
    return None if upstream is None else upstream.dial


def load_as(cls: type[P], config: Any, ctx: LoadContext) -> P:
    """``load_selection_policy``, checking that it made a ``cls``."""
    policy = load_selection_policy(config, ctx)
    assert isinstance(policy, cls), policy
    return policy


def names(chosen: list[Upstream | None]) -> str:
    return "".join("-" if u is None else NAMES.get(u.dial, u.dial) for u in chosen)


def pick(policy: Any, pool: list[Upstream], times: int, **request: Any) -> list[Upstream | None]:
    return [policy.select(pool, make_request(**request), FakeResponse()) for _ in range(times)]


def context(rng: random.Random | None = None) -> LoadContext:
    ctx = LoadContext()
    if rng is not None:
        ctx.rng = rng  # type: ignore[attr-defined]
    return ctx


class RoundRobinTests(SynchronousTestCase):
    def test_starts_at_the_first_upstream(self) -> None:
        """Round robin starts at the first upstream and cycles in order."""
        self.assertEqual(names(pick(RoundRobinSelection(), live_pool(), 7)), "ABCABCA")

    def test_skips_unavailable_upstreams(self) -> None:
        """Round robin passes over unavailable upstreams."""
        pool = live_pool()
        down(pool[1])
        self.assertEqual(names(pick(RoundRobinSelection(), pool, 5)), "ACACA")

    def test_turns_continue_after_the_chosen_upstream(self) -> None:
        """Round robin's next turn follows the upstream last chosen, not the one skipped."""
        policy = RoundRobinSelection()
        pool = live_pool()
        self.assertEqual(names(pick(policy, pool, 1)), "A")
        down(pool[1])
        self.assertEqual(names(pick(policy, pool, 1)), "C")
        pool[1].host.unhealthy = False
        self.assertEqual(names(pick(policy, pool, 3)), "ABC")

    def test_nothing_available(self) -> None:
        """Round robin chooses nothing when no upstream is available or the pool is empty."""
        pool = [down(u) for u in live_pool()]
        self.assertEqual(names(pick(RoundRobinSelection(), pool, 2)), "--")
        self.assertIsNone(RoundRobinSelection().select([], make_request(), None))

    def test_pool_size_change(self) -> None:
        """Round robin's counter wraps over the current pool when the pool shrinks."""
        policy = RoundRobinSelection()
        pool = live_pool()
        self.assertEqual(names(pick(policy, pool, 2)), "AB")
        self.assertEqual(names(pick(policy, pool[:2], 3)), "ABA")

    def test_default_policy_is_round_robin_per_handler(self) -> None:
        """Without a policy config each handler gets its own round robin."""
        first = load_selection_policy(None, context())
        second = load_selection_policy(None, context())
        self.assertIsInstance(first, RoundRobinSelection)
        self.assertIsNot(first, second)
        pool = live_pool()
        self.assertEqual(names(pick(first, pool, 2)), "AB")
        self.assertEqual(names(pick(second, pool, 1)), "A")


class RandomTests(SynchronousTestCase):
    def test_uniform_over_available(self) -> None:
        """random chooses uniformly among the available upstreams only."""
        pool = make_pool("a:1", "b:1", "c:1", "d:1")
        down(pool[3])
        counts = Counter(dial_of(u) for u in pick(RandomSelection(random.Random(7)), pool, 3000))
        self.assertEqual(set(counts), {"a:1", "b:1", "c:1"})
        for dial in ("a:1", "b:1", "c:1"):
            self.assertTrue(900 < counts[dial] < 1100, counts)

    def test_seeded_generator_repeats(self) -> None:
        """random with equally seeded generators makes the same choices."""
        pool = live_pool()
        first = names(pick(RandomSelection(random.Random(3)), pool, 20))
        self.assertEqual(names(pick(RandomSelection(random.Random(3)), pool, 20)), first)

    def test_single_and_none(self) -> None:
        """random picks the only available upstream, or none when none is available."""
        pool = live_pool()
        down(pool[0])
        down(pool[2])
        self.assertEqual(names(pick(RandomSelection(random.Random(1)), pool, 3)), "BBB")
        down(pool[1])
        self.assertEqual(names(pick(RandomSelection(random.Random(1)), pool, 1)), "-")


class RandomChooseTests(SynchronousTestCase):
    def test_least_loaded_of_the_sample(self) -> None:
        """random_choose takes the least loaded of a random sample of that size."""
        pool = make_pool("idle:1", "busy:1", "busiest:1")
        load(pool[1], 5)
        load(pool[2], 9)
        counts = Counter(dial_of(u) for u in pick(RandomChoiceSelection(2, random.Random(5)), pool, 3000))
        # any two of the three include a less loaded one than "busiest"
        self.assertNotIn("busiest:1", counts)
        # "idle" is in two samples out of three
        self.assertTrue(1900 < counts["idle:1"] < 2100, counts)
        self.assertEqual(counts["idle:1"] + counts["busy:1"], 3000)

    def test_sample_as_large_as_the_pool_is_least_conn(self) -> None:
        """random_choose sampling the whole pool always takes the least loaded upstream."""
        pool = make_pool("a:1", "b:1", "c:1")
        load(pool[0], 3)
        load(pool[1], 1)
        load(pool[2], 2)
        self.assertEqual({dial_of(u) for u in pick(RandomChoiceSelection(3, random.Random(1)), pool, 50)}, {"b:1"})

    def test_strictly_less_loaded_wins_whatever_the_order(self) -> None:
        # (Caddy's tie list keeps a busier upstream drawn first; txcaddy takes the least loaded)
        """random_choose takes a strictly less loaded upstream whatever the draw order."""
        pool = make_pool("busy:1", "less:1")
        load(pool[0], 5)
        load(pool[1], 3)
        self.assertEqual({dial_of(u) for u in pick(RandomChoiceSelection(2, random.Random(2)), pool, 50)}, {"less:1"})

    def test_ties_are_random(self) -> None:
        """random_choose breaks ties between equally loaded upstreams at random."""
        pool = make_pool("a:1", "b:1", "c:1")
        for u in pool:
            load(u, 4)
        counts = Counter(dial_of(u) for u in pick(RandomChoiceSelection(2, random.Random(9)), pool, 3000))
        for dial in ("a:1", "b:1", "c:1"):
            self.assertTrue(900 < counts[dial] < 1100, counts)

    def test_unavailable_never_drawn(self) -> None:
        """random_choose never draws unavailable upstreams; with none available it gives None."""
        pool = make_pool("a:1", "b:1", "c:1")
        down(pool[0])
        load(pool[1], 7)
        load(pool[2], 8)
        self.assertEqual({dial_of(u) for u in pick(RandomChoiceSelection(2, random.Random(4)), pool, 50)}, {"b:1"})
        down(pool[1])
        down(pool[2])
        self.assertIsNone(RandomChoiceSelection(2).select(pool, make_request(), None))

    def test_choose_must_be_two_or_more(self) -> None:
        """random_choose refuses a sample size under 2."""
        self.assertRaises(ValueError, RandomChoiceSelection, 1)


class LeastConnTests(SynchronousTestCase):
    def test_fewest_requests(self) -> None:
        """least_conn takes the upstream with the fewest requests in flight."""
        pool = live_pool()
        load(pool[0], 2)
        load(pool[1], 1)
        load(pool[2], 3)
        self.assertEqual(names(pick(LeastConnSelection(random.Random(1)), pool, 4)), "BBBB")

    def test_ties_broken_at_random(self) -> None:
        """least_conn breaks ties at random, between the tied upstreams only."""
        pool = live_pool()
        load(pool[0], 1)
        load(pool[1], 1)
        load(pool[2], 4)
        counts = Counter(names(pick(LeastConnSelection(random.Random(11)), pool, 2000)))
        self.assertEqual(set(counts), {"A", "B"})
        self.assertTrue(900 < counts["A"] < 1100, counts)

    def test_unavailable_least_loaded_is_passed_over(self) -> None:
        """least_conn passes over unavailable upstreams, however idle."""
        pool = live_pool()
        load(pool[1], 3)
        load(pool[2], 6)
        down(pool[0])
        self.assertEqual(names(pick(LeastConnSelection(random.Random(1)), pool, 2)), "BB")
        down(pool[1])
        down(pool[2])
        self.assertEqual(names(pick(LeastConnSelection(random.Random(1)), pool, 1)), "-")


class FirstTests(SynchronousTestCase):
    def test_first_available(self) -> None:
        """first takes the first available upstream, or none."""
        pool = live_pool()
        self.assertEqual(names(pick(FirstSelection(), pool, 2)), "AA")
        down(pool[0])
        self.assertEqual(names(pick(FirstSelection(), pool, 2)), "BB")
        down(pool[1])
        down(pool[2])
        self.assertEqual(names(pick(FirstSelection(), pool, 1)), "-")


class WeightedRoundRobinTests(SynchronousTestCase):
    def test_turns_in_upstream_order(self) -> None:
        """weighted_round_robin gives each upstream its weight's turns in a row, in order."""
        policy = WeightedRoundRobinSelection([3, 1])
        self.assertEqual(names(pick(policy, live_pool()[:2], 8)), "AAABAAAB")

    def test_zero_weights_are_never_chosen(self) -> None:
        """weighted_round_robin never chooses an upstream of weight 0."""
        policy = WeightedRoundRobinSelection([2, 0, 1])
        self.assertEqual(names(pick(policy, live_pool(), 6)), "AACAAC")

    def test_upstreams_without_a_weight_are_never_chosen(self) -> None:
        """weighted_round_robin never chooses upstreams beyond its list of weights."""
        policy = WeightedRoundRobinSelection([1, 2])
        self.assertEqual(names(pick(policy, live_pool(), 6)), "ABBABB")

    def test_an_unavailable_upstreams_turns_go_to_the_next(self) -> None:
        """An unavailable upstream's turns go to the available ones, laid out as Caddy's."""
        pool = live_pool()
        down(pool[0])
        policy = WeightedRoundRobinSelection([3, 1, 1])
        # weighted slots A A A B C over the available weighted upstreams [B, C]:
        # slot 0 → B, slot 1 → C, slot 2 → B (as Caddy lays them out)
        self.assertEqual(names(pick(policy, pool, 5)), "BBBCB")

    def test_fewer_than_two_weights_means_first_available(self) -> None:
        """weighted_round_robin with fewer than two weights takes the first available upstream."""
        pool = live_pool()
        self.assertEqual(names(pick(WeightedRoundRobinSelection([5]), pool, 2)), "AA")
        down(pool[0])
        self.assertEqual(names(pick(WeightedRoundRobinSelection([]), pool, 2)), "BB")

    def test_nothing_available(self) -> None:
        """weighted_round_robin chooses nothing when no upstream is available."""
        pool = [down(u) for u in live_pool()]
        self.assertEqual(names(pick(WeightedRoundRobinSelection([1, 1, 1]), pool, 2)), "--")
        self.assertIsNone(WeightedRoundRobinSelection([1, 1]).select([], make_request(), None))

    def test_bad_weights(self) -> None:
        """Negative weights, or no positive weight, are refused."""
        self.assertRaises(ValueError, WeightedRoundRobinSelection, [1, -1])
        self.assertRaises(ValueError, WeightedRoundRobinSelection, [0, 0])


class HashTests(SynchronousTestCase):
    """Rendezvous hashing: exactly Caddy 2.6.2's choices."""

    def test_uri_hash_matches_live_caddy(self) -> None:
        """uri_hash chooses what Caddy 2.6.2 chose, and what rendezvous FNV-1a computes."""
        policy = URIHashSelection()
        for uri, expected in LIVE_URI_HASH.items():
            chosen = policy.select(live_pool(), make_request(target=uri), None)
            self.assertEqual(names([chosen]), expected, uri)
            self.assertEqual(dial_of(chosen), rendezvous(uri, list(LIVE_DIALS)), uri)

    def test_uri_hash_uses_the_target_as_received(self) -> None:
        """uri_hash hashes the request target as received, not a rewritten path."""
        request = make_request(target="/a")
        request.set_path("/rewritten")
        self.assertEqual(names([URIHashSelection().select(live_pool(), request, None)]), "C")

    def test_header_hash_matches_live_caddy(self) -> None:
        """header hashing chooses what Caddy 2.6.2 chose for each value."""
        policy = HeaderHashSelection("X-User")
        for value, expected in LIVE_HEADER_HASH.items():
            chosen = policy.select(live_pool(), make_request(headers={"X-User": value}), None)
            self.assertEqual(names([chosen]), expected, value)

    def test_header_hash_first_value(self) -> None:
        """header hashing uses the field's first value, whatever the name's case."""
        request = make_request(headers=[("X-User", "eve"), ("X-User", "bob")])
        self.assertEqual(names([HeaderHashSelection("x-user").select(live_pool(), request, None)]), "C")

    def test_host_field_hashes_the_request_host(self) -> None:
        """header Host, in either case, hashes the request's host as Caddy 2.6.2."""
        for spelling in ("Host", "host"):
            policy = HeaderHashSelection(spelling)
            for host, expected in LIVE_HOST_HASH.items():
                chosen = policy.select(live_pool(), make_request(host=host), None)
                self.assertEqual(names([chosen]), expected, (spelling, host))

    def test_ip_hash_matches_live_caddy(self) -> None:
        """ip_hash chooses what Caddy 2.6.2 chose for 127.0.0.1."""
        chosen = IPHashSelection().select(live_pool(), make_request(remote=("127.0.0.1", 40000)), None)
        self.assertEqual(names([chosen]), "A")

    def test_ip_hash_ignores_the_port_and_forwarded_headers(self) -> None:
        """ip_hash hashes the peer's address alone: no port, no X-Forwarded-For."""
        policy = IPHashSelection()
        dials = [f"10.0.0.{i}:80" for i in range(1, 6)]
        for ip in ("192.0.2.1", "192.0.2.77", "2001:db8::5"):
            expected = rendezvous(ip, dials)
            for port in (1, 65000):
                request = make_request(remote=(ip, port), headers={"X-Forwarded-For": "203.0.113.9"})
                self.assertEqual(dial_of(policy.select(make_pool(*dials), request, None)), expected)

    def test_client_ip_hash(self) -> None:
        """client_ip_hash hashes the client_ip var without its port, else the peer's address."""
        policy = ClientIPHashSelection()
        dials = [f"10.0.0.{i}:80" for i in range(1, 6)]
        request = make_request(remote=("127.0.0.1", 5555))
        self.assertEqual(dial_of(policy.select(make_pool(*dials), request, None)), rendezvous("127.0.0.1", dials))
        for client_ip in ("198.51.100.4", "198.51.100.4:8080"):
            request.vars["client_ip"] = client_ip
            self.assertEqual(dial_of(policy.select(make_pool(*dials), request, None)), rendezvous("198.51.100.4", dials))
        request.vars["client_ip"] = "[2001:db8::1]:443"
        self.assertEqual(dial_of(policy.select(make_pool(*dials), request, None)), rendezvous("2001:db8::1", dials))

    def test_query_hash_joins_every_value(self) -> None:
        """query hashing hashes the key's decoded values joined by commas."""
        policy = QueryHashSelection("user")
        dials = [f"10.0.0.{i}:80" for i in range(1, 6)]
        for target, key in (
            ("/?user=alice", "alice"),
            ("/p?x=1&user=alice&user=bob", "alice,bob"),
            ("/?user=%41l+ice", "Al ice"),
            ("/?user=caf%C3%A9", "café"),
        ):
            chosen = policy.select(make_pool(*dials), make_request(target=target), None)
            self.assertEqual(dial_of(chosen), rendezvous(key, dials), target)

    def test_query_hash_uses_the_current_query(self) -> None:
        """query hashing uses the request's current query, rewrites included."""
        request = make_request(target="/?user=alice")
        request.query = "user=bob"
        dials = [f"10.0.0.{i}:80" for i in range(1, 6)]
        self.assertEqual(dial_of(QueryHashSelection("user").select(make_pool(*dials), request, None)), rendezvous("bob", dials))

    def test_many_keys_agree_with_the_definition(self) -> None:
        """uri_hash agrees with rendezvous FNV-1a-32 on many random keys and dials."""
        rng = random.Random(42)
        dials = [f"192.168.{rng.randrange(256)}.{rng.randrange(256)}:{rng.randrange(1, 65536)}" for _ in range(7)]
        for _ in range(300):
            key = "/" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789/?=&") for _ in range(rng.randrange(1, 30)))
            chosen = URIHashSelection().select(make_pool(*dials), make_request(target=key), None)
            self.assertEqual(dial_of(chosen), rendezvous(key, dials), key)

    def test_sticky_and_stable(self) -> None:
        """Hash choices repeat, and taking an upstream away moves only its own keys."""
        dials = [f"10.0.0.{i}:80" for i in range(1, 6)]
        pool = make_pool(*dials)
        policy = HeaderHashSelection("X-User")
        keys = [f"user{i}" for i in range(200)]
        before = {k: policy.select(pool, make_request(headers={"X-User": k}), None) for k in keys}
        again = {k: policy.select(pool, make_request(headers={"X-User": k}), None) for k in keys}
        self.assertEqual(before, again)
        self.assertIn(pool[2], before.values())  # some keys were on the upstream taken away
        # taking one upstream away only moves the keys that were on it
        down(pool[2])
        after = {k: policy.select(pool, make_request(headers={"X-User": k}), None) for k in keys}
        for k in keys:
            if before[k] is pool[2]:
                self.assertIsNot(after[k], pool[2])
                self.assertEqual(dial_of(after[k]), rendezvous(k, dials[:2] + dials[3:]))
            else:
                self.assertIs(after[k], before[k])

    def test_nothing_available(self) -> None:
        """Hash policies choose nothing when no upstream is available."""
        pool = [down(u) for u in live_pool()]
        for policy in (URIHashSelection(), IPHashSelection(), ClientIPHashSelection(), HeaderHashSelection("Host")):
            self.assertIsNone(policy.select(pool, make_request(), None))

    def test_zero_score_never_wins(self) -> None:
        # FNV-1a-32("/zero" + "10.0.0.1:18800Uh") is 0, so that upstream can never be chosen
        """An upstream scoring 0 is never chosen, as in Caddy's strict comparison."""
        self.assertEqual(fnv1a32(b"/zero10.0.0.1:18800Uh"), 0)
        pool = make_pool("10.0.0.1:18800Uh")
        self.assertIsNone(hash_choice(pool, b"/zero"))
        self.assertIsNone(URIHashSelection().select(pool, make_request(target="/zero"), None))
        pool = make_pool("10.0.0.1:18800Uh", "10.0.0.2:80")
        self.assertEqual(dial_of(hash_choice(pool, b"/zero")), "10.0.0.2:80")

    def test_ties_keep_the_earlier_upstream(self) -> None:
        """Of upstreams with equal scores the earlier in the pool wins."""
        self.assertEqual(fnv1a32(b"/tie10.1.412.249:80"), fnv1a32(b"/tie10.1.581.240:80"))
        self.assertEqual(dial_of(hash_choice(make_pool("10.1.412.249:80", "10.1.581.240:80"), b"/tie")), "10.1.412.249:80")
        self.assertEqual(dial_of(hash_choice(make_pool("10.1.581.240:80", "10.1.412.249:80"), b"/tie")), "10.1.581.240:80")

    def test_missing_value_uses_the_fallback(self) -> None:
        """An absent or empty header or query value leaves the choice to the fallback policy."""
        pool = live_pool()
        fallback = WeightedRoundRobinSelection([1, 1, 1])
        header = HeaderHashSelection("X-User", fallback)
        self.assertEqual(names(pick(header, pool, 3)), "ABC")
        self.assertEqual(names(pick(header, pool, 2, headers={"X-User": ""})), "AB")
        query = QueryHashSelection("user", FirstSelection())
        self.assertEqual(names(pick(query, pool, 2, target="/?other=1")), "AA")
        self.assertEqual(names(pick(query, pool, 1, target="/?user=")), "A")

    def test_default_fallback_is_random(self) -> None:
        """The default fallback of hash policies is random."""
        policy = HeaderHashSelection("X-User", rng=random.Random(8))
        self.assertIsInstance(policy.fallback, RandomSelection)
        self.assertEqual(set(names(pick(policy, live_pool(), 100))), set("ABC"))


class CookieTests(SynchronousTestCase):
    def value(self, dial: str, secret: str = "") -> str:
        return cookie_hmac(dial, secret)

    def test_new_client_gets_a_cookie(self) -> None:
        """A request without the cookie gets the fallback's upstream and a Set-Cookie naming it."""
        policy = CookieHashSelection("lb", "s3cret", fallback=FirstSelection())
        pool = live_pool()
        down(pool[0])
        response = FakeResponse()
        chosen = policy.select(pool, make_request(), response)
        self.assertEqual(names([chosen]), "B")
        self.assertEqual(response.headers.get_all("Set-Cookie"), [f"lb={LIVE_COOKIE_S3CRET_B}; Path=/"])
        self.assertEqual(LIVE_COOKIE_S3CRET_B, self.value("127.0.0.1:18102", "s3cret"))

    def test_empty_secret(self) -> None:
        """Without a secret the cookie is the HMAC of the dial with an empty key, as Caddy's."""
        policy = CookieHashSelection(fallback=WeightedRoundRobinSelection([0, 0, 1]))
        response = FakeResponse()
        self.assertEqual(names([policy.select(live_pool(), make_request(), response)]), "C")
        self.assertEqual(response.headers.get_all("Set-Cookie"), [f"lb={LIVE_COOKIE_EMPTY_SECRET_C}; Path=/"])

    def test_sticky_when_the_cookie_names_an_available_upstream(self) -> None:
        """A cookie naming an available upstream sends the request there, setting no cookie."""
        policy = CookieHashSelection("sess", "k", fallback=FirstSelection())
        for dial in LIVE_DIALS:
            response = FakeResponse()
            request = make_request(headers={"Cookie": f"other=1; sess={self.value(dial, 'k')}"})
            self.assertEqual(dial_of(policy.select(live_pool(), request, response)), dial)
            self.assertNotIn("Set-Cookie", response.headers)

    def test_unknown_or_unavailable_cookie_is_replaced(self) -> None:
        """A cookie naming no available upstream is replaced by the fallback's choice."""
        policy = CookieHashSelection(fallback=FirstSelection())
        pool = live_pool()
        response = FakeResponse()
        self.assertEqual(names([policy.select(pool, make_request(headers={"Cookie": "lb=bogus"}), response)]), "A")
        self.assertEqual(response.headers.get_all("Set-Cookie"), [f"lb={self.value(LIVE_DIALS[0])}; Path=/"])
        down(pool[2])
        response = FakeResponse()
        request = make_request(headers={"Cookie": f"lb={self.value(LIVE_DIALS[2])}"})
        self.assertEqual(names([policy.select(pool, request, response)]), "A")
        self.assertEqual(response.headers.get_all("Set-Cookie"), [f"lb={self.value(LIVE_DIALS[0])}; Path=/"])

    def test_cookie_parsing_as_go(self) -> None:
        """Cookies are parsed as Go's net/http: quotes stripped, invalid values skipped."""
        policy = CookieHashSelection(fallback=FirstSelection())
        b = self.value(LIVE_DIALS[1])
        for cookies, expected, set_cookie in (
            ([f'lb="{b}"'], "B", False),  # quotes are stripped
            ([f"lb=a\\b; lb={b}"], "B", False),  # an invalid value is skipped
            (["lb=bad\\x", f"lb={b}"], "B", False),  # across Cookie fields too
            ([f"lb=bogus; lb={b}"], "A", True),  # the first valid one counts
            ([f"LB={b}"], "A", True),  # names are case-sensitive
        ):
            response = FakeResponse()
            request = make_request(headers=[("Cookie", c) for c in cookies])
            self.assertEqual(names([policy.select(live_pool(), request, response)]), expected, cookies)
            self.assertEqual("Set-Cookie" in response.headers, set_cookie, cookies)

    def test_set_cookie_is_added(self) -> None:
        """The lb cookie is added after the response's other Set-Cookie fields."""
        policy = CookieHashSelection(fallback=FirstSelection())
        response = FakeResponse()
        response.headers.add("Set-Cookie", "app=1")
        policy.select(live_pool(), make_request(), response)
        self.assertEqual(response.headers.get_all("Set-Cookie"), ["app=1", f"lb={self.value(LIVE_DIALS[0])}; Path=/"])

    def test_same_cookie_over_tls(self) -> None:
        # Caddy 2.6.2 sets no Secure/SameSite/HttpOnly, HTTPS or not (checked live)
        """Over TLS the cookie is the same, with no Secure, SameSite or HttpOnly."""
        policy = CookieHashSelection(fallback=FirstSelection())
        response = FakeResponse()
        policy.select(live_pool(), make_request(tls=FakeTLS("localhost")), response)
        self.assertEqual(response.headers.get_all("Set-Cookie"), [f"lb={self.value(LIVE_DIALS[0])}; Path=/"])

    def test_max_age(self) -> None:
        """A max_age adds Max-Age to the cookie."""
        policy = CookieHashSelection(fallback=FirstSelection(), max_age=3600)
        response = FakeResponse()
        policy.select(live_pool(), make_request(), response)
        self.assertEqual(
            response.headers.get_all("Set-Cookie"), [f"lb={self.value(LIVE_DIALS[0])}; Path=/; Max-Age=3600"]
        )

    def test_nothing_available_sets_no_cookie(self) -> None:
        """With no upstream available the cookie policy chooses none and sets no cookie."""
        policy = CookieHashSelection()
        response = FakeResponse()
        self.assertIsNone(policy.select([down(u) for u in live_pool()], make_request(), response))
        self.assertNotIn("Set-Cookie", response.headers)

    def test_without_a_response(self) -> None:
        """The cookie policy still chooses when there is no response to set a cookie on."""
        policy = CookieHashSelection(fallback=FirstSelection())
        self.assertEqual(names([policy.select(live_pool(), make_request(), None)]), "A")

    def test_invalid_cookie_name_is_neither_read_nor_set(self) -> None:
        """A cookie name that is not a valid token is neither read nor set."""
        policy = CookieHashSelection("my cookie", fallback=FirstSelection())
        response = FakeResponse()
        request = make_request(headers={"Cookie": f"my cookie={self.value(LIVE_DIALS[2])}"})
        self.assertEqual(names([policy.select(live_pool(), request, response)]), "A")
        self.assertNotIn("Set-Cookie", response.headers)

    def test_random_by_default(self) -> None:
        """The cookie policy's default fallback is random."""
        policy = CookieHashSelection(rng=random.Random(3))
        chosen = Counter(names([policy.select(live_pool(), make_request(), FakeResponse()) for _ in range(300)]))
        self.assertEqual(set(chosen), set("ABC"))


class LoaderTests(SynchronousTestCase):
    POLICIES: dict[str, tuple[dict[str, Any], type]] = {
        "random": ({}, RandomSelection),
        "random_choose": ({"choose": 3}, RandomChoiceSelection),
        "least_conn": ({}, LeastConnSelection),
        "round_robin": ({}, RoundRobinSelection),
        "weighted_round_robin": ({"weights": [2, 1]}, WeightedRoundRobinSelection),
        "first": ({}, FirstSelection),
        "ip_hash": ({}, IPHashSelection),
        "client_ip_hash": ({}, ClientIPHashSelection),
        "uri_hash": ({}, URIHashSelection),
        "header": ({"field": "X-User"}, HeaderHashSelection),
        "query": ({"key": "user"}, QueryHashSelection),
        "cookie": ({"name": "sess", "secret": "k"}, CookieHashSelection),
    }

    def test_every_module_is_registered(self) -> None:
        """Every Caddy selection policy module is registered, and no other."""
        self.assertEqual(set(registry.known(f"{selection.NAMESPACE}.")), set(self.POLICIES))

    def test_each_module_loads(self) -> None:
        """Each policy module loads as its class, providing ISelectionPolicy."""
        for name, (config, cls) in self.POLICIES.items():
            policy = load_selection_policy({"policy": name, **config}, context())
            self.assertIsInstance(policy, cls, name)
            self.assertTrue(ISelectionPolicy.providedBy(policy), name)

    def test_fresh_instance_per_load(self) -> None:
        """Each load makes a new policy instance, with its own state."""
        config = {"policy": "round_robin"}
        self.assertIsNot(load_selection_policy(config, context()), load_selection_policy(config, context()))

    def test_fields(self) -> None:
        """Config fields reach the policies, with Caddy's defaults (choose 2, cookie "lb")."""
        ctx = context()
        self.assertEqual(load_as(RandomChoiceSelection, {"policy": "random_choose"}, ctx).choose, 2)
        self.assertEqual(load_as(RandomChoiceSelection, {"policy": "random_choose", "choose": 0}, ctx).choose, 2)
        cookie = load_as(CookieHashSelection, {"policy": "cookie"}, ctx)
        self.assertEqual((cookie.name, cookie.secret, cookie.max_age), ("lb", "", 0))
        cookie = load_as(CookieHashSelection, {"policy": "cookie", "max_age": 3600 * 10**9}, ctx)
        self.assertEqual(cookie.max_age, 3600)
        cookie = load_as(CookieHashSelection, {"policy": "cookie", "max_age": "90m"}, ctx)
        self.assertEqual(cookie.max_age, 5400)
        weighted = load_as(WeightedRoundRobinSelection, {"policy": "weighted_round_robin", "weights": [0, 3]}, ctx)
        self.assertEqual(weighted.weights, [0, 3])

    def test_fallback(self) -> None:
        """Fallback policies load nested; hash policies default to a random fallback."""
        config: dict[str, Any] = {
            "policy": "cookie",
            "fallback": {"policy": "header", "field": "X-User", "fallback": {"policy": "first"}},
        }
        policy = load_as(CookieHashSelection, config, context())
        self.assertIsInstance(policy.fallback, HeaderHashSelection)
        self.assertIsInstance(cast(HeaderHashSelection, policy.fallback).fallback, FirstSelection)
        header = load_as(HeaderHashSelection, {"policy": "header", "field": "F"}, context())
        self.assertIsInstance(header.fallback, RandomSelection)
        query = load_as(QueryHashSelection, {"policy": "query", "key": "k"}, context())
        self.assertIsInstance(query.fallback, RandomSelection)
        cookie = load_as(CookieHashSelection, {"policy": "cookie"}, context())
        self.assertIsInstance(cookie.fallback, RandomSelection)

    def test_invalid_cookie_name_warns(self) -> None:
        """An invalid cookie name logs one warning at load; a valid one logs none."""
        events: list[dict[str, Any]] = []
        ctx = LoadContext(log=Logger(namespace="test", observer=cast(ILogObserver, events.append)))
        load_selection_policy({"policy": "cookie", "name": "my cookie"}, ctx)
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.warn)
        self.assertIn("not a valid cookie name", formatEvent(events[0]))
        load_selection_policy({"policy": "cookie", "name": "my-cookie"}, ctx)
        self.assertEqual(len(events), 1)

    def test_generator_from_the_context(self) -> None:
        """Policies take the load context's random generator, else the shared default."""
        rng = random.Random(1)
        self.assertIs(load_as(RandomSelection, {"policy": "random"}, context(rng)).rng, rng)
        self.assertIs(load_as(LeastConnSelection, {"policy": "least_conn"}, context(rng)).rng, rng)
        self.assertIs(load_as(HeaderHashSelection, {"policy": "header", "field": "X"}, context(rng)).fallback.rng, rng)
        self.assertIs(load_as(RandomSelection, {"policy": "random"}, context()).rng, selection.DEFAULT_RANDOM)

    def assertConfigError(self, config: Any, *fragments: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            load_selection_policy(config, context())
        for fragment in fragments:
            self.assertIn(fragment, str(caught.exception))

    def test_bad_configs(self) -> None:
        """Bad policy configs fail with messages naming the module and the field."""
        ns = selection.NAMESPACE
        self.assertConfigError({"policy": "sticky"}, f"module not registered: {ns}.sticky")
        self.assertConfigError({}, "expected a 'policy' field")
        self.assertConfigError("random", "must be a JSON object")
        self.assertConfigError({"policy": "random", "choose": 2}, f"{ns}.random", 'unknown field "choose"')
        self.assertConfigError({"policy": "round_robin", "weights": [1]}, 'unknown field "weights"')
        self.assertConfigError({"policy": "random_choose", "choose": 1}, "choose must be at least 2")
        self.assertConfigError({"policy": "random_choose", "choose": -3}, "choose must be at least 2")
        self.assertConfigError({"policy": "random_choose", "choose": "3"}, "choose of type int")
        self.assertConfigError({"policy": "header"}, "header field is required")
        self.assertConfigError({"policy": "header", "field": 3}, "field of type string")
        self.assertConfigError({"policy": "query"}, "query key is required")
        self.assertConfigError({"policy": "cookie", "secret": ["x"]}, "secret of type string")
        self.assertConfigError({"policy": "cookie", "max_age": "soon"}, "max_age")
        self.assertConfigError({"policy": "weighted_round_robin", "weights": [1, -1]}, "must not be negative")
        self.assertConfigError({"policy": "weighted_round_robin", "weights": [0, 0]}, "at least one weight must be positive")
        self.assertConfigError({"policy": "weighted_round_robin", "weights": 3}, "weights of type []int")
        self.assertConfigError({"policy": "weighted_round_robin", "weights": [1, 1.5]}, "weights[1] of type int")
        self.assertConfigError(
            {"policy": "header", "field": "X", "fallback": {"policy": "sticky"}},
            "loading fallback selection policy",
            f"module not registered: {ns}.sticky",
        )
        self.assertConfigError({"policy": "query", "key": "k", "fallback": "random"}, "query.fallback of type object")

    def test_module_that_is_not_a_policy(self) -> None:
        """A registered module that does not provide ISelectionPolicy is a config error."""
        module_id = f"{selection.NAMESPACE}.not_a_policy"
        registry.lookup(f"{selection.NAMESPACE}.random")  # builtins registered first
        registry.MODULES[module_id] = lambda config, ctx: object()
        self.addCleanup(registry.MODULES.pop, module_id)
        self.assertConfigError({"policy": "not_a_policy"}, "is not a selection policy")

    def test_a_plugin_policy_is_usable(self) -> None:
        """A plugin's selection policy module can be used, here as a fallback."""
        module_id = f"{selection.NAMESPACE}.last"

        class Last:
            def select(self, pool: Any, request: Any, response: Any) -> Any:
                available = [u for u in pool if u.available()]
                return available[-1] if available else None

        from zope.interface import directlyProvides

        def factory(config: Any, ctx: Any) -> Any:
            policy = Last()
            directlyProvides(policy, ISelectionPolicy)
            return policy

        registry.lookup(f"{selection.NAMESPACE}.random")
        registry.MODULES[module_id] = factory
        self.addCleanup(registry.MODULES.pop, module_id)
        policy = load_selection_policy({"policy": "header", "field": "X", "fallback": {"policy": "last"}}, context())
        self.assertEqual(names(pick(policy, live_pool(), 1)), "C")

    def test_caddyfile_to_policy(self) -> None:
        """A Caddyfile's nested lb_policy adapts and loads into a working chain of policies."""
        text = (
            ":8080 {\n\treverse_proxy 127.0.0.1:18101 127.0.0.1:18102 127.0.0.1:18103 {\n"
            "\t\tlb_policy cookie sess k {\n\t\t\tfallback query user {\n\t\t\t\tfallback first\n"
            "\t\t\t}\n\t\t}\n\t}\n}\n"
        )
        output, _ = adapt_to_json(text, "Caddyfile", environ={})
        handler = json.loads(output)["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]
        policy = load_selection_policy(handler["load_balancing"]["selection_policy"], context())
        pool = live_pool()
        response = FakeResponse()
        chosen = policy.select(pool, make_request(target="/?user=alice"), response)
        expected = rendezvous("alice", list(LIVE_DIALS))
        assert expected is not None
        self.assertEqual(dial_of(chosen), expected)
        self.assertEqual(response.headers.get_all("Set-Cookie"), [f"sess={cookie_hmac(expected, 'k')}; Path=/"])
        self.assertEqual(names(pick(policy, pool, 1, target="/")), "A")
