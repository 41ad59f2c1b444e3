"""Helpers shared by the handler tests: load handler JSON, find it in the adapter fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from txcaddy.config.loader import LoadContext

FIXTURES = Path(__file__).resolve().parents[2] / "caddyfile" / "fixtures"


def load(config: dict[str, Any]) -> Any:
    """Build the runtime handler for one handler JSON object (with its ``handler`` key)."""
    return LoadContext().load_handler(config)


def fixture_handlers(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``{"handler": name, ...}`` object in the adapter's JSON fixtures, with its file."""

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if node.get("handler") == name:
                yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for path in sorted(FIXTURES.rglob("*.json")):
        for config in walk(json.loads(path.read_text())):
            yield f"{path.parent.name}/{path.name}", config
