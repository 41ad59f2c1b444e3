"""Read a config file (Caddyfile or JSON) into Caddy's JSON config.

Shared by ``txcaddy adapt/validate/run`` and ``twistd caddy`` so that every
entry point picks the adapter the same way Caddy does: ``--adapter`` if given,
else ``json`` for a ``*.json`` file, else ``caddyfile``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from txcaddy._go.fs import path_error
from txcaddy.caddyfile.adapter import adapt
from txcaddy.errors import ConfigError, ConfigWarning

ADAPTERS = ("caddyfile", "json")


def choose_adapter(path: str, adapter: str | None) -> str:
    if adapter:
        if adapter not in ADAPTERS:
            raise ConfigError(f"unrecognized config adapter '{adapter}' (known: caddyfile, json)")
        return adapter
    base = os.path.basename(path)
    if base.endswith(".json"):
        return "json"
    return "caddyfile"


def read_config_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"reading config file: {path_error('open', path, e)}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: config file is not valid UTF-8 (byte {e.start})") from None


def load_config(
    path: str, adapter: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[ConfigWarning]]:
    """Caddy's JSON config from ``path`` (adapted from a Caddyfile if need be)."""
    text = read_config_text(path)
    if choose_adapter(path, adapter) == "json":
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno} - invalid JSON config: {e.msg}") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{path}:1 - invalid JSON config: the top level must be an object")
        return config, []
    return adapt(text, path, environ)
