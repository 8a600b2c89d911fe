"""The uid and gid maps of a pod's user namespace, checked before the kernel sees them."""

from __future__ import annotations

import pytest

from hawser.runtime import check_id_mappings
from hawser.runtime._options import map_id

ONE = ((0, 1 << 20, 65536),)


def test_kubelets_single_range_is_accepted() -> None:
    check_id_mappings(ONE, ONE)
    check_id_mappings(((0, 100000, 1000), (1000, 200000, 1000)), ONE)


@pytest.mark.parametrize(("uids", "gids", "message"), [
    ((), ONE, "at least one uid mapping"),
    (ONE, (), "at least one gid mapping"),
    (((0, 100, 0),), ONE, "sizes be positive"),
    (((0, (1 << 32) - 10, 65536),), ONE, "fit in 32 bits"),
    (((0, 1000, 100), (50, 5000, 10)), ONE, "overlap on the container side"),
    (((0, 1000, 100), (100, 1050, 10)), ONE, "overlap on the host side"),
    (tuple((i, 1000 + i, 1) for i in range(341)), ONE, "at most 340"),
])
def test_maps_the_kernel_would_refuse(uids: tuple[tuple[int, int, int], ...], gids: tuple[tuple[int, int, int], ...],
                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_id_mappings(uids, gids)


def test_map_id() -> None:
    ranges = ((0, 100000, 1000), (1000, 300000, 10))
    assert map_id(ranges, 0) == 100000
    assert map_id(ranges, 999) == 100999
    assert map_id(ranges, 1005) == 300005
    assert map_id(ranges, 1010) is None
