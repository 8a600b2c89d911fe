"""The main job, end to end: a local registry, a busybox image pushed to it,
pulled by hawser and listed. Run through scripts/demo.sh."""

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
        for args in (["pull", "--plain-http", ref], ["images"], ["system", "df"]):
            print(f"== hawser {' '.join(args)}", flush=True)
            subprocess.run([*hawser, *args], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
