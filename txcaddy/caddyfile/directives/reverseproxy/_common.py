"""What every piece of the ``reverse_proxy`` adapter shares.

Go's ``omitempty`` (``put``/``struct``), the warning context handed to the
module parsers (transports, upstream sources, selection policies), the
signature of a subdirective parser, and the argument readers whose error
texts are Caddy's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from txcaddy._go.strconv import atoi as go_atoi
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import Helper, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap
from txcaddy.config.values import parse_caddy_duration

if TYPE_CHECKING:
    from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig


def put(obj: JSONObject, key: str, value: Any) -> None:
    """Set ``key`` unless ``omitempty`` would drop ``value`` (plain dicts are non-nil pointers)."""
    if value is None or value is False or value == "" or (isinstance(value, int) and value == 0):
        return
    if isinstance(value, (list, GoMap)) and not value:
        return
    obj[key] = value


def struct(*pairs: tuple[str, Any]) -> JSONObject:
    """A Go struct of ``omitempty`` fields, in field order."""
    out: JSONObject = {}
    for key, value in pairs:
        put(out, key, value)
    return out


class Context:
    """What a module parser needs besides its tokens: a way to warn."""

    def __init__(self, helper: Helper) -> None:
        self.helper = helper

    def warn(self, d: Dispenser, message: str) -> None:
        self.helper.with_dispenser(d).warn(message)


#: A guest module's Caddyfile unmarshaler: its tokens and the context → its config.
ModuleParser = Callable[[Dispenser, Context], Any]

#: One subdirective of ``reverse_proxy``, the cursor on its name; it fills in the config.
SubdirectiveParser = Callable[["ReverseProxyConfig", Dispenser], None]


def one_arg(d: Dispenser) -> str:
    """The one argument that must follow the current token."""
    if not d.next_arg():
        raise d.arg_err()
    return d.val()


def duration_arg(d: Dispenser, message: str, *, plain_int: bool = False) -> int:
    """A Caddy duration argument in nanoseconds; ``message`` words the error.

    ``plain_int``: a bare integer is taken as nanoseconds first (Caddy's
    ``flush_interval`` and stream options read the integer before the duration).
    """
    value = one_arg(d)
    if plain_int:
        try:
            return go_atoi(value)
        except ValueError:
            pass
    try:
        return parse_caddy_duration(value)
    except ValueError as e:
        raise d.err(message.format(value=value, err=e))


def integer_arg(d: Dispenser, message: str) -> int:
    """A ``strconv.Atoi`` argument; ``message`` words the error."""
    value = one_arg(d)
    try:
        return go_atoi(value)
    except ValueError as e:
        raise d.err(message.format(value=value, err=e))
