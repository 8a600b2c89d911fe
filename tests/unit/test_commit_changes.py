"""commit's --change instructions, applied to an image config as a Dockerfile would."""

from __future__ import annotations

from typing import Any

import pytest

from hawser.errors import InvalidArgument
from hawser.images import check_changes
from hawser.images._commit import apply_changes


def _applied(*changes: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    config = dict(config or {})
    apply_changes(config, changes)
    return config


def test_exec_and_shell_forms() -> None:
    assert _applied('CMD ["cat", "/x"]')["Cmd"] == ["cat", "/x"]
    assert _applied("CMD echo hi")["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert _applied("CMD [not json")["Cmd"] == ["/bin/sh", "-c", "[not json"]
    assert _applied("CMD echo", config={"Shell": ["/bin/ash", "-c"]})["Cmd"] == ["/bin/ash", "-c", "echo"]
    assert _applied("CMD=/bin/sh")["Cmd"] == ["/bin/sh", "-c", "/bin/sh"]  # podman's INSTRUCTION=VALUE


def test_entrypoint_drops_the_images_cmd_unless_one_is_set() -> None:
    base = {"Cmd": ["sh"], "Entrypoint": None}
    assert _applied('ENTRYPOINT ["app"]', config=base) == {"Cmd": None, "Entrypoint": ["app"]}
    assert _applied('CMD ["-v"]', 'ENTRYPOINT ["app"]', config=base) == {"Cmd": ["-v"], "Entrypoint": ["app"]}


def test_env_label_expose_user_workdir() -> None:
    config = _applied('ENV A=1 B="two words"', "ENV A 3 4", "LABEL x=y 'z=with space'", "EXPOSE 80 53/udp",
                      "USER app:app", "WORKDIR /srv", "WORKDIR data/../www", "env C=lower-case",
                      config={"Env": ["PATH=/bin", "A=0"]})
    assert config["Env"] == ["PATH=/bin", "B=two words", "A=3 4", "C=lower-case"]
    assert config["Labels"] == {"x": "y", "z": "with space"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["User"] == "app:app" and config["WorkingDir"] == "/srv/www"


@pytest.mark.parametrize(("change", "words"), [
    ("FROM scratch", "unknown instruction 'FROM'"),
    ("RUN true", "unknown instruction 'RUN'"),
    ("CMD", "invalid --change"),
    ("", "invalid --change"),
    ("EXPOSE 70000", "invalid port"),
    ("EXPOSE 80/icmp", "invalid port"),
    ("ENV A", "NAME=VALUE"),
    ("LABEL a=1 =b", "not KEY=VALUE"),
    ("ENV A='unclosed", "ENV"),
])
def test_bad_changes_are_refused(change: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_changes([change])
    assert words in str(err.value)
