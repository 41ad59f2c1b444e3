"""Errors shared by the TLS modules (storage backends and the code that reads them).

Kept apart from ``txcaddy.tls.storage`` so the local CA and the certificate manager can
tell "absent" from "broken" without importing a storage backend.
"""

from __future__ import annotations

__all__ = ["KeyNotFound"]


class KeyNotFound(Exception):
    """Nothing is stored under the key (certmagic's ``fs.ErrNotExist``); ``args[0]`` is the key."""
