"""Tests for the benchmark harness in bench/ (its pure parts; no load is run)."""
