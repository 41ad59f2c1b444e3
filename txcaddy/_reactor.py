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

__all__ = [
    "IDialingReactor", "IServingReactor", "default_reactor", "install_asyncio_reactor",
    "is_asyncio_reactor", "uses_asgi",
]


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


def uses_asgi(config: object) -> bool:
    """Whether a Caddy config has an ``asgi`` handler anywhere (it needs the asyncio reactor).

    ``config`` is JSON data, or what the Caddyfile adapter returns (its own map and route
    types), read through its JSON encoding.
    """
    import json

    from txcaddy.caddyfile.jsonenc import encode

    text = encode(config)
    if '"asgi"' not in text:
        return False
    return _has_asgi(json.loads(text))


def _has_asgi(value: object) -> bool:
    if isinstance(value, dict):
        if value.get("handler") == "asgi":
            return True
        return any(_has_asgi(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_asgi(item) for item in value)
    return False


def is_asyncio_reactor(reactor: object) -> bool:
    """Whether ``reactor`` is Twisted's asyncio reactor (its loop is asyncio's, shared with coroutines)."""
    import sys

    module = sys.modules.get("twisted.internet.asyncioreactor")  # not imported: not that reactor
    return module is not None and isinstance(reactor, module.AsyncioSelectorReactor)


def install_asyncio_reactor(config: object, how: str = "txcaddy run") -> None:
    """Install Twisted's asyncio reactor when ``config`` needs it and no reactor is installed yet.

    The edges call this before the global reactor is first imported: ASGI apps run as asyncio
    tasks on the loop the reactor drives. A reactor of another kind already installed (``twistd
    --reactor=epoll``) cannot be swapped: that is a ``ConfigError`` saying what to run instead.
    """
    import sys

    from txcaddy.errors import ConfigError

    if not uses_asgi(config):
        return
    installed = sys.modules.get("twisted.internet.reactor")
    if installed is not None:
        if not is_asyncio_reactor(installed):
            raise ConfigError(
                f"the asgi handler needs Twisted's asyncio reactor, but {how} already runs "
                f"{type(installed).__name__}: run with `twistd --reactor=asyncio caddy ...`")
        return
    import asyncio

    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())
