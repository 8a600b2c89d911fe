"""The main job, end to end: a local registry, a busybox image pushed to it,
pulled by hawser, a container run from it (its output shown), and a detached
one exec'd into, logged and removed. Run through scripts/demo.sh."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.support.images import build_image, push_image
from tests.support.layers import busybox_layers
from tests.support.registry_server import start_registry

from hawser.registry import RegistryClient, RegistryOptions


def main() -> int:
    hawser = [os.path.join(os.path.dirname(sys.executable), "hawser"), *sys.argv[1:]]
    with tempfile.TemporaryDirectory(prefix="hawser-demo-") as tmp, start_registry(tmp) as registry:
        ref = f"{registry.host}/demo/busybox:latest"
        print(f"== a docker-registry is serving on {registry.host}; pushing {ref}", flush=True)
        client = RegistryClient(RegistryOptions(plain_http=True))
        try:
            push_image(client, ref, build_image(busybox_layers()), tag="latest")
        finally:
            client.close()
        name = f"demo-{os.getpid()}"
        steps = (
            ["pull", "--plain-http", ref],
            ["images"],
            ["run", "--rm", ref, "sh", "-c", "echo hello from $(hostname) in a hawser container; uname -sr; id"],
            ["run", "-d", "--name", name, ref, "sh", "-c", "while true; do date; sleep 1; done"],
            ["exec", name, "ps"],
            ["ps"],
            ["logs", "--tail", "2", name],
            ["rm", "-f", name],
            ["system", "df"],
        )
        try:
            for args in steps:
                print(f"== hawser {' '.join(args)}", flush=True)
                subprocess.run([*hawser, *args], check=True)
        finally:
            subprocess.run([*hawser, "rm", "-f", name], capture_output=True, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
