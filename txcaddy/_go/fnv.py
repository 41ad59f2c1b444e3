"""Go's ``hash/fnv``: FNV-1a with 32 bits (``fnv.New32a``), the hash of Caddy's ``ip_hash``,
``uri_hash``, ``header`` and ``cookie`` selection policies."""

from __future__ import annotations

__all__ = ["MASK32", "OFFSET32", "PRIME32", "fnv1a_32"]

OFFSET32 = 0x811C9DC5
PRIME32 = 0x01000193
#: Keeps a product in 32 bits (Go's uint32 arithmetic); callers that fold bytes in a loop of
#: their own use it with PRIME32.
MASK32 = 0xFFFFFFFF


def fnv1a_32(data: bytes, state: int = OFFSET32) -> int:
    """``fnv.New32a()``, ``Write(data)``, ``Sum32()``; ``state`` continues an earlier hash."""
    for byte in data:
        state = ((state ^ byte) * PRIME32) & MASK32
    return state
