"""The ``hawserd`` command line: flags over the config file, signals, exit status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from hawser import __version__
from hawser.config import (
    DEFAULT_ADDRESS,
    DEFAULT_CONTAINERD_ADDRESS,
    DEFAULT_METRICS_ADDRESS,
    LOG_FORMATS,
    LOG_LEVELS,
    SNAPSHOTTERS,
)
from hawser.daemon._config import Settings, load_settings
from hawser.daemon._log import setup_logging
from hawser.errors import HawserError

log = logging.getLogger("hawser.daemon")
# glibc malloc arenas for the whole daemon (see hawser.host._memory).
MALLOC_ARENAS = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hawserd", description="hawser's daemon: the Kubernetes CRI v1 runtime and image services.",
        epilog="Flags override the config file.  SIGTERM or SIGINT stops the daemon; containers keep running.")
    p.add_argument("--version", action="version", version=f"hawserd {__version__}")
    p.add_argument("--config", metavar="FILE",
                   help="config file (default: $HAWSER_CONFIG, else /etc/hawser/config.toml if it exists); "
                        "the config.d/*.toml files beside it are merged over it")
    p.add_argument("--root", metavar="DIR", help="persistent data: images, snapshots, records")
    p.add_argument("--state", metavar="DIR", help="transient data: locks, runtime state")
    p.add_argument("--snapshotter", choices=SNAPSHOTTERS, help="the snapshotter of the store")
    p.add_argument("--address", metavar="SOCKET", help=f"the CRI unix socket (default {DEFAULT_ADDRESS})")
    p.add_argument("--containerd-address", metavar="SOCKET",
                   help=f"containerd's API and the CRI (default {DEFAULT_CONTAINERD_ADDRESS}; '' for none)")
    p.add_argument("--registry-config-dir", metavar="DIR", help="hosts.toml directory (certs.d/<host>/hosts.toml)")
    p.add_argument("--cni-conf-dir", metavar="DIR", help="CNI network configs (default /etc/cni/net.d)")
    p.add_argument("--cni-bin-dir", metavar="DIR", help="CNI plugins (default /usr/lib/cni)")
    p.add_argument("--stream-address", metavar="ADDR", help="the streaming server's address (default 127.0.0.1)")
    p.add_argument("--stream-port", metavar="PORT", type=int, help="the streaming server's port (default 0: any)")
    p.add_argument("--metrics-address", metavar="HOST:PORT",
                   help=f"the Prometheus metrics endpoint (default {DEFAULT_METRICS_ADDRESS}; '' for none)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="least important events logged (default info)")
    p.add_argument("--log-format", choices=LOG_FORMATS,
                   help="text: key=value lines (the default); json: one JSON object per line")
    return p


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The flags as ``hawser.config.apply_overrides`` takes them: dotted key -> value, None if not given."""
    return {
        "root": args.root, "state": args.state, "snapshotter": args.snapshotter,
        "registry.config_path": args.registry_config_dir,
        "daemon.address": args.address, "daemon.containerd_address": args.containerd_address,
        "daemon.log_level": args.log_level, "daemon.log_format": args.log_format,
        "cri.stream_address": args.stream_address, "cri.stream_port": args.stream_port,
        "cni.conf_dir": args.cni_conf_dir, "cni.bin_dir": args.cni_bin_dir,
        "metrics.address": args.metrics_address,
    }


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(args.config, overrides(args))
    except HawserError as exc:
        setup_logging("info", args.log_format or "text")
        log.error("bad configuration", extra=_error_fields(exc))
        return 2
    setup_logging(settings.daemon.log_level, settings.daemon.log_format)
    from hawser.host import limit_malloc_arenas

    # Before any thread starts: two arenas serve the workers; per-thread ones hoard freed memory.
    limit_malloc_arenas(MALLOC_ARENAS)
    try:
        abandoned = asyncio.run(_serve(settings))
    except HawserError as exc:
        log.error("hawserd cannot start", extra=_error_fields(exc))
        return 1
    log.info("stopped")
    if abandoned:
        # A worker thread (a pull) is still running: do not wait for it.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _error_fields(exc: HawserError) -> dict[str, str]:
    return {"error": exc.message, **({"hint": exc.hint} if exc.hint else {})}


async def _serve(settings: Settings) -> bool:
    from hawser.daemon._daemon import Daemon, describe

    log.info("starting", extra=describe(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: exiting at once", extra={"signal": signal.Signals(signum).name})
            logging.shutdown()
            os._exit(1)
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    daemon = Daemon.build(settings)
    await daemon.run(stop)
    return daemon.abandoned
