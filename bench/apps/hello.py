"""The same answer as the bench backend's ``/small`` (100 bytes), as a WSGI and an ASGI app.

Served by txcaddy's ``wsgi``/``asgi`` handlers and by gunicorn (sync worker) and uvicorn,
one process each, so ``bench/run.py --targets-file bench/apps/targets.json`` compares the
servers Python teams run today with txcaddy serving the very same app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from bench.backend import SMALL_BODY

_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(SMALL_BODY)))]
_ASGI_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(SMALL_BODY)).encode())]


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI: 200 with the small body on every path."""
    start_response("200 OK", _HEADERS)
    return [SMALL_BODY]


async def asgi_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """ASGI 3: 200 with the small body on every path (lifespan events acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": _ASGI_HEADERS})
    await send({"type": "http.response.body", "body": SMALL_BODY})
