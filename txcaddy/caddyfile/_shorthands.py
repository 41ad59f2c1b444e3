"""Caddyfile placeholder shorthands, expanded in site blocks at adapt time.

``{host}``, ``{header.X}`` and the rest are written out in full
(``{http.request.host}``, ...) before any directive sees its tokens, as
Caddy's httptype.go does with its ``strings.Replacer`` and regexps.
"""

from __future__ import annotations

import re

_SHORTHANDS = (
    ("{dir}", "{http.request.uri.path.dir}"),
    ("{file}", "{http.request.uri.path.file}"),
    ("{host}", "{http.request.host}"),
    ("{hostport}", "{http.request.hostport}"),
    ("{port}", "{http.request.port}"),
    ("{method}", "{http.request.method}"),
    ("{path}", "{http.request.uri.path}"),
    ("{query}", "{http.request.uri.query}"),
    ("{remote}", "{http.request.remote}"),
    ("{remote_host}", "{http.request.remote.host}"),
    ("{remote_port}", "{http.request.remote.port}"),
    ("{scheme}", "{http.request.scheme}"),
    ("{uri}", "{http.request.uri}"),
    ("{tls_cipher}", "{http.request.tls.cipher_suite}"),
    ("{tls_version}", "{http.request.tls.version}"),
    ("{tls_client_fingerprint}", "{http.request.tls.client.fingerprint}"),
    ("{tls_client_issuer}", "{http.request.tls.client.issuer}"),
    ("{tls_client_serial}", "{http.request.tls.client.serial}"),
    ("{tls_client_subject}", "{http.request.tls.client.subject}"),
    ("{tls_client_certificate_pem}", "{http.request.tls.client.certificate_pem}"),
    ("{tls_client_certificate_der_base64}", "{http.request.tls.client.certificate_der_base64}"),
    ("{upstream_hostport}", "{http.reverse_proxy.upstream.hostport}"),
)
_SHORTHAND_MAP = dict(_SHORTHANDS)
# Go's strings.NewReplacer: one left-to-right pass, no re-scanning of output.
_SHORTHAND_RE = re.compile("|".join(re.escape(k) for k, _ in _SHORTHANDS))
_W = r"[0-9A-Za-z_-]"
_REGEXP_SHORTHANDS = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (rf"\{{header\.({_W}*)\}}", r"{http.request.header.\1}"),
        (rf"\{{cookie\.({_W}*)\}}", r"{http.request.cookie.\1}"),
        (rf"\{{labels\.({_W}*)\}}", r"{http.request.host.labels.\1}"),
        (rf"\{{path\.({_W}*)\}}", r"{http.request.uri.path.\1}"),
        (rf"\{{file\.({_W}*)\}}", r"{http.request.uri.path.file.\1}"),
        (rf"\{{query\.({_W}*)\}}", r"{http.request.uri.query.\1}"),
        (rf"\{{re\.({_W}*)\.({_W}*)\}}", r"{http.regexp.\1.\2}"),
        (rf"\{{vars\.({_W}*)\}}", r"{http.vars.\1}"),
        (r"\{rp\.([0-9A-Za-z_\-.]*)\}", r"{http.reverse_proxy.\1}"),
        (r"\{err\.([0-9A-Za-z_\-.]*)\}", r"{http.error.\1}"),
        (rf"\{{file_match\.({_W}*)\}}", r"{http.matchers.file.\1}"),
    )
)


def expand_shorthands(text: str) -> str:
    """Caddyfile placeholder shorthands (``{host}``, ``{header.X}``, ...) in full."""
    if "{" not in text:
        return text
    text = _SHORTHAND_RE.sub(lambda m: _SHORTHAND_MAP[m.group(0)], text)
    for pattern, replacement in _REGEXP_SHORTHANDS:
        text = pattern.sub(replacement, text)
    return text


def was_replaced_placeholder_shorthand(token: str) -> str:
    """The shorthand a token was expanded from, if it is exactly one (for warnings)."""
    bare = token.strip("{}")
    for short, full in _SHORTHANDS:
        if bare == full.strip("{}"):
            return short
    return ""
