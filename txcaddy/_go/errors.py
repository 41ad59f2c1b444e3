"""The error type every port in ``txcaddy._go`` raises: its text is what Go's function returns.

Caddy copies Go's error strings into its own messages (``strconv.Atoi: parsing "x": invalid
syntax``), so configs that fail must fail with the same words; catching ``ValueError`` is enough
for callers that only need to know that Go would have returned an error.
"""

from __future__ import annotations


class GoError(ValueError):
    """A failure whose text is what the Go function would have returned."""
