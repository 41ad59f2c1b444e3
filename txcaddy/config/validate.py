"""``txcaddy validate``: load a config the way the server would, without listening.

Like Caddy's validate (which provisions every module), this builds the whole
runtime tree — apps, servers, routes, handlers, matchers, logs — so anything
the server could not load is reported here, with the same message.
"""

from __future__ import annotations

from typing import Any

from txcaddy.errors import ConfigError
from txcaddy.service import CaddyService


def validate_config(config: Any, reactor: Any = None) -> None:
    """Raise ConfigError naming the first problem found."""
    if not isinstance(config, dict):
        raise ConfigError("config: the top level must be a JSON object")
    CaddyService(config, reactor=reactor)  # checks every value's type, builds everything; listens only when started
