"""Ports of Go's standard library behaviour that Caddy's semantics depend on, each once."""
