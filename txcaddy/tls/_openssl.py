"""The few OpenSSL calls pyOpenSSL has no public API for, in one place.

pyOpenSSL 26 exposes ``SSL_session_reused`` only through its private cffi ``lib`` (the
function is bound, the method is not).  Everything here degrades to a safe answer if a
future pyOpenSSL drops the binding, and ``tests/tls/test_openssl.py`` tells us when it does.
"""

from __future__ import annotations

from typing import Any

try:  # pragma: no branch - depends on the installed pyOpenSSL
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover
    _lib = None


def session_reused(connection: Any) -> bool:
    """Whether the handshake of ``connection`` (an ``OpenSSL.SSL.Connection``) resumed a session."""
    ssl = getattr(connection, "_ssl", None)
    if _lib is None or ssl is None or not hasattr(_lib, "SSL_session_reused"):
        return False
    return bool(_lib.SSL_session_reused(ssl))
