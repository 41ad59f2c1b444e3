"""Worker processes on one machine (``workers N``): the supervisor's side.

Caddy has no such thing (Go serves every core from one process); a Twisted reactor runs on
one core, so txcaddy can start N worker processes that share the listening sockets.

The process ``twistd caddy``/``txcaddy run`` starts is the **supervisor**: its
``CaddyService`` loads the config as usual and binds every TCP listener in
``privilegedStartService`` (so ``--uid`` still works) but never accepts on them; it runs
the admin API, the certificate manager and the active health checks, once.  The
``WorkerPool`` here spawns N ``python -m txcaddy._worker`` processes with
``reactor.spawnProcess``, passing each listening socket as a child fd (one shared accept
queue per socket: a worker that dies leaves the queue to the others, where with
``SO_REUSEPORT`` its own queue and the connections in it would be lost; the opt-in
``TXCADDY_WORKER_SOCKETS=reuseport`` gives each slot its own socket instead, held by the
supervisor, see ``txcaddy._reuseport``).  It talks to them
over the control channel (``txcaddy._control``): the config at start, health marks and
"certificates stored" afterwards; they answer ``ready`` and send their log entries.

- A worker that dies is started again after a delay that doubles per quick death up to a
  cap (``Backoff``), on the reactor clock.
- ``roll`` (a reload) starts a new generation with the new config, waits until each worker
  is ready, then tells the old ones to stop (they drain within the grace period).  When
  the new generation cannot start, the old one keeps serving.
- ``stopService`` tells every worker to stop and fires once they are gone, killing what is
  left after the grace period and a margin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from txcaddy._control import LineDecoder, encode_message, unwire_fields
from txcaddy.errors import ConfigError

__all__ = ["Backoff", "WorkerPool", "WorkerProcess", "parse_workers", "CONTROL_FD", "FIRST_SOCKET_FD"]

log = Logger(namespace="txcaddy.workers")

CONTROL_FD = 3  # the worker writes control messages here; it reads them on stdin
FIRST_SOCKET_FD = 4  # the listening sockets follow, in the order of the config message
WORKER_ENV = "TXCADDY_WORKER"  # the worker's slot, 1..N (``{env.TXCADDY_WORKER}``)
READY_TIMEOUT = 60.0  # seconds a new worker has to report ready before it counts as failed
KILL_MARGIN = 5.0  # seconds past the grace period before a stopping worker is killed


def parse_workers(value: Any, where: str = "workers") -> int:
    """The number of workers ``value`` asks for: a positive integer or ``auto`` (one per
    CPU this process may run on)."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    if isinstance(value, bool):
        raise ConfigError(f"{where}: must be a positive integer or \"auto\", not {value!r}")
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: must be a positive integer or \"auto\", not {value!r}") from None
    if count < 1 or (isinstance(value, float) and value != count):
        raise ConfigError(f"{where}: must be a positive integer or \"auto\", not {value!r}")
    return count


class Backoff:
    """When to start a worker again after it died: ``first`` seconds, doubled after each
    quick death up to ``cap``; a worker that ran ``stable`` seconds starts from ``first``.
    """

    def __init__(self, clock: Any, first: float = 0.1, cap: float = 10.0, stable: float = 30.0) -> None:
        self.clock = clock
        self.first = first
        self.cap = cap
        self.stable = stable
        self.failures = 0
        self.started_at: float | None = None

    def started(self) -> None:
        """The worker was (re)started now."""
        self.started_at = self.clock.seconds()

    def next_delay(self) -> float:
        """The delay before the next start, the worker having just died."""
        if self.started_at is not None and self.clock.seconds() - self.started_at >= self.stable:
            self.failures = 0
        delay = min(self.cap, self.first * (2 ** self.failures))
        self.failures += 1
        return float(delay)


class WorkerProcess(ProcessProtocol):
    """One worker process: its control channel, its output, its readiness and its end.

    @ivar ready: fires when the worker reports ``ready``; fails when it ends first.
    @ivar ended: fires when the process is gone (its exit reason is ``reason``).
    """

    def __init__(self, pool: WorkerPool, slot: int, generation: int) -> None:
        self.pool = pool
        self.slot = slot
        self.generation = generation
        self.ready: Deferred[WorkerProcess] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.stopping = False
        self.gone = False
        self._decoder = LineDecoder()
        self._text = {1: b"", 2: b""}
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """The process id (kept once the process is reaped, when Twisted forgets it)."""
        pid = getattr(self.transport, "pid", None)
        if pid is not None:
            self._pid = pid
        return self._pid

    def send(self, kind: str, **fields: Any) -> None:
        if self.transport is not None and not self.gone:
            try:
                self.transport.writeToChild(0, encode_message(kind, **fields))  # type: ignore[attr-defined]
            except (OSError, KeyError):
                pass  # its stdin is closed: it is ending

    def stop(self) -> None:
        """Ask the worker to stop accepting, drain and exit."""
        if not self.stopping:
            self.stopping = True
            self.send("stop")

    def kill(self) -> None:
        if self.transport is not None and not self.gone:
            try:
                self.transport.signalProcess("KILL")
            except (ProcessExitedAlready, OSError):
                pass

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if childFD == CONTROL_FD:
            try:
                messages = self._decoder.feed(data)
            except ValueError as e:
                log.error("worker {slot}: bad control data: {error}", slot=self.slot, error=str(e))
                self.kill()
                return
            for message in messages:
                try:
                    self.pool._message(self, message)
                except Exception as e:  # noqa: BLE001 - one bad message must not close the channel
                    log.error("worker {slot}: bad {kind} control message: {error!r}", slot=self.slot,
                              kind=message.get("type"), error=e)
            return
        # stdout/stderr: what the worker printed before its logging was set up (tracebacks).
        buffered = self._text.get(childFD, b"") + data
        *lines, self._text[childFD] = buffered.split(b"\n")
        for line in lines:
            if line.strip():
                log.warn("worker {slot}: {line}", slot=self.slot, line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        self.gone = True
        self.reason = reason
        if not self.ready.called:
            self.ready.errback(Failure(RuntimeError(f"worker {self.slot} exited before it was ready")))
        self.ended.callback(None)
        self.pool._ended(self, reason)


def _spawn_environ(slot: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment: ours without systemd's variables (the supervisor alone talks
    to systemd), with its slot and with txcaddy importable as we import it."""
    import txcaddy

    env = {k: v for k, v in environ.items()
           if k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")}
    env[WORKER_ENV] = str(slot)
    root = os.path.dirname(os.path.dirname(os.path.abspath(txcaddy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [environ.get("PYTHONPATH", "")])])
    return env


class WorkerPool(Service):
    """N worker processes serving the supervisor's config on its listening sockets.

    ``sockets(slot)`` maps each listener's endpoint to the fd that worker ``slot`` accepts
    on: the same fd for every slot (one shared queue), or the slot's own ``SO_REUSEPORT``
    socket (``txcaddy._reuseport``), which a restarted worker of that slot adopts again.

    @ivar count: how many workers serve at once.
    @ivar workers: the current generation's workers by slot (1..count).
    @ivar retiring: workers of older generations still draining.
    """

    def __init__(
        self, reactor: Any, count: int, *,
        config: Callable[[], dict[str, Any]],
        sockets: Callable[[int], dict[str, int]],
        marks: Callable[[], dict[str, bool]],
        emit_log: Callable[[str, str, str, list[tuple[str, Any]], float], Any],
        grace_period: Callable[[], float],
        environ: Mapping[str, str] | None = None,
        argv: list[str] | None = None,
        before: Callable[[], Deferred[Any] | None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.count = count
        self._config = config
        self._sockets = sockets
        self._marks = marks
        self._emit_log = emit_log
        self._grace_period = grace_period
        self.environ = os.environ if environ is None else environ
        self.argv = argv or [sys.executable, "-m", "txcaddy._worker"]
        # What the first workers wait for (the supervisor's local CA, which they load).
        self._before = before
        self.generation = 0
        self.workers: dict[int, WorkerProcess] = {}
        self.retiring: list[WorkerProcess] = []
        self.backoff: dict[int, Backoff] = {}
        self._restarts: dict[int, Any] = {}
        self._stopping = False
        self.starting: list[WorkerProcess] = []  # a roll's new workers, not ready yet
        self.ready: Deferred[None] = Deferred()  # the first generation is ready

    # -- spawning --------------------------------------------------------------------------

    def _spawn(self, slot: int, generation: int, config: dict[str, Any], sockets: dict[str, int],
               restart: bool = False) -> WorkerProcess:
        worker = WorkerProcess(self, slot, generation)
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r", CONTROL_FD: "r"}
        listeners: dict[str, int] = {}
        for i, (endpoint, fd) in enumerate(sorted(sockets.items())):
            child_fds[FIRST_SOCKET_FD + i] = fd
            listeners[endpoint] = FIRST_SOCKET_FD + i
        self.reactor.spawnProcess(worker, self.argv[0], self.argv, env=_spawn_environ(slot, self.environ),
                                  childFDs=child_fds)
        worker.send("config", config=config, listeners=listeners, marks=self._marks(), slot=slot)
        self.backoff.setdefault(slot, Backoff(self.reactor)).started()
        log.info("worker {slot} {what} (pid {pid})", slot=slot, pid=worker.pid,
                 what="restarted" if restart else "started")
        return worker

    def _spawn_current(self, slot: int, restart: bool = False) -> WorkerProcess:
        worker = self._spawn(slot, self.generation, self._config(), self._sockets(slot), restart)
        self.workers[slot] = worker
        # A worker that hangs before ``ready`` would hold its slot (and ``ready``) forever:
        # killed, it is restarted with the backoff like any other death.
        timer = self.reactor.callLater(READY_TIMEOUT, self._too_slow, worker)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        worker.ready.addBoth(settled)
        return worker

    def _too_slow(self, worker: WorkerProcess) -> None:
        if not worker.ready.called and not worker.gone and not worker.stopping:
            log.error("worker {slot} (pid {pid}) not ready after {timeout}s; killing it",
                      slot=worker.slot, pid=worker.pid, timeout=READY_TIMEOUT)
            worker.kill()

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        super().startService()
        self._stopping = False
        self.generation += 1
        waiting = self._before() if self._before is not None else None
        if waiting is None:
            self._spawn_all()
            return

        def then(result: Any) -> Any:
            if self.running and not self.workers:
                self._spawn_all()
            return result

        waiting.addBoth(then)

    def _spawn_all(self) -> None:
        for slot in range(1, self.count + 1):
            self._spawn_current(slot).ready.addErrback(lambda _: None)  # a death is handled by ``_ended``

    def _check_ready(self) -> None:
        """``ready`` fires the first time every slot has a ready worker (restarts included)."""
        if self.ready.called or len(self.workers) < self.count:
            return
        if all(w.ready.called and not w.gone for w in self.workers.values()):
            log.info("{count} workers ready", count=self.count)
            self.ready.callback(None)

    # -- messages --------------------------------------------------------------------------

    def _message(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ready":
            if not worker.ready.called:
                log.info("worker {slot} ready (pid {pid})", slot=worker.slot, pid=worker.pid)
                worker.ready.callback(worker)
                self._check_ready()
        elif kind == "log":
            self._emit_log(str(message.get("logger", "")), str(message.get("level", "info")),
                           str(message.get("message", "")), unwire_fields(message.get("fields") or []),
                           float(message.get("time") or self.reactor.seconds()))
        elif kind == "event":
            level = LogLevel.levelWithName(str(message.get("level", "info")))
            Logger(namespace=str(message.get("namespace") or "txcaddy.worker")).emit(
                level, "[worker {worker}] {worker_text}", worker_text=message.get("text", ""), worker=worker.slot)
        else:
            log.warn("worker {slot}: unknown control message {kind}", slot=worker.slot, kind=kind)

    def broadcast(self, kind: str, **fields: Any) -> None:
        """Send a message to every live worker, the draining ones included."""
        for worker in [*self.workers.values(), *self.retiring, *self.starting]:
            worker.send(kind, **fields)

    # -- deaths and restarts ---------------------------------------------------------------

    def _ended(self, worker: WorkerProcess, reason: Failure) -> None:
        if worker in self.retiring:
            self.retiring.remove(worker)
            log.info("worker {slot} (pid {pid}) of generation {generation} stopped", slot=worker.slot,
                     pid=worker.pid, generation=worker.generation)
        if self.workers.get(worker.slot) is not worker:
            return
        if self._stopping or worker.stopping or not self.running:
            del self.workers[worker.slot]
            return
        self._schedule_restart(worker, reason)

    def _schedule_restart(self, worker: WorkerProcess, reason: Failure) -> None:
        delay = self.backoff[worker.slot].next_delay()
        log.warn("worker {slot} (pid {pid}) died ({reason}); starting it again in {delay}s",
                 slot=worker.slot, pid=worker.pid, reason=str(reason.value), delay=delay)
        self._restarts[worker.slot] = self.reactor.callLater(delay, self._restart, worker.slot, worker)

    def _restart(self, slot: int, dead: WorkerProcess) -> None:
        self._restarts.pop(slot, None)
        if self._stopping or self.workers.get(slot) is not dead:
            return
        self._spawn_current(slot, restart=True).ready.addErrback(lambda _: None)  # see startService

    # -- rolling ---------------------------------------------------------------------------

    @property
    def rolling(self) -> bool:
        """Whether a roll is under way (a reload must wait for it to end)."""
        return bool(self.starting)

    def roll(self) -> Deferred[None]:
        """Replace every worker by one serving the current config (``config()``): the new ones
        first, the old ones told to stop once all new ones are ready.  Fails, leaving the old
        workers serving, when a new worker ends or times out before it is ready."""
        if self.rolling:
            return fail(ConfigError("a reload is already in progress (the workers are rolling)"))
        self.generation += 1
        config = self._config()
        new = {slot: self._spawn(slot, self.generation, config, self._sockets(slot))
               for slot in range(1, self.count + 1)}
        self.starting = list(new.values())
        waiting = [w.ready for w in new.values()]
        done: Deferred[None] = Deferred()
        def too_slow() -> None:
            for worker in new.values():
                if not worker.ready.called:
                    worker.kill()

        timer = self.reactor.callLater(READY_TIMEOUT, too_slow)

        def all_ready(_: Any) -> None:
            if timer.active():
                timer.cancel()
            self.starting = []
            if self._stopping:  # stopped meanwhile: ``stopService`` told these to stop too
                done.errback(ConfigError("the server is stopping"))
                return
            old = list(self.workers.values())
            for slot in list(self._restarts):
                self._restarts.pop(slot).cancel()
            self.workers = new
            for worker in new.values():
                if worker.gone and worker.reason is not None:
                    # Died after its ready, while the rest of its generation was starting:
                    # ``_ended`` ignored it then (not yet in ``workers``).
                    self._schedule_restart(worker, worker.reason)
            self.retiring.extend(old)
            for worker in old:
                worker.stop()
            log.info("workers rolled to generation {generation}", generation=self.generation)
            done.callback(None)

        def failed(failure: Failure) -> None:
            if timer.active():
                timer.cancel()
            self.starting = []
            for worker in new.values():
                worker.stopping = True
                worker.kill()
            sub = getattr(failure.value, "subFailure", None)
            reason = sub.value if sub is not None else failure.value
            done.errback(ConfigError(f"starting the workers with the new config: {reason}"))

        DeferredList(waiting, fireOnOneErrback=True, consumeErrors=True).addCallbacks(all_ready, failed)
        return done

    # -- stopping --------------------------------------------------------------------------

    def stopService(self) -> Deferred[None]:  # noqa: N802 - Twisted's name
        super().stopService()
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        live = [w for w in [*self.workers.values(), *self.retiring, *self.starting] if not w.gone]
        if not live:
            return succeed(None)
        for worker in live:
            worker.stop()
        def too_late() -> None:
            for worker in live:
                worker.kill()

        kill = self.reactor.callLater(self._grace_period() + KILL_MARGIN, too_late)
        done = DeferredList([w.ended for w in live], consumeErrors=True)

        def gone(_: Any) -> None:
            if kill.active():
                kill.cancel()
            log.info("workers stopped")

        return done.addCallback(gone)

    def kill_all(self) -> None:
        """Kill every worker now (tests; a supervisor that must exit at once)."""
        for worker in [*self.workers.values(), *self.retiring, *self.starting]:
            worker.kill()
