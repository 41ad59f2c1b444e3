"""The load clients: wrk for HTTP/1.1, h2load for HTTP/2, an asyncio client for SSE.

Which client runs a scenario is decided by ``client_for`` from the
scenario's load kind and protocol.  Every request client returns the same
result fields (requests, duration_s, bytes, p50_us, p99_us, errors and the
err_* counters); h2load (nghttp2-client) prints no percentiles, so its
p50_us/p99_us are None and its latency is quoted as mean/sd/max instead.
gRPC scenarios also run under h2load (a POST of one gRPC message, ``-d``);
before they are measured, ``check_grpc_call`` makes one call with nghttp to
see that the answer's messages and its ``grpc-status: 0`` trailer come
through the proxy, which h2load cannot tell.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from bench.scenarios import EVENTS, KEEP_ALIVE, Scenario, grpc_message

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


# ---------------------------------------------------------------- h2load

#: Streams h2load keeps open at once on each connection (-m) when a scenario
#: does not say: the "100 concurrent streams" of Caddy's and Go's default.
H2_STREAMS = 100

_H2_FINISHED = re.compile(r"^finished in ([0-9.]+)s, ([0-9.]+) req/s", re.M)
_H2_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout", re.M)
_H2_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_H2_TRAFFIC = re.compile(r"^traffic: \S+ \((\d+)\) total", re.M)
_H2_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)
_H2_REQUEST_TIME = re.compile(
    r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", re.M)
_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6}


def h2load_microseconds(text: str) -> float:
    """One of h2load's durations ("137us", "12.05ms", "1.20s") in microseconds."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"not an h2load duration: {text!r}")
    return float(match.group(1)) * _UNITS_US[match.group(2)]


def h2load_argv(url: str, *, duration: int, connections: int, threads: int,
                streams: int, headers: list[tuple[str, str]] | None = None,
                data: str | None = None) -> list[str]:
    """The h2load command line; ``duration`` (-D) bounds the run.

    No --warm-up-time: the harness warms up with a run of its own, as it does
    for wrk, so both clients' measured runs include opening their connections.
    An http:// URL is HTTP/2 by prior knowledge (h2c); https:// negotiates by ALPN.
    ``data`` is a file sent as every request's body (h2load then POSTs).
    """
    argv = ["h2load", "-t", str(threads), "-c", str(connections), "-m", str(streams),
            "-D", str(duration)]
    for name, value in headers or ():
        argv += ["-H", f"{name}: {value}"]
    if data is not None:
        argv += ["-d", data]
    return argv + [url]


def parse_h2load_output(stdout: str) -> dict[str, Any]:
    """The result fields from h2load's summary.

    h2load's counters: ``failed`` includes non-2xx answers, ``errored`` is the
    part of it that failed below HTTP (resets, broken connections), and
    ``timeout`` the part of that which timed out; they map onto wrk's
    err_status, err_read and err_timeout.  The measured time is requests over
    h2load's own req/s (its "finished in" also counts --warm-up-time).
    Latency is what h2load gives: min/mean/sd/max of each request's time, no
    percentiles (p50_us, p99_us are None).  ``succeeded`` is the requests
    done with a 2xx answer; ``status_2xx`` ... ``status_5xx`` are h2load's
    counts of status codes, None when it printed none.
    """
    finished = _H2_FINISHED.search(stdout)
    counts = _H2_REQUESTS.search(stdout)
    traffic = _H2_TRAFFIC.search(stdout)
    times = _H2_REQUEST_TIME.search(stdout)
    if not (finished and counts and traffic and times):
        raise ValueError("no summary in h2load's output")
    _total, _started, done, _succeeded, failed, errored, timeout = map(int, counts.groups())
    rate = float(finished.group(2))
    duration = done / rate if done and rate else float(finished.group(1))
    protocol = _H2_PROTOCOL.search(stdout)
    statuses = _H2_STATUS.search(stdout)
    codes = [int(n) for n in statuses.groups()] if statuses else [None] * 4
    low, high, mean, sd = (h2load_microseconds(t) for t in times.groups())
    return {
        "requests": done, "succeeded": _succeeded, "duration_s": duration, "bytes": int(traffic.group(1)),
        "errors": failed, "err_connect": 0, "err_read": errored - timeout, "err_write": 0,
        "err_status": failed - errored, "err_timeout": timeout,
        "p50_us": None, "p99_us": None,
        "min_us": low, "mean_us": mean, "sd_us": sd, "max_us": high,
        "protocol": protocol.group(1) if protocol else None,
        **{f"status_{n}xx": count for n, count in zip(range(2, 6), codes, strict=True)},
    }


def run_h2load(scenario: Scenario, url: str, settings: LoadSettings,
               duration: int, data: str | None = None) -> dict[str, Any]:
    """Run h2load once (bounded by ``duration`` plus a margin) and return its result.

    ``data``: the file with the scenario's request body (``request_body()``),
    required when it has one.  A run that negotiated something other than
    HTTP/2 (h2 over TLS, h2c in cleartext), that completed no request at all
    (h2load counts refused connections nowhere), or whose every answer was
    an error status, is a failure, not a measurement.  A gRPC scenario's
    ``messages`` is its calls times the messages in each answer.
    """
    if scenario.connection != KEEP_ALIVE:
        raise RuntimeError(f"scenario {scenario.name}: the h2load runner keeps connections "
                           "open (no Connection: close)")
    if scenario.body_bytes and data is None:
        raise RuntimeError(f"scenario {scenario.name}: a request body needs its file (-d)")
    argv = h2load_argv(url, duration=duration, connections=scenario.connections or settings.connections,
                       threads=settings.threads, streams=scenario.streams or H2_STREAMS,
                       headers=scenario.request_headers(),
                       data=data if scenario.body_bytes else None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tail = f"{done.stdout[-900:]}{done.stderr[-300:]}"
    try:
        result = parse_h2load_output(done.stdout)
    except ValueError:
        raise RuntimeError(f"h2load failed (exit {done.returncode}): {tail}") from None
    expected = "h2" if url.startswith("https:") else "h2c"
    if result["protocol"] != expected:
        raise RuntimeError(f"h2load spoke {result['protocol']!r}, not {expected}: {tail}")
    if not result["requests"] and not result["errors"]:
        raise RuntimeError(f"h2load completed no request: {tail}")
    if result["requests"] and not result["succeeded"]:
        raise RuntimeError(f"h2load got no 2xx answer ({result['status_2xx']} 2xx, "
                           f"{result['status_3xx']} 3xx, {result['status_4xx']} 4xx, "
                           f"{result['status_5xx']} 5xx): {tail}")
    if scenario.grpc:
        result["messages"] = result["succeeded"] * scenario.grpc_messages
    result["client_cpu_s"] = round(after.ru_utime + after.ru_stime
                                   - before.ru_utime - before.ru_stime, 3)
    return result


def nghttp_argv(url: str, *, headers: list[tuple[str, str]], data: str) -> list[str]:
    """One verbose HTTP/2 call by prior knowledge (h2c), body from ``data``, answer discarded."""
    argv = ["nghttp", "-v", "-n", "-d", data]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    return argv + [url]


_NGHTTP_FIELD = re.compile(r"^\[\s*[0-9.]+\] recv \(stream_id=\d+\) ([^:\s][^:]*|:status): (.*)$")
_NGHTTP_DATA = re.compile(r"^\[\s*[0-9.]+\] recv DATA frame <length=(\d+),")


def parse_nghttp_call(stdout: str) -> dict[str, Any]:
    """What ``nghttp -v`` received: the status, header fields, body bytes and trailer fields.

    Fields received after the first DATA frame are the trailers.
    """
    status: int | None = None
    headers: dict[str, str] = {}
    trailers: dict[str, str] = {}
    body = 0
    for line in stdout.splitlines():
        data = _NGHTTP_DATA.match(line)
        if data:
            body += int(data.group(1))
            continue
        field = _NGHTTP_FIELD.match(line)
        if not field:
            continue
        name, value = field.group(1), field.group(2)
        if name == ":status":
            status = int(value)
        elif body:
            trailers[name] = value
        else:
            headers[name] = value
    return {"status": status, "headers": headers, "body_bytes": body, "trailers": trailers}


def grpc_call_problem(call: dict[str, Any], scenario: Scenario) -> str | None:
    """Why one call's answer is not the scenario's gRPC answer (None: it is)."""
    expected = len(grpc_message()) * scenario.grpc_messages
    if call["status"] != 200:
        return f"status {call['status']}"
    if call["headers"].get("content-type") != "application/grpc":
        return f"content-type {call['headers'].get('content-type')!r}"
    if call["body_bytes"] != expected:
        return f"{call['body_bytes']} body bytes, not {expected}"
    if call["trailers"].get("grpc-status") != "0":
        return f"trailers {call['trailers']!r}, no grpc-status: 0"
    return None


def check_grpc_call(scenario: Scenario, url: str, data: str) -> None:
    """One call through the target with nghttp; RuntimeError unless the gRPC answer is whole."""
    argv = nghttp_argv(url, headers=scenario.request_headers(), data=data)
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=30)
    problem = grpc_call_problem(parse_nghttp_call(done.stdout), scenario)
    if problem:
        raise RuntimeError(f"gRPC check of {url} failed (nghttp exit {done.returncode}): "
                           f"{problem}: {done.stdout[-600:]}{done.stderr[-300:]}")


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

#: Closed-loop request clients by protocol.
REQUEST_CLIENTS: dict[str, str] = {"http/1.1": "wrk", "h2": "h2load"}


def client_for(scenario: Scenario) -> str:
    """The name of the client that runs ``scenario``."""
    if scenario.load == EVENTS:
        return "sse"
    try:
        return REQUEST_CLIENTS[scenario.protocol]
    except KeyError:
        raise LookupError(f"scenario {scenario.name}: no load client for protocol "
                          f"{scenario.protocol!r}") from None

