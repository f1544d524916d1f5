"""zram_drv model: the worked examples of zram-spec.md section 9 and the I/O rules."""

import errno
import struct

import numpy as np
import pytest

from conftest import make_sized_zram, sized_page
from pyzram import Zram
from pyzram.zram import table as T

P = 4096


def mm(dev) -> str:
    return dev.sysfs["mm_stat"]


def test_ten_pages_by_hand(sized_zram):
    """9.1: 1000 x4, 2000 x3, two zero pages, one huge page."""
    dev = sized_zram
    sizes = [1000, 1000, 1000, 1000, 2000, 2000, 2000, None, None, 3700]
    data = b"".join(bytes(P) if s is None else sized_page(s, i) for i, s in enumerate(sizes))
    assert dev.pwrite(data, 0) == len(data)
    assert (
        mm(dev)
        == "   40960    14096    16384        0    16384        2        0        1        1\n"
    )
    dev.pwrite(sized_page(2000, 99), 0)  # overwrite slot 0: fits the free 2048 slot
    assert dev.mm_stat().compr_data_size == 15096
    assert dev.mm_stat().mem_used_total == 16384
    dev.pwrite(bytes(P), 4 * P)  # zeros over a 2000 object
    st = dev.mm_stat()
    assert (st.same_pages, st.compr_data_size, st.mem_used_total) == (3, 13096, 16384)
    assert dev.pread(P, 0) == sized_page(2000, 99)
    assert dev.pread(P, 9 * P) == sized_page(3700, 9)
    dev.check()


def test_uniform_stream(sized_zram):
    """9.2: 1000 pages of 1500 bytes -> class 1536 (3 pages, 8 objects)."""
    dev = make_sized_zram(1000)
    dev.pwrite(b"".join(sized_page(1500, i) for i in range(1000)), 0)
    st = dev.mm_stat()
    assert (st.mem_used_total, st.compr_data_size, st.orig_data_size) == (
        1536000,
        1500000,
        4096000,
    )


def test_huge_overwrite_peak_and_mem_limit():
    """9.3: huge over huge peaks one page above; mem_limit refuses the second zspage."""
    dev = make_sized_zram(16)
    dev.pwrite(sized_page(3625, 1), 0)
    dev.pwrite(sized_page(4000, 2), 0)
    st = dev.mm_stat()
    assert (st.mem_used_total, st.mem_used_max, st.huge_pages, st.huge_pages_since) == (
        4096,
        8192,
        1,
        2,
    )
    dev = make_sized_zram(16)
    dev.sysfs["mem_limit"] = "4096"
    dev.pwrite(sized_page(1000, 1), 0)
    with pytest.raises(OSError) as e:
        dev.pwrite(sized_page(2000, 2), P)
    assert e.value.errno == errno.EIO
    assert (
        mm(dev)
        == "    4096     1000     4096     4096     8192        0        0        0        0\n"
    )
    assert dev.io_stat().failed_writes == 1
    assert dev.pread(P, P) == bytes(P)  # the failed slot kept its (empty) content
    dev.check()


def test_failed_overwrite_keeps_old_content():
    dev = make_sized_zram(16)
    dev.pwrite(sized_page(1000, 1), 0)
    dev.sysfs["mem_limit"] = "4096"
    with pytest.raises(OSError):
        dev.pwrite(sized_page(2000, 2), 0)
    assert dev.pread(P, 0) == sized_page(1000, 1)
    dev.check()


def test_comp_len_3624_vs_3625(sized_zram):
    dev = sized_zram
    dev.pwrite(sized_page(3624) + sized_page(3625), 0)
    st = dev.mm_stat()
    assert st.compr_data_size == 3624 + 4096
    assert st.huge_pages == 1
    assert dev.table.get_obj_size(0) == 3624
    assert dev.table.flags[1] & T.HUGE
    assert dev.table.get_obj_size(1) == P


@pytest.mark.parametrize(
    "pattern,same",
    [
        (b"\0" * 8, True),
        (b"\xff" * 8, True),
        (struct.pack("<I", 0xDEADBEEF) * 2, True),
        (b"\x01\x02", True),
        (bytes(range(8)), True),  # 8-byte periodic
        (bytes(range(16)), False),  # 16-byte periodic is not same-filled
    ],
)
def test_same_filled(pattern, same):
    dev = Zram()
    dev.sysfs["disksize"] = "16K"
    page = (pattern * (P // len(pattern)))[:P]
    dev.pwrite(page, 0)
    assert dev.mm_stat().same_pages == (1 if same else 0)
    assert dev.pread(P, 0) == page
    if same:
        assert dev.table.handle[0] == int.from_bytes(page[:8], "little")
        assert dev.mm_stat().mem_used_total == 0


def test_dio_rules(sized_zram):
    dev = sized_zram
    for off, ln in ((1, P), (0, 100), (512, P), (-P, P)):
        with pytest.raises(OSError) as e:
            dev.pwrite(bytes(ln if ln > 0 else 0) or bytes(P), off)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        dev.pread(P, 1)
    assert e.value.errno == errno.EINVAL
    end = dev.disksize
    with pytest.raises(OSError) as e:
        dev.pwrite(bytes(P), end)
    assert e.value.errno == errno.ENOSPC
    assert dev.pwrite(bytes(3 * P), end - P) == P  # cut short at the end
    assert dev.pread(2 * P, end - P) == bytes(P)
    assert dev.pread(P, end) == b""
    assert dev.pwrite(b"", 0) == 0


def test_uninitialised_device_io():
    dev = Zram()
    with pytest.raises(OSError) as e:
        dev.pwrite(bytes(P), 0)
    assert e.value.errno == errno.ENOSPC
    assert dev.pread(P, 0) == b""
    with pytest.raises(OSError) as e:
        dev.discard(0, P)
    assert e.value.errno == errno.EINVAL


def test_discard_rules(sized_zram):
    dev = sized_zram
    dev.pwrite(b"".join(sized_page(500, i) for i in range(8)), 0)
    dev.discard(2 * P, P)
    assert dev.io_stat().notify_free == 1
    assert dev.pread(P, 2 * P) == bytes(P)
    assert dev.pread(P, P) == sized_page(500, 1)
    assert dev.pread(P, 3 * P) == sized_page(500, 3)
    dev.discard(40 * P, 4 * P)  # never written: still counted
    assert dev.io_stat().notify_free == 5
    dev.write_zeroes(0, P)
    assert dev.io_stat().notify_free == 6
    assert dev.mm_stat().orig_data_size == 6 * P
    for bad in ((1, P), (0, 100), (P + 512, 2 * P), (0, 0), (0, dev.disksize + P)):
        with pytest.raises(OSError) as e:
            dev.discard(*bad)
        assert e.value.errno == errno.EINVAL
    dev.check()


def test_bio_discard_skips_partial_pages(sized_zram):
    """zram_bio_discard itself (a bio from inside the kernel may start mid-page)."""
    dev = sized_zram
    dev.pwrite(b"".join(sized_page(500, i) for i in range(4)), 0)
    dev.zram_bio_discard(sector=9, size=2 * P)  # starts 512 bytes into page 1
    assert dev.pread(P, P) == sized_page(500, 1)
    assert dev.pread(P, 2 * P) == bytes(P)
    assert dev.pread(P, 3 * P) == sized_page(500, 3)
    dev.zram_bio_discard(sector=9, size=1024)  # inside one page: nothing
    assert dev.io_stat().notify_free == 1


def test_slot_free_notify_and_miss_free(sized_zram):
    dev = sized_zram
    dev.pwrite(sized_page(800) + sized_page(900), 0)
    dev.zram_slot_free_notify(0)
    assert dev.mm_stat().compr_data_size == 900
    dev.table.slot_lock(1)
    dev.zram_slot_free_notify(1)  # lock held: missed
    dev.table.slot_unlock(1)
    assert dev.io_stat().notify_free == 2
    assert dev.sysfs["debug_stat"] == "version: 1\n0        1\n"
    assert dev.mm_stat().compr_data_size == 900
    dev.check()


def test_corrupt_object_fails_read(sized_zram):
    dev = sized_zram
    dev.pwrite(sized_page(700) + sized_page(600), 0)
    handle = dev.table.handle[1]
    dev.mem_pool.zs_obj_write(handle, b"\xff\xff")  # break the length header
    with pytest.raises(OSError) as e:
        dev.pread(2 * P, 0)
    assert e.value.errno == errno.EIO
    assert dev.io_stat().failed_reads == 1
    assert dev.pread(P, 0) == sized_page(700)


def test_access_marks_and_idle():
    now = [10**12]
    dev = make_sized_zram(8, clock=lambda: now[0])
    dev.pwrite(sized_page(300) + bytes(P) + sized_page(400), 0)
    assert dev.table.ac_time[0] == 10**12
    dev.sysfs["idle"] = "all"
    assert dev.table.flags[0] & T.IDLE and dev.table.flags[2] & T.IDLE
    assert not dev.table.flags[1] & T.IDLE  # same-filled slots are never idle
    now[0] += 5 * 10**9
    dev.pread(P, 0)  # access clears IDLE
    assert not dev.table.flags[0] & T.IDLE
    dev.sysfs["idle"] = "3"  # older than 3 s: slot 2 only
    assert not dev.table.flags[0] & T.IDLE and dev.table.flags[2] & T.IDLE
    dev.zram_slot_free_notify(2)
    assert dev.table.flags[2] == 0 and dev.table.ac_time[2] == 0


def test_reset_restores_defaults(sized_zram):
    dev = sized_zram
    dev.pwrite(sized_page(1000), 0)
    dev.sysfs["mem_limit"] = "1M"
    dev.open()
    with pytest.raises(OSError) as e:
        dev.sysfs["reset"] = "1"
    assert e.value.errno == errno.EBUSY
    dev.release()
    dev.sysfs["reset"] = "1"
    assert dev.sysfs["initstate"] == "0\n"
    assert dev.sysfs["disksize"] == "0\n"
    assert dev.sysfs["comp_algorithm"].startswith("[lzo-rle]")
    assert dev.mm_stat() == (0,) * 9
    dev.sysfs["comp_algorithm"] = "lz4"
    dev.sysfs["disksize"] = "1M"
    dev.pwrite(bytes(range(256)) * 16, 0)
    assert dev.pread(P, 0) == bytes(range(256)) * 16


@pytest.mark.parametrize("algo", ["lzo-rle", "lzo", "lz4", "lz4hc", "zstd", "deflate"])
def test_every_backend_round_trips(algo):
    from pyzram.workload.pages import synthetic_mix

    pages = synthetic_mix(200, seed=3)
    dev = Zram()
    dev.sysfs["comp_algorithm"] = algo
    dev.sysfs["disksize"] = "1M"
    dev.pwrite(pages.tobytes(), 0)
    assert dev.pread(len(pages) * P, 0) == pages.tobytes()
    st = dev.mm_stat()
    assert st.orig_data_size == 200 * P
    assert 0 < st.compr_data_size < st.orig_data_size
    dev.check()


def test_algorithm_params_apply_at_init(tmp_path):
    dev = Zram()
    dev.sysfs["comp_algorithm"] = "zstd"
    d = tmp_path / "dict"
    d.write_bytes(b"hello zram dictionary " * 100)
    dev.sysfs["algorithm_params"] = f"algo=zstd level=9 dict={d}"
    assert dev.params[0].level == 9 and dev.params[0].dict
    dev.sysfs["disksize"] = "1M"
    page = (b"hello zram dictionary " * 200)[:P]
    dev.pwrite(page, 0)
    assert dev.pread(P, 0) == page
    dev.sysfs["reset"] = "1"
    assert dev.params[0].level != 9  # reset forgets params


def test_deflate_bad_level_fails_disksize():
    dev = Zram()
    dev.sysfs["comp_algorithm"] = "deflate"
    dev.sysfs["algorithm_params"] = "level=42"
    with pytest.raises(OSError) as e:
        dev.sysfs["disksize"] = "1M"
    assert e.value.errno == errno.EINVAL
    assert dev.sysfs["initstate"] == "0\n"


def test_large_write_is_vectorised_and_exact():
    """A multi-bio write gives the same state as page-by-page writes."""
    from pyzram.workload.pages import synthetic_mix

    pages = synthetic_mix(700, seed=11)
    a, b = Zram(), Zram()
    for d in (a, b):
        d.sysfs["comp_algorithm"] = "lz4"
        d.sysfs["disksize"] = str(700 * P)
    a.pwrite(pages.tobytes(), 0)
    for i in range(700):
        b.pwrite(pages[i].tobytes(), i * P)
    assert a.mm_stat() == b.mm_stat()
    assert np.array_equal(a.table.flags_np, b.table.flags_np)


def test_backing_dev_attribute(tmp_path):
    from pyzram import ZramConfig

    assert "backing_dev" not in Zram(ZramConfig(writeback=False)).sysfs
    dev = Zram(ZramConfig(writeback=True))
    assert dev.sysfs["backing_dev"] == "none\n"
    img = tmp_path / "backing.img"
    img.write_bytes(bytes(1 << 20))
    dev.sysfs["backing_dev"] = f"{img}\n"
    assert dev.sysfs["backing_dev"] == f"{img}\n"
    assert dev.backing_dev is not None
    for bad, err in ((str(tmp_path), errno.ENOTBLK), (str(tmp_path / "nope"), errno.ENOENT)):
        with pytest.raises(OSError) as e:
            dev.sysfs["backing_dev"] = bad
        assert e.value.errno == err
    assert dev.sysfs["backing_dev"] == f"{img}\n"  # a failed store changes nothing
    dev.sysfs["disksize"] = "1M"
    with pytest.raises(OSError) as e:
        dev.sysfs["backing_dev"] = str(img)
    assert e.value.errno == errno.EBUSY
    dev.sysfs["reset"] = "1"  # reset releases the backing device
    assert dev.sysfs["backing_dev"] == "none\n" and dev.backing_dev is None


def test_read_into_page_buffers_equals_read(tmp_path):
    """``read_pages(into=...)`` fills the caller's page buffers (a folio's
    pages) with what ``read_pages`` returns: a batch of compressed pages is
    decoded straight into them, a mixed one (same-filled, huge, written back)
    is copied; one slot alone takes the single-page path."""
    from pyzram.workload.pages import synthetic_mix

    img = tmp_path / "backing.img"
    img.write_bytes(bytes(64 * P))
    z = Zram()
    z.sysfs["backing_dev"] = str(img)
    z.sysfs["comp_algorithm"] = "lz4"
    z.sysfs["disksize"] = str(64 * P)
    pages = synthetic_mix(64, seed=4)
    z.pwrite(pages.tobytes(), 0)
    flags = z.table.flags_np
    kinds = flags & np.uint64(T.SAME | T.HUGE | T.WB)
    compressed = np.flatnonzero((kinds == 0) & (z.table.handle_np != 0)).tolist()
    huge = np.flatnonzero(flags & np.uint64(T.HUGE)).tolist()
    assert len(compressed) > 8 and huge and np.count_nonzero(flags & np.uint64(T.SAME))
    z.sysfs["writeback"] = f"page_indexes={huge[0]}-{huge[0]}"  # one written back
    assert z.table.flags[huge[0]] & T.WB
    for slots in (compressed, compressed[::-1][:7], list(range(64)), [huge[0]], [compressed[3]]):
        want, err = z.read_pages(slots)
        assert err is None
        bufs = [bytearray(P) for _ in slots]
        got, err = z.read_pages(slots, into=bufs)
        assert got is None and err is None
        assert b"".join(bufs) == bytes(want) == pages[slots].tobytes()
    folio = bytearray(2 * P)  # a large folio's pages are views of its data
    z.read_pages(compressed[:2], into=[memoryview(folio)[j * P : (j + 1) * P] for j in (0, 1)])
    assert folio == pages[compressed[:2]].tobytes()
    with pytest.raises(ValueError):
        z.read_pages([0, 1], into=[bytearray(P)])


@pytest.mark.parametrize("batch", [32, 256])
def test_batch_slot_locks_wait_for_a_held_slot(batch):
    """``lock_slots`` takes a batch's slots all at once (a swap batch in
    Python, a bio-sized one with numpy): it waits while another thread holds
    one of them, then holds them all; ``unlock_slots`` gives them back and
    wakes single-slot lockers."""
    import threading
    import time

    from pyzram.zram.table import LOCK, ZramTable

    tbl = ZramTable(1024, False)
    slots = np.arange(100, 100 + batch, dtype=np.int64)
    tbl.slot_lock(100 + batch // 2)  # someone holds one slot of the batch
    got = threading.Event()

    def batch_locker():
        tbl.lock_slots(slots)
        got.set()

    t = threading.Thread(target=batch_locker)
    t.start()
    time.sleep(0.05)
    assert not got.is_set()  # still waiting: nothing of the batch is taken
    assert not tbl.flags_np[100] & np.uint64(LOCK)
    tbl.slot_unlock(100 + batch // 2)
    assert got.wait(5)
    t.join()
    assert (tbl.flags_np[slots] & np.uint64(LOCK) == LOCK).all()
    outside = tbl.flags_np[[99, 100 + batch]] & np.uint64(LOCK)
    assert not outside.any()
    assert not tbl.slot_trylock(100)
    woke = threading.Event()
    t = threading.Thread(target=lambda: (tbl.slot_lock(101), woke.set()))
    t.start()
    time.sleep(0.05)
    assert not woke.is_set()
    tbl.unlock_slots(slots)
    assert woke.wait(5)
    t.join()
    assert not (tbl.flags_np[slots[2:]] & np.uint64(LOCK)).any()


@pytest.mark.parametrize("ordering", ["legacy", "one_section"])
def test_small_read_path_equals_the_numpy_path(tmp_path, monkeypatch, ordering):
    """``read_pages`` of up to 32 slots runs in plain Python (``_read_small``),
    larger batches with numpy: for the same slots both give the same bytes,
    the same error at the same slot, and leave the same flags and access
    times (only the slots before a failing one are marked accessed).  The
    slots mix compressed, same-filled, empty, huge, recompressed and
    written-back pages, which the small path hands to the numpy path."""
    from pyzram.workload.pages import synthetic_mix
    from pyzram.zram import zram_drv

    n = 96
    img = tmp_path / "backing.img"
    img.write_bytes(bytes(n * P))
    now = [10**12]
    z = Zram(clock=lambda: now[0])
    z.sysfs["backing_dev"] = str(img)
    z.sysfs["comp_algorithm"] = "lz4"
    z.sysfs["recomp_algorithm"] = "algo=zstd priority=1"
    z.sysfs["disksize"] = str(n * P)
    pages = synthetic_mix(n - 8, seed=7)  # the last 8 slots are never written
    z.pwrite(pages.tobytes(), 0)
    want = pages.tobytes() + bytes(8 * P)
    flags = z.table.flags_np
    huge = np.flatnonzero(flags & np.uint64(T.HUGE)).tolist()
    z.sysfs["writeback"] = f"page_index={huge[0]}"
    z.sysfs["recompress"] = "threshold=1000"
    assert np.count_nonzero(flags & np.uint64(T.WB)) == 1
    assert np.count_nonzero(flags & np.uint64(T.PRIORITY_MASK))
    assert np.count_nonzero(flags & np.uint64(T.SAME)) and len(huge) > 1

    def read(slots, small):
        now[0] += 10**9
        z.sysfs["idle"] = "all"
        monkeypatch.setattr(zram_drv, "_SMALL_READ", 32 if small else 0)
        out, err = z.read_pages(slots, ordering=ordering)
        state = (z.table.flags_np[:n].copy(), z.table.ac_time_np[:n] == now[0])  # stamped now
        return bytes(out), None if err is None else str(err), state

    rng = np.random.default_rng(3)
    plain = np.flatnonzero((flags & np.uint64(T.SAME | T.HUGE | T.WB | T.PRIORITY_MASK)) == 0)
    batches = [rng.choice(n, size=k, replace=False).tolist() for k in (2, 5, 8, 16, 32) * 4]
    batches += [plain[:8].tolist(), huge[1:3] + plain[:3].tolist()]
    for slots in batches:
        got_small, err_small, st_small = read(slots, True)
        got_np, err_np, st_np = read(slots, False)
        assert err_small is None and err_np is None
        assert got_small == got_np == b"".join(want[s * P : (s + 1) * P] for s in slots)
        assert (st_small[0] == st_np[0]).all() and (st_small[1] == st_np[1]).all()
    # A corrupt object in the middle: the same error, and only the slots
    # before it marked accessed, on both paths.
    bad = int(plain[4])
    z.mem_pool.zs_obj_write(int(z.table.handle[bad]), b"\xff" * 16)
    slots = plain[:8].tolist()
    got_small, err_small, st_small = read(slots, True)
    got_np, err_np, st_np = read(slots, False)
    assert err_small == err_np == f"[Errno 5] zram: decompression failed at slot {bad}"
    assert (
        got_small[: 4 * P]
        == got_np[: 4 * P]
        == want[0:0] + b"".join(want[s * P : (s + 1) * P] for s in slots[:4])
    )
    assert (st_small[0] == st_np[0]).all() and (st_small[1] == st_np[1]).all()
    marked = st_small[0][slots] & np.uint64(T.IDLE) == 0
    assert marked.tolist() == [True] * 4 + [False] * 4
