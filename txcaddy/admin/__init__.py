"""The admin API (Caddy's ``admin.go``, ``caddyconfig/load.go``) and config persistence."""

from txcaddy.admin._paths import ConfigPathError, access, index_ids, strip_ids

__all__ = ["ConfigPathError", "access", "index_ids", "strip_ids"]
