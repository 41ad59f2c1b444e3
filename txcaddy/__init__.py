"""txcaddy: a Caddy-compatible web server and reverse proxy on Twisted.

Embedding::

    from txcaddy import fromCaddyfile
    service = fromCaddyfile("Caddyfile")       # or the Caddyfile text itself
    service.setServiceParent(application)      # any Twisted service tree
"""

from txcaddy.errors import ConfigError
from txcaddy.service import CaddyService, fromCaddyfile, fromConfig

__all__ = ["CaddyService", "ConfigError", "fromCaddyfile", "fromConfig"]
__version__ = "0.1.0"
