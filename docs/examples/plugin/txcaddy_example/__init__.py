"""txcaddy-example-plugin: the runtime objects and Caddyfile unmarshallers of three plugins.

``twisted/plugins/txcaddy_example_plugin.py`` publishes them to txcaddy; keeping the code here
means Twisted's plugin scan imports only that small file's imports.
"""

from zope.interface import implementer

from txcaddy.interfaces import IHandler, ISelectionPolicy

# -- a handler: ``greet <name>`` --------------------------------------------------------------


@implementer(IHandler)
class Greet:
    """Answers ``hello, <name>`` as plain text."""

    def __init__(self, name):
        self.name = name

    def serve(self, request, response, next):
        response.headers.set("Content-Type", "text/plain; charset=utf-8")
        response.write(f"hello, {self.name}\n".encode())


def parse_greet(h):
    """``greet [<name>]``: the Helper stands before the directive's name."""
    h.next()  # the directive's name
    args = h.remaining_args()
    if len(args) > 1:
        raise h.arg_err()
    return {"handler": "greet", "name": args[0] if args else "world"}


def load_greet(config, context):
    return Greet(config.get("name", "world"))


# -- a load-balancing policy: ``lb_policy pinned <dial>`` ------------------------------------


@implementer(ISelectionPolicy)
class Pinned:
    """Always the upstream dialled at ``dial`` while it is available, else the first one that is."""

    def __init__(self, dial):
        self.dial = dial

    def select(self, pool, request, response):
        available = [upstream for upstream in pool if upstream.available()]
        for upstream in available:
            if upstream.dial == self.dial:
                return upstream
        return available[0] if available else None


def parse_pinned(d):
    """``pinned <dial>``: the Dispenser's first token is the policy's name."""
    d.next()
    if not d.next_arg():
        raise d.arg_err()
    dial = d.val()
    if d.next_arg():
        raise d.arg_err()
    return {"dial": dial}


def load_pinned(config, context):
    return Pinned(config.get("dial", ""))


# -- placeholders: ``{example.path_depth}``, ``{example.greeting}`` ---------------------------


def resolve_placeholder(request, name):
    """The value of ``{example.<name>}``, or None for a name this plugin does not provide."""
    if name == "path_depth":
        return len([part for part in request.path.split("/") if part])
    if name == "greeting":
        return f"hello from {request.hostname or 'nowhere'}"
    return None
