"""The ``txcaddy`` verbs that only report or compute: ``list-modules``, ``environ``, ``hash-password``.

Split out of ``cli`` (which parses the command line, dispatches here and re-exports these
names).  Follows Caddy 2.6.2's ``cmd/commandfuncs.go`` (``cmdListModules``, ``cmdEnviron``:
the output layout and counts) and ``modules/caddyhttp/caddyauth/command.go``
(``cmdHashPassword``: bcrypt cost 14 or scrypt, the password asked twice on a terminal or
read as one line of stdin).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import multiprocessing
import os
import platform
import sys
from typing import Any, TextIO

from txcaddy.errors import ConfigError
from txcaddy.tls.storage import default_storage_root

#: The version every command reports (``version``, ``environ``, ``list-modules``).
VERSION = "0.1.0"


#: Modules txcaddy implements outside the module registry (apps, the adapter, storage, TLS).
BUILTIN_MODULE_IDS = (
    "caddy.adapters.caddyfile",
    "caddy.storage.file_system",
    "http",
    "pki",
    "tls",
    "tls.certificates.automate",
    "tls.certificates.load_files",
    "tls.certificates.load_pem",
    "tls.certificates.load_storage",
    "tls.issuance.acme",
    "tls.issuance.internal",
    "tls.issuance.zerossl",
)


def _module_package(factory: Any) -> tuple[str, str]:
    """The Python package a module's code comes from, and that distribution's version."""
    from importlib import metadata

    if factory is None:  # implemented by txcaddy outside the registry
        return "txcaddy", VERSION
    name = getattr(factory, "__module__", None) or type(factory).__module__
    top = name.split(".", 1)[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return top, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return top, VERSION if top == "txcaddy" else "(unknown)"


def _plugin_package(plugin: Any) -> tuple[str, str]:
    """The distribution that installed a plugin's ``twisted/plugins/<name>.py`` and its
    version; a plugin outside any distribution (a folder on ``sys.path``) gives its Python
    module's name and ``(unknown)``.  (``twisted`` itself is never the answer, although every
    plugin lives in ``twisted.plugins``.)"""
    from importlib import metadata

    name = getattr(plugin, "__module__", None) or type(plugin).__module__
    module = sys.modules.get(name)
    path = os.path.realpath(getattr(module, "__file__", None) or "")
    for dist_name in metadata.packages_distributions().get("twisted", []):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if str(file).startswith("twisted/plugins/") and os.path.realpath(str(dist.locate_file(file))) == path:
                return dist.metadata["Name"], dist.version
    return name, "(unknown)"


def cmd_list_modules(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Module IDs, standard (txcaddy's own) then non-standard (plugins), with Caddy's counts."""
    from txcaddy.config import registry

    registry._load_builtins_and_plugins()
    modules: dict[str, Any] = dict.fromkeys(BUILTIN_MODULE_IDS)
    modules.update(registry.MODULES)
    plugins = registry.plugins()
    standard: list[tuple[str, str, str]] = []
    nonstandard: list[tuple[str, str, str]] = []
    for module_id in sorted(modules):
        if module_id in plugins:
            package, version = _plugin_package(plugins[module_id])
        else:
            package, version = _module_package(modules[module_id])
        (standard if package == "txcaddy" else nonstandard).append((module_id, package, version))

    def show(module_id: str, package: str, version: str) -> None:
        line = module_id
        if args.versions:
            line += " " + version
        if args.packages:
            line += " " + package
        print(line, file=out)

    if not args.skip_standard:
        for entry in standard:
            show(*entry)
        print(f"\n  Standard modules: {len(standard)}", file=out)
    if nonstandard:
        if standard and not args.skip_standard:
            print(file=out)
        for entry in nonstandard:
            show(*entry)
    print(f"\n  Non-standard modules: {len(nonstandard)}", file=out)
    print("\n  Unknown modules: 0", file=out)
    return 0


def cmd_environ(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Caddy's ``environ``: where it keeps things, the runtime, then every environment variable."""
    data = default_storage_root(os.environ)
    xdg_config = os.environ.get("XDG_CONFIG_HOME", "")
    home = os.environ.get("HOME", "")
    config_dir = os.path.join(xdg_config or os.path.join(home or ".", ".config"), "caddy")
    try:
        cwd = os.getcwd()
    except OSError as e:
        cwd = f"<error: {e}>"
    lines = [
        f"caddy.HomeDir={home or '.'}",
        f"caddy.AppDataDir={data}",
        f"caddy.AppConfigDir={config_dir}",
        f"caddy.ConfigAutosavePath={os.path.join(config_dir, 'autosave.json')}",
        f"caddy.Version={VERSION}",
        f"runtime.GOOS={sys.platform}",
        f"runtime.GOARCH={platform.machine()}",
        f"runtime.Compiler={platform.python_implementation()}",
        f"runtime.NumCPU={multiprocessing.cpu_count()}",
        f"runtime.GOMAXPROCS={len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 1}",
        f"runtime.Version={platform.python_version()}",
        f"os.Getwd={cwd}",
        "",
    ]
    lines += [f"{key}={value}" for key, value in os.environ.items()]
    print("\n".join(lines), file=out)
    return 0


def _read_plaintext(err: TextIO) -> bytes:
    """The password from the terminal (asked twice, not echoed) or one line of stdin."""
    stdin = sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Enter password: ", stream=err)
        second = getpass.getpass("Confirm password: ", stream=err)
        if first != second:
            raise ConfigError("password does not match")
        plaintext = first.encode()
    else:
        reader = getattr(stdin, "buffer", None)
        line = reader.readline() if reader is not None else stdin.readline().encode()
        if not line.endswith(b"\n"):
            raise ConfigError("EOF")  # Go's bufio.ReadBytes('\n') without a newline
        plaintext = line[:-1]
    if not plaintext:
        raise ConfigError("plaintext is required")
    return plaintext


def cmd_hash_password(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """bcrypt (cost 14, ``$2a$`` as Go writes it) or scrypt (deprecated; base64 of the key)."""
    plaintext = args.plaintext.encode() if args.plaintext else _read_plaintext(err)
    if args.algorithm == "bcrypt":
        import bcrypt

        # Go's bcrypt (Caddy 2.6.2) uses the first 72 bytes; Python's refuses longer input.
        hashed = bcrypt.hashpw(plaintext[:72], bcrypt.gensalt(14, prefix=b"2a")).decode()
    elif args.algorithm == "scrypt":
        key = hashlib.scrypt(plaintext, salt=args.salt.encode(), n=32768, r=8, p=1, maxmem=64 << 20, dklen=32)
        hashed = base64.b64encode(key).decode()
    else:
        raise ConfigError(f"unrecognized hash algorithm: {args.algorithm}")
    print(hashed, file=out)
    return 0
