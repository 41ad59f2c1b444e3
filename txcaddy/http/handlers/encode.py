"""``encode``: compress responses (gzip, zstd) the client accepts.

A port of Caddy 2.6.2's ``encode.go``:

* the encoding is chosen from ``Accept-Encoding`` by q-value, ties broken by
  ``prefer`` (none for a WebSocket handshake);
* the decision to compress is taken at the *first* body write: the write (or
  the Content-Length set by the handler) must exceed ``minimum_length``
  (default 512), the response must match ``match`` (default: text-like
  Content-Types) and have no Content-Encoding yet; a missing Content-Type is
  sniffed from that write first. Nothing is buffered: a small first write of
  a long streamed body means no compression, as in Caddy;
* when compressing: ``Content-Encoding`` set, ``Vary: Accept-Encoding`` added,
  ``Content-Length`` and ``Accept-Ranges`` removed; the status is held back
  until that decision.

Encoders are modules too (``http.encoders.gzip``, ``http.encoders.zstd``), so
a plugin can add one. ``zstandard`` is imported by the first zstd encoder: most configs have none.
"""

from __future__ import annotations

import zlib
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from txcaddy._go.http import detect_content_type
from txcaddy._go.strconv import NumError, atoi, parse_float
from txcaddy.config.registry import module
from txcaddy.config.schema import INT, STRINGS, ListOf, MapOf, ModuleMap, Nullable, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.headers import ResponseMatcher
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request
from txcaddy.http.response import Response, ResponseWrapper
from txcaddy.interfaces import IHandler

__all__ = ["Encode", "GzipEncoding", "ZstdEncoding", "accepted_encodings"]

DEFAULT_MIN_LENGTH = 512

DEFAULT_CONTENT_TYPES = [
    "text/*",
    "application/json*",
    "application/javascript*",
    "application/xhtml+xml*",
    "application/atom+xml*",
    "application/rss+xml*",
    "image/svg+xml*",
]


def _content_length(headers: Headers) -> int | None:
    """The response's Content-Length as ``strconv.Atoi`` reads it; None when absent or bad."""
    text = headers.get("Content-Length")
    if not text:
        return None
    try:
        return atoi(text)
    except NumError:
        return None


# -- encoders ------------------------------------------------------------------------------


class _ZlibEncoder:
    """A streaming compressor: ``compress`` what comes, ``flush`` now, ``finish`` at the end."""

    __slots__ = ("_compressor",)

    def __init__(self, compressor: Any) -> None:
        self._compressor = compressor

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def flush(self) -> bytes:
        return self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush(zlib.Z_FINISH)


class GzipEncoding:
    """``http.encoders.gzip`` (level 1-9; Go's -1 default, -2 Huffman only, -3 stateless)."""

    accept_encoding = "gzip"

    def __init__(self, level: int = 5) -> None:
        self.level = level
        self._strategy = zlib.Z_DEFAULT_STRATEGY
        if level == -1:
            self._zlib_level = 6
        elif level == -2:
            self._zlib_level, self._strategy = 6, zlib.Z_HUFFMAN_ONLY
        elif level == -3:
            self._zlib_level = 1
        else:
            self._zlib_level = level

    def new_encoder(self) -> _ZlibEncoder:
        return _ZlibEncoder(zlib.compressobj(self._zlib_level, zlib.DEFLATED, 31, 8, self._strategy))


@module("http.encoders.gzip", schema=Obj({"level": INT}))
def load_gzip(config: dict[str, Any], context: Any) -> GzipEncoding:
    level = config.get("level") or 0
    if isinstance(level, bool) or not isinstance(level, int):
        raise ConfigError(f"gzip: level must be an integer, got {level!r}")
    if level == 0:
        level = 5
    if level < -3:
        raise ConfigError("gzip: quality too low; must be >= -3")
    if level > 9:
        raise ConfigError("gzip: quality too high; must be <= 9")
    return GzipEncoding(level)


class _ZstdEncoder:
    __slots__ = ("_compressor", "_flush_block", "_flush_frame")

    def __init__(self, compressor: Any, flush_block: int, flush_frame: int) -> None:
        self._compressor = compressor
        self._flush_block = flush_block
        self._flush_frame = flush_frame

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def flush(self) -> bytes:
        return self._compressor.flush(self._flush_block)

    def finish(self) -> bytes:
        return self._compressor.flush(self._flush_frame)


class ZstdEncoding:
    """``http.encoders.zstd``: Caddy's settings (default level, 128 KiB window)."""

    accept_encoding = "zstd"

    def __init__(self) -> None:
        import zstandard  # imported on first use (module docstring); ImportError: see load_zstd

        self._zstd = zstandard
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=17)
        self._compressor = zstandard.ZstdCompressor(compression_params=params)

    def new_encoder(self) -> _ZstdEncoder:
        zstd = self._zstd
        return _ZstdEncoder(self._compressor.compressobj(), zstd.COMPRESSOBJ_FLUSH_BLOCK, zstd.COMPRESSOBJ_FLUSH_FINISH)


@module("http.encoders.zstd")
def load_zstd(config: dict[str, Any], context: Any) -> ZstdEncoding:
    try:
        return ZstdEncoding()
    except ImportError:
        raise ConfigError("zstd: the 'zstandard' package is not installed") from None


# -- Accept-Encoding -----------------------------------------------------------------------

def accepted_encodings(headers: Headers, prefer: list[str]) -> list[str]:
    """Caddy's ``AcceptedEncodings``: the client's encodings, most wanted first."""
    accept = headers.get("Accept-Encoding") or ""
    if not accept:
        return []
    websocket = bool(headers.get("Sec-WebSocket-Key"))
    prefs: list[tuple[str, float, int]] = []
    for accepted in accept.split(","):
        parts = accepted.split(";")
        name = parts[0].strip(" \t\n\r\v\f").lower()
        q = 1.0
        if len(parts) > 1:
            q_text = parts[1].strip(" \t\n\r\v\f").lower()
            if q_text.startswith("q="):
                try:
                    value = parse_float(q_text[2:], 32)
                except NumError:
                    pass
                else:
                    if 0 <= value <= 1:
                        q = value
        if q < 0.00001:
            continue
        if websocket and name != "identity":
            continue
        order = -1
        for i, preferred in enumerate(prefer):
            if name == preferred:
                order = len(prefer) - i
                break
        prefs.append((name, q, order))

    def less(a: tuple[str, float, int], b: tuple[str, float, int]) -> bool:
        if abs(a[1] - b[1]) < 0.00001:
            return a[2] > b[2]
        return a[1] > b[1]

    # Go sorts these short lists by insertion sort, with this (non-transitive) order
    for i in range(1, len(prefs)):
        j = i
        while j > 0 and less(prefs[j], prefs[j - 1]):
            prefs[j], prefs[j - 1] = prefs[j - 1], prefs[j]
            j -= 1
    return [p[0] for p in prefs]


# -- the response wrapper ------------------------------------------------------------------


class _EncodingResponse(ResponseWrapper):
    """Holds the status back until the first write decides whether to compress."""

    def __init__(self, inner: Response, config: Encode, encoding: Any) -> None:
        super().__init__(inner)
        self._config = config
        self._encoding = encoding
        self._status = 0
        self._wrote_header = False
        self._encoder: Any = None

    def write_head(self, status: int) -> None:
        self._status = status

    def _start(self) -> None:
        """Caddy's ``init``: compress if the response qualifies."""
        headers = self.inner.headers
        if not headers.get("Content-Encoding") and self._config.matcher.match(self._status, headers):
            self._encoder = self._encoding.new_encoder()
            headers.delete("Content-Length")
            headers.set("Content-Encoding", self._encoding.accept_encoding)
            headers.add("Vary", "Accept-Encoding")
            headers.delete("Accept-Ranges")

    def _over_min_length(self, size: int) -> bool:
        min_length = self._config.min_length
        if size > min_length:
            return True
        length = _content_length(self.inner.headers)
        return length is not None and length > min_length

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._wrote_header:
            if self._config.min_length > 0 and self._over_min_length(len(data)):
                headers = self.inner.headers
                if not headers.get("Content-Type"):
                    headers.set("Content-Type", detect_content_type(data))
                self._start()
            if self._status:
                self.inner.write_head(self._status)
            self._wrote_header = True
        encoder = self._encoder
        if encoder is None:
            self.inner.write(data)
            return
        out = encoder.compress(data)
        if out:
            self.inner.write(out)

    def flush(self) -> None:
        """Send what is held now (streaming); compressed data is flushed too."""
        if not self._wrote_header:
            return
        encoder = self._encoder
        if encoder is not None:
            out = encoder.flush()
            if out:
                self.inner.write(out)
        self.inner.flush()

    def close(self) -> None:
        """End the encoding (Caddy's ``Close``): decide if nothing was written, write the tail."""
        if not self._wrote_header:
            length = _content_length(self.inner.headers)
            if length is not None and length > self._config.min_length:
                self._start()
            if self._status:
                self.inner.write_head(self._status)
            self._wrote_header = True
        encoder = self._encoder
        if encoder is not None:
            self._encoder = None
            tail = encoder.finish()
            if tail:
                self.inner.write(tail)

    def finish(self) -> None:
        self.close()
        self.inner.finish()


@implementer(IHandler)
class Encode:
    """``http.handlers.encode``."""

    def __init__(
        self,
        encodings: dict[str, Any],
        prefer: list[str] | None = None,
        min_length: int = 0,
        matcher: ResponseMatcher | None = None,
    ) -> None:
        self.encodings = encodings
        self.prefer = list(prefer or [])
        self.min_length = DEFAULT_MIN_LENGTH if min_length == 0 else min_length
        self.matcher = matcher if matcher is not None else ResponseMatcher(headers={"Content-Type": DEFAULT_CONTENT_TYPES})

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        if not self.encodings:
            return next(request, response)
        for name in accepted_encodings(request.headers, self.prefer):
            encoding = self.encodings.get(name)
            if encoding is not None:
                break
        else:
            return next(request, response)
        wrapper = _EncodingResponse(response, self, encoding)
        try:
            result = next(request, wrapper)
        except BaseException:
            wrapper.close()
            raise
        if isinstance(result, Deferred):

            def done(outcome: Any) -> Any:
                wrapper.close()
                return outcome

            return result.addBoth(done)
        wrapper.close()
        return result


@module("http.handlers.encode", schema=Obj(
    {"encodings": ModuleMap("http.encoders"), "prefer": STRINGS, "minimum_length": INT,
     "match": Obj({"status_code": ListOf(INT), "headers": MapOf(Nullable(STRINGS))})},
))
def load_encode(config: dict[str, Any], context: Any) -> Encode:
    raw = config.get("encodings") or {}
    if not isinstance(raw, dict):
        raise ConfigError("encode: encodings must be an object of encoder name → config")
    encodings: dict[str, Any] = {}
    for name, encoder_config in raw.items():
        if encoder_config is None:
            encoder_config = {}
        if not isinstance(encoder_config, dict):
            raise ConfigError(f"encode: encoding {name}: config must be an object")
        encoding = context.load_module("http.encoders", {**encoder_config, "encoder": name}, "encoder")
        accept = getattr(encoding, "accept_encoding", "")
        if not accept:
            raise ConfigError(f"encode: adding encoding {name}: encoder does not specify an Accept-Encoding value")
        if accept in encodings:
            raise ConfigError(f"encode: adding encoding {name}: encoder already added: {accept}")
        encodings[accept] = encoding
    prefer = config.get("prefer") or []
    if not isinstance(prefer, list) or not all(isinstance(p, str) for p in prefer):
        raise ConfigError("encode: prefer must be a list of encoding names")
    seen: set[str] = set()
    for name in prefer:
        if name not in encodings:
            raise ConfigError(f"encode: encoding {name} not enabled")
        if name in seen:
            raise ConfigError(f"encode: encoding {name} is duplicated in prefer")
        seen.add(name)
    min_length = config.get("minimum_length") or 0
    if isinstance(min_length, bool) or not isinstance(min_length, int):
        raise ConfigError("encode: minimum_length must be an integer")
    matcher = None
    if config.get("match") is not None:
        matcher = ResponseMatcher.from_config(config["match"], "encode.match")
    return Encode(encodings, prefer, min_length, matcher)
