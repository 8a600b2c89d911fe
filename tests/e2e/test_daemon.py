"""hawserd as a process: Version, Status, its socket, signals, restarts."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import grpc
from cri_api.v1 import api_pb2

from hawser import __version__
from tests.e2e.helpers import pull_request, spec, status_code
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry


def test_version(hawserd: Hawserd) -> None:
    answer = hawserd.client().runtime.Version(api_pb2.VersionRequest(version="v1"))
    assert answer.runtime_name == "hawser"
    assert answer.runtime_version == __version__
    assert answer.runtime_api_version == "v1"
    assert answer.version == "0.1.0"


def test_status_network_not_ready_without_cni_config(hawserd: Hawserd) -> None:
    answer = hawserd.client().runtime.Status(api_pb2.StatusRequest())
    conditions = {c.type: c for c in answer.status.conditions}
    assert conditions["RuntimeReady"].status is True
    network = conditions["NetworkReady"]
    assert network.status is False
    assert network.reason == "NetworkPluginNotReady"
    assert network.message
    assert not answer.info  # only with verbose


def test_status_verbose_reports_the_effective_config(hawserd: Hawserd) -> None:
    answer = hawserd.client().runtime.Status(api_pb2.StatusRequest(verbose=True))
    config = json.loads(answer.info["config"])
    assert config["root"] == str(hawserd.root)
    assert config["state"] == str(hawserd.state)
    assert config["daemon"]["address"] == hawserd.address
    assert config["registry"]["config_path"] == str(hawserd.certs)
    assert config["cni"]["conf_dir"] == str(hawserd.cni_conf)
    assert config["gc"]["grace_period"] == 0  # from the config file


def test_socket_is_root_only(hawserd: Hawserd) -> None:
    st = os.stat(hawserd.address)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_every_cri_method_is_served(hawserd: Hawserd) -> None:
    # None is left to the generated servicer's "Method not implemented!".  CheckpointContainer
    # checks its request before saying why it cannot checkpoint (test_checkpoint.py).
    from cri_api.v1 import api_pb2_grpc

    from hawser.cri.services import ImageService, RuntimeService

    for servicer, generated in ((RuntimeService, api_pb2_grpc.RuntimeServiceServicer),
                                (ImageService, api_pb2_grpc.ImageServiceServicer)):
        names = [name for name in vars(generated) if not name.startswith("_")]
        assert names and all(getattr(servicer, name) is not getattr(generated, name) for name in names)
    code, message = status_code(hawserd.client().runtime.CheckpointContainer,
                                api_pb2.CheckpointContainerRequest(container_id="x"))
    assert code == grpc.StatusCode.NOT_FOUND, message


def test_second_daemon_on_the_same_socket_is_refused(hawserd: Hawserd, tmp_path: Path) -> None:
    argv = hawserd.argv()
    argv[argv.index("--root") + 1] = str(tmp_path / "other-root")
    argv[argv.index("--state") + 1] = str(tmp_path / "other-state")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "another hawserd is serving" in proc.stderr
    # The first one still serves.
    assert hawserd.client().runtime.Version(api_pb2.VersionRequest()).runtime_name == "hawser"


def test_bad_flag_value_is_one_clear_line(hawserd: Hawserd) -> None:
    proc = subprocess.run([*hawserd.argv(), "--stream-port", "70000"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "stream_port" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_sigterm_then_restart_keeps_images(hawserd: Hawserd, registry: Registry,
                                           busybox: tuple[str, BuiltImage]) -> None:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    image_id = hawserd.client().images.PullImage(pull_request(ref)).image_ref
    assert hawserd.stop(signal.SIGTERM) == 0
    assert not os.path.exists(hawserd.address)
    assert "msg=stopped" in hawserd.log()
    hawserd.start()
    status = hawserd.client().images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(ref)))
    assert status.image.id == image_id


def test_kill_9_then_restart_over_the_stale_socket(hawserd: Hawserd, registry: Registry,
                                                   busybox: tuple[str, BuiltImage]) -> None:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    image_id = hawserd.client().images.PullImage(pull_request(ref)).image_ref
    assert hawserd.stop(signal.SIGKILL) == -signal.SIGKILL
    assert stat.S_ISSOCK(os.lstat(hawserd.address).st_mode)  # left behind
    hawserd.start()
    images = hawserd.client().images.ListImages(api_pb2.ListImagesRequest()).images
    assert [i.id for i in images] == [image_id]


def test_config_file_sections_and_flags_over_them(hawserd: Hawserd) -> None:
    assert hawserd.stop() == 0
    hawserd.config_file.write_text(
        '[gc]\ngrace_period = 0\n'
        '[daemon]\nlog_level = "info"\n'
        '[cri]\nstream_address = "127.0.0.2"\nstream_port = 10010\n'
        '[cni]\nconf_dir = "/from/the/file"\nbin_dir = "/opt/cni/bin"\n')
    hawserd.start()  # its flags still say --cni-conf-dir and --log-level debug
    config = json.loads(hawserd.client().runtime.Status(api_pb2.StatusRequest(verbose=True)).info["config"])
    assert config["cri"] == {"stream_address": "127.0.0.2", "stream_port": 10010}
    assert config["cni"] == {"conf_dir": str(hawserd.cni_conf), "bin_dir": "/opt/cni/bin", "bridge_subnet": "",
                             "bridge_name": ""}
    assert config["daemon"]["log_level"] == "debug"
    assert config["gc"]["grace_period"] == 0
    assert config["config_file"] == str(hawserd.config_file)


def test_unknown_config_keys_are_refused(hawserd: Hawserd) -> None:
    for text, key in (('[cri]\nstream_prot = 1\n', "stream_prot"), ('[gc]\ngrace = 1\n', "grace")):
        hawserd.config_file.write_text(text)
        proc = subprocess.run(hawserd.argv(), capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert key in proc.stderr


def test_sigterm_during_a_pull_exits_cleanly(hawserd: Hawserd, registry: Registry,
                                             busybox: tuple[str, BuiltImage]) -> None:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    call = hawserd.client().images.PullImage.future(pull_request(ref))
    deadline = time.monotonic() + 10
    while "pull started" not in hawserd.log() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hawserd.process is not None
    hawserd.process.send_signal(signal.SIGTERM)
    # Graceful: the request in flight still gets its answer.
    assert call.result(timeout=30).image_ref.startswith("sha256:")
    assert hawserd.process.wait(timeout=30) == 0
    assert "msg=stopped" in hawserd.log()
    hawserd.start()  # the store opens again, whatever the pull left
    hawserd.client().images.PullImage(pull_request(ref))


def test_network_ready_follows_the_cni_config_dir(hawserd: Hawserd) -> None:
    from hawser.network import write_default_conflist

    runtime = hawserd.client().runtime

    def network() -> api_pb2.RuntimeCondition:
        answer = runtime.Status(api_pb2.StatusRequest())
        return next(c for c in answer.status.conditions if c.type == "NetworkReady")

    assert network().status is False
    path = write_default_conflist(str(hawserd.cni_conf))
    assert path is not None
    ready = network()  # picked up without a restart
    assert ready.status is True, ready.message
    assert not ready.reason
    os.unlink(path)
    assert network().reason == "NetworkPluginNotReady"


def test_second_daemon_on_the_same_state_dir_is_refused(hawserd: Hawserd) -> None:
    argv = hawserd.argv()
    argv[argv.index("--address") + 1] = str(hawserd.socket_dir / "other.sock")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "another hawserd uses the state dir" in proc.stderr
    assert not os.path.exists(hawserd.socket_dir / "other.sock")


def test_runtime_config_reports_cgroupfs_and_accepts_a_pod_cidr(hawserd: Hawserd) -> None:
    runtime = hawserd.client().runtime
    assert runtime.RuntimeConfig(api_pb2.RuntimeConfigRequest()).linux.cgroup_driver == api_pb2.CGROUPFS
    runtime.UpdateRuntimeConfig(api_pb2.UpdateRuntimeConfigRequest(runtime_config=api_pb2.RuntimeConfig(
        network_config=api_pb2.NetworkConfig(pod_cidr="10.244.0.0/24"))))


def _point_the_cli_at(hawserd: Hawserd) -> None:
    """The CLI reads the sockets from the config file (hawserd took them as flags)."""
    with hawserd.config_file.open("a", encoding="utf-8") as f:
        f.write(f'[daemon]\naddress = "{hawserd.address}"\ncontainerd_address = "{hawserd.containerd_address}"\n')


def test_hawser_version_asks_the_daemon_then_says_not_running(hawserd: Hawserd) -> None:
    _point_the_cli_at(hawserd)
    out = hawserd.cli("version").stdout
    assert out.splitlines() == ["Client:", f" Version: {__version__}", "", "Server:", " Runtime: hawser",
                                f" Version: {__version__}", " CRI API: v1", f" Address: {hawserd.address}"]
    server = json.loads(hawserd.cli("version", "--format", "json").stdout)["server"]
    assert (server["running"], server["runtime_version"]) == (True, __version__)
    assert hawserd.stop() == 0
    started = time.monotonic()
    out = hawserd.cli("version").stdout
    assert time.monotonic() - started < 10
    assert f" hawserd: not running ({hawserd.address})" in out.splitlines()
    assert json.loads(hawserd.cli("version", "--format", "json").stdout)["server"] == {
        "running": False, "address": hawserd.address}


def test_system_info_sees_the_running_daemon(hawserd: Hawserd) -> None:
    _point_the_cli_at(hawserd)
    daemon = json.loads(hawserd.cli("system", "info", "--format", "json").stdout)["daemon"]
    assert daemon == {"running": True, "address": hawserd.address, "address_answers": True,
                      "containerd_address": hawserd.containerd_address, "containerd_address_answers": True}


def test_log_format_json_writes_one_object_per_line(hawserd: Hawserd) -> None:
    assert hawserd.stop() == 0
    seen = len(hawserd.log())
    with open(hawserd.log_path, "ab") as log:
        hawserd.process = subprocess.Popen(hawserd.argv("--log-format", "json"), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while '"msg": "serving"' not in hawserd.log()[seen:]:
        assert hawserd.process.poll() is None, hawserd.log()
        assert time.monotonic() < deadline, hawserd.log()
        time.sleep(0.05)
    hawserd.client().runtime.Version(api_pb2.VersionRequest(version="v1"))
    assert hawserd.stop() == 0
    events = [json.loads(line) for line in hawserd.log()[seen:].splitlines()]
    for event in events:
        assert isinstance(event, dict)
        assert {"time", "level", "logger", "msg"} <= set(event), event
        assert event["time"].endswith("Z") and event["level"] in ("debug", "info", "warning", "error")
    by_msg = {e["msg"]: e for e in events}
    assert {"starting", "serving", "stopped"} <= set(by_msg), events
    assert by_msg["starting"]["logger"] == "hawser.daemon"
    assert len(by_msg["starting"]) > 4  # describe(settings)'s fields, each a key of its own


def test_log_format_from_the_config_file_and_a_bad_one_refused(hawserd: Hawserd) -> None:
    assert hawserd.stop() == 0
    hawserd.config_file.write_text('[daemon]\nlog_format = "xml"\n')
    proc = subprocess.run(hawserd.argv(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "log_format" in proc.stderr
    proc = subprocess.run(hawserd.argv("--log-format", "json"), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    event = json.loads(proc.stderr.strip().splitlines()[-1])
    assert (event["msg"], event["level"]) == ("bad configuration", "error") and "log_format" in event["error"]
