"""lib/xarray: the dense xarray zswap keeps per 64 MiB of slots."""

from pyzram.lib.xarray import XArray, xa_empty, xa_erase, xa_load, xa_store


def test_store_load_erase_and_the_count_behind_xa_empty():
    xa = XArray(16384, 16384)  # the second 64 MiB: indices 16384..32767
    assert xa_empty(xa) and xa_load(xa, 20000) is None
    a, b = object(), object()
    assert xa_store(xa, 20000, a) is None
    assert xa_store(xa, 16384, b) is None
    assert xa.nr == 2 and not xa_empty(xa)
    assert xa_store(xa, 20000, b) is a  # a replacement: still two
    assert xa.nr == 2 and xa_load(xa, 20000) is b
    assert xa.values() == [b, b]  # in index order
    assert xa_erase(xa, 20000) is b and xa_erase(xa, 20000) is None
    assert xa.nr == 1
    assert xa_store(xa, 16384, None) is b  # storing None erases
    assert xa_empty(xa)
