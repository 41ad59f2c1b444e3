"""Record what Caddy 2.6.2 renders for the pages in ``site/`` (run by hand; needs ``caddy``).

    python3 tests/http/templates_site/record.py

Starts ``caddy run`` on a loopback port with ``Caddyfile``, requests every page listed in
``PAGES`` (and every ``cases/*.html``, one construct or error each) with the same headers the tests send, and writes ``expected/<page>.json``: the
status, the headers the tests compare and the body; the errors Caddy logged go in ``log``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 28731
HEADERS = {"Host": "example.test", "User-Agent": "fixture-agent", "Cookie": "flavor=vanilla"}
COMPARED = ["Content-Type", "Content-Length", "X-Templated", "X-Multi", "Etag", "Last-Modified", "Accept-Ranges"]
PAGES = [
    "basic.html", "sprig.html", "context.html?q=search&x=1", "include.html", "import.html",
    "markdown.html", "markdown_more.html", "markdown_site.html", "frontmatter.html", "plain.txt", "style.css", "delims/page.html",
    "parse_error.html", "exec_error.html", "field_error.html", "undefined_func.html",
    "include_missing.html", "http_error.html", "httpinclude.html", "wrongargs.html", "and_noargs.html",
    "httpinclude_ok.html", "httpinclude_self.html", "httpinclude_404.html",
]

CADDYFILE = """{
\tadmin off
\tdebug
}
http://:%d {
\troot * %s
\troute /delims/* {
\t\ttemplates {
\t\t\tbetween [[ ]]
\t\t}
\t\tfile_server
\t}
\ttemplates
\tfile_server
}
"""


def main() -> None:
    caddyfile = HERE / "Caddyfile.recording"
    caddyfile.write_text(CADDYFILE % (PORT, HERE / "site"))
    env = dict(os.environ, TXCADDY_TPL_TEST="from-env", HOME="/tmp")
    log_path = HERE / "caddy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                                stdout=log, stderr=log, env=env)
    try:
        time.sleep(1.5)
        cases = sorted(p.name for p in (HERE / "site" / "cases").glob("*.html"))
        for page in PAGES + [f"cases/{name}" for name in cases]:
            name = page.split("?")[0].replace("/", "_")
            before = log_path.stat().st_size
            conn = http.client.HTTPConnection("127.0.0.1", PORT)
            conn.request("GET", "/" + page, headers=HEADERS)
            resp = conn.getresponse()
            try:
                raw = resp.read()
            except http.client.IncompleteRead as e:  # Caddy's 500 keeps the file's Content-Length
                raw = e.partial
            body = raw.decode("utf-8", "surrogateescape")
            headers = {h: resp.headers.get_all(h) for h in COMPARED if resp.headers.get_all(h)}
            conn.close()
            time.sleep(0.1)
            with open(log_path, "rb") as f:
                f.seek(before)
                entries = [json.loads(line) for line in f.read().splitlines() if line.startswith(b"{")]
            # the site's absolute path, where Caddy's errors name a file, as {SITE}
            logged = [e.get("msg", "").replace(str(HERE / "site"), "{SITE}")
                      for e in entries if e.get("logger") == "http.log.error"]
            record = {"path": "/" + page, "status": resp.status, "headers": headers, "body": body, "log": logged}
            (HERE / "expected" / f"{name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
            print(page, resp.status, file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        caddyfile.unlink()
        log_path.unlink()


if __name__ == "__main__":
    main()
