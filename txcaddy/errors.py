"""The errors and warnings a config can produce, shared by the adapter and the runtime.

They live here, outside the Caddyfile adapter, so that loading a Caddy JSON config (the
runtime: ``config/``, ``http/``, ``reverseproxy/``, ``logs/``) does not import the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigWarning"]


class ConfigError(Exception):
    """A Caddyfile or JSON config that cannot be adapted or loaded.

    Messages follow Caddy's form (``Caddyfile:11 - Error during parsing:
    unrecognized subdirective foo``) so a user can jump to the line; callers
    show ``str(error)`` and never a traceback.
    """


@dataclass(frozen=True)
class ConfigWarning:
    """Something accepted but worth telling the user, like Caddy's Warning."""

    file: str = ""
    line: int = 0
    directive: str = ""
    message: str = ""

    def __str__(self) -> str:
        directive = f" ({self.directive})" if self.directive else ""
        return f"{self.file}:{self.line}{directive}: {self.message}"
