"""Directive families; importing this package registers all of them."""

from txcaddy.caddyfile.directives import (  # noqa: F401  (imported to register)
    asgi,
    builtins,
    fileserver,
    headers,
    logging,
    matchers,
    misc,
    options,
    pyapps,
    reverseproxy,
    rewrite,
    serveroptions,
    tls,
)
