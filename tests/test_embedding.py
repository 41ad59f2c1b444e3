"""The embedding example of docs/embedding.md, run for real on 127.0.0.1."""

from __future__ import annotations

import os
import re
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "embedding.md")


def examples() -> list[str]:
    with open(DOCS) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


class EmbeddingExampleTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_application_example_serves(self) -> Any:
        """docs/embedding.md's application example starts and serves its route."""
        namespace: dict[str, Any] = {}
        exec(examples()[0].replace(":8080", ":0"), namespace)  # noqa: S102 - our own docs
        caddy = namespace["caddy"]
        caddy.startService()
        self.addCleanup(caddy.stopService)
        (address,) = next(iter(caddy.boundAddresses().values()))
        response = yield treq.get(f"http://127.0.0.1:{address.port}/hello", persistent=False)
        body = yield response.content()
        self.assertEqual((response.code, body), (200, b"hello from txcaddy"))


class TestingExampleTests(SynchronousTestCase):
    def test_testing_example_runs(self) -> None:
        """docs/embedding.md's txcaddy.testing example runs and gets its response."""
        namespace: dict[str, Any] = {}
        exec(examples()[1], namespace)  # noqa: S102 - our own docs; it asserts itself
        self.assertEqual(namespace["response"].body, b"hi")
