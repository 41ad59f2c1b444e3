"""The load clients: wrk for HTTP/1.1, an asyncio client for SSE streams.

Which client runs a scenario is decided by ``client_for`` from the
scenario's load kind and protocol.  HTTP/2 has no client yet: when it lands,
an ``h2load`` runner returning the same result fields (requests, duration_s,
bytes, p50_us, p99_us, the err_* counters) goes into ``REQUEST_CLIENTS``
under ``"h2"``; nothing else in the harness changes.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from bench.scenarios import EVENTS, Scenario

# ---------------------------------------------------------------- wrk

#: wrk prints this, then one JSON object, from the script's done() hook.
WRK_MARKER = "BENCH-WRK-RESULT"
ERROR_KINDS = ("connect", "read", "write", "status", "timeout")

_DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'MARKER {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
""".replace("MARKER", WRK_MARKER)


def lua_string(text: str) -> str:
    """``text`` as a Lua string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(scenario: Scenario) -> str:
    """The wrk Lua script for a scenario: its request, then the result hook."""
    lines = []
    if scenario.method != "GET":
        lines.append(f"wrk.method = {lua_string(scenario.method)}")
    if scenario.body_bytes:
        lines.append(f'wrk.body = string.rep("x", {scenario.body_bytes})')
    for name, value in scenario.request_headers():
        lines.append(f"wrk.headers[{lua_string(name)}] = {lua_string(value)}")
    return "\n".join(lines) + "\n" + _DONE_HOOK


def wrk_argv(url: str, script: str, *, duration: int, connections: int, threads: int,
             timeout_s: int) -> list[str]:
    """The wrk command line; ``duration`` bounds the run."""
    return ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
            "--timeout", f"{timeout_s}s", "--latency", "-s", script, url]


def parse_wrk_output(stdout: str) -> dict[str, Any]:
    """The result fields from wrk's output (the done() hook's line)."""
    for line in stdout.splitlines():
        if line.startswith(WRK_MARKER + " "):
            raw = json.loads(line[len(WRK_MARKER) + 1:])
            break
    else:
        raise ValueError("no result line in wrk's output")
    result = {k: v for k, v in raw.items() if k != "duration_us"}
    result["duration_s"] = raw["duration_us"] / 1e6
    result["errors"] = sum(raw["err_" + kind] for kind in ERROR_KINDS)
    return result


@dataclass
class LoadSettings:
    """How hard and how long a client loads the target."""

    duration: int
    connections: int
    threads: int
    timeout_s: int
    sse_streams: int
    sse_interval_ms: float


def run_wrk(scenario: Scenario, url: str, script_path: str, settings: LoadSettings,
            duration: int) -> dict[str, Any]:
    """Run wrk once (bounded by ``duration`` plus a margin) and return its result."""
    argv = wrk_argv(url, script_path, duration=duration, connections=settings.connections,
                    threads=settings.threads, timeout_s=settings.timeout_s)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        result = parse_wrk_output(done.stdout)
    except ValueError:
        raise RuntimeError(f"wrk failed (exit {done.returncode}): "
                           f"{done.stdout[-500:]}{done.stderr[-500:]}") from None
    result["client_cpu_s"] = round(after.ru_utime + after.ru_stime
                                   - before.ru_utime - before.ru_stime, 3)
    result["wrk_cpu_s"] = result["client_cpu_s"]
    return result


# ---------------------------------------------------------------- SSE


class ChunkedDecoder:
    """Incremental decoder of an HTTP/1.1 chunked body."""

    def __init__(self) -> None:
        self._pending = b""
        self._left: int | None = None  # bytes left in the current chunk; None: size line next
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        """The body bytes in ``data`` (possibly none yet)."""
        self._pending += data
        body = []
        while not self.finished:
            if self._left is None:
                end = self._pending.find(b"\r\n")
                if end < 0:
                    break
                size_line = self._pending[:end].split(b";", 1)[0].strip()
                self._pending = self._pending[end + 2:]
                if not size_line:  # the CRLF that closes a chunk's data
                    continue
                self._left = int(size_line, 16)
                if self._left == 0:
                    self.finished = True
                    break
            piece = self._pending[:self._left]
            body.append(piece)
            self._pending = self._pending[len(piece):]
            self._left -= len(piece)
            if self._left:
                break
            self._left = None
        return b"".join(body)


def split_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete SSE events (blank-line separated) in ``buffer``, and the rest."""
    *events, rest = buffer.split(b"\n\n")
    return events, rest


def percentile(ordered: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100.0))]


async def _one_stream(port: int, events: int, interval_ms: float, delay: float,
                      latencies_us: list[float], problems: list[str]) -> None:
    await asyncio.sleep(delay)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /sse?n={events}&ms={interval_ms:g} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0]
        if status_line.split(b" ")[1:2] != [b"200"]:
            problems.append(status_line.decode("latin-1"))
            return
        decoder = ChunkedDecoder() if b"transfer-encoding: chunked" in head.lower() else None
        buffer, received = b"", 0
        while True:
            data = await reader.read(65536)
            arrived = time.monotonic_ns()
            if not data:
                break
            buffer += decoder.feed(data) if decoder else data
            complete, buffer = split_events(buffer)
            for event in complete:
                if event.startswith(b"event: end"):
                    if received < events:
                        problems.append(f"short stream {received}/{events}")
                    return
                if event.startswith(b"data: "):
                    latencies_us.append((arrived - int(event[6:])) / 1000.0)
                    received += 1
        problems.append(f"stream closed early {received}/{events}")
    finally:
        writer.close()


def run_sse(port: int, settings: LoadSettings, duration: float) -> dict[str, Any]:
    """``sse_streams`` event streams for about ``duration`` s, phases spread over an interval.

    Latency is the time from the event source's write (its CLOCK_MONOTONIC
    timestamp in the event) to this client's read, through the proxy and the
    backend's nginx.
    """
    interval = settings.sse_interval_ms
    events = max(1, int(duration * 1000 / interval))
    latencies: list[float] = []
    problems: list[str] = []

    async def streams() -> None:
        tasks = [_one_stream(port, events, interval, interval / 1000.0 * i / settings.sse_streams,
                             latencies, problems) for i in range(settings.sse_streams)]
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True),
                                          timeout=duration * 3 + 30)
        problems.extend(repr(o) for o in outcomes if isinstance(o, BaseException))

    started = time.monotonic()
    try:
        asyncio.run(streams())
    except TimeoutError:
        problems.append("timeout")
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"requests": len(latencies), "duration_s": elapsed, "bytes": 0,
            "errors": len(problems), "error_detail": problems[:3],
            "p50_us": percentile(latencies, 50), "p90_us": percentile(latencies, 90),
            "p99_us": percentile(latencies, 99), "p999_us": percentile(latencies, 99.9),
            "max_us": latencies[-1] if latencies else None,
            "expected_events": events * settings.sse_streams}


# ---------------------------------------------------------------- choosing a client

#: Closed-loop request clients by protocol (see the module docstring for "h2").
REQUEST_CLIENTS: dict[str, str] = {"http/1.1": "wrk"}


def client_for(scenario: Scenario) -> str:
    """The name of the client that runs ``scenario``."""
    if scenario.load == EVENTS:
        return "sse"
    try:
        return REQUEST_CLIENTS[scenario.protocol]
    except KeyError:
        raise LookupError(f"scenario {scenario.name}: no load client for protocol "
                          f"{scenario.protocol!r} yet (HTTP/2 needs h2load, see bench/README.md)"
                          ) from None

