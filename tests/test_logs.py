"""Access logs, HTTP error logs and the ``logging`` config (txcaddy.logs).

Lines are compared with what Caddy 2.6.2 writes for the same requests
(checked against a real caddy on 127.0.0.1): zap's key order, number formats
and escapes, Caddy's field names, levels and logger names.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txcaddy._go.strconv import format_float_f
from txcaddy._reactor import default_reactor
from txcaddy.caddyfile.adapter import adapt
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.app import load_http_app
from txcaddy.http.errors import AbortConnection, HandlerError
from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.logs import (
    ConsoleLogEncoder,
    CookieFilter,
    CustomLog,
    Duration,
    Entry,
    FileWriter,
    FilterLogEncoder,
    HashFilter,
    IPMaskFilter,
    JSONLogEncoder,
    LogSystem,
    NetWriter,
    QueryFilter,
    RegexpFilter,
    StdWriter,
    StringArray,
    json_string,
    logger_allowed,
)
from txcaddy.service import plain_json
from txcaddy.testing import FakeResponse, FakeTLS, MemoryServingReactor, make_request

T0 = 1700000000.5  # 2023-11-14T22:13:20.5Z


class Site:
    """A Caddyfile's HTTP app and logs on a Clock, with stdout/stderr captured."""

    def __init__(self, caddyfile: str, *, start: bool = True) -> None:
        self.config = plain_json(adapt(caddyfile, "Caddyfile")[0])
        self.clock = Clock()
        self.clock.advance(T0)
        self.stdout = io.BytesIO()
        self.stderr = io.BytesIO()
        context = LoadContext(reactor=self.clock)
        self.logs = LogSystem.from_config(
            self.config.get("logging"), context, stdout=self.stdout, stderr=self.stderr, terminal=False
        )
        self.app = load_http_app(self.config["apps"]["http"], context, logs=self.logs)
        if start:
            self.logs.start()

    def get(self, target: str = "/", headers: Any = None, *, server: str = "srv0", elapsed: float = 0.25, **kw: Any) -> FakeResponse:
        request = make_request(kw.pop("method", "GET"), target, headers, **kw)
        request.start = self.clock.seconds()
        self.clock.advance(elapsed)
        response = FakeResponse()
        self.app.servers[server].handle(request, response)
        return response

    def lines(self, stream: str = "stderr") -> list[str]:
        return getattr(self, stream).getvalue().decode("utf-8").splitlines()

    def entries(self, stream: str = "stderr") -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines(stream)]


def site_log(body: str, log: str = "log", host: str = "http://example.com:80") -> str:
    return f"{host} {{\n\t{log}\n{body}}}\n"


class AccessLogTests(SynchronousTestCase):
    def test_handled_request_line_is_caddys(self) -> None:
        """A handled request's access line matches Caddy's byte for byte, credentials emptied."""
        site = Site(site_log('\trespond /hello "hi there"\n', "log {\n\t\toutput stdout\n\t}"))
        response = site.get(
            "/hello?q=1",
            [("Cookie", "a=b"), ("Authorization", "Basic eA=="), ("X-Multi", "1"), ("X-Multi", "2")],
            host="example.com",
        )
        self.assertEqual(response.body, b"hi there")
        self.assertEqual(
            site.lines("stdout"),
            [
                '{"level":"info","ts":1700000000.75,"logger":"http.log.access.log0","msg":"handled request",'
                '"request":{"remote_ip":"127.0.0.1","remote_port":"54321","proto":"HTTP/1.1","method":"GET",'
                '"host":"example.com","uri":"/hello?q=1","headers":{"Cookie":[],"Authorization":[],'
                '"X-Multi":["1","2"]}},"user_id":"","duration":0.25,"size":8,"status":200,'
                '"resp_headers":{"Server":["Caddy"],"Content-Type":["text/plain; charset=utf-8"]}}'
            ],
        )
        self.assertEqual(site.lines("stderr"), [])  # the default log excludes log0

    def test_status_400_and_up_is_error_level_and_unwritten_is_status_0(self) -> None:
        """Statuses from 400 log at error level; a request nothing answered logs status 0."""
        site = Site(site_log("\trespond /nf 404\n\trespond /ok 204\n"))
        site.get("/nf", host="example.com")
        site.get("/ok", host="example.com")
        site.get("/nothing", host="example.com")
        entries = site.entries()
        self.assertEqual([(e["level"], e["status"], e["size"]) for e in entries], [("error", 404, 0), ("info", 204, 0), ("info", 0, 0)])
        self.assertEqual(entries[2]["resp_headers"], {"Server": ["Caddy"]})

    def test_request_is_logged_as_it_arrived(self) -> None:
        """The access log shows the request as it arrived, before header changes or rewrites."""
        site = Site(
            site_log(
                "\trequest_header X-Added 1\n\trequest_header -User-Agent\n"
                "\trewrite * /rewritten?x=1\n\trespond {uri}\n"
            )
        )
        response = site.get("/orig?a=b", {"User-Agent": "curl"}, host="example.com")
        self.assertEqual(response.body, b"/rewritten?x=1")
        (entry,) = site.entries()
        self.assertEqual(entry["request"]["uri"], "/orig?a=b")
        self.assertEqual(entry["request"]["headers"], {"User-Agent": ["curl"]})

    def test_deferred_chain_is_logged_when_it_finishes(self) -> None:
        """A request answered later is logged when its Deferred fires, with the time it took."""
        clock = Clock()
        clock.advance(T0)
        stderr = io.BytesIO()
        logs = LogSystem.from_config(None, LoadContext(reactor=clock), stderr=stderr, terminal=False)
        logs.start()
        pending: list[Deferred[None]] = []

        class Slow:
            def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
                d: Deferred[None] = Deferred()
                d.addCallback(lambda _: response.write(b"late"))
                pending.append(d)
                return d

        access = logs.server_logger({})
        server = HTTPServer("srv0", [":80"], RouteList([Route([Slow()])]), access_log=access)
        request = make_request("GET", "/")
        request.start = clock.seconds()
        server.handle(request, FakeResponse())
        self.assertEqual(stderr.getvalue(), b"")
        clock.advance(1.5)
        pending[0].callback(None)
        (entry,) = [json.loads(line) for line in stderr.getvalue().splitlines()]
        self.assertEqual((entry["logger"], entry["status"], entry["size"], entry["duration"]), ("http.log.access", 200, 4, 1.5))

    def test_skip_log_var(self) -> None:
        """Requests matched by skip_log are not logged."""
        site = Site(site_log("\tskip_log /quiet\n\trespond ok\n"))
        site.get("/quiet", host="example.com")
        site.get("/loud", host="example.com")
        self.assertEqual([e["request"]["uri"] for e in site.entries()], ["/loud"])

    def test_credentials_logged_when_asked(self) -> None:
        """Cookie and Set-Cookie values are logged only with should_log_credentials."""
        site = Site(site_log("\theader Set-Cookie s=1\n\trespond ok\n"))
        site.get("/", {"Cookie": "a=b"}, host="example.com")
        (entry,) = site.entries()
        self.assertEqual((entry["request"]["headers"]["Cookie"], entry["resp_headers"]["Set-Cookie"]), ([], []))

        config = {"servers": {"srv0": {"listen": [":80"], "logs": {"should_log_credentials": True},
                                       "routes": [{"handle": [{"handler": "headers", "response": {"set": {"Set-Cookie": ["s=1"]}}},
                                                              {"handler": "static_response", "body": "ok"}]}]}}}
        stderr = io.BytesIO()
        clock = Clock()
        context = LoadContext(reactor=clock)
        logs = LogSystem.from_config(None, context, stderr=stderr, terminal=False)
        app = load_http_app(config, context, logs=logs)
        logs.start()
        app.servers["srv0"].handle(make_request("GET", "/", {"Cookie": "a=b"}), FakeResponse())
        (entry,) = [json.loads(line) for line in stderr.getvalue().splitlines()]
        self.assertEqual((entry["request"]["headers"]["Cookie"], entry["resp_headers"]["Set-Cookie"]), (["a=b"], ["s=1"]))

    def test_tls_object(self) -> None:
        """A TLS request's log entry carries Caddy's tls object, fields in Caddy's order."""
        site = Site(site_log("\trespond ok\n"))
        site.get("/", host="example.com", tls=FakeTLS(server_name="example.com"))
        (entry,) = site.entries()
        self.assertEqual(
            json.dumps(entry["request"]["tls"]),
            '{"resumed": false, "version": 772, "cipher_suite": 4865, "proto": "http/1.1", "server_name": "example.com"}',
        )

    def test_protocol_framing_fields_are_not_logged(self) -> None:
        """Framing fields the protocol adds are not logged; handler-set ones are."""
        class Framed(FakeResponse):
            def _send_head(self, status: int) -> None:
                self.headers.set("Content-Length", "2")
                self.headers.set("Connection", "close")

        site = Site(site_log("\trespond /a ok\n\theader /b Content-Length 2\n\trespond /b ok\n"))
        for target in ("/a", "/b"):
            request = make_request("GET", target, host="example.com")
            site.app.servers["srv0"].handle(request, Framed())
        first, second = site.entries()
        self.assertEqual(list(first["resp_headers"]), ["Server", "Content-Type"])
        self.assertEqual(list(second["resp_headers"]), ["Server", "Content-Length", "Content-Type"])

    def test_aborted_request_is_logged_as_caddy_logs_it(self) -> None:
        """``abort`` is logged at info with status 0, size 0 and duration 0 (Caddy's panic skips
        setting it), the headers set so far, and no error entry (checked against caddy 2.6.2)."""
        site = Site(site_log("\theader X-A 1\n\tabort\n"))
        response = site.get("/abort", host="example.com")
        self.assertTrue(response.aborted)
        (entry,) = site.entries()
        self.assertEqual(
            (entry["logger"], entry["level"], entry["msg"], entry["status"], entry["size"], entry["duration"]),
            ("http.log.access", "info", "handled request", 0, 0, 0),
        )
        self.assertEqual(entry["resp_headers"], {"Server": ["Caddy"], "X-A": ["1"]})
        self.assertEqual(entry["request"]["uri"], "/abort")

    def test_abort_in_handle_errors_keeps_the_duration_and_drops_the_error_entry(self) -> None:
        """An error whose handle_errors aborts: status 0 with the duration, and no error entry."""
        site = Site(site_log('\terror boom 500\n\thandle_errors {\n\t\tabort\n\t}\n'))
        response = site.get("/err", host="example.com")
        self.assertTrue(response.aborted)
        (entry,) = site.entries()
        self.assertEqual((entry["logger"], entry["level"], entry["status"], entry["size"], entry["duration"]),
                         ("http.log.access", "info", 0, 0, 0.25))

    def test_error_after_the_head_is_logged_with_what_was_sent(self) -> None:
        """A handler failing after the head: the error entry, then the access entry with the
        status and bytes sent and the duration; the connection is cut."""
        clock = Clock()
        clock.advance(T0)
        stderr = io.BytesIO()
        logs = LogSystem.from_config(None, LoadContext(reactor=clock), stderr=stderr, terminal=False)
        logs.start()

        class HalfWay:
            def serve(self, request: Any, response: Any, next: Any) -> None:
                response.write_head(200)
                response.write(b"part")
                raise HandlerError(502, "upstream went away")

        server = HTTPServer("srv0", [":80"], RouteList([Route([HalfWay()])]), access_log=logs.server_logger({}))
        request = make_request("GET", "/")
        request.start = clock.seconds() - 0.5
        response = FakeResponse()
        server.handle(request, response)
        self.assertTrue(response.aborted)
        error, access = [json.loads(line) for line in stderr.getvalue().splitlines()]
        self.assertEqual((error["logger"], error["level"], error["msg"], error["status"], error["duration"]),
                         ("http.log.error", "error", "upstream went away", 502, 0.5))
        self.assertEqual((access["logger"], access["level"], access["status"], access["size"], access["duration"]),
                         ("http.log.access", "info", 200, 4, 0.5))

    def test_cut_off_proxy_response_is_logged_with_its_duration(self) -> None:
        """An abort where Caddy's handler returned (the proxy's incomplete response) keeps the
        status, size and duration, with no error entry."""
        clock = Clock()
        clock.advance(T0)
        stderr = io.BytesIO()
        logs = LogSystem.from_config(None, LoadContext(reactor=clock), stderr=stderr, terminal=False)
        logs.start()

        class CutOff:
            def serve(self, request: Any, response: Any, next: Any) -> None:
                response.write_head(200)
                response.write(b"abc")
                raise AbortConnection(returned=True)

        server = HTTPServer("srv0", [":80"], RouteList([Route([CutOff()])]), access_log=logs.server_logger({}))
        request = make_request("GET", "/")
        request.start = clock.seconds() - 1.5
        response = FakeResponse()
        server.handle(request, response)
        self.assertTrue(response.aborted)
        (entry,) = [json.loads(line) for line in stderr.getvalue().splitlines()]
        self.assertEqual((entry["logger"], entry["status"], entry["size"], entry["duration"]),
                         ("http.log.access", 200, 3, 1.5))

    def test_not_started_logs_nothing(self) -> None:
        """A log system that was not started writes nothing."""
        site = Site(site_log("\trespond ok\n"), start=False)
        site.get("/", host="example.com")
        self.assertEqual(site.stderr.getvalue(), b"")


class LoggerNameTests(SynchronousTestCase):
    def test_hosts_map_to_logger_names(self) -> None:
        """Each site's hosts log to its own logger; unmapped hosts go to the default logger."""
        site = Site(
            "http://a.example.com:80, http://a.example.com:8080 {\n\tlog {\n\t\toutput stdout\n\t}\n\trespond a\n}\n"
            "http://b.example.com:80 {\n\tlog\n\trespond b\n}\n"
            "http://c.example.com:80 {\n\trespond c\n}\n"
            "http://*.wild.com:80 {\n\tlog {\n\t\toutput stdout\n\t}\n\trespond w\n}\n"
        )
        for host in ("a.example.com", "a.example.com:80", "b.example.com", "c.example.com", "x.wild.com", "other"):
            site.get("/", host=host)
        self.assertEqual(
            [(e["request"]["host"], e["logger"]) for e in site.entries("stdout")],
            [("a.example.com", "http.log.access.log0"), ("a.example.com:80", "http.log.access.log0"),
             ("x.wild.com", "http.log.access.log1")],
        )
        self.assertEqual(
            [(e["request"]["host"], e["logger"]) for e in site.entries("stderr")],
            [("b.example.com", "http.log.access"), ("other", "http.log.access")],  # unmapped: the default
        )

    def test_skip_hosts_wildcards_and_unmapped(self) -> None:
        """skip_hosts wildcards and skip_unmapped_hosts leave those requests unlogged."""
        config = {"servers": {"srv0": {"listen": [":80"], "routes": [], "logs": {
            "logger_names": {"keep.example.com": "kept"},
            "skip_hosts": ["*.example.com"],
        }}, "srv1": {"listen": [":81"], "routes": [], "logs": {
            "logger_names": {"keep.example.com": "kept"}, "skip_unmapped_hosts": True,
        }}}}
        stderr = io.BytesIO()
        context = LoadContext(reactor=Clock())
        logs = LogSystem.from_config(None, context, stderr=stderr, terminal=False)
        app = load_http_app(config, context, logs=logs)
        logs.start()
        for server in ("srv0", "srv1"):
            for host in ("keep.example.com", "skip.example.com", "example.com"):
                app.servers[server].handle(make_request("GET", "/", host=host), FakeResponse())
        self.assertEqual(
            [(e["logger"], e["request"]["host"]) for e in map(json.loads, stderr.getvalue().splitlines())],
            [("http.log.access.kept", "keep.example.com"), ("http.log.access", "example.com"),
             ("http.log.access.kept", "keep.example.com")],
        )

    def test_include_exclude_namespaces(self) -> None:
        """logger_allowed applies include and exclude by dotted namespace, as Caddy does."""
        cases = [
            ("http.log.access.log0", [], [], True),
            ("http.log.access.log0", ["http.log.access.log0"], [], True),
            ("http.log.access.log01", ["http.log.access.log0"], [], False),
            ("http.log.access", ["http.log.access.log0"], [], False),
            ("http.log.access.log0", [], ["http.log.access"], False),
            ("http.log.error.log0", [], ["http.log.access"], True),
            ("http.log.access.noisy", ["http.log.access"], ["http.log.access.noisy"], False),
            ("http.log.access.log0", ["http.log.access"], ["http.log.access.noisy"], True),
            ("http.log.access.noisy.x", ["http.log"], ["http.log.access.noisy"], False),
            ("admin", [], ["*"], False),
            ("", [], ["."], True),  # as Caddy: "." is the core logs' namespace, not ""
        ]
        for name, include, exclude, expected in cases:
            self.assertEqual(logger_allowed(name, include, exclude), expected, (name, include, exclude))


class ErrorLogTests(SynchronousTestCase):
    def test_handler_error_is_logged_to_the_default_log(self) -> None:
        """A handler's 500 error is logged at error level by the site's error logger."""
        site = Site(site_log('\terror /e500 "boom" 500\n\terror /e404 "nope" 404\n', "log {\n\t\toutput stdout\n\t}"))
        site.get("/e500", host="example.com")
        site.get("/e404", host="example.com")
        (error,) = site.entries("stderr")  # 404 is a debug entry: not at INFO
        self.assertEqual(
            list(error), ["level", "ts", "logger", "msg", "request", "duration", "status", "err_id", "err_trace"]
        )
        self.assertEqual(
            (error["level"], error["logger"], error["msg"], error["status"], error["duration"], error["request"]["uri"]),
            ("error", "http.log.error.log0", "boom", 500, 0.25, "/e500"),
        )
        self.assertEqual(len(error["err_id"]), 9)
        self.assertEqual([(e["status"], e["level"]) for e in site.entries("stdout")], [(500, "error"), (404, "error")])

    def test_debug_level_shows_4xx_and_handled_errors(self) -> None:
        """At debug level, 4xx errors, even handled ones, are logged as debug entries."""
        site = Site("{\n\tdebug\n}\n" + site_log('\terror /e404 "nope" 404\n\thandle_errors {\n\t\trespond /h "handled"\n\t}\n'))
        site.get("/e404", host="example.com")
        errors = [e for e in site.entries() if e["logger"].startswith("http.log.error")]
        self.assertEqual([(e["level"], e["msg"], e["status"]) for e in errors], [("debug", "nope", 404)])

    def test_error_without_access_log(self) -> None:
        """A site without a log block still logs its errors to http.log.error."""
        site = Site('http://example.com:80 {\n\terror "gone wrong" 502\n}\n')
        site.get("/", host="example.com")
        (entry,) = site.entries()
        self.assertEqual((entry["logger"], entry["msg"], entry["status"]), ("http.log.error", "gone wrong", 502))

    def test_subroute_errors_handled_inside_are_not_server_errors(self) -> None:
        """An error a subroute's own error routes handle is not logged as a server error."""
        config = {"servers": {"srv0": {"listen": [":80"], "routes": [{"handle": [{
            "handler": "subroute",
            "routes": [{"handle": [{"handler": "error", "error": "inner", "status_code": 500}]}],
            "errors": {"routes": [{"handle": [{"handler": "static_response", "body": "fine"}]}]},
        }]}]}}}
        stderr = io.BytesIO()
        context = LoadContext(reactor=Clock())
        logs = LogSystem.from_config(None, context, stderr=stderr, terminal=False)
        app = load_http_app(config, context, logs=logs)
        logs.start()
        response = FakeResponse()
        app.servers["srv0"].handle(make_request("GET", "/"), response)
        self.assertEqual((response.status, response.body), (500, b"fine"))  # the error's status
        self.assertEqual(stderr.getvalue(), b"")

    def test_exception_is_a_500_error_entry(self) -> None:
        """A HandlerError with a cause logs the cause's message with the error's status."""
        clock = Clock()
        stderr = io.BytesIO()
        logs = LogSystem.from_config(None, LoadContext(reactor=clock), stderr=stderr, terminal=False)
        logs.start()

        class Broken:
            def serve(self, request: Any, response: Any, next: Any) -> None:
                raise HandlerError(503, "", cause=OSError("disk on fire"))

        access = logs.server_logger(None)
        server = HTTPServer("srv0", [":80"], RouteList([Route([Broken()])]), access_log=access)
        server.handle(make_request("GET", "/x"), FakeResponse())
        (entry,) = [json.loads(line) for line in stderr.getvalue().splitlines()]
        self.assertEqual((entry["logger"], entry["msg"], entry["status"]), ("http.log.error", "disk on fire", 503))


class EncoderTests(SynchronousTestCase):
    def entry(self, **fields: Any) -> Entry:
        return Entry("info", T0, "http.log.access.log0", "handled request", list(fields.items()) or [
            ("request", {"uri": "/a", "headers": {"X": StringArray(["1", "2"])}}),
            ("duration", Duration(24356)),
            ("size", 8),
        ])

    def test_json_defaults(self) -> None:
        """The JSON encoder's defaults write zap's keys and number formats."""
        self.assertEqual(
            JSONLogEncoder({}).encode(self.entry()),
            b'{"level":"info","ts":1700000000.5,"logger":"http.log.access.log0","msg":"handled request",'
            b'"request":{"uri":"/a","headers":{"X":["1","2"]}},"duration":0.000024356,"size":8}\n',
        )

    def test_json_options(self) -> None:
        """The JSON encoder's key, time, duration, level and line-ending options apply as Caddy."""
        encoder = JSONLogEncoder({
            "message_key": "m", "level_key": "lvl", "name_key": "", "time_format": "rfc3339_nano",
            "duration_format": "string", "level_format": "upper", "line_ending": "|",
        })
        self.assertEqual(
            encoder.encode(self.entry(duration=Duration(1_500_000))),
            b'{"lvl":"INFO","ts":"2023-11-14T22:13:20.5Z","m":"handled request","duration":"1.5ms"}|',
        )
        unknown = JSONLogEncoder({"level_format": "weird", "duration_format": "weird", "time_format": "unix_nano"})
        self.assertEqual(
            unknown.encode(self.entry(duration=Duration(12248))),
            b'{"ts":1700000000500000000,"logger":"http.log.access.log0","msg":"handled request","duration":12248}\n',
        )
        millis = JSONLogEncoder({"time_format": "unix_milli_float", "line_ending": ""})
        self.assertTrue(millis.encode(self.entry(size=1)).startswith(b'{"level":"info","ts":1700000000500,'))
        self.assertTrue(millis.encode(self.entry(size=1)).endswith(b"}\n"))

    def test_console(self) -> None:
        """The console encoder writes tab-separated fields, wall times and coloured levels."""
        self.assertEqual(
            ConsoleLogEncoder({}, time_format="wall_milli", level_format="color").encode(self.entry()),
            b'2023/11/14 22:13:20.500\t\x1b[34mINFO\x1b[0m\thttp.log.access.log0\thandled request\t'
            b'{"request": {"uri": "/a", "headers": {"X": ["1", "2"]}}, "duration": 0.000024356, "size": 8}\n',
        )
        # zap prints the time with fmt.Fprint, %v: Caddy 2.6.2 writes 1.796626382437853e+09
        epoch = ConsoleLogEncoder({"level_format": "lower", "name_key": ""})
        self.assertEqual(
            epoch.encode(Entry("error", T0, "x", "boom", [])),
            b"1.7000000005e+09\terror\tboom\n",
        )

    def test_string_escapes_and_numbers_as_zap(self) -> None:
        """Strings are escaped and floats, NaN, booleans and null written as zap does."""
        self.assertEqual(json_string('a"\\\n\r\t\x08\x0c\x01<>&é'), '"a\\"\\\\\\n\\r\\t\\u0008\\u000c\\u0001<>&é"')
        encoder = JSONLogEncoder({"level_key": "", "time_key": "", "name_key": "", "message_key": ""})
        self.assertEqual(
            encoder.encode(self.entry(a=1e-7, b=2.0, c=1e21, d=float("nan"), e=True, f=None)),
            b'{"a":0.0000001,"b":2,"c":1000000000000000000000,"d":"NaN","e":true,"f":null}\n',
        )

    def test_floats_as_go_formats_them(self) -> None:
        """Logged floats are formatted as Go's strconv 'f' format with shortest precision."""
        for value in (2.4356e-05, 1.5e-09, -3.25e-07, 1700000000.6045291, 1e16, 1.234e17, 9.99e-05, 0.0, 12.0):
            self.assertEqual(JSONLogEncoder({}).value(value), format_float_f(value), value)

    def test_invalid_utf8_on_the_wire_is_replaced(self) -> None:
        """Header bytes that are not UTF-8 are logged as U+FFFD."""
        site = Site(site_log("\trespond ok\n"))
        site.get("/", [("X-Bin", "caf\xc3\xa9 \xff")], host="example.com")
        (line,) = site.lines()
        self.assertIn('"X-Bin":["café \ufffd"]', line)


class FilterTests(SynchronousTestCase):
    def test_filtered_fields(self) -> None:
        """Each filter (ip_mask, hash, delete, query, rename, regexp, replace) edits its field."""
        site = Site(site_log(
            "\trespond ok\n",
            "log {\n\t\tformat filter {\n\t\t\twrap json\n\t\t\tfields {\n"
            "\t\t\t\trequest>remote_ip ip_mask {\n\t\t\t\t\tipv4 16\n\t\t\t\t\tipv6 64\n\t\t\t\t}\n"
            "\t\t\t\trequest>headers>X-Token hash\n"
            "\t\t\t\trequest>headers>X-Del delete\n"
            "\t\t\t\trequest>uri query {\n\t\t\t\t\treplace token REDACTED\n\t\t\t\t\thash session\n\t\t\t\t\tdelete debug\n\t\t\t\t}\n"
            "\t\t\t\tresp_headers>Server rename server_name\n"
            '\t\t\t\trequest>host regexp ^(www)\\. "$1-"\n'
            "\t\t\t\tuser_id replace anonymous\n"
            "\t\t\t}\n\t\t}\n\t}",
            host="http://:80",
        ))
        site.get(
            "/p?token=t&session=s1&debug=1&z=a+b&a=%41",
            {"X-Token": "secret", "X-Del": "1"},
            host="www.example.com",
            remote=("10.1.2.3", 4000),
        )
        (line,) = site.lines()
        self.assertEqual(
            line.partition('"request":')[2],
            '{"remote_ip":"10.1.0.0","remote_port":"4000","proto":"HTTP/1.1","method":"GET",'
            '"host":"www-example.com","uri":"/p?a=A&session=e8bc163c&token=REDACTED&z=a+b",'
            '"headers":{"X-Token":["2bb80d53"]}},"user_id":"anonymous","duration":0.25,"size":2,'
            '"status":200,"resp_headers":{"server_name":["Caddy"],"Content-Type":["text/plain; charset=utf-8"]}}',
        )

    def test_filtered_object_is_taken_whole(self) -> None:
        """A filter on an object leaves it whole; filters below a filtered path do not apply."""
        encoder = FilterLogEncoder(JSONLogEncoder({"time_key": "", "level_key": "", "message_key": ""}), {
            "request>headers": RegexpFilter("x", "y"),  # not a string: left alone
            "request>headers>A": HashFilter(),  # below a filtered object: not applied
        })
        entry = Entry("info", T0, "", "", [("request", {"headers": {"A": StringArray(["x"])}})])
        self.assertEqual(encoder.encode(entry), b'{"request":{"headers":{"A":["x"]}}}\n')

    def test_ip_mask(self) -> None:
        """ip_mask masks IPv4, IPv6, ports and lists; no mask for the family gives "<nil>"."""
        mask = IPMaskFilter(24, 32).mask
        self.assertEqual(mask("192.168.1.77"), "192.168.1.0")
        self.assertEqual(mask("[2001:db8:1:2::9]:443"), "[2001:db8::]:443")
        self.assertEqual(mask("10.0.0.9, 10.9.9.9:80 ,nonsense"), "10.0.0.0, 10.9.9.0:80, nonsense")
        self.assertEqual(mask("::ffff:10.1.2.3"), "10.1.2.0")
        self.assertEqual(IPMaskFilter(16, 0).mask("2001:db8::1"), "<nil>")  # Go: no mask for the family

    def test_query(self) -> None:
        """The query filter replaces, hashes and deletes parameters, re-encoding as Go does."""
        query = QueryFilter([("replace", "a", "R"), ("hash", "h", ""), ("delete", "d", "")])
        self.assertEqual(query.rewrite("/x?d=1&b=%20+2&a=1&a=2&h=v"), "/x?a=R&a=R&b=++2&h=" + "4c94485e")
        self.assertEqual(query.rewrite("/x?d=1"), "/x")
        self.assertEqual(query.rewrite("/%zz?a=1"), "/%zz?a=1")
        self.assertEqual(query.rewrite("/caf%C3%A9/é?"), "/caf%C3%A9/%C3%A9?")

    def test_cookie(self) -> None:
        """The cookie filter replaces, deletes and hashes cookies, joining them into one value."""
        cookies = CookieFilter([("replace", "sid", "x"), ("delete", "tracking", ""), ("hash", "h", "")])
        self.assertEqual(
            cookies.filter("Cookie", StringArray(['sid=abc; tracking=1; other="a b"', "h=v"])),
            ("Cookie", StringArray(['sid=x; other="a b"; h=4c94485e'])),
        )
        self.assertEqual(cookies.filter("Cookie", StringArray()), ("Cookie", StringArray()))
        self.assertEqual(cookies.filter("Cookie", "sid=1"), ("Cookie", "sid=1"))

    def test_bad_filter_config(self) -> None:
        """Bad filter configs fail with Caddy's messages, a missing wrap encoder included."""
        for fields, message in [
            ({"x": {"filter": "regexp", "regexp": "("}}, "error parsing regexp"),
            ({"x": {"filter": "query", "actions": [{"type": "bogus", "parameter": "a"}]}}, "invalid action type"),
            ({"x": {"filter": "nope"}}, "module not registered: caddy.logging.encoders.filter.nope"),
        ]:
            config = {"logs": {"l": {"encoder": {"format": "filter", "wrap": {"format": "json"}, "fields": fields}}}}
            error = self.assertRaises(ConfigError, LogSystem.from_config, config)
            self.assertIn(message, str(error))
        error = self.assertRaises(ConfigError, LogSystem.from_config, {"logs": {"l": {"encoder": {"format": "filter"}}}})
        self.assertEqual(str(error), "setting up custom log 'l': missing \"wrap\" (must specify an underlying encoder)")


class LogConfigTests(SynchronousTestCase):
    def test_bad_configs(self) -> None:
        """Bad log configs fail with Caddy's messages."""
        cases = [
            ({"default": {"level": "LOUD"}}, "setting up default log: unrecognized log level: LOUD"),
            ({"a": {"include": ["x"], "exclude": ["x"]}}, "include and exclude must not intersect, but found x in both lists"),
            ({"a": {"include": ["x"], "exclude": ["y"]}}, "check 'x' in include"),
            ({"a": {"writer": {"output": "carrier-pigeon"}}}, "module not registered: caddy.logging.writers.carrier-pigeon"),
            ({"a": {"encoder": {"format": "xml"}}}, "module not registered: caddy.logging.encoders.xml"),
            ({"a": {"writer": {"output": "net", "address": "tcp/host:1-2"}}}, "multiple ports not supported"),
        ]
        for logs, message in cases:
            error = self.assertRaises(ConfigError, LogSystem.from_config, {"logs": logs})
            self.assertIn(message, str(error))

    def test_levels_discard_and_shared_writers(self) -> None:
        """Discarding logs are dropped, logs on one output share a writer, levels filter."""
        stdout = io.BytesIO()
        logs = LogSystem.from_config({"logs": {
            "default": {"writer": {"output": "discard"}},
            "warn": {"writer": {"output": "stdout"}, "level": "WARN", "encoder": {"format": "json", "time_key": ""}},
            "all": {"writer": {"output": "stdout"}, "level": "debug", "include": ["app"],
                    "encoder": {"format": "json", "time_key": ""}},
            "gone": {"writer": {"output": "discard"}},
        }}, stdout=stdout)
        self.assertEqual([log.name for log in logs.logs], ["warn", "all"])
        self.assertIs(logs.logs[0].writer, logs.logs[1].writer)
        logs.start()
        self.assertFalse(logs.enabled("other", "info"))
        self.assertTrue(logs.enabled("app.x", "debug"))
        logs.emit("app.x", "debug", "d", [])
        logs.emit("other", "error", "e", [("n", 1)])
        self.assertEqual(
            stdout.getvalue(),
            b'{"level":"debug","logger":"app.x","msg":"d"}\n{"level":"error","logger":"other","msg":"e","n":1}\n',
        )

    def test_default_encoder_follows_the_terminal(self) -> None:
        """The default encoder is JSON, or console when writing to a terminal."""
        for terminal, expected in [(False, b'{"level":"info","ts":1700000000.5,"logger":"x","msg":"m"}\n'),
                                   (True, b"2023/11/14 22:13:20.500\t\x1b[34mINFO\x1b[0m\tx\tm\n")]:
            stderr = io.BytesIO()
            logs = LogSystem.from_config(None, stderr=stderr, terminal=terminal, clock=lambda: T0)
            logs.start()
            logs.emit("x", "info", "m", [])
            self.assertEqual(stderr.getvalue(), expected)

    def test_sampling(self) -> None:
        """Sampling keeps the first entries of each interval, then every Nth."""
        stdout = io.BytesIO()
        clock = Clock()
        logs = LogSystem.from_config({"logs": {"s": {
            "writer": {"output": "stdout"}, "encoder": {"format": "console", "time_key": "", "level_format": "lower"},
            "sampling": {"interval": 1_000_000_000, "first": 2, "thereafter": 3},
        }, "default": {"writer": {"output": "discard"}}}}, stdout=stdout, clock=clock.seconds)
        logs.start()
        for i in range(9):
            logs.emit("x", "info", "m", [("i", i)])
        clock.advance(1)
        logs.emit("x", "info", "m", [("i", 9)])
        self.assertEqual([line.rsplit(" ", 1)[1] for line in stdout.getvalue().decode().splitlines()],
                         ["0}", "1}", "4}", "7}", "9}"])


class FileWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.path = os.path.join(self.dir, "logs", "access.log")
        self.now = T0

    def writer(self, **kw: Any) -> FileWriter:
        writer = FileWriter(self.path, clock=lambda: self.now, **kw)
        self.addCleanup(writer.close)
        return writer

    def test_appends_and_creates_directories(self) -> None:
        """At its first line the file writer creates directories (0744) and the file (0644), as
        Caddy 2.6.2's lumberjack does (less the umask), and appends on reopen."""
        writer = self.writer()
        writer.open()
        self.assertFalse(os.path.exists(self.dir))  # lumberjack opens at the first write
        writer.write(b"one\n")
        writer.close()
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o644 & ~umask)
        self.assertEqual(os.stat(os.path.dirname(self.path)).st_mode & 0o777, 0o744 & ~umask)
        writer.open()
        writer.write(b"two\n")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"one\ntwo\n")

    def test_roll_disabled_needs_the_directory(self) -> None:
        """With rolling off, the directory must exist and the file grows past max_bytes."""
        self.assertRaises(FileNotFoundError, self.writer(roll=False).open)
        os.makedirs(os.path.dirname(self.path))
        writer = self.writer(roll=False, max_bytes=4)
        writer.open()
        writer.write(b"12345\n")
        writer.write(b"6\n")
        self.assertEqual(os.listdir(os.path.dirname(self.path)), ["access.log"])

    def test_rolls_by_size_keeps_and_gzips(self) -> None:
        """Full files roll to gzipped timestamped backups, keeping roll_keep of them."""
        writer = self.writer(max_bytes=10, roll_keep=2)
        writer.open()
        for i in range(4):
            writer.write(b"line %d..\n" % i)  # 10 bytes: each write fills a file
            self.now += 1
        directory = os.path.dirname(self.path)
        self.assertEqual(
            sorted(os.listdir(directory)),
            ["access-2023-11-14T22-13-22.500.log.gz", "access-2023-11-14T22-13-23.500.log.gz", "access.log"],
        )
        with gzip.open(os.path.join(directory, "access-2023-11-14T22-13-23.500.log.gz")) as f:
            self.assertEqual(f.read(), b"line 2..\n")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"line 3..\n")

    def test_old_backups_are_removed(self) -> None:
        """Backups older than roll_keep_days are removed at the next roll."""
        writer = self.writer(max_bytes=10, roll_gzip=False, roll_keep_days=1)
        writer.open()
        writer.write(b"0123456789")
        writer.write(b"a")  # rolls: the first backup
        self.now += 2 * 86400
        writer.write(b"0123456789")  # rolls again, and the first backup is now too old
        self.assertEqual(sorted(os.listdir(os.path.dirname(self.path))), ["access-2023-11-16T22-13-20.500.log", "access.log"])


    def test_existing_file_rolls_at_open_if_the_first_line_would_fill_it(self) -> None:
        """An existing file rolls when opened if size + the first line reaches roll_size (>=),
        while an open file rolls only when a line would take it past the size (>)."""
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "wb") as f:
            f.write(b"123456")
        writer = self.writer(max_bytes=10, roll_gzip=False)
        writer.write(b"abcd")  # 6 + 4 >= 10: rolled before writing
        directory = os.path.dirname(self.path)
        self.assertEqual(sorted(os.listdir(directory)), ["access-2023-11-14T22-13-20.500.log", "access.log"])
        with open(os.path.join(directory, "access-2023-11-14T22-13-20.500.log"), "rb") as f:
            self.assertEqual(f.read(), b"123456")
        writer.write(b"efghij")  # 4 + 6 = 10 is not past the size: same file
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"abcdefghij")
        self.assertEqual(len(os.listdir(directory)), 2)

    def test_line_longer_than_the_size_is_dropped(self) -> None:
        """A line longer than roll_size is refused (lumberjack's error); the next one is written."""
        writer = self.writer(max_bytes=10)
        writer.write(b"01234567890\n")
        self.assertFalse(os.path.exists(self.path))
        writer.write(b"short\n")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"short\n")

    def test_backup_name_in_local_time(self) -> None:
        """roll_local_time names backups in local time (here UTC+1), with milliseconds."""
        self.patch(time, "localtime", lambda when=None: time.gmtime((when or 0) + 3600))
        writer = self.writer(max_bytes=4, roll_gzip=False, roll_local_time=True)
        self.now = T0 + 0.0421
        writer.write(b"abcd")
        writer.write(b"e")
        self.assertEqual(sorted(os.listdir(os.path.dirname(self.path))), ["access-2023-11-14T23-13-20.542.log", "access.log"])

    def test_compression_runs_in_a_thread_and_keeps_the_mode(self) -> None:
        """Rolled files are gzipped by the mill run through in_thread: the old file's mode, its
        exact bytes, and no name or time in the gzip header (as Go writes it)."""
        queued: list[Any] = []
        writer = self.writer(max_bytes=8, in_thread=queued.append)
        writer.write(b"first.\n")
        os.chmod(self.path, 0o640)
        writer.write(b"second\n")
        directory = os.path.dirname(self.path)
        backup = os.path.join(directory, "access-2023-11-14T22-13-20.500.log")
        self.assertTrue(os.path.exists(backup))  # not compressed yet: the mill has not run
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640)  # the new file takes the old mode
        for call in queued:
            call()
        self.assertEqual(sorted(os.listdir(directory)), ["access-2023-11-14T22-13-20.500.log.gz", "access.log"])
        with open(backup + ".gz", "rb") as f:
            raw = f.read()
        self.assertEqual(raw[3:8], b"\x00\x00\x00\x00\x00")  # no FNAME flag, mtime 0
        self.assertEqual(gzip.decompress(raw), b"first.\n")
        self.assertEqual(os.stat(backup + ".gz").st_mode & 0o777, 0o640 & ~self._umask())

    def test_keep_counts_a_file_and_its_gz_once_and_removes_the_oldest(self) -> None:
        """roll_keep keeps the newest backups whether gzipped or not; older ones are removed,
        and files not named like backups are left alone."""
        directory = os.path.dirname(self.path)
        os.makedirs(directory)
        names = ["access-2023-11-10T00-00-00.000.log.gz", "access-2023-11-11T00-00-00.000.log",
                 "access-2023-11-12T00-00-00.000.log.gz", "access-notes.log", "other.log"]
        for name in names:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(b"x")
        writer = self.writer(max_bytes=4, roll_keep=2, roll_gzip=False)
        writer.write(b"abcd")
        writer.write(b"e")  # rolls: access-2023-11-14T22-13-20.500.log
        self.assertEqual(sorted(os.listdir(directory)), [
            "access-2023-11-12T00-00-00.000.log.gz", "access-2023-11-14T22-13-20.500.log", "access-notes.log",
            "access.log", "other.log"])

    def _umask(self) -> int:
        umask = os.umask(0)
        os.umask(umask)
        return umask


class NetWriterTests(SynchronousTestCase):
    def test_lines_wait_for_the_connection_then_fall_back_and_redial(self) -> None:
        """The net writer queues until connected, falls back while lost, and redials later."""
        reactor = MemoryServingReactor()
        fallback = io.BytesIO()
        writer = NetWriter("tcp/127.0.0.1:5140", 3.0, reactor=reactor, fallback=StdWriter("stderr", fallback))
        self.assertEqual(writer.key, "127.0.0.1:5140")
        writer.open()
        writer.write(b"early\n")
        host, port, factory, timeout, _ = reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 5140, 3.0))
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        reactor.advance(0)
        writer.write(b"late\n")
        self.assertEqual(transport.value(), b"early\nlate\n")
        protocol.connectionLost(Failure(ConnectionDone()))
        writer.write(b"lost\n")
        self.assertEqual(fallback.getvalue(), b"lost\n")
        reactor.advance(10)
        writer.write(b"again\n")
        self.assertEqual(len(reactor.tcpClients), 2)
        writer.close()

    def test_udp(self) -> None:
        """UDP addresses and negative dial timeouts are config errors."""
        reactor = MemoryServingReactor()
        self.assertRaises(ConfigError, NetWriter, "udp/logs.example:514", reactor=reactor)
        self.assertRaises(ConfigError, NetWriter, "tcp/host:514", -1.0)


class CustomLogTests(SynchronousTestCase):
    def test_broken_encoder_is_reported_not_raised(self) -> None:
        """An encoder failure is logged and the entry dropped, not raised to the caller."""
        class Broken:
            def encode(self, entry: Entry) -> bytes:
                raise ValueError("no")

        stream = io.BytesIO()
        log = CustomLog("x", StdWriter("stdout", stream), Broken())
        log({"log_namespace": "a", "caddy_level": "info", "caddy_msg": "m", "log_time": T0})
        self.assertEqual(stream.getvalue(), b"")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class ServiceTests(TestCase):
    """One real server on 127.0.0.1 writing its access log to a file."""

    timeout = 30

    @inlineCallbacks
    def test_access_log_file(self) -> Any:
        """A real server writes Caddy's access line for a request to the configured log file."""
        import treq

        from txcaddy import fromCaddyfile

        path = os.path.abspath(self.mktemp())
        service = fromCaddyfile(
            "http://:0 {\n\tbind 127.0.0.1\n"
            f"\tlog {{\n\t\toutput file {path}\n\t\tformat json\n\t}}\n"
            '\trespond "hello" 201\n}\n',
            reactor=default_reactor(),
        )
        service.startService()
        stopped = False
        try:
            (address,) = next(iter(service.boundAddresses().values()))
            headers: dict[bytes | str, bytes | str] = {"X-A": "b"}
            response = yield treq.get(f"http://127.0.0.1:{address.port}/x?y=1", headers=headers, persistent=False)
            body = yield response.content()
            self.assertEqual((response.code, body), (201, b"hello"))
            yield service.stopService()
            stopped = True
        finally:
            if not stopped:
                yield service.stopService()
        with open(path) as f:
            (line,) = f.read().splitlines()
        entry = json.loads(line)
        self.assertEqual(list(entry), ["level", "ts", "logger", "msg", "request", "user_id", "duration", "size", "status", "resp_headers"])
        self.assertEqual(list(entry["request"]), ["remote_ip", "remote_port", "proto", "method", "host", "uri", "headers"])
        self.assertEqual(
            (entry["level"], entry["logger"], entry["msg"], entry["status"], entry["size"], entry["request"]["uri"],
             entry["request"]["remote_ip"], entry["request"]["headers"]["X-A"], entry["resp_headers"]),
            ("info", "http.log.access.log0", "handled request", 201, 5, "/x?y=1", "127.0.0.1", ["b"],
             {"Server": ["Caddy"], "Content-Type": ["text/plain; charset=utf-8"]}),
        )
        self.assertGreater(entry["duration"], 0)


class ForwardTests(SynchronousTestCase):
    def test_forwarding_system_writes_nothing_and_hands_entries_on(self) -> None:
        """With ``forward`` set (a worker process), entries the logs want go to it with their
        time, no writer is opened, and ``enabled`` still follows the configured logs."""
        import io

        from txcaddy.logs import LogSystem

        out = io.StringIO()
        system = LogSystem.from_config({"logs": {"default": {"level": "WARN"}}}, stderr=out, clock=lambda: 7.0)
        sent: list[tuple[Any, ...]] = []
        system.forward = lambda *entry: sent.append(entry)
        system.start()
        self.assertTrue(system.enabled("http.log.error", "error"))
        self.assertFalse(system.enabled("http.log.error", "info"))
        system.emit("http.log.error", "error", "boom", [("status", 502)])
        system.stop()
        self.assertEqual(sent, [("http.log.error", "error", "boom", [("status", 502)], 7.0)])
        self.assertEqual(out.getvalue(), "")
