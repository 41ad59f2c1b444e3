"""A fleet on Redis: three txcaddy instances (in-process services on one reactor, each on its
own ports) share one ``redis-server`` as their storage and get one site's certificate from
Debian's ``pebble``: one order for the whole fleet, one certificate served by all three, and
a lock left by a dead holder that expires instead of blocking the fleet.

pebble runs with ``PEBBLE_VA_ALWAYS_VALID`` so whichever instance wins the lock can order
(the challenge ports are pebble's, and only one instance could listen there); the
challenges themselves are tested in ``test_acme.py``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from cryptography import x509
from twisted.internet.defer import DeferredList
from twisted.trial.unittest import TestCase

from tests._child import free_port
from tests.integration.test_acme import REACTOR, fetch
from tests.tls._redis import NO_REDIS, REDIS_SERVER, RedisServer
from tests.tls.test_acme import CHALLTESTSRV, NO_PEBBLE, PEBBLE, Pebble
from txcaddy import fromCaddyfile

PREFIX = "fleet"
SITE = "a.test"


class FleetTests(TestCase):
    timeout = 60

    if PEBBLE is None or CHALLTESTSRV is None:
        skip = NO_PEBBLE
    elif REDIS_SERVER is None:
        skip = NO_REDIS

    async def setUp(self) -> None:  # type: ignore[override]
        self.redis_server = RedisServer()
        self.redis_server.start()
        self.addCleanup(self.redis_server.stop)  # last: the instances release their locks first
        self.redis = self.redis_server.client()
        self.patch(os, "environ", {**os.environ, "PEBBLE_VA_ALWAYS_VALID": "1"})
        self.pebble = Pebble(self)
        await self.pebble.start()

    def instance(self) -> tuple[Any, int]:
        """A started txcaddy with the redis storage and its own ports: (service, https port)."""
        pebble = self.pebble
        https_port = free_port()
        caddyfile = (
            f"{{\n\thttp_port {free_port()}\n\thttps_port {https_port}\n\tadmin off\n\tskip_install_trust\n"
            f"\temail admin@example.com\n\tacme_ca {pebble.directory}\n\tacme_ca_root {pebble.roots}\n"
            f"\tstorage redis {{\n\t\thost 127.0.0.1\n\t\tport {self.redis_server.port}\n"
            f"\t\tkey_prefix {PREFIX}\n\t}}\n}}\n{SITE} {{\n\trespond fleet\n}}\n")
        service = fromCaddyfile(caddyfile, reactor=REACTOR)
        service.startService()
        self.addCleanup(service.stopService)
        return service, https_port

    def stored(self) -> x509.Certificate:
        issuer = f"127.0.0.1-{self.pebble.port}-dir"
        pem = self.redis.hget(f"{PREFIX}/certificates/{issuer}/{SITE}/{SITE}.crt", "value")
        self.assertIsNotNone(pem, "no certificate in Redis")
        return x509.load_pem_x509_certificates(pem)[0]

    async def test_one_order_for_the_fleet(self) -> None:
        """Three instances starting together order the name once, and all serve that certificate."""
        instances = [self.instance() for _ in range(3)]
        await DeferredList([service.tls.manager.ready for service, _ in instances], fireOnOneErrback=True)
        self.assertEqual(self.pebble.count("POST /order-plz"), 1)
        stored = self.stored()
        self.assertTrue(stored.issuer.rfc4514_string().startswith("CN=Pebble Intermediate CA"))
        for _, port in instances:
            reply, peer = await fetch(port, SITE)
            self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK"), reply)
            self.assertTrue(reply.endswith(b"fleet"), reply)
            self.assertEqual(peer.serial_number, stored.serial_number)
        self.assertEqual(self.redis.keys(f"{PREFIX}:locks/*"), [])  # every lock released

    async def test_dead_holders_lock_expires(self) -> None:
        """A lock left by an instance that died mid-order (no renewer) holds the fleet back
        only until it expires; then one instance orders and the others use its certificate."""
        lock = f"{PREFIX}:locks/issue_cert_{SITE}.lock"
        self.redis.set(lock, "dead-instance", px=2000)
        expires = time.monotonic() + self.redis.pttl(lock) / 1000  # Redis' own expiry, on our clock
        instances = [self.instance() for _ in range(2)]
        # Redis expiring the key is the only timer here, and nothing earlier marks the fleet
        # waiting: so wait for the fleet to be ready, and check it was not before that expiry.
        await DeferredList([service.tls.manager.ready for service, _ in instances], fireOnOneErrback=True)
        self.assertGreaterEqual(time.monotonic(), expires - 0.05)  # held back until the dead lock expired
        self.assertEqual(self.pebble.count("POST /order-plz"), 1)
        serial = self.stored().serial_number
        for _, port in instances:
            _, peer = await fetch(port, SITE)
            self.assertEqual(peer.serial_number, serial)
        self.assertIsNone(self.redis.get(lock))
