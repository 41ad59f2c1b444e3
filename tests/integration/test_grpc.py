"""gRPC through txcaddy end to end: a ``grpcio`` client speaking h2c to txcaddy, which proxies to a
``grpcio`` server over an h2c upstream (``reverse_proxy h2c://…``), as the tutorial's gRPC section.

The four call kinds, an error status with trailing metadata (Trailers-Only), a deadline, a
16 MiB message and a 10,000-message stream.  grpcio's blocking client runs in a thread so the
reactor keeps serving; the service methods take raw bytes (no protobuf code generation).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent import futures
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.test_twistd import free_port
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor

try:
    import grpc
except ImportError:  # pragma: no cover - grpcio is a test dependency
    grpc = None

MESSAGE_LIMIT = 32 << 20
OPTIONS = [("grpc.max_receive_message_length", MESSAGE_LIMIT), ("grpc.max_send_message_length", MESSAGE_LIMIT)]


def _unary(request: bytes, context: Any) -> bytes:
    if request == b"fail":
        context.set_trailing_metadata((("x-why", "because"),))
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "nope")
    return b"echo:" + request


def _server_stream(request: bytes, context: Any) -> Any:
    for i in range(int(request)):
        yield str(i).encode()


def _client_stream(requests: Any, context: Any) -> bytes:
    return str(sum(len(r) for r in requests)).encode()


def _bidi(requests: Any, context: Any) -> Any:
    for request in requests:
        yield request.upper()


CANCELLED = threading.Event()


def _endless(request: bytes, context: Any) -> Any:
    """Streams until the client goes away; records that the cancellation reached the upstream."""
    context.add_callback(CANCELLED.set)
    while context.is_active():
        yield b"tick"
        time.sleep(0.01)  # the upstream's pace between messages, not a test wait


def _slow(request: bytes, context: Any) -> bytes:
    time.sleep(2)  # the upstream side of a deadline test: longer than the client's deadline
    return b"late"


class GRPCTests(TestCase):
    timeout = 120

    if grpc is None:
        skip = "grpcio is not installed (pip install grpcio)"

    def setUp(self) -> Any:
        handlers = grpc.method_handlers_generic_handler("test.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
            "Slow": grpc.unary_unary_rpc_method_handler(_slow),
            "Endless": grpc.unary_stream_rpc_method_handler(_endless),
        })
        self.upstream = grpc.server(futures.ThreadPoolExecutor(4), options=OPTIONS)
        self.upstream.add_generic_rpc_handlers((handlers,))
        upstream_port = self.upstream.add_insecure_port("127.0.0.1:0")
        self.upstream.start()
        self.addCleanup(self.upstream.stop, 0)
        self.channel = self.proxy(upstream_port)
        self.addCleanup(self.channel.close)

    def proxy(self, upstream_port: int) -> Any:
        """txcaddy in front of the upstream, in the clear (h2c); the client's channel to it."""
        port = free_port()
        service = fromCaddyfile(
            "{\n\tadmin off\n\tservers {\n\t\tprotocols h1 h2 h2c\n\t}\n}\n"
            f"http://127.0.0.1:{port} {{\n\treverse_proxy h2c://127.0.0.1:{upstream_port}\n}}\n",
            reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        return grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)

    def call(self, kind: str, method: str, request: Any, timeout: float = 30) -> Any:
        """Make one call from a thread (grpcio blocks); fires with its result."""
        stub = getattr(self.channel, kind)(f"/test.Echo/{method}")
        return deferToThread(lambda: stub(request, timeout=timeout))

    async def test_four_call_kinds(self) -> None:
        """Unary, server streaming (10,000 messages), client streaming and bidirectional calls."""
        self.assertEqual(await self.call("unary_unary", "Unary", b"hi"), b"echo:hi")
        replies = await deferToThread(lambda: list(self.channel.unary_stream("/test.Echo/ServerStream")(b"10000", timeout=60)))
        self.assertEqual((len(replies), replies[0], replies[-1]), (10000, b"0", b"9999"))
        self.assertEqual(await self.call("stream_unary", "ClientStream", iter([b"x" * 1000] * 1000)), b"1000000")
        replies = await deferToThread(lambda: list(self.channel.stream_stream("/test.Echo/Bidi")(iter([b"a", b"b"]), timeout=10)))
        self.assertEqual(replies, [b"A", b"B"])

    async def test_error_status_and_trailing_metadata(self) -> None:
        """An error status, its message and its trailing metadata arrive intact (Trailers-Only)."""
        try:
            await self.call("unary_unary", "Unary", b"fail")
        except grpc.RpcError as error:
            self.assertEqual((error.code(), error.details()), (grpc.StatusCode.PERMISSION_DENIED, "nope"))
            self.assertIn(("x-why", "because"), [(m.key, m.value) for m in error.trailing_metadata()])
        else:
            self.fail("the call should have failed")

    async def test_deadline(self) -> None:
        """A client deadline shorter than the upstream's work ends the call with DEADLINE_EXCEEDED."""
        try:
            await self.call("unary_unary", "Slow", b"x", timeout=0.5)
        except grpc.RpcError as error:
            self.assertEqual(error.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        else:
            self.fail("the call should have timed out")

    async def test_large_message(self) -> None:
        """A 16 MiB message goes through and back unchanged."""
        big = os.urandom(16 << 20)
        reply = await self.call("unary_unary", "Unary", big, timeout=60)
        self.assertTrue(reply == b"echo:" + big, "the 16 MiB reply differs")

    async def test_cancellation_reaches_the_upstream(self) -> None:
        """A client that cancels a streaming call resets it through txcaddy: the upstream's call
        is cancelled too (its termination callback runs)."""
        CANCELLED.clear()

        def cancel_after_some() -> int:
            call = self.channel.unary_stream("/test.Echo/Endless")(b"", timeout=30)
            received = 0
            for _ in call:
                received += 1
                if received == 20:
                    call.cancel()
                    break
            return received

        self.assertEqual(await deferToThread(cancel_after_some), 20)
        cancelled = await deferToThread(CANCELLED.wait, 10)
        self.assertTrue(cancelled, "the upstream call was not cancelled")


class GRPCOverTLSTests(GRPCTests):
    """The same calls with TLS between the client and txcaddy (HTTP/2 by ALPN, on by default),
    txcaddy's local CA trusted by the client; h2c to the upstream."""

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        assert self.service.tls is not None and self.service.tls.manager is not None
        await self.service.tls.manager.ready

    def proxy(self, upstream_port: int) -> Any:
        port, storage = free_port(), os.path.abspath(self.mktemp())
        self.service = fromCaddyfile(
            f"{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {free_port()}\n\thttps_port {port}\n"
            f"\tstorage file_system {{\n\t\troot {storage}\n\t}}\n}}\n"
            f"localhost {{\n\treverse_proxy h2c://127.0.0.1:{upstream_port}\n}}\n",
            reactor=default_reactor())
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.root = os.path.join(storage, "pki", "authorities", "local", "root.crt")
        return _LazyChannel(self, port)


class _LazyChannel:
    """A TLS channel made on first use: the local CA's root exists once the service is ready."""

    def __init__(self, test: GRPCOverTLSTests, port: int) -> None:
        self.test, self.port, self.channel = test, port, None

    def __getattr__(self, name: str) -> Any:
        if self.channel is None:
            with open(self.test.root, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            self.channel = grpc.secure_channel(f"127.0.0.1:{self.port}", credentials,
                                               options=[*OPTIONS, ("grpc.ssl_target_name_override", "localhost")])
        return getattr(self.channel, name)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
