"""What every response offers handlers, and what a wrapper passes on to the response it wraps."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.http.headers import Headers
from txcaddy.http.response import Response, ResponseWrapper
from txcaddy.testing import FakeResponse


class _Bare(Response):
    """A protocol's response with nothing beyond what the base class gives."""

    def __init__(self) -> None:
        super().__init__()
        self.wire: list[Any] = []

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.wire.append(("producer", producer))

    def unregister_producer(self) -> None:
        self.wire.append(("producer", None))

    def _send_head(self, status: int) -> None:
        self.wire.append(("head", status))

    def _send_body(self, data: bytes) -> None:
        self.wire.append(("body", data))

    def _send_end(self) -> None:
        self.wire.append(("end",))


class BaseResponseTests(SynchronousTestCase):
    def test_informational_is_dropped_where_the_protocol_has_none(self) -> None:
        """A 1xx on a response without 1xx support sends nothing and leaves the head unsent."""
        response = _Bare()
        response.write_informational(103, Headers([("Link", "</a.css>; rel=preload")]))
        self.assertEqual(response.wire, [])
        self.assertFalse(response.head_sent)

    def test_flush_sends_nothing(self) -> None:
        """flush() on a response that holds nothing back writes nothing."""
        response = _Bare()
        response.flush()
        self.assertEqual(response.wire, [])

    def test_cannot_switch_protocols(self) -> None:
        """A response that cannot switch says so, and refuses switch_protocols."""
        response = _Bare()
        self.assertFalse(response.can_switch_protocols)
        self.assertRaises(RuntimeError, response.switch_protocols, object())

    def test_abort_connection_writes_nothing(self) -> None:
        """abort_connection() on a response without a connection changes nothing written."""
        response = _Bare()
        response.write(b"x")
        response.abort_connection()
        self.assertEqual(response.wire, [("head", 200), ("body", b"x")])


class WrapperTests(SynchronousTestCase):
    def test_informational_reaches_the_wrapped_response(self) -> None:
        """A 1xx written to a wrapper is sent by the response it wraps."""
        inner = FakeResponse()
        fields = Headers([("Link", "</a.css>; rel=preload")])
        ResponseWrapper(inner).write_informational(103, fields)
        self.assertEqual(inner.informational, [(103, fields)])

    def test_abort_reaches_the_wrapped_response(self) -> None:
        """abort_connection() on a wrapper aborts the wrapped response's connection."""
        inner = FakeResponse()
        ResponseWrapper(inner).abort_connection()
        self.assertTrue(inner.aborted)

    def test_switching_is_the_wrapped_responses(self) -> None:
        """A wrapper can switch exactly when its inner response can, and switches that one."""
        inner = FakeResponse()
        wrapper = ResponseWrapper(inner)
        self.assertTrue(wrapper.can_switch_protocols)
        inner.can_switch_protocols = False
        self.assertFalse(wrapper.can_switch_protocols)

    def test_flush_reaches_the_wrapped_response(self) -> None:
        """flush() on a wrapper flushes the response it wraps."""
        flushed: list[bool] = []
        inner = FakeResponse()
        inner.flush = lambda: flushed.append(True)  # type: ignore[method-assign]
        ResponseWrapper(inner).flush()
        self.assertEqual(flushed, [True])


class StampHeadTests(SynchronousTestCase):
    def test_head_time_read_when_the_head_is_sent(self) -> None:
        """``stamp_head`` reads the clock once, as the head goes out, after the ``on_head`` callbacks."""
        now = [1.0]
        response = FakeResponse()
        response.stamp_head(lambda: now[0])

        def later(_: Any, status: int) -> int:
            now[0] = 2.5
            return status

        response.on_head(later)
        self.assertIsNone(response.head_time)
        response.write(b"x")
        now[0] = 9.0
        response.finish()
        self.assertEqual(response.head_time, 2.5)

    def test_unstamped_response_keeps_no_time(self) -> None:
        """Without ``stamp_head`` no clock is read and ``head_time`` stays None."""
        response = FakeResponse()
        response.write_head(204)
        self.assertIsNone(response.head_time)

    def test_wrapper_stamps_the_wrapped_response(self) -> None:
        """Through a wrapper, the wrapped response is stamped and its time read back."""
        inner = FakeResponse()
        wrapper = ResponseWrapper(inner)
        wrapper.stamp_head(lambda: 7.0)
        wrapper.write_head(200)
        self.assertEqual(inner.head_time, 7.0)
        self.assertEqual(wrapper.head_time, 7.0)
