"""A pretend machine for ``txcaddy.tls.truststore``: a temporary directory stands in for the
system trust store and its bundle, a temporary ``$HOME`` holds NSS databases, and ``run``
records each command and acts it out (``tee``, ``rm``, ``update-ca-certificates``,
``certutil -A/-V/-D``) instead of touching this machine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.tls import truststore

PROGRAMS = ("certutil", "sudo", "tee", "rm", "update-ca-certificates")


class FakeMachine:
    """Files under ``root``; ``environ`` for the truststore functions; ``commands`` recorded.

    @ivar anchors: the directory standing in for ``/usr/local/share/ca-certificates``.
    @ivar bundle: the system bundle that ``update-ca-certificates`` rebuilds from ``anchors``.
    @ivar nss: per database (``sql:<dir>``), the nicknames it holds and their PEM.
    @ivar fail: program name, or name and first argument (``"certutil -D"``) -> (exit status,
        output) for commands that should fail.
    """

    def __init__(self, root: str, programs: Sequence[str] = PROGRAMS) -> None:
        self.root = root
        self.bin = os.path.join(root, "bin")
        self.home = os.path.join(root, "home")
        self.anchors = os.path.join(root, "usr", "local", "share", "ca-certificates")
        self.bundle = os.path.join(root, "etc", "ssl", "certs", "ca-certificates.crt")
        self.cert_dir = os.path.join(root, "etc", "ssl", "certdir")
        for directory in (self.bin, self.home, self.anchors, os.path.dirname(self.bundle), self.cert_dir):
            os.makedirs(directory, exist_ok=True)
        with open(self.bundle, "wb") as f:
            f.write(b"")
        for name in programs:
            self.add_program(name)
        self.environ = {
            "PATH": self.bin, "HOME": self.home, "SSL_CERT_FILE": self.bundle, "SSL_CERT_DIR": self.cert_dir,
        }
        self.commands: list[list[str]] = []
        self.inputs: list[bytes | None] = []
        self.nss: dict[str, dict[str, bytes]] = {}
        self.fail: dict[str, tuple[int, bytes]] = {}

    def add_program(self, name: str) -> str:
        path = os.path.join(self.bin, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 99\n")  # never run: ``run`` acts it out
        os.chmod(path, 0o755)
        return path

    def candidates(self) -> list[truststore.SystemTrustLocation]:
        """``SYSTEM_TRUST_CANDIDATES`` with Debian's directory moved under ``root``."""
        return [
            truststore.SystemTrustLocation(os.path.join(self.root, "fedora-anchors"), ".pem", ("update-ca-trust", "extract")),
            truststore.SystemTrustLocation(self.anchors, ".crt", ("update-ca-certificates",)),
        ]

    def use(self, case: SynchronousTestCase) -> None:
        """Point the module's system paths at this machine for the test ``case``."""
        case.patch(truststore, "SYSTEM_TRUST_CANDIDATES", self.candidates())
        case.patch(truststore, "SYSTEM_ROOT_FILES", [self.bundle])
        case.patch(truststore, "SYSTEM_ROOT_DIRECTORIES", [self.cert_dir])

    def nss_database(self, where: str = ".pki/nssdb", kind: str = "sql") -> str:
        """Create an (empty) NSS database under ``$HOME``; its certutil name."""
        directory = os.path.join(self.home, where)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "cert9.db" if kind == "sql" else "cert8.db"), "wb"):
            pass
        name = f"{kind}:{directory}"
        self.nss[name] = {}
        return name

    def names(self) -> list[list[str]]:
        """The commands with each program given by its base name (sudo's as given)."""
        return [[os.path.basename(argv[0]), *argv[1:]] for argv in self.commands]

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        assert kwargs["capture_output"] is True and kwargs["check"] is False, kwargs
        assert kwargs["env"]["PATH"] == self.bin
        self.commands.append(list(argv))
        data: bytes | None = kwargs.get("input")
        self.inputs.append(data)
        if argv[:2] == ["sudo", "--"]:
            argv = argv[2:]
        name = os.path.basename(argv[0])
        failure = self.fail.get(f"{name} {argv[1]}" if len(argv) > 1 else name) or self.fail.get(name)
        if failure is not None:
            status, output = failure
            return subprocess.CompletedProcess(argv, status, b"", output)
        status = self._act(name, argv[1:], data)
        return subprocess.CompletedProcess(argv, status, b"", b"" if status == 0 else b"not found")

    def _act(self, name: str, args: list[str], data: bytes | None) -> int:
        if name == "tee":
            assert data is not None
            with open(args[0], "wb") as f:
                f.write(data)
        elif name == "rm":
            assert args[0] == "-f"
            if os.path.exists(args[1]):
                os.unlink(args[1])
        elif name in ("update-ca-certificates", "update-ca-trust"):
            with open(self.bundle, "wb") as out:
                for anchor in sorted(os.listdir(self.anchors)):
                    with open(os.path.join(self.anchors, anchor), "rb") as f:
                        out.write(f.read())
        elif name == "certutil":
            return self._certutil(args)
        else:
            raise AssertionError(f"unexpected command {name} {args}")
        return 0

    def _certutil(self, args: list[str]) -> int:
        options = dict(zip(args[1::2], args[2::2], strict=False))
        database = self.nss[args[args.index("-d") + 1]]
        nickname = args[args.index("-n") + 1]
        if args[0] == "-A":
            assert options["-t"] == "C,,", options
            with open(options["-i"], "rb") as f:
                database[nickname] = f.read()
            return 0
        if args[0] == "-V":
            assert options["-u"] == "L", options
            return 0 if nickname in database else 255
        if args[0] == "-D":
            return 0 if database.pop(nickname, None) is not None else 255
        raise AssertionError(f"unexpected certutil {args}")
