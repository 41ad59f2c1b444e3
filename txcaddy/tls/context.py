"""TLS contexts, for listeners and for upstreams: the one place txcaddy makes OpenSSL connections.

- ``ServerTLS`` (listeners): a server's ``tls_connection_policies`` (``ConnectionPolicy``),
  SNI picking the certificate from the certificate cache, ALPN, client authentication and the
  ``acme-tls/1`` challenge; ``TLSState`` is what a request learns of its connection.
- ``UpstreamTLS`` (``reverse_proxy``'s ``transport http { tls … }``): trust roots, client
  certificates, SNI and ``service_identity`` verification of the upstream's name.

Both are built from Caddy JSON once, at load; per connection they only pick and hand Twisted an
``OpenSSL.SSL.Connection``.  The implementations are in ``_server`` and ``_client``; the names of
versions and suites, shared with the access log, in ``_names``.
"""

from txcaddy.tls._client import UpstreamConnectionCreator, UpstreamTLS
from txcaddy.tls._server import (
    ACME_TLS_ALPN,
    ClientAuthentication,
    ConnectionPolicy,
    HandshakeRefused,
    ServerTLS,
    TLSState,
    load_connection_policies,
)

__all__ = [
    "ACME_TLS_ALPN",
    "ClientAuthentication",
    "ConnectionPolicy",
    "HandshakeRefused",
    "ServerTLS",
    "TLSState",
    "UpstreamConnectionCreator",
    "UpstreamTLS",
    "load_connection_policies",
]
