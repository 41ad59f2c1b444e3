"""setuptools entry point: metadata lives in setup.cfg; this adds the optional compiled build.

``pip install .`` installs pure Python.  ``TXCADDY_MYPYC=1 pip install --no-build-isolation .``
(with mypy installed) compiles the HTTP/1.1 request path's modules with mypyc into C
extensions that take the place of the same-named modules; everything else stays Python.
See docs/performance.md, "Compiled build (mypyc)".
"""

import os

from setuptools import setup

# The modules of a proxied HTTP/1.1 request that compile (and pay) as they are.  Left out:
# http/response.py (ResponseWrapper's __getattr__) and reverseproxy/_pool.py (its host pool
# takes the ALPN exchange, which is not an Exchange, where it is annotated as one).
COMPILED = [
    "txcaddy/http/_h1.py",
    "txcaddy/http/_h1head.py",
    "txcaddy/http/_h1parse.py",
    "txcaddy/http/headers.py",
    "txcaddy/http/request.py",
    "txcaddy/http/routing.py",
    "txcaddy/http/server.py",
    "txcaddy/metrics/_http.py",
    "txcaddy/reverseproxy/_call.py",
    "txcaddy/reverseproxy/_exchange.py",
    "txcaddy/reverseproxy/_h1connection.py",
    "txcaddy/reverseproxy/_h1response.py",
    "txcaddy/reverseproxy/_h1rhead.py",
    "txcaddy/reverseproxy/handler.py",
    "txcaddy/reverseproxy/headers.py",
    "txcaddy/reverseproxy/hosts.py",
    "txcaddy/reverseproxy/selection.py",
    "txcaddy/reverseproxy/streaming.py",
]

if os.environ.get("TXCADDY_MYPYC") == "1":
    from mypyc.build import mypycify

    setup(ext_modules=mypycify(COMPILED, opt_level="3"))
else:
    setup()
