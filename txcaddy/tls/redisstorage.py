"""The ``redis`` storage module: certificates, accounts, the local CA and locks in Redis.

A fleet of txcaddy instances (or txcaddy beside Caddy built with the widely used
``caddy-storage-redis`` plugin, github.com/pberkel/caddy-storage-redis, which took over
gamalan/caddy-tlsredis) shares its TLS assets through one Redis server, the role Caddy's
storage modules play: one instance orders a name, the others wait on its lock and load
what it stored.  The JSON and the Caddyfile ``storage redis { … }`` use that plugin's field
names; its standalone mode is supported, not cluster or sentinel mode, encryption or
compression (refused at load, so a config never silently means something else).

Layout: every value is a Redis hash ``<key_prefix>/<key>`` with the fields ``value`` (the
bytes) and ``modified`` (seconds since the epoch, by the reactor's clock), so ``stat`` needs
no second key; "directories" are the prefixes of stored keys, as on the file system, found
with ``SCAN MATCH`` (no index to corrupt when an instance dies half way; listing is rare:
the manager lists only the ACME accounts).  Keys are Caddy's (``certificates/<issuer>/…``,
``acme/…``, ``pki/authorities/…``).  The plugin stores its values differently (JSON
envelopes and a sorted-set index), so the two do not read each other's data; a fleet is
all txcaddy or all Caddy.

Locks are plain strings ``<key_prefix>:locks/<safe name>.lock`` (outside the value tree, so
they never show in ``list``) holding a random token: ``SET NX PX`` takes one with an expiry
(``lock_ttl``, 10 s as certmagic's staleness); a ``LoopingCall`` on the reactor extends it
every ``renew_interval`` (5 s) with a compare-and-``PEXPIRE`` script, so a killed holder
leaves a lock that expires by itself and no instance ever decides from its own clock that
another's lock is stale; ``unlock`` is a compare-and-delete script, so an instance that
stalled past the expiry never deletes the lock a successor took.  Waiters poll with
backoff (0.1 s doubling to 1 s, certmagic's file-lock poll).

Why redis-py's blocking client in a thread pool: its asyncio client runs only under
Twisted's asyncio reactor, and txcaddy runs on whichever reactor is installed (epoll by
default).  Each storage call is one function of a few round trips, run in a dedicated pool
of at most four threads per reactor (never the reactor's own pool, which ACME and bcrypt
use, so a Redis outage that blocks threads for ``timeout`` seconds starves nothing else);
the reactor thread never blocks.  Tests pass a ``run`` that calls at once, to drive locks
with a ``Clock`` against a real server.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.config.registry import module
from txcaddy.config.schema import BOOL, INT, STRING, ListOf, Obj, OneOf
from txcaddy.config.values import parse_caddy_duration
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IStorage
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.storage import (
    LOCK_FRESHNESS_INTERVAL,
    LOCK_POLL_INTERVAL,
    LOCK_STALE_AFTER,
    KeyInfo,
    _join,
    _relative_key,
    lock_key,
)

__all__ = [
    "RedisConfig",
    "RedisStorage",
    "RedisStorageError",
    "parse_caddyfile",
    "redis_config",
]

log = Logger(namespace="txcaddy.tls.redisstorage")

_T = TypeVar("_T")
#: ``run(f, *args)``: call ``f(*args)`` off the reactor thread, its result as a Deferred.
Runner = Callable[..., Deferred[Any]]
_Keys = list[str]

#: The first wait of a lock waiter; doubled after each look up to ``LOCK_POLL_INTERVAL``.
LOCK_FIRST_POLL = 0.1
#: Threads per reactor for Redis calls.
POOL_THREADS = 4
_SCAN_COUNT = 500

# KEYS[1] the lock, ARGV[1] the token, ARGV[2] the new expiry (ms): extend only our own lock.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] the lock, ARGV[1] the token: delete only our own lock.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisStorageError(OSError):
    """Redis could not be reached or refused a command; the message names the server."""


# -- configuration (the plugin's JSON) ------------------------------------------------------

_STRINGS = OneOf(STRING, ListOf(STRING))
SCHEMA = Obj({
    "address": _STRINGS, "host": _STRINGS, "port": OneOf(INT, STRING, ListOf(OneOf(STRING, INT))),
    "db": OneOf(INT, STRING), "username": STRING, "password": STRING, "timeout": OneOf(STRING, INT),
    "key_prefix": STRING, "tls_enabled": BOOL, "tls_insecure": BOOL, "tls_server_certs_pem": STRING,
    "tls_server_certs_path": STRING, "client_name": STRING, "client_type": STRING,
    "encryption_key": STRING, "compression": OneOf(BOOL, STRING), "master_name": STRING,
    "route_by_latency": BOOL, "route_randomly": BOOL,
}, strict=True)


@dataclass(frozen=True)
class RedisConfig:
    """Where the Redis server is and how to talk to it (the plugin's standalone mode)."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 5.0
    key_prefix: str = "caddy"
    tls_enabled: bool = False
    tls_insecure: bool = False
    tls_server_certs_pem: str = ""
    tls_server_certs_path: str = ""
    client_name: str = ""

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def client(self) -> Any:
        """A redis-py client (it connects on first use, not here)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options: dict[str, Any] = {
            "host": self.host, "port": self.port, "db": self.db,
            "username": self.username or None, "password": self.password or None,
            "socket_timeout": self.timeout, "socket_connect_timeout": self.timeout,
            "client_name": self.client_name or None,
            # One immediate retry (a pooled connection the server closed), never a sleep:
            # the manager's retry schedule is the backoff.
            "retry": Retry(NoBackoff(), 1),
        }
        if self.tls_enabled:
            options["ssl"] = True
            options["ssl_cert_reqs"] = "none" if self.tls_insecure else "required"
            options["ssl_check_hostname"] = not self.tls_insecure
            options["ssl_ca_data"] = self.tls_server_certs_pem or None
            options["ssl_ca_certs"] = self.tls_server_certs_path or None
        return redis.Redis(**options)


def _one(config: Mapping[str, Any], name: str, default: str) -> str:
    value = config.get(name)
    if value is None or value == []:
        return default
    values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if len(values) > 1:
        raise ConfigError(f"caddy.storage.redis: {name}: several servers are cluster mode, "
                          "which txcaddy's redis storage does not support")
    return values[0] or default


def redis_config(config: Mapping[str, Any]) -> RedisConfig:
    """The plugin's JSON (already checked against ``SCHEMA``) as a ``RedisConfig``.

    ``address`` (``host:port``) wins over ``host`` and ``port``; ``timeout`` is seconds
    (``"5"``, ``5``) or a duration (``"500ms"``); features txcaddy lacks are refused.
    """
    where = "caddy.storage.redis"
    client_type = config.get("client_type", "simple") or "simple"
    if client_type != "simple":
        raise ConfigError(f"{where}: client_type {client_type!r} is not supported (only simple)")
    for unsupported in ("encryption_key", "master_name", "route_by_latency", "route_randomly"):
        if config.get(unsupported):
            raise ConfigError(f"{where}: {unsupported} is not supported by txcaddy")
    if config.get("compression") not in (None, False, "", "false"):
        raise ConfigError(f"{where}: compression is not supported by txcaddy")
    host = _one(config, "host", "127.0.0.1")
    port_text = _one(config, "port", "6379")
    address = _one(config, "address", "")
    if address:
        host, sep, port_text = address.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"{where}: address {address!r}: missing port")
        host = host.strip("[]")
    try:
        port = int(port_text)
        db = int(config.get("db", 0) or 0)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} out of range")
    timeout_value = config.get("timeout", 5)
    if isinstance(timeout_value, int) or str(timeout_value).isdigit():
        timeout = float(timeout_value)
    else:
        timeout = parse_caddy_duration(str(timeout_value)) / 1e9
    prefix = config.get("key_prefix") or "caddy"
    if prefix.startswith("/") or prefix.endswith("/") or any(p in (".", "..", "") for p in prefix.split("/")):
        raise ConfigError(f"{where}: key_prefix {prefix!r}: no leading or trailing '/', '.' or '..' segments")
    return RedisConfig(
        host=host, port=port, db=db, username=config.get("username", ""),
        password=config.get("password", ""), timeout=timeout, key_prefix=prefix,
        tls_enabled=bool(config.get("tls_enabled")), tls_insecure=bool(config.get("tls_insecure")),
        tls_server_certs_pem=config.get("tls_server_certs_pem", ""),
        tls_server_certs_path=config.get("tls_server_certs_path", ""),
        client_name=config.get("client_name", ""))


# -- running calls off the reactor thread ----------------------------------------------------

_pools: dict[Any, Any] = {}


def thread_runner(reactor: Any) -> Runner:
    """A ``run`` on a small thread pool of ``reactor``'s own, started on first use and
    stopped when the reactor shuts down."""
    from twisted.internet.interfaces import IReactorFromThreads
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    if not IReactorFromThreads.providedBy(reactor):
        raise ConfigError("caddy.storage.redis: needs a reactor that runs threads")
    triggers: Any = reactor  # IReactorCore's addSystemEventTrigger

    def run(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        pool = _pools.get(reactor)
        if pool is None:
            pool = _pools[reactor] = ThreadPool(0, POOL_THREADS, name="txcaddy-redis")
            pool.start()
            triggers.addSystemEventTrigger("during", "shutdown", _stop_pool, reactor)
        return deferToThreadPool(reactor, pool, f, *args)

    return run


def _stop_pool(reactor: Any) -> None:
    pool = _pools.pop(reactor, None)
    if pool is not None:
        pool.stop()


def _glob_escape(text: str) -> str:
    """``text`` matched literally by ``SCAN MATCH`` (its glob escapes ``\\``, ``*``, ``?``, ``[``, ``]``)."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


@dataclass
class _Held:
    name: str
    token: str
    renewer: LoopingCall


@implementer(IStorage)
class RedisStorage:
    """``IStorage`` on one Redis server (see the module docstring for the layout and locks).

    @ivar config: where the server is.
    """

    def __init__(
        self, config: RedisConfig, clock: IReactorTime, run: Runner, *, client: Any = None,
        lock_ttl: float = LOCK_STALE_AFTER, renew_interval: float = LOCK_FRESHNESS_INTERVAL,
    ) -> None:
        self.config = config
        self._clock = clock
        self._run = run
        self._client = client if client is not None else config.client()
        self._prefix = config.key_prefix
        self.lock_ttl = lock_ttl
        self.renew_interval = renew_interval
        self._held: dict[str, _Held] = {}  # lock key -> what this instance holds

    def __repr__(self) -> str:
        return f"RedisStorage({self.config.address!r}, key_prefix={self._prefix!r})"

    @property
    def held(self) -> frozenset[str]:
        """The names of the locks this instance holds."""
        return frozenset(h.name for h in self._held.values())

    def redis_key(self, key: str) -> str:
        """The Redis key of storage key ``key`` (ValueError for one that escapes the root)."""
        rel = _relative_key(key)
        return f"{self._prefix}/{rel}" if rel else self._prefix

    def lock_redis_key(self, name: str) -> str:
        """The Redis key of lock ``name``: ``<key_prefix>:locks/<safe name>.lock``."""
        return f"{self._prefix}:{lock_key(name)}"

    # -- calls

    def _call(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """``f(*args)`` through ``run``, Redis' errors as ``RedisStorageError`` naming the server."""
        def guarded() -> _T:
            import redis

            try:
                return f(*args)
            except redis.RedisError as e:
                raise RedisStorageError(f"redis storage at {self.config.address}: {e}") from e

        try:
            return self._run(guarded)
        except Exception:
            return fail()

    def _below(self, full: str) -> Any:
        """The Redis keys strictly below ``full`` (an iterator over SCAN)."""
        return self._client.scan_iter(match=_glob_escape(full) + "/*", count=_SCAN_COUNT)

    def _any_below(self, full: str) -> bool:
        return any(True for _ in self._below(full))

    def _strip(self, redis_key: bytes | str) -> str:
        text = redis_key.decode() if isinstance(redis_key, bytes) else redis_key
        return text[len(self._prefix) + 1:]

    # -- values

    def store(self, key: str, value: bytes) -> Deferred[None]:
        return maybeDeferred(self._prepare, key, True).addCallback(
            lambda rel: self._call(self._store, rel, bytes(value), self._clock.seconds()))

    def _prepare(self, key: str, refuse_root: bool) -> str:
        rel = _relative_key(key)
        if refuse_root and not rel:
            raise ValueError("cannot store a value at the storage root")
        return rel

    def _store(self, rel: str, value: bytes, now: float) -> None:
        full = f"{self._prefix}/{rel}"
        parents = []
        parent = rel
        while "/" in parent:
            parent = parent.rpartition("/")[0]
            parents.append(f"{self._prefix}/{parent}")
        if parents and self._client.exists(*parents):
            raise NotADirectoryError(f"a stored value is in the way of directory of {rel!r}")
        if self._any_below(full):
            raise IsADirectoryError(f"other keys are stored below {rel!r}")
        self._client.hset(full, mapping={"value": value, "modified": repr(now)})

    def load(self, key: str) -> Deferred[bytes]:
        return maybeDeferred(self.redis_key, key).addCallback(
            lambda full: self._call(self._load, key, full))

    def _load(self, key: str, full: str) -> bytes:
        value = self._client.hget(full, "value")
        if value is None:
            raise KeyNotFound(key)
        return bytes(value)

    def delete(self, key: str) -> Deferred[None]:
        def refuse_root(rel: str) -> Deferred[None]:
            if not rel:
                raise ValueError("refusing to delete the whole storage")
            return self._call(self._delete, f"{self._prefix}/{rel}")

        return maybeDeferred(_relative_key, key).addCallback(refuse_root)

    def _delete(self, full: str) -> None:
        self._client.unlink(full)
        batch: list[Any] = []
        for below in self._below(full):
            batch.append(below)
            if len(batch) >= _SCAN_COUNT:
                self._client.unlink(*batch)
                batch = []
        if batch:
            self._client.unlink(*batch)

    def exists(self, key: str) -> Deferred[bool]:
        return maybeDeferred(self._prepare, key, False).addCallback(
            lambda rel: self._call(self._exists, rel))

    def _exists(self, rel: str) -> bool:
        if not rel:
            return True
        full = f"{self._prefix}/{rel}"
        return bool(self._client.exists(full)) or self._any_below(full)

    def list(self, prefix: str, recursive: bool) -> Deferred[list[str]]:
        return maybeDeferred(self._prepare, prefix, False).addCallback(
            lambda rel: self._call(self._list, prefix, rel, recursive))

    def _list(self, prefix: str, rel: str, recursive: bool) -> _Keys:
        full = f"{self._prefix}/{rel}" if rel else self._prefix
        if rel and self._client.exists(full):
            return []
        below = [self._strip(k)[len(rel) + 1 if rel else 0:] for k in self._below(full)]
        if not below and rel:
            raise KeyNotFound(prefix)
        found: set[str] = set()
        for suffix in below:
            parts = suffix.split("/")
            if not recursive:
                found.add(parts[0])
                continue
            for i in range(1, len(parts) + 1):
                found.add("/".join(parts[:i]))
        return sorted(_join(prefix, suffix) for suffix in found)

    def stat(self, key: str) -> Deferred[KeyInfo]:
        return maybeDeferred(self._prepare, key, False).addCallback(
            lambda rel: self._call(self._stat, key, rel))

    def _stat(self, key: str, rel: str) -> KeyInfo:
        full = f"{self._prefix}/{rel}" if rel else self._prefix
        if rel:
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(full, "modified")
            pipe.hstrlen(full, "value")
            modified, size = pipe.execute()
            if modified is not None:
                return KeyInfo(key, float(modified), int(size), True)
        below = list(self._below(full))
        if not below and rel:
            raise KeyNotFound(key)
        # A prefix has no time of its own: its newest value's, as a directory's mtime would be.
        latest = 0.0
        if below:
            pipe = self._client.pipeline(transaction=False)
            for k in below:
                pipe.hget(k, "modified")
            latest = max((float(m) for m in pipe.execute() if m is not None), default=0.0)
        return KeyInfo(key, latest, 0, False)

    # -- locks

    def lock(self, name: str) -> Deferred[None]:
        """Fires once this instance holds lock ``name``; cancel it to stop waiting.

        Fails with ``RedisStorageError`` if Redis cannot be reached while waiting.
        """
        rkey = self.lock_redis_key(name)
        token = secrets.token_hex(16)
        state: dict[str, Any] = {"timer": None, "cancelled": False}

        def cancel(_: Deferred[None]) -> None:
            state["cancelled"] = True
            timer: IDelayedCall | None = state["timer"]
            if timer is not None and timer.active():
                timer.cancel()

        acquired: Deferred[None] = Deferred(cancel)
        ttl_ms = max(1, round(self.lock_ttl * 1000))

        def attempt(wait: float) -> None:
            state["timer"] = None
            self._call(self._try_lock, rkey, token, ttl_ms).addCallbacks(
                answered, failed, callbackArgs=(wait,))

        def answered(taken: Any, wait: float) -> None:
            if state["cancelled"]:
                if taken:  # the look was in flight when the waiter gave up: give it back
                    self._call(self._client.eval, _RELEASE, 1, rkey, token).addErrback(
                        lambda f: log.failure("releasing lock {name!r}", f, name=name))
                return
            if taken:
                self._keep(name, rkey, token)
                acquired.callback(None)
                return
            state["timer"] = self._clock.callLater(wait, attempt, min(wait * 2, LOCK_POLL_INTERVAL))

        def failed(failure: Failure) -> None:
            if not state["cancelled"]:
                acquired.errback(failure)

        attempt(LOCK_FIRST_POLL)
        return acquired

    def _try_lock(self, rkey: str, token: str, ttl_ms: int) -> bool:
        return bool(self._client.set(rkey, token, px=ttl_ms, nx=True))

    def _keep(self, name: str, rkey: str, token: str) -> None:
        previous = self._held.get(rkey)
        if previous is not None and previous.renewer.running:  # lost to expiry, now taken again
            previous.renewer.stop()
        renewer = LoopingCall(self._renew, rkey)
        renewer.clock = self._clock
        self._held[rkey] = _Held(name, token, renewer)
        renewer.start(self.renew_interval, now=False).addErrback(
            lambda f: log.failure("keeping lock {name!r}", f, name=name))

    def _renew(self, rkey: str) -> Deferred[None] | None:
        held = self._held.get(rkey)
        if held is None:
            return None
        ttl_ms = max(1, round(self.lock_ttl * 1000))

        def answered(extended: Any) -> None:
            if extended or self._held.get(rkey) is not held:
                return
            log.error("lock {name!r} expired or was taken over before it was renewed; no longer held",
                      name=held.name)
            del self._held[rkey]
            if held.renewer.running:
                held.renewer.stop()

        def failed(failure: Failure) -> None:
            # Keep trying: Redis may be back before the lock expires.
            log.error("renewing lock {name!r}: {error}", name=held.name, error=failure.getErrorMessage())

        return self._call(self._client.eval, _RENEW, 1, rkey, held.token, ttl_ms).addCallbacks(answered, failed)

    def unlock(self, name: str) -> Deferred[None]:
        """Release lock ``name``: KeyNotFound if this instance does not hold it (never did,
        or it expired and may be someone else's now, which is left alone)."""
        rkey = self.lock_redis_key(name)
        held = self._held.pop(rkey, None)
        if held is None:
            return fail(KeyNotFound(lock_key(name)))
        if held.renewer.running:
            held.renewer.stop()

        def released(deleted: Any) -> None:
            if not deleted:
                raise KeyNotFound(lock_key(name))

        return self._call(self._client.eval, _RELEASE, 1, rkey, held.token).addCallback(released)

    def unlock_all(self) -> Deferred[None]:
        """Release every lock this instance holds, for a graceful stop."""
        def report(failure: Failure, name: str) -> None:
            log.failure("releasing lock {name!r}", failure, name=name)

        names = sorted(h.name for h in self._held.values())
        releases = [self.unlock(name).addErrback(report, name) for name in names]
        return DeferredList(releases).addCallback(lambda _: None) if releases else succeed(None)


@module("caddy.storage.redis", schema=SCHEMA)
def load_redis_storage(config: dict[str, Any], context: Any) -> RedisStorage:
    """``{"module": "redis", …}``: a ``RedisStorage`` on the reactor, its calls in a thread pool."""
    parsed = redis_config(config)
    try:
        import redis  # noqa: F401
    except ImportError:
        raise ConfigError("caddy.storage.redis: needs redis-py (pip install 'txcaddy[redis]')") from None
    reactor = context.reactor
    if reactor is None:
        from txcaddy._reactor import default_reactor

        reactor = default_reactor()
    return RedisStorage(parsed, reactor, thread_runner(reactor))


# -- Caddyfile ---------------------------------------------------------------------------------

_LISTS = ("address", "host", "port")
_STRING_FIELDS = ("username", "password", "key_prefix", "client_name", "tls_server_certs_pem",
                  "tls_server_certs_path", "timeout", "encryption_key", "master_name")
_BOOLS = ("tls_enabled", "tls_insecure", "route_by_latency", "route_randomly")


def parse_caddyfile(d: Any) -> dict[str, Any]:
    """``storage redis { host …; port …; db …; … }`` as the plugin's JSON (without ``module``).

    ``host``, ``port`` and ``address`` take one or more values (JSON lists, as the plugin
    writes them); ``db`` is a number; the booleans are ``true``/``false``.
    """
    if not d.next():
        raise d.err("expected tokens")
    if d.next_arg():
        raise d.err(f"client type {d.val()!r} is not supported by txcaddy (only the simple mode)")
    config: dict[str, Any] = {}
    nesting = d.nesting
    while d.next_block(nesting):
        option = d.val()
        args = d.remaining_args()
        if not args:
            raise d.arg_err()
        if option in _LISTS:
            config[option] = args
            continue
        if len(args) != 1:
            raise d.arg_err()
        value = args[0]
        if option == "db":
            try:
                config["db"] = int(value)
            except ValueError:
                raise d.err(f"invalid db: {value!r}") from None
        elif option in _BOOLS:
            if value not in ("true", "false"):
                raise d.err(f"{option}: expected true or false, got {value!r}")
            config[option] = value == "true"
        elif option == "compression":
            config[option] = False if value == "false" else value
        elif option in _STRING_FIELDS:
            config[option] = value
        else:
            raise d.err(f"unrecognized parameter '{option}'")
    return config
