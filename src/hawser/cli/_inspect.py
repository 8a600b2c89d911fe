"""docker's layouts of hawser's records: ``inspect`` of a container or an image
(docker's ContainerJSON and ImageInspect fields), and the fields ``ps`` gives
its templates (docker's ContainerContext: ``.ID .Image .Command .CreatedAt
.RunningFor .Ports .State .Status .Size .Names .Labels .Mounts .Networks``).

Built from the container record (``Container.config``: the options
``ContainerManager.create`` keeps, plus what networking, volumes, restarts and
healthchecks add there); every key is read with a default, so a record older
than a feature shows that feature's zero value.
"""

from __future__ import annotations

import time

from hawser.cli._template import GoMap

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from hawser.images import ImageDetail
    from hawser.oci import ImageConfig
    from hawser.runtime import ContainerInfo

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(t: float | None) -> str:
    """RFC 3339 with nanoseconds in UTC, as docker's times; Go's zero time for None."""
    if t is None:
        return ZERO_TIME
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{round((t % 1) * 1e9) % 10**9:09d}Z"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _env_merge(image_env: Sequence[str], env: Sequence[str]) -> list[str]:
    """The image's environment with the container's laid over it, key by key (docker's Config.Env)."""
    out: dict[str, str] = {}
    for item in (*image_env, *env):
        key = item.partition("=")[0]
        out.pop(key, None)
        out[key] = item
    return list(out.values())


def _signal_name(value: Any) -> str:
    import signal

    if isinstance(value, int):
        try:
            return signal.Signals(value).name
        except ValueError:
            return str(value)
    return str(value or "")


def ports(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The published ports the record keeps (``config["ports"]``), each with its keys defaulted."""
    out = []
    for p in _list(config.get("ports")):
        p = _dict(p)
        out.append({"host_ip": str(p.get("host_ip") or ""), "host_port": int(p.get("host_port") or 0),
                    "container_port": int(p.get("container_port") or 0),
                    "protocol": str(p.get("protocol") or "tcp")})
    return out


def network_mode(config: Mapping[str, Any]) -> str:
    mode = _dict(config.get("network")).get("mode")  # what the CLI's networking planned
    if isinstance(mode, str) and mode:
        return mode
    networks = _dict(config.get("networks"))
    if networks:
        return str(next(iter(networks)))
    mode = _dict(config.get("namespaces")).get("network")
    if mode == "host":
        return "host"
    return str(config.get("network_mode") or "none")


def _mounts(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in _list(config.get("mounts")):
        m = _dict(m)
        rw = not m.get("readonly")
        volume = str(m.get("volume") or "")
        if volume:
            out.append({"Type": "volume", "Name": volume, "Source": str(m.get("source") or ""),
                        "Destination": str(m.get("destination") or ""), "Driver": "local",
                        "Mode": "" if rw else "ro", "RW": rw, "Propagation": ""})
        else:
            out.append({"Type": "bind", "Source": str(m.get("source") or ""),
                        "Destination": str(m.get("destination") or ""), "Mode": "" if rw else "ro", "RW": rw,
                        "Propagation": str(m.get("propagation") or "rprivate")})
    return out


def _health(info: ContainerInfo) -> dict[str, Any] | None:
    try:
        from hawser.runtime.health import health_state

        return health_state(info)
    except Exception:  # a record or state file another version wrote: shown without health
        return None


def _restart(info: ContainerInfo) -> dict[str, Any]:
    try:
        from hawser.runtime.restart import restart_info

        return restart_info(info)
    except Exception:
        return {"RestartCount": 0, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False}


def container(info: ContainerInfo, image: ImageConfig | None) -> dict[str, Any]:
    """docker's ``inspect`` of a container; ``image``: its image's config, None if it is gone.

    hawser's own record fields follow docker's (LogPath, Bundle, Snapshot, and
    the record's options, in lowercase, under Config)."""
    r, s = info.record, info.status
    config = dict(r.config)
    entrypoint, cmd = info.command()
    args = [*entrypoint, *cmd]
    restart = _restart(info)
    resources = _dict(config.get("resources"))
    network = _dict(config.get("network"))
    state: dict[str, Any] = {
        "Status": "restarting" if restart.get("Restarting") else s.state,
        "Running": s.state in ("running", "paused"), "Paused": s.state == "paused",
        "Restarting": bool(restart.get("Restarting")), "OOMKilled": s.oom_killed, "Dead": False, "Pid": s.pid,
        "ExitCode": s.exit_code or 0, "Error": "" if s.state != "unknown" else s.reason,
        "StartedAt": rfc3339(s.started_at), "FinishedAt": rfc3339(s.finished_at),
    }
    if s.reason and s.state != "unknown":
        state["Reason"] = s.reason
    # docker's is a nil pointer without a healthcheck: {{if .State.Health}} works either way
    state["Health"] = _health(info)
    image_env = image.env if image is not None else ()
    labels = GoMap({**(image.labels if image is not None else {}), **r.labels})
    binds = [f"{m['Source']}:{m['Destination']}{'' if m['RW'] else ':ro'}" if m["Type"] == "bind" else
             f"{m['Name']}:{m['Destination']}{'' if m['RW'] else ':ro'}" for m in _mounts(config)]
    quota, period = resources.get("cpu_quota"), resources.get("cpu_period")
    published = ports(config)
    port_bindings = GoMap()
    for p in published:
        port_bindings.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])})
    exposed = GoMap({p: {} for p in (image.exposed_ports if image is not None else ())})
    for key in port_bindings:
        exposed.setdefault(key, {})
    networks = GoMap()
    for name, net in sorted(_dict(config.get("networks")).items()):
        net = _dict(net)
        networks[name] = {"IPAddress": str(net.get("ip") or ""), "IPPrefixLen": int(net.get("prefix_len") or 0),
                          "Gateway": str(net.get("gateway") or ""), "MacAddress": str(net.get("mac") or ""),
                          "NetworkID": str(net.get("id") or name), "Aliases": net.get("aliases")}
    first: dict[str, Any] = next(iter(networks.values()), {})
    docker_config = {
        "Hostname": str(config.get("hostname") or r.id[:12]), "Domainname": "",
        "User": str(config.get("user") or (image.user if image is not None else "")),
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "ExposedPorts": exposed or None,
        "Tty": bool(config.get("tty")), "OpenStdin": bool(config.get("stdin")),
        "StdinOnce": bool(config.get("stdin")) and bool(config.get("stdin_once", True)),
        "Env": _env_merge(image_env, [str(e) for e in _list(config.get("env"))]),
        "Cmd": cmd, "Entrypoint": entrypoint, "Image": r.image,
        "Volumes": GoMap({v: {} for v in image.volumes}) if image is not None and image.volumes else None,
        "WorkingDir": str(config.get("workdir") or (image.working_dir if image is not None else "")),
        "Labels": labels, "StopSignal": _signal_name(config.get("stop_signal")),
    }
    if config.get("healthcheck"):
        docker_config["Healthcheck"] = config["healthcheck"]
    # hawser's record options (lowercase keys), after docker's fields: scripts that read them keep working.
    docker_config.update({k: v for k, v in config.items() if k not in docker_config})
    tmpfs = GoMap({str(_dict(t).get("destination")): "" if not _dict(t).get("size") else f"size={_dict(t)['size']}"
                   for t in _list(config.get("tmpfs"))})
    host_config = {
        "Binds": binds or None, "NetworkMode": network_mode(config), "PortBindings": port_bindings,
        "RestartPolicy": restart.get("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0}),
        "AutoRemove": bool(restart.get("AutoRemove")),
        "CapAdd": _list(config.get("cap_add")) or None, "CapDrop": _list(config.get("cap_drop")) or None,
        "Dns": _list(network.get("dns")), "DnsSearch": _list(network.get("dns_search")),
        "DnsOptions": _list(network.get("dns_options")), "ExtraHosts": _list(network.get("add_hosts")) or None,
        "Privileged": bool(config.get("privileged")), "ReadonlyRootfs": bool(config.get("read_only")),
        "SecurityOpt": None, "Tmpfs": tmpfs or None, "Sysctls": GoMap(_dict(config.get("sysctls"))) or None,
        "Runtime": str(config.get("runtime") or config.get("runtime_handler") or "runc"),
        "Memory": int(resources.get("memory_limit") or 0), "MemorySwap": int(resources.get("memory_swap") or 0),
        "NanoCpus": int(quota * 1e9 / period) if quota and period else 0,
        "CpuShares": int(resources.get("cpu_shares") or 0), "CpusetCpus": str(resources.get("cpuset_cpus") or ""),
        "PidsLimit": resources.get("pids_limit"),
    }
    return {
        "Id": r.id, "Created": rfc3339(r.created_at), "Path": args[0] if args else "", "Args": args[1:],
        "State": state, "Image": r.image_id, "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "",
        "LogPath": info.log_path, "Name": "/" + r.name, "RestartCount": int(restart.get("RestartCount") or 0),
        "Driver": r.snapshotter, "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": None, "HostConfig": host_config,
        "GraphDriver": {"Name": r.snapshotter, "Data": {"Key": r.snapshot_key}},
        "Mounts": _mounts(config), "Config": docker_config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": port_bindings,
            "IPAddress": first.get("IPAddress", ""), "IPPrefixLen": first.get("IPPrefixLen", 0),
            "Gateway": first.get("Gateway", ""), "MacAddress": first.get("MacAddress", ""),
            "Networks": networks,
        },
        # hawser's own, beside docker's
        "ImageName": r.image, "Bundle": info.bundle, "Snapshot": {"Snapshotter": r.snapshotter, "Key": r.snapshot_key},
    }


def image(detail: ImageDetail, *, repo_tags: Sequence[str], repo_digests: Sequence[str]) -> dict[str, Any]:
    """docker's ``inspect`` of an image; hawser's own fields (Target, ManifestDigest, chain ids) follow."""
    c = detail.config
    platform = c.platform
    config: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": c.user, "AttachStdin": False, "AttachStdout": False,
        "AttachStderr": False, "ExposedPorts": GoMap({p: {} for p in c.exposed_ports}) or None, "Tty": False,
        "OpenStdin": False, "StdinOnce": False, "Env": list(c.env) or None, "Cmd": list(c.cmd) or None,
        "Image": "", "Volumes": GoMap({v: {} for v in c.volumes}) or None, "WorkingDir": c.working_dir,
        "Entrypoint": list(c.entrypoint) or None, "OnBuild": None, "Labels": GoMap(c.labels) or None,
    }
    if c.stop_signal:
        config["StopSignal"] = c.stop_signal
    own = detail.to_json()
    return {
        "Id": str(detail.config_digest), "RepoTags": list(repo_tags), "RepoDigests": list(repo_digests),
        "Parent": "", "Comment": "", "Created": c.created or ZERO_TIME, "DockerVersion": "", "Author": c.author,
        "Config": config, "Architecture": platform.architecture, "Variant": platform.variant or None,
        "Os": platform.os, "Size": detail.size, "VirtualSize": detail.size,
        "GraphDriver": {"Name": "overlayfs", "Data": None},
        # docker's Type and Layers (the diff ids); hawser's chain ids beside them
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in c.diff_ids], "DiffIDs": [str(d) for d in c.diff_ids],
                   "ChainIDs": own["RootFS"]["ChainIDs"]},
        "Metadata": {"LastTagTime": ZERO_TIME},
        # hawser's own, beside docker's
        "Name": detail.name, "Target": own["Target"], "ManifestDigest": own["ManifestDigest"],
        "Platform": own["Platform"], "Labels": own["Labels"],
        "Layers": own["RootFS"]["Layers"],  # the manifest's layer descriptors
    }


# --- ps -----------------------------------------------------------------------------

PS_HEADERS = GoMap({
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
    "Names": "NAMES", "Labels": "LABELS", "Label": lambda *_: "LABEL", "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS", "Platform": "PLATFORM",
})

PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration, which docker's and podman's ``Up ...`` and ``... ago`` use."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(hours // 24 // 365)} years"


def human_size(size: float, precision: int = 3) -> str:
    """go-units' HumanSizeWithPrecision: decimal units, ``precision`` significant digits."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def restarting(info: ContainerInfo) -> bool:
    """Whether its restart policy is about to start the exited container again (docker's "restarting")."""
    if info.status.state != "exited" or "restart" not in info.record.config:
        return False
    try:
        from hawser.runtime.restart import restarting as waiting

        return waiting(info)
    except Exception:
        return False


def status_text(info: ContainerInfo, now: float, health: str | None = None, restarting: bool = False) -> str:
    """docker's STATUS; ``restarting``: its restart policy starts the exited container again after
    docker's delay (``restarting(info)``)."""
    s = info.status
    if restarting:
        code = "?" if s.exit_code is None else str(s.exit_code)
        return f"Restarting ({code}) {human_duration(now - (s.finished_at or now))} ago"
    if s.state in ("running", "paused"):
        text = f"Up {human_duration(now - (s.started_at or now))}"
        if s.state == "paused":
            return text + " (Paused)"
        if health:
            text += f" ({'health: starting' if health == 'starting' else health})"
        return text
    if s.state == "exited":
        code = "?" if s.exit_code is None else str(s.exit_code)
        return f"Exited ({code}) {human_duration(now - s.finished_at)} ago" if s.finished_at else f"Exited ({code})"
    if s.state == "created":
        return "Created"
    return f"Unknown: {s.reason}" if s.reason else "Unknown"


def _ports_text(config: Mapping[str, Any]) -> str:
    out = []
    for p in ports(config):
        host = f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}->" if p["host_port"] else ""
        out.append(f"{host}{p['container_port']}/{p['protocol']}")
    return ", ".join(out)


def ps_row(info: ContainerInfo, *, now: float, no_trunc: bool, size: str = "") -> dict[str, Any]:
    """docker's ContainerContext of one container, as a template's data (string fields, a ``Label`` method)."""
    r = info.record
    config = r.config
    entrypoint, cmd = info.command()
    command = " ".join((*entrypoint, *cmd))
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    health = None
    if info.status.state == "running" and "healthcheck" in config:
        try:
            from hawser.runtime.health import health_status

            health = health_status(info)
        except Exception:
            health = None
    waiting = restarting(info)
    mounts = _mounts(dict(config))
    labels = dict(r.labels)
    networks = sorted(_dict(config.get("networks"))) or [network_mode(config)]
    created = time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(r.created_at))
    return {
        "ID": r.id if no_trunc else r.id[:12], "Image": r.image, "Command": f'"{command}"',
        "CreatedAt": created, "RunningFor": f"{human_duration(now - r.created_at)} ago",
        "Ports": _ports_text(config), "State": "restarting" if waiting else info.status.state,
        "Status": status_text(info, now, health, waiting),
        "Size": size, "Names": r.name, "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Label": lambda key: labels.get(str(key), ""),
        "Mounts": ",".join(m.get("Name") or m["Source"] for m in mounts),
        "LocalVolumes": str(sum(1 for m in mounts if m["Type"] == "volume")),
        "Networks": ",".join(networks), "Platform": "linux",
    }
