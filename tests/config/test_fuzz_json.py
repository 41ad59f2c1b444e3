"""Mutated real configs load cleanly or fail with a ConfigError, never a traceback.

The configs are Caddy's adapter corpus (the expected JSON of each case) and the seed
examples (JSON from Caddy 2.6.2), from ``../shared`` beside the checkout, plus the
fixtures kept in this repository. Each example changes one value: it gets a value of
another JSON type, is deleted, or is wrapped in a list. Loading is ``validate_config``:
it builds the whole service without binding a socket.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from txcaddy.config.validate import validate_config
from txcaddy.errors import ConfigError

SHARED = pathlib.Path(__file__).resolve().parents[2].parent / "shared"


def _corpus_configs() -> list[tuple[str, Any]]:
    out = []
    for path in sorted((SHARED / "caddy-adapt-corpus" / "v2.6.2").glob("*.txt")):
        expected = path.read_text(encoding="utf-8").partition("----------")[2].strip()
        if expected.startswith("{"):
            out.append((path.name, json.loads(expected)))
    for path in sorted((SHARED / "seed-examples").glob("*.json")):
        out.append((path.name, json.loads(path.read_text(encoding="utf-8"))))
    return out


CONFIGS = _corpus_configs()

#: Values of every JSON type, small, for replacing one value of a config.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _load(config: Any) -> str:
    """'ok' or the ConfigError's message; any other exception propagates."""
    try:
        validate_config(config, reactor=Clock())
    except ConfigError as e:
        return str(e)
    return "ok"


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any, str]:
    name, original = draw(st.sampled_from(CONFIGS))
    config = copy.deepcopy(original)
    path = draw(st.sampled_from(_paths(config)))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    old = parent[path[-1]]
    how = draw(st.sampled_from(["replace", "delete", "wrap"]))
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif how == "wrap":
        parent[path[-1]] = [old]
    else:
        parent[path[-1]] = draw(JSON_VALUES.filter(lambda v: type(v) is not type(old)))
    return name, config, f"{how} {'.'.join(map(str, path))}"


class MutatedConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not CONFIGS:
            raise SkipTest(f"no corpus or seed examples under {SHARED}")
        # Loading must not touch the real home (storage paths come from it).
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        for var in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
            self.addCleanup(os.environ.__setitem__, var, os.environ[var]) if var in os.environ else \
                self.addCleanup(os.environ.pop, var, None)
            os.environ[var] = home

    def test_originals_load_or_fail_cleanly(self) -> None:
        """Every unmutated config loads, or fails with a ConfigError (unsupported modules)."""
        results = {name: _load(copy.deepcopy(config)) for name, config in CONFIGS}
        loaded = [name for name, result in results.items() if result == "ok"]
        self.assertGreater(len(loaded), len(CONFIGS) * 2 // 3, results)
        self.assertIn("01-basic.caddy-2.6.2.json", loaded)

    @settings(
        max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )
    @given(mutated())
    def test_mutation_loads_or_config_error(self, case: tuple[str, Any, str]) -> None:
        """One changed value gives success or a ConfigError, never another exception."""
        name, config, how = case
        try:
            result = _load(config)
        except Exception as e:  # noqa: BLE001 - the point: report which mutation crashed
            self.fail(f"{name}: {how}: {type(e).__name__}: {e}")
        self.assertIsInstance(result, str)
        self.assertNotIn("Traceback", result)

    def test_type_error_names_path(self) -> None:
        """A string in place of a seed example's listen list is refused naming the path and type."""
        config = dict(CONFIGS)["01-basic.caddy-2.6.2.json"]
        config = copy.deepcopy(config)
        server = next(iter(config["apps"]["http"]["servers"]))
        config["apps"]["http"]["servers"][server]["listen"] = ":443"
        self.assertEqual(
            _load(config), f"json: cannot unmarshal string into apps.http.servers.{server}.listen of type []string"
        )
