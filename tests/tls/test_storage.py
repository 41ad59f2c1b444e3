"""Certificate storage: certmagic's key layout, the file-system and memory backends, lock files."""

from __future__ import annotations

import calendar
import json
import os
import stat
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.errors import ConfigError
from txcaddy.tls import storage as storage_module
from txcaddy.tls.storage import (
    FileStorage,
    KeyInfo,
    KeyNotFound,
    MemoryStorage,
    acme_ca_prefix,
    acme_user_key,
    acme_user_prefix,
    acme_user_reg,
    acme_users_prefix,
    ca_authority_prefix,
    certs_prefix,
    certs_site_prefix,
    default_storage_root,
    issue_cert_lock,
    lock_key,
    parse_rfc3339,
    safe,
    site_cert,
    site_meta,
    site_private_key,
    storage_from_config,
)

if TYPE_CHECKING:
    _ContractBase = SynchronousTestCase
else:
    _ContractBase = object

#: 2026-12-07T11:00:00Z, where every test clock starts.
START = calendar.timegm((2026, 12, 7, 11, 0, 0))
LE = "acme-v02.api.letsencrypt.org-directory"


class SafeTests(SynchronousTestCase):
    """``safe`` rewrites names as certmagic's ``KeyBuilder.Safe``."""

    def test_wildcard(self) -> None:
        """A wildcard's ``*`` is spelled ``wildcard_``."""
        self.assertEqual(safe("*.example.com"), "wildcard_.example.com")

    def test_lower_and_trim(self) -> None:
        """Names are lowered and trimmed of surrounding white space."""
        self.assertEqual(safe("  Example.COM \t"), "example.com")

    def test_replacements(self) -> None:
        """Space, ``+`` and ``:`` become ``_``, ``_plus_`` and ``-``."""
        self.assertEqual(safe("a b+c:443"), "a_b_plus_c-443")

    def test_dot_dot_removed(self) -> None:
        """``..`` is removed, so no name climbs a directory; single dots stay."""
        self.assertEqual(safe("../../etc/passwd"), "etcpasswd")
        self.assertEqual(safe("a...b"), "a.b")

    def test_other_characters_dropped(self) -> None:
        """Anything but ASCII letters, digits and ``_@.-`` is dropped (``\\w`` is ASCII in RE2)."""
        self.assertEqual(safe("user@mail.example/é%!x_y-z"), "user@mail.examplex_y-z")

    def test_go_lowering(self) -> None:
        """Lowering is Go's per code point (the Kelvin sign lowers to ``k``)."""
        self.assertEqual(safe("\u212aey"), "key")


class KeyBuilderTests(SynchronousTestCase):
    """The key builders give the keys Caddy 2.6.2 writes."""

    def test_site_keys(self) -> None:
        """A certificate, its key and its metadata live in the name's own directory."""
        self.assertEqual(certs_prefix(LE), "certificates/acme-v02.api.letsencrypt.org-directory")
        self.assertEqual(certs_site_prefix("local", "*.example.com"), "certificates/local/wildcard_.example.com")
        self.assertEqual(site_cert("local", "Example.com"), "certificates/local/example.com/example.com.crt")
        self.assertEqual(site_private_key("local", "example.com"), "certificates/local/example.com/example.com.key")
        self.assertEqual(site_meta("local", "example.com"), "certificates/local/example.com/example.com.json")

    def test_ca_authority_prefix(self) -> None:
        """The internal CA's files are under ``pki/authorities/<id>``."""
        self.assertEqual(ca_authority_prefix("local"), "pki/authorities/local")
        self.assertEqual(ca_authority_prefix("My CA"), "pki/authorities/my_ca")

    def test_acme_account_keys(self) -> None:
        """An account's files are named after the email's local part."""
        self.assertEqual(acme_ca_prefix(LE), f"acme/{LE}")
        self.assertEqual(acme_users_prefix(LE), f"acme/{LE}/users")
        self.assertEqual(acme_user_prefix(LE, "Me@Example.com"), f"acme/{LE}/users/me@example.com")
        self.assertEqual(acme_user_key(LE, "Me@Example.com"), f"acme/{LE}/users/me@example.com/me.key")
        self.assertEqual(acme_user_reg(LE, "me@example.com"), f"acme/{LE}/users/me@example.com/me.json")

    def test_acme_default_email(self) -> None:
        """Without an email the account is ``default``, in ``default/default.key``."""
        self.assertEqual(acme_user_key(LE, ""), f"acme/{LE}/users/default/default.key")
        self.assertEqual(acme_user_reg(LE, ""), f"acme/{LE}/users/default/default.json")

    def test_acme_email_local_part_rules(self) -> None:
        """``@`` first names the file after the domain; nothing left gives ``private``/``registration``."""
        self.assertEqual(acme_user_key(LE, "@example.com"), f"acme/{LE}/users/@example.com/example.com.key")
        self.assertEqual(acme_user_reg(LE, "@"), f"acme/{LE}/users/@/registration.json")
        self.assertEqual(acme_user_key(LE, "@"), f"acme/{LE}/users/@/private.key")
        self.assertEqual(acme_user_key(LE, "nobody"), f"acme/{LE}/users/nobody/nobody.key")

    def test_lock_keys(self) -> None:
        """Obtaining ``*.example.com`` locks ``locks/issue_cert_wildcard_.example.com.lock``."""
        self.assertEqual(issue_cert_lock("*.example.com"), "issue_cert_*.example.com")
        self.assertEqual(lock_key(issue_cert_lock("*.example.com")), "locks/issue_cert_wildcard_.example.com.lock")
        self.assertEqual(lock_key("a/../b"), "locks/ab.lock")


class DefaultRootTests(SynchronousTestCase):
    """``default_storage_root`` is Caddy's ``AppDataDir`` on Linux."""

    def test_xdg_data_home(self) -> None:
        """``$XDG_DATA_HOME/caddy`` comes first."""
        self.assertEqual(default_storage_root({"XDG_DATA_HOME": "/data", "HOME": "/home/u"}), "/data/caddy")

    def test_home(self) -> None:
        """Then ``$HOME/.local/share/caddy`` (an empty XDG_DATA_HOME counts as unset)."""
        self.assertEqual(default_storage_root({"XDG_DATA_HOME": "", "HOME": "/home/u"}), "/home/u/.local/share/caddy")

    def test_neither(self) -> None:
        """Then ``./caddy``."""
        self.assertEqual(default_storage_root({}), "./caddy")


class StorageFromConfigTests(SynchronousTestCase):
    """``storage_from_config`` reads Caddy JSON's top-level ``storage``."""

    def test_default(self) -> None:
        """No ``storage`` is the file system under the default root."""
        storage = storage_from_config(None, Clock(), {"HOME": "/home/u"})
        assert isinstance(storage, FileStorage)
        self.assertEqual(storage.root, "/home/u/.local/share/caddy")

    def test_file_system(self) -> None:
        """``file_system`` with a ``root`` is a file storage there."""
        storage = storage_from_config({"module": "file_system", "root": "/var/lib/caddy"}, Clock())
        assert isinstance(storage, FileStorage)
        self.assertEqual(storage.root, "/var/lib/caddy")

    def test_file_system_without_root(self) -> None:
        """``file_system`` without a root is certmagic's empty path: the working directory."""
        storage = storage_from_config({"module": "file_system"}, Clock())
        assert isinstance(storage, FileStorage)
        self.assertEqual(storage.root, os.getcwd())

    def test_unknown_module(self) -> None:
        """Another module fails as Caddy fails on a module it was not built with."""
        error = self.assertRaises(ConfigError, storage_from_config, {"module": "nosuch"}, Clock())
        self.assertEqual(str(error), "loading storage module: loading module 'nosuch': unknown module: caddy.storage.nosuch")

    def _register(self, factory: Any, schema: Any = None) -> None:
        from txcaddy.config import registry

        registry.known("caddy.storage.")  # the built-ins and plugins first
        registry.MODULES["caddy.storage.test_memory"] = factory
        if schema is not None:
            registry.SCHEMAS["caddy.storage.test_memory"] = schema
        self.addCleanup(registry.MODULES.pop, "caddy.storage.test_memory", None)
        self.addCleanup(registry.SCHEMAS.pop, "caddy.storage.test_memory", None)

    def test_registered_module(self) -> None:
        """A ``caddy.storage.*`` module from the registry gets its JSON (without ``module``) and the clock."""
        seen: list[Any] = []
        clock = Clock()

        def factory(config: dict[str, Any], context: Any) -> MemoryStorage:
            seen.append((config, context.reactor))
            return MemoryStorage(clock)

        self._register(factory)
        storage = storage_from_config({"module": "test_memory", "size": 3}, clock)
        self.assertIsInstance(storage, MemoryStorage)
        self.assertEqual(seen, [({"size": 3}, clock)])

    def test_registered_module_schema(self) -> None:
        """A registered storage module's schema refuses a mistyped field before the factory runs."""
        from txcaddy.config.schema import INT, Obj

        self._register(lambda config, context: self.fail("built"), Obj({"size": INT}, strict=True))
        error = self.assertRaises(ConfigError, storage_from_config, {"module": "test_memory", "size": "x"}, Clock())
        self.assertIn("loading module 'test_memory': decoding module config: caddy.storage.test_memory:", str(error))
        self.assertIn("storage.size", str(error))

    def test_unknown_field(self) -> None:
        """An unknown field of ``file_system`` is refused, as Caddy's strict decoding does."""
        error = self.assertRaises(ConfigError, storage_from_config, {"module": "file_system", "rot": "/x"}, Clock())
        self.assertIn('json: unknown field "rot"', str(error))

    def test_missing_module(self) -> None:
        """An object without ``module`` is refused."""
        error = self.assertRaises(ConfigError, storage_from_config, {"root": "/x"}, Clock())
        self.assertIn("module name not specified with key 'module'", str(error))

    def test_root_not_a_string(self) -> None:
        """A root that is not a string is refused."""
        error = self.assertRaises(ConfigError, storage_from_config, {"module": "file_system", "root": 5}, Clock())
        self.assertIn("FileStorage.root of type string", str(error))


class RFC3339Tests(SynchronousTestCase):
    """Lock file times are read as Go writes ``time.Time`` in JSON."""

    def test_nanoseconds_utc(self) -> None:
        """Nine fraction digits and ``Z``."""
        self.assertEqual(parse_rfc3339("2026-12-07T11:00:00.123456789Z"), START * 10**9 + 123456789)

    def test_offset(self) -> None:
        """A ``+01:00`` zone is an hour ahead of UTC; a short fraction is tenths."""
        self.assertEqual(parse_rfc3339("2026-12-07T12:00:04.5+01:00"), (START + 4) * 10**9 + 500_000_000)
        self.assertEqual(parse_rfc3339("2026-12-07T10:30:00-00:30"), START * 10**9)

    def test_no_fraction(self) -> None:
        """A time without a fraction is whole seconds."""
        self.assertEqual(parse_rfc3339("2026-12-07T11:00:00Z"), START * 10**9)

    def test_go_zero_time(self) -> None:
        """Go's zero time (year 1) is read."""
        self.assertEqual(parse_rfc3339("0001-01-01T00:00:00Z"), -62135596800 * 10**9)

    def test_malformed(self) -> None:
        """No zone, a bad date or a bad hour is refused."""
        for text in ("2026-12-07T11:00:00", "2026-02-30T11:00:00Z", "2026-12-07T24:00:00Z", "2026-12-07 11:00:00Z"):
            self.assertRaises(ValueError, parse_rfc3339, text)


class StorageContractMixin(_ContractBase):
    """What every ``IStorage`` does; subclasses say which storage with ``make_storage``."""

    clock: Clock
    storage: Any

    def make_storage(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.storage = self.make_storage()

    def store(self, key: str, value: bytes) -> None:
        self.assertIsNone(self.successResultOf(self.storage.store(key, value)))

    def test_round_trip(self) -> None:
        """What is stored is loaded back, byte for byte."""
        self.store("certificates/local/a/a.crt", b"\x00PEM\xff")
        self.assertEqual(self.successResultOf(self.storage.load("certificates/local/a/a.crt")), b"\x00PEM\xff")

    def test_store_replaces(self) -> None:
        """A second store replaces the first value."""
        self.store("k", b"one, longer")
        self.store("k", b"two")
        self.assertEqual(self.successResultOf(self.storage.load("k")), b"two")

    def test_load_absent(self) -> None:
        """Loading an absent key fails with KeyNotFound naming it."""
        failure = self.failureResultOf(self.storage.load("no/such"), KeyNotFound)
        self.assertEqual(failure.value.args, ("no/such",))

    def test_load_prefix(self) -> None:
        """A "directory" holds no value: loading it is KeyNotFound."""
        self.store("a/b", b"x")
        self.failureResultOf(self.storage.load("a"), KeyNotFound)

    def test_exists(self) -> None:
        """Stored keys and their prefixes exist; others do not, without failing."""
        self.store("a/b/c", b"x")
        self.assertTrue(self.successResultOf(self.storage.exists("a/b/c")))
        self.assertTrue(self.successResultOf(self.storage.exists("a/b")))
        self.assertFalse(self.successResultOf(self.storage.exists("a/c")))
        self.assertFalse(self.successResultOf(self.storage.exists("a/b/c/d")))

    def test_list(self) -> None:
        """``list`` gives the keys below a prefix, one level or all of them, sorted, as full keys."""
        for key in ("p/b/2", "p/a", "p/b/1", "p/b/deep/x", "q/other"):
            self.store(key, b"v")
        self.assertEqual(self.successResultOf(self.storage.list("p", False)), ["p/a", "p/b"])
        self.assertEqual(
            self.successResultOf(self.storage.list("p", True)),
            ["p/a", "p/b", "p/b/1", "p/b/2", "p/b/deep", "p/b/deep/x"],
        )
        self.assertEqual(self.successResultOf(self.storage.list("", False)), ["p", "q"])

    def test_list_absent_and_terminal(self) -> None:
        """Listing an absent prefix is KeyNotFound; listing a stored value gives nothing."""
        self.store("p/a", b"v")
        self.failureResultOf(self.storage.list("nothing", True), KeyNotFound)
        self.assertEqual(self.successResultOf(self.storage.list("p/a", True)), [])

    def test_stat(self) -> None:
        """``stat`` tells a value's size and that it is terminal, and that a prefix is not."""
        self.store("p/a", b"12345")
        info = self.successResultOf(self.storage.stat("p/a"))
        self.assertEqual((info.key, info.size, info.is_terminal), ("p/a", 5, True))
        self.assertIsInstance(info.modified, float)
        self.assertFalse(self.successResultOf(self.storage.stat("p")).is_terminal)
        self.failureResultOf(self.storage.stat("p/b"), KeyNotFound)

    def test_delete_key(self) -> None:
        """Deleting a key removes it and leaves its neighbours."""
        self.store("p/a", b"1")
        self.store("p/b", b"2")
        self.assertIsNone(self.successResultOf(self.storage.delete("p/a")))
        self.assertFalse(self.successResultOf(self.storage.exists("p/a")))
        self.assertEqual(self.successResultOf(self.storage.load("p/b")), b"2")

    def test_delete_prefix(self) -> None:
        """Deleting a prefix removes everything below it."""
        self.store("certificates/local/a/a.crt", b"1")
        self.store("certificates/local/a/a.key", b"2")
        self.store("certificates/local/b/b.crt", b"3")
        self.successResultOf(self.storage.delete("certificates/local/a"))
        self.assertEqual(
            self.successResultOf(self.storage.list("certificates", True)),
            ["certificates/local", "certificates/local/b", "certificates/local/b/b.crt"],
        )

    def test_delete_absent(self) -> None:
        """Deleting what is not there succeeds (an error only if the key is still there)."""
        self.assertIsNone(self.successResultOf(self.storage.delete("no/such")))

    def test_delete_root_refused(self) -> None:
        """Deleting the whole storage (the empty key) is refused and removes nothing."""
        self.store("a", b"1")
        self.failureResultOf(self.storage.delete(""), ValueError)
        self.failureResultOf(self.storage.delete("/"), ValueError)
        self.assertEqual(self.successResultOf(self.storage.load("a")), b"1")

    def test_escaping_keys_refused(self) -> None:
        """Keys whose ``..`` climb above the root are refused by every method."""
        for key in ("../x", "a/../../x", "/../x", ".."):
            self.failureResultOf(self.storage.store(key, b"x"), ValueError)
            self.failureResultOf(self.storage.load(key), ValueError)
            self.failureResultOf(self.storage.exists(key), ValueError)
            self.failureResultOf(self.storage.list(key, True), ValueError)
            self.failureResultOf(self.storage.stat(key), ValueError)
            self.failureResultOf(self.storage.delete(key), ValueError)

    def test_keys_cleaned(self) -> None:
        """A key is cleaned as a path: ``/a//b/../c`` is ``a/c``."""
        self.store("/a//b/../c", b"v")
        self.assertEqual(self.successResultOf(self.storage.load("a/c")), b"v")

    def test_value_in_the_way(self) -> None:
        """A value cannot be stored below another value, nor over a prefix of others."""
        self.store("a/b", b"v")
        self.failureResultOf(self.storage.store("a/b/c", b"w"), OSError)
        self.failureResultOf(self.storage.store("a", b"w"), OSError)
        self.assertEqual(self.successResultOf(self.storage.load("a/b")), b"v")

    # -- locks

    def test_lock_free(self) -> None:
        """A free lock is taken at once."""
        self.assertIsNone(self.successResultOf(self.storage.lock("issue_cert_example.com")))

    def test_second_lock_waits_until_unlock(self) -> None:
        """A second ``lock`` waits while the first holder keeps it, and fires after ``unlock``."""
        self.successResultOf(self.storage.lock("n"))
        second = self.storage.lock("n")
        self.clock.pump([1] * 30)
        self.assertNoResult(second)
        self.successResultOf(self.storage.unlock("n"))
        self.clock.advance(1)
        self.assertIsNone(self.successResultOf(second))

    def test_names_independent(self) -> None:
        """Different names are different locks."""
        self.successResultOf(self.storage.lock("a"))
        self.successResultOf(self.storage.lock("b"))

    def test_cancel_waiting(self) -> None:
        """Cancelling a waiting ``lock`` fails it and stops it taking the lock later."""
        self.successResultOf(self.storage.lock("n"))
        waiting = self.storage.lock("n")
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.successResultOf(self.storage.unlock("n"))
        self.clock.advance(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.successResultOf(self.storage.lock("n"))  # free: the cancelled waiter did not take it

    def test_unlock_not_held(self) -> None:
        """Unlocking a lock nobody holds fails with KeyNotFound."""
        self.failureResultOf(self.storage.unlock("n"), KeyNotFound)

    def test_unlock_all(self) -> None:
        """``unlock_all`` releases every lock held, so they can be taken again at once."""
        self.successResultOf(self.storage.lock("a"))
        self.successResultOf(self.storage.lock("b"))
        self.assertEqual(self.storage.held, {"a", "b"})
        self.assertIsNone(self.successResultOf(self.storage.unlock_all()))
        self.assertEqual(self.storage.held, frozenset())
        self.successResultOf(self.storage.lock("a"))
        self.successResultOf(self.storage.lock("b"))


class FileStorageContractTests(StorageContractMixin, SynchronousTestCase):
    """``FileStorage`` keeps the storage contract."""

    def make_storage(self) -> FileStorage:
        return FileStorage(self.mktemp(), self.clock)


class MemoryStorageContractTests(StorageContractMixin, SynchronousTestCase):
    """``MemoryStorage`` keeps the storage contract."""

    def make_storage(self) -> MemoryStorage:
        return MemoryStorage(self.clock)


class MemoryStorageTests(SynchronousTestCase):
    """What only the memory storage does."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.storage = MemoryStorage(self.clock)

    def test_waiters_in_order(self) -> None:
        """Waiting ``lock`` calls get the lock in the order they asked, one unlock each."""
        self.successResultOf(self.storage.lock("n"))
        first, second = self.storage.lock("n"), self.storage.lock("n")
        self.successResultOf(self.storage.unlock("n"))
        self.successResultOf(first)
        self.assertNoResult(second)
        self.successResultOf(self.storage.unlock("n"))
        self.successResultOf(second)
        self.successResultOf(self.storage.unlock("n"))
        self.assertEqual(self.storage.held, frozenset())

    def test_lock_names_as_lock_keys(self) -> None:
        """Names with the same lock file are the same lock, as on the file system."""
        self.successResultOf(self.storage.lock("issue_cert_*.example.com"))
        self.assertEqual(self.storage.held, {"issue_cert_*.example.com"})
        waiting = self.storage.lock("issue_cert_wildcard_.example.com")
        self.assertNoResult(waiting)
        self.successResultOf(self.storage.unlock("issue_cert_wildcard_.example.com"))
        self.successResultOf(waiting)
        self.assertEqual(self.storage.held, {"issue_cert_wildcard_.example.com"})

    def test_modified_from_clock(self) -> None:
        """A value's modification time is the clock's; a prefix's is its newest value's."""
        self.clock.advance(100)
        self.successResultOf(self.storage.store("p/a", b"1"))
        self.clock.advance(5)
        self.successResultOf(self.storage.store("p/b", b"2"))
        self.assertEqual(self.successResultOf(self.storage.stat("p/a")), KeyInfo("p/a", 100.0, 1, True))
        self.assertEqual(self.successResultOf(self.storage.stat("p")), KeyInfo("p", 105.0, 0, False))

    def test_values(self) -> None:
        """``values`` shows everything stored by cleaned key."""
        self.successResultOf(self.storage.store("/a//b", b"1"))
        self.assertEqual(self.storage.values, {"a/b": b"1"})


class FileStorageTests(SynchronousTestCase):
    """What only the file system storage does: files, modes, lock files."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.root = os.path.abspath(self.mktemp())
        self.storage = FileStorage(self.root, self.clock)
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def mode(self, path: str) -> int:
        return stat.S_IMODE(os.stat(path).st_mode)

    def test_files_and_modes(self) -> None:
        """A key is a file under the root; files are 0600 and every directory made is 0700."""
        self.successResultOf(self.storage.store("certificates/local/a.test/a.test.key", b"KEY"))
        with open(self.path("certificates", "local", "a.test", "a.test.key"), "rb") as f:
            self.assertEqual(f.read(), b"KEY")
        self.assertEqual(self.mode(self.path("certificates", "local", "a.test", "a.test.key")), 0o600)
        for directory in ("", "certificates", "certificates/local", "certificates/local/a.test"):
            self.assertEqual(self.mode(self.path(directory)), 0o700, directory)

    def test_replace_is_atomic(self) -> None:
        """A store writes a new file and renames it over the old one, leaving no temporary file."""
        self.successResultOf(self.storage.store("k/v", b"old"))
        before = os.stat(self.path("k", "v")).st_ino
        self.successResultOf(self.storage.store("k/v", b"new"))
        self.assertNotEqual(os.stat(self.path("k", "v")).st_ino, before)
        self.assertEqual(os.listdir(self.path("k")), ["v"])
        self.assertEqual(self.mode(self.path("k", "v")), 0o600)

    def test_failed_store_keeps_old_value(self) -> None:
        """A store that fails before the rename leaves the old value and no temporary file."""
        self.successResultOf(self.storage.store("k/v", b"old"))

        def broken(src: str, dst: str) -> None:
            raise OSError("disk full")

        self.patch(storage_module.os, "replace", broken)
        self.failureResultOf(self.storage.store("k/v", b"new"), OSError)
        self.assertEqual(self.successResultOf(self.storage.load("k/v")), b"old")
        self.assertEqual(os.listdir(self.path("k")), ["v"])

    def test_stat_modified_is_file_time(self) -> None:
        """``stat`` gives the file's modification time."""
        self.successResultOf(self.storage.store("k", b"v"))
        os.utime(self.path("k"), (1000.5, 1000.5))
        self.assertEqual(self.successResultOf(self.storage.stat("k")), KeyInfo("k", 1000.5, 1, True))

    def test_absolute_key_inside_root(self) -> None:
        """A leading ``/`` stays inside the root, as ``filepath.Join`` keeps it."""
        self.successResultOf(self.storage.store("/etc/x", b"v"))
        self.assertTrue(os.path.isfile(self.path("etc", "x")))

    def test_escaping_key_writes_nothing(self) -> None:
        """A refused key creates no file outside (or inside) the root."""
        self.failureResultOf(self.storage.store("a/../../escaped", b"v"), ValueError)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.root), "escaped")))
        self.assertFalse(os.path.exists(self.root))

    def test_list_empty_storage(self) -> None:
        """Listing the root of a storage never written to gives nothing."""
        self.assertEqual(self.successResultOf(self.storage.list("", True)), [])

    # -- locks

    def lock_path(self, name: str) -> str:
        return self.path(*lock_key(name).split("/"))

    def read_lock(self, name: str) -> dict[str, str]:
        with open(self.lock_path(name), "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"}\n"))
        result: dict[str, str] = json.loads(data)
        return result

    def write_lock(self, name: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(self.lock_path(name)), exist_ok=True)
        with open(self.lock_path(name), "wb") as f:
            f.write(data)

    def test_lock_file(self) -> None:
        """The lock is certmagic's file, mode 0644, holding created and updated in RFC 3339."""
        self.clock.advance(0.25)
        self.successResultOf(self.storage.lock(issue_cert_lock("*.example.com")))
        path = self.path("locks", "issue_cert_wildcard_.example.com.lock")
        self.assertEqual(self.mode(path), 0o644)
        self.assertEqual(self.mode(self.path("locks")), 0o700)
        with open(path, "rb") as f:
            self.assertEqual(
                f.read(), b'{"created":"2026-12-07T11:00:00.25Z","updated":"2026-12-07T11:00:00.25Z"}\n'
            )
        self.assertEqual(self.storage.held, {"issue_cert_*.example.com"})

    def test_unlock_deletes_file(self) -> None:
        """Unlocking deletes the lock file and stops refreshing it."""
        self.successResultOf(self.storage.lock("n"))
        self.successResultOf(self.storage.unlock("n"))
        self.assertFalse(os.path.exists(self.lock_path("n")))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.storage.held, frozenset())

    def test_refresher_rewrites_updated(self) -> None:
        """While held, ``updated`` is rewritten every 5 s and ``created`` is kept."""
        self.successResultOf(self.storage.lock("n"))
        self.clock.advance(4.9)
        self.assertEqual(self.read_lock("n")["updated"], "2026-12-07T11:00:00Z")
        self.clock.advance(0.1)
        self.assertEqual(
            self.read_lock("n"), {"created": "2026-12-07T11:00:00Z", "updated": "2026-12-07T11:00:05Z"}
        )
        self.clock.advance(5)
        self.assertEqual(self.read_lock("n")["updated"], "2026-12-07T11:00:10Z")

    def test_refresher_stops_when_file_gone(self) -> None:
        """A lock file removed by someone else is not recreated, and refreshing stops."""
        self.successResultOf(self.storage.lock("n"))
        os.remove(self.lock_path("n"))
        self.clock.advance(5)
        self.assertFalse(os.path.exists(self.lock_path("n")))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(self.storage.unlock("n"), KeyNotFound)

    def test_held_lock_never_stale(self) -> None:
        """Another instance waits on a refreshed lock for as long as it is held."""
        self.successResultOf(self.storage.lock("n"))
        other = FileStorage(self.root, self.clock)
        waiting = other.lock("n")
        self.clock.pump([1] * 60)
        self.assertNoResult(waiting)
        self.successResultOf(self.storage.unlock("n"))
        self.clock.advance(1)
        self.successResultOf(waiting)
        self.assertEqual(other.held, {"n"})
        self.assertEqual(self.storage.held, frozenset())

    def test_stale_lock_taken_over(self) -> None:
        """A lock file not updated for more than 10 s is deleted and taken."""
        self.write_lock("n", b'{"created":"2026-12-07T10:59:49Z","updated":"2026-12-07T10:59:51Z"}\n')
        waiting = self.storage.lock("n")  # 9 s old: fresh
        self.clock.advance(1)  # 10 s: still fresh
        self.assertNoResult(waiting)
        self.clock.advance(1)  # 11 s: stale
        self.successResultOf(waiting)
        self.assertEqual(self.read_lock("n")["created"], "2026-12-07T11:00:02Z")

    def test_dead_holder_taken_over_after_ten_seconds(self) -> None:
        """A holder that stops refreshing (died) loses the lock 10 s after its last update."""
        dead = FileStorage(self.root, self.clock)
        self.successResultOf(dead.lock("n"))
        dead._held.pop("n").stop()  # the process is gone: nothing refreshes the file
        waiting = self.storage.lock("n")
        self.clock.pump([1] * 10)
        self.assertNoResult(waiting)
        self.clock.advance(1)
        self.successResultOf(waiting)

    def test_created_used_without_updated(self) -> None:
        """Without ``updated`` (or with Go's zero time) the age is taken from ``created``."""
        self.write_lock("a", b'{"created":"2026-12-07T10:59:55Z"}')
        self.write_lock("b", b'{"created":"2026-12-07T10:59:55Z","updated":"0001-01-01T00:00:00Z"}')
        self.write_lock("c", b'{"created":"2026-12-07T10:59:40Z","updated":"0001-01-01T00:00:00Z"}')
        self.assertNoResult(self.storage.lock("a"))
        self.assertNoResult(self.storage.lock("b"))
        self.successResultOf(self.storage.lock("c"))

    def test_empty_lock_file_stale(self) -> None:
        """An empty lock file (a holder that crashed while creating it) is taken at once."""
        self.write_lock("n", b"")
        self.successResultOf(self.storage.lock("n"))
        self.assertEqual(self.read_lock("n")["created"], "2026-12-07T11:00:00Z")

    def test_unreadable_lock_files_stale(self) -> None:
        """Truncated JSON, JSON that is not an object and bad times are taken as stale."""
        for i, data in enumerate([b'{"created":"2026-12-07T1', b"[]", b'{"updated":"yesterday"}', b'{"updated":5}']):
            self.write_lock(f"n{i}", data)
            self.successResultOf(self.storage.lock(f"n{i}"))

    def test_go_written_lock_file(self) -> None:
        """A lock file as Go writes it (nanoseconds, another zone) is read and aged correctly."""
        self.write_lock(
            "n", b'{"created":"2026-12-07T10:59:50.987654321Z","updated":"2026-12-07T12:00:04.5+01:00"}\n'
        )
        self.clock.advance(14)  # 9.5 s after the update
        waiting = self.storage.lock("n")
        self.assertNoResult(waiting)
        self.clock.advance(1)  # 10.5 s
        self.successResultOf(waiting)

    def test_refresher_keeps_go_created(self) -> None:
        """Refreshing a lock keeps ``created`` as written and writes ``updated`` in UTC."""
        self.successResultOf(self.storage.lock("n"))
        self.write_lock("n", b'{"created":"2026-12-07T12:00:00.123456789+01:00","updated":"2026-12-07T11:00:00Z"}')
        self.clock.advance(5)
        self.assertEqual(
            self.read_lock("n"),
            {"created": "2026-12-07T12:00:00.123456789+01:00", "updated": "2026-12-07T11:00:05Z"},
        )

    def test_cancel_stops_polling(self) -> None:
        """A cancelled waiter looks at the lock file no more."""
        self.write_lock("n", b'{"created":"2026-12-07T11:00:00Z","updated":"2026-12-07T11:00:00Z"}')
        waiting = self.storage.lock("n")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)  # stale by now, but nobody is waiting to take it
        with open(self.lock_path("n"), "rb") as f:
            self.assertIn(b'"updated":"2026-12-07T11:00:00Z"', f.read())

    def test_unlock_all_keeps_going(self) -> None:
        """``unlock_all`` releases the other locks when one file is already gone."""
        self.successResultOf(self.storage.lock("a"))
        self.successResultOf(self.storage.lock("b"))
        os.remove(self.lock_path("a"))
        self.successResultOf(self.storage.unlock_all())
        self.assertFalse(os.path.exists(self.lock_path("b")))
        self.assertEqual(self.storage.held, frozenset())
        self.assertEqual(len(self.flushLoggedErrors(KeyNotFound)), 1)
