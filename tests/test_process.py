"""Tests for txcaddy._process (process-wide tuning when txcaddy is the server)."""

from __future__ import annotations

import gc
import platform
import sys
from types import SimpleNamespace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy import _process, tap


class TuneAllocatorTests(SynchronousTestCase):
    def test_glibc_accepts_the_trim_threshold(self) -> None:
        """On glibc, tune_allocator sets the malloc trim threshold and reports success."""
        if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
            raise self.skipTest("glibc only")
        self.assertTrue(_process.tune_allocator())

    def test_other_platforms_are_left_alone(self) -> None:
        """Off Linux, tune_allocator does nothing and says so."""
        self.patch(_process.sys, "platform", "darwin")
        self.assertFalse(_process.tune_allocator())

    def test_twistd_service_maker_tunes_the_process(self) -> None:
        """twistd's caddy service maker tunes the process before handing over the service."""
        calls: list[Any] = []
        self.patch(tap, "tune_server_process", lambda: calls.append(True))

        class FakeOptions:
            service = SimpleNamespace(runtime=SimpleNamespace(fatal=None), reactor=None)

        self.assertIs(tap.makeService(FakeOptions()), FakeOptions.service)  # type: ignore[arg-type]
        self.assertEqual(calls, [True])
        self.assertTrue(callable(FakeOptions.service.runtime.fatal))  # a failed ASGI startup stops twistd


class FreezeTests(SynchronousTestCase):
    def test_objects_alive_at_start_leave_the_collectors_view(self) -> None:
        """freeze_startup_objects moves live objects to the permanent generation."""
        self.addCleanup(gc.unfreeze)
        kept: list[list[object]] = [[] for _ in range(100)]
        _process.freeze_startup_objects()
        self.assertGreaterEqual(gc.get_freeze_count(), len(kept))
        tracked = {id(obj) for obj in gc.get_objects()}
        self.assertNotIn(id(kept[0]), tracked)
