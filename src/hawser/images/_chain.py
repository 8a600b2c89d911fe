"""Chain IDs: the identity of a stack of layers (OCI image spec, config.md).

ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
Snapshots of unpacked layers are named by chain ID, so images that share a
base share its snapshots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from hawser.oci import Digest


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    chains: list[Digest] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(Digest(diff_id))
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append(Digest("sha256:" + hashlib.sha256(text).hexdigest()))
    return chains
