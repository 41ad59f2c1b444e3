"""Config persistence: ``autosave.json`` in Caddy's config directory (``caddy.go``, ``storage.go``).

After every successful load the running config (``@id`` fields included) is written there,
unless ``admin.config.persist`` is false; ``txcaddy run --resume`` loads it back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


def config_dir(environ: Mapping[str, str] | None = None) -> str:
    """Caddy's ``AppConfigDir`` on Linux: ``$XDG_CONFIG_HOME/caddy``, else ``~/.config/caddy``."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg:
        return os.path.join(xdg, "caddy")
    home = environ.get("HOME", "") or os.path.expanduser("~")
    return os.path.join(home, ".config", "caddy") if home else os.path.join(".", "caddy")


def autosave_path(environ: Mapping[str, str] | None = None) -> str:
    return os.path.join(config_dir(environ), "autosave.json")


def wants_persist(config: dict[str, Any]) -> bool:
    """``admin.config.persist`` (default true)."""
    persist = ((config.get("admin") or {}).get("config") or {}).get("persist")
    return persist is None or bool(persist)


def save(config: dict[str, Any], path: str) -> None:
    """Write ``config`` compact with sorted keys, mode 0600 (directory 0700), replacing atomically."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    data = json.dumps(config, separators=(",", ":"), sort_keys=True).encode("utf-8")
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)
