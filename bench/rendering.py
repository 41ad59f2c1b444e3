"""Config templates: named placeholders filled in by plain text substitution.

Only the exact names given are replaced (``{port}``, ``{backend}``, ...), so
the braces of a Caddyfile, of nginx's syntax and of Caddy's own placeholders
(``{http.request.host}``) pass through untouched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

_NAME = re.compile(r"\{([a-z_]+)\}")


def render(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced; other braces kept."""
    return _NAME.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


def render_file(path: str, values: Mapping[str, object], out_path: str) -> str:
    """Render the template at ``path`` into ``out_path``; returns ``out_path``."""
    with open(path, encoding="utf-8") as f:
        text = render(f.read(), values)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)
    return out_path
