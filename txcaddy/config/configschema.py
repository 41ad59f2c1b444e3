"""The shape of a whole Caddy JSON config: the top level and each app (``schema.py``).

Kept apart from ``schema.py`` because it names every app's shape, and the apps import
``schema.py`` for theirs.
"""

from __future__ import annotations

from typing import Any

from txcaddy.config.schema import ANY, BOOL, STRING, STRINGS, Module, Obj, Spec, check
from txcaddy.http.app import HTTP_APP
from txcaddy.logs._system import LOGGING
from txcaddy.tls.app import PKI_APP, TLS_APP

#: ``caddy.Config``: unknown top-level fields are refused, as Caddy does.
CONFIG: Spec = Obj(
    {
        "admin": Obj(
            {"listen": STRING, "disabled": BOOL, "enforce_origin": BOOL, "origins": STRINGS,
             "config": Obj({"persist": BOOL, "load": ANY, "load_delay": ANY}), "identity": ANY, "remote": ANY},
            name="caddy.AdminConfig",
        ),
        "logging": LOGGING,
        "storage": Module("caddy.storage", "module", {"file_system": Obj({"root": STRING}, strict=True)}),
        # txcaddy's own: ``workers N | "auto"`` (docs/scaling.md); its value is checked by
        # ``txcaddy._workers.parse_workers``.
        "workers": ANY,
        "apps": Obj({"http": HTTP_APP, "tls": TLS_APP, "pki": PKI_APP}),
    },
    strict=True, name="caddy.Config",
)


def check_config(config: Any) -> None:
    """Raise ConfigError naming the first value of ``config`` whose type is wrong."""
    check(CONFIG, config)
