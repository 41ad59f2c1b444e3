"""The txcaddy service tree.

``CaddyService`` is the root ``MultiService`` built from a Caddy JSON config.
This release loads and reports the configuration; the listeners and the
request path are built on this tree by the HTTP server work (see README).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.logger import Logger

from txcaddy.caddyfile.errors import ConfigWarning


class CaddyService(MultiService):
    """Root service for one loaded config."""

    log = Logger()

    def __init__(self, config: dict[str, Any], warnings: list[ConfigWarning] | None = None) -> None:
        super().__init__()
        self.config = config
        self.warnings = list(warnings or [])

    def listenAddresses(self) -> dict[str, list[str]]:
        """Each configured HTTP server's listener addresses, by server name."""
        servers = ((self.config.get("apps") or {}).get("http") or {}).get("servers") or {}
        return {name: list(server.get("listen") or []) for name, server in servers.items()}

    def startService(self) -> None:
        for warning in self.warnings:
            self.log.warn("{warning}", warning=str(warning))
        for name, addresses in self.listenAddresses().items():
            self.log.info("config loaded: server {name} for {addresses}", name=name, addresses=addresses)
        super().startService()
