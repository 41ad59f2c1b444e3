"""Finding reference cycles: what a piece of work leaves to the garbage collector."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable
from typing import Any


def garbage_of(work: Callable[[], Any]) -> Counter[str]:
    """The types of the objects ``work()`` leaves in reference cycles (empty: none).

    Objects in a cycle are freed only by the collector, which then runs every few
    requests and walks everything young; refcounting frees the rest at once.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        work()
        gc.collect()
        found = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    return found
