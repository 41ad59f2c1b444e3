"""Configuration errors and warnings that name the file and the line.

Defined in ``txcaddy.errors`` (the runtime raises them too, without the adapter); the
adapter's modules import them from here as they always did.
"""

from __future__ import annotations

from txcaddy.errors import ConfigError, ConfigWarning

__all__ = ["ConfigError", "ConfigWarning"]
