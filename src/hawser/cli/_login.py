"""Registry logins: ``hawser login`` and ``hawser logout``.

A login checks the credentials against the registry first (``GET /v2/``,
answering its Basic or Bearer challenge as a pull does), and only then keeps
them: in the credential helper the docker config names for the registry
(``credHelpers``, else ``credsStore``), else in its ``auths``.  The file is
the one pulls and pushes read (``hawser.registry.docker_config_path``).
"""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import UsageError

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from pathlib import Path

    from hawser.cli._parser import Handler, Parser

_DEFAULT_REGISTRY = "docker.io"
_AUTHFILE_HELP = ("Docker config file to keep credentials in [default: $REGISTRY_AUTH_FILE, "
                  "else $DOCKER_CONFIG/config.json, else ~/.docker/config.json].")


def _authfile(ctx: CliContext, a: Namespace) -> Path:
    from hawser.registry import docker_config_path

    return docker_config_path(ctx.config.registry.docker_config, authfile=a.authfile)


def _registry(value: str | None) -> str:
    from hawser.errors import InvalidArgument
    from hawser.registry import normalize_host

    host = normalize_host(value or _DEFAULT_REGISTRY)
    if not host or any(c.isspace() or c in "/@?#" for c in host):
        raise InvalidArgument(f"{value!r} is not a registry (a host, with its port if any: 127.0.0.1:5000)")
    return host


def _terminal() -> bool:
    import sys

    return sys.stdin.isatty()


def login(p: Parser) -> Handler:
    """Log in to a registry: check the credentials with it, then keep them in the docker config
    (or the credential helper it names)."""
    p.add_argument("-u", "--username", metavar="USER", help="User name [default: asked on the terminal].")
    p.add_argument("-p", "--password", metavar="PASS",
                   help="Password (insecure: it shows in the process list; use --password-stdin).")
    p.add_argument("--password-stdin", action="store_true", help="Read the password from stdin.")
    p.add_argument("--authfile", metavar="FILE", help=_AUTHFILE_HELP)
    p.add_argument("--plain-http", action="store_true", help="Talk http, not https, to the registry.")
    p.add_argument("registry", nargs="?", metavar="REGISTRY", help="Host[:port] [default: docker.io].")
    return _login


def _read_password(a: Namespace) -> str:
    import sys

    from hawser.errors import InvalidArgument

    if a.password_stdin:
        # As docker: the trailing newline of `echo $PW |` is not part of the password.
        return sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if a.password is not None:
        return str(a.password)
    if not _terminal():
        raise InvalidArgument("no password given and stdin is not a terminal to ask on",
                              hint="use --password-stdin (or -p)")
    import getpass

    return getpass.getpass("Password: ")


def _login(ctx: CliContext, a: Namespace) -> None:
    from hawser.errors import InvalidArgument
    from hawser.registry import Credentials, RegistryOptions, check_login, store_credentials

    if a.password is not None and a.password_stdin:
        raise UsageError("--password and --password-stdin cannot be used together")
    if a.password_stdin and not a.username:
        raise UsageError("--password-stdin needs --username")
    host = _registry(a.registry)
    if a.password is not None:
        echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    username = a.username
    if not username:
        if not _terminal():
            raise InvalidArgument("no user name given and stdin is not a terminal to ask on",
                                  hint="use -u USER")
        username = input("Username: ").strip()
    password = _read_password(a)
    if not username:
        raise InvalidArgument("the user name is empty")
    if not password:
        raise InvalidArgument("the password is empty")
    creds = Credentials(username=username, password=password)
    registry = ctx.config.registry
    options = RegistryOptions(config_dir=registry.config_path, plain_http=a.plain_http,
                              stall_timeout=registry.stall_timeout, stall_bytes=registry.stall_bytes,
                              max_retries=registry.max_retries, docker_config=None)
    check_login(options, host, creds)
    store_credentials(_authfile(ctx, a), host, creds, helper_timeout=registry.credential_helper_timeout)
    echo("Login Succeeded")


def logout(p: Parser) -> Handler:
    """Log out of a registry: forget its credentials (erased through the credential helper, if the docker
    config names one)."""
    p.add_argument("-a", "--all", action="store_true", help="Log out of every registry the docker config lists.")
    p.add_argument("--authfile", metavar="FILE", help=_AUTHFILE_HELP)
    p.add_argument("registry", nargs="?", metavar="REGISTRY", help="Host[:port] [default: docker.io].")
    return _logout


def _logout(ctx: CliContext, a: Namespace) -> None:
    from hawser.errors import NotFound
    from hawser.registry import erase_credentials, logged_in_hosts

    if a.all and a.registry:
        raise UsageError("--all and a REGISTRY cannot be used together")
    path = _authfile(ctx, a)
    timeout = ctx.config.registry.credential_helper_timeout
    if a.all:
        for host in logged_in_hosts(path):
            erase_credentials(path, host, helper_timeout=timeout)
        echo("Removed login credentials for all registries")
        return
    host = _registry(a.registry)
    if not erase_credentials(path, host, helper_timeout=timeout):
        raise NotFound(f"not logged in to {host}", hint=f"no credentials for it in {path} or its credential helper")
    echo(f"Removed login credentials for {host}")
