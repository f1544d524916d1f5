"""zswap (pyzram.mm.zswap): parameters, store/load/invalidate, the pool limit, writeback,
and zswap wired into the swap path (reclaim, faults, slot frees, swapon/swapoff)."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import numpy as np
import pytest

from pyzram.block.filedev import FileDisk
from pyzram.mm.folio import PAGE_SIZE, Folio, PG_locked, PG_swapcache, PG_uptodate, SwpEntry
from pyzram.mm.machine import Machine
from pyzram.mm.swap_ops import READ, WRITE
from pyzram.mm.swapfile import mkswap, swapoff, swapon
from pyzram.mm.vmscan import PTE_SWAP, AddressSpace, MemCgroup
from pyzram.mm.zswap import (
    DEBUGFS_FILES,
    shrink_worker,
    zswap_invalidate,
    zswap_load,
    zswap_shrinker_count,
    zswap_store,
    zswap_swapoff,
    zswap_swapon,
)
from test_swap_core import OpsSpy, swap_env  # noqa: F401  (autouse: sio checks)

#: The host's crypto API: lzo, lzo-rle and deflate (no lz4).
HOST_COMPRESSORS = ("lzo", "lzo-rle", "deflate")


@pytest.fixture
def machine():
    """A machine whose zswap sees the host's compressors; ``machine(**kw)`` another."""
    made = []

    def make(totalram_pages: int = 1 << 20) -> Machine:
        mach = Machine(totalram_pages=totalram_pages)
        mach.zswap.compressors = HOST_COMPRESSORS
        made.append(mach)
        return mach

    yield make
    for mach in made:
        mach.close()


def enable(m: Machine, compressor: str = "lzo", **params: str) -> Machine:
    m.zswap.param_write("compressor", compressor)
    for name, value in params.items():
        m.zswap.param_write(name, value)
    m.zswap.param_write("enabled", "Y\n")
    return m


@pytest.fixture
def enabled(machine):
    """``enabled(compressor, nr_slots, totalram_pages=...)``: zswap on, with the
    xarrays of a swap type 0 that has no area (zswap alone, below the swap core)."""

    def make(compressor: str = "lzo", nr_slots: int = 1 << 12, **kw) -> Machine:
        mach = enable(machine(**kw), compressor)
        zswap_swapon(mach, 0, nr_slots)
        return mach

    return make


def text_page(seed: int = 0) -> bytes:
    line = f"page {seed}: the quick brown fox jumps over the lazy dog\n".encode()
    return (line * (PAGE_SIZE // len(line) + 1))[:PAGE_SIZE]


def locked_folio(data: bytes, offset: int, order: int = 0) -> Folio:
    f = Folio(order, data)
    f.swap = SwpEntry(0, offset)
    f.lock()
    return f


# -- parameters -------------------------------------------------------------------------


def test_parameters_read_as_the_kernel_prints_them(machine):
    zs = machine().zswap
    assert [zs.param_read(n) for n in ("enabled", "compressor", "max_pool_percent")] == [
        "N\n",
        "lzo\n",
        "20\n",
    ]
    assert zs.param_read("accept_threshold_percent") == "90\n"
    assert zs.param_read("shrinker_enabled") == "N\n"
    assert zs.debugfs() == {}  # no debugfs directory before the first enable


@pytest.mark.parametrize(
    ("name", "value", "err"),
    [
        ("enabled", "x", errno.EINVAL),
        ("enabled", "o", errno.EINVAL),
        ("shrinker_enabled", "maybe", errno.EINVAL),
        ("max_pool_percent", "abc", errno.EINVAL),
        ("max_pool_percent", "-1", errno.EINVAL),
        ("max_pool_percent", "4294967296", errno.ERANGE),
        ("max_pool_percent", "20 ", errno.EINVAL),
        ("accept_threshold_percent", "", None),  # empty write: nothing happens
        ("accept_threshold_percent", "0x10\n", None),
    ],
)
def test_bad_and_odd_parameter_writes(machine, name, value, err):
    zs = machine().zswap
    before = zs.param_read(name)
    if err is None:
        zs.param_write(name, value)
        if value:
            assert zs.param_read(name) == "16\n"
        else:
            assert zs.param_read(name) == before
        return
    with pytest.raises(OSError) as e:
        zs.param_write(name, value)
    assert e.value.errno == err
    assert zs.param_read(name) == before


def test_kstrtobool_words(machine):
    zs = machine().zswap
    for word, want in [("on", "Y"), ("off", "N"), ("1", "Y"), ("no", "N"), ("true\n", "Y")]:
        zs.param_write("shrinker_enabled", word)
        assert zs.param_read("shrinker_enabled") == want + "\n"


def test_compressor_unknown_is_enoent_once_set_up_and_kept_before(machine):
    zs = machine().zswap
    zs.param_write("compressor", "lz4")  # before setup: stored as it is
    assert zs.param_read("compressor") == "lz4\n"
    zs.param_write("enabled", "1")  # setup falls back to the default
    assert zs.param_read("compressor") == "lzo\n"
    with pytest.raises(OSError) as e:
        zs.param_write("compressor", "lz4")
    assert e.value.errno == errno.ENOENT
    zs.param_write("compressor", " deflate\n")  # strstrip
    assert zs.param_read("compressor") == "deflate\n"
    assert [p.tfm_name for p in zs.pools] == ["deflate"]  # the empty lzo pool went
    assert set(zs.debugfs()) == set(DEBUGFS_FILES)


def test_compressor_by_driver_name_as_6_18_registers_them(machine):
    """scomp algorithms answer to ``<name>-scomp``, acomp ones to ``<name>-generic``."""
    zs = enable(machine()).zswap
    for name in ("lzo-rle-scomp", "deflate-generic", "lzo-scomp", "lzo-rle"):
        zs.param_write("compressor", name)
        assert zs.param_read("compressor") == name + "\n"
    for name in ("lzo-generic", "lzo-rle-generic", "deflate-scomp", "lz4-scomp"):
        with pytest.raises(OSError) as e:  # lz4: not in the host's crypto API
            zs.param_write("compressor", name)
        assert e.value.errno == errno.ENOENT, name
    assert zs.param_read("compressor") == "lzo-rle\n"


def test_enabled_n_sets_zswap_up_too(machine):
    zs = machine().zswap
    zs.param_write("enabled", "N")
    assert zs.debugfs()["stored_pages"] == 0
    assert zs.param_read("enabled") == "N\n"


# -- store, load, invalidate --------------------------------------------------------------


def test_store_then_load_compressible_and_incompressible(enabled):
    m = enabled()
    zs = m.zswap
    pages = [text_page(1), os.urandom(PAGE_SIZE)]
    for i, p in enumerate(pages):
        f = locked_folio(p, i + 1)
        assert zswap_store(m, f)
    d = zs.debugfs()
    assert d["stored_pages"] == 2
    assert d["stored_incompressible_pages"] == 1
    # a page of random bytes is stored as it is: one huge-class zspage (one page)
    assert d["pool_total_size"] >= 2 * PAGE_SIZE
    assert m.vm_events["zswpout"] == 2
    assert zs.meminfo() == {"Zswap": d["pool_total_size"] // 1024, "Zswapped": 8}
    for i, p in enumerate(pages):
        f = locked_folio(bytes(PAGE_SIZE), i + 1)
        assert zswap_load(m, f) == 0
        assert bytes(f.data) == p
        assert f.test(PG_uptodate) and not f.test(PG_locked)
    d = zs.debugfs()
    assert (d["stored_pages"], d["stored_incompressible_pages"], d["pool_total_size"]) == (0, 0, 0)
    assert m.vm_events["zswpin"] == 2


def test_load_miss_keeps_the_folio_locked(enabled):
    m = enabled()
    f = locked_folio(bytes(PAGE_SIZE), 7)
    assert zswap_load(m, f) == -errno.ENOENT
    assert f.test(PG_locked)


def test_large_folio_stored_page_by_page_and_not_loaded_whole(enabled):
    m = enabled()
    data = b"".join(text_page(i) for i in range(4))
    assert zswap_store(m, locked_folio(data, 8, order=2))
    assert m.zswap.stored_pages == 4 and m.vm_events["zswpout"] == 4
    f = locked_folio(bytes(4 * PAGE_SIZE), 8, order=2)
    assert zswap_load(m, f) == -errno.EINVAL
    assert not f.test(PG_uptodate) and not f.test(PG_locked)


def test_invalidate_frees_the_entry(enabled):
    m = enabled()
    assert zswap_store(m, locked_folio(text_page(), 3))
    zswap_invalidate(m, SwpEntry(0, 3))
    assert m.zswap.stored_pages == 0 and m.zswap.zswap_total_pages() == 0
    zswap_invalidate(m, SwpEntry(0, 3))  # nothing there: nothing happens
    zswap_swapoff(m, 0)


def test_failed_or_disabled_store_drops_the_stale_entry(enabled):
    m = enabled()
    assert zswap_store(m, locked_folio(text_page(1), 5))
    m.zswap.param_write("enabled", "N")
    assert not zswap_store(m, locked_folio(text_page(2), 5))
    assert m.zswap.stored_pages == 0  # writeback could not overwrite the new data
    assert m.vm_events["zswpout"] == 1


def test_redirtied_folio_replaces_its_entry(enabled):
    m = enabled()
    assert zswap_store(m, locked_folio(text_page(1), 5))
    assert zswap_store(m, locked_folio(text_page(2), 5))
    assert m.zswap.stored_pages == 1
    f = locked_folio(bytes(PAGE_SIZE), 5)
    assert zswap_load(m, f) == 0 and bytes(f.data) == text_page(2)


def test_writeback_disabled_memcg_rejects_incompressible_pages(enabled):
    m = enabled()
    f = locked_folio(os.urandom(PAGE_SIZE), 2)
    f.memcg = SimpleNamespace(zswap_writeback=False)
    assert not zswap_store(m, f)
    assert m.zswap.reject_compress_fail == 1 and m.zswap.stored_pages == 0


def test_same_sizes_as_the_codec_and_pool_shared_by_compressors(enabled):
    """Switching compressors keeps the old pool until its last entry goes."""
    m = enabled("lzo")
    zs = m.zswap
    assert zswap_store(m, locked_folio(text_page(1), 1))
    zs.param_write("compressor", "deflate")
    assert zswap_store(m, locked_folio(text_page(2), 2))
    assert [p.tfm_name for p in zs.pools] == ["deflate", "lzo"]
    for off, seed in ((1, 1), (2, 2)):  # each entry decompresses with its own pool
        f = locked_folio(bytes(PAGE_SIZE), off)
        assert zswap_load(m, f) == 0 and bytes(f.data) == text_page(seed)
    assert [p.tfm_name for p in zs.pools] == ["deflate"]


# -- the pool limit ------------------------------------------------------------------------


def test_pool_limit_and_acceptance_hysteresis(enabled):
    # 1000 pages of RAM, 1 %: the pool may hold 10 pages; accept again at 9 or fewer
    m = enabled(totalram_pages=1000)
    zs = m.zswap
    zs.param_write("max_pool_percent", "1")
    off = 1
    while zswap_store(m, locked_folio(os.urandom(PAGE_SIZE), off)):
        off += 1
    assert zs.zswap_total_pages() == 10 and zs.stored_pages == 10
    assert zs.pool_limit_hit == 1 and zs.pool_reached_full
    # no swap area behind: the shrink worker could write nothing back
    assert zs.reject_reclaim_fail > 0 and zs.written_back_pages == 0
    zswap_invalidate(m, SwpEntry(0, 1))  # 9 pages: not above the threshold
    assert zs.zswap_total_pages() == 9
    assert zswap_store(m, locked_folio(os.urandom(PAGE_SIZE), off))
    assert not zs.pool_reached_full
    # full again at 10; 9 would not do now until it falls to 9 again
    assert not zswap_store(m, locked_folio(os.urandom(PAGE_SIZE), off + 1))
    zs.param_write("accept_threshold_percent", "50")  # thr = 5 pages
    zswap_invalidate(m, SwpEntry(0, 2))
    assert not zswap_store(m, locked_folio(os.urandom(PAGE_SIZE), off + 1))
    assert zs.pool_limit_hit == 2


def test_shrinker_count_scales_by_compression(enabled):
    m = enabled()
    zs = m.zswap
    for i in range(64):
        assert zswap_store(m, locked_folio(text_page(i), i + 1))
    assert zswap_shrinker_count(m) == 0  # shrinker_enabled is off
    zs.param_write("shrinker_enabled", "Y")
    n = zswap_shrinker_count(m)
    assert n == 64 * zs.zswap_total_pages() // 64
    assert 0 < n < 64


# -- zswap in the swap path --------------------------------------------------------------------


def text_pages(n: int, seed: int = 0) -> list[bytes]:
    return [text_page(seed * 100_000 + i) for i in range(n)]


def random_pages(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes() for _ in range(n)]


@pytest.fixture
def file_area(tmp_path):
    """``file_area(m, mib)``: a swap area on a file-backed disk of ``m``, with an ops spy."""

    def make(mach: Machine, mib: int = 8):
        disk = FileDisk(tmp_path / f"swapdisk{len(list(tmp_path.iterdir()))}", size=mib << 20)
        mkswap(disk.disk)
        si = swapon(mach, disk.disk)
        return si, disk, OpsSpy(si)

    return make


def resident(m: Machine, pages: list[bytes], limit: int | None = None) -> AddressSpace:
    """A process of ``pages``, every page touched once (faulted in)."""
    memcg = MemCgroup(m, limit or len(pages) + 32)
    mm = AddressSpace(len(pages), memcg, lambda vpn: pages[vpn])
    for vpn in range(len(pages)):
        mm.touch(vpn)
    return mm


def test_swap_path_unchanged_while_zswap_is_off(m, file_area):
    si, _, spy = file_area(m)
    assert m.zswap.param_read("enabled") == "N\n"
    pages = text_pages(64)
    mm = resident(m, pages)
    assert mm.madvise_pageout(0, 64) == 64
    assert spy.nr(WRITE) == 2 and m.vm_events["pswpout"] == 64
    assert m.vm_events["zswpout"] == 0 and m.zswap.debugfs() == {}
    assert [mm.read(v) for v in range(64)] == pages
    assert spy.nr(READ) > 0 and m.vm_events["zswpin"] == 0


def test_zswap_takes_the_page_and_the_ops_see_no_batch(m, file_area):
    si, _, spy = file_area(m)
    enable(m)
    pages = text_pages(100) + [bytes(PAGE_SIZE)] * 4
    mm = resident(m, pages)
    assert mm.madvise_pageout(0, len(pages)) == len(pages)
    assert spy.nr(WRITE) == 0 and m.vm_events["pswpout"] == 0
    assert m.vm_events["nrswpout"] == 0
    assert m.vm_events["zswpout"] == 100 and m.vm_events["swpout_zero"] == 4
    assert m.zswap.stored_pages == 100
    assert (mm.pte_state == PTE_SWAP).all() and mm.memcg.usage == mm.pgtables
    assert si.inuse_pages == len(pages) and not any(si.swap_cache)  # slots held, folios freed


def test_load_hit_needs_no_io_and_drops_the_entry(m, file_area):
    si, _, spy = file_area(m)
    enable(m)
    pages = text_pages(50)
    mm = resident(m, pages)
    mm.madvise_pageout(0, 50)
    folio = None
    for vpn in range(50):
        assert mm.read(vpn) == pages[vpn]
        folio = mm.present[vpn]
        assert folio.test(PG_uptodate) and not folio.test(PG_locked)
    assert spy.nr(READ) == 0 and m.vm_events["pswpin"] == 0 and m.vm_events["nrswpin"] == 0
    assert m.vm_events["zswpin"] == 50 and m.vm_events["pgmajfault"] == 50
    assert m.zswap.stored_pages == 0 and m.zswap.zswap_total_pages() == 0
    assert si.inuse_pages == 0 and not folio.test(PG_swapcache)


def test_freeing_a_slot_invalidates_its_entry(m, file_area):
    si, _, _ = file_area(m)
    enable(m)
    pages = text_pages(40)
    mm = resident(m, pages)
    mm.madvise_pageout(0, 40)
    assert m.zswap.stored_pages == 40
    mm.zap_pte_range(0, 10)  # munmap: swap_free -> swap_range_free -> zswap_invalidate
    assert m.zswap.stored_pages == 30 and si.inuse_pages == 30
    mm.zap_pte_range(10, 40)
    assert m.zswap.stored_pages == 0 and m.zswap.zswap_total_pages() == 0
    assert m.zswap.debugfs()["pool_total_size"] == 0


def test_swapoff_loads_every_entry_and_drops_the_xarrays(m, file_area):
    si, _, spy = file_area(m)
    enable(m)
    pages = text_pages(30)
    mm = resident(m, pages)
    mm.madvise_pageout(0, 30)
    assert si.type in m.zswap.trees
    swapoff(si)
    assert spy.nr(READ) == 0 and m.vm_events["zswpin"] == 30
    assert si.type not in m.zswap.trees and m.zswap.stored_pages == 0
    assert [mm.read(v) for v in range(30)] == pages


def test_power_off_frees_what_zswap_still_holds(machine, file_area):
    mach = enable(machine())
    file_area(mach)
    mm = resident(mach, text_pages(20))
    mm.madvise_pageout(0, 20)
    assert mach.zswap.stored_pages == 20
    mach.close()
    assert mach.zswap.stored_pages == 0 and mach.zswap.zswap_total_pages() == 0


def test_writeback_through_the_swap_core_then_load_from_the_disk(m, file_area):
    si, disk, spy = file_area(m)
    enable(m)
    pages = text_pages(8)
    mm = resident(m, pages)
    mm.madvise_pageout(0, 8)
    m.zswap.param_write("max_pool_percent", "0")
    shrink_worker(m)  # the pool limit's worker: down to the threshold (0 pages)
    zs = m.zswap
    assert zs.stored_pages == 0 and zs.written_back_pages == 8
    assert m.vm_events["zswpwb"] == 8 and m.vm_events["pswpout"] == 8
    assert spy.nr(WRITE) == 8  # __swap_writepage(folio, NULL): one unplugged write each
    assert not any(si.swap_cache) and si.inuse_pages == 8  # written folios left the cache
    fd = os.open(disk.path, os.O_RDONLY)
    try:
        for vpn in range(8):
            off = int(mm.pte_to_swp_entry(vpn).offset)
            assert os.pread(fd, PAGE_SIZE, off * PAGE_SIZE) == pages[vpn]
    finally:
        os.close(fd)
    assert [mm.read(v) for v in range(8)] == pages  # zswap misses: the area is read
    assert m.vm_events["zswpin"] == 0 and m.vm_events["pswpin"] == 8 and spy.nr(READ) > 0
    assert zs.nr_disk_swapins[mm.memcg] == 8  # zswap_folio_swapin: the shrinker backs off


def test_writeback_gives_referenced_entries_a_second_chance(m, file_area):
    from pyzram.mm.zswap import shrink_memcg

    file_area(m)
    enable(m)
    mm = resident(m, text_pages(2))
    mm.madvise_pageout(0, 2)
    memcg = mm.memcg
    assert shrink_memcg(m, memcg) == -errno.EAGAIN  # first entry: referenced, rotated
    assert shrink_memcg(m, memcg) == -errno.EAGAIN  # second: the same
    assert shrink_memcg(m, memcg) == 0  # the first again: written back
    assert m.zswap.written_back_pages == 1 and m.zswap.stored_pages == 1
    assert [mm.read(v) for v in range(2)] == text_pages(2)


def test_pool_limit_reached_under_reclaim(machine, file_area):
    # 2000 pages of RAM, 10 %: a pool of 200 pages; incompressible pages fill it
    mach = enable(machine(totalram_pages=2000), max_pool_percent="10")
    si, _, spy = file_area(mach)
    pages = random_pages(500, seed=5)
    mm = resident(mach, pages, limit=64)  # faults over the limit reclaim
    zs = mach.zswap
    assert zs.pool_limit_hit > 0
    assert zs.zswap_total_pages() <= 200
    assert zs.written_back_pages > 0 and mach.vm_events["zswpwb"] == zs.written_back_pages
    # rejected while full (hysteresis) or written back: both reach the disk
    assert mach.vm_events["pswpout"] >= zs.written_back_pages and spy.nr(WRITE) > 0
    assert mach.vm_events["zswpout"] + mach.vm_events["pswpout"] - zs.written_back_pages >= 436
    assert [mm.read(v) for v in range(500)] == pages
    assert mach.sio_pool.outstanding == 0


@pytest.mark.parametrize("shrinker", ["N", "Y"])
def test_shrinker_runs_in_memcg_reclaim_only_when_enabled(machine, file_area, shrinker):
    # incompressible pages: the count is not scaled down, so memcg reclaim at the
    # priorities a 64-page memcg reaches scans (a well-compressed pool is spared)
    mach = enable(machine(), shrinker_enabled=shrinker)
    file_area(mach, mib=16)
    pages = random_pages(2000, seed=3)
    mm = resident(mach, pages, limit=64)
    zs = mach.zswap
    assert zs.pool_limit_hit == 0 and mach.vm_events["zswpout"] >= 1900
    if shrinker == "N":
        assert zs.written_back_pages == 0 and mach.vm_events["slabs_scanned"] == 0
    else:
        assert mach.vm_events["slabs_scanned"] > 0 and zs.written_back_pages > 0
        assert mach.vm_events["pswpout"] == zs.written_back_pages
    assert mm.read(0) == pages[0] and mm.read(1999) == pages[1999]


def test_large_folios_stored_then_swapped_in_as_pages(m, file_area):
    file_area(m)
    enable(m)
    pages = text_pages(64)
    memcg = MemCgroup(m, 200)
    mm = AddressSpace(64, memcg, lambda v: pages[v], folio_order=4)
    for v in range(64):
        mm.touch(v)
    assert len({id(f) for f in mm.present if f is not None}) == 4
    mm.madvise_pageout(0, 64)
    assert m.vm_events["zswpout"] == 64 and m.zswap.stored_pages == 64
    assert m.vm_events.mthp[(4, "zswpout")] == 4
    assert mm.read(5) == pages[5] and mm.present[5].order == 0  # zswap loads order 0
    assert [mm.read(v) for v in range(64)] == pages


def test_store_zswap_goes_through_reclaim_of_a_process():
    from pyzram.tools.commands.store import zswap_pageout

    pages = np.frombuffer(b"".join(text_pages(300) + random_pages(100)), np.uint8).reshape(400, -1)
    pages = np.concatenate([pages, np.zeros((20, PAGE_SIZE), np.uint8)])
    r = zswap_pageout(pages, "lzo", totalram_pages=1 << 20, read_back=True)
    assert r["read_back_equal"]
    assert r["vmstat"] == {
        "zswpout": 400,
        "zswpin": 0,
        "zswpwb": 0,
        "swpout_zero": 20,
        "pswpout": 0,
    }
    assert r["debugfs"]["stored_incompressible_pages"] == 100
    assert r["vmstat_read_back"] == {"zswpin": 400, "pswpin": 0, "swpin_zero": 20}
    # a 1 % pool of 10,000 pages holds 100: the rest goes to the zram area behind
    full = zswap_pageout(
        pages, "lzo", totalram_pages=10_000, params={"max_pool_percent": "1"}, read_back=True
    )
    assert full["read_back_equal"] and full["debugfs"]["pool_limit_hit"] > 0
    assert full["vmstat"]["pswpout"] > 0
    assert full["vmstat"]["zswpout"] + full["vmstat"]["pswpout"] - full["vmstat"]["zswpwb"] == 400


# -- run and compare ---------------------------------------------------------------------------


@pytest.fixture
def workload():
    from pyzram.workload.pages import synthetic_mix

    return synthetic_mix(1500, seed=11)


def test_run_with_zswap_in_front_of_zram(workload):
    from pyzram.tools.commands.run import run_workload

    r = run_workload(workload, zswap="lzo", mem_limit_pages=300, seed=1)
    assert r.intact and r.column == "zswap + swap_ops"
    assert r.vmstat["zswpout"] > 1000 and r.vmstat["pswpout"] == 0
    d = r.zswap["debugfs"]
    assert r.zswap["parameters"]["enabled"] == "Y" and d["stored_pages"] > 0
    assert r.memory_used_bytes >= d["pool_total_size"] and r.disk_write_pages == 0
    off = run_workload(workload, mem_limit_pages=300, seed=1)
    assert off.zswap is None and "zswpout" not in off.vmstat and off.vmstat["pswpout"] > 1000


def test_run_on_a_swap_file_behind_a_small_zswap_pool(workload, tmp_path):
    from pyzram.tools.commands.run import run_workload

    path = tmp_path / "swapfile"
    r = run_workload(
        workload,
        mem_limit_pages=300,
        seed=1,
        swap_file=path,
        zswap="lzo",
        zswap_params={"max_pool_percent": "1"},
        totalram_pages=16_384,  # 64 MiB: a pool of 163 pages
    )
    assert r.intact and r.area == "file" and not path.exists()
    v = r.vmstat
    assert r.zswap["debugfs"]["pool_limit_hit"] > 0 and v["zswpwb"] > 0
    assert r.disk_write_pages == v["pswpout"] > v["zswpwb"]  # written back or rejected
    assert r.zswap["debugfs"]["pool_total_size"] <= 164 * PAGE_SIZE
    plain = run_workload(workload, mem_limit_pages=300, seed=1, swap_file=path)
    assert plain.intact and plain.zswap is None and plain.memory_used_bytes == 0
    assert plain.disk_write_pages == plain.vmstat["pswpout"] > r.disk_write_pages
    with pytest.raises(ValueError):
        run_workload(workload, swap_file=path, writeback="idle", backing_dev="/dev/null")
