"""Distribution API v2 client: resolve, fetch and push images, with containerd's
hosts.toml (mirrors, TLS, plain http), docker credentials and bearer tokens.

    options = RegistryOptions(config_dir="/etc/hawser/certs.d", plain_http=False)
    with RegistryClient(options) as client:
        root = client.resolve(ref)                       # Resolved(descriptor, data)
        chosen = select_platform(root.data)              # if root is an index
        manifest = client.fetch_manifest(ref, chosen)
        with client.fetch_blob(ref, layer_descriptor) as stream:
            for chunk in stream: ...                     # resumes by itself; caller hashes

Every failure is one of hawser.errors' kinds, with the host and repository in
its message.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from hawser.registry._client import BlobStream, RegistryClient
    from hawser.registry._credentials import (
        Credentials,
        CredentialsFunc,
        DockerConfig,
        docker_config_path,
        erase_credentials,
        load_docker_config,
        logged_in_hosts,
        normalize_host,
        store_credentials,
    )
    from hawser.registry._helpers import CredentialHelper
    from hawser.registry._hosts import RegistryHost, resolve_hosts
    from hawser.registry._login import check_login
    from hawser.registry._platform import select_platform
    from hawser.registry._transport import default_ssl_context
    from hawser.registry._types import RegistryOptions, Resolved
    from hawser.registry._upload import BlobPushed, UploadOptions

# Loaded on first use: the client pulls in httpx and TLS (~10 MB), which code
# that only names Credentials (hawserd's PullImage, which pulls in a child) should not pay.
_LAZY = {
    "BlobStream": "_client", "RegistryClient": "_client", "Credentials": "_credentials",
    "CredentialsFunc": "_credentials", "normalize_host": "_credentials", "RegistryHost": "_hosts", "resolve_hosts": "_hosts",
    "select_platform": "_platform", "RegistryOptions": "_types", "Resolved": "_types",
    "default_ssl_context": "_transport",
    # docker's config.json and credential helpers: login, logout, and every lookup.
    "DockerConfig": "_credentials", "docker_config_path": "_credentials", "erase_credentials": "_credentials",
    "load_docker_config": "_credentials", "logged_in_hosts": "_credentials", "store_credentials": "_credentials",
    "CredentialHelper": "_helpers", "check_login": "_login",
    # pushing: what a blob's push took, how blobs are sent.
    "BlobPushed": "_upload", "UploadOptions": "_upload",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BlobPushed", "BlobStream", "CredentialHelper", "Credentials", "CredentialsFunc", "DockerConfig", "RegistryClient",
    "RegistryHost", "RegistryOptions", "Resolved", "UploadOptions", "check_login", "default_ssl_context",
    "docker_config_path", "erase_credentials", "load_docker_config", "logged_in_hosts", "normalize_host",
    "resolve_hosts", "select_platform", "store_credentials",
]
