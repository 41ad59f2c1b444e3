"""What is measured: the scenarios, as data.

A scenario is a request against the backend's paths (method, body size,
connection mode) plus the scheme and protocol it is spoken in.  The protocol
picks the load client (``bench/clients.py``): wrk for HTTP/1.1, h2load for
HTTP/2.  gRPC scenarios are HTTP/2 ones whose request and answers are gRPC
messages (``grpc_messages``): the client POSTs one length-prefixed message
with ``content-type: application/grpc`` and ``te: trailers``, and the proxy
forwards it over h2c to the backend's gRPC-shaped answers, which end with a
``grpc-status: 0`` trailer.  The six HTTP/1.1 scenarios below send the same requests
as the harness behind ``bench/results/*.jsonl`` (the shared one used before
this package existed), so old and new numbers can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Connection modes: a connection reused for many requests, or one per request.
KEEP_ALIVE = "keep-alive"
CLOSE = "close"

#: How a scenario loads the proxy: a closed loop of requests (req/s), or
#: long-lived event streams whose delivery latency is what matters.
REQUESTS = "requests"
EVENTS = "events"

#: Payload bytes of every gRPC message, request and answers alike.
GRPC_PAYLOAD = (b"txcaddy bench grpc payload " * 4)[:100]


def grpc_message(payload: bytes = GRPC_PAYLOAD) -> bytes:
    """``payload`` as one gRPC message: flag 0 (not compressed), 4-byte big-endian length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


@dataclass(frozen=True)
class Scenario:
    """One measured workload."""

    name: str
    description: str
    path: str
    method: str = "GET"
    #: Bytes of request body sent with each request (0: none).
    body_bytes: int = 0
    connection: str = KEEP_ALIVE
    #: "http", or "https" for a target's TLS listener.
    scheme: str = "http"
    #: "http/1.1" (wrk) or "h2" (h2load: h2c by prior knowledge for "http",
    #: ALPN for "https").
    protocol: str = "http/1.1"
    #: HTTP/2 streams in flight per connection (h2load -m); None: clients.H2_STREAMS.
    streams: int | None = None
    #: Client connections for this scenario; None: the run's ``-c``.  HTTP/2 scenarios use a
    #: few connections with many streams each, as browsers and gRPC clients do.
    connections: int | None = None
    load: str = REQUESTS
    #: The result field whose ratio between targets is quoted: "rps", or "mib_s"
    #: where the bytes moved are the point.
    throughput: str = "rps"
    extra_headers: tuple[tuple[str, str], ...] = field(default=())
    #: gRPC messages in each answer (0: not a gRPC call).  A gRPC scenario sends
    #: ``grpc_message()`` as its body and needs the targets' ``grpc_config``
    #: (the proxy's upstream over h2c); its calls/s is ``rps``, and
    #: ``messages_s`` counts the answers' messages.
    grpc_messages: int = 0

    @property
    def grpc(self) -> bool:
        return self.grpc_messages > 0

    def request_body(self) -> bytes:
        """What each request carries: one gRPC message, or ``body_bytes`` filler bytes."""
        return grpc_message() if self.grpc else b"x" * self.body_bytes

    def request_headers(self) -> list[tuple[str, str]]:
        """The header fields the client adds to every request, in order."""
        fields: list[tuple[str, str]] = []
        if self.grpc:
            fields += [("content-type", "application/grpc"), ("te", "trailers")]
        elif self.body_bytes:
            fields.append(("Content-Type", "application/octet-stream"))
        if self.connection == CLOSE:
            fields.append(("Connection", "close"))
        fields.extend(self.extra_headers)
        return fields


REGISTRY: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry; names are unique."""
    if scenario.name in REGISTRY:
        raise ValueError(f"scenario {scenario.name!r} is already registered")
    if scenario.connection not in (KEEP_ALIVE, CLOSE):
        raise ValueError(f"scenario {scenario.name!r}: unknown connection mode")
    if scenario.protocol not in ("http/1.1", "h2"):
        raise ValueError(f"scenario {scenario.name!r}: unknown protocol")
    if scenario.load not in (REQUESTS, EVENTS):
        raise ValueError(f"scenario {scenario.name!r}: unknown load kind")
    if scenario.grpc and (scenario.protocol, scenario.scheme, scenario.method,
                          scenario.body_bytes) != ("h2", "http", "POST", len(grpc_message())):
        raise ValueError(f"scenario {scenario.name!r}: a gRPC call is an h2c POST of one message")
    REGISTRY[scenario.name] = scenario
    return scenario


register(Scenario("small", "GET, 100 B answer, keep-alive", "/small"))
register(Scenario("64k", "GET, 64 KiB static file, keep-alive", "/64k.bin"))
register(Scenario("1m", "GET, 1 MiB static file, keep-alive (quote MiB/s)", "/1m.bin",
                  throughput="mib_s"))
register(Scenario("post16k", "POST with a 16 KiB body, 100 B answer, keep-alive", "/post",
                  method="POST", body_bytes=16 * 1024))
register(Scenario("close", "GET, 100 B answer, Connection: close (a TCP connection per request)",
                  "/small", connection=CLOSE))
register(Scenario("sse", "server-sent events: concurrent streams, event delivery latency",
                  "/sse", load=EVENTS))

register(Scenario("https-small", "GET, 100 B answer, keep-alive, over TLS to the proxy",
                  "/small", scheme="https"))
register(Scenario("https-close", "GET, 100 B answer, Connection: close over TLS (a handshake per request)",
                  "/small", connection=CLOSE, scheme="https"))

register(Scenario("h2c-small", "GET, 100 B answer, HTTP/2 by prior knowledge (h2c), 4 connections × "
                  "100 streams per connection", "/small", protocol="h2", streams=100, connections=4))
register(Scenario("h2-small", "GET, 100 B answer, HTTP/2 over TLS (ALPN h2), 4 connections × "
                  "100 streams per connection", "/small", scheme="https", protocol="h2",
                  streams=100, connections=4))

register(Scenario("grpc-unary", "gRPC unary call over h2c (proxy to backend h2c too): one 100 B "
                  "message each way, grpc-status trailer, 4 connections × 100 streams",
                  "/bench.Bench/Unary", method="POST", body_bytes=len(grpc_message()),
                  protocol="h2", streams=100, connections=4, grpc_messages=1))
register(Scenario("grpc-stream", "gRPC server-streaming call over h2c: one 100 B message in, "
                  "100 messages of 100 B out, grpc-status trailer, 4 connections × 100 streams",
                  "/bench.Bench/ServerStream", method="POST", body_bytes=len(grpc_message()),
                  protocol="h2", streams=100, connections=4, grpc_messages=100))

#: What runs when -s is not given.
DEFAULT = ("small", "64k", "1m", "post16k", "close", "sse")


def throughput_field(name: str) -> str:
    """The throughput field compared for a scenario name (``rps`` for names not registered)."""
    scenario = REGISTRY.get(name)
    return scenario.throughput if scenario else "rps"


def select(names: str | Iterable[str]) -> list[Scenario]:
    """The scenarios named in a comma-separated list (or an iterable), in order, once each."""
    if isinstance(names, str):
        names = names.split(",")
    chosen: list[Scenario] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in REGISTRY:
            known = ", ".join(REGISTRY)
            raise KeyError(f"unknown scenario {name!r} (known: {known})")
        if REGISTRY[name] not in chosen:
            chosen.append(REGISTRY[name])
    return chosen
