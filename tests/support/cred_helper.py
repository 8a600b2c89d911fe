"""A docker credential helper for tests: ``docker-credential-NAME`` speaking
docker-credential-helpers' protocol, keeping its secrets in a JSON file.

    helper = write_helper(tmp_path / "bin", "hawsertest")            # the store: helper.store
    helper = write_helper(bin_dir, "broken", mode="fail")             # exits 3, a message on stdout
    helper = write_helper(bin_dir, "stuck", mode="hang")              # sleeps a minute

Every call appends its action to ``helper.calls`` (a file), so tests can
count runs.  Put ``helper.bin_dir`` first on PATH for hawser to find it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Mode = Literal["ok", "fail", "hang"]

_SCRIPT = '''#!{python}
import json, sys, time
STORE, CALLS, MODE = {store!r}, {calls!r}, {mode!r}
action = sys.argv[1] if len(sys.argv) > 1 else ""
with open(CALLS, "a") as f:
    f.write(action + "\\n")
if MODE == "fail":
    print("keychain is locked (test helper told to fail)")
    sys.exit(3)
if MODE == "hang":
    time.sleep(60)
try:
    with open(STORE) as f:
        data = json.load(f)
except FileNotFoundError:
    data = {{}}
given = sys.stdin.read()
def save():
    with open(STORE, "w") as f:
        json.dump(data, f)
if action == "get":
    url = given.strip()
    if url not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": url, **data[url]}}))
elif action == "store":
    doc = json.loads(given)
    data[doc["ServerURL"]] = {{"Username": doc["Username"], "Secret": doc["Secret"]}}
    save()
elif action == "erase":
    url = given.strip()
    if url not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    del data[url]
    save()
elif action == "list":
    print(json.dumps({{k: v["Username"] for k, v in data.items()}}))
else:
    print("unknown action " + action)
    sys.exit(2)
'''


@dataclass(frozen=True)
class TestHelper:
    name: str
    bin_dir: Path
    store: Path
    calls_file: Path

    __test__ = False  # not a pytest test class

    @property
    def program(self) -> str:
        return f"docker-credential-{self.name}"

    def calls(self) -> list[str]:
        try:
            return self.calls_file.read_text().split()
        except FileNotFoundError:
            return []

    def secrets(self) -> dict[str, dict[str, str]]:
        """ServerURL -> {"Username", "Secret"}: what the helper holds."""
        try:
            data: dict[str, dict[str, str]] = json.loads(self.store.read_text())
        except FileNotFoundError:
            return {}
        return data

    def put(self, server: str, username: str, secret: str) -> None:
        data = self.secrets()
        data[server] = {"Username": username, "Secret": secret}
        self.store.write_text(json.dumps(data))


def write_helper(bin_dir: Path, name: str, *, mode: Mode = "ok") -> TestHelper:
    """Write ``bin_dir/docker-credential-NAME`` (executable) with its store beside it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    store = bin_dir / f"{name}.store.json"
    calls = bin_dir / f"{name}.calls"
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(_SCRIPT.format(python=sys.executable, store=str(store), calls=str(calls), mode=mode))
    script.chmod(0o755)
    return TestHelper(name=name, bin_dir=bin_dir, store=store, calls_file=calls)
