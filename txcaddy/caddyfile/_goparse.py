"""The names ``caddyfile/directives/reverseproxy.py`` imports from here, at their homes now.

Go's ``strconv`` lives in ``txcaddy._go.strconv``, ``caddy.ParseDuration`` in
``txcaddy.config.values``, go-humanize's ``ParseBytes`` in ``txcaddy.caddyfile._humanize`` and
``WeakString`` in ``txcaddy.caddyfile.jsonenc``; nothing else imports this module, which goes
away when that directive module imports them from there.
"""

from __future__ import annotations

from txcaddy._go.errors import GoError
from txcaddy._go.strconv import atoi as go_atoi
from txcaddy._go.strconv import quote as go_quote
from txcaddy.caddyfile._humanize import parse_bytes
from txcaddy.caddyfile.jsonenc import weak_string
from txcaddy.config.values import parse_caddy_duration

__all__ = ["GoError", "go_atoi", "go_quote", "parse_bytes", "parse_caddy_duration", "weak_string"]
