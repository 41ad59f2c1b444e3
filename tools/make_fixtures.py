#!/usr/bin/env python3
"""Record Caddy 2.6.2's answer for every fixture Caddyfile.

For each ``tests/caddyfile/fixtures/**/NAME.Caddyfile`` this runs
``caddy adapt --config NAME.Caddyfile`` inside the fixture's folder and writes
``NAME.json`` (the adapted config, compact, as Caddy printed it) or, when
Caddy rejects the file, ``NAME.error`` (its error message without the
``Error: `` prefix). The test suite compares txcaddy's output with these files,
so it needs no Caddy at run time. Needs Debian's ``caddy`` package (2.6.2).

Where txcaddy deliberately differs from Caddy (DESIGN.md §1), the fixture has
a hand-written ``NAME.txcaddy.json``; Caddy's own answer is then recorded as
``NAME.caddy.json`` or ``NAME.caddy-error`` for reference.

    python3 tools/make_fixtures.py [--force] [paths or folders...]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "caddyfile" / "fixtures"


def record(path: pathlib.Path, caddy: str, force: bool) -> str:
    json_file = path.with_suffix(".json")
    error_file = path.with_suffix(".error")
    if path.with_suffix(".txcaddy.json").exists() or path.with_suffix(".txcaddy.error").exists():
        json_file = path.with_suffix(".caddy.json")
        error_file = path.with_suffix(".caddy-error")
    if not force and (json_file.exists() or error_file.exists()):
        return "kept"
    proc = subprocess.run(
        [caddy, "adapt", "--config", path.name, "--adapter", "caddyfile"],
        cwd=path.parent,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    json_file.unlink(missing_ok=True)
    error_file.unlink(missing_ok=True)
    if proc.returncode == 0:
        json_file.write_text(proc.stdout.strip() + "\n")
        return "json"
    stderr = proc.stderr.strip()
    start = stderr.rfind("Error: ")
    message = stderr[start + len("Error: ") :] if start >= 0 else stderr
    error_file.write_text(message + "\n")
    return "error"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=pathlib.Path)
    parser.add_argument("--force", action="store_true", help="re-record existing answers")
    parser.add_argument("--caddy", default="caddy")
    args = parser.parse_args()
    paths = args.paths or [ROOT]
    for base in paths:
        files = [base] if base.is_file() else sorted(base.rglob("*.Caddyfile"))
        for path in files:
            print(f"{record(path.resolve(), args.caddy, args.force):6} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
