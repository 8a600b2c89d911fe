"""Session-wide safety: nothing a test does may leave loopback."""

import os

# The registry client honours these; a test that tried to reach past loopback
# would hit a closed port instead of the internet.
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.setdefault(_name, "http://127.0.0.1:9")
for _name in ("NO_PROXY", "no_proxy"):
    os.environ.setdefault(_name, "127.0.0.1,localhost")
