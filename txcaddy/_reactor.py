"""The reactor types txcaddy's code accepts, and the one place that falls back to the global one.

Twisted's global reactor is a process-wide choice that belongs to the edges (``twistd``,
``txcaddy run``, an embedding application). Everything else takes ``reactor`` as a
parameter so that tests run on ``MemoryReactorClock`` (DESIGN.md §8); a parameter left
``None`` means the global reactor, resolved here, as treq's ``default_reactor`` does.

The types are unions of Twisted's ``IReactor*`` interfaces, as treq's ``_types.py``
writes them (checked by mypy with the ``mypy_zope`` plugin): each says what its users
call, so a fake needs to provide no more than that.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
)

__all__ = ["IDialingReactor", "IServingReactor", "default_reactor"]


class IDialingReactor(IReactorTCP, IReactorUNIX, IReactorTime, IReactorPluggableNameResolver):
    """What dialling an upstream or a log server needs.

    ``HostnameEndpoint`` asks for TCP, time and a pluggable name resolver; upstreams and
    network log writers may also be UNIX sockets.
    """


class IServingReactor(IDialingReactor, IReactorCore, IReactorUDP):
    """What a ``CaddyService`` runs on: listeners, timers, dialling, UDP log writers."""


def default_reactor(reactor: IServingReactor | None = None) -> IServingReactor:
    """``reactor``, or Twisted's global reactor when it is None (installing the default one)."""
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as global_reactor  # imported late: it installs a reactor

    return cast(IServingReactor, global_reactor)
