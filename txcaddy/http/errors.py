"""Errors a handler returns instead of a response (Caddy's ``HandlerError``)."""

from __future__ import annotations

import secrets

from txcaddy._go.http import status_text

_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz0123456789"


class HandlerError(Exception):
    """An error with the HTTP status the client should see.

    The server runs its ``handle_errors`` routes with ``{http.error.*}``
    placeholders set from it; without error routes the client gets the status
    and an empty body.
    """

    def __init__(self, status: int = 500, message: str = "", cause: BaseException | None = None) -> None:
        super().__init__(message or status_text(status))
        self.status = status or 500
        self.message = message
        self.cause = cause
        self.id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))  # Caddy's error ID form

    def __repr__(self) -> str:
        return f"HandlerError({self.status}, {self.message!r})"


def release_frames(error: BaseException) -> None:
    """Drop the tracebacks of ``error`` and of the errors it wraps or was raised from.

    An error kept once it is handled (``request.error`` for the error routes and the
    logs) would keep every frame it went through, and those frames refer to the request:
    a reference cycle per failed request, left to the garbage collector. Call it after
    anything that logs the traceback.
    """
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += (getattr(current, "cause", None), current.__cause__, current.__context__)


class AbortConnection(Exception):
    """A handler asks to drop the connection without any response (``abort``).

    In Caddy most of these are a Go panic (``ErrAbortHandler``, or a bad
    status given to ``WriteHeader``): the access log entry is still written,
    but the duration stays 0 and no error entry is logged. ``returned`` marks
    the other kind: the handler returned normally in Caddy (the proxy's
    "aborting with incomplete response") and txcaddy only cuts the connection
    so the client sees the response is incomplete; its entry has the duration.
    """

    def __init__(self, *args: object, returned: bool = False) -> None:
        super().__init__(*args)
        self.returned = returned
