"""Go's ``runtime.GOOS`` and ``runtime.GOARCH`` for this machine (``{system.os}``, ``{system.arch}``)."""

from __future__ import annotations

import platform
import sys

__all__ = ["goarch", "goos"]

_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def goos() -> str:
    """``runtime.GOOS``: ``linux``, ``darwin``, ``windows``, ``freebsd``, …"""
    return {"win32": "windows", "cygwin": "windows"}.get(sys.platform, sys.platform.rstrip("0123456789") or sys.platform)


def goarch() -> str:
    """``runtime.GOARCH``: ``amd64``, ``arm64``, ``386``, …; an unknown machine as it names itself."""
    machine = platform.machine().lower()
    return _GOARCH.get(machine, machine)
