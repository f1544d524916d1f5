"""zswap (pyzram.mm.zswap): parameters, store/load/invalidate, the pool limit, writeback."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from pyzram.block.filedev import FileDisk
from pyzram.mm.folio import PAGE_SIZE, Folio, PG_locked, PG_uptodate, SwpEntry
from pyzram.mm.swap import VmEvents
from pyzram.mm.zswap import (
    DEBUGFS_FILES,
    Zswap,
    shrink_worker,
    zswap_invalidate,
    zswap_load,
    zswap_shrinker_count,
    zswap_store,
    zswap_swapoff,
    zswap_swapon,
)


def machine(**kw) -> SimpleNamespace:
    """What zswap reaches through ``m``: ``m.zswap`` and ``m.vm_events``."""
    kw.setdefault("compressors", ("lzo", "lzo-rle", "deflate"))
    return SimpleNamespace(zswap=Zswap(**kw), vm_events=VmEvents())


def enabled(compressor: str = "lzo", nr_slots: int = 1 << 12, **kw) -> SimpleNamespace:
    m = machine(**kw)
    m.zswap.param_write("compressor", compressor)
    m.zswap.param_write("enabled", "Y\n")
    zswap_swapon(m, 0, nr_slots)
    return m


def text_page(seed: int = 0) -> bytes:
    line = f"page {seed}: the quick brown fox jumps over the lazy dog\n".encode()
    return (line * (PAGE_SIZE // len(line) + 1))[:PAGE_SIZE]


def locked_folio(data: bytes, offset: int, order: int = 0) -> Folio:
    f = Folio(order, data)
    f.swap = SwpEntry(0, offset)
    f.lock()
    return f


# -- parameters -------------------------------------------------------------------------


def test_parameters_read_as_the_kernel_prints_them():
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
def test_bad_and_odd_parameter_writes(name, value, err):
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


def test_kstrtobool_words():
    zs = machine().zswap
    for word, want in [("on", "Y"), ("off", "N"), ("1", "Y"), ("no", "N"), ("true\n", "Y")]:
        zs.param_write("shrinker_enabled", word)
        assert zs.param_read("shrinker_enabled") == want + "\n"


def test_compressor_unknown_is_enoent_once_set_up_and_kept_before():
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


def test_enabled_n_sets_zswap_up_too():
    zs = machine().zswap
    zs.param_write("enabled", "N")
    assert zs.debugfs()["stored_pages"] == 0
    assert zs.param_read("enabled") == "N\n"


# -- store, load, invalidate --------------------------------------------------------------


def test_store_then_load_compressible_and_incompressible():
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


def test_load_miss_keeps_the_folio_locked():
    m = enabled()
    f = locked_folio(bytes(PAGE_SIZE), 7)
    assert zswap_load(m, f) == -errno.ENOENT
    assert f.test(PG_locked)


def test_large_folio_stored_page_by_page_and_not_loaded_whole():
    m = enabled()
    data = b"".join(text_page(i) for i in range(4))
    assert zswap_store(m, locked_folio(data, 8, order=2))
    assert m.zswap.stored_pages == 4 and m.vm_events["zswpout"] == 4
    f = locked_folio(bytes(4 * PAGE_SIZE), 8, order=2)
    assert zswap_load(m, f) == -errno.EINVAL
    assert not f.test(PG_uptodate) and not f.test(PG_locked)


def test_invalidate_frees_the_entry():
    m = enabled()
    assert zswap_store(m, locked_folio(text_page(), 3))
    zswap_invalidate(m, SwpEntry(0, 3))
    assert m.zswap.stored_pages == 0 and m.zswap.zswap_total_pages() == 0
    zswap_invalidate(m, SwpEntry(0, 3))  # nothing there: nothing happens
    zswap_swapoff(m, 0)


def test_failed_or_disabled_store_drops_the_stale_entry():
    m = enabled()
    assert zswap_store(m, locked_folio(text_page(1), 5))
    m.zswap.param_write("enabled", "N")
    assert not zswap_store(m, locked_folio(text_page(2), 5))
    assert m.zswap.stored_pages == 0  # writeback could not overwrite the new data
    assert m.vm_events["zswpout"] == 1


def test_redirtied_folio_replaces_its_entry():
    m = enabled()
    assert zswap_store(m, locked_folio(text_page(1), 5))
    assert zswap_store(m, locked_folio(text_page(2), 5))
    assert m.zswap.stored_pages == 1
    f = locked_folio(bytes(PAGE_SIZE), 5)
    assert zswap_load(m, f) == 0 and bytes(f.data) == text_page(2)


def test_writeback_disabled_memcg_rejects_incompressible_pages():
    m = enabled()
    f = locked_folio(os.urandom(PAGE_SIZE), 2)
    f.memcg = SimpleNamespace(zswap_writeback=False)
    assert not zswap_store(m, f)
    assert m.zswap.reject_compress_fail == 1 and m.zswap.stored_pages == 0


def test_same_sizes_as_the_codec_and_pool_shared_by_compressors():
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


def test_pool_limit_and_acceptance_hysteresis():
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


def test_shrinker_count_scales_by_compression():
    m = enabled()
    zs = m.zswap
    for i in range(64):
        assert zswap_store(m, locked_folio(text_page(i), i + 1))
    assert zswap_shrinker_count(m) == 0  # shrinker_enabled is off
    zs.param_write("shrinker_enabled", "Y")
    n = zswap_shrinker_count(m)
    assert n == 64 * zs.zswap_total_pages() // 64
    assert 0 < n < 64


# -- writeback through the swap core --------------------------------------------------------


@pytest.fixture
def swap_area(tmp_path):
    from pyzram.mm.swapfile import mkswap, swapoff, swapon

    disk = FileDisk(tmp_path / "swapdisk", size=4 << 20)
    mkswap(disk.disk)
    si = swapon(disk.disk)
    yield si, disk
    swapoff(si, unuse=lambda e, f: 1)


def test_writeback_then_load_of_a_written_back_page(swap_area):
    from pyzram.mm.swapfile import folio_alloc_swap, swap_duplicate

    si, disk = swap_area
    m = enabled(totalram_pages=1000)
    zswap_swapon(m, si.type, si.max)
    zs = m.zswap
    pages = [text_page(i) + b"" for i in range(3)]
    entries = []
    for p in pages:
        f = Folio(0, p)
        f.lock()
        e = folio_alloc_swap(f)
        swap_duplicate(e, 1)  # the PTE's reference
        assert zswap_store(m, f)
        from pyzram.mm.swapfile import swap_cache_del_folio

        swap_cache_del_folio(f)  # reclaim frees the folio
        f.unlock()
        entries.append(e)
    zs.param_write("max_pool_percent", "0")
    shrink_worker(m)  # the pool limit's worker: down to the threshold (0 pages)
    assert zs.stored_pages == 0 and zs.zswap_total_pages() == 0
    assert zs.written_back_pages == 3 and m.vm_events["zswpwb"] == 3
    for e, p in zip(entries, pages, strict=True):
        on_disk = os.pread(os.open(disk.path, os.O_RDONLY), PAGE_SIZE, e.offset * PAGE_SIZE)
        assert on_disk == p
        f = locked_folio(bytes(PAGE_SIZE), e.offset)
        f.swap = e
        assert zswap_load(m, f) == -errno.ENOENT  # not in zswap any more: read the disk


def test_writeback_gives_referenced_entries_a_second_chance(swap_area):
    from pyzram.mm.swapfile import folio_alloc_swap, swap_cache_del_folio, swap_duplicate
    from pyzram.mm.zswap import shrink_memcg

    si, _ = swap_area
    m = enabled()
    zswap_swapon(m, si.type, si.max)
    for i in range(2):
        f = Folio(0, text_page(i))
        f.lock()
        e = folio_alloc_swap(f)
        swap_duplicate(e, 1)
        assert zswap_store(m, f)
        swap_cache_del_folio(f)
        f.unlock()
    assert shrink_memcg(m, None) == -errno.EAGAIN  # first entry: referenced, rotated
    assert shrink_memcg(m, None) == -errno.EAGAIN  # second: the same
    assert shrink_memcg(m, None) == 0  # the first again: written back
    assert m.zswap.written_back_pages == 1 and m.zswap.stored_pages == 1
