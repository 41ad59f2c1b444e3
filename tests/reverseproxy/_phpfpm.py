"""A real ``php-fpm8.2`` for the FastCGI tests: two pools (loopback TCP and a unix socket)
with a generated config, the test scripts in a document root, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest

from txcaddy._reactor import default_reactor

PHP_FPM = shutil.which("php-fpm8.2") or (
    "/usr/sbin/php-fpm8.2" if os.path.exists("/usr/sbin/php-fpm8.2") else None)

SCRIPTS = {
    "index.php": """<?php
if (isset($_GET['dump'])) {
    $vars = $_SERVER;
    unset($vars['REQUEST_TIME'], $vars['REQUEST_TIME_FLOAT'], $vars['argv'], $vars['argc']);
    echo json_encode(['server' => $vars]);
    exit;
}
header('X-Script: index');
echo "index REQUEST_URI=" . $_SERVER['REQUEST_URI'] . " SCRIPT_NAME=" . $_SERVER['SCRIPT_NAME'];
""",
    "env.php": """<?php
header('Content-Type: application/json');
$vars = $_SERVER;
unset($vars['REQUEST_TIME'], $vars['REQUEST_TIME_FLOAT'], $vars['argv'], $vars['argc']);
echo json_encode(['server' => $vars, 'get' => $_GET, 'post' => $_POST]);
""",
    "upload.php": """<?php
$in = fopen('php://input', 'rb');
$ctx = hash_init('sha256');
$n = 0;
while (!feof($in)) { $chunk = fread($in, 1 << 16); $n += strlen($chunk); hash_update($ctx, $chunk); }
echo $n . " " . hash_final($ctx);
""",
    "stream.php": """<?php
// Sends one chunk, then waits (bounded) until the test says it has seen it.
echo "first\\n";
flush();
$go = __DIR__ . '/go';
for ($i = 0; $i < 1000 && !file_exists($go); $i++) { usleep(10000); }
echo file_exists($go) ? "second\\n" : "timeout\\n";
""",
    "fail.php": """<?php
http_response_code(500);
error_log("boom from php");
echo "it failed";
""",
    "redirect.php": """<?php
header('Location: /elsewhere');
""",
}
SUBDIR_INDEX = """<?php
echo "sub index " . $_SERVER['SCRIPT_NAME'];
"""
STATIC = "plain text file\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Watcher(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()
        self.output = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class PHPFPM:
    """One php-fpm master with a TCP pool (``tcp_dial``) and a unix-socket pool (``unix_dial``)."""

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)
        self.root = os.path.join(self.base, "www")
        self.port = _free_port()
        # A unix socket path must stay under ~108 bytes: not in the trial temp tree.
        self.socket_dir = tempfile.mkdtemp(prefix="fcgi-", dir="/tmp")
        self.socket_path = os.path.join(self.socket_dir, "fpm.sock")
        self.tcp_dial = f"127.0.0.1:{self.port}"
        self.unix_dial = f"unix/{self.socket_path}"
        self.watcher = _Watcher()
        self.process: Any = None

    def write_files(self) -> None:
        os.makedirs(os.path.join(self.root, "sub"), exist_ok=True)
        for name, text in SCRIPTS.items():
            with open(os.path.join(self.root, name), "w") as f:
                f.write(text)
        with open(os.path.join(self.root, "sub", "index.php"), "w") as f:
            f.write(SUBDIR_INDEX)
        with open(os.path.join(self.root, "static.txt"), "w") as f:
            f.write(STATIC)
        root = os.geteuid() == 0
        user = "user = root\ngroup = root\n" if root else ""
        pool = (f"{user}pm = static\npm.max_children = 2\nclear_env = no\n"
                "php_admin_value[post_max_size] = 100M\n"
                "php_admin_value[output_buffering] = 0\n"
                "php_admin_value[display_errors] = stderr\n"
                "catch_workers_output = no\n")
        conf = (f"[global]\npid = {self.base}/fpm.pid\nerror_log = {self.base}/fpm.log\n"
                f"daemonize = no\n"
                f"[tcp]\nlisten = 127.0.0.1:{self.port}\n{pool}"
                f"[unix]\nlisten = {self.socket_path}\nlisten.mode = 0666\n{pool}")
        with open(os.path.join(self.base, "fpm.conf"), "w") as f:
            f.write(conf)

    @inlineCallbacks
    def start(self) -> Any:
        """Start php-fpm and wait until both pools accept connections (up to 10 s)."""
        if PHP_FPM is None:
            raise SkipTest("php-fpm8.2 is not installed (apt-get install php8.2-fpm)")
        os.makedirs(self.base, exist_ok=True)
        self.write_files()
        args = [PHP_FPM, "-F", "-n", "-y", os.path.join(self.base, "fpm.conf"), "-p", self.base]
        if os.geteuid() == 0:
            args.append("-R")
        reactor: Any = default_reactor()
        self.process = reactor.spawnProcess(self.watcher, PHP_FPM, args, env=dict(os.environ))
        for _ in range(200):
            if self._accepts():
                return
            yield deferLater(reactor, 0.05, lambda: None)
        raise RuntimeError(f"php-fpm did not start: {self.watcher.output!r} {self.log()}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.socket_path)
            return True
        except OSError:
            return False

    def log(self) -> str:
        try:
            with open(os.path.join(self.base, "fpm.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> Deferred[None]:
        """SIGTERM by PID; fires when the master has exited (and its socket folder is gone)."""
        if self.process is not None and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGTERM)
            ended = self.watcher.ended
        else:
            ended = Deferred()
            ended.callback(None)
        return ended.addBoth(lambda _: shutil.rmtree(self.socket_dir, ignore_errors=True))
