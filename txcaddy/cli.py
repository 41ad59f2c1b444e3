"""The ``txcaddy`` command: ``run``, ``adapt``, ``validate``, ``fmt``, ``trust``,
``untrust``, ``version``, ``list-modules``, ``environ``, ``hash-password``,
``reverse-proxy``, ``file-server``, ``respond``.

It mirrors Caddy's command line so that users can diff ``txcaddy adapt``
against ``caddy adapt``. A bad config prints ``Error: ...`` with file and
line and exits 1, never a traceback.

``reload`` adapts the config here and POSTs it to the running server's admin API, as
``caddy reload`` does; ``run`` reloads its config file on ``SIGUSR1`` too.

``trust``/``untrust`` follow Caddy 2.6.2's ``modules/caddypki/command.go``, except
where the root comes from: Caddy asks a running server's admin API, txcaddy reads the CA
from the storage the config names, as the server would (no server needs to run), and
``trust`` creates it there when it does not exist yet.

The other verbs follow ``cmd/commandfuncs.go`` (``list-modules``, ``environ``),
``modules/caddyhttp/caddyauth/command.go`` (``hash-password``) and the one-line
servers' ``command.go`` files (configs in ``txcaddy._quickstart``); the first three live
in ``txcaddy._commands``.  Config discovery
for ``run`` and ``validate`` is ``cmd/main.go: LoadConfig``: without ``--config``,
``./Caddyfile`` when there is one, else an empty config; ``--config -`` reads stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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

from txcaddy import _quickstart, _systemd
from txcaddy._commands import VERSION, cmd_environ, cmd_hash_password, cmd_list_modules
from txcaddy._go.fs import path_error
from txcaddy._process import tune_server_process
from txcaddy._reactor import default_reactor, install_asyncio_reactor
from txcaddy._workers import parse_workers
from txcaddy.admin import _persist as persist
from txcaddy.admin._server import DEFAULT_ADMIN_LISTEN
from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.formatter import format_caddyfile
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.config.source import choose_adapter, load_config, read_config_text
from txcaddy.config.validate import validate_config
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.service import CaddyService
from txcaddy.tls import internalca, truststore
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.storage import storage_from_config

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
    config, warnings = discover_config(args.config, args.adapter)
    _print_warnings(warnings, err)
    install_asyncio_reactor(config, "txcaddy validate")  # an asgi handler loads only on it
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


def discover_config(config: str, adapter: str | None) -> tuple[dict[str, Any], list[ConfigWarning]]:
    """The config ``run``/``validate`` load, found as Caddy's ``LoadConfig`` finds it.

    ``--adapter`` without ``--config`` is an error; no ``--config`` takes ``./Caddyfile``
    when it exists and an empty config when it does not.
    """
    if adapter and not config:
        raise ConfigError("cannot adapt config without config file (use --config)")
    if config == "-":
        return _config_from_stdin(adapter)
    if not config:
        if not os.path.exists("Caddyfile"):
            return {}, []
        config, adapter = "Caddyfile", "caddyfile"
    return load_config(config, adapter)


def _config_from_stdin(adapter: str | None) -> tuple[dict[str, Any], list[ConfigWarning]]:
    """``--config -``: the config text on stdin; JSON unless ``--adapter caddyfile`` (Caddy's rule)."""
    text = sys.stdin.read()
    if choose_adapter("-", adapter or "json") == "caddyfile":
        return adapt(text, "-")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"-:{e.lineno} - invalid JSON config: {e.msg}") from None
    if not isinstance(config, dict):
        raise ConfigError("-:1 - invalid JSON config: the top level must be an object")
    return config, []


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
        config, warnings = discover_config(args.config, args.adapter)
    workers = getattr(args, "workers", None)
    count = None if workers is None else parse_workers(workers, "--workers")
    return serving(config, warnings, admin=True, autosave=autosave, workers=count)


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


def serving(
    config: dict[str, Any], warnings: list[ConfigWarning] | None = None, *, admin: bool = False,
    autosave: str | None = None, workers: int | None = None,
) -> CaddyService:
    """A service that owns the process (fast reactor path), telling systemd when it is ready;
    ``run`` adds the admin endpoint and ``autosave.json`` (the one-line servers have neither, as Caddy's).
    A config with an ``asgi`` handler gets Twisted's asyncio reactor."""
    install_asyncio_reactor(config)
    service = CaddyService(config, warnings=warnings, reactor=default_reactor(), fast_io=True, admin=admin,
                           autosave=autosave, workers=workers)
    _systemd.attach_notifier(service)
    return service


def serve(
    service: CaddyService, err: TextIO, started: Callable[[], None] | None = None,
    reload_args: argparse.Namespace | None = None,
) -> int:
    """Run ``service`` in the foreground until SIGINT/SIGTERM; ``started`` is called once it listens;
    with ``reload_args`` (``run``), SIGUSR1 reloads the config file they name."""
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
            return
        if started is not None:
            started()

    if reload_args is not None:
        install_reload_signal(service, reload_args)

    def fatal(error: BaseException) -> None:
        # A module that cannot serve after all (an ASGI app's lifespan startup failed).
        failures.append(error)
        if reactor.running:
            reactor.stop()

    service.runtime.fatal = fatal
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


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve the config in the foreground until SIGINT/SIGTERM (like ``twistd -n caddy``).

    ``--pingback ADDR`` (what ``start`` uses): the bytes on standard input are sent back to
    ``ADDR`` once the server listens, so the parent knows this process started.
    """
    started: Callable[[], None] | None = None
    pingback = getattr(args, "pingback", "")
    if pingback:
        confirmation = sys.stdin.buffer.read()

        def started() -> None:
            host, _, port = pingback.rpartition(":")
            try:
                with socket.create_connection((host or "127.0.0.1", int(port)), timeout=10) as sock:
                    sock.sendall(confirmation)
            except (OSError, ValueError) as e:
                print(f"Error: dialing confirmation address: {e}", file=err)

    return serve(run_service(args), err, started=started, reload_args=args)


#: How long ``start`` waits for the server to confirm it listens (Caddy waits without a limit;
#: a config that binds and obtains certificates at start is well within this).
START_TIMEOUT = 600.0


def cmd_start(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Start ``txcaddy run`` in the background and wait until it listens (Caddy's ``cmdStart``).

    The child gets ``--pingback`` with a loopback port of ours and 32 random bytes on its
    standard input; it sends them back once its listeners are up. If it exits first, its
    output (inherited) says why and this command fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        command = [sys.executable, "-m", "txcaddy.cli", "run", "--pingback", f"127.0.0.1:{port}"]
        if args.config:
            command += ["--config", args.config]
        if args.adapter:
            command += ["--adapter", args.adapter]
        secret = os.urandom(32)
        # The child runs this same txcaddy (as Caddy runs its own executable), also from a checkout.
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
        child = subprocess.Popen(command, stdin=subprocess.PIPE, env={**os.environ, "PYTHONPATH": python_path})
        assert child.stdin is not None
        child.stdin.write(secret)
        child.stdin.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            code = child.poll()
            if code is not None:
                raise ConfigError(f"caddy process exited with error: exit status {code}")
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(10)
                received = b""
                while len(received) < len(secret):
                    chunk = connection.recv(len(secret) - len(received))
                    if not chunk:
                        break
                    received += chunk
            if received != secret:
                raise ConfigError("wrong confirmation bytes received from the started process")
            print(f"Successfully started txcaddy (pid={child.pid}) - txcaddy is running in the background",
                  file=out)
            return 0
        child.terminate()
        raise ConfigError(f"the server did not confirm its start within {START_TIMEOUT:.0f} s")


def cmd_stop(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Stop a running server through its admin API's ``POST /stop`` (Caddy's ``cmdStop``: no
    signal fallback). The address: ``--address``, else the config's, else ``localhost:2019``."""
    config: dict[str, Any] = {}
    if args.config:
        config, _ = load_config(args.config, args.adapter)
    status, body = admin_request(admin_address(args, config), "POST", "/stop", b"", {})
    if status >= 400:
        raise ConfigError(f"caddy responded with error: HTTP {status}: {body.decode('utf-8', 'replace')}")
    return 0


def cmd_version(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    print(f"txcaddy {VERSION} (Caddyfile of Caddy 2.6.2)", file=out)
    return 0




def cmd_reverse_proxy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """A reverse proxy from one address to upstreams, with no config file (Caddy's quick start)."""
    plan = _quickstart.reverse_proxy_config(
        args.from_, args.to or [], args.change_host_header, args.insecure, args.internal_certs, args.debug,
    )

    def started() -> None:
        for dial in plan.upstreams:
            print(f"Caddy proxying {plan.source} -> {dial}", file=out, flush=True)
        if len(plan.upstreams) > 1:
            print("Load balancing policy: random", file=out, flush=True)

    return serve(serving(plan.config), err, started)


def cmd_file_server(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """A static file server for a directory, with no config file (Caddy's quick start)."""
    config, listen = _quickstart.file_server_config(
        args.root, args.listen, args.domain, args.browse, args.templates, args.access_log, args.debug,
    )

    def started() -> None:
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")  # Go's log.Printf prefix
        print(f"{stamp} Caddy serving static files on {listen}", file=err, flush=True)

    return serve(serving(config), err, started)


def _piped_stdin() -> str | None:
    """What a pipe on stdin holds (``respond``'s body); None when stdin is not a pipe."""
    try:
        piped = stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return None
    return sys.stdin.read() if piped else None


def _address_text(address: Any) -> str:
    """A bound address as Go's ``net.Addr.String()`` writes it."""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or port is None:
        return str(getattr(address, "name", address))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cmd_respond(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Hard-coded responses for development (Caddy's ``respond``); prints each listener's address."""
    if len(args.argument) > 1:
        raise ConfigError("too many unflagged arguments")
    argument = args.argument[0] if args.argument else None
    needs_stdin = not args.body and not (argument and _quickstart._go_atoi(argument) is None)
    config = _quickstart.respond_config(
        args.listen, args.status, args.body, args.header or (), argument, args.access_log, args.debug,
        _piped_stdin() if needs_stdin else None,
    )
    service = serving(config)

    def started() -> None:
        for addresses in service.boundAddresses().values():
            for address in addresses:
                print(f"Server address: {_address_text(address)}", file=out, flush=True)

    return serve(service, err, started)


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
    validate.add_argument("--config", "-c", default="", help="config file (default: ./Caddyfile if there is one)")
    validate.add_argument("--adapter", "-a", default=None)
    validate.set_defaults(func=cmd_validate)

    fmt = commands.add_parser("fmt", help="format a Caddyfile as Caddy does")
    fmt.add_argument("path", nargs="?", default="Caddyfile", help="file to format, or - for stdin")
    fmt.add_argument("--overwrite", "-w", action="store_true", help="rewrite the file in place")
    fmt.set_defaults(func=cmd_fmt)

    run = commands.add_parser("run", help="serve a config in the foreground")
    run.add_argument("--config", "-c", default="", help="config file (default: ./Caddyfile if there is one)")
    run.add_argument("--adapter", "-a", default=None, help="caddyfile or json")
    run.add_argument("--resume", action="store_true", help="load the autosaved config instead of --config")
    run.add_argument("--workers", default=None,
                     help="worker processes: a number or auto (default: the config's workers, else 1)")
    run.add_argument("--pingback", default="", help="echo stdin to this address once started (used by start)")
    run.set_defaults(func=cmd_run)

    start = commands.add_parser("start", help="start the server in the background, once it listens")
    start.add_argument("--config", "-c", default="", help="config file (default: ./Caddyfile if there is one)")
    start.add_argument("--adapter", "-a", default=None, help="caddyfile or json")
    start.set_defaults(func=cmd_start)

    stop = commands.add_parser("stop", help="stop a running server through its admin API")
    stop.add_argument("--config", "-c", default="", help="config file naming the admin address")
    stop.add_argument("--adapter", "-a", default=None, help="caddyfile or json")
    stop.add_argument("--address", default="", help="the admin API address (default: from the config)")
    stop.set_defaults(func=cmd_stop)

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

    modules = commands.add_parser("list-modules", help="list the installed Caddy modules")
    modules.add_argument("--packages", action="store_true", help="print the Python package of each module")
    modules.add_argument("--versions", action="store_true", help="print the version of each module")
    modules.add_argument("--skip-standard", "-s", action="store_true", help="leave out txcaddy's own modules")
    modules.set_defaults(func=cmd_list_modules)

    environ = commands.add_parser("environ", help="print the environment")
    environ.set_defaults(func=cmd_environ)

    hash_password = commands.add_parser("hash-password", help="hash a password for basicauth")
    hash_password.add_argument("--plaintext", "-p", default="", help="the password (default: ask, or read stdin)")
    hash_password.add_argument("--algorithm", "-a", default="bcrypt", help="bcrypt or scrypt")
    hash_password.add_argument("--salt", "-s", default="", help="the salt (scrypt)")
    hash_password.set_defaults(func=cmd_hash_password)

    proxy = commands.add_parser("reverse-proxy", help="a quick reverse proxy, without a config file")
    proxy.add_argument("--from", "-f", dest="from_", default="localhost", help="the address to proxy from")
    proxy.add_argument("--to", "-t", action="append", help="an upstream to proxy to (repeatable)")
    proxy.add_argument("--change-host-header", "-c", action="store_true", help="send the upstream's host")
    proxy.add_argument("--insecure", action="store_true", help="skip verifying HTTPS upstreams' certificates")
    proxy.add_argument("--internal-certs", "-i", action="store_true", help="use the internal CA for --from")
    proxy.add_argument("--debug", "-v", action="store_true", help="log at DEBUG level")
    proxy.set_defaults(func=cmd_reverse_proxy)

    files = commands.add_parser("file-server", help="a quick static file server, without a config file")
    files.add_argument("--domain", "-d", default="", help="the domain name to serve")
    files.add_argument("--root", "-r", default="", help="the directory to serve (default: current)")
    files.add_argument("--listen", "-l", default="", help="the address to listen on (default :80, or :443)")
    files.add_argument("--browse", "-b", action="store_true", help="list directories")
    files.add_argument("--templates", "-t", action="store_true", help="render templates")
    files.add_argument("--access-log", action="store_true", help="log each request")
    files.add_argument("--debug", "-v", action="store_true", help="log at DEBUG level")
    files.set_defaults(func=cmd_file_server)

    respond = commands.add_parser("respond", help="hard-coded HTTP responses for development and testing")
    respond.add_argument("argument", nargs="*", help="a 3-digit status code, or the body")
    respond.add_argument("--listen", "-l", default=":0", help="the address to listen on (default :0)")
    respond.add_argument("--status", "-s", type=int, default=None, help="the status code (default 200)")
    respond.add_argument("--body", "-b", default="", help="the body ({{.N}}, {{.Port}}, {{.Address}} filled in)")
    respond.add_argument("--header", "-H", action="append", help='a response header, "Field: value" (repeatable)')
    respond.add_argument("--access-log", action="store_true", help="log each request")
    respond.add_argument("--debug", "-v", action="store_true", help="log at DEBUG level")
    respond.set_defaults(func=cmd_respond)
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
