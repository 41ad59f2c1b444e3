"""``workers 2`` with ``TXCADDY_WORKER_SOCKETS=reuseport`` (real processes on 127.0.0.1):
each worker accepts on its own ``SO_REUSEPORT`` socket, both answer fresh connections, and
a killed worker costs no refused connection (the supervisor holds its socket) and is
restarted on that same socket.

Which socket a process listens on is read from ``/proc`` (the socket inodes of its fds
against the listening sockets in ``/proc/net/tcp``), so the tests see the sockets, not only
the answers.  The helpers are ``tests/integration/test_workers.py``'s.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import inlineCallbacks

from tests.integration.test_workers import WorkersCase, _static

REUSEPORT = {"TXCADDY_WORKER_SOCKETS": "reuseport"}


def listening_inodes(port: int) -> set[int]:
    """The inodes of the TCP sockets listening on 127.0.0.1:``port``."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` has open."""
    inodes = set()
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, name))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


class ReusePortWorkersTests(WorkersCase):

    def listening_socket(self, pid: int) -> int:
        """The one listening socket on the server's port process ``pid`` holds."""
        (inode,) = socket_inodes(pid) & listening_inodes(self.port)
        return inode

    @inlineCallbacks
    def test_each_worker_has_its_own_socket_and_both_answer(self) -> Any:
        """Two listening sockets on the port, one per worker (the supervisor holds both);
        fresh connections are answered by worker 1 and worker 2."""
        yield self.start(self.config(_static("worker {env.TXCADDY_WORKER}")), env=REUSEPORT)
        ((one,), (two,)) = self.pids(1), self.pids(2)
        sockets = listening_inodes(self.port)
        self.assertEqual(len(sockets), 2)
        self.assertEqual({self.listening_socket(one), self.listening_socket(two)}, sockets)
        self.assertEqual(socket_inodes(self.process.pid) & sockets, sockets)
        yield self.answered_by({b"worker 1", b"worker 2"})

    @inlineCallbacks
    def test_killed_worker_refuses_no_connection_and_comes_back_on_its_socket(self) -> Any:
        """SIGKILL to worker 1 under a bounded request loop: no connection is refused, at most
        the requests in flight fail, and worker 1 is restarted on the same socket and serves."""
        yield self.start(self.config(_static("worker {env.TXCADDY_WORKER}")), env=REUSEPORT)
        its_socket = self.listening_socket(self.pids(1)[0])
        _, fresh = yield self.kill_under_load(1)
        self.assertEqual(self.listening_socket(fresh), its_socket)
        self.assertEqual(len(listening_inodes(self.port)), 2)
        yield self.answered_by({b"worker 1", b"worker 2"})

    @inlineCallbacks
    def test_reload_moves_the_listener_to_a_new_group(self) -> Any:
        """A reload that moves the server to another port: the new port gets two sockets, one
        per new worker, and answers; the old port's sockets are all closed once the old
        workers are gone."""
        from tests._child import free_port

        yield self.start(self.config(_static("old")), env=REUSEPORT)
        old_port = self.port
        self.port = free_port()
        code, body = yield self.post_load(self.config(_static("new")))
        self.assertEqual(code, 200, body)
        yield self.child.wait_for("workers rolled to generation 2")
        new = [self.listening_socket(p) for p in self.pids(1)[1:] + self.pids(2)[1:]]
        self.assertEqual(set(new), listening_inodes(self.port))
        self.assertEqual(len(set(new)), 2)
        bodies, errors = yield self.hammer(4, 16)
        self.assertEqual((set(bodies), errors), ({b"new"}, []))
        for slot in (1, 2):
            yield self.child.wait_for(f"worker {slot} (pid {self.pids(slot)[0]}) of generation 1 stopped")
        self.assertEqual(listening_inodes(old_port), set())
