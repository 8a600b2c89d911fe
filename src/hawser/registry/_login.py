"""Checking credentials against a registry before a login keeps them.

``GET /v2/`` (the distribution spec's API version check) on the registry's
own server, not a mirror, with the credentials offered and nothing else: the
engine answers the registry's challenge as it does for a pull, with Basic
auth or through the token server its Bearer challenge names.
"""

from __future__ import annotations

from hawser._dataclass import replace
from hawser.errors import HawserError, PermissionDenied
from hawser.registry._credentials import Credentials, normalize_host
from hawser.registry._hosts import resolve_hosts
from hawser.registry._transport import Engine, registry_error_detail, status_error
from hawser.registry._types import RegistryOptions


def check_login(options: RegistryOptions, registry: str, creds: Credentials) -> None:
    """Whether ``registry`` (a host, ``127.0.0.1:5000``) takes ``creds``.

    Only ``creds`` are offered (no docker config, no injected callback).
    Raises, each as one line "login to REGISTRY failed: ...": PermissionDenied
    (refused), Unavailable (unreachable), DeadlineExceeded, InvalidArgument.
    """
    name = normalize_host(registry)
    opts = replace(options, docker_config=None, credentials=lambda host: creds)
    engine = Engine(opts)
    what = f"login to {name} failed"
    try:
        hosts = resolve_hosts(engine.config_dir, name, plain_http=opts.plain_http)
        # The registry itself, where hosts.toml puts it: last, after any mirrors.
        host = next(h for h in reversed(hosts) if not h.mirror)
        op = engine.operation(f"logging in to {name}")
        resp = engine.request(host, op, "GET", f"{host.base_url}/", scope="")
        if resp.status_code == 200:
            return
        if resp.status_code in (401, 403):
            detail = registry_error_detail(resp)
            who = f"user {creds.username!r}" if creds.username and not creds.identity_token else "the identity token"
            raise PermissionDenied(f"{what}: registry {host.host} refused {who} ({resp.status_code}"
                                   + (f" {detail})" if detail else ")"),
                                   hint="check the user name and password")
        raise status_error(resp, host=host, what=f"{what}: GET {host.base_url}/", repository="")
    except PermissionDenied as exc:
        if exc.message.startswith(what):
            raise
        raise PermissionDenied(f"{what}: {exc.message}", hint="check the user name and password") from None
    except HawserError as exc:
        if exc.message.startswith(what):
            raise
        raise type(exc)(f"{what}: {exc.message}", hint=exc.hint) from None
    finally:
        engine.close()
