"""The machine object: the kernel's global state held by one object per model.

Two machines in one process do not see each other; reclaim without
``__GFP_FS`` honours ``SWAP_OPS_F_NOFS``; the free notification follows the
kernel the machine was built as (patch 3/3 of the series, or mainline); and
nothing outside ``mm/`` reaches into ``mm``'s private functions.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import numpy as np
import pytest

from pyzram import Machine, Zram
from pyzram.mm.page_io import swap_bdev_ops, swap_fs_ops
from pyzram.mm.swap_ops import SWAP_OPS_F_NOFS, registered_block_ops
from pyzram.mm.swapfile import mkswap, swapoff, swapon
from pyzram.mm.vmscan import (
    GFP_KERNEL,
    GFP_NOFS,
    GFP_NOIO,
    PTE_PRESENT,
    PTE_SWAP,
    AddressSpace,
    MemCgroup,
    shrink_inactive_list,
)
from pyzram.workload.pages import synthetic_mix
from pyzram.zram.swap import zram_init, zram_swap_ops, zram_swap_registered
from pyzram.zram.zram_drv import zram_devops
from test_swap_core import HookedOps

P = 4096
SRC = Path(__file__).resolve().parent.parent / "src" / "pyzram"


def zram_area(m: Machine, size: str = "4M"):
    zram_init(m)
    z = Zram()
    z.sysfs["disksize"] = size
    mkswap(z.disk, uuid=bytes(16))  # a fixed UUID: the header page compresses the same
    return z, swapon(m, z.disk)


def process(m: Machine, pages: np.ndarray, limit: int) -> AddressSpace:
    mm = AddressSpace(len(pages), MemCgroup(m, limit), lambda vpn: pages[vpn].tobytes())
    for vpn in range(len(pages)):
        mm.do_anonymous_page(vpn)
    return mm


def test_two_machines_do_not_see_each_other():
    a, b = Machine(), Machine()
    za, sa = zram_area(a)
    assert zram_swap_registered(a) and not zram_swap_registered(b)
    assert registered_block_ops(b) == (None, None)
    zb = Zram()
    zb.sysfs["disksize"] = "4M"
    mkswap(zb.disk)
    sb = swapon(b, zb.disk)  # b has no zram registration: the bio path
    assert sa.ops is zram_swap_ops and sb.ops is swap_bdev_ops
    assert sa.type == sb.type == 0  # each machine numbers its own areas
    pages = synthetic_mix(120, seed=1)
    pa = process(a, pages, 200)
    assert shrink_inactive_list(pa.memcg, 32) == 32
    assert a.vm_events["pswpout"] + a.vm_events["swpout_zero"] == 32
    assert not b.vm_events.counts and b.sio_pool.allocated_total == 0
    assert sb.inuse_pages == 0 and sa.inuse_pages > 0
    with pytest.raises(OSError) as e:  # a disk is held by one machine's area at a time
        swapon(b, za.disk)
    assert e.value.errno == 16
    a.close()
    assert not a.active_areas() and registered_block_ops(a) == (None, None)
    assert b.active_areas() == [sb]
    b.close()
    za.sysfs["reset"] = "1"  # released by the machine: the device is free again
    zb.sysfs["reset"] = "1"


def test_machines_run_side_by_side_in_threads():
    """Two models swapping at once, each in its own thread, get what each gets alone."""
    pages = synthetic_mix(400, seed=7)

    def model() -> tuple[dict, bytes]:
        m = Machine()
        z, _ = zram_area(m)
        mm = AddressSpace(len(pages), MemCgroup(m, 100), lambda vpn: pages[vpn].tobytes())
        for vpn in list(range(len(pages))) * 2:
            mm.touch(vpn)
        counts = dict(m.vm_events.counts)
        text = z.sysfs["mm_stat"].encode()
        m.close()
        z.sysfs["reset"] = "1"
        return counts, text

    alone = model()
    got: list = [None, None]

    def run(i: int) -> None:
        got[i] = model()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got[0] == got[1] == alone


def test_reclaim_without_gfp_fs_keeps_folios_of_areas_that_enter_the_filesystem(tmp_path):
    """``may_enter_fs``: swap_fs_ops is SWAP_OPS_F_NOFS; zram's ops are not."""
    assert swap_fs_ops.flags & SWAP_OPS_F_NOFS and not zram_swap_ops.flags & SWAP_OPS_F_NOFS
    pages = synthetic_mix(64, seed=2)
    pages = pages[[i for i in range(len(pages)) if pages[i].any()]][:40]
    path = tmp_path / "swapfile"
    path.write_bytes(bytes(1 << 20))
    mkswap(str(path))
    with Machine() as m:
        swapon(m, str(path))
        mm = process(m, pages, 64)
        assert shrink_inactive_list(mm.memcg, 32, GFP_NOFS) == 0  # keep_locked
        assert m.vm_events["pswpout"] == 0 and mm.memcg.usage == len(pages) + mm.pgtables
        kept = int((mm.pte_state == PTE_SWAP).sum())
        assert kept == 32  # unmapped, dirty in the swap cache: a later pass writes them
        assert shrink_inactive_list(mm.memcg, 32, GFP_NOIO) == 0  # no __GFP_IO at all
        assert shrink_inactive_list(mm.memcg, 64, GFP_KERNEL) == len(pages)
        assert m.vm_events["pswpout"] == len(pages)
        for vpn in range(len(pages)):
            assert mm.read(vpn) == pages[vpn].tobytes()
    with Machine() as m:  # zram does not enter a filesystem: GFP_NOFS reclaim writes
        z, _ = zram_area(m)
        mm = process(m, pages, 64)
        assert shrink_inactive_list(mm.memcg, 32, GFP_NOFS) == 32
        assert shrink_inactive_list(mm.memcg, 32, GFP_NOIO) == 0  # but not without I/O
    z.sysfs["reset"] = "1"


@pytest.mark.parametrize("series", [True, False], ids=["series", "mainline"])
def test_slot_free_reaches_zram_through_the_kernel_it_runs(series):
    """Patch 3/3: with the series the free notification goes through ``swap_ops`` only
    (``block_device_operations.swap_slot_free_notify`` is gone); mainline 6.18 calls
    the fops hook."""
    routes: list[str] = []
    ops_hook, fops_hook = zram_swap_ops.slot_free_notify, zram_devops.swap_slot_free_notify
    m = Machine(swap_ops_series=series)
    z, si = zram_area(m)
    if series:
        si.ops = HookedOps(
            si.ops, slot_free_notify=lambda s, o: (routes.append("swap_ops"), ops_hook(s, o))
        )
    zram_devops.swap_slot_free_notify = lambda b, o: (routes.append("fops"), fops_hook(b, o))
    try:
        pages = synthetic_mix(80, seed=3)
        pages = pages[[i for i in range(len(pages)) if pages[i].any()]][:32]
        mm = process(m, pages, 64)
        assert shrink_inactive_list(mm.memcg, 32) == 32
        mm.zap_pte_range(0, len(pages))  # the process exits: every slot is freed
        assert routes == ["swap_ops" if series else "fops"] * 32
        assert z.io_stat().notify_free == 32
    finally:
        zram_devops.swap_slot_free_notify = fops_hook
        m.close()
        z.sysfs["reset"] = "1"


def test_a_series_kernel_with_an_unregistered_block_device_is_told_nothing():
    """Patch 3/3 removed the fops hook: an area on the bio path gets no notification."""
    m = Machine()
    z = Zram()  # zram not registered on this machine: its area uses swap_bdev_ops
    z.sysfs["disksize"] = "4M"
    mkswap(z.disk, uuid=bytes(16))  # a fixed UUID: the header page compresses the same
    si = swapon(m, z.disk)
    assert si.ops is swap_bdev_ops
    pages = synthetic_mix(80, seed=4)
    pages = pages[[i for i in range(len(pages)) if pages[i].any()]][:32]
    mm = process(m, pages, 64)
    assert shrink_inactive_list(mm.memcg, 32) == 32
    stored = z.mm_stat().orig_data_size
    mm.zap_pte_range(0, len(pages))
    assert z.io_stat().notify_free == 0 and z.mm_stat().orig_data_size == stored > 0
    m.close()
    z.sysfs["reset"] = "1"


def test_swapoff_walks_the_mmlist():
    """``try_to_unuse`` finds the PTEs through ``mmlist``: no callback needed."""
    with Machine() as m:
        z, si = zram_area(m)
        pages = synthetic_mix(100, seed=5)
        mm = process(m, pages, 200)
        assert shrink_inactive_list(mm.memcg, 64) == 64
        assert mm in m.mmlist and si.inuse_pages > 0
        swapoff(si)
        assert (mm.pte_state == PTE_PRESENT).all() and not m.active_areas()
        assert all(mm.read(vpn) == pages[vpn].tobytes() for vpn in range(len(pages)))
    z.sysfs["reset"] = "1"


def test_swapoff_asks_every_mm_of_the_mmlist_through_mm_struct():
    """Each address space is an ``mm_struct``, whose ``unuse_pte`` swapoff calls for
    every slot: one that does not define it fails the swapoff."""
    from pyzram.mm.mm_types import MmStruct

    with Machine() as m:
        z, si = zram_area(m)
        mm = process(m, synthetic_mix(40, seed=3), 80)
        assert isinstance(mm, MmStruct)
        assert shrink_inactive_list(mm.memcg, 16) == 16
        m.mmlist.insert(0, MmStruct())
        with pytest.raises(NotImplementedError, match="MmStruct does not define unuse_pte"):
            swapoff(si)
        del m.mmlist[0]
    z.sysfs["reset"] = "1"


def _private_mm_calls(path: Path) -> list[str]:
    """Calls of ``mm``'s private functions (``_x``) in a module outside ``mm/``."""
    tree = ast.parse(path.read_text())
    mm_modules: set[str] = set()
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyzram.mm"):
            for a in node.names:
                if node.module == "pyzram.mm":
                    mm_modules.add(a.asname or a.name)
                elif a.name.startswith("_"):
                    imported.add(a.asname or a.name)
        if isinstance(node, ast.Import):
            mm_modules.update(a.asname or a.name for a in node.names if "pyzram.mm." in a.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in imported:
            found.append(f.id)
        if (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and f.value.id in mm_modules
            and f.attr.startswith("_")
        ):
            found.append(f"{f.value.id}.{f.attr}")
    return found


def test_nothing_outside_mm_calls_a_private_mm_function():
    files = [p for p in SRC.rglob("*.py") if "mm" not in p.relative_to(SRC).parts[:1]]
    files += sorted((SRC.parent.parent / "tests").glob("*.py"))
    bad = {str(p.relative_to(SRC.parent.parent)): u for p in files if (u := _private_mm_calls(p))}
    assert not bad, bad
