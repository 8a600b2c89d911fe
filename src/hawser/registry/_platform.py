"""Choosing one manifest from an index (OCI image index, Docker manifest list)."""

from __future__ import annotations

from hawser.errors import NotFound
from hawser.oci import Descriptor, Index, Platform, media, normalize_arch, parse_index

# Older arm variants a newer arm CPU runs too (containerd matches the same way).
_ARM_VARIANTS = ("v5", "v6", "v7", "v8")


def _normalised(p: Platform) -> tuple[str, str, str]:
    arch, variant = normalize_arch(p.architecture, p.variant)
    if arch == "arm64" and not variant:
        # arm64 has only v8 in practice; images and hosts may say either.
        variant = "v8"
    return p.os.lower(), arch, variant


def _rank(wanted: tuple[str, str, str], have: tuple[str, str, str]) -> int | None:
    """0 for an exact match, higher for looser ones, None when it cannot run."""
    w_os, w_arch, w_variant = wanted
    h_os, h_arch, h_variant = have
    if w_os != h_os or w_arch != h_arch:
        return None
    if w_variant == h_variant:
        return 0
    if not h_variant:
        return 1  # a variant-less image claims to run on every variant
    if not w_variant:
        return 2  # the caller did not ask for a variant: any will do
    if w_arch == "arm" and w_variant in _ARM_VARIANTS and h_variant in _ARM_VARIANTS:
        gap = _ARM_VARIANTS.index(w_variant) - _ARM_VARIANTS.index(h_variant)
        if gap > 0:
            return 2 + gap  # armv7 runs armv6 and armv5 images, nearest first
    return None


def select_platform(index: Index | bytes, platform: Platform | None = None) -> Descriptor:
    """The descriptor of the manifest in ``index`` that best fits ``platform``.

    ``platform`` defaults to the host's.  An exact variant match wins over a
    variant-less entry, which wins over other compatible variants; ties go to
    the first entry, as in the index.  Entries without a platform, and
    entries that are not manifests (attestations, signatures), are skipped.
    ``index`` may be the parsed index or its bytes.

    Raises NotFound listing the platforms the index offers when none fits, and
    InvalidArgument when ``index`` bytes are not an index.
    """
    if isinstance(index, (bytes, bytearray)):
        index = parse_index(bytes(index))
    wanted = _normalised(platform or Platform.host())
    best: tuple[int, Descriptor] | None = None
    for desc in index.manifests:
        if desc.platform is None or desc.media_type not in media.MANIFESTS | media.INDEXES:
            continue
        rank = _rank(wanted, _normalised(desc.platform))
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, desc)
    if best is not None:
        return best[1]
    available = sorted({str(d.platform) for d in index.manifests
                        if d.platform is not None and d.media_type in media.MANIFESTS | media.INDEXES})
    shown = Platform(os=wanted[0], architecture=wanted[1], variant=wanted[2])
    listing = ", ".join(available) if available else "none listed"
    raise NotFound(
        f"no image for platform {shown} in the index (available: {listing})",
        hint="choose one of the available platforms with --platform" if available else None,
    )
