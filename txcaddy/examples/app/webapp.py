"""The example's WSGI app: plain PEP 3333, no framework, so it runs with txcaddy alone.

``/`` is a page using the static files and the API; ``/hello/<name>`` greets;
``POST /upload`` reads its body from ``wsgi.input`` as it streams in and
answers its size; ``/count`` streams its answer a line at a time.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]

PAGE = """<!doctype html>
<html><head><title>txcaddy example</title><link rel="stylesheet" href="{script}/static/style.css"></head>
<body><h1>Hello from WSGI</h1>
<p>This page comes from <code>webapp.py</code>, the stylesheet from <code>static/</code>,
and the list below from the API site, reached through <code>reverse_proxy</code>.</p>
<ul id="users"></ul>
<script>
fetch("{script}/api/users").then(r => r.json()).then(users => {{
  for (const u of users) {{
    const li = document.createElement("li"); li.textContent = u.name; document.getElementById("users").append(li);
  }}
}});
</script></body></html>
"""


def _text(start_response: StartResponse, status: str, body: str, kind: str = "text/plain") -> list[bytes]:
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", f"{kind}; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def _count(limit: int) -> Iterable[bytes]:
    for i in range(1, limit + 1):
        yield b"%d\n" % i


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Route on PATH_INFO (SCRIPT_NAME is the prefix the app is mounted under)."""
    path = environ.get("PATH_INFO") or "/"
    script = environ.get("SCRIPT_NAME", "")
    method = environ["REQUEST_METHOD"]
    if path == "/":
        return _text(start_response, "200 OK", PAGE.format(script=html.escape(script)), "text/html")
    if path.startswith("/hello/"):
        name = path[len("/hello/"):].encode("latin-1").decode("utf-8", "replace")
        return _text(start_response, "200 OK", f"Hello, {name}!\n")
    if path == "/upload" and method == "POST":
        stream = environ["wsgi.input"]
        size = 0
        while piece := stream.read(65536):
            size += len(piece)
        return _text(start_response, "200 OK", f"received {size} bytes\n")
    if path == "/count":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return _count(10)
    return _text(start_response, "404 Not Found", "not found\n")
