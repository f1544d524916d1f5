"""zram_drv model: the worked examples of zram-spec.md section 9 and the I/O rules."""

import errno
import struct

import numpy as np
import pytest

from conftest import make_sized_zram, sized_page
from pyzram import Zram
from pyzram.lib.atomic import atomic64_read
from pyzram.workload.pages import synthetic_mix
from pyzram.zram import table as T
from pyzram.zram.zcomp import PAGE_SIZE, ZCOMP_BATCH, Zcomp, ZcompParams
from pyzram.zram.zram_drv import page_same_filled

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
    dev.mem_pool.zs_obj_write(handle, b"\xff\xff", 2)  # break the length header
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


def test_zstd_with_a_dictionary_takes_the_kernels_calls():
    """With a dictionary, pages go through ``ZSTD_compress_usingCDict`` with a CDict of
    ``ZSTD_getCParams(level, PAGE_SIZE, dict_sz)``, as backend_zstd.c does.

    python-zstandard's own ``compress`` with the same dictionary picks a smaller
    window for a 4 KiB source, which changes sizes from level 12 on (the VM tests
    compare the sizes with the kernel's); below that both give the same frames.
    """
    import zstandard

    from pyzram.workload.pages import synthetic_mix
    from pyzram.zram import backend_zstd
    from pyzram.zram.zcomp import ZcompParams

    if not backend_zstd.DICT_KERNEL_CALLS:
        pytest.skip("cffi is not installed: the dictionary path falls back to ZstdCompressor")
    pages = [p.tobytes() for p in synthetic_mix(400, seed=3)]
    d = zstandard.train_dictionary(8192, pages).as_bytes()
    dict_id = zstandard.ZstdCompressionDict(d).dict_id()
    differ = {}
    for level in (9, 19):
        ours = backend_zstd.Backend(ZcompParams(level=level, dict=d))
        library = zstandard.ZstdCompressor(
            level=level, dict_data=zstandard.ZstdCompressionDict(d), write_checksum=False
        )
        differ[level] = 0
        for page in pages[:200]:
            out = ours.compress(page)
            assert ours.decompress(out) == page
            fp = zstandard.get_frame_parameters(out)
            assert (fp.content_size, fp.dict_id, fp.has_checksum) == (P, dict_id, False)
            differ[level] += len(out) != len(library.compress(page))
    assert differ[9] == 0 and differ[19] > 0, differ


@pytest.mark.parametrize("algo", ["lz4", "lz4hc"])
def test_lz4_dictionary_through_the_kernel_codec(tmp_path, algo):
    """lz4 and lz4hc with ``dict=``: each page stored at the size _kcodec gives it with
    the dictionary (the kernel's loadDict + *_continue calls) and read back."""
    from pyzram import _kcodec
    from pyzram.workload.pages import synthetic_mix

    pages = synthetic_mix(80, seed=4)
    data = pages[:4].tobytes()  # 16 KiB of the same kind of content
    d = tmp_path / "dict"
    d.write_bytes(data)
    dev = Zram()
    dev.sysfs["comp_algorithm"] = algo
    dev.sysfs["algorithm_params"] = f"algo={algo} level=2 dict={d}"
    dev.sysfs["disksize"] = "1M"
    checked = differ = 0
    for i, page in enumerate(pages[4:]):
        before = dev.mm_stat()
        dev.pwrite(page.tobytes(), i * P)
        after = dev.mm_stat()
        if after.same_pages == before.same_pages and after.huge_pages == before.huge_pages:
            got = after.compr_data_size - before.compr_data_size
            assert got == len(_kcodec.compress(algo, page.tobytes(), 2, dict=data))
            differ += got != len(_kcodec.compress(algo, page.tobytes(), 2))
            checked += 1
    assert checked > 20 and differ > 0  # the dictionary is used
    assert dev.pread(76 * P, 0) == pages[4:].tobytes()
    dev.check()


@pytest.mark.parametrize(
    ("algo", "size", "ok"),
    [
        ("lz4", 7, False),
        ("lz4", 8, True),
        ("lz4hc", 3, True),
        ("lz4", 65536, True),
        ("lz4", 65537, False),
        ("lz4hc", 65536, True),
        ("lz4hc", 65537, False),
    ],
)
def test_lz4_dictionary_not_loaded_whole_fails_writes(tmp_path, algo, size, ok):
    """``LZ4_loadDict`` loads at most the last 64 KiB and nothing below 8 bytes,
    ``LZ4_loadDictHC`` at most the last 64 KiB; where that is not the whole
    dictionary the backend returns -EINVAL for every page: writes fail (EIO),
    ``failed_writes`` counts them, nothing is stored."""
    from pyzram.workload.pages import synthetic_mix

    d = tmp_path / "dict"
    d.write_bytes((synthetic_mix(20, seed=2).tobytes() * 2)[:size])
    page = synthetic_mix(40, seed=8)[30].tobytes()
    dev = Zram()
    dev.sysfs["comp_algorithm"] = algo
    dev.sysfs["algorithm_params"] = f"algo={algo} dict={d}"
    dev.sysfs["disksize"] = "1M"
    if ok:
        dev.pwrite(page, 0)
        assert dev.pread(P, 0) == page
        return
    with pytest.raises(OSError) as e:
        dev.pwrite(page, 0)
    assert e.value.errno == errno.EIO
    assert dev.io_stat().failed_writes == 1 and dev.mm_stat().orig_data_size == 0
    dev.pwrite(bytes(P), P)  # a same-filled page is not compressed: stored
    assert dev.mm_stat().same_pages == 1


def test_lzo_ignores_a_dictionary(tmp_path):
    """backend_lzo.c and backend_lzorle.c take no dictionary: ``dict=`` changes nothing."""
    from pyzram.workload.pages import synthetic_mix

    pages = synthetic_mix(30, seed=6).tobytes()
    d = tmp_path / "dict"
    d.write_bytes(pages[: 4 * P])
    sizes = []
    for params in (None, f"algo=lzo-rle dict={d}"):
        dev = Zram()
        if params:
            dev.sysfs["algorithm_params"] = params
        dev.sysfs["disksize"] = "1M"
        dev.pwrite(pages, 0)
        assert dev.pread(len(pages), 0) == pages
        sizes.append(dev.mm_stat().compr_data_size)
    assert sizes[0] == sizes[1]


def test_deflate_bad_level_fails_disksize():
    dev = Zram()
    dev.sysfs["comp_algorithm"] = "deflate"
    dev.sysfs["algorithm_params"] = "level=42"
    with pytest.raises(OSError) as e:
        dev.sysfs["disksize"] = "1M"
    assert e.value.errno == errno.EINVAL
    assert dev.sysfs["initstate"] == "0\n"


def test_deflate_winbits_picks_the_stream_format():
    """``deflate.winbits``: negative is raw deflate (the default, -11), 9..15 a zlib
    stream (its 2-byte header and Adler-32 trailer); outside 9..15 fails disksize
    (the kernel itself hits a BUG_ON there)."""
    import zlib

    page = b"".join(b"line %d of the page\n" % i for i in range(300))[:PAGE_SIZE]
    sizes = {}
    for winbits in (None, "-11", "15", "-9"):
        dev = Zram()
        dev.sysfs["comp_algorithm"] = "deflate"
        if winbits:
            dev.sysfs["algorithm_params"] = f"algo=deflate deflate.winbits={winbits}"
        dev.sysfs["disksize"] = "1M"
        dev.pwrite(page, 0)
        assert dev.pread(PAGE_SIZE, 0) == page
        sizes[winbits] = int(dev.sysfs["mm_stat"].split()[1])
        dev.sysfs["reset"] = "1"
    raw = zlib.compressobj(-1, zlib.DEFLATED, -11, 8)
    assert sizes[None] == sizes["-11"] == len(raw.compress(page) + raw.flush())
    assert sizes["15"] > sizes["-11"]  # header and checksum
    dev = Zram()
    dev.sysfs["comp_algorithm"] = "deflate"
    dev.sysfs["algorithm_params"] = "algo=deflate deflate.winbits=20"
    with pytest.raises(OSError) as e:
        dev.sysfs["disksize"] = "1M"
    assert e.value.errno == errno.EINVAL and "BUG_ON" in str(e.value)
    with pytest.raises(OSError) as e:
        dev.sysfs["algorithm_params"] = "algo=deflate deflate.winbits=x"
    assert e.value.errno == errno.EINVAL


def test_algorithm_params_ignores_unknown_words_and_refuses_an_empty_dict(tmp_path):
    """As the kernel: an unknown ``name=value`` is skipped; a dictionary file that
    is empty fails like one that cannot be read (``kernel_read_file``: EINVAL)."""
    dev = Zram()
    dev.sysfs["algorithm_params"] = "priority=0 bogus=1 level=3"
    empty = tmp_path / "empty.dict"
    empty.write_bytes(b"")
    with pytest.raises(OSError) as e:
        dev.sysfs["algorithm_params"] = f"priority=0 dict={empty}"
    assert e.value.errno == errno.EINVAL


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


def test_pread_into_reads_every_kind_of_slot(tmp_path):
    """``pread_into`` (the block users' batch entry point) fills the caller's
    buffer with what ``pread`` returns, for compressed, same-filled, huge,
    written-back and never-written slots, in bios of up to 256 pages; a
    large folio's pages are views of one buffer."""
    from pyzram.workload.pages import synthetic_mix

    n = 300
    img = tmp_path / "backing.img"
    img.write_bytes(bytes(n * P))
    z = Zram()
    z.sysfs["backing_dev"] = str(img)
    z.sysfs["comp_algorithm"] = "lz4"
    z.sysfs["disksize"] = str(n * P)
    pages = synthetic_mix(n - 4, seed=4)
    z.pwrite(pages.tobytes(), 0)
    want = pages.tobytes() + bytes(4 * P)
    flags = z.table.flags_np
    huge = np.flatnonzero(flags & np.uint64(T.HUGE)).tolist()
    assert huge and np.count_nonzero(flags & np.uint64(T.SAME))
    z.sysfs["writeback"] = f"page_indexes={huge[0]}-{huge[0]}"  # one written back
    assert z.table.flags[huge[0]] & T.WB
    for first, count in ((0, n), (huge[0], 1), (3, 7), (n - 6, 6)):
        buf = bytearray(count * P)
        assert z.pread_into(buf, first * P) == count * P
        assert buf == want[first * P : (first + count) * P] == z.pread(count * P, first * P)
    folio = bytearray(2 * P)  # a large folio's pages are views of its data
    assert z.pread_into(memoryview(folio), 8 * P) == 2 * P
    assert folio == want[8 * P : 10 * P]
    assert z.pread_into(bytearray(2 * P), (n - 1) * P) == P  # cut at the end
    assert z.pread_into(bytearray(P), n * P) == 0
    with pytest.raises(OSError) as e:
        z.pread_into(bytearray(100), 0)
    assert e.value.errno == errno.EINVAL


def test_a_failing_page_stops_a_bio_and_only_pages_before_it_are_marked():
    """``zram_bio_read`` runs the bio's pages one by one and stops at the first
    page that cannot be decompressed: the pages before it are marked accessed
    (IDLE cleared, access time stamped), it and the ones after are not, and
    ``failed_reads`` counts the one failed bio."""
    now = [10**12]
    z = Zram(clock=lambda: now[0])
    z.sysfs["comp_algorithm"] = "lz4"
    z.sysfs["disksize"] = str(64 * P)
    pages = [((b"page %03d " % i) * 600)[:P] for i in range(12)]  # 9-byte period: not same-filled
    first = 16
    z.pwrite(b"".join(pages), first * P)
    z.sysfs["idle"] = "all"
    now[0] += 10**9
    bad = first + 5
    z.mem_pool.zs_obj_write(int(z.table.handle[bad]), b"\xff" * 16, 16)
    with pytest.raises(OSError) as e:
        z.pread(12 * P, first * P)
    assert e.value.errno == errno.EIO
    assert atomic64_read(z.stats.failed_reads) == 1
    for k in range(12):
        marked = k < 5
        assert (not z.table.flags[first + k] & T.IDLE) == marked, k
        assert (z.table.ac_time[first + k] == now[0]) == marked, k


@pytest.mark.parametrize("algo", ["lz4", "lzo-rle", "zstd"])
def test_pages_compressed_ahead_are_what_zcomp_compress_makes(algo):
    """``zcomp_compress_ahead`` (one codec call for a batch's pages) and then
    ``zcomp_compress`` of each page give the bytes and lengths of compressing
    each page on its own; a page passed over is simply not taken, a page not
    among them is compressed on the spot, and an empty batch drops the rest.
    Same-filled pages are compressed ahead like any other (the codec knows
    nothing of zram's fill words); one asked for gets its own output."""
    comp = Zcomp(algo, ZcompParams())
    pages = [memoryview(bytearray(p.tobytes())) for p in synthetic_mix(ZCOMP_BATCH, seed=4)]
    pages[2] = memoryview(bytearray(P))
    pages[6] = memoryview(bytearray(b"\x01\x02\x03\x04\x05\x06\x07\x08" * (P // 8)))
    want = []
    for p in pages:
        strm = Zcomp(algo, ZcompParams()).zcomp_stream_get()
        n = Zcomp(algo, ZcompParams()).zcomp_compress(strm, p)
        want.append((n, bytes(strm.mem[: max(n, 0)])))
    zstrm = comp.zcomp_stream_get()
    comp.zcomp_compress_ahead(zstrm, pages)
    assert page_same_filled(pages[2]) == 0 and page_same_filled(pages[6]) is not None
    for k in (0, 1, 5, 6, ZCOMP_BATCH - 1):  # 2..4 and 7.. passed over
        n = comp.zcomp_compress(zstrm, pages[k])
        assert (n, bytes(zstrm.mem[: max(n, 0)])) == want[k], k
    other = memoryview(bytearray(pages[3]))  # the same bytes, not the page compressed ahead
    n = comp.zcomp_compress(zstrm, other)
    assert (n, bytes(zstrm.mem[: max(n, 0)])) == want[3]
    comp.zcomp_compress_ahead(zstrm, [])
    assert zstrm.ahead == [] and comp.zcomp_compress(zstrm, pages[2]) == want[2][0]


def test_a_read_into_a_buffer_that_is_not_one_page_is_refused_and_leaves_it():
    """``zram_read_page`` fills one page: a same-filled, a huge and a compressed slot
    each refuse a shorter or a longer ``bytearray`` (``ValueError``) and a read-only
    buffer (``TypeError`` or ``BufferError``), leave the buffer as it was and the
    slot unlocked, and fill a page-sized one."""
    dev = Zram()
    dev.sysfs["disksize"] = "1M"
    rng = np.random.default_rng(4)
    pages = [
        b"\x5a" * PAGE_SIZE,  # same-filled
        rng.integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes(),  # huge
        rng.integers(0, 4, PAGE_SIZE, dtype=np.uint8).tobytes(),  # compressed
    ]
    for index, page in enumerate(pages):
        assert dev.zram_write_page(bytearray(page), index) == 0
    assert atomic64_read(dev.stats.same_pages) == 1 and atomic64_read(dev.stats.huge_pages) == 1
    for index, page in enumerate(pages):
        for size in (PAGE_SIZE - 1, PAGE_SIZE + 1):
            buf = bytearray(b"\x01" * size)
            with pytest.raises(ValueError):
                dev.zram_read_page(buf, index)
            assert buf == b"\x01" * size, (index, size)
        with pytest.raises((TypeError, BufferError)):  # (not writable)
            dev.zram_read_page(bytes(PAGE_SIZE), index)
        assert not dev.table.flags[index] & T.LOCK, "the slot is left locked"
        buf = bytearray(PAGE_SIZE)
        assert dev.zram_read_page(buf, index) == 0 and buf == page
    dev.sysfs["reset"] = "1"


@pytest.mark.parametrize("kind", ["bytearray", "bytes", "memoryview"])
def test_page_same_filled_finds_the_fill_word_and_nothing_else(kind):
    """``page_same_filled``: the u64 fill word (read little-endian) of a page whose 512
    words are equal; ``None`` when any one word differs, first, middle or last."""

    def as_kind(data: bytes):
        if kind == "memoryview":  # a page inside a larger folio
            return memoryview(bytearray(PAGE_SIZE) + data)[PAGE_SIZE:]
        return bytearray(data) if kind == "bytearray" else bytes(data)

    word = struct.pack("<Q", 0x0123456789ABCDEF)
    assert page_same_filled(as_kind(word * 512)) == 0x0123456789ABCDEF
    assert page_same_filled(as_kind(bytes(PAGE_SIZE))) == 0
    for pos in (0, 1, 256, 510, 511):
        for other in (0x0123456789ABCDEE, 0x1123456789ABCDEF):  # its first byte, its last
            words = [word] * 512
            words[pos] = struct.pack("<Q", other)
            assert page_same_filled(as_kind(b"".join(words))) is None, (pos, other)
    # one byte repeated is the same word; a byte pattern of period 3 is not
    assert page_same_filled(as_kind(b"\x5a" * PAGE_SIZE)) == 0x5A5A5A5A5A5A5A5A
    assert page_same_filled(as_kind(b"abc" * 1365 + b"a")) is None
