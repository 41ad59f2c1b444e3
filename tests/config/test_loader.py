"""Tests for txcaddy.config.loader: the unload hooks and the per-service Runtime."""

from __future__ import annotations

import functools
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config.loader import LoadContext, Runtime
from txcaddy.reverseproxy.hosts import HostRegistry


class UnloadTests(SynchronousTestCase):
    def test_hooks_run_newest_first(self) -> None:
        """Unloading runs the hooks in the reverse order of their registration."""
        context = LoadContext()
        ran: list[int] = []
        for i in range(3):
            context.on_unload(functools.partial(ran.append, i))
        self.successResultOf(context.unload())
        self.assertEqual(ran, [2, 1, 0])

    def test_waits_for_the_deferreds_hooks_return(self) -> None:
        """unload() fires only once every Deferred a hook returned has fired."""
        context = LoadContext()
        later: Deferred[None] = Deferred()
        context.on_unload(lambda: later)
        context.on_unload(lambda: None)
        unloaded = context.unload()
        self.assertNoResult(unloaded)
        later.callback(None)
        self.assertIsNone(self.successResultOf(unloaded))

    def test_a_failing_hook_is_logged_and_the_others_run(self) -> None:
        """A hook that raises, or whose Deferred fails, is logged; the rest still run."""
        context = LoadContext()
        ran: list[str] = []
        context.on_unload(lambda: ran.append("first"))
        context.on_unload(lambda: fail(ValueError("later")))
        context.on_unload(lambda: 1 / 0)
        self.assertIsNone(self.successResultOf(context.unload()))
        self.assertEqual(ran, ["first"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError, ValueError)), 2)

    def test_hooks_run_once(self) -> None:
        """A second unload() runs nothing again."""
        context = LoadContext()
        ran: list[Any] = []
        context.on_unload(lambda: ran.append(1))
        context.unload()
        self.successResultOf(context.unload())
        self.assertEqual(ran, [1])


class RuntimeTests(SynchronousTestCase):
    def test_one_part_per_kind(self) -> None:
        """A runtime makes each kind of state once and hands the same object out after."""
        runtime = Runtime()
        self.assertIs(runtime.get(HostRegistry), runtime.get(HostRegistry))

    def test_runtimes_share_nothing(self) -> None:
        """Two runtimes (two services) have their own state."""
        self.assertIsNot(Runtime().get(HostRegistry), Runtime().get(HostRegistry))

    def test_context_carries_the_runtime_it_is_given(self) -> None:
        """A context loads into the runtime it was given, else into a fresh one of its own."""
        runtime = Runtime()
        self.assertIs(LoadContext(runtime=runtime).runtime, runtime)
        self.assertIsNot(LoadContext().runtime, LoadContext().runtime)
