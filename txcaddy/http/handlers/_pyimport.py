"""Finding a Python application named in the config: ``package.module:name``.

Shared by the handlers that run Python applications (``wsgi``,
``twisted_resource``). The spelling is the one gunicorn and uvicorn use:
``module:attribute`` (dotted attributes allowed), or ``module:factory()`` to
call a factory without arguments. Importing happens when the config loads,
so a typo is a config error naming the module, not a 500 at the first request.
"""

from __future__ import annotations

import importlib
from typing import Any

from txcaddy.errors import ConfigError

__all__ = ["import_app"]


def import_app(spec: Any, where: str) -> Any:
    """The object ``spec`` (``module:name`` or ``module:factory()``) names.

    Raises ``ConfigError`` naming the module when it cannot be imported, the
    attribute is missing, or the factory fails.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{where}: app must be 'module:name' or 'module:factory()', got {spec!r}")
    module_name, _, attribute = spec.partition(":")
    call = attribute.endswith("()")
    if call:
        attribute = attribute[:-2]
    if not module_name or not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise ConfigError(f"{where}: app must be 'module:name' or 'module:factory()', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{where}: cannot import module {module_name!r}: {e}") from None
    except Exception as e:  # the module itself failed while importing
        raise ConfigError(f"{where}: importing module {module_name!r} failed: {type(e).__name__}: {e}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {attribute!r}") from None
    if call:
        try:
            target = target()
        except Exception as e:
            raise ConfigError(f"{where}: {spec} failed: {type(e).__name__}: {e}") from None
    return target
