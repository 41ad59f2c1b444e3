"""The client's side of an in-memory HTTP/1.1 connection: request bytes out, responses parsed in.

``CaddyfileClient`` speaks real HTTP/1.1 to txcaddy's own server protocol over a
``StringTransport``, so a test's request goes through the same parsing, routing and
response framing as one over TCP.  This module writes the request head and parses what the
server wrote back, incrementally (a streamed response is visible piece by piece): status
line, 1xx heads, header fields, a body framed by ``Content-Length``, chunked coding (with
trailers) or the connection's end, and the raw bytes after a ``101``.
"""

from __future__ import annotations

import json
from typing import Any

from txcaddy.http.headers import Headers

_NO_BODY = frozenset({204, 304})


class ClientResponse:
    """A response as the client read it; filled in as bytes arrive.

    ``status`` is None until the head arrived.  ``chunks`` are the body's pieces in the
    order they were read (one per server write that reached the client); ``body`` joins
    them.  ``informational`` holds the 1xx heads before the final one, ``trailers`` the
    chunked trailer fields.  ``complete`` turns True at the end of the body; ``tunnel``
    holds the bytes the server sent after a ``101``.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.status: int | None = None
        self.reason = ""
        self.version = ""
        self.headers = Headers()
        self.chunks: list[bytes] = []
        self.informational: list[tuple[int, Headers]] = []
        self.trailers: Headers | None = None
        self.complete = False
        self.tunnel = b""

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def text(self) -> str:
        """The body decoded (the charset of ``Content-Type``, else UTF-8)."""
        charset = "utf-8"
        for part in (self.headers.get("Content-Type") or "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        return self.body.decode(charset, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first value of header field ``name`` (any case), or None."""
        return self.headers.get(name)

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {len(self.body)} bytes{'' if self.complete else ', incomplete'}>"


class ResponseReader:
    """Parses one response from the bytes the server writes.

    States: ``head`` (waiting for a status line and fields), ``length`` (``remaining`` body
    bytes to read), ``chunk-size``/``chunk-data``/``chunk-end``/``trailers`` (chunked coding), ``close``
    (the body ends with the connection), ``tunnel`` (after a 101) and ``done``.
    """

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.state = "head"
        self.remaining = 0
        self._buffer = b""
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        if self.state == "tunnel":
            self.response.tunnel += data
            return
        if self.state == "done":
            return
        self._buffer += data
        while self._step():
            pass

    def connection_closed(self) -> None:
        """The server closed: a close-delimited body ends; anything else is cut off."""
        if self.state == "close":
            self.state = "done"
            self.response.complete = True

    def _step(self) -> bool:
        state = self.state
        buffer = self._buffer
        if state == "head":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            self._buffer = buffer[end + 4:]
            self._head(buffer[:end].decode("latin-1"))
            return bool(self._buffer) or self.state == "done"
        if state == "length":
            if not buffer:
                return False
            piece, self._buffer = buffer[:self.remaining], buffer[self.remaining:]
            self.response.chunks.append(piece)
            self.remaining -= len(piece)
            if self.remaining == 0:
                self._done()
            return bool(self._buffer)
        if state == "close":
            if buffer:
                self.response.chunks.append(buffer)
                self._buffer = b""
            return False
        if state == "chunk-size":
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            size = int(buffer[:end].split(b";")[0].strip(), 16)
            self._buffer = buffer[end + 2:]
            if size == 0:
                self.state = "trailers"
            else:
                self.state, self.remaining = "chunk-data", size
            return True
        if state == "chunk-data":
            if not buffer:
                return False
            piece, self._buffer = buffer[:self.remaining], buffer[self.remaining:]
            self.response.chunks.append(piece)
            self.remaining -= len(piece)
            if self.remaining == 0:
                self.state = "chunk-end"
            return True
        if state == "chunk-end":
            if len(buffer) < 2:
                return False
            self._buffer = buffer[2:]
            self.state = "chunk-size"
            return True
        if state == "trailers":
            end = buffer.find(b"\r\n\r\n") if not buffer.startswith(b"\r\n") else 0
            if end < 0:
                return False
            if end:
                self.response.trailers = _fields(buffer[:end].decode("latin-1").split("\r\n"))
                self._buffer = buffer[end + 4:]
            else:
                self._buffer = buffer[2:]
            self._done()
            return False
        return False

    def _head(self, head: str) -> None:
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code)
        fields = _fields(lines[1:])
        response = self.response
        if 100 <= status < 200 and status != 101:
            response.informational.append((status, fields))
            return
        response.version, response.status, response.reason, response.headers = version, status, reason, fields
        if status == 101:
            self.state = "tunnel"
            response.complete = True
            response.tunnel += self._buffer
            self._buffer = b""
        elif response.method == "HEAD" or status in _NO_BODY:
            self._done()
        elif "chunked" in (fields.get("Transfer-Encoding") or "").lower():
            self.state = "chunk-size"
        elif fields.get("Content-Length") is not None:
            self.remaining = int(fields.get("Content-Length") or 0)
            if self.remaining == 0:
                self._done()
            else:
                self.state = "length"
        else:
            self.state = "close"

    def _done(self) -> None:
        self.state = "done"
        self.response.complete = True


def _fields(lines: list[str]) -> Headers:
    headers = Headers()
    for line in lines:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    return headers


def request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """The request line and header fields as HTTP/1.1 bytes."""
    lines = [f"{method} {target} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
