"""What is measured against: the targets (proxies under test, or none).

A target is a command template plus an optional config template, filled in
with the placeholders of ``Target.values`` (``{port}``, ``{backend}``,
``{config}``, ...).  Built in: ``txcaddy`` (this checkout, run from source),
``caddy``, ``nginx`` and ``direct`` (no proxy: the backend alone).  Another
txcaddy checkout is named ``txcaddy@/path/to/checkout`` (optionally
``label=txcaddy@/path``), and more targets come from a JSON file
(``--targets-file``, format in bench/README.md).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from typing import Any

from bench.backend import wait_until_serving
from bench.procs import HOST, ManagedProcess
from bench.rendering import TEMPLATES, render, render_file
from bench.scenarios import Scenario

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(REPO_ROOT, "bench")

TXCADDY_CMD = "{python} -m txcaddy.cli run --config {config} --adapter caddyfile"


@dataclass(frozen=True)
class TargetSpec:
    """How to start one target; ``cmd`` None means no proxy (``direct``)."""

    name: str
    cmd: str | None = None
    #: Config template; rendered into the target's work dir and passed as {config}.
    config: str | None = None
    #: Config template used instead of ``config`` when a scenario needs the TLS
    #: listener: it serves http://:{port} and https://:{tls_port} with {tls_cert}/{tls_key}.
    tls_config: str | None = None
    #: Config template used when a scenario speaks HTTP/2: as ``tls_config``, with
    #: h2 (ALPN) on the TLS listener and h2c (prior knowledge) on the cleartext one.
    h2_config: str | None = None
    #: Config template used when a scenario is a gRPC call: as ``h2_config``, with the
    #: upstream over h2c to the backend's gRPC listener ({backend_grpc}).
    grpc_config: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Warm-up seconds before a scenario's first round (None: the --warmup option).
    warmup: float | None = None
    start_timeout: float = 30.0
    #: The txcaddy source tree this target runs, recorded in the results.
    checkout: str | None = None

    @property
    def direct(self) -> bool:
        return self.cmd is None


def txcaddy_spec(name: str, checkout: str) -> TargetSpec:
    """txcaddy from a source tree (no install): PYTHONPATH points at the checkout."""
    checkout = os.path.abspath(os.path.expanduser(checkout))
    if not os.path.isfile(os.path.join(checkout, "txcaddy", "cli.py")):
        raise ValueError(f"target {name}: {checkout} is not a txcaddy checkout "
                         "(no txcaddy/cli.py)")
    python_path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    return TargetSpec(name, cmd=TXCADDY_CMD, config=os.path.join(TEMPLATES, "Caddyfile"),
                      tls_config=os.path.join(TEMPLATES, "Caddyfile-tls"),
                      h2_config=os.path.join(TEMPLATES, "Caddyfile-h2"),
                      grpc_config=os.path.join(TEMPLATES, "Caddyfile-grpc"),
                      env={"PYTHONPATH": python_path}, checkout=checkout)


def builtin_specs() -> dict[str, TargetSpec]:
    """The targets every run knows: direct, txcaddy (this checkout), caddy, nginx."""
    return {
        "direct": TargetSpec("direct"),
        "txcaddy": txcaddy_spec("txcaddy", REPO_ROOT),
        "caddy": TargetSpec("caddy", cmd="caddy run --config {config} --adapter caddyfile",
                            config=os.path.join(TEMPLATES, "Caddyfile"),
                            tls_config=os.path.join(TEMPLATES, "Caddyfile-tls"),
                            h2_config=os.path.join(TEMPLATES, "Caddyfile-h2"),
                            grpc_config=os.path.join(TEMPLATES, "Caddyfile-grpc")),
        "nginx": TargetSpec("nginx", cmd="nginx -p {workdir} -c {config} -e {workdir}/error.log",
                            config=os.path.join(TEMPLATES, "nginx-proxy.conf")),
    }


def spec_from_json(name: str, data: dict[str, Any], base: str) -> TargetSpec:
    """A target of a targets file; relative paths are relative to the file (``base``)."""
    def path(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else os.path.join(base, os.path.expanduser(value))

    known = {"cmd", "config", "tls_config", "h2_config", "grpc_config", "env", "warmup", "start_timeout", "checkout"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"target {name}: unknown keys {sorted(unknown)}")
    if "checkout" in data:
        spec = txcaddy_spec(name, path("checkout") or "")
        if "cmd" in data:
            spec = replace(spec, cmd=data["cmd"])
    else:
        spec = TargetSpec(name, cmd=data.get("cmd"))
    env = dict(spec.env)
    env.update(data.get("env", {}))
    return replace(spec, config=path("config") or spec.config, tls_config=path("tls_config"),
                   h2_config=path("h2_config"), grpc_config=path("grpc_config"), env=env, warmup=data.get("warmup"),
                   start_timeout=float(data.get("start_timeout", spec.start_timeout)))


def load_targets_file(path: str) -> dict[str, TargetSpec]:
    """The targets of a JSON file: ``{"name": {"cmd": ..., "config": ...}, ...}``."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    return {name: spec_from_json(name, value, base) for name, value in data.items()
            if not name.startswith("_")}


def resolve(argument: str, known: dict[str, TargetSpec]) -> TargetSpec:
    """The target a ``-t`` argument names: ``name``, ``txcaddy@PATH`` or ``label=either``."""
    label, equals, what = argument.partition("=")
    if not equals:
        label, what = argument, argument
    if what in known:
        return replace(known[what], name=label)
    kind, at, checkout = what.partition("@")
    if at and kind == "txcaddy":
        return txcaddy_spec(label, checkout)
    raise KeyError(f"unknown target {what!r} (known: {', '.join(sorted(known))}, "
                   "txcaddy@/path/to/checkout)")


def checkout_revision(checkout: str) -> str | None:
    """``git describe`` of a checkout (with -dirty), for the results' meta line."""
    try:
        done = subprocess.run(["git", "-C", checkout, "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


class Target:
    """A running target: its process, its ports, its rendered config."""

    def __init__(self, spec: TargetSpec, workdir: str, port: int, tls_port: int,
                 backend_port: int, python: str, backend_h2c_port: int | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.dir = os.path.join(workdir, "target-" + "".join(
            c if c.isalnum() or c in "-." else "_" for c in spec.name))
        self.port = backend_port if spec.direct else port
        self.tls_port = tls_port
        self.process: ManagedProcess | None = None
        self.values: dict[str, object] = {
            "host": HOST, "port": port, "listen": f"{HOST}:{port}",
            "tls_port": tls_port, "tls_listen": f"{HOST}:{tls_port}",
            "backend": f"{HOST}:{backend_port}", "backend_host": HOST,
            "backend_port": backend_port, "backend_url": f"http://{HOST}:{backend_port}",
            "backend_grpc": f"{HOST}:{backend_h2c_port}" if backend_h2c_port else "",
            "workdir": self.dir, "python": python, "bench": BENCH_DIR,
            "checkout": spec.checkout or "",
        }
        self.values["tls_cert"], self.values["tls_key"] = tls_files(workdir)

    def url(self, scenario: Scenario) -> str:
        """Where the load client sends a scenario's requests for this target."""
        if scenario.protocol == "h2" and (self.spec.direct or not self.spec.h2_config):
            raise LookupError(f"target {self.name} has no HTTP/2 config (h2_config)")
        if scenario.grpc and (self.spec.direct or not self.spec.grpc_config):
            raise LookupError(f"target {self.name} has no gRPC config (grpc_config)")
        if scenario.scheme == "https":
            if self.spec.direct or not self.spec.tls_config:
                raise LookupError(f"target {self.name} has no TLS listener (tls_config)")
            return f"https://{HOST}:{self.tls_port}{scenario.path}"
        return f"http://{HOST}:{self.port}{scenario.path}"

    def command(self, tls: bool, h2: bool = False, grpc: bool = False) -> list[str]:
        """Render the config (into the work dir) and the command line.

        ``grpc`` (gRPC scenarios) picks ``grpc_config``; else ``h2`` (HTTP/2
        scenarios) ``h2_config``, both with the TLS listener too; else ``tls``
        picks ``tls_config``; else ``config``.
        """
        assert self.spec.cmd is not None
        values = dict(self.values)
        if grpc:
            template = self.spec.grpc_config
        elif h2:
            template = self.spec.h2_config
        else:
            template = self.spec.tls_config if tls else self.spec.config
        if template:
            out = os.path.join(self.dir, os.path.basename(template))
            values["config"] = values["caddyfile"] = render_file(template, values, out)
        return shlex.split(render(self.spec.cmd, values))

    def start(self, cpus: set[int] | None, tls: bool = False, h2: bool = False,
              grpc: bool = False) -> None:
        """Start the proxy (on ``cpus``) and wait until it proxies /small correctly."""
        if self.spec.direct:
            return
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        argv = self.command(tls, h2, grpc)
        if shutil.which(argv[0]) is None:
            raise RuntimeError(f"target {self.name}: {argv[0]} not found")
        env = {"HOME": self.dir, "XDG_CONFIG_HOME": self.dir, "XDG_DATA_HOME": self.dir}
        env.update(self.spec.env)
        self.process = ManagedProcess(self.name, argv, log_path=os.path.join(self.dir, "out.log"),
                                      cwd=self.dir, env=env, cpus=cpus)
        wait_until_serving(self.port, self.spec.start_timeout, self.process)

    def running(self) -> bool:
        return self.spec.direct or (self.process is not None and self.process.running())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def tls_files(workdir: str) -> tuple[str, str]:
    """Where a run's certificate and key are ({tls_cert}, {tls_key} of the targets)."""
    return os.path.join(workdir, "tls", "cert.pem"), os.path.join(workdir, "tls", "key.pem")


def make_tls_certificate(cert: str, key: str) -> None:
    """A throw-away self-signed certificate for 127.0.0.1 (for targets' TLS listeners)."""
    os.makedirs(os.path.dirname(cert), exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)  # nginx workers may run as another user
