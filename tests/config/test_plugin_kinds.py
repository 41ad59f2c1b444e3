"""Plugins of every kind (docs/plugins.md): handler, matcher, load-balancing policy, upstream
source, placeholders, storage, log writer and encoder, each from a Caddyfile (through the
plugin's own ``caddyfile`` unmarshaller) and from JSON, and a plugin whose runtime object lacks
its namespace's interface refused with a ConfigError.

The plugin is ``fixtures/txcaddy_kinds_plugin.py``, copied into a temporary ``twisted/plugins``
folder on ``sys.path`` as an installed package would put it.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

import twisted.plugins
from tests.reverseproxy.test_handler import FakeTransport
from txcaddy import _commands
from txcaddy.caddyfile import registry as caddyfile_registry
from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.errors import ConfigError as CaddyfileError
from txcaddy.config import _resolvers, registry
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.app import load_http_app
from txcaddy.logs import LogSystem
from txcaddy.reverseproxy.handler import load_reverse_proxy
from txcaddy.service import plain_json
from txcaddy.testing import FakeResponse, make_request, serve
from txcaddy.tls.internalca import CertificateAuthority
from txcaddy.tls.storage import storage_from_config

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "txcaddy_kinds_plugin.py")
PLUGIN_MODULE = "twisted.plugins.txcaddy_kinds_plugin"


class PluginFolderMixin:
    """Puts a plugin file in a temporary ``twisted/plugins`` folder for one test and makes
    txcaddy forget everything it registered from it afterwards."""

    def install_plugin(self: Any, source: str, module: str) -> None:
        root = os.path.abspath(self.mktemp())
        plugins = os.path.join(root, "twisted", "plugins")
        os.makedirs(plugins)
        shutil.copy(source, os.path.join(plugins, module.rpartition(".")[2] + ".py"))
        sys.path.insert(0, root)
        twisted.plugins.__path__.append(plugins)
        self.addCleanup(sys.path.remove, root)
        self.addCleanup(twisted.plugins.__path__.remove, plugins)
        self.patch(caddyfile_registry, "DEFAULT_DIRECTIVE_ORDER", caddyfile_registry.DEFAULT_DIRECTIVE_ORDER)
        self.addCleanup(self._forget, module)
        registry._loaded = False
        _resolvers.reset_placeholder_providers()

    def _forget(self, module: str) -> None:
        ids = set(registry.PLUGINS) | {p.moduleID for p in registry._discovered or ()}
        for module_id in ids:
            registry.MODULES.pop(module_id, None)
            registry.SCHEMAS.pop(module_id, None)
            caddyfile_registry.UNMARSHALLERS.pop(module_id, None)
            namespace, _, name = module_id.rpartition(".")
            if namespace == "http.handlers":
                caddyfile_registry.DIRECTIVES.pop(name, None)
            if namespace == "http.matchers":
                caddyfile_registry.MATCHERS.pop(name, None)
        registry.PLUGINS.clear()
        registry._loaded = False
        registry._discovered = None
        _resolvers.reset_placeholder_providers()
        sys.modules.pop(module, None)

    def plugin(self) -> Any:
        """The plugin's module, as txcaddy imported it (its LINES and STORES)."""
        return sys.modules[PLUGIN_MODULE]


def adapted(caddyfile: str) -> dict[str, Any]:
    config, warnings = adapt(caddyfile)
    return plain_json(config)


def routes_of(config: dict[str, Any]) -> Any:
    return config["apps"]["http"]["servers"]["srv0"]["routes"]


class KindsTestCase(PluginFolderMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.install_plugin(FIXTURE, PLUGIN_MODULE)


class HandlerAndMatcherTests(KindsTestCase):
    def test_handler_directive_from_the_plugin(self) -> None:
        """The plugin's directive, ordered before respond by its directive_order, serves."""
        config = adapted(':80 {\n\trespond "not reached"\n\tshout hello\n}\n')
        handlers = [h for route in routes_of(config) for h in route["handle"]]
        self.assertEqual(handlers[0], {"handler": "shout", "text": "hello"})
        response = serve(LoadContext().load_routes(routes_of(config)), make_request("GET", "/"))
        self.assertEqual(response.body, b"HELLO!\n")

    def test_matcher_from_the_plugin(self) -> None:
        """A named matcher of the plugin's type decides which handler answers."""
        config = adapted(":80 {\n\t@short path_len 3\n\tshout @short hi\n\trespond long\n}\n")
        self.assertIn({"path_len": 3}, routes_of(config)[0]["match"])
        routes = LoadContext().load_routes(routes_of(config))
        self.assertEqual(serve(routes, make_request("GET", "/ab")).body, b"HI!\n")
        self.assertEqual(serve(routes, make_request("GET", "/abcdef")).body, b"long")

    def test_handler_and_matcher_from_json(self) -> None:
        """The same modules load from JSON."""
        routes = LoadContext().load_routes(
            [{"match": [{"path_len": 2}], "handle": [{"handler": "shout", "text": "j"}]}]
        )
        self.assertEqual(serve(routes, make_request("GET", "/a")).body, b"J!\n")
        self.assertEqual(serve(routes, make_request("GET", "/abc")).body, b"")


class ReverseProxyTests(KindsTestCase):
    def load_proxy(self, handler_config: dict[str, Any]) -> tuple[Any, FakeTransport]:
        transport = FakeTransport()
        self.patch(registry, "MODULES", dict(registry.MODULES))
        registry.MODULES["http.reverse_proxy.transport.http"] = lambda cfg, ctx: transport
        context = LoadContext(reactor=MemoryReactorClock())
        self.addCleanup(context.unload)
        config = {k: v for k, v in handler_config.items() if k != "handler"}
        return load_reverse_proxy(config, context), transport

    def proxied_to(self, handler_config: dict[str, Any]) -> str:
        handler, transport = self.load_proxy(handler_config)
        handler.serve(make_request("GET", "/"), FakeResponse(), lambda rq, rs: None)
        (exchange,) = transport.exchanges
        return f"{exchange.address.host}:{exchange.address.port}"

    def test_lb_policy_from_the_plugin(self) -> None:
        """``lb_policy nth -1`` goes through the plugin's unmarshaller and picks the last upstream."""
        config = adapted(
            ":80 {\n\treverse_proxy 10.0.0.1:80 10.0.0.2:80 10.0.0.3:80 {\n\t\tlb_policy nth -1\n\t}\n}\n"
        )
        (handler,) = routes_of(config)[0]["handle"]
        self.assertEqual(handler["load_balancing"]["selection_policy"], {"policy": "nth", "index": -1})
        self.assertEqual(self.proxied_to(handler), "10.0.0.3:80")

    def test_lb_policy_from_json(self) -> None:
        """The policy loads from JSON and chooses by its own rule."""
        handler = {
            "upstreams": [{"dial": "10.0.0.1:80"}, {"dial": "10.0.0.2:80"}],
            "load_balancing": {"selection_policy": {"policy": "nth", "index": 1}},
        }
        self.assertEqual(self.proxied_to(handler), "10.0.0.2:80")

    def test_dynamic_upstreams_from_the_plugin(self) -> None:
        """``dynamic fixed <dial>`` becomes the plugin's source, which gives the upstream dialled."""
        config = adapted(":80 {\n\treverse_proxy {\n\t\tdynamic fixed 10.0.0.7:8080\n\t}\n}\n")
        (handler,) = routes_of(config)[0]["handle"]
        self.assertEqual(handler["dynamic_upstreams"], {"source": "fixed", "dials": ["10.0.0.7:8080"]})
        self.assertEqual(self.proxied_to(handler), "10.0.0.7:8080")

    def test_dynamic_upstreams_from_json(self) -> None:
        """The source loads from JSON."""
        handler = {"dynamic_upstreams": {"source": "fixed", "dials": ["10.0.0.8:81"]}}
        self.assertEqual(self.proxied_to(handler), "10.0.0.8:81")

    def test_unknown_policy_is_still_caddys_error(self) -> None:
        """A policy neither built in nor a plugin's is reported as Caddy reports it."""
        with self.assertRaises(CaddyfileError) as caught:
            adapt(":80 {\n\treverse_proxy 10.0.0.1:80 {\n\t\tlb_policy nope\n\t}\n}\n")
        self.assertIn("module not registered: http.reverse_proxy.selection_policies.nope", str(caught.exception))


class PlaceholderTests(KindsTestCase):
    def test_plugin_placeholders_in_a_response(self) -> None:
        """``{kinds.*}`` names come from the plugin; a name it does not know stays as written."""
        config = adapted(':80 {\n\trespond "{kinds.upper_path} {kinds.method_length} {kinds.nope}"\n}\n')
        routes = LoadContext().load_routes(routes_of(config))
        self.assertEqual(serve(routes, make_request("POST", "/abc")).body, b"/ABC 4 {kinds.nope}")

    def test_plugin_placeholders_from_json(self) -> None:
        """A JSON static_response body reads the plugin's placeholders too."""
        handler = LoadContext().load_handler({"handler": "static_response", "body": "<{kinds.upper_path}>"})
        self.assertEqual(serve(handler, make_request("GET", "/x")).body, b"</X>")

    def test_builtin_names_are_not_offered_to_plugins(self) -> None:
        """A built-in placeholder keeps its own value source; only unknown names reach plugins."""
        self.assertIsNone(_resolvers._plugin_resolver("http.request.path.x"))
        self.assertIsNotNone(_resolvers._plugin_resolver("kinds.upper_path"))
        value, known = _resolvers.lookup("http.request.method", make_request("PUT", "/"))
        self.assertEqual((value, known), ("PUT", True))


class StorageTests(KindsTestCase):
    def test_storage_option_from_the_plugin(self) -> None:
        """``storage memory { name certs }`` is the plugin's storage; the local CA writes its root there."""
        config = adapted("{\n\tstorage memory {\n\t\tname certs\n\t}\n}\n:80 {\n\trespond ok\n}\n")
        self.assertEqual(config["storage"], {"module": "memory", "name": "certs"})
        clock = Clock()
        storage = storage_from_config(config["storage"], clock)
        self.assertIs(storage, self.plugin().STORES["certs"])
        ca = CertificateAuthority.from_config("local", {}, clock, "pki.certificate_authorities.local")
        done: list[Any] = []
        ca.provision(storage).addBoth(done.append)
        self.assertEqual(done, [None])
        root = self.plugin().STORES["certs"].items[ca.storage_keys.root_certificate]
        self.assertTrue(root.startswith(b"-----BEGIN CERTIFICATE-----"))

    def test_storage_from_json(self) -> None:
        """The storage module loads from a JSON storage object and stores and loads bytes."""
        storage = storage_from_config({"module": "memory", "name": "json"}, Clock())
        got: list[Any] = []
        storage.store("a/b", b"data")
        storage.load("a/b").addCallback(got.append)
        self.assertEqual(got, [b"data"])


class LogTests(KindsTestCase):
    def test_log_writer_and_encoder_from_the_plugin(self) -> None:
        """``output list t1`` and ``format terse %%`` write the access line through the plugin's objects."""
        config = adapted(":80 {\n\tlog {\n\t\toutput list t1\n\t\tformat terse %%\n\t}\n\trespond ok\n}\n")
        (log,) = [v for k, v in config["logging"]["logs"].items() if k != "default"]
        self.assertEqual(log["writer"], {"output": "list", "tag": "t1"})
        self.assertEqual(log["encoder"], {"format": "terse", "mark": "%%"})
        clock = Clock()
        context = LoadContext(reactor=clock)
        logs = LogSystem.from_config(config["logging"], context, stdout=io.BytesIO(), stderr=io.BytesIO(), terminal=False)
        app = load_http_app(config["apps"]["http"], context, logs=logs)
        logs.start()
        self.addCleanup(logs.stop)
        request = make_request("GET", "/")
        request.start = clock.seconds()
        response = FakeResponse()
        app.servers["srv0"].handle(request, response)
        self.assertEqual(response.body, b"ok")
        self.assertEqual(self.plugin().LINES["t1"], [b"%% info http.log.access.log0 handled request\n"])


class InterfaceCheckTests(KindsTestCase):
    def test_policy_not_providing_the_interface(self) -> None:
        """A selection policy plugin whose object is not an ISelectionPolicy is a clean ConfigError."""
        with self.assertRaises(ConfigError) as caught:
            LoadContext().load_module(
                "http.reverse_proxy.selection_policies", {"policy": "wrong"}, "policy")
        self.assertEqual(
            str(caught.exception),
            "config: loading module 'http.reverse_proxy.selection_policies.wrong': the plugin's load() "
            "returned object, which does not provide ISelectionPolicy "
            "(declare it with @implementer(ISelectionPolicy))",
        )

    def test_writer_not_providing_the_interface(self) -> None:
        """A log writer plugin whose object is not an ILogWriter fails the logging config."""
        with self.assertRaises(ConfigError) as caught:
            LogSystem.from_config(
                {"logs": {"x": {"writer": {"output": "wrong"}}}}, LoadContext(), stdout=io.BytesIO(),
                stderr=io.BytesIO(), terminal=False)
        self.assertIn("loading module 'caddy.logging.writers.wrong'", str(caught.exception))
        self.assertIn("returned Shout, which does not provide ILogWriter", str(caught.exception))

    def test_storage_not_providing_the_interface(self) -> None:
        """A storage plugin whose object is not an IStorage is refused by storage_from_config."""
        with self.assertRaises(ConfigError) as caught:
            storage_from_config({"module": "wrong"}, Clock())
        self.assertIn("loading module 'caddy.storage.wrong': the plugin's load() returned object, "
                      "which does not provide IStorage", str(caught.exception))


class ListModulesTests(KindsTestCase):
    def test_plugin_modules_are_non_standard(self) -> None:
        """list-modules lists the plugin's modules after the standard ones, with their count."""
        import argparse

        out, err = io.StringIO(), io.StringIO()
        args = argparse.Namespace(versions=True, packages=True, skip_standard=True)
        self.assertEqual(_commands.cmd_list_modules(args, out, err), 0)
        lines = out.getvalue().splitlines()
        self.assertIn(f"http.reverse_proxy.selection_policies.nth (unknown) {PLUGIN_MODULE}", lines)
        self.assertIn(f"caddy.storage.memory (unknown) {PLUGIN_MODULE}", lines)
        self.assertIn("  Non-standard modules: 10", lines)
