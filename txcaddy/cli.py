"""The ``txcaddy`` command: ``run``, ``adapt``, ``validate``, ``fmt``, ``trust``,
``untrust``, ``version``.

It mirrors Caddy's command line so that users can diff ``txcaddy adapt``
against ``caddy adapt``. A bad config prints ``Error: ...`` with file and
line and exits 1, never a traceback.

``reload`` adapts the config here and POSTs it to the running server's admin API, as
``caddy reload`` does; ``run`` reloads its config file on ``SIGUSR1`` too.

``trust``/``untrust`` follow Caddy 2.6.2's ``modules/caddypki/command.go``, except
where the root comes from: Caddy asks a running server's admin API, txcaddy reads the CA
from the storage the config names, as the server would (no server needs to run), and
``trust`` creates it there when it does not exist yet.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar, cast

from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from zope.interface import provider

from txcaddy._go.fs import path_error
from txcaddy._process import tune_server_process
from txcaddy._reactor import default_reactor
from txcaddy.admin import _persist as persist
from txcaddy.admin._server import DEFAULT_ADMIN_LISTEN
from txcaddy.caddyfile.formatter import format_caddyfile
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.config.source import load_config, read_config_text
from txcaddy.config.validate import validate_config
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.service import CaddyService
from txcaddy.tls import internalca, truststore
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.storage import storage_from_config

VERSION = "0.1.0"

run_trust_command: truststore.Runner = subprocess.run
"""How ``trust``/``untrust`` run certutil, tee, sudo... (tests put a recorder here)."""

_T = TypeVar("_T")


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
    """The service ``txcaddy run`` serves: it owns the process, so with the fast reactor path,
    the admin endpoint and ``autosave.json``; ``--resume`` loads that file instead of ``--config``."""
    autosave = persist.autosave_path()
    config: dict[str, Any] | None = None
    warnings: list[ConfigWarning] = []
    if getattr(args, "resume", False):
        try:
            with open(autosave, encoding="utf-8") as f:
                config = json.load(f)
        except FileNotFoundError:
            config = None  # Caddy falls back to --config
        except (OSError, ValueError) as e:
            raise ConfigError(f"reading autosaved config {autosave}: {e}") from None
    if config is None:
        config, warnings = load_config(args.config, args.adapter)
    return CaddyService(config, warnings=warnings, reactor=default_reactor(), fast_io=True, admin=True,
                        autosave=autosave)


def reload_from_file(service: CaddyService, args: argparse.Namespace) -> Deferred[None]:
    """Reload the config file the server was started with (``SIGUSR1``); errors are logged and
    leave the running config as it was."""
    from twisted.internet.defer import fail

    log = Logger(namespace="txcaddy.cli")
    try:
        config, warnings = load_config(args.config, args.adapter)
    except ConfigError as e:
        log.error("reloading {path}: {error}", path=args.config, error=str(e))
        return fail(e)
    d = service.reload(config, warnings)

    def done(_: Any) -> None:
        log.info("reloaded {path}", path=args.config)

    def failed(failure: Failure) -> Failure:
        log.error("reloading {path}: {error}", path=args.config, error=str(failure.value))
        return failure

    return d.addCallbacks(done, failed)


def install_reload_signal(service: CaddyService, args: argparse.Namespace) -> None:
    """``SIGUSR1`` reloads ``args.config`` (systemd's ``ExecReload=kill -USR1 $MAINPID``)."""

    def on_sigusr1(signum: int, frame: Any) -> None:
        # Signal handlers run between bytecodes: hand the work to the reactor thread.
        cast(Any, service.reactor).callFromThread(
            lambda: reload_from_file(service, args).addErrback(lambda _: None))

    signal.signal(signal.SIGUSR1, on_sigusr1)


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

    install_reload_signal(service, args)
    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: service.running and service.stopService())
    reactor.run()
    if failures:
        print(f"Error: starting the server: {failures[0]}", file=err)
        return 1
    return 0


def admin_address(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """Caddy's ``DetermineAdminAPIAddress``: ``--address``, else the config's ``admin.listen``, else the default."""
    if args.address:
        return str(args.address)
    listen = (config.get("admin") or {}).get("listen")
    return str(listen) if listen else DEFAULT_ADMIN_LISTEN


def admin_request(address: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request to the admin API at ``address`` (``host:port`` or ``unix//path``), as Caddy's
    ``AdminAPIRequest``: ``Origin`` names the address; over a unix socket the Host is empty."""
    import http.client
    import socket

    if address.startswith("unix/"):
        path_name = address[len("unix/"):]

        class UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path_name)

        connection: http.client.HTTPConnection = UnixConnection("localhost", timeout=60)
        host, origin = "", "http://127.0.0.1"
    else:
        hostname, _, port = address.rpartition(":")
        connection = http.client.HTTPConnection(hostname or "localhost", int(port), timeout=60)
        host, origin = address, f"http://{address}"
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        connection.putheader("Origin", origin)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read(10 * 1024)
    except OSError as e:
        raise ConfigError(f"performing request: {e}") from None
    finally:
        connection.close()


def cmd_reload(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Adapt the config here and POST it to a running server's ``/load`` (Caddy's ``cmdReload``)."""
    if not args.config:
        raise ConfigError("no config file to load")
    config, warnings = load_config(args.config, args.adapter)
    _print_warnings(warnings, err)
    headers = {"Content-Type": "application/json"}
    if args.force:
        headers["Cache-Control"] = "must-revalidate"
    status, body = admin_request(admin_address(args, config), "POST", "/load", encode(config).encode(), headers)
    if status >= 400:
        raise ConfigError(f"sending configuration to instance: caddy responded with error: HTTP {status}: "
                          f"{body.decode('utf-8', 'replace')}")
    return 0


def cmd_version(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    print(f"txcaddy {VERSION} (Caddyfile of Caddy 2.6.2)", file=out)
    return 0


# -- trust / untrust ------------------------------------------------------------------------


def _wait(deferred: Deferred[_T]) -> _T:
    """The result of a Deferred that has fired (the file storage answers at once)."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    if not results:
        raise ConfigError("the storage did not answer without a running reactor")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]  # type: ignore[no-any-return]


def _certificate_authority(args: argparse.Namespace) -> tuple[internalca.CertificateAuthority, Any]:
    """The CA ``--ca`` names (default ``local``) in the config's PKI app, and the storage the
    config names (Caddy's default storage without ``--config``)."""
    if args.adapter and not args.config:
        raise ConfigError("cannot adapt config without config file (use --config)")
    config: dict[str, Any] = {}
    if args.config:
        config, _ = load_config(args.config, args.adapter)
    clock = default_reactor()
    pki = internalca.load_pki_app((config.get("apps") or {}).get("pki"), clock)
    ca = pki.get_ca(args.ca or internalca.DEFAULT_CA_ID)
    storage = storage_from_config(config.get("storage"), clock)
    return ca, storage


@contextmanager
def _trust_log(err: TextIO) -> Iterator[None]:
    """Show what the CA and the trust stores log, as ``LEVEL<tab>message`` lines on ``err``."""
    namespaces = (truststore.__name__, internalca.__name__)

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") in namespaces:
            level = event.get("log_level", LogLevel.info)
            print(f"{level.name.upper()}\t{formatEvent(event)}", file=err)

    globalLogPublisher.addObserver(observe)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observe)


def cmd_trust(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Install the CA's root into the trust stores (``TRUST_STORES`` picks them)."""
    with _trust_log(err):
        ca, storage = _certificate_authority(args)
        try:
            _wait(ca.provision(storage))
        except OSError as e:
            raise ConfigError(f"provisioning CA '{ca.id}': {e}") from None
        print(f"INFO\tinstalling root certificate of CA {ca.id} (you might be prompted for password) "
              f"(path: {ca.root_source})", file=err)
        try:
            truststore.install(ca.root_certificate, environ=os.environ, run=run_trust_command)
        except truststore.TrustStoreError as e:
            print(f"Error: {e}", file=err)
            return 1
    return 0


def _read_certificate_file(path: str, what: str) -> x509.Certificate:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{what}: {path_error('open', path, e)}") from None
    try:
        return truststore.read_certificate(data)
    except ValueError as e:
        raise ConfigError(f"{what}: error parsing {path}: {e}") from None


def _stored_root(ca: internalca.CertificateAuthority, storage: Any) -> x509.Certificate:
    """The CA's root as the server would load it, without making one."""
    if ca.root is not None:
        return _read_certificate_file(ca.root.certificate, "loading root certificate")
    key = ca.storage_keys.root_certificate
    try:
        data = _wait(storage.load(key))
    except KeyNotFound:
        raise ConfigError(f"no root certificate for CA {ca.id!r} in storage ({key}): nothing to untrust") from None
    except OSError as e:
        raise ConfigError(f"loading root certificate of CA {ca.id!r}: {e}") from None
    try:
        return truststore.read_certificate(data)
    except ValueError as e:
        raise ConfigError(f"loading root certificate of CA {ca.id!r}: decoding {key}: {e}") from None


def cmd_untrust(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Remove a root from the trust stores: the CA's, or the one in ``--cert``."""
    if args.cert and (args.ca or args.config):
        raise ConfigError("conflicting command line arguments, cannot use --cert with other flags")
    with _trust_log(err):
        if args.cert:
            try:
                os.stat(args.cert)
            except OSError as e:
                raise ConfigError(f"accessing certificate file: {path_error('stat', args.cert, e)}") from None
            root = _read_certificate_file(args.cert, "failed to uninstall certificate file")
        else:
            ca, storage = _certificate_authority(args)
            root = _stored_root(ca, storage)
        try:
            truststore.uninstall(root, environ=os.environ, run=run_trust_command)
        except truststore.TrustStoreError as e:
            print(f"Error: failed to uninstall certificate file: {e}", file=err)
            return 1
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
    run.add_argument("--resume", action="store_true", help="load the autosaved config instead of --config")
    run.set_defaults(func=cmd_run)

    reload = commands.add_parser("reload", help="send a config to a running server's admin API")
    reload.add_argument("--config", "-c", default="Caddyfile", help="config file (default: Caddyfile)")
    reload.add_argument("--adapter", "-a", default=None, help="caddyfile or json")
    reload.add_argument("--address", default="", help="the admin API address (default: from the config)")
    reload.add_argument("--force", action="store_true", help="reload even when the config is unchanged")
    reload.set_defaults(func=cmd_reload)

    trust = commands.add_parser("trust", help="install a CA's root certificate into the local trust stores")
    trust.add_argument("--ca", default="", help="the ID of the CA to trust (default: local)")
    trust.add_argument("--config", "-c", default="", help="config file naming the storage and CAs")
    trust.add_argument("--adapter", "-a", default="", help="caddyfile or json (with --config)")
    trust.set_defaults(func=cmd_trust)

    untrust = commands.add_parser("untrust", help="remove a CA's root certificate from the local trust stores")
    untrust.add_argument("--cert", default="", help="the certificate file to untrust (no other flags)")
    untrust.add_argument("--ca", default="", help="the ID of the CA to untrust (default: local)")
    untrust.add_argument("--config", "-c", default="", help="config file naming the storage and CAs")
    untrust.add_argument("--adapter", "-a", default="", help="caddyfile or json (with --config)")
    untrust.set_defaults(func=cmd_untrust)

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
