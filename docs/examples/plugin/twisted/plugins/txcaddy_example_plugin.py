"""What txcaddy finds through Twisted's plugin system (no __init__.py in this folder)."""

from twisted.plugin import IPlugin
from txcaddy_example import (
    load_greet,
    load_pinned,
    parse_greet,
    parse_pinned,
    resolve_placeholder,
)
from zope.interface import provider

from txcaddy.interfaces import ICaddyModule, IPlaceholderProvider


@provider(IPlugin, ICaddyModule)
class GreetModule:
    moduleID = "http.handlers.greet"
    caddyfile = staticmethod(parse_greet)  # the `greet` directive
    directive_order = ("before", "respond")  # usable without an `order` option
    load = staticmethod(load_greet)


@provider(IPlugin, ICaddyModule)
class PinnedModule:
    moduleID = "http.reverse_proxy.selection_policies.pinned"
    caddyfile = staticmethod(parse_pinned)  # `lb_policy pinned <dial>`
    load = staticmethod(load_pinned)


@provider(IPlugin, IPlaceholderProvider)
class ExamplePlaceholders:
    prefix = "example"  # {example.*}
    resolve = staticmethod(resolve_placeholder)
