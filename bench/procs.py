"""Processes the harness starts, and what /proc says they cost.

Every process is started in a session of its own and stopped through its
process group (SIGTERM, then SIGKILL), so nothing it forked survives the run
and nothing else is touched.  CPU time is read from ``/proc/PID/stat``
(user + system of the live processes plus their reaped children), memory from
``/proc/PID/status`` (VmRSS summed over the process tree, VmHWM), and the
machine's per-CPU busy time from ``/proc/stat``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Every port the harness uses lies in this range, on 127.0.0.1 only.
PORT_RANGE = range(18000, 19000)
HOST = "127.0.0.1"


@dataclass(frozen=True)
class StatFields:
    """The fields of /proc/PID/stat the harness reads (CPU in clock ticks)."""

    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """CPU of the process and of its reaped children."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> StatFields:
    """Parse a /proc/PID/stat line; the command name may hold spaces and parentheses."""
    after_name = text[text.rindex(")") + 1:].split()
    # after_name[0] is field 3 (state) of proc(5): ppid is field 4, utime 14, stime 15,
    # cutime 16, cstime 17.
    return StatFields(ppid=int(after_name[1]), utime=int(after_name[11]),
                      stime=int(after_name[12]), cutime=int(after_name[13]),
                      cstime=int(after_name[14]))


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:  # the process is gone
        return None


def stat_of(pid: int) -> StatFields | None:
    """/proc/PID/stat of a live process, None once it is gone."""
    text = _read_text(f"/proc/{pid}/stat")
    return parse_stat(text) if text else None


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = stat_of(int(entry))
            if st is not None:
                children.setdefault(st.ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds used by these processes and the children they reaped."""
    ticks = 0
    for pid in pids:
        st = stat_of(pid)
        if st is not None:
            ticks += st.ticks
    return ticks / CLOCK_TICKS


def parse_status_kb(text: str, key: str) -> int:
    """A ``key: N kB`` line of /proc/PID/status, 0 if absent (kernel threads)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def memory_kb(pids: Iterable[int]) -> tuple[int, int]:
    """Summed (VmRSS, VmHWM) of these processes, in KiB."""
    rss = hwm = 0
    for pid in pids:
        text = _read_text(f"/proc/{pid}/status")
        if text:
            rss += parse_status_kb(text, "VmRSS")
            hwm += parse_status_kb(text, "VmHWM")
    return rss, hwm


@dataclass(frozen=True)
class CpuTicks:
    """One CPU's counters from /proc/stat."""

    total: int
    busy: int
    steal: int
    user: int
    system: int
    softirq: int


def parse_proc_stat(text: str) -> dict[str, CpuTicks]:
    """The per-CPU lines (cpu0, cpu1, ...) of /proc/stat."""
    cpus = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, rest.split()[:8])
        total = user + nice + system + idle + iowait + irq + softirq + steal
        cpus[name] = CpuTicks(total=total, busy=total - idle - iowait - steal, steal=steal,
                              user=user + nice, system=system, softirq=irq + softirq)
    return cpus


def machine_ticks() -> dict[str, CpuTicks]:
    """The per-CPU counters now."""
    with open("/proc/stat") as f:
        return parse_proc_stat(f.read())


def parse_cpu_list(spec: str | None) -> set[int] | None:
    """``"0"``, ``"1-3"``, ``"0,2"`` as a set of CPUs; None for "none" or empty."""
    if spec is None or spec.strip() in ("", "none"):
        return None
    cpus: set[int] = set()
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last if dash else first) + 1))
    return cpus


class MemorySampler:
    """Peak summed RSS of a process tree, sampled on a thread during one run."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.peak_kb = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        pids: list[int] = []
        tick = 0
        while not self._stop.is_set():
            if tick % 8 == 0:  # a new tree scan every 2 s is plenty for forked workers
                pids = descendants(self.root)
                self.seen.update(pids)
            self.peak_kb = max(self.peak_kb, memory_kb(pids)[0])
            tick += 1
            self._stop.wait(self.interval)


def check_port(port: int) -> None:
    """Refuse a port outside the harness's range, or one that is already taken."""
    if port not in PORT_RANGE:
        raise ValueError(f"port {port} is outside {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise ValueError(f"port {port} is busy ({e.strerror})") from None


def pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec function that moves the child onto ``cpus`` (None: leave it)."""
    if not cpus:
        return None
    mask = set(cpus)
    return lambda: os.sched_setaffinity(0, mask)


class ManagedProcess:
    """A child in its own session; stopped by its process group, nothing else.

    Children inherit the harness's CPU affinity; ``cpus`` moves this one
    elsewhere.  Start these before any sampling thread runs (a preexec
    function is only safe in a single-threaded parent).
    """

    def __init__(self, name: str, argv: list[str], *, log_path: str, cwd: str | None = None,
                 env: Mapping[str, str] | None = None, cpus: set[int] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=cwd, env=full_env, start_new_session=True, preexec_fn=pin_to(cpus))
        self.pid = self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, limit: int = 2000) -> str:
        text = _read_text(self.log_path) or ""
        return text[-limit:]

    def stop(self, grace: float = 8.0) -> None:
        """SIGTERM the group, SIGKILL what is left after ``grace`` seconds."""
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.popen.wait(5)
        self._signal_group(signal.SIGKILL)  # grandchildren that outlived their parent

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
