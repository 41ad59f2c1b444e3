"""``twisted_resource`` (``http.handlers.twisted_resource``): mount a twisted.web ``IResource``.

txcaddy's own handler (Caddy has none; DESIGN.md §3 promises it so that the Twisted web
ecosystem keeps working); the bridge itself is ``_twistedresource``. This module is only the
registration: the module registry imports every built-in module to learn its schema, and
``twisted.web.server`` (which pulls in ``http.cookiejar``, ``urllib.request`` and more: MBs of
RSS in every worker) must be imported only by a config that mounts a resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from txcaddy.config.registry import module
from txcaddy.config.schema import STRING, Obj
from txcaddy.errors import ConfigError

if TYPE_CHECKING:
    from txcaddy.http.handlers._twistedresource import (
        SPOOL_MEMORY,
        TwistedResourceHandler,
        resource_from,
    )

__all__ = ["SPOOL_MEMORY", "TwistedResourceHandler", "load_twisted_resource", "resource_from"]

_LAZY = frozenset({"SPOOL_MEMORY", "TwistedResourceHandler", "resource_from"})


def __getattr__(name: str) -> Any:
    """The implementation's names, imported on first access (``from … import TwistedResourceHandler``)."""
    if name in _LAZY:
        from txcaddy.http.handlers import _twistedresource

        return getattr(_twistedresource, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@module("http.handlers.twisted_resource", schema=Obj({"resource": STRING}))
def load_twisted_resource(config: dict[str, Any], context: Any) -> TwistedResourceHandler:
    """Import and build the resource now: a missing module is a config error."""
    spec = config.get("resource")
    if not spec:
        raise ConfigError("twisted_resource: resource is required ('module:factory')")
    from txcaddy.http.handlers._pyimport import import_app
    from txcaddy.http.handlers._twistedresource import TwistedResourceHandler, resource_from

    return TwistedResourceHandler(resource_from(import_app(spec, "twisted_resource"), "twisted_resource"), spec)
