"""A sliding-window event budget, for the HTTP/2 and HTTP/3 servers' abuse limits.

Counts events (streams reset by the client, empty DATA frames, ...) over the last ``window``
seconds, as Go's ``x/net/http2`` server and nginx bound them; ``txcaddy.http._h2``'s module
docstring lists the limits (and ``docs/http2.md``).
"""

from __future__ import annotations

from collections import deque


class _Budget:
    """At most ``limit`` events within any ``window`` seconds of the clock."""

    __slots__ = ("limit", "window", "times")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Count one event; False once more than ``limit`` fell within the window."""
        times = self.times
        times.append(now)
        horizon = now - self.window
        while times[0] <= horizon:
            times.popleft()
        return len(times) <= self.limit
