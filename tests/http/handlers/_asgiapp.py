"""The Starlette app the ``asgi`` tests serve in a child ``txcaddy run`` (imported there as ``_asgiapp``).

It prints markers (``LIFESPAN startup``, ``DISCONNECTED /wait``) on standard output,
flushed, so the test can wait for the event itself.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

_release = asyncio.Event()


def mark(text: str) -> None:
    print(text, flush=True)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    if os.environ.get("ASGI_FAIL_STARTUP"):
        raise RuntimeError("the database is not there")
    mark("LIFESPAN startup")
    yield {"greeting": "hello"}
    mark("LIFESPAN shutdown")


async def hello(request: Request) -> Response:
    scope = request.scope
    return JSONResponse({
        "greeting": request.state.greeting,
        "path": scope["path"], "root_path": scope["root_path"], "raw_path": scope["raw_path"].decode(),
        "route_path": request.url.path, "query": request.query_params.get("q"),
        "method": scope["method"], "http_version": scope["http_version"], "scheme": scope["scheme"],
        "client": scope["client"][0], "server_port": scope["server"][1],
        "x_test": request.headers.get("x-test"), "asgi": scope["asgi"]["version"],
    })


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        await _release.wait()  # the test reads "first" before it releases the rest
        _release.clear()
        yield b"second\n"

    return StreamingResponse(chunks(), media_type="text/plain")


BIG_CHUNKS = 2048  # of 64 KiB: 128 MiB
_big_sent = 0


class _Big(Response):
    """128 MiB in 64 KiB sends; the first send that has to wait for the client prints
    ``BIG held back after <n>`` (n: the chunks sent before it), the backpressure event."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        global _big_sent
        _big_sent = 0
        held = False
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for _ in range(BIG_CHUNKS):
            sending = asyncio.ensure_future(send({"type": "http.response.body", "body": b"z" * 65536,
                                                  "more_body": True}))
            # One loop turn (no time passes): the send's task runs first, to its end or to the
            # wait for the client, so "not done" here means the handler holds the app back.
            await asyncio.sleep(0)
            if not held and not sending.done():
                held = True
                mark(f"BIG held back after {_big_sent}")
            await sending
            _big_sent += 1
        await send({"type": "http.response.body", "body": b""})


async def big(request: Request) -> Response:
    return _Big()


async def big_sent(request: Request) -> Response:
    return PlainTextResponse(str(_big_sent))


async def release(request: Request) -> Response:
    _release.set()
    return PlainTextResponse("released")


async def upload(request: Request) -> Response:
    size = chunks = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks += 1 if chunk else 0
    return JSONResponse({"size": size, "chunks": chunks})


async def boom(request: Request) -> Response:
    raise RuntimeError("the app failed")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol="echo" if "echo" in websocket.scope["subprotocols"] else None)
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            mark(f"WS closed {message.get('code')}")
            return
        if message.get("text") is not None:
            if message["text"] == "bye":
                await websocket.close(4000)
                return
            await websocket.send_text("echo:" + message["text"])
        else:
            await websocket.send_bytes(message["bytes"][::-1])


async def refuse(websocket: WebSocket) -> None:
    await websocket.close()


_starlette = Starlette(routes=[
    Route("/hello", hello), Route("/stream", stream), Route("/release", release),
    Route("/big", big), Route("/big-sent", big_sent),
    Route("/upload", upload, methods=["POST"]), Route("/boom", boom),
    WebSocketRoute("/ws", echo), WebSocketRoute("/refuse", refuse),
], lifespan=lifespan)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Starlette, but in raw ASGI ``/wait`` waits for ``http.disconnect`` and says so, and
    ``/raw-boom`` raises before answering (Starlette would answer its own 500)."""
    if scope["type"] == "http" and scope["path"] == "/wait":
        mark("WAITING /wait")
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                mark("DISCONNECTED /wait")
                return
    if scope["type"] == "http" and scope["path"] == "/raw-boom":
        raise RuntimeError("the raw app failed")
    await _starlette(scope, receive, send)


async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare app without lifespan support (it raises on that scope, as many do)."""
    assert scope["type"] == "http", "no lifespan here"
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"bare app"})
