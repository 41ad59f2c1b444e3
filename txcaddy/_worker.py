"""A worker process (``workers N``): ``python -m txcaddy._worker``, started by the supervisor.

The supervisor (``txcaddy._workers.WorkerPool``) passes the listening sockets as fds from
``FIRST_SOCKET_FD`` on, writes control messages to our stdin and reads ours from
``CONTROL_FD`` (``txcaddy._control``).  The first message is the config: we build a
``CaddyService`` in ``WorkerMode`` (it adopts the sockets, runs no active health check,
obtains no managed certificate, hands its log entries to the supervisor), start it, and say
``ready`` once its certificates are loaded from storage.  Then we apply health marks and
reload certificates when told, and on ``stop`` (or SIGTERM, or the supervisor gone: stdin
closed) stop accepting, drain within the grace period and exit.

SIGINT is ignored: Ctrl-C in a terminal reaches the whole process group, and the
supervisor is the one that decides how its workers stop.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, cast

from twisted.internet.protocol import Protocol
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogBeginner
from twisted.python.failure import Failure

from txcaddy import _systemd
from txcaddy._control import LineDecoder, encode_message, wire_fields
from txcaddy._process import freeze_startup_objects, tune_allocator
from txcaddy._reactor import default_reactor
from txcaddy._workers import CONTROL_FD, WORKER_ENV

__all__ = ["WorkerControl", "main"]


class WorkerControl(Protocol):
    """The worker's end of the control channel, and the service it runs."""

    log = Logger(namespace="txcaddy.worker")

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.decoder = LineDecoder()
        self.service: Any = None
        self.slot = os.environ.get(WORKER_ENV, "?")
        self._stopping = False
        self._sending = False
        self.exit_code = 0

    # -- to the supervisor -----------------------------------------------------------------

    def send(self, kind: str, **fields: Any) -> None:
        if self.transport is None or self._sending:
            return
        self._sending = True  # an error while writing must not log itself forever
        try:
            self.transport.write(encode_message(kind, **fields))
        finally:
            self._sending = False

    def send_log(self, logger: str, level: str, message: str, fields: list[tuple[str, Any]], when: float) -> None:
        self.send("log", logger=logger, level=level, message=message, fields=wire_fields(fields), time=when)

    def observe(self, event: dict[str, Any]) -> None:
        """A ``twisted.logger`` event, sent as text for the supervisor's log."""
        text = formatEvent(event)
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            text += "\n" + failure.getTraceback()
        level = event.get("log_level")
        self.send("event", namespace=event.get("log_namespace", ""), level=getattr(level, "name", "info"),
                  text=text)

    # -- from the supervisor ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        for message in self.decoder.feed(data):
            self.handle(message)

    def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "config":
            try:
                self.serve(message)
            except Exception:  # noqa: BLE001 - reported to the supervisor, then exit 1
                self.observe({"log_failure": Failure(), "log_format": "worker {slot} cannot serve",
                              "slot": self.slot, "log_namespace": "txcaddy.worker", "log_level": LogLevel.error})
                self.exit_code = 1
                self.stop()
        elif kind == "health":
            self.mark(str(message["address"]), bool(message["healthy"]))
        elif kind == "certificates":
            manager = self.service.tls.manager if self.service is not None and self.service.tls else None
            if manager is not None:
                manager.reload_names([str(n) for n in message.get("names") or []])
        elif kind == "stop":
            self.stop()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment] # noqa: N802
        self.stop()  # the supervisor is gone

    def mark(self, address: str, healthy: bool) -> None:
        """The supervisor's active health check verdict for one upstream address."""
        from txcaddy.reverseproxy.hosts import HostRegistry

        if self.service is None:
            return
        host = self.service.runtime.get(HostRegistry).get(address)
        if host is not None and host.unhealthy == healthy:
            host.unhealthy = not healthy
            self.log.info("upstream {address} marked {state} by the supervisor", address=address,
                          state="up" if healthy else "down")

    def serve(self, message: dict[str, Any]) -> None:
        from txcaddy.service import CaddyService, WorkerMode

        sockets = {}
        for endpoint, fd in (message.get("listeners") or {}).items():
            found = _systemd.describe(int(fd))
            if found is None:
                raise SystemExit(f"worker {self.slot}: fd {fd} for {endpoint} is not a socket")
            os.set_blocking(found.fd, False)
            sockets[endpoint] = found
        self.service = CaddyService(
            message["config"], reactor=self.reactor, fast_io=True, inherited=[],
            worker=WorkerMode(sockets, self.send_log),
        )
        for address, healthy in (message.get("marks") or {}).items():
            self.mark(address, healthy)
        self.service.startService()
        freeze_startup_objects()  # as ``txcaddy run`` does once its config is loaded
        manager = self.service.tls.manager if self.service.tls is not None else None
        if manager is not None and manager.running:
            manager.ready.addBoth(lambda _: self.send("ready"))
        else:
            self.send("ready")

    def stop(self) -> None:
        """Stop accepting, drain, exit (once)."""
        if self._stopping:
            return
        self._stopping = True
        if self.service is None or not self.service.running:
            self.reactor.callLater(0, self.reactor.stop)
            return
        d = self.service.stopService()
        d.addErrback(lambda f: self.observe({"log_failure": f, "log_format": "stopping", "log_level": LogLevel.error}))
        d.addBoth(lambda _: self.reactor.stop())


def main() -> int:
    from twisted.internet.stdio import StandardIO

    tune_allocator()
    reactor: Any = default_reactor()
    control = WorkerControl(reactor)
    cast(Any, StandardIO)(control, stdin=0, stdout=CONTROL_FD, reactor=reactor)
    globalLogBeginner.beginLoggingTo([cast(ILogObserver, control.observe)], redirectStandardIO=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: reactor.callFromThread(control.stop))
    reactor.run(installSignalHandlers=False)
    return control.exit_code


if __name__ == "__main__":
    sys.exit(main())
