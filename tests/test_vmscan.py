"""Anonymous memory under a memcg limit: reclaim through the swap core, faults back."""

from __future__ import annotations

import numpy as np
import pytest

from pyzram import Zram
from pyzram.mm.swap import vm_events
from pyzram.mm.swapfile import mkswap, swapoff, swapon
from pyzram.mm.vmscan import PTE_PRESENT, PTE_SWAP, AddressSpace, MemCgroup
from pyzram.workload.pages import synthetic_mix
from pyzram.zram.swap import zram_init
from test_swap_core import swap_env  # noqa: F401  (autouse: fresh swap state, sio checks)

P = 4096


@pytest.fixture
def zram_swap():
    zram_init()
    z = Zram()
    z.sysfs["comp_algorithm"] = "lzo-rle"
    z.sysfs["disksize"] = "8M"
    mkswap(z.disk)
    si = swapon(z.disk)
    yield z, si
    swapoff(si, unuse=lambda entry, folio: 1)
    z.sysfs["reset"] = "1"


def test_workload_larger_than_limit_swaps_out_and_back_intact(zram_swap):
    z, si = zram_swap
    pages = synthetic_mix(600, seed=9)
    memcg = MemCgroup(limit_pages=200)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.touch(vpn)
        assert memcg.usage <= 200
    swapped = int((mm.pte_state == PTE_SWAP).sum())
    assert swapped >= 400 and int((mm.pte_state == PTE_PRESENT).sum()) == memcg.usage
    assert vm_events["pswpout"] + vm_events["swpout_zero"] >= swapped
    st = z.mm_stat()
    assert st.orig_data_size > 0 and st.compr_data_size < st.orig_data_size
    rng = np.random.default_rng(1)
    for vpn in rng.permutation(len(pages)).tolist():  # every byte comes back
        assert mm.read(vpn) == pages[vpn].tobytes()
    assert vm_events["pgmajfault"] > 0 and vm_events["pswpin"] > 0
    assert si.inuse_pages == int((mm.pte_state == PTE_SWAP).sum())
    z.check()


def test_swapped_in_pages_free_their_slots_and_zram_copies(zram_swap):
    z, si = zram_swap
    pages = synthetic_mix(300, seed=3)
    memcg = MemCgroup(limit_pages=64)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.touch(vpn)
    in_swap = int((mm.pte_state == PTE_SWAP).sum())
    assert si.inuse_pages == in_swap
    notify = z.io_stat().notify_free
    vpn = int(np.flatnonzero(mm.pte_state == PTE_SWAP)[0])
    assert mm.read(vpn) == pages[vpn].tobytes()
    assert mm.pte_state[vpn] == PTE_PRESENT
    assert z.io_stat().notify_free > notify  # the slot went back: zram was told


def test_referenced_pages_get_a_second_chance(zram_swap):
    """A hot set touched between cold faults stays resident; cold pages cycle through swap."""
    pages = synthetic_mix(300, seed=4)
    memcg = MemCgroup(limit_pages=64)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
    hot = range(16)
    for vpn in range(len(pages)):
        mm.touch(vpn)
    rng = np.random.default_rng(2)
    for _ in range(30):
        for h in hot:
            mm.touch(h)
        for vpn in rng.integers(16, len(pages), 4).tolist():
            mm.touch(vpn)
    assert vm_events["pgactivate"] > 0 and vm_events["pgdeactivate"] > 0
    assert sum(int(mm.pte_state[h] == PTE_PRESENT) for h in hot) == len(hot)
    for vpn in range(len(pages)):
        assert mm.read(vpn) == pages[vpn].tobytes()


def test_memcg_limit_too_small():
    with pytest.raises(ValueError):
        MemCgroup(limit_pages=8)


def test_readahead_on_a_swap_file(tmp_path):
    """Not SWP_SYNCHRONOUS_IO: faults read page_cluster windows, later faults hit them."""
    from pyzram.mm import vmscan

    path = tmp_path / "swapfile"
    path.write_bytes(bytes(4 << 20))  # no holes
    mkswap(str(path))
    si = swapon(str(path))
    vmscan.readahead.__init__()  # fresh global state: hits 4, page_cluster 3
    try:
        pages = synthetic_mix(400, seed=6)
        memcg = MemCgroup(limit_pages=64)
        mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn].tobytes())
        for vpn in range(len(pages)):
            mm.touch(vpn)
        vm_events.reset()
        for vpn in range(len(pages)):  # sequential again: readahead pays off
            assert mm.read(vpn) == pages[vpn].tobytes()
        assert vm_events["swap_ra"] > 0 and vm_events["swap_ra_hit"] > 0
        assert vm_events["nrswpin"] < vm_events["pswpin"]  # reads come in batches
    finally:
        swapoff(si, unuse=lambda entry, folio: 1)


def test_swapin_nr_pages_window():
    from pyzram.mm.vmscan import SwapReadahead

    ra = SwapReadahead(page_cluster=3)
    assert ra.swapin_nr_pages(100) == 8  # initial hits 4 -> 6 -> rounded up to 8
    assert ra.swapin_nr_pages(500) == 4  # no hits: 2, not adjacent -> 1, but >= 8 // 2
    assert ra.swapin_nr_pages(900) == 2
    assert ra.swapin_nr_pages(901) == 2  # adjacent to the previous offset
    assert SwapReadahead(page_cluster=0).swapin_nr_pages(5) == 1
