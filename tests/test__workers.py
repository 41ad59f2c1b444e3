"""The supervisor's worker pool on a fake process reactor and a Clock: backoff, restarts,
rolling, stopping, and what it does with the workers' messages."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txcaddy._control import encode_message, wire_fields
from txcaddy._workers import (
    CONTROL_FD,
    FIRST_SOCKET_FD,
    KILL_MARGIN,
    READY_TIMEOUT,
    Backoff,
    WorkerPool,
    parse_workers,
)
from txcaddy.errors import ConfigError
from txcaddy.logs._values import Duration


class FakeProcess:
    """What ``spawnProcess`` returns: records what is written to the child and signals."""

    def __init__(self, protocol: Any, pid: int, args: list[str], env: dict[str, str], child_fds: dict[int, Any]) -> None:
        self.protocol = protocol
        self.pid = pid
        self.args = args
        self.env = env
        self.child_fds = child_fds
        self.written = b""
        self.signals: list[str] = []

    def writeToChild(self, fd: int, data: bytes) -> None:  # noqa: N802 - Twisted's name
        assert fd == 0
        self.written += data

    def signalProcess(self, sig: str) -> None:  # noqa: N802 - Twisted's name
        self.signals.append(sig)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.written.splitlines()]

    def say(self, kind: str, **fields: Any) -> None:
        self.protocol.childDataReceived(CONTROL_FD, encode_message(kind, **fields))

    def end(self, status: int = 0) -> None:
        reason = ProcessDone(status) if status == 0 else ProcessTerminated(status)
        self.protocol.processEnded(Failure(reason))


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: dict[str, str],  # noqa: N802
                     childFDs: dict[int, Any]) -> FakeProcess:  # noqa: N803 - Twisted's name
        process = FakeProcess(protocol, 1000 + len(self.processes), args, env, childFDs)
        self.processes.append(process)
        protocol.makeConnection(process)
        return process


class ParseWorkersTests(SynchronousTestCase):
    def test_numbers_and_auto(self) -> None:
        """A positive integer (or its text) is itself; ``auto`` is the CPUs we may run on."""
        self.assertEqual(parse_workers(3), 3)
        self.assertEqual(parse_workers("4"), 4)
        self.assertEqual(parse_workers("auto"), len(os.sched_getaffinity(0)))

    def test_refuses_the_rest(self) -> None:
        """Zero, negatives, booleans, fractions and other words are config errors."""
        for bad in (0, -1, True, 1.5, "two", None):
            self.assertRaises(ConfigError, parse_workers, bad)


class BackoffTests(SynchronousTestCase):
    def test_doubles_up_to_the_cap(self) -> None:
        """Quick deaths wait first, 2*first, 4*first... never more than the cap."""
        clock = Clock()
        backoff = Backoff(clock, first=0.5, cap=3.0, stable=30.0)
        delays = []
        for _ in range(5):
            backoff.started()
            clock.advance(1)
            delays.append(backoff.next_delay())
        self.assertEqual(delays, [0.5, 1.0, 2.0, 3.0, 3.0])

    def test_resets_after_a_stable_run(self) -> None:
        """A worker that ran ``stable`` seconds before dying starts from ``first`` again."""
        clock = Clock()
        backoff = Backoff(clock, first=0.5, cap=10.0, stable=30.0)
        backoff.started()
        self.assertEqual(backoff.next_delay(), 0.5)
        backoff.started()
        self.assertEqual(backoff.next_delay(), 1.0)
        backoff.started()
        clock.advance(30)
        self.assertEqual(backoff.next_delay(), 0.5)


class PoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.config: dict[str, Any] = {"apps": {"http": {}}, "n": 1}
        self.logged: list[tuple[Any, ...]] = []
        self.marks: dict[str, bool] = {"10.0.0.9:80": False}
        self.pool = WorkerPool(
            self.reactor, 2,
            config=lambda: self.config, sockets=lambda slot: {"tcp:80": 7, "tcp:443": 8}, marks=lambda: self.marks,
            emit_log=lambda *entry: self.logged.append(entry), grace_period=lambda: 10.0,
            environ={"PATH": "/bin", "NOTIFY_SOCKET": "/run/x", "LISTEN_FDS": "1"}, argv=["python", "-m", "w"],
        )
        self.pool.startService()

    def ready_all(self, processes: list[FakeProcess]) -> None:
        for process in processes:
            process.say("ready")

    def test_spawns_workers_with_sockets_config_and_environment(self) -> None:
        """Each worker gets the listening fds from fd 4 on, the config with the fd mapping,
        the current marks and its slot as its first message, and its slot in the environment
        but none of systemd's variables."""
        first, second = self.reactor.processes
        self.assertEqual(first.child_fds, {0: "w", 1: "r", 2: "r", CONTROL_FD: "r",
                                           FIRST_SOCKET_FD: 8, FIRST_SOCKET_FD + 1: 7})
        (config,) = first.messages()
        self.assertEqual(config, {"type": "config", "config": self.config, "slot": 1,
                                  "listeners": {"tcp:443": 4, "tcp:80": 5}, "marks": {"10.0.0.9:80": False}})
        self.assertEqual((first.env["TXCADDY_WORKER"], second.env["TXCADDY_WORKER"]), ("1", "2"))
        self.assertNotIn("NOTIFY_SOCKET", first.env)
        self.assertNotIn("LISTEN_FDS", first.env)
        self.assertEqual(first.env["PATH"], "/bin")

    def test_ready_once_every_worker_is(self) -> None:
        """``ready`` fires when the last worker says so, not before."""
        first, second = self.reactor.processes
        first.say("ready")
        self.assertNoResult(self.pool.ready)
        second.say("ready")
        self.successResultOf(self.pool.ready)

    def test_dead_worker_is_restarted_with_backoff(self) -> None:
        """A worker that dies is spawned again after the backoff delay, which grows while it
        keeps dying quickly; the other worker is left alone."""
        self.ready_all(self.reactor.processes)
        self.reactor.processes[0].end(9)
        self.assertEqual(len(self.reactor.processes), 2)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 3)
        restarted = self.reactor.processes[2]
        self.assertEqual(restarted.env["TXCADDY_WORKER"], "1")
        self.assertIs(self.pool.workers[1].transport, restarted)
        restarted.end(9)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 3)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 4)

    def test_messages_reach_every_worker(self) -> None:
        """A broadcast (health mark, stored certificate) is written to every live worker."""
        self.pool.broadcast("health", address="10.0.0.1:80", healthy=False)
        for process in self.reactor.processes:
            self.assertEqual(process.messages()[-1], {"type": "health", "address": "10.0.0.1:80", "healthy": False})

    def test_logs_and_events_from_workers(self) -> None:
        """A worker's log entry reaches the supervisor's logs with its field types."""
        self.reactor.processes[0].say("log", logger="http.log.access", level="info", message="handled request",
                                      fields=wire_fields([("duration", Duration(5))]), time=12.5)
        ((logger, level, message, fields, when),) = self.logged
        self.assertEqual((logger, level, message, when), ("http.log.access", "info", "handled request", 12.5))
        self.assertEqual(fields, [("duration", 5)])
        self.assertIsInstance(fields[0][1], Duration)

    def test_malformed_message_fields_do_not_break_the_channel(self) -> None:
        """A message with fields of the wrong shape is logged and skipped; the messages after
        it on the same channel are still handled."""
        process = self.reactor.processes[0]
        errors = self.flushLoggedErrors  # nothing may escape to the reactor
        process.say("log", logger="x", level="info", message="m", fields="not a list", time="soon")
        process.say("event", level="no-such-level", text="t")
        process.say("log", logger="http.log.access", level="info", message="ok", fields=[], time=1.0)
        process.say("ready")
        self.assertEqual([entry[2] for entry in self.logged], ["ok"])
        self.assertTrue(self.pool.workers[1].ready.called)
        self.assertEqual(process.signals, [])
        self.assertEqual(errors(), [])

    def test_worker_that_never_becomes_ready_is_killed_and_restarted(self) -> None:
        """A first-generation worker silent for READY_TIMEOUT is killed, then started again."""
        first, second = self.reactor.processes
        second.say("ready")
        self.reactor.advance(READY_TIMEOUT - 1)
        self.assertEqual(first.signals, [])
        self.reactor.advance(1)
        self.assertEqual(first.signals, ["KILL"])
        self.assertEqual(second.signals, [])
        first.end(9)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 3)
        self.reactor.processes[2].say("ready")
        self.successResultOf(self.pool.ready)
        self.reactor.advance(READY_TIMEOUT * 2)
        self.assertEqual(self.reactor.processes[2].signals, [])

    def test_roll_restarts_a_new_worker_that_died_after_its_ready(self) -> None:
        """A new worker that said ready and then died before the rest of its generation was
        ready is started again once the roll completes, not left dead in its slot."""
        self.ready_all(list(self.reactor.processes))
        self.config = {"n": 2}
        rolled = self.pool.roll()
        first, second = self.reactor.processes[2:]
        first.say("ready")
        first.end(9)
        second.say("ready")
        self.successResultOf(rolled)
        self.assertEqual(len(self.reactor.processes), 4)
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.processes), 5)
        restarted = self.reactor.processes[4]
        self.assertEqual((restarted.env["TXCADDY_WORKER"], restarted.messages()[0]["config"]), ("1", {"n": 2}))
        self.assertIs(self.pool.workers[1].transport, restarted)

    def test_roll_replaces_workers_once_the_new_ones_are_ready(self) -> None:
        """A roll spawns a new generation with the current config; the old workers are told
        to stop only once every new one is ready, and the roll fires then."""
        old = list(self.reactor.processes)
        self.ready_all(old)
        self.config = {"n": 2}
        rolled = self.pool.roll()
        new = self.reactor.processes[2:]
        self.assertEqual([p.messages()[0]["config"] for p in new], [{"n": 2}, {"n": 2}])
        new[0].say("ready")
        self.assertNoResult(rolled)
        self.assertEqual([p.messages()[-1]["type"] for p in old], ["config", "config"])
        new[1].say("ready")
        self.successResultOf(rolled)
        self.assertEqual([p.messages()[-1]["type"] for p in old], ["stop", "stop"])
        for process in old:
            process.end(0)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 4)  # stopped old workers are not restarted

    def test_failed_roll_keeps_the_old_workers(self) -> None:
        """When a new worker exits before it is ready the roll fails, the new ones are killed
        and the old ones keep serving, untold."""
        old = list(self.reactor.processes)
        self.ready_all(old)
        rolled = self.pool.roll()
        new = self.reactor.processes[2:]
        new[0].end(1)
        self.failureResultOf(rolled, ConfigError)
        self.assertEqual(new[1].signals, ["KILL"])
        self.assertEqual([p.messages()[-1]["type"] for p in old], ["config", "config"])
        self.assertEqual([w.transport for w in self.pool.workers.values()], old)

    def test_roll_times_out(self) -> None:
        """New workers not ready within the timeout are killed and the roll fails."""
        self.ready_all(self.reactor.processes)
        rolled = self.pool.roll()
        new = self.reactor.processes[2:]
        self.reactor.advance(READY_TIMEOUT)
        self.assertEqual([p.signals for p in new], [["KILL"], ["KILL"]])
        new[0].end(9)
        self.failureResultOf(rolled, ConfigError)

    def test_stop_tells_workers_then_kills_after_the_bound(self) -> None:
        """Stopping asks every worker to stop, fires when all are gone, and kills the ones
        still there after the grace period and a margin; nothing is restarted."""
        self.ready_all(self.reactor.processes)
        first, second = self.reactor.processes
        stopped = self.pool.stopService()
        self.assertEqual([first.messages()[-1]["type"], second.messages()[-1]["type"]], ["stop", "stop"])
        first.end(0)
        self.assertNoResult(stopped)
        self.reactor.advance(10.0 + KILL_MARGIN)
        self.assertEqual((first.signals, second.signals), ([], ["KILL"]))
        second.end(9)
        self.successResultOf(stopped)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_one_roll_at_a_time(self) -> None:
        """A roll asked for while one is under way fails at once and spawns nothing."""
        self.ready_all(self.reactor.processes)
        self.pool.roll()
        self.assertTrue(self.pool.rolling)
        self.failureResultOf(self.pool.roll(), ConfigError)
        self.assertEqual(len(self.reactor.processes), 4)

    def test_stop_during_a_roll_stops_the_new_workers_too(self) -> None:
        """Stopping while a roll waits for its new workers tells those to stop as well."""
        self.ready_all(self.reactor.processes)
        rolled = self.pool.roll()
        stopped = self.pool.stopService()
        self.assertEqual([p.messages()[-1]["type"] for p in self.reactor.processes], ["stop"] * 4)
        for process in self.reactor.processes:
            process.end(0)
        self.successResultOf(stopped)
        self.failureResultOf(rolled, ConfigError)


class BeforeTests(SynchronousTestCase):
    def test_first_workers_wait_for_before(self) -> None:
        """With ``before`` (the local CA's provisioning) the first workers are spawned only
        once it has fired."""
        from twisted.internet.defer import Deferred

        reactor = FakeReactor()
        gate: Deferred[None] = Deferred()
        pool = WorkerPool(reactor, 2, config=dict, sockets=lambda slot: {}, marks=dict, emit_log=lambda *a: None,
                          grace_period=lambda: 1.0, environ={}, argv=["python"], before=lambda: gate)
        pool.startService()
        self.assertEqual(reactor.processes, [])
        gate.callback(None)
        self.assertEqual(len(reactor.processes), 2)


class PerSlotSocketsTests(SynchronousTestCase):
    def test_each_slot_gets_its_own_socket_again_when_restarted_and_rolled(self) -> None:
        """With per-slot sockets (``SO_REUSEPORT``) worker N gets fd ``sockets(N)`` at start,
        the same one when it is restarted after a death, and again in a roll's new generation."""
        reactor = FakeReactor()
        pool = WorkerPool(reactor, 2, config=dict, sockets=lambda slot: {"tcp:80": 20 + slot}, marks=dict,
                          emit_log=lambda *a: None, grace_period=lambda: 1.0, environ={}, argv=["python"])
        pool.startService()
        first, second = reactor.processes
        self.assertEqual((first.child_fds[FIRST_SOCKET_FD], second.child_fds[FIRST_SOCKET_FD]), (21, 22))
        for process in (first, second):
            process.say("ready")
        first.end(9)
        reactor.advance(0.1)
        restarted = reactor.processes[2]
        self.assertEqual((restarted.env["TXCADDY_WORKER"], restarted.child_fds[FIRST_SOCKET_FD]), ("1", 21))
        pool.roll()
        rolled = {p.env["TXCADDY_WORKER"]: p.child_fds[FIRST_SOCKET_FD] for p in reactor.processes[3:]}
        self.assertEqual(rolled, {"1": 21, "2": 22})
