"""hawserd's CRI PullImage: the request's AuthConfig first (kubelet's pull
secrets), else the docker config hawserd reads, credential helpers and all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hawser.registry import Credentials, RegistryClient, RegistryOptions
from tests.e2e.helpers import pull_request, small_image
from tests.support.cred_helper import write_helper
from tests.support.hawserd import Hawserd
from tests.support.images import push_image
from tests.support.registry_server import start_registry

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice", "s3cret-pw"


def test_cri_pull_uses_request_auth_then_the_credential_helper(hawserd: Hawserd, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with start_registry(tmp_path, auth="token", users={USER: PASSWORD}) as handle:
        refs = [f"{handle.host}/private/app:{tag}" for tag in ("one", "two")]
        with RegistryClient(RegistryOptions(plain_http=True, docker_config=None,
                                            credentials=lambda host: Credentials(USER, PASSWORD))) as client:
            for ref in refs:
                push_image(client, ref, small_image(ref), tag=ref.rsplit(":", 1)[1])
        helper = write_helper(tmp_path / "bin", "hawsertest")
        helper.put(handle.host, USER, "not-the-password")
        config = tmp_path / "docker" / "config.json"
        config.parent.mkdir()
        config.write_text(json.dumps({"credsStore": "hawsertest"}))

        hawserd.plain_http(handle.host)
        hawserd.stop()
        with open(hawserd.config_file, "a", encoding="utf-8") as f:
            f.write(f'[registry]\ndocker_config = "{config}"\ncredential_helper_timeout = 5.0\n')
        monkeypatch.setenv("PATH", f"{helper.bin_dir}:{os.environ['PATH']}")
        hawserd.start()
        cri = hawserd.client()

        # The request's credentials win over the helper's (wrong) ones.
        cri.images.PullImage(pull_request(refs[0], username=USER, password=PASSWORD))
        # Without them, the helper the docker config names answers.
        helper.put(handle.host, USER, PASSWORD)
        cri.images.PullImage(pull_request(refs[1]))
        assert "get" in helper.calls()
