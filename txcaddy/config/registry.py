"""Runtime modules by Caddy module ID, open to plugins.

Built-in modules register with ``@module("http.handlers.static_response")``
in their own files (imported on first lookup); third-party packages publish
``ICaddyModule`` plugins (``docs/plugins.md``), found with Twisted's plugin
system. The loader is the only caller of ``lookup``.

A plugin's ``load`` must return an object providing its namespace's interface
(``NAMESPACE_INTERFACES``); ``check_provides`` refuses anything else with a
``ConfigError`` naming the module and the interface, at load time rather than
on the first request.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.plugin import getPlugins

from txcaddy.errors import ConfigError
from txcaddy.interfaces import (
    ICaddyModule,
    IHandler,
    ILogEncoder,
    ILogWriter,
    IRequestMatcher,
    ISelectionPolicy,
    IStorage,
    IUpstreamSource,
)

if TYPE_CHECKING:
    from txcaddy.config.schema import Spec

ModuleFactory = Callable[[dict[str, Any], Any], Any]

MODULES: dict[str, ModuleFactory] = {}

#: The shape of each module's JSON (``config/schema.py``), checked before any module loads.
SCHEMAS: dict[str, Spec] = {}

#: The plugin object behind each module a plugin provides (for its Caddyfile hook and
#: ``list-modules``); built-in modules are not in here.
PLUGINS: dict[str, Any] = {}

#: What the runtime object of a module in each namespace must provide.
NAMESPACE_INTERFACES: dict[str, Any] = {
    "http.handlers": IHandler,
    "http.matchers": IRequestMatcher,
    "http.reverse_proxy.selection_policies": ISelectionPolicy,
    "http.reverse_proxy.upstreams": IUpstreamSource,
    "caddy.storage": IStorage,
    "caddy.logging.writers": ILogWriter,
    "caddy.logging.encoders": ILogEncoder,
}

# Modules that register built-in runtime modules when imported.
BUILTIN_MODULES = (
    "txcaddy.http.matchers",
    "txcaddy.http.matchers_expression",
    "txcaddy.http.routing",
    "txcaddy.http.handlers.static",
    "txcaddy.http.handlers.vars",
    "txcaddy.http.handlers.rewrite",
    "txcaddy.http.handlers.headers",
    "txcaddy.http.handlers.fileserver",
    "txcaddy.http.handlers._filematch",
    "txcaddy.http.handlers.requestbody",
    "txcaddy.http.handlers.encode",
    "txcaddy.http.handlers.map",
    "txcaddy.http.handlers.push",
    "txcaddy.http.handlers.tracing",
    "txcaddy.http.handlers.authentication",
    "txcaddy.http.handlers.templates",
    "txcaddy.http.handlers.wsgi",
    "txcaddy.http.handlers.twistedresource",
    "txcaddy.http.handlers.asgi",
    "txcaddy.reverseproxy.transport",
    "txcaddy.reverseproxy.handler",
    "txcaddy.reverseproxy.handle_response",
    "txcaddy.reverseproxy.selection",
    "txcaddy.reverseproxy.upstreams",
    "txcaddy.metrics.handler",
    "txcaddy.tls.acmeserver",
    "txcaddy.tls.redisstorage",
)

_loaded = False


def module(module_id: str, schema: Spec | None = None) -> Callable[[ModuleFactory], ModuleFactory]:
    """Register ``factory(config, context)`` as the runtime of ``module_id``.

    ``schema`` is the shape of the module's JSON: a config whose value does not fit it is
    refused, naming the value's path, before any module is built.
    """

    def deco(factory: ModuleFactory) -> ModuleFactory:
        if module_id in MODULES:
            raise ValueError(f"module {module_id} already registered")
        MODULES[module_id] = factory
        if schema is not None:
            SCHEMAS[module_id] = schema
        return factory

    return deco


_discovered: list[Any] | None = None


def discovered_plugins() -> list[Any]:
    """The installed ``ICaddyModule`` plugins, without importing the built-in modules (the
    Caddyfile adapter needs only the plugins' hooks). Looked for afresh until the registry
    is loaded (``_loaded``), then kept: a later adapt sees what the loader saw."""
    global _discovered
    if _discovered is None or not _loaded:
        _discovered = list(getPlugins(ICaddyModule))
    return _discovered


def _load_builtins_and_plugins() -> None:
    global _loaded, _discovered
    if _loaded:
        return
    _discovered = None  # (re)loading looks for plugins afresh
    _loaded = True
    for name in BUILTIN_MODULES:
        importlib.import_module(name)
    for plugin in discovered_plugins():
        module_id = plugin.moduleID
        if module_id not in MODULES:
            MODULES[module_id] = plugin.load
            PLUGINS[module_id] = plugin
            schema = getattr(plugin, "schema", None)  # optional for plugins
            if schema is not None:
                SCHEMAS[module_id] = schema


def lookup(module_id: str) -> ModuleFactory:
    """The factory for ``module_id``; a clear error names unknown IDs."""
    _load_builtins_and_plugins()
    factory = MODULES.get(module_id)
    if factory is None:
        raise ConfigError(f"loading module '{module_id}': module not registered: {module_id}")
    return factory


def known(prefix: str) -> list[str]:
    """Registered module names under a namespace (``http.handlers.``)."""
    _load_builtins_and_plugins()
    return sorted(m[len(prefix):] for m in MODULES if m.startswith(prefix))


def schema_for(module_id: str) -> Spec | None:
    """The JSON shape ``module_id`` declared, or None (unknown module or none declared)."""
    _load_builtins_and_plugins()
    return SCHEMAS.get(module_id)


def plugins() -> dict[str, Any]:
    """The plugin objects by the module ID they provide (builtins win a clash)."""
    _load_builtins_and_plugins()
    return dict(PLUGINS)


def check_provides(module_id: str, obj: Any, where: str = "") -> None:
    """Refuse a plugin module's runtime object that lacks its namespace's interface.

    Built-in modules are trusted (some predate the interfaces); only plugin
    modules are checked, so a mistake in third-party code is a clear config
    error rather than an ``AttributeError`` on the first request.
    """
    if module_id not in PLUGINS:
        return
    namespace = module_id.rpartition(".")[0]
    interface = NAMESPACE_INTERFACES.get(namespace)
    if interface is None or interface.providedBy(obj):
        return
    name = interface.__name__
    prefix = f"{where}: " if where else ""
    raise ConfigError(
        f"{prefix}loading module '{module_id}': the plugin's load() returned {type(obj).__name__!s}, "
        f"which does not provide {name} (declare it with @implementer({name}))"
    )
