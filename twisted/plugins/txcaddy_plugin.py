"""Makes ``twistd caddy -c Caddyfile`` available (no __init__.py in this folder!)."""

from twisted.application.service import ServiceMaker

txcaddy = ServiceMaker(
    "txcaddy",
    "txcaddy.tap",
    "A Caddy-compatible web server and reverse proxy",
    "caddy",
)
