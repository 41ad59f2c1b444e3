"""Bundled example configs (``Caddyfile``) and the small apps they serve (``app/``)."""
