"""``hawser version``: the client's version and, when hawserd answers, the daemon's."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser

DAEMON_TIMEOUT = 2.0
"""Seconds hawserd gets to answer the CRI Version call."""


def version(p: Parser) -> Handler:
    """Show the client's version and, if hawserd is running, the daemon's."""
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    return _version


def _version(ctx: CliContext, a: Namespace) -> None:
    from hawser import __version__

    address = ctx.config.daemon.address
    server = daemon_version(address)
    if a.format == "json":
        import json

        echo(json.dumps({"client": {"version": __version__},
                         "server": {"running": server is not None, "address": address, **(server or {})}},
                        indent=2))
        return
    echo("Client:")
    echo(f" Version: {__version__}")
    echo("")
    echo("Server:")
    if server is None:
        echo(f" hawserd: not running ({address})")
        return
    echo(f" Runtime: {server['runtime_name']}")
    echo(f" Version: {server['runtime_version']}")
    echo(f" CRI API: {server['runtime_api_version']}")
    echo(f" Address: {address}")


def daemon_version(address: str, timeout: float = DAEMON_TIMEOUT) -> dict[str, str] | None:
    """The CRI Version answer of the daemon on ``address``; None if nothing answers in ``timeout``."""
    import os

    if not os.path.exists(address):
        return None
    # Imported here only: grpc and the CRI stubs cost a few hundred ms, and only this command needs them.
    import grpc
    from cri_api.v1 import api_pb2, api_pb2_grpc

    with grpc.insecure_channel(f"unix:{address}", options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        try:
            answer = stub.Version(api_pb2.VersionRequest(version="v1"), timeout=timeout)
        except grpc.RpcError:
            return None
    return {"runtime_name": answer.runtime_name, "runtime_version": answer.runtime_version,
            "runtime_api_version": answer.runtime_api_version}
