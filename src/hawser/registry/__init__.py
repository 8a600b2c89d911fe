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

from hawser.registry._client import BlobStream, RegistryClient
from hawser.registry._credentials import Credentials, CredentialsFunc
from hawser.registry._hosts import RegistryHost, resolve_hosts
from hawser.registry._platform import select_platform
from hawser.registry._types import RegistryOptions, Resolved

__all__ = [
    "BlobStream", "Credentials", "CredentialsFunc", "RegistryClient", "RegistryHost", "RegistryOptions",
    "Resolved", "resolve_hosts", "select_platform",
]
