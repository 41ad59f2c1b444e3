"""The ``txcaddy`` command: ``run``, ``adapt``, ``validate``, ``fmt``, ``version``.

It mirrors Caddy's command line so that users can diff ``txcaddy adapt``
against ``caddy adapt``. A bad config prints ``Error: ...`` with file and
line and exits 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from twisted.logger import globalLogBeginner, textFileLogObserver

from txcaddy._process import tune_server_process
from txcaddy._reactor import default_reactor
from txcaddy.caddyfile.formatter import format_caddyfile
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.config.source import load_config, read_config_text
from txcaddy.config.validate import validate_config
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.service import CaddyService

VERSION = "0.1.0"


def _print_warnings(warnings: list[ConfigWarning], err: TextIO) -> None:
    for warning in warnings:
        print(f"WARN\t{warning}", file=err)


def cmd_adapt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config, warnings = load_config(args.config, args.adapter)
    _print_warnings(warnings, err)
    if args.validate:
        validate_config(config)
    print(encode(config, "\t" if args.pretty else None), file=out)
    return 0


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config, warnings = load_config(args.config, args.adapter)
    _print_warnings(warnings, err)
    validate_config(config)
    print("Valid configuration", file=out)
    return 0


def cmd_fmt(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    text = sys.stdin.read() if args.path == "-" else read_config_text(args.path)
    formatted = format_caddyfile(text)
    if args.overwrite and args.path != "-":
        with open(args.path, "w", encoding="utf-8") as f:
            f.write(formatted)
        return 0
    out.write(formatted)
    return 0


def run_service(args: argparse.Namespace) -> CaddyService:
    """The service ``txcaddy run`` serves: it owns the process, so with the fast reactor path."""
    config, warnings = load_config(args.config, args.adapter)
    return CaddyService(config, warnings=warnings, reactor=default_reactor(), fast_io=True)


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve the config in the foreground until SIGINT/SIGTERM (like ``twistd -n caddy``)."""
    service = run_service(args)
    reactor = service.reactor
    tune_server_process()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    failures: list[BaseException] = []

    def start() -> None:
        try:
            service.startService()
        except Exception as e:  # noqa: BLE001 - e.g. a port already in use
            failures.append(e)
            reactor.stop()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: service.running and service.stopService())
    reactor.run()
    if failures:
        print(f"Error: starting the server: {failures[0]}", file=err)
        return 1
    return 0


def cmd_version(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    print(f"txcaddy {VERSION} (Caddyfile of Caddy 2.6.2)", file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="txcaddy", description="Caddy-compatible server on Twisted")
    commands = parser.add_subparsers(dest="command", required=True)

    adapt = commands.add_parser("adapt", help="print a config as Caddy JSON")
    adapt.add_argument("--config", "-c", default="Caddyfile", help="config file (default: Caddyfile)")
    adapt.add_argument("--adapter", "-a", default=None, help="caddyfile or json")
    adapt.add_argument("--pretty", "-p", action="store_true", help="indent the JSON with tabs")
    adapt.add_argument("--validate", action="store_true", help="also validate the result")
    adapt.set_defaults(func=cmd_adapt)

    validate = commands.add_parser("validate", help="check a config without running it")
    validate.add_argument("--config", "-c", default="Caddyfile")
    validate.add_argument("--adapter", "-a", default=None)
    validate.set_defaults(func=cmd_validate)

    fmt = commands.add_parser("fmt", help="format a Caddyfile as Caddy does")
    fmt.add_argument("path", nargs="?", default="Caddyfile", help="file to format, or - for stdin")
    fmt.add_argument("--overwrite", "-w", action="store_true", help="rewrite the file in place")
    fmt.set_defaults(func=cmd_fmt)

    run = commands.add_parser("run", help="serve a config in the foreground")
    run.add_argument("--config", "-c", default="Caddyfile", help="config file (default: Caddyfile)")
    run.add_argument("--adapter", "-a", default=None, help="caddyfile or json")
    run.set_defaults(func=cmd_run)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, out, err))
    except ConfigError as e:
        print(f"Error: {e}", file=err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
