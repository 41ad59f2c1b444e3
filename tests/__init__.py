"""txcaddy's tests.

No test may change this machine's trust stores: a config that provisions the local CA without
``skip_install_trust`` (or ``install_trust: false``) would put its root into the system store
and the NSS databases, as Caddy does. ``TRUST_STORES`` naming no known store makes every
installation in this process and the servers it starts a logged no-op; the tests of the
installation itself pass their own environment (``tests/tls/_truststore.py``).
"""

import os

os.environ["TRUST_STORES"] = "none-during-tests"
