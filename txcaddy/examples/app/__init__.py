"""The Python-app example: a WSGI app, static files and a proxied API (see ``Caddyfile`` here).

Its modules live inside the ``txcaddy`` package so the Caddyfile can name them
(``txcaddy.examples.app.webapp:app``) wherever txcaddy is installed, with no
``PYTHONPATH`` to set.
"""
