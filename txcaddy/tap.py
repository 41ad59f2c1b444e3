"""``twistd caddy``: options and the service maker.

The config is read and adapted while the options are parsed, so a bad
Caddyfile is reported by twistd as a usage error naming file and line,
before anything starts.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from txcaddy._process import tune_server_process
from txcaddy._reactor import IServingReactor, default_reactor
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
    ]

    def postOptions(self) -> None:
        try:
            config, warnings = load_config(self["config"], self["adapter"])
            # Build the whole tree now so that any config error is a usage error
            # (one clear line from twistd), not a traceback later.
            # twistd owns the process: the service runs txcaddy's fast reactor path.
            self.service = CaddyService(
                config, warnings=warnings, reactor=self.reactor, fast_io=True, admin=True,
                autosave=persist.autosave_path())
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
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
    return options.service
