"""The example's API: a twisted.web resource tree, served by the second site of the Caddyfile."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource

USERS = [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]


class Users(Resource):
    """``/users``: the list as JSON."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(USERS).encode()


def root() -> Resource:
    """The API's root resource (``twisted_resource txcaddy.examples.app.api:root``)."""
    top = Resource()
    top.putChild(b"users", Users())
    return top
