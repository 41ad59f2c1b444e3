"""Where certificates, keys, ACME accounts and the local CA live (certmagic v0.17.2's storage).

Caddy keeps its TLS assets in a storage keyed by ``/``-separated paths
(``certmagic/storage.go: KeyBuilder``; ``modules/caddypki/ca.go``;
``certmagic/account.go``).  The key builders here give the same keys, so a data directory that
Caddy 2.6.2 wrote serves txcaddy and the other way round, and several instances sharing one
directory order a certificate only once, because they take the same lock files
(``certmagic/filestorage.go``):

* ``FileStorage`` maps keys to files under a root (Caddy's ``caddy.storage.file_system``;
  by default ``default_storage_root()``, Caddy's ``AppDataDir``).  Directories are made 0700
  and files 0600 as certmagic does; each file is written to a temporary file in the same
  directory, fsynced and renamed over the old one, which is stricter than certmagic (it
  truncates and rewrites in place), so a crash never leaves half a private key behind.
* Locks are certmagic's lock files, ``locks/<safe name>.lock``, created with ``O_EXCL`` and
  holding ``{"created": T, "updated": T}`` (RFC 3339 with nanoseconds, as Go writes it).
  While held, ``updated`` is rewritten every 5 s; a waiter polls every 1 s and takes over
  a file that is empty, unreadable as JSON, or older than 10 s (its holder died).  Go fails
  ``Lock`` on a non-empty file that is not JSON; taking it over as stale avoids a deadlock that
  only deleting the file by hand would end.
* ``MemoryStorage`` is the same contract in memory, with in-process locks handed to waiters in
  order; it is public in ``txcaddy.testing`` for the internal CA, the certificate manager and
  plugins' tests.

Every method returns a Deferred (``IStorage``), so a networked backend fits; the file system's
fire at once (its calls are small, local and rare: a certificate is written once in weeks).
Time comes from the clock given, never the wall clock, so tests drive lock ageing with
``twisted.internet.task.Clock``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat as stat_module
import tempfile
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._go.path import clean
from txcaddy._go.strings import to_lower, trim_space
from txcaddy._go.time import time_json
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IStorage
from txcaddy.tls.errors import KeyNotFound

__all__ = [
    "LOCK_FRESHNESS_INTERVAL",
    "LOCK_POLL_INTERVAL",
    "LOCK_STALE_AFTER",
    "FileStorage",
    "KeyInfo",
    "KeyNotFound",
    "MemoryStorage",
    "acme_ca_prefix",
    "acme_user_key",
    "acme_user_prefix",
    "acme_user_reg",
    "acme_users_prefix",
    "ca_authority_prefix",
    "certs_prefix",
    "certs_site_prefix",
    "default_storage_root",
    "issue_cert_lock",
    "lock_key",
    "safe",
    "site_cert",
    "site_meta",
    "site_private_key",
    "storage_from_config",
]

log = Logger(namespace="txcaddy.tls.storage")

#: How often a held lock's ``updated`` time is rewritten (certmagic ``lockFreshnessInterval``).
LOCK_FRESHNESS_INTERVAL = 5.0
#: A lock not refreshed for longer than this is stale: twice the interval, for slow disks.
LOCK_STALE_AFTER = 2 * LOCK_FRESHNESS_INTERVAL
#: How often a waiter looks at a fresh lock file again (certmagic ``fileLockPollInterval``).
LOCK_POLL_INTERVAL = 1.0

_T = TypeVar("_T")
#: ``list[str]`` by a name that the ``list`` methods of the storages do not shadow.
_Keys = list[str]


@dataclass(frozen=True)
class KeyInfo:
    """What ``stat`` tells about a key (certmagic's ``KeyInfo``).

    ``modified`` is seconds since the epoch; ``is_terminal`` is false for a "directory", a
    prefix of other keys, whose ``size`` means nothing.
    """

    key: str
    modified: float
    size: int
    is_terminal: bool


# -- key builders (certmagic's KeyBuilder, account.go and caddypki's ca.go) -----------------

_SAFE_REPLACEMENTS = {" ": "_", "+": "_plus_", "*": "wildcard_", ":": "-", "..": ""}
_SAFE_REPLACE = re.compile(r"\.\.|[ +*:]")
_UNSAFE = re.compile(r"[^\w@.-]", re.ASCII)  # RE2's \w is ASCII only


def safe(text: str) -> str:
    """A name made fit for one path element, as ``KeyBuilder.Safe`` makes it.

    Lower case, trimmed, ``*`` spelled ``wildcard_`` (so ``*.example.com`` is
    ``wildcard_.example.com``), ``..`` removed so no name climbs out of its directory, and
    anything but ASCII letters, digits, ``_@.-`` dropped.
    """
    text = trim_space(to_lower(text))
    text = _SAFE_REPLACE.sub(lambda m: _SAFE_REPLACEMENTS[m.group()], text)
    return _UNSAFE.sub("", text)


def _join(*elements: str) -> str:
    """Go's ``path.Join``: the non-empty elements joined by ``/`` and cleaned ("" if none)."""
    joined = "/".join(e for e in elements if e)
    return clean(joined) if joined else ""


def certs_prefix(issuer_key: str) -> str:
    """``certificates/<issuer>``: every certificate one issuer (ACME CA, internal CA) gave."""
    return _join("certificates", safe(issuer_key))


def certs_site_prefix(issuer_key: str, domain: str) -> str:
    """``certificates/<issuer>/<name>``: the certificate, key and metadata of one name."""
    return _join(certs_prefix(issuer_key), safe(domain))


def site_cert(issuer_key: str, domain: str) -> str:
    """The PEM chain of ``domain``'s certificate: ``…/<name>/<name>.crt``."""
    return _join(certs_site_prefix(issuer_key, domain), safe(domain) + ".crt")


def site_private_key(issuer_key: str, domain: str) -> str:
    """The PEM private key of ``domain``'s certificate: ``…/<name>/<name>.key``."""
    return _join(certs_site_prefix(issuer_key, domain), safe(domain) + ".key")


def site_meta(issuer_key: str, domain: str) -> str:
    """The JSON metadata (SANs, issuer data) of ``domain``'s certificate: ``…/<name>/<name>.json``."""
    return _join(certs_site_prefix(issuer_key, domain), safe(domain) + ".json")


def ca_authority_prefix(ca_id: str) -> str:
    """``pki/authorities/<id>``: the internal CA's ``root.crt|key`` and ``intermediate.crt|key``."""
    return _join("pki", "authorities", safe(ca_id))


def acme_ca_prefix(issuer_key: str) -> str:
    """``acme/<issuer>``: one ACME CA's accounts and challenge tokens."""
    return _join("acme", safe(issuer_key))


def acme_users_prefix(issuer_key: str) -> str:
    """``acme/<issuer>/users``: one directory per account email (certmagic lists it to pick one)."""
    return _join(acme_ca_prefix(issuer_key), "users")


def acme_user_prefix(issuer_key: str, email: str) -> str:
    """``acme/<issuer>/users/<email>``: one account's key and registration (email "" is ``default``)."""
    return _join(acme_users_prefix(issuer_key), safe(email or _EMPTY_EMAIL))


def acme_user_key(issuer_key: str, email: str) -> str:
    """The account's PEM private key: ``…/users/<email>/<local part>.key`` (``private.key`` if none)."""
    return _acme_user_file(issuer_key, email, "private", ".key")


def acme_user_reg(issuer_key: str, email: str) -> str:
    """The account's registration JSON: ``…/users/<email>/<local part>.json`` (``registration.json`` if none)."""
    return _acme_user_file(issuer_key, email, "registration", ".json")


_EMPTY_EMAIL = "default"


def _acme_user_file(issuer_key: str, email: str, default_name: str, extension: str) -> str:
    """certmagic's ``storageSafeUserKey``: the file is named after the email's local part."""
    email = to_lower(email or _EMPTY_EMAIL)
    at = email.find("@")
    # The part before "@"; with "@" first, what follows it; the whole text without one.
    name = email if at == -1 else email[1:] if at == 0 else email[:at]
    return _join(acme_user_prefix(issuer_key, email), safe(name or default_name) + extension)


def lock_key(name: str) -> str:
    """The key of lock ``name``'s file: ``locks/<safe name>.lock``."""
    return _join("locks", safe(name) + ".lock")


def issue_cert_lock(domain: str) -> str:
    """The lock name taken while obtaining or renewing ``domain``'s certificate.

    Obtain and renew share it (certmagic ``cfg.lockKey("issue_cert", name)``), so one
    instance of a fleet orders a name at a time; ``lock_key`` of it is
    ``locks/issue_cert_wildcard_.example.com.lock`` for ``*.example.com``.
    """
    return "issue_cert_" + domain


# -- where the default storage lives ----------------------------------------------------------


def default_storage_root(environ: Mapping[str, str] = os.environ) -> str:
    """Caddy's ``AppDataDir`` on Linux: ``$XDG_DATA_HOME/caddy``, ``~/.local/share/caddy``, ``./caddy``."""
    xdg = environ.get("XDG_DATA_HOME", "")
    if xdg:
        return os.path.join(xdg, "caddy")
    home = environ.get("HOME", "")
    if home:
        return os.path.join(home, ".local", "share", "caddy")
    return os.path.join(".", "caddy")


def storage_from_config(
    config: Mapping[str, Any] | None, clock: IReactorTime, environ: Mapping[str, str] = os.environ
) -> IStorage:
    """The storage a Caddy JSON config's top-level ``storage`` object names.

    None is Caddy's default, the file system under ``default_storage_root``.  Any other
    module comes from the module registry as ``caddy.storage.<name>`` (built in or a
    plugin): its factory gets the JSON without ``module`` and a ``LoadContext`` whose
    ``reactor`` is ``clock``, and returns an ``IStorage``.  Unknown names fail as Caddy
    fails on a module it was not built with.
    """
    if config is None:
        return FileStorage(default_storage_root(environ), clock)
    if not isinstance(config, Mapping):
        raise ConfigError("loading storage module: json: cannot unmarshal config into a module object")
    name = config.get("module")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"loading storage module: module name not specified with key 'module' in {dict(config)!r}")
    where = f"loading storage module: loading module '{name}'"
    if name != "file_system":
        return _registered_storage(name, config, clock, where)
    fields = {k: v for k, v in config.items() if k != "module"}
    unknown = sorted(set(fields) - {"root"})
    if unknown:
        raise ConfigError(f'{where}: decoding module config: caddy.storage.file_system: json: unknown field "{unknown[0]}"')
    root = fields.get("root", "")
    if root is None:
        root = ""
    if not isinstance(root, str):
        raise ConfigError(
            f"{where}: decoding module config: caddy.storage.file_system: json: cannot unmarshal "
            f"{type(root).__name__} into Go struct field FileStorage.root of type string"
        )
    # An empty root is certmagic's FileStorage{Path: ""}: the working directory.
    return FileStorage(root, clock)


def _registered_storage(name: str, config: Mapping[str, Any], clock: IReactorTime, where: str) -> IStorage:
    """A storage module from the registry, its JSON checked against its schema first."""
    from txcaddy.config import registry, schema
    from txcaddy.config.loader import LoadContext

    module_id = f"caddy.storage.{name}"
    if name not in registry.known("caddy.storage."):
        raise ConfigError(f"{where}: unknown module: {module_id}")
    fields = {k: v for k, v in config.items() if k != "module"}
    spec = registry.schema_for(module_id)
    if spec is not None:
        try:
            schema.check(spec, fields, "storage")
        except ConfigError as e:
            raise ConfigError(f"{where}: decoding module config: {module_id}: {e}") from None
    storage: IStorage = registry.lookup(module_id)(fields, LoadContext(reactor=clock))
    registry.check_provides(module_id, storage)
    return storage


# -- keys to paths ---------------------------------------------------------------------------


def _relative_key(key: str) -> str:
    """``key`` cleaned as ``filepath.Join(root, key)`` cleans it, relative to the root.

    "" is the root itself.  A key whose ``..`` elements climb above the root is refused:
    certmagic never builds one (``safe`` strips ``..``), so only a bug or a hostile name could.
    """
    rel = clean(key.lstrip("/"))
    if rel == ".." or rel.startswith("../"):
        raise ValueError(f"storage key escapes the storage root: {key!r}")
    if "\0" in rel:
        raise ValueError(f"storage key contains NUL: {key!r}")
    return "" if rel == "." else rel


def _now_nanoseconds(clock: IReactorTime) -> int:
    """The clock's time in nanoseconds, to the microsecond (a float holds no more)."""
    return round(clock.seconds() * 1_000_000) * 1000


# -- lock files ----------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:Z|([+-])(\d{2}):(\d{2}))\Z", re.ASCII
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: Go's zero ``time.Time`` (0001-01-01T00:00:00Z), what a missing field decodes to.
_GO_ZERO_TIME = (date(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86400 * 1_000_000_000


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time as Go's ``time.Time`` JSON reads it.

    Go writes RFC3339Nano with the fraction's trailing zeros dropped and the writer's zone
    (``2026-12-07T12:00:00.123456789Z``, ``…+01:00``); digits past the ninth are dropped as
    Go drops them.  Raises ValueError for anything else.
    """
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time out of range: {text!r}")
    days = date(year, month, day).toordinal() - _EPOCH_ORDINAL  # ValueError for a bad date
    seconds = days * 86400 + hour * 3600 + minute * 60 + second
    if m.group(8):
        zone_hours, zone_minutes = int(m.group(9)), int(m.group(10))
        if zone_hours > 23 or zone_minutes > 59:
            raise ValueError(f"time zone offset out of range: {text!r}")
        offset = zone_hours * 3600 + zone_minutes * 60
        seconds -= offset if m.group(8) == "+" else -offset
    fraction = (m.group(7) or "")[:9].ljust(9, "0")
    return seconds * 1_000_000_000 + int(fraction)


def _lock_times(data: bytes) -> tuple[int, int]:
    """(created, updated) in nanoseconds from a lock file, Go's zero time where absent.

    Read as Go's ``json.Decoder`` reads ``lockMeta``: the first JSON value only, field names
    matched without regard to case, ``null`` leaving a field zero.  Raises ValueError for an
    empty or malformed file.
    """
    text = data.decode("utf-8").lstrip(" \t\r\n")
    if not text:
        raise ValueError("empty lock file")
    meta, _ = json.JSONDecoder(object_pairs_hook=list).raw_decode(text)
    if not isinstance(meta, list):
        raise ValueError("lock file is not a JSON object")
    times = {"created": _GO_ZERO_TIME, "updated": _GO_ZERO_TIME}
    for name, value in meta:
        field = name.lower() if name.isascii() else name
        if field in times and value is not None:
            if not isinstance(value, str):
                raise ValueError(f"lock file field {name!r} is not a time")
            times[field] = parse_rfc3339(value)
    return times["created"], times["updated"]


def _lock_file_bytes(created: str, updated_ns: int) -> bytes:
    """A lock file's bytes, as Go's ``json.Encoder`` writes ``lockMeta`` (with its newline)."""
    return json.dumps({"created": created, "updated": time_json(updated_ns)}, separators=(",", ":")).encode() + b"\n"


def _is_stale(data: bytes, now_ns: int) -> bool:
    """Whether a lock file's holder is taken for dead (certmagic ``fileLockIsStale``)."""
    try:
        created, updated = _lock_times(data)
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        log.info("unreadable lock file ({error}), treating it as stale", error=error)
        return True
    reference = created if updated == _GO_ZERO_TIME else updated
    return now_ns - reference > LOCK_STALE_AFTER * 1_000_000_000


def _deferred_call(f: Callable[..., _T], *args: Any) -> Deferred[_T]:
    """``f(*args)`` as a Deferred, its exception as a failure (every IStorage method's shape)."""
    return maybeDeferred(f, *args)


# -- the file system ---------------------------------------------------------------------------


@implementer(IStorage)
class FileStorage:
    """Keys as files under ``root``, Caddy's ``file_system`` storage (certmagic ``FileStorage``).

    @ivar root: the absolute directory the keys live under.
    """

    def __init__(self, root: str, clock: IReactorTime) -> None:
        self.root = os.path.abspath(root)
        self._clock = clock
        # name -> the LoopingCall keeping that lock's file fresh, for the locks this instance holds.
        self._held: dict[str, LoopingCall] = {}

    def __repr__(self) -> str:
        return f"FileStorage({self.root!r})"

    @property
    def held(self) -> frozenset[str]:
        """The names of the locks this instance holds."""
        return frozenset(self._held)

    def filename(self, key: str) -> str:
        """The file (or directory) of ``key``; ValueError if it would be outside the root."""
        rel = _relative_key(key)
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    # -- values

    def store(self, key: str, value: bytes) -> Deferred[None]:
        return _deferred_call(self._store, key, value)

    def _store(self, key: str, value: bytes) -> None:
        if not _relative_key(key):
            raise ValueError("cannot store a value at the storage root")
        path = self.filename(key)
        directory, name = os.path.split(path)
        self._make_directories(directory)
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(value)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        _fsync_directory(directory)

    def _make_directories(self, directory: str) -> None:
        """``os.makedirs`` with every directory it makes 0700 (Python leaves parents at 0777)."""
        missing = []
        while not os.path.isdir(directory):
            missing.append(directory)
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not os.path.isdir(path):
                    raise NotADirectoryError(f"a stored value is in the way of directory {path!r}") from None

    def load(self, key: str) -> Deferred[bytes]:
        return _deferred_call(self._load, key)

    def _load(self, key: str) -> bytes:
        try:
            with open(self.filename(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(key) from None

    def delete(self, key: str) -> Deferred[None]:
        return _deferred_call(self._delete, key)

    def _delete(self, key: str) -> None:
        if not _relative_key(key):
            raise ValueError("refusing to delete the whole storage")
        path = self.filename(key)
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return  # certmagic's contract: an error only if the key is still there afterwards
        if stat_module.S_ISDIR(info.st_mode):
            shutil.rmtree(path)
        else:
            os.remove(path)

    def exists(self, key: str) -> Deferred[bool]:
        return _deferred_call(self._exists, key)

    def _exists(self, key: str) -> bool:
        try:
            os.stat(self.filename(key))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def list(self, prefix: str, recursive: bool) -> Deferred[list[str]]:
        return _deferred_call(self._list, prefix, recursive)

    def _list(self, prefix: str, recursive: bool) -> _Keys:
        top = self.filename(prefix)
        try:
            info = os.stat(top)
        except (FileNotFoundError, NotADirectoryError):
            if not _relative_key(prefix):
                return []  # nothing stored yet
            raise KeyNotFound(prefix) from None
        if not stat_module.S_ISDIR(info.st_mode):
            return []
        if not recursive:
            return sorted(_join(prefix, name) for name in os.listdir(top))
        keys: _Keys = []
        for directory, subdirectories, files in os.walk(top):
            rel = os.path.relpath(directory, top)
            base = "" if rel == os.curdir else rel.replace(os.sep, "/")
            keys.extend(_join(prefix, base, name) for name in subdirectories + files)
        return sorted(keys)

    def stat(self, key: str) -> Deferred[KeyInfo]:
        return _deferred_call(self._stat, key)

    def _stat(self, key: str) -> KeyInfo:
        try:
            info = os.stat(self.filename(key))
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFound(key) from None
        return KeyInfo(key, info.st_mtime, info.st_size, not stat_module.S_ISDIR(info.st_mode))

    # -- locks

    def lock(self, name: str) -> Deferred[None]:
        """Fires once this instance has created lock ``name``'s file; cancel it to stop waiting."""
        filename = self.filename(lock_key(name))
        waiting: list[IDelayedCall] = []

        def stop_polling(_: Deferred[None]) -> None:
            while waiting:
                waiting.pop().cancel()

        acquired: Deferred[None] = Deferred(stop_polling)

        def attempt() -> None:
            waiting.clear()
            try:
                taken = self._try_lock(name, filename)
            except Exception:
                acquired.errback(Failure())
                return
            if taken:
                acquired.callback(None)
            else:
                waiting.append(self._clock.callLater(LOCK_POLL_INTERVAL, attempt))

        attempt()
        return acquired

    def _try_lock(self, name: str, filename: str) -> bool:
        """One look at the lock file: True once created here, False while someone fresh holds it."""
        while True:
            try:
                self._create_lock_file(filename)
            except FileExistsError:
                pass
            else:
                self._keep_fresh(name, filename)
                return True
            try:
                with open(filename, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue  # released between the two calls: try again
            if not _is_stale(data, _now_nanoseconds(self._clock)):
                return False
            log.info("lock {name!r} is stale, removing {filename}", name=name, filename=filename)
            try:
                os.remove(filename)
            except FileNotFoundError:
                pass

    def _create_lock_file(self, filename: str) -> None:
        self._make_directories(os.path.dirname(filename))
        fd = os.open(filename, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "wb") as f:
            now = _now_nanoseconds(self._clock)
            f.write(_lock_file_bytes(time_json(now), now))
            f.flush()
            os.fsync(f.fileno())  # caddy#3954: some network file systems lose unsynced writes

    def _keep_fresh(self, name: str, filename: str) -> None:
        previous = self._held.pop(name, None)
        if previous is not None and previous.running:
            previous.stop()
        refresher = LoopingCall(lambda: self._refresh(filename, refresher))
        refresher.clock = self._clock
        self._held[name] = refresher
        refresher.start(LOCK_FRESHNESS_INTERVAL, now=False).addErrback(
            lambda failure: log.failure("keeping lock {name!r} fresh", failure, name=name)
        )

    def _refresh(self, filename: str, refresher: LoopingCall) -> None:
        """Rewrite ``updated``; stop once the file is gone (released, or taken over as stale)."""
        try:
            fd = os.open(filename, os.O_RDWR)
        except FileNotFoundError:
            refresher.stop()
            return
        with os.fdopen(fd, "r+b") as f:
            data = f.read(2048)
            try:
                _lock_times(data)
                created = json.loads(data).get("created") or time_json(_GO_ZERO_TIME)
            except (ValueError, AttributeError) as error:
                log.error("lock file {filename} is unreadable ({error}); no longer refreshing it",
                          filename=filename, error=error)
                refresher.stop()
                return
            f.seek(0)
            f.truncate()
            f.write(_lock_file_bytes(created, _now_nanoseconds(self._clock)))
            f.flush()
            os.fsync(f.fileno())

    def unlock(self, name: str) -> Deferred[None]:
        """Stop refreshing lock ``name`` and delete its file (KeyNotFound if it is already gone).

        As in certmagic the file is deleted whoever wrote it: if this holder stalled past
        staleness and another took the lock over, that holder's lock is lost too (rare, and
        better than locks nobody can remove).
        """
        return _deferred_call(self._unlock, name)

    def _unlock(self, name: str) -> None:
        refresher = self._held.pop(name, None)
        if refresher is not None and refresher.running:
            refresher.stop()
        try:
            os.remove(self.filename(lock_key(name)))
        except FileNotFoundError:
            raise KeyNotFound(lock_key(name)) from None

    def unlock_all(self) -> Deferred[None]:
        """Release every lock this instance holds, for a graceful stop (certmagic ``CleanUpOwnLocks``)."""
        def report(failure: Failure, name: str) -> None:
            log.failure("releasing lock {name!r}", failure, name=name)

        for name in sorted(self._held):
            # One lock lost (taken over as stale, deleted by hand) keeps no other held.
            self.unlock(name).addErrback(report, name)
        return succeed(None)


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- memory ----------------------------------------------------------------------------------


@implementer(IStorage)
class MemoryStorage:
    """``IStorage`` in a dict: ``FileStorage``'s contract for tests, with in-process locks.

    "Directories" are the prefixes of stored keys, as on the file system: storing
    ``a/b/c`` makes ``a`` and ``a/b`` exist (not terminal).  Locks are handed to waiters in the
    order they asked; they never go stale, since their holder cannot die without the process.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._values: dict[str, tuple[bytes, float]] = {}  # relative key -> (value, modified)
        # Locks are by lock key, so names with one lock file (``*`` and ``wildcard_``) share a lock.
        self._holders: dict[str, str] = {}  # lock key -> the name its holder asked for
        self._waiters: dict[str, deque[tuple[Deferred[None], str]]] = {}

    @property
    def values(self) -> dict[str, bytes]:
        """A copy of everything stored, by cleaned key (for assertions)."""
        return {key: value for key, (value, _) in self._values.items()}

    @property
    def held(self) -> frozenset[str]:
        """The names of the locks held now."""
        return frozenset(self._holders.values())

    def _below(self, rel: str) -> list[str]:
        """Stored keys strictly below the directory ``rel`` ("" is the root)."""
        if not rel:
            return list(self._values)
        start = rel + "/"
        return [k for k in self._values if k.startswith(start)]

    def _is_directory(self, rel: str) -> bool:
        return not rel or bool(self._below(rel))

    def store(self, key: str, value: bytes) -> Deferred[None]:
        return _deferred_call(self._store, key, value)

    def _store(self, key: str, value: bytes) -> None:
        rel = _relative_key(key)
        if not rel:
            raise ValueError("cannot store a value at the storage root")
        if self._below(rel):
            raise IsADirectoryError(f"other keys are stored below {key!r}")
        parent = rel
        while "/" in parent:
            parent = parent.rpartition("/")[0]
            if parent in self._values:
                raise NotADirectoryError(f"a stored value is in the way of directory {parent!r}")
        self._values[rel] = (bytes(value), self._clock.seconds())

    def load(self, key: str) -> Deferred[bytes]:
        return _deferred_call(self._load, key)

    def _load(self, key: str) -> bytes:
        try:
            return self._values[_relative_key(key)][0]
        except KeyError:
            raise KeyNotFound(key) from None

    def delete(self, key: str) -> Deferred[None]:
        return _deferred_call(self._delete, key)

    def _delete(self, key: str) -> None:
        rel = _relative_key(key)
        if not rel:
            raise ValueError("refusing to delete the whole storage")
        for below in self._below(rel):
            del self._values[below]
        self._values.pop(rel, None)

    def exists(self, key: str) -> Deferred[bool]:
        return _deferred_call(self._exists, key)

    def _exists(self, key: str) -> bool:
        rel = _relative_key(key)
        return rel in self._values or self._is_directory(rel)

    def list(self, prefix: str, recursive: bool) -> Deferred[list[str]]:
        return _deferred_call(self._list, prefix, recursive)

    def _list(self, prefix: str, recursive: bool) -> _Keys:
        rel = _relative_key(prefix)
        if rel in self._values:
            return []
        if not self._is_directory(rel):
            raise KeyNotFound(prefix)
        found = set()
        for below in self._below(rel):
            parts = (below[len(rel) + 1:] if rel else below).split("/")
            if not recursive:
                found.add(parts[0])
                continue
            for i in range(1, len(parts) + 1):
                found.add("/".join(parts[:i]))
        return sorted(_join(prefix, suffix) for suffix in found)

    def stat(self, key: str) -> Deferred[KeyInfo]:
        return _deferred_call(self._stat, key)

    def _stat(self, key: str) -> KeyInfo:
        rel = _relative_key(key)
        if rel in self._values:
            value, modified = self._values[rel]
            return KeyInfo(key, modified, len(value), True)
        if not self._is_directory(rel):
            raise KeyNotFound(key)
        below = self._below(rel)
        modified = max((self._values[k][1] for k in below), default=0.0)
        return KeyInfo(key, modified, 0, False)

    def lock(self, name: str) -> Deferred[None]:
        """Fires when lock ``name`` is free (at once) or handed over by ``unlock``; cancellable."""
        key = lock_key(name)
        if key not in self._holders:
            self._holders[key] = name
            return succeed(None)
        queue = self._waiters.setdefault(key, deque())

        def give_up(waiter: Deferred[None]) -> None:
            queue.remove((waiter, name))

        waiter: Deferred[None] = Deferred(give_up)
        queue.append((waiter, name))
        return waiter

    def unlock(self, name: str) -> Deferred[None]:
        """Hand lock ``name`` to its first waiter, or free it; KeyNotFound if it is not held."""
        return _deferred_call(self._release, lock_key(name))

    def _release(self, key: str) -> None:
        if key not in self._holders:
            raise KeyNotFound(key)
        queue = self._waiters.get(key)
        if queue:
            # The lock passes on without being free in between.
            waiter, self._holders[key] = queue.popleft()
            waiter.callback(None)
        else:
            del self._holders[key]
            self._waiters.pop(key, None)

    def unlock_all(self) -> Deferred[None]:
        """Release every lock held now (waiters then take them, as other processes would)."""
        for key in sorted(self._holders):
            self._release(key)
        return succeed(None)
