"""An installed (non-editable) txcaddy is visible to ``twistd`` as ``caddy``."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

from twisted.trial.unittest import SkipTest, SynchronousTestCase


class InstalledPluginTests(SynchronousTestCase):
    def test_twistd_knows_caddy(self) -> None:
        """An installed txcaddy gives twistd a caddy command; a missing config fails cleanly."""
        try:
            metadata.distribution("txcaddy")
        except metadata.PackageNotFoundError:
            raise SkipTest("txcaddy is not installed (pip install . first)")
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        with open(os.path.join(workdir, "Caddyfile"), "w") as f:
            f.write(":8080 {\n\trespond ok\n}\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        script = "import sys; from twisted.scripts.twistd import run; sys.argv = ['twistd'] + sys.argv[1:]; run()"
        # Outside the checkout, only the installed package can provide the plugin.
        result = subprocess.run(
            [sys.executable, "-c", script, "caddy", "--help"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--config", result.stdout)
        bad = subprocess.run(
            [sys.executable, "-c", script, "-n", "caddy", "-c", "missing"],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
        )
        self.assertNotEqual(bad.returncode, 0)
        # the installed copy may predate Go's lower-case wording
        self.assertIn("missing: no such file or directory", (bad.stdout + bad.stderr).lower())
        self.assertNotIn("Traceback", bad.stdout + bad.stderr)
