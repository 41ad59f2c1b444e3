"""WebSocket peers for tests: a client through ``CaddyfileClient`` and a fake upstream.

txcaddy itself never parses WebSocket frames (the proxy splices the bytes after the ``101``,
DESIGN §4), so this module has the little of RFC 6455 a test needs: the handshake's
``Sec-WebSocket-Accept`` (§4.2.2), frames with and without the client's mask (§5.2), text,
binary, ping/pong and close.  Fragmented messages are joined; extensions are not spoken.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from txcaddy._testing._upstreams import (
    FakeUpstream,
    HeaderInput,
    Reply,
    UpstreamRequest,
    UpstreamTunnel,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA

Message = str | bytes


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def encode_frame(opcode: int, payload: bytes, *, mask: bool, fin: bool = True) -> bytes:
    """One frame; clients mask theirs (a random key), servers do not."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + _unmask(payload, key)


def _unmask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class FrameReader:
    """Parses frames from a byte stream; ``messages`` are the whole text/binary messages."""

    def __init__(self) -> None:
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self.frames: list[tuple[int, bytes]] = []  # (opcode, payload), every frame
        self.messages: list[Message] = []
        self.close_code: int | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Parse ``data``; returns the frames it completed."""
        self._buffer += data
        done: list[tuple[int, bytes]] = []
        while True:
            frame = self._next()
            if frame is None:
                return done
            done.append(frame)

    def _next(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        fin, opcode = buf[0] & 0x80, buf[0] & 0x0F
        masked, length = buf[1] & 0x80, buf[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack("!H", buf[2:4])
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack("!Q", buf[2:10])
            offset = 10
        key = b""
        if masked:
            key, offset = buf[offset:offset + 4], offset + 4
        if len(buf) < offset + length:
            return None
        payload = buf[offset:offset + length]
        self._buffer = buf[offset + length:]
        if masked:
            payload = _unmask(payload, key)
        self.frames.append((opcode, payload))
        if opcode in (TEXT, BINARY):
            self._fragment_opcode, self._fragments = opcode, [payload]
        elif opcode == 0:
            self._fragments.append(payload)
        elif opcode == CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        if fin and opcode in (0, TEXT, BINARY):
            whole = b"".join(self._fragments)
            self.messages.append(whole.decode("utf-8") if self._fragment_opcode == TEXT else whole)
            self._fragments = []
        return opcode, payload


def _frame_for(message: Message, mask: bool) -> bytes:
    if isinstance(message, str):
        return encode_frame(TEXT, message.encode("utf-8"), mask=mask)
    return encode_frame(BINARY, message, mask=mask)


def _close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")


class WebSocketClient:
    """A WebSocket client connection made through ``client.websocket(url)``.

    ``response`` is the handshake's answer (``accepted`` says whether it was a ``101`` with
    the right ``Sec-WebSocket-Accept``); ``send`` sends a text (str) or binary (bytes)
    message, ``messages`` are those received, ``close_code`` the peer's close code.
    """

    def __init__(self, request: Any, key: str) -> None:
        self.request = request
        self.response = request.response
        self.key = key
        self._reader = FrameReader()
        self._seen = 0

    @classmethod
    def connect(cls, client: Any, url: str, headers: HeaderInput, protocols: Iterable[str]) -> WebSocketClient:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        fields: list[tuple[Any, Any]] = [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                         ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", key)]
        wanted = list(protocols)
        if wanted:
            fields.append(("Sec-WebSocket-Protocol", ", ".join(wanted)))
        if headers is not None:
            fields += list(headers.items() if isinstance(headers, Mapping) else headers)
        request = client.open("GET", url, fields)
        request.result()
        return cls(request, key)

    @property
    def accepted(self) -> bool:
        response = self.response
        return response.status == 101 and response.header("Sec-WebSocket-Accept") == accept_key(self.key)

    def _read(self) -> FrameReader:
        tunnel = self.response.tunnel
        if len(tunnel) > self._seen:
            self._reader.feed(tunnel[self._seen:])
            self._seen = len(tunnel)
        return self._reader

    @property
    def messages(self) -> list[Message]:
        return self._read().messages

    @property
    def frames(self) -> list[tuple[int, bytes]]:
        return self._read().frames

    @property
    def close_code(self) -> int | None:
        return self._read().close_code

    def send(self, message: Message) -> None:
        self.request.send_raw(_frame_for(message, mask=True))

    def ping(self, payload: bytes = b"") -> None:
        self.request.send_raw(encode_frame(PING, payload, mask=True))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.request.send_raw(encode_frame(CLOSE, _close_payload(code, reason), mask=True))


class UpstreamWebSocket:
    """The upstream's side of one WebSocket: what it received, and ``send`` to answer."""

    def __init__(self, tunnel: UpstreamTunnel, request: UpstreamRequest,
                 on_message: Callable[[UpstreamWebSocket, Message], None] | None) -> None:
        self.tunnel = tunnel
        self.request = request
        self.on_message = on_message
        self._reader = FrameReader()
        tunnel.on_data = self._data

    @property
    def messages(self) -> list[Message]:
        return self._reader.messages

    @property
    def close_code(self) -> int | None:
        return self._reader.close_code

    def send(self, message: Message) -> None:
        self.tunnel.send(_frame_for(message, mask=False))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.tunnel.send(encode_frame(CLOSE, _close_payload(code, reason), mask=False))

    def _data(self, data: bytes) -> None:
        for opcode, payload in self._reader.feed(data):
            if opcode == PING:
                self.tunnel.send(encode_frame(PONG, payload, mask=False))
            elif opcode == CLOSE:
                self.tunnel.send(encode_frame(CLOSE, payload[:2], mask=False))
            elif self.on_message is not None and opcode in (TEXT, BINARY):
                self.on_message(self, self._reader.messages[-1])


def _echo(socket: UpstreamWebSocket, message: Message) -> None:
    socket.send(message)


class WebSocketUpstream(FakeUpstream):
    """A ``FakeUpstream`` that accepts WebSocket upgrades (and answers other requests as usual).

    Each accepted connection is an ``UpstreamWebSocket`` in ``sockets``; ``on_message(socket,
    message)`` handles what it receives (default: sends it back).  ``subprotocol`` is chosen in
    the handshake when given.
    """

    def __init__(self, *args: Any, on_message: Callable[[UpstreamWebSocket, Message], None] | None = _echo,
                 subprotocol: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.on_message = on_message
        self.subprotocol = subprotocol
        self.sockets: list[UpstreamWebSocket] = []
        self._plain = self.handler
        self.handler = self._handshake
        self.on_upgrade = None

    def _handshake(self, request: UpstreamRequest) -> Reply | None:
        if (request.headers.get("Upgrade") or "").lower() != "websocket":
            return self._plain(request) if self._plain is not None else self.reply
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Accept", accept_key(request.headers.get("Sec-WebSocket-Key") or ""))]
        if self.subprotocol:
            headers.append(("Sec-WebSocket-Protocol", self.subprotocol))
        return Reply(101, headers)

    def _upgraded(self, request: UpstreamRequest, protocol: Any) -> Any:
        transport = super()._upgraded(request, protocol)
        assert request.tunnel is not None
        self.sockets.append(UpstreamWebSocket(request.tunnel, request, self.on_message))
        return transport
