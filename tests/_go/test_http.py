"""Go's ``net/http`` request views: ``RemoteAddr``, ``Cookies()``, ``EscapedPath()``, ``RequestURI()``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.http import (
    detect_content_type,
    escaped_path,
    http_date,
    parse_http_time,
    remote_addr,
    request_cookie,
    request_cookies,
    request_uri,
    sanitize_cookie_name,
    sanitize_cookie_value,
    status_text,
    valid_cookie_name,
)
from txcaddy.http.headers import Headers
from txcaddy.testing import make_request


class RequestViewTests(SynchronousTestCase):
    def test_remote_addr(self) -> None:
        """``ip:port`` with brackets around IPv6; empty without a peer."""
        self.assertEqual(remote_addr(make_request("GET", "/", remote=("127.0.0.1", 4000))), "127.0.0.1:4000")
        self.assertEqual(remote_addr(make_request("GET", "/", remote=("::1", 4000))), "[::1]:4000")
        self.assertEqual(remote_addr(make_request("GET", "/", remote=("", 0))), "")

    def test_cookies(self) -> None:
        """Only valid pairs of every Cookie field, quotes around a value removed."""
        headers = Headers([("Cookie", 'a=1; b="two"; bad=x"y; =v'), ("Cookie", "c=3")])
        self.assertEqual(request_cookies(headers), [("a", "1"), ("b", "two"), ("c", "3")])

    def test_cookie_by_name(self) -> None:
        """``Cookie(name)``: the first valid value under exactly that name, across fields; None if none."""
        headers = Headers([("Cookie", 'lb=x"y; LB=1; lb="2"'), ("Cookie", "lb=3")])
        self.assertEqual(request_cookie(headers, "lb"), "2")
        self.assertIsNone(request_cookie(headers, "other"))
        self.assertIsNone(request_cookie(Headers([("Cookie", "lb=a\\b")]), "lb"))

    def test_valid_cookie_name(self) -> None:
        """A cookie name is a non-empty token."""
        self.assertTrue(valid_cookie_name("lb_1!#$%&'*+-.^`|~"))
        for name in ("", "a b", "a=b", "é", "a;"):
            self.assertFalse(valid_cookie_name(name), name)

    def test_sanitize_cookie(self) -> None:
        """``Cookie.String()``: CR/LF in names become ``-``; values lose invalid bytes, quoted with a space or comma."""
        self.assertEqual(sanitize_cookie_name("a\r\nb"), "a--b")
        self.assertEqual(sanitize_cookie_value('a"b;c\\dé\x7f'), "abcd")
        self.assertEqual(sanitize_cookie_value("a b,c"), '"a b,c"')
        self.assertEqual(sanitize_cookie_value(""), "")

    def test_escaped_path_and_request_uri(self) -> None:
        """The path as received when it encodes the current path, the query kept as received."""
        request = make_request("GET", "/a%2Fb?x=%41")
        self.assertEqual(escaped_path(request), "/a%2Fb")
        self.assertEqual(request_uri(request), "/a%2Fb?x=%41")
        request.path, request.raw_path = "/c d", "/a%2Fb"  # a rewrite changed the path
        self.assertEqual(escaped_path(request), "/c%20d")

    def test_bare_question_mark(self) -> None:
        """A ``?`` received with nothing after it stays (Go's ``ForceQuery``)."""
        self.assertEqual(request_uri(make_request("GET", "/p?")), "/p?")


class HTTPDateTests(SynchronousTestCase):
    def test_parse_http_time(self) -> None:
        """``http.ParseTime`` reads its three forms (fractions too) and refuses every other."""
        self.assertEqual(parse_http_time("Sun, 02 Jan 2022 03:04:05 GMT"), 1_641_092_645 * 10**9)
        self.assertEqual(parse_http_time("Thursday, 01-Jan-70 00:00:01 UTC"), 10**9)
        self.assertEqual(parse_http_time("Thu Jan  1 00:00:02 1970"), 2 * 10**9)
        self.assertEqual(parse_http_time("Thu, 01 Jan 1970 00:00:03.25 GMT"), 3_250_000_000)
        for bad in ("", "Sun, 2 Jan 2022 03:04:05 GMT", "Sun, 30 Feb 2022 03:04:05 GMT", "Sun, 02 Jan 2022 03:04:05 UTC",
                    "Sun, 02 Jan 2022 24:04:05 GMT", "2022-01-02T03:04:05Z"):
            self.assertIsNone(parse_http_time(bad), bad)

    def test_http_date(self) -> None:
        """``http.TimeFormat`` of a UTC time."""
        self.assertEqual(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT")
        self.assertEqual(http_date(1_641_092_645), "Sun, 02 Jan 2022 03:04:05 GMT")


class StatusTextTests(SynchronousTestCase):
    def test_go_wording(self) -> None:
        """Go 1.19's phrases (Caddy 2.6.2's status lines), not Python's; unknown codes are empty."""
        self.assertEqual(status_text(413), "Request Entity Too Large")
        self.assertEqual(status_text(416), "Requested Range Not Satisfiable")
        self.assertEqual(status_text(422), "Unprocessable Entity")
        self.assertEqual(status_text(414), "Request URI Too Long")
        self.assertEqual(status_text(418), "I'm a teapot")
        self.assertEqual(status_text(103), "Early Hints")
        self.assertEqual(status_text(200), "OK")
        self.assertEqual(status_text(299), "")
        self.assertEqual(status_text(509), "")


class SniffTests(SynchronousTestCase):
    def test_go_1_19_signatures(self) -> None:
        """detect_content_type gives Go 1.19's answers for its signatures."""
        cases = {
            b"<!DOCTYPE html><html>": "text/html; charset=utf-8",
            b"  <html>": "text/html; charset=utf-8",
            b"<?xml version='1.0'?>": "text/xml; charset=utf-8",
            b"%PDF-1.4": "application/pdf",
            b"\n%PDF-1.4": "text/plain; charset=utf-8",  # [caddy] exact signatures start at byte 0
            b".snd....": "text/plain; charset=utf-8",  # [caddy] no audio/basic in Go 1.19
            b"\x00\x00\x02\x00xx": "image/x-icon",  # [caddy]
            b"GIF89a": "image/gif",
            b"\x1f\x8b\x08\x00": "application/x-gzip",
            b"\x00\x61\x73\x6d\x01": "application/wasm",
            b"{\"a\": 1}": "text/plain; charset=utf-8",
            b"\x00\x01\x02": "application/octet-stream",
            b"": "text/plain; charset=utf-8",
        }
        for data, expected in cases.items():
            self.assertEqual(detect_content_type(data), expected, data)
