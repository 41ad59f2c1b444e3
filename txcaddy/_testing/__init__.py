"""Private parts of ``txcaddy.testing`` (import from there, not from here)."""
