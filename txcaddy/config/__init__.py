"""Loading configurations: Caddyfile or JSON in, Caddy's JSON config out."""
