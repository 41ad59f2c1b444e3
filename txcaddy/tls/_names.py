"""TLS versions and cipher suites by the names Caddy's config and logs use (Go's), OpenSSL's
names for the same things, and their IANA numbers (what Go's access log writes): one table."""

from __future__ import annotations

from OpenSSL import SSL

__all__ = [
    "CIPHER_SUITE_IDS",
    "DEFAULT_CIPHER_SUITES",
    "GO_CIPHER_NAMES",
    "OPENSSL_CIPHER_NAMES",
    "PROTOCOLS",
    "VERSION_IDS",
    "VERSION_NAMES",
    "VERSION_ORDER",
]

#: (Go's name, OpenSSL's name, IANA number) of every suite Caddy's config may name.
_SUITES = (
    ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", 0x1301),
    ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", 0x1302),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", 0x1303),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", 0xC02C),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384", 0xC030),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", 0xC02B),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256", 0xC02F),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", 0xCCA9),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305", 0xCCA8),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA", 0xC009),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA", 0xC00A),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA", 0xC013),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA", 0xC014),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256", 0x009C),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384", 0x009D),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA", 0x002F),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA", 0x0035),
)

#: Go's TLS 1.2 suite names → OpenSSL's (TLS 1.3 suites are OpenSSL's defaults, not listed).
OPENSSL_CIPHER_NAMES = {go: openssl for go, openssl, number in _SUITES if number > 0x1303}
#: OpenSSL's names (of every version) → Go's, for ``{http.request.tls.cipher_suite}``.
GO_CIPHER_NAMES = {openssl: go for go, openssl, _ in _SUITES}
#: Either name → the IANA number.
CIPHER_SUITE_IDS = {**{go: n for go, _, n in _SUITES}, **{openssl: n for _, openssl, n in _SUITES}}

#: Caddy's default TLS 1.2 suites, in its order (with AES-NI, which every machine we run on has).
DEFAULT_CIPHER_SUITES = tuple(go for go, _, number in _SUITES[3:9])

#: Caddy's protocol names and OpenSSL's version constants (the ones Caddy accepts).
PROTOCOLS = {"tls1.2": SSL.TLS1_2_VERSION, "tls1.3": SSL.TLS1_3_VERSION}
#: OpenSSL's version names → Caddy's.
VERSION_NAMES = {"TLSv1.3": "tls1.3", "TLSv1.2": "tls1.2", "TLSv1.1": "tls1.1", "TLSv1": "tls1.0"}
VERSION_ORDER = {"tls1.0": 1, "tls1.1": 2, "tls1.2": 3, "tls1.3": 4}
#: Caddy's (and OpenSSL's) version names → the protocol number Go logs.
VERSION_IDS = {"tls1.0": 0x0301, "tls1.1": 0x0302, "tls1.2": 0x0303, "tls1.3": 0x0304,
               "tlsv1": 0x0301, "tlsv1.1": 0x0302, "tlsv1.2": 0x0303, "tlsv1.3": 0x0304}
