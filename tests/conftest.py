"""Session-wide safety: nothing a test does may leave loopback.

And the fixtures more than one tier uses, each defined once for the whole
session (pytest takes ``pytest_plugins`` only from this top-level conftest):
the registry and its test image, hawserd, the host network's restoration.
"""

import os

# The registry client honours these; a test that tried to reach past loopback
# would hit a closed port instead of the internet.
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.setdefault(_name, "http://127.0.0.1:9")
for _name in ("NO_PROXY", "no_proxy"):
    os.environ.setdefault(_name, "127.0.0.1,localhost")

pytest_plugins = [
    "tests.support.registry_fixtures",
    "tests.support.hawserd",
    "tests.support.cni",
    "tests.support.cri_pods",
]
