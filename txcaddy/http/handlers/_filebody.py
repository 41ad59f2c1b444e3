"""Streaming a file's bytes to the response for ``file_server``.

A body is a list of pieces, literal bytes (multipart boundaries) and
``(offset, length)`` ranges of the open file. A small body is read and
written at once; a larger one goes through a pull producer that reads
``CHUNK_SIZE`` bytes per turn, so a slow client never makes the server hold
the whole file. The file descriptor is always closed, whichever way it ends.
"""

from __future__ import annotations

import errno
import os

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPullProducer
from zope.interface import implementer

from txcaddy.http.errors import HandlerError
from txcaddy.http.response import Response

__all__ = ["CHUNK_SIZE", "send_pieces"]

CHUNK_SIZE = 128 * 1024  # bytes read and written per producer turn


@implementer(IPullProducer)
class _FileBody:
    """Writes pieces of an open file (and literal bytes between them) as the client takes them."""

    def __init__(self, fd: int, pieces: list[bytes | tuple[int, int]], response: Response) -> None:
        self._fd: int | None = fd
        self._pieces = pieces
        self._index = 0
        self._offset = -1  # position in the current file piece, -1 before it starts
        self._left = 0
        self._response = response
        self.done: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        self._response.register_producer(self, False)
        return self.done

    def resumeProducing(self) -> None:
        fd = self._fd
        if fd is None:
            return
        out: list[bytes] = []
        try:
            while self._index < len(self._pieces):
                piece = self._pieces[self._index]
                if piece.__class__ is bytes:
                    out.append(piece)  # type: ignore[arg-type]
                    self._index += 1
                    continue
                if self._offset < 0:
                    self._offset, self._left = piece  # type: ignore[misc]
                data = _read_at(fd, min(CHUNK_SIZE, self._left), self._offset)
                if not data:
                    raise OSError(errno.EIO, "the file is shorter than its size")
                self._offset += len(data)
                self._left -= len(data)
                if self._left == 0:
                    self._index += 1
                    self._offset = -1
                out.append(data)
                break
        except OSError as error:
            self._end(HandlerError(500, f"read: {error}", cause=error))
            return
        for data in out:
            self._response.write(data)
        if self._index >= len(self._pieces):
            self._end(None)

    def stopProducing(self) -> None:
        """The client went away: release the file and let the chain finish."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.done.callback(None)

    def _end(self, error: HandlerError | None) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        self._response.unregister_producer()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)


def _read_at(fd: int, size: int, offset: int) -> bytes:
    if _HAS_PREAD:
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


_HAS_PREAD = hasattr(os, "pread")


def send_pieces(fd: int, pieces: list[bytes | tuple[int, int]], total: int, response: Response) -> Deferred[None] | None:
    """Write the pieces: at once when small, else through a producer. Always closes ``fd``."""
    if total <= CHUNK_SIZE:
        try:
            out = []
            for piece in pieces:
                if piece.__class__ is bytes:
                    out.append(piece)
                    continue
                offset, length = piece  # type: ignore[misc]
                data = _read_at(fd, length, offset) if length else b""
                if len(data) != length:
                    raise OSError(errno.EIO, "the file is shorter than its size")
                out.append(data)
        except OSError as error:
            raise HandlerError(500, f"read: {error}", cause=error) from None
        finally:
            os.close(fd)
        for data in out:
            response.write(data)  # type: ignore[arg-type]
        return None
    return _FileBody(fd, pieces, response).start()
