"""Caddy's placeholders: ``{http.request.host}``, ``{env.HOME}``, ``{http.vars.root}``, ...

A string with placeholders is parsed once, at load time, into a ``Template``:
literal text and slots whose value source (a small function) is chosen by
the placeholder's name when the template is built. Rendering is then a walk
over the segments, with no string scanning per request.

The parsing reproduces Caddy's ``Replacer`` exactly, quirks included, because
configs written for Caddy depend on them:

* ``\\{`` and ``\\}`` are literal braces, but only in a string that contains a
  ``{`` somewhere (otherwise Caddy returns the text untouched);
* a placeholder ends at the first ``}`` not preceded by a backslash;
* an unknown placeholder is left as written by ``ReplaceKnown`` (scanning
  resumes just after its ``{``, so ``{x{http.request.method}}`` gives
  ``{xGET}``) and becomes empty with ``ReplaceAll``;
* more than 101 unclosed ``{`` make the whole result empty.

The lookup order is Caddy's too: global values (``env.*``, ``system.*``,
``time.*``) first, then values set during the request (``request.placeholders``
and the ``http.error.*`` of an error route), then the request's own values.
Handlers may add lazy value sources consulted last (``add_mapped``, Caddy's
``Replacer.Map``): ``map`` computes its destinations only when they are read.
txcaddy adds one name (DESIGN.md §1): ``{>Name}`` is the request header
``Name``, like ``{http.request.header.Name}``.
"""

from __future__ import annotations

from txcaddy.config._resolvers import PROVIDED_NAMESPACES, UNKNOWN, add_mapped, lookup, resolver
from txcaddy.config._template import (
    Template,
    replace_all,
    replace_all_global,
    replace_known,
    template,
    to_string,
)

__all__ = [
    "PROVIDED_NAMESPACES",
    "UNKNOWN",
    "Template",
    "add_mapped",
    "lookup",
    "replace_all",
    "replace_all_global",
    "replace_known",
    "resolver",
    "template",
    "to_string",
]
