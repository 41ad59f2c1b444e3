"""Caddyfile text to Caddy JSON: the public entry point of the adapter.

    config, warnings = adapt(open("Caddyfile").read(), "Caddyfile")

``config`` is Caddy's JSON config as Python objects (dicts in Go's field
order); ``adapt_to_json`` renders it byte for byte as ``caddy adapt`` does.
Errors are ``ConfigError`` with Caddy's ``File:Line - ...`` messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from txcaddy.caddyfile import directives as _directives  # noqa: F401  (registers them)
from txcaddy.caddyfile import registry
from txcaddy.caddyfile.errors import ConfigError, ConfigWarning
from txcaddy.caddyfile.formatter import formatting_difference
from txcaddy.caddyfile.httptype import HTTPServerType
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.caddyfile.parser import parse

__all__ = ["adapt", "adapt_to_json", "ConfigError", "ConfigWarning"]


def adapt(
    text: str, filename: str = "Caddyfile", environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[ConfigWarning]]:
    """Adapt Caddyfile text; ``environ`` (default: os.environ) feeds ``{$VAR}``."""
    registry.load_plugins()  # plugins' directives and unmarshallers, before any parsing
    blocks = parse(filename, text, environ)
    server_type = HTTPServerType()
    try:
        config = server_type.setup(blocks)
    except RecursionError:
        raise ConfigError(f"{filename}: configuration is nested too deeply") from None
    line, different = formatting_difference(filename, text)
    if different:
        server_type.warnings.append(
            ConfigWarning(
                file=filename,
                line=line,
                message="Caddyfile input is not formatted; run 'txcaddy fmt' (or 'caddy fmt') "
                "to fix inconsistencies",
            )
        )
    return config, server_type.warnings


def adapt_to_json(
    text: str,
    filename: str = "Caddyfile",
    environ: Mapping[str, str] | None = None,
    pretty: bool = False,
) -> tuple[str, list[ConfigWarning]]:
    """Adapt and render as ``caddy adapt`` prints (``pretty``: tab-indented)."""
    config, warnings = adapt(text, filename, environ)
    return encode(config, "\t" if pretty else None), warnings
