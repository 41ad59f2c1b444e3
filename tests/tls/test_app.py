"""Tests for txcaddy.tls.app.TLSApp: what a reload carries from the running TLS app."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.tls.app import TLSApp


def _certificate(name: str, managed: bool) -> Any:
    return SimpleNamespace(hash=f"h-{name}-{managed}", names=(name,), tags=(), managed=managed)


class AdoptCertificatesTests(SynchronousTestCase):
    def test_managed_certificates_for_managed_names_are_adopted(self) -> None:
        """Managed certificates whose names the new app manages move over; others do not."""
        old = TLSApp.load({})
        kept, dropped, loaded = _certificate("a.test", True), _certificate("b.test", True), _certificate("a.test", False)
        for certificate in (kept, dropped, loaded):
            old.cache.add(certificate)
        new = TLSApp.load({})
        new.managed = ["a.test"]
        new.adopt_certificates(old)
        self.assertEqual(list(new.cache), [kept])

    def test_on_demand_adopts_every_managed_certificate(self) -> None:
        """With on-demand TLS every managed certificate is adopted (names are not known ahead)."""
        old = TLSApp.load({})
        certificate = _certificate("x.test", True)
        old.cache.add(certificate)
        new = TLSApp.load({"automation": {"policies": [{"on_demand": True}]}})
        new.adopt_certificates(old)
        self.assertEqual(list(new.cache), [certificate])
