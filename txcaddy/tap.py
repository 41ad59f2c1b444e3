"""``twistd caddy``: options and the service maker.

The config is read and adapted while the options are parsed, so a bad
Caddyfile is reported before anything starts: ``Error: <file>:<line>: <problem>``
on stderr and exit status 1, as ``caddy run`` reports it.  It is not a
``UsageError``: twistd would print its whole usage text first, as if the command
line were wrong.

Under systemd (``$NOTIFY_SOCKET``) the service tells the manager ``READY=1`` once
listening and ``STOPPING=1`` on stop (``txcaddy._systemd``).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from txcaddy import _systemd
from txcaddy._process import tune_server_process
from txcaddy._reactor import IServingReactor, default_reactor, install_asyncio_reactor
from txcaddy._workers import parse_workers
from txcaddy.admin import _persist as persist
from txcaddy.config.source import load_config
from txcaddy.errors import ConfigError
from txcaddy.service import CaddyService


class Options(usage.Options):
    synopsis = "[-c Caddyfile] [--adapter caddyfile|json]"
    longdesc = (
        "Run txcaddy with a Caddyfile (as Caddy 2.6.2 reads it) or a Caddy JSON config. "
        "The adapter is guessed from the file name (*.json is JSON) unless --adapter is given."
    )
    optParameters = [
        ["config", "c", "Caddyfile", "The config file to load."],
        ["adapter", "a", None, "The config adapter: caddyfile or json."],
        ["workers", "w", None,
         "Worker processes: a number or auto (one per CPU); default: the config's workers, else 1."],
    ]

    def postOptions(self) -> None:
        try:
            workers = None if self["workers"] is None else parse_workers(self["workers"], "--workers")
            config, warnings = load_config(self["config"], self["adapter"])
            # An asgi handler needs the asyncio reactor: installed now unless twistd's
            # --reactor chose another one (a ConfigError then).
            install_asyncio_reactor(config, "twistd")
            # Build the whole tree now so that any config error is one clear line before
            # twistd starts anything, not a traceback later.
            # twistd owns the process: the service runs txcaddy's fast reactor path.
            self.service = CaddyService(
                config, warnings=warnings, reactor=self.reactor, fast_io=True, admin=True,
                autosave=persist.autosave_path(), workers=workers)
        except ConfigError as e:
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        self.caddyConfig: dict[str, Any] = self.service.config

    @property
    def reactor(self) -> IServingReactor:
        """The global reactor: twistd's ``--reactor`` choice when given (installed by now), else the default."""
        return default_reactor()


def makeService(options: Options) -> IService:
    import argparse

    from txcaddy.cli import install_reload_signal

    tune_server_process()
    # SIGUSR1 reloads the config file, as with ``txcaddy run``.
    if isinstance(options, Options):
        install_reload_signal(options.service, argparse.Namespace(config=options["config"], adapter=options["adapter"]))
    _systemd.attach_notifier(options.service)

    def fatal(error: BaseException) -> None:
        # A module that cannot serve after all (an ASGI app's lifespan startup failed): stop.
        from twisted.logger import Logger

        Logger(namespace="txcaddy").critical("stopping: {error}", error=str(error))
        reactor = options.service.reactor
        if getattr(reactor, "running", False):
            reactor.stop()

    options.service.runtime.fatal = fatal
    return options.service
