"""Put a root certificate into this machine's trust stores (and take it out again).

This is what Caddy does with its local CA's root at start and in ``caddy trust`` /
``caddy untrust``, through smallstep's truststore v0.12.0 on Linux (``truststore.go``,
``truststore_linux.go``, ``truststore_nss.go``); the behaviour below is that library's:

* **system**: the first existing directory of ``SYSTEM_TRUST_CANDIDATES`` (Fedora's
  anchors, Debian's ``/usr/local/share/ca-certificates``, ...) decides the file name and the
  command that rebuilds the bundle; that command must be on ``PATH`` or the system store is
  not supported.  The file is ``<CN>_<serial>.crt`` (spaces of ``"<CN> <serial>"`` made
  ``_``), written with ``tee`` and removed with ``rm -f``.
* **nss** (Firefox, Chromium): the databases ``$HOME/.mozilla/firefox/*`` and
  ``$HOME/.pki/nssdb`` that exist (``cert9.db`` is ``sql:``, ``cert8.db`` is ``dbm:``);
  ``certutil -A -t C,, -n "<CN> <serial>"`` adds the root, ``certutil -V -u L`` checks it,
  ``certutil -D`` removes it.  No ``certutil`` or no database is a warning, not a failure.
* NSS first, then the system store; a store that fails stops the ones after it.

Where txcaddy differs, on purpose:

* Without root, ``sudo --`` runs the system commands only if sudo exists; without either we
  fail with a message saying so.  smallstep puts sudo in front whenever it exists (even for
  root) and otherwise runs the command as the current user, which then fails obscurely.
* The system store is skipped when the root already verifies against the system roots (the
  bundle Go's ``crypto/x509`` reads, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` included).  Caddy's
  ``installRoot`` skips *every* store then, so Firefox and Chromium never learn the root.
* ``TRUST_STORES`` (a comma list of ``system``, ``nss``) picks the stores, as mkcert's
  variable of that name does; smallstep has no such switch.  Java's keystore (Caddy asks
  for it) is not supported: ``java`` is warned about and skipped.

Every command goes through the ``run`` callable (``subprocess.run``'s signature), so tests
record commands instead of changing the machine; the module's path constants can be pointed
at a temporary directory.  The functions block (they run commands): servers call them in a
thread.
"""

from __future__ import annotations

import base64
import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from twisted.logger import Logger

__all__ = [
    "CERTUTIL_INSTALL_HELP",
    "COMMAND_TIMEOUT",
    "NSS",
    "STORES",
    "SYSTEM",
    "SYSTEM_ROOT_DIRECTORIES",
    "SYSTEM_ROOT_FILES",
    "SYSTEM_TRUST_CANDIDATES",
    "Runner",
    "SystemTrustLocation",
    "TrustStoreError",
    "install",
    "is_installed",
    "nss_databases",
    "read_certificate",
    "selected_stores",
    "system_trusts",
    "uninstall",
    "unique_name",
]

log = Logger()

SYSTEM = "system"
NSS = "nss"
STORES = (NSS, SYSTEM)
"""The stores txcaddy knows, in the order they are changed (smallstep's: others, then system)."""

COMMAND_TIMEOUT = 300.0
"""Seconds any one command may take (sudo may wait for a password)."""

CERTUTIL_INSTALL_HELP = 'apt install libnss3-tools" or "yum install nss-tools'


@dataclass(frozen=True)
class SystemTrustLocation:
    """Where one Linux family keeps extra roots, and what rebuilds its bundle."""

    directory: str
    extension: str
    command: tuple[str, ...]


SYSTEM_TRUST_CANDIDATES: list[SystemTrustLocation] = [
    SystemTrustLocation("/etc/pki/ca-trust/source/anchors", ".pem", ("update-ca-trust", "extract")),
    SystemTrustLocation("/usr/local/share/ca-certificates", ".crt", ("update-ca-certificates",)),
    SystemTrustLocation("/usr/shared/pki/trust/anchors", ".crt", ("update-ca-certificates",)),
    SystemTrustLocation("/etc/ca-certificates/trust-source/anchors", ".crt", ("trust", "extract-compat")),
    SystemTrustLocation("/etc/ssl/certs", ".crt", ("trust", "extract-compat")),
]
"""smallstep's candidates in order; the first directory that exists is the system store."""

SYSTEM_ROOT_FILES: list[str] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
]
"""Go's Linux root bundles (``crypto/x509`` ``root_linux.go``): the first readable one counts."""

SYSTEM_ROOT_DIRECTORIES: list[str] = ["/etc/ssl/certs", "/etc/pki/tls/certs"]
"""Go's Linux root directories: every file in them counts."""

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]
"""``subprocess.run``: called as ``run(argv, input=, capture_output=True, env=, timeout=, check=False)``."""


class TrustStoreError(Exception):
    """A store could not be changed.

    @ivar changed: the locations changed before the failure (they stay changed).
    """

    def __init__(self, message: str, changed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.changed = list(changed)


# -- names and certificates -----------------------------------------------------------------


def unique_name(certificate: x509.Certificate) -> str:
    """smallstep's ``uniqueName``: ``"<CN> <serial>"`` (the NSS nickname, and the file name
    once spaces are ``_``)."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    if not common_name:
        common_name = "Truststore Development CA"
    return f"{common_name} {certificate.serial_number}"


def read_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM (the first block) or DER bytes, as smallstep's ``ReadCertificate``."""
    if data.startswith(b"-----BEGIN "):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)-----END CERTIFICATE-----", re.S)


def _ders(data: bytes) -> list[bytes]:
    out = []
    for match in _PEM_BLOCK.finditer(data):
        try:
            out.append(base64.b64decode(b"".join(match.group(1).split())))
        except ValueError:
            continue
    return out


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def system_trusts(certificate: x509.Certificate, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the system roots (as Go reads them) hold ``certificate``: for a self-signed root
    that is what "verifies against the system roots" (Caddy's ``trusted``) comes down to."""
    der = certificate.public_bytes(Encoding.DER)
    files = [environ["SSL_CERT_FILE"]] if environ.get("SSL_CERT_FILE") else SYSTEM_ROOT_FILES
    for path in files:
        data = _read(path)
        if data is not None:
            if der in _ders(data):
                return True
            break
    directories = environ["SSL_CERT_DIR"].split(":") if environ.get("SSL_CERT_DIR") else SYSTEM_ROOT_DIRECTORIES
    for directory in directories:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            data = _read(os.path.join(directory, name))
            if data is not None and der in _ders(data):
                return True
    return False


# -- choosing stores -----------------------------------------------------------------------


def selected_stores(stores: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The stores to change: ``stores`` if given, else ``TRUST_STORES``, else all; in
    ``STORES`` order.  ``java`` and unknown names are warned about and left out."""
    if stores is None:
        variable = environ.get("TRUST_STORES", "")
        if not variable:
            return list(STORES)
        stores = variable.split(",")
    wanted = set()
    for name in (s.strip() for s in stores):
        if name in STORES:
            wanted.add(name)
        elif name == "java":
            log.warn("the Java trust store is not supported by txcaddy; skipping it")
        elif name:
            log.warn("unknown trust store {store!r} (known: nss, system); skipping it", store=name)
    chosen = [name for name in STORES if name in wanted]
    if not chosen:
        log.warn("no trust store selected (TRUST_STORES={value!r}); nothing to do", value=",".join(stores))
    return chosen


# -- running commands ----------------------------------------------------------------------


@dataclass
class _Context:
    environ: Mapping[str, str]
    run: Runner
    as_root: bool

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.environ.get("PATH", os.defpath))

    def execute(self, argv: Sequence[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv``; a missing program or a timeout is a ``TrustStoreError``."""
        name = os.path.basename(argv[0])
        try:
            return self.run(
                list(argv), input=data, capture_output=True, env=dict(self.environ),
                timeout=COMMAND_TIMEOUT, check=False,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise TrustStoreError(f"failed to execute {name}: {e}") from None

    def check(self, argv: Sequence[str], data: bytes | None = None) -> None:
        """Run ``argv``; a non-zero exit is a ``TrustStoreError`` with the command's output."""
        result = self.execute(argv, data)
        if result.returncode != 0:
            raise TrustStoreError(_command_failed(argv, result))

    def privileged(self, *argv: str) -> list[str]:
        """``argv`` as root: as is when we are root, else behind ``sudo --``."""
        if self.as_root:
            return list(argv)
        if self.which("sudo") is None:
            raise TrustStoreError(
                "changing the system trust store needs root: run this as root, install sudo, "
                "or choose other stores with TRUST_STORES=nss"
            )
        return ["sudo", "--", *argv]


def _command_failed(argv: Sequence[str], result: subprocess.CompletedProcess[bytes]) -> str:
    name = os.path.basename(argv[0])
    if name == "sudo" and len(argv) > 2:
        name = os.path.basename(argv[2])
    output = b"".join(x for x in (result.stdout, result.stderr) if x).decode("utf-8", "replace").strip()
    message = f"failed to execute {name}: exit status {result.returncode}"
    return f"{message}: {output}" if output else message


def _context(environ: Mapping[str, str], run: Runner, as_root: bool | None) -> _Context:
    if as_root is None:
        as_root = os.geteuid() == 0
    return _Context(environ, run, as_root)


# -- the system store ----------------------------------------------------------------------


def _system_location(context: _Context) -> tuple[SystemTrustLocation, str] | None:
    """The system store and the absolute path of its command, or None (not supported)."""
    for candidate in SYSTEM_TRUST_CANDIDATES:
        if os.path.exists(candidate.directory):
            command = context.which(candidate.command[0])
            return None if command is None else (candidate, command)
    return None


def _system_filename(location: SystemTrustLocation, certificate: x509.Certificate) -> str:
    return os.path.join(location.directory, unique_name(certificate).replace(" ", "_") + location.extension)


def _install_system(certificate: x509.Certificate, context: _Context) -> list[str]:
    if system_trusts(certificate, context.environ):
        log.info("root certificate is already trusted by the system")
        return []
    found = _system_location(context)
    if found is None:
        raise TrustStoreError(
            "install is not supported on this system: no system trust store with its update command "
            "(on Debian: apt install ca-certificates)"
        )
    location, command = found
    filename = _system_filename(location, certificate)
    context.check(context.privileged("tee", filename), certificate.public_bytes(Encoding.PEM))
    context.check(context.privileged(command, *location.command[1:]))
    log.info("certificate installed properly in linux trusts ({filename})", filename=filename)
    return [filename]


def _uninstall_system(certificate: x509.Certificate, context: _Context) -> list[str]:
    found = _system_location(context)
    if found is None:
        raise TrustStoreError("uninstall is not supported on this system: no system trust store with its update command")
    location, command = found
    filename = _system_filename(location, certificate)
    existed = os.path.exists(filename)
    context.check(context.privileged("rm", "-f", filename))
    context.check(context.privileged(command, *location.command[1:]))
    log.info("certificate uninstalled properly from linux trusts ({filename})", filename=filename)
    return [filename] if existed else []


# -- NSS -------------------------------------------------------------------------------------


def nss_databases(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The NSS databases of ``$HOME`` as certutil names them: Firefox profiles, then the
    shared ``~/.pki/nssdb`` (Chromium's)."""
    home = environ.get("HOME", "")
    if not home:
        return []
    profiles = sorted(glob.glob(os.path.join(glob.escape(home), ".mozilla", "firefox", "*")))
    profiles.append(os.path.join(home, ".pki", "nssdb"))
    out = []
    for profile in profiles:
        if not os.path.isdir(profile):
            continue
        if os.path.exists(os.path.join(profile, "cert9.db")):
            out.append("sql:" + profile)
        elif os.path.exists(os.path.join(profile, "cert8.db")):
            out.append("dbm:" + profile)
    return out


def _certutil(context: _Context) -> str | None:
    certutil = context.which("certutil")
    if certutil is None:
        log.warn(
            '"certutil" is not available, install "certutil" with "{help}" and try again; '
            "the NSS trust store (Firefox, Chromium) is skipped", help=CERTUTIL_INSTALL_HELP,
        )
    return certutil


def _nss_has(certutil: str, database: str, name: str, context: _Context) -> bool:
    return context.execute([certutil, "-V", "-d", database, "-u", "L", "-n", name]).returncode == 0


def _install_nss(certificate: x509.Certificate, context: _Context) -> list[str]:
    certutil = _certutil(context)
    if certutil is None:
        return []
    databases = nss_databases(context.environ)
    if not databases:
        log.warn("no NSS security databases found (Firefox profiles, ~/.pki/nssdb); the NSS trust store is skipped")
        return []
    name = unique_name(certificate)
    if all(_nss_has(certutil, database, name, context) for database in databases):
        log.info("root certificate is already in the NSS security databases")
        return []
    descriptor, path = tempfile.mkstemp(prefix="truststore.", suffix=".pem")
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(certificate.public_bytes(Encoding.PEM))
        for database in databases:
            argv = [certutil, "-A", "-d", database, "-t", "C,,", "-n", name, "-i", path]
            result = context.execute(argv)
            if result.returncode != 0:
                log.warn("{error}", error=_command_failed(argv, result))
    finally:
        os.unlink(path)
    if not all(_nss_has(certutil, database, name, context) for database in databases):
        raise TrustStoreError("certificate cannot be installed in NSS security databases")
    log.info("certificate installed properly in NSS security databases ({databases})", databases=", ".join(databases))
    return databases


def _uninstall_nss(certificate: x509.Certificate, context: _Context) -> list[str]:
    certutil = _certutil(context)
    if certutil is None:
        return []
    name = unique_name(certificate)
    removed = []
    for database in nss_databases(context.environ):
        if not _nss_has(certutil, database, name, context):
            continue
        context.check([certutil, "-D", "-d", database, "-n", name])
        removed.append(database)
    if removed:
        log.info("certificate uninstalled properly from NSS security databases ({databases})",
                 databases=", ".join(removed))
    return removed


# -- the public functions ------------------------------------------------------------------

_INSTALL = {NSS: _install_nss, SYSTEM: _install_system}
_UNINSTALL = {NSS: _uninstall_nss, SYSTEM: _uninstall_system}


def _each_store(
    table: Mapping[str, Callable[[x509.Certificate, _Context], list[str]]],
    certificate: x509.Certificate,
    stores: Sequence[str] | None,
    environ: Mapping[str, str],
    run: Runner,
    as_root: bool | None,
) -> list[str]:
    context = _context(environ, run, as_root)
    changed: list[str] = []
    for store in selected_stores(stores, environ):
        try:
            changed += table[store](certificate, context)
        except TrustStoreError as e:
            raise TrustStoreError(str(e), changed) from None
    return changed


def install(
    certificate: x509.Certificate,
    *,
    stores: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    run: Runner = subprocess.run,
    as_root: bool | None = None,
) -> list[str]:
    """Trust ``certificate`` in the selected stores; returns what was changed (NSS databases
    as ``sql:<dir>``, the system store's file).  Blocks; raises ``TrustStoreError``.

    ``as_root`` (default: whether the effective user id is 0) says whether the system store
    can be written without sudo.
    """
    return _each_store(_INSTALL, certificate, stores, environ, run, as_root)


def uninstall(
    certificate: x509.Certificate,
    *,
    stores: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    run: Runner = subprocess.run,
    as_root: bool | None = None,
) -> list[str]:
    """Stop trusting ``certificate`` in the selected stores; returns what was changed.  The
    NSS databases keep nothing; the system store's file is removed and the bundle rebuilt."""
    return _each_store(_UNINSTALL, certificate, stores, environ, run, as_root)


def is_installed(
    certificate: x509.Certificate,
    *,
    stores: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    run: Runner = subprocess.run,
) -> bool:
    """Whether every selected store that exists here trusts ``certificate`` (the system roots
    hold it; each NSS database verifies it as a CA), and at least one does."""
    context = _context(environ, run, False)
    answers = []
    for store in selected_stores(stores, environ):
        if store == SYSTEM:
            answers.append(system_trusts(certificate, environ))
            continue
        certutil = context.which("certutil")
        databases = nss_databases(environ)
        if certutil is None or not databases:
            continue
        name = unique_name(certificate)
        answers.append(all(_nss_has(certutil, database, name, context) for database in databases))
    return bool(answers) and all(answers)
