"""Restart policies' and healthchecks' pure parts: docker's values parsed, the
image's HEALTHCHECK merged with the --health-* flags, docker's bookkeeping of
a check's result (retries, start period, the last five)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from hawser.errors import InvalidArgument
from hawser.metadata import Container
from hawser.oci import Healthcheck, parse_config
from hawser.runtime.health import HealthConfig, _record, merge_healthcheck, parse_duration, read_health
from hawser.runtime.restart import RestartPolicy


def _config(cfg: dict[str, Any]) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": cfg,
                       "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def test_image_healthcheck_is_parsed_in_seconds() -> None:
    config = parse_config(_config({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"],
                                                   "Interval": 5_000_000_000, "Timeout": 500_000_000,
                                                   "StartPeriod": 0, "Retries": 4}}))
    assert config.healthcheck == Healthcheck(test=("CMD-SHELL", "curl -f localhost"), interval=5.0, timeout=0.5,
                                             start_period=0.0, retries=4)
    assert parse_config(_config({})).healthcheck is None
    with pytest.raises(InvalidArgument):
        parse_config(_config({"Healthcheck": {"Interval": "5s"}}))


def test_flags_override_the_image() -> None:
    image = Healthcheck(test=("CMD", "check"), interval=5.0, timeout=2.0, retries=4)
    merged = merge_healthcheck(image, {"test": [], "interval": 1.0, "timeout": 0, "start_period": 0, "retries": 0})
    assert merged == {"test": ["CMD", "check"], "interval": 1.0, "timeout": 2.0, "start_period": 0.0, "retries": 4}
    assert merge_healthcheck(image, {"test": ["NONE"]})["test"] == ["NONE"]
    assert merge_healthcheck(None, {"test": ["CMD-SHELL", "true"]})["test"] == ["CMD-SHELL", "true"]


def _record_of(health: dict[str, Any]) -> Container:
    return Container(namespace="default", id="x" * 64, name="c", image="i", image_id="sha256:" + "0" * 64,
                     snapshotter="overlayfs", snapshot_key="k", config={"healthcheck": health}, labels={},
                     created_at=0.0)


def test_health_config_defaults_and_forms() -> None:
    shell = HealthConfig.of(_record_of({"test": ["CMD-SHELL", "test -e /ok"]}))
    assert shell is not None and shell.argv == ("/bin/sh", "-c", "test -e /ok")
    assert (shell.interval, shell.timeout, shell.retries, shell.start_period) == (30.0, 30.0, 3, 0.0)
    exec_form = HealthConfig.of(_record_of({"test": ["CMD", "/bin/check", "-q"], "interval": 0.5}))
    assert exec_form is not None and exec_form.argv == ("/bin/check", "-q") and exec_form.interval == 0.5
    assert HealthConfig.of(_record_of({"test": ["NONE"]})) is None
    assert HealthConfig.of(_record_of({"test": []})) is None


def test_results_as_docker_counts_them(tmp_path: Any) -> None:
    bundle = str(tmp_path)
    config = HealthConfig(argv=("true",), interval=1.0, timeout=1.0, start_period=10.0, retries=2)
    started = 1000.0
    # A failure in the start period does not count.
    state = _record(bundle, config, started, 1001.0, 1001.1, 1, "no")
    assert (state["Status"], state["FailingStreak"]) == ("starting", 0)
    state = _record(bundle, config, started, 1002.0, 1002.1, 0, "ok")
    assert (state["Status"], state["FailingStreak"]) == ("healthy", 0)
    state = _record(bundle, config, started, 1003.0, 1003.1, 1, "no")  # healthy: counts even in the period
    assert (state["Status"], state["FailingStreak"]) == ("healthy", 1)
    state = _record(bundle, config, started, 1020.0, 1020.1, 1, "no")
    assert (state["Status"], state["FailingStreak"]) == ("unhealthy", 2)
    for i in range(5):
        state = _record(bundle, config, started, 1030.0 + i, 1030.5 + i, 0, f"run {i}")
    assert state["Status"] == "healthy" and [e["Output"] for e in state["Log"]] == [f"run {i}" for i in range(5)]
    assert read_health(bundle) == state
    assert not [n for n in os.listdir(bundle) if n not in ("health.json", "health.lock")]


def test_durations_and_policies() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("2") == 2.0
    with pytest.raises(InvalidArgument):
        parse_duration("5 seconds")
    assert RestartPolicy.parse("on-failure:3") == RestartPolicy("on-failure", 3)
    assert RestartPolicy.parse("on-failure") == RestartPolicy("on-failure", 0)
    assert RestartPolicy.parse("unless-stopped").restarts and not RestartPolicy.parse("no").restarts
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(InvalidArgument):
            RestartPolicy.parse(bad)
