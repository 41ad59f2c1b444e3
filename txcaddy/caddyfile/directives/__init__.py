"""Directive families; importing this package registers all of them."""

import importlib

_FAMILIES = (
    "builtins",
    "matchers",
    "options",
    "logging",
    "tls",
    "reverseproxy",
    "fileserver",
    "headers",
    "rewrite",
    "misc",
)

for _family in _FAMILIES:
    try:
        importlib.import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as e:  # a family not written yet
        if e.name != f"{__name__}.{_family}":
            raise
