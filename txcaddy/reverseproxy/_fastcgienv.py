"""The CGI/1.1 environment the ``fastcgi`` transport sends for each request.

Split out of ``_fastcgi`` (the ``fastcgi`` transport), which re-exports ``build_env``.
Follows Caddy 2.6.2's ``modules/caddyhttp/reverseproxy/fastcgi/fastcgi.go`` (``buildEnv``:
the variables, their order, ``split_path`` and the TLS ones) and ``client.go`` (the
``CONTENT_LENGTH`` Go's request carries).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from txcaddy._go.http import remote_addr
from txcaddy.config.placeholders import replace_all_global
from txcaddy.reverseproxy._exchange import CHUNKED, RawHeaders

if TYPE_CHECKING:
    from txcaddy.reverseproxy._fastcgi import FastCGITransport

_TLS_PROTOCOLS = {"tls1.0": "TLSv1", "tls1.1": "TLSv1.1", "tls1.2": "TLSv1.2", "tls1.3": "TLSv1.3"}
SERVER_SOFTWARE = "Caddy/2.6.2"  # what Debian's caddy 2.6.2 sends


def _split_pos(path: str, split_path: list[str]) -> int:
    if not split_path:
        return 0
    lower = path.lower()
    for split in split_path:
        at = lower.find(split.lower())
        if at > -1:
            return at + len(split)
    return -1


def _split_host_port(host: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``, falling back to the whole host without a port."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and host[end + 1:end + 2] == ":" and host[end + 2:]:
            return host[1:end], host[end + 2:]
        return host, ""
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        if port:
            return name, port
    return host, ""


def build_env(
    transport: FastCGITransport,
    request: Any,
    method: bytes,
    target: bytes,
    headers: RawHeaders,
    body_length: int | None,
) -> list[tuple[bytes, bytes]]:
    """The CGI/1.1 variables for one request, in Caddy's order (its ``buildEnv`` and client).

    ``target`` is the path and query the proxy sends (after rewrites); ``request`` the
    client's request (remote address, TLS, the original URI, vars and placeholders);
    ``headers`` what goes upstream (each becomes ``HTTP_*``).
    """
    from txcaddy.http.handlers._filematch import sanitized_path_join

    remote = remote_addr(request) if request is not None else ""
    ip, port = remote, ""
    if ":" in remote:
        at = remote.rfind(":")
        ip, port = remote[:at], remote[at + 1:]
    ip = ip.replace("[", "", 1).replace("]", "", 1)

    if request is None:  # an active health check: only the global placeholders are known
        root = replace_all_global(transport.root.text) or "."
    else:
        root = transport.root.render(request, None, empty_unknown=True, empty=".")
    root = os.path.abspath(root)
    if transport.resolve_root_symlink:
        root = os.path.realpath(root)
        if not os.path.exists(root):
            raise FileNotFoundError(f"lstat {root}: no such file or directory")

    raw_path, _, query = target.decode("latin-1").partition("?")
    fpath = unquote(raw_path, errors="surrogateescape") if "%" in raw_path else raw_path
    script_name = fpath
    doc_uri = fpath
    path_info = ""
    split = _split_pos(fpath, transport.split_path)
    if split > -1:
        doc_uri = fpath[:split]
        path_info = fpath[split:]
        if path_info and script_name.endswith(path_info):
            script_name = script_name[:-len(path_info)]
    placeholders = getattr(request, "placeholders", {})
    if not path_info:
        remainder = placeholders.get("http.matchers.file.remainder")
        if isinstance(remainder, str):
            path_info = remainder
    script_filename = sanitized_path_join(root, script_name)
    if script_name and not script_name.startswith("/"):
        script_name = "/" + script_name

    host_header = ""
    by_name: dict[bytes, list[bytes]] = {}
    names: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"host":
            host_header = value.decode("latin-1")
            continue
        if lower not in by_name:
            by_name[lower] = []
            names.append(lower)
        by_name[lower].append(value)
    if not host_header and request is not None:
        host_header = request.host
    declared = request.headers.first("Content-Length") if request is not None else None
    if declared is not None and b"content-length" not in by_name:
        # Go keeps the client's Content-Length among the request's header fields.
        by_name[b"content-length"] = [declared.encode("latin-1")]
        names.append(b"content-length")
    content_type = b", ".join(by_name.get(b"content-type", [])).decode("latin-1")
    req_host, req_port = _split_host_port(host_header)
    tls = getattr(request, "tls", None)
    scheme = "https" if tls is not None else "http"
    auth_user = placeholders.get("http.auth.user.id", "")
    if request is not None:
        orig = request.orig_raw_path + ("?" + request.orig_query if request.orig_query else "")
        proto = request.proto
    else:
        orig, proto = target.decode("latin-1"), "HTTP/1.1"

    method_text = method.decode("latin-1")
    # client.go: the length Go's request has (-1 for a chunked body), else the header.
    if body_length == CHUNKED:
        length = "-1"
    elif body_length:
        length = str(body_length)
    else:
        length = declared if declared is not None and declared.strip().isdigit() else "0"
    if method_text in ("HEAD", "OPTIONS"):
        length = "0"

    env: dict[str, str] = {
        "AUTH_TYPE": "",
        "CONTENT_LENGTH": length,
        "CONTENT_TYPE": content_type,
        "GATEWAY_INTERFACE": "CGI/1.1",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "REMOTE_ADDR": ip,
        "REMOTE_HOST": ip,
        "REMOTE_PORT": port,
        "REMOTE_IDENT": "",
        "REMOTE_USER": auth_user if isinstance(auth_user, str) else str(auth_user),
        "REQUEST_METHOD": method_text,
        "REQUEST_SCHEME": scheme,
        "SERVER_NAME": req_host,
        "SERVER_PROTOCOL": proto,
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "DOCUMENT_ROOT": root,
        "DOCUMENT_URI": doc_uri,
        "HTTP_HOST": host_header,
        "REQUEST_URI": orig,
        "SCRIPT_FILENAME": script_filename,
        "SCRIPT_NAME": script_name,
    }
    if method_text not in ("GET", "HEAD", "OPTIONS") and not content_type:
        env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    if path_info:
        env["PATH_TRANSLATED"] = sanitized_path_join(root, path_info)
    env["SERVER_PORT"] = req_port or ("80" if scheme == "http" else "443")
    if tls is not None:
        env["HTTPS"] = "on"
        version = str(getattr(tls, "version", "") or "")
        protocol = _TLS_PROTOCOLS.get(version.lower(), version if version.startswith("TLS") else "")
        if protocol:
            env["SSL_PROTOCOL"] = protocol
        cipher = getattr(tls, "cipher_suite", "")
        if cipher:
            env["SSL_CIPHER"] = str(cipher)
    for key, text in transport.env:
        env[key] = (text.render(request, None, empty_unknown=True) if request is not None
                    else replace_all_global(text.text))
    for lower in names:
        key = "HTTP_" + lower.decode("latin-1").upper().replace("-", "_").replace(" ", "_")
        env[key] = b", ".join(by_name[lower]).decode("latin-1")
    return [(k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
            for k, v in env.items()]
