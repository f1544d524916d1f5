"""zram post-processing: idle marking, writeback to a backing device, recompression.

Checked against shared/research/zram-spec.md section 6 (6.18 semantics) and the
formats and errors of sections 2.2-2.3.  Exact values throughout: the primary
codec is the test ``SizedBackend`` (conftest), so every object has the size the
test chose, and the secondary codecs are ``ShrinkBackend``\\s whose output size is
written into the page too.  Expected ``mem_used_total`` values come from the
class table of zram-spec.md 5.1 (comp_len range -> slot size / chain / objects),
not from the model.

Page layout (``pp_page``): bytes 0-1 = n, the primary size (SizedBackend keeps the
first n bytes); bytes 2-3 / 4-5 / 6-7 = the size the priority 1 / 2 / 3 shrinker
produces (n if it cannot shrink); random non-zero bytes up to the smallest of
those sizes, then 0xAB filler up to n, then zeros.  A shrinker's output is the
first m bytes, and it decompresses by refilling 0xAB up to n and zeros after.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from conftest import SizedBackend
from pyzram import Zram as _Zram
from pyzram import ZramConfig
from pyzram.lib.atomic import atomic64_read
from pyzram.zram import table as T
from pyzram.zram.writeback import PpCtl
from pyzram.zram.zcomp import ZcompBackend

P = 4096
FILL = 0xAB
HUGE_CLASS_SIZE = 3625  # zram-spec.md 5.2, chain 8


# -- test codecs and pages ---------------------------------------------------------------------


class ShrinkBackend(ZcompBackend):
    """Secondary test codec for priority ``prio``: output size from the page header."""

    def __init__(self, params, prio: int) -> None:
        super().__init__(params)
        self.prio = prio
        self.name = f"shrink{prio}"
        self.calls = 0
        self.fail = False

    def compress(self, page):
        self.calls += 1
        if self.fail:
            raise OSError(errno.EINVAL, "shrink: injected failure")
        page = bytes(page)
        n = int.from_bytes(page[:2], "little")
        m = int.from_bytes(page[2 * self.prio : 2 * self.prio + 2], "little")
        return page[: min(m, n)]

    def decompress(self, data):
        data = bytes(data)
        n = int.from_bytes(data[:2], "little")
        if len(data) > n:
            raise OSError(errno.EINVAL, "shrink: corrupt")
        return data + bytes([FILL]) * (n - len(data)) + bytes(P - n)


def pp_page(n: int, m1: int | None = None, m2: int | None = None, m3: int | None = None, seed=0):
    """A page of primary size n and shrunk sizes m1..m3 (None: that codec cannot shrink)."""
    ms = [n if m is None else m for m in (m1, m2, m3)]
    assert 8 <= n <= P and all(8 <= m <= n for m in ms)
    lo = min(ms)
    rng = np.random.default_rng(seed * 7919 + n * 31 + lo)
    page = bytearray(P)
    page[0:2] = n.to_bytes(2, "little")
    for k, m in enumerate(ms):
        page[2 + 2 * k : 4 + 2 * k] = m.to_bytes(2, "little")
    page[8:lo] = rng.integers(1, 256, size=lo - 8, dtype=np.uint8).tobytes()
    page[lo:n] = bytes([FILL]) * (n - lo)
    return bytes(page)


def same_page(value: int) -> bytes:
    return bytes([value]) * P


# zram-spec.md 5.1 table (chain 8): comp_len -> (slot size, pages per zspage, objs)
SPEC_CLASS = {
    20: (32, 1, 128),
    100: (112, 7, 256),
    300: (320, 5, 64),
    500: (512, 1, 8),
    968: (976, 6, 25),
    1000: (1024, 1, 4),
    1016: (1024, 1, 4),
    2000: (2048, 1, 2),
    3000: (3072, 3, 4),
    3624: (3632, 8, 9),
}


def pool_pages(*sizes: int) -> int:
    """mem_used_total / 4096 for a fresh pool holding objects of these sizes (no frees)."""
    per_class: dict[int, list[int]] = {}
    for s in sizes:
        slot, chain, objs = (P, 1, 1) if s >= HUGE_CLASS_SIZE else SPEC_CLASS[s]
        per_class.setdefault(slot, [chain, objs, 0])[2] += 1
    return sum(-(-cnt // objs) * chain for chain, objs, cnt in per_class.values())


# -- devices -----------------------------------------------------------------------------------


def backing_file(tmp_path, pages: int = 64, name: str = "bd.img") -> str:
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(pages * P)
    return str(path)


def make_dev(
    tmp_path,
    pages: int = 64,
    bd_pages: int | None = 64,
    secondaries: int = 0,
    clock=None,
    config: ZramConfig | None = None,
) -> Zram:
    """An initialised device: SizedBackend primary, ``secondaries`` ShrinkBackends."""
    z = Zram(config, clock=clock) if clock is not None else Zram(config)
    if bd_pages is not None:
        z.sysfs["backing_dev"] = backing_file(tmp_path, bd_pages)
    algs = ["zstd", "deflate", "lz4"]
    for prio in range(1, secondaries + 1):
        z.sysfs["recomp_algorithm"] = f"algo={algs[prio - 1]} priority={prio}"
    z.sysfs["disksize"] = str(pages * P)
    z.comps[0].backend = SizedBackend(z.params[0])
    for prio in range(1, secondaries + 1):
        z.comps[prio].backend = ShrinkBackend(z.params[prio], prio)
    return z


def put(z: Zram, index: int, page: bytes) -> None:
    assert z.pwrite(page, index * P) == P


def get(z: Zram, index: int) -> bytes:
    return z.pread(P, index * P)


def flags(z: Zram, index: int) -> int:
    """The slot's flag bits (size and lock bits masked off)."""
    return z.table.flags[index] & ~(T.ZRAM_SIZE_MASK | T.LOCK)


def size(z: Zram, index: int) -> int:
    return z.table.get_obj_size(index)


def prio(z: Zram, index: int) -> int:
    return (z.table.flags[index] >> T.ZRAM_COMP_PRIORITY_BIT1) & T.ZRAM_COMP_PRIORITY_MASK


def mm(z: Zram) -> tuple[int, ...]:
    return tuple(z.mm_stat())


def bd(count: int, reads: int, writes: int) -> str:
    return f"{count:8d} {reads:8d} {writes:8d}\n"


def consistent(z: Zram) -> None:
    """z.check() plus the backing-device invariants and no PP_SLOT left behind."""
    z.check()
    if not z.init_done():
        assert atomic64_read(z.stats.bd_count) == 0
        return
    f = z.table.flags_np
    assert not (f & np.uint64(T.PP_SLOT)).any(), "a PP_SLOT flag outlived its post-processing"
    wb = np.flatnonzero(f & np.uint64(T.WB))
    # WB slots are never SAME, never hold a size, never IDLE.
    assert not (f[wb] & np.uint64(T.SAME | T.IDLE | T.ZRAM_SIZE_MASK)).any()
    if z.backing_dev is None:
        assert not wb.size and atomic64_read(z.stats.bd_count) == 0
        return
    bitmap = z.backing_dev.bitmap
    assert not bitmap[0], "block 0 is never handed out"
    blocks = sorted(int(z.table.handle_np[i]) for i in wb)
    assert blocks == np.flatnonzero(bitmap).tolist(), "WB handles != the bitmap's set bits"
    assert atomic64_read(z.stats.bd_count) == len(blocks)


def raises(errnum: int, fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == errnum, (e.value, errno.errorcode[errnum])


def store_err(z: Zram, attr: str, value: str, errnum: int) -> None:
    with pytest.raises(OSError) as e:
        z.sysfs[attr] = value
    assert e.value.errno == errnum, (attr, value, e.value)


@pytest.fixture
def dev(tmp_path):
    return make_dev(tmp_path)


@pytest.fixture(autouse=True)
def check_after_every_operation(monkeypatch):
    """Run ``consistent`` after every sysfs store (failed ones too), write, discard and
    free notification, whenever no post-processing is in flight."""
    from pyzram.zram.sysfs import ZramSysfs

    def after(method, get_zram):
        def wrapped(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            finally:
                z = get_zram(self)
                if not z._pp_lock.locked():
                    consistent(z)

        return wrapped

    monkeypatch.setattr(ZramSysfs, "write", after(ZramSysfs.write, lambda s: s._zram))


class CheckedZram(_Zram):
    """Every device of this module: ``consistent`` after each write, discard and
    free notification, whenever no post-processing is in flight (with the
    sysfs stores of ``check_after_every_operation``)."""

    def _checked(self) -> None:
        if not self._pp_lock.locked():
            consistent(self)

    def pwrite(self, data, offset):
        try:
            return super().pwrite(data, offset)
        finally:
            self._checked()

    def discard(self, offset, length):
        try:
            return super().discard(offset, length)
        finally:
            self._checked()

    def zram_slot_free_notify(self, index):
        try:
            return super().zram_slot_free_notify(index)
        finally:
            self._checked()


Zram = CheckedZram


# -- writeback: modes --------------------------------------------------------------------------


def fill_mix(z: Zram) -> dict[int, bytes]:
    """Slots 0..5: 500 B, huge (4000), same-filled, 2000 B, huge (3700), 1000 B."""
    pages = {
        0: pp_page(500),
        1: pp_page(4000),
        2: same_page(7),
        3: pp_page(2000),
        4: pp_page(3700),
        5: pp_page(1000),
    }
    for i, pg in pages.items():
        put(z, i, pg)
    return pages


def test_writeback_huge_exact_stats_and_block_order(dev):
    z = dev
    pages = fill_mix(z)
    used = pool_pages(500, 4000, 2000, 3700, 1000) * P
    assert used == 5 * P
    assert mm(z) == (6 * P, 500 + 4096 + 2000 + 4096 + 1000, used, 0, used, 1, 0, 2, 2)
    assert z.sysfs["bd_stat"] == bd(0, 0, 0)
    z.sysfs["writeback"] = "huge"
    consistent(z)
    # Both huge slots are in bucket 64; the one placed last (slot 4) goes first: block 1.
    assert flags(z, 4) == T.WB and z.table.handle[4] == 1 and size(z, 4) == 0
    assert flags(z, 1) == T.WB and z.table.handle[1] == 2 and size(z, 1) == 0
    assert [flags(z, i) for i in (0, 3, 5)] == [0, 0, 0]
    used2 = pool_pages(500, 2000, 1000) * P
    # orig_data_size unchanged, compr and mem_used drop, huge_pages drops, since stays.
    assert mm(z) == (6 * P, 3500, used2, 0, used, 1, 0, 0, 2)
    assert z.sysfs["mm_stat"] == (
        f"{6 * P:8d} {3500:8d} {used2:8d} {0:8d} {used:8d} {1:8d} {0:8d} {0:8d} {2:8d}\n"
    )
    assert z.sysfs["bd_stat"] == bd(2, 0, 2)
    # The written blocks hold the raw pages.
    raw = open(z.backing_dev.path, "rb").read()
    assert raw[P : 2 * P] == pages[4] and raw[2 * P : 3 * P] == pages[1]
    assert raw[:P] == bytes(P)
    # Reads come from the backing device: exact bytes, bd_reads + 1 each.
    assert get(z, 1) == pages[1]
    assert z.sysfs["bd_stat"] == bd(2, 1, 2)
    assert get(z, 4) == pages[4]
    assert z.sysfs["bd_stat"] == bd(2, 2, 2)
    assert z.pread(6 * P, 0) == b"".join(pages[i] for i in range(6))
    assert z.sysfs["bd_stat"] == bd(2, 4, 2)
    assert flags(z, 1) == T.WB  # a read leaves the slot written back
    # Nothing left to do: a second run writes nothing.
    z.sysfs["writeback"] = "huge"
    assert z.sysfs["bd_stat"] == bd(2, 4, 2)
    consistent(z)


def test_writeback_order_largest_bucket_first_most_recent_first(dev):
    z = dev
    sizes = {0: 100, 1: 3000, 2: 110, 3: 4000, 4: 120, 5: 2000}
    for i, n in sizes.items():
        put(z, i, pp_page(n))
    z.sysfs["writeback"] = "page_indexes=0-5"
    # Buckets size//64: 4000->64 (huge 4096), 3000->46, 2000->31, 100/110/120 -> 1;
    # within bucket 1 the slot placed last (4) first.
    order = [3, 1, 5, 4, 2, 0]
    assert [z.table.handle[i] for i in order] == [1, 2, 3, 4, 5, 6]
    assert z.sysfs["bd_stat"] == bd(6, 0, 6)
    assert mm(z)[:3] == (6 * P, 0, 0)
    consistent(z)


def mark_idle_except(z: Zram, *accessed: int) -> None:
    z.sysfs["idle"] = "all"
    for i in accessed:
        get(z, i)  # any access clears IDLE


@pytest.mark.parametrize("syntax", ["old", "new"])
@pytest.mark.parametrize(
    "mode, expect",
    [
        ("idle", {0, 1, 3}),  # idle: 0, 1 (huge), 3; not 4 (huge, accessed), 5 (accessed)
        ("huge", {1, 4}),
        ("huge_idle", {1}),
    ],
)
def test_writeback_modes(dev, syntax, mode, expect):
    z = dev
    pages = fill_mix(z)
    mark_idle_except(z, 4, 5)
    assert {i for i in range(6) if flags(z, i) & T.IDLE} == {0, 1, 3}
    before = mm(z)
    z.sysfs["writeback"] = mode if syntax == "old" else f"type={mode}\n"
    consistent(z)
    wb = {i for i in range(64) if flags(z, i) & T.WB}
    assert wb == expect
    assert z.sysfs["bd_stat"] == bd(len(expect), 0, len(expect))
    sizes = {0: 500, 1: 4096, 3: 2000, 4: 4096, 5: 1000}
    after = mm(z)
    assert after[0] == before[0] == 6 * P  # orig_data_size unchanged
    assert after[1] == before[1] - sum(sizes[i] for i in expect)
    assert after[2] < before[2]
    assert after[5] == 1  # the same-filled slot is never a candidate
    assert after[7] == before[7] - len(expect & {1, 4})
    assert after[8] == 2
    # The slots not written back keep IDLE; written back ones lost it.
    assert {i for i in range(6) if flags(z, i) & T.IDLE} == {0, 1, 3} - expect
    for i, pg in pages.items():
        assert get(z, i) == pg
    assert z.sysfs["bd_stat"] == bd(len(expect), len(expect), len(expect))


def test_writeback_incompressible(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(1000))  # the shrinker cannot shrink it -> INCOMPRESSIBLE
    put(z, 1, pp_page(1000, m1=300, seed=1))  # recompressed
    put(z, 2, pp_page(2000, seed=2))  # not tried (threshold)
    z.sysfs["recompress"] = "threshold=1500 max_pages=5"  # only >= 1500: slot 2
    assert flags(z, 2) == T.INCOMPRESSIBLE
    z.sysfs["writeback"] = "incompressible"
    assert flags(z, 2) == T.WB and z.table.handle[2] == 1
    assert flags(z, 0) == 0 and flags(z, 1) == 0
    z.sysfs["recompress"] = "type=foo"  # 6.18: an unknown type leaves the filter empty
    assert flags(z, 0) == T.INCOMPRESSIBLE and prio(z, 1) == 1 and size(z, 1) == 300
    z.sysfs["writeback"] = "type=incompressible"
    assert flags(z, 0) == T.WB and z.table.handle[0] == 2
    assert z.sysfs["bd_stat"] == bd(2, 0, 2)
    assert get(z, 0) == pp_page(1000) and get(z, 2) == pp_page(2000, seed=2)
    assert get(z, 1) == pp_page(1000, m1=300, seed=1)
    consistent(z)


def test_writeback_skips_same_wb_and_unallocated(dev):
    z = dev
    put(z, 0, same_page(0))
    put(z, 1, same_page(0x5A))
    put(z, 2, pp_page(300))
    z.sysfs["writeback"] = "page_indexes=0-9"
    assert flags(z, 2) == T.WB and flags(z, 0) == flags(z, 1) == T.SAME
    assert z.sysfs["bd_stat"] == bd(1, 0, 1)
    z.sysfs["writeback"] = "page_index=2"  # already WB: not a candidate
    z.sysfs["writeback"] = "page_index=1"  # SAME
    z.sysfs["writeback"] = "page_index=9"  # never written
    assert z.sysfs["bd_stat"] == bd(1, 0, 1)
    assert mm(z)[:2] == (3 * P, 0) and mm(z)[5] == 2
    consistent(z)


# -- writeback: page_index / page_indexes and the parsing quirk --------------------------------


def test_writeback_page_index_ignores_flags(dev):
    z = dev
    pages = fill_mix(z)
    z.sysfs["writeback"] = "page_index=3"  # not idle, not huge: page_index has no filter
    assert flags(z, 3) == T.WB and z.table.handle[3] == 1
    z.sysfs["writeback"] = "page_index=0 page_index=5"  # several tokens: both
    # slot 5 (1000 B, bucket 15) before slot 0 (500 B, bucket 7)
    assert z.table.handle[5] == 2 and z.table.handle[0] == 3
    z.sysfs["writeback"] = "page_indexes=1-2"  # inclusive range; 2 is SAME
    assert flags(z, 1) == T.WB and flags(z, 2) == T.SAME and flags(z, 4) == T.HUGE
    z.sysfs["writeback"] = "page_indexes=4-4"
    assert flags(z, 4) == T.WB
    assert z.sysfs["bd_stat"] == bd(5, 0, 5)
    for i, pg in pages.items():
        assert get(z, i) == pg
    consistent(z)


def test_writeback_same_slot_twice_is_written_once(dev):
    z = dev
    put(z, 3, pp_page(500))
    z.sysfs["writeback"] = "page_index=3 page_indexes=2-4 page_index=3"
    assert z.sysfs["bd_stat"] == bd(1, 0, 1) and z.table.handle[3] == 1
    consistent(z)


@pytest.mark.parametrize(
    "cmd, expect",
    [
        # type= (or a bare mode) scans the latest range with its filter and ends parsing.
        ("type=huge page_index=0", {1, 4}),
        ("huge page_index=0", {1, 4}),
        ("type=huge page_indexes=0-5", {1, 4}),
        # page_index scans at once, unfiltered; the type then rescans only that range.
        ("page_index=0 type=huge", {0}),
        ("page_index=0 huge", {0}),
        ("page_indexes=0-3 type=huge", {0, 1, 3}),
        ("page_indexes=3-5 type=huge", {3, 4, 5}),
        ("page_index=0 type=huge page_index=3", {0}),
        ("page_index=5 type=idle", {5}),  # not idle, written back anyway
        ("page_indexes=0-1 huge page_indexes=3-5", {0, 1}),
        # unknown keys are ignored
        ("foo=bar page_index=3", {3}),
        ("foo=bar", set()),
        ("\n", set()),
    ],
)
def test_writeback_parsing_quirk(dev, cmd, expect):
    z = dev
    pages = fill_mix(z)
    z.sysfs["writeback"] = cmd
    assert {i for i in range(64) if flags(z, i) & T.WB} == expect
    assert z.sysfs["bd_stat"] == bd(len(expect), 0, len(expect))
    for i, pg in pages.items():
        assert get(z, i) == pg
    consistent(z)


# -- writeback: freeing WB slots, block reuse --------------------------------------------------


@pytest.mark.parametrize("how", ["discard", "overwrite", "notify", "write_zeroes"])
def test_freeing_a_wb_slot_releases_its_block(dev, how):
    z = dev
    for i in range(4):
        put(z, i, pp_page(1000, seed=i))
    z.sysfs["writeback"] = "page_indexes=0-3"  # same bucket: 3, 2, 1, 0 -> blocks 1..4
    assert [z.table.handle[i] for i in range(4)] == [4, 3, 2, 1]
    assert z.sysfs["bd_stat"] == bd(4, 0, 4)
    assert mm(z)[:3] == (4 * P, 0, 0)
    if how == "discard":
        z.discard(2 * P, P)
    elif how == "write_zeroes":
        z.write_zeroes(2 * P, P)
    elif how == "overwrite":
        put(z, 2, pp_page(500, seed=9))
    else:
        z.zram_slot_free_notify(2)
    consistent(z)
    assert not z.backing_dev.bitmap[2]  # slot 2's block
    assert z.sysfs["bd_stat"] == bd(3, 0, 4)
    if how == "overwrite":
        assert flags(z, 2) == 0 and size(z, 2) == 500
        assert mm(z)[:2] == (4 * P, 500)
    else:
        assert z.table.flags[2] == 0 and z.table.handle[2] == 0
        assert mm(z)[:2] == (3 * P, 0)
        assert z.io_stat().notify_free == 1
    # The freed block is the lowest free one: the next writeback reuses it.
    put(z, 5, pp_page(2000, seed=5))
    z.sysfs["writeback"] = "page_index=5"
    assert z.table.handle[5] == 2
    assert z.sysfs["bd_stat"] == bd(4, 0, 5)
    assert get(z, 5) == pp_page(2000, seed=5)
    # Discard everything: bd_count back to 0, no block leaked.
    z.discard(0, 64 * P)
    assert z.sysfs["bd_stat"] == bd(0, 1, 5) and not z.backing_dev.bitmap.any()
    assert mm(z)[:2] == (0, 0)
    consistent(z)


def test_block_zero_is_never_used_and_full_device_is_enospc(tmp_path):
    z = make_dev(tmp_path, bd_pages=4)  # blocks 1..3 usable
    pages = {i: pp_page(1000 + 16 * i, seed=i) for i in range(5)}
    for i, pg in pages.items():
        put(z, i, pg)
    store_err(z, "writeback", "page_indexes=0-4", errno.ENOSPC)
    # Largest first: slots 4, 3, 2 took blocks 1, 2, 3; 1 and 0 stay in zsmalloc.
    assert [z.table.handle[i] for i in (4, 3, 2)] == [1, 2, 3]
    assert flags(z, 1) == flags(z, 0) == 0 and size(z, 0) == 1000
    assert z.sysfs["bd_stat"] == bd(3, 0, 3)
    consistent(z)
    store_err(z, "writeback", "page_index=0", errno.ENOSPC)  # full: at once
    assert z.sysfs["bd_stat"] == bd(3, 0, 3)
    z.sysfs["writeback"] = "page_index=9"  # no candidate: no block needed, no error
    z.zram_slot_free_notify(3)  # block 2 free again
    z.sysfs["writeback"] = "page_index=0"
    assert z.table.handle[0] == 2
    for i in (0, 1, 2, 4):
        assert get(z, i) == pages[i]
    assert z.sysfs["bd_stat"] == bd(3, 3, 4)
    consistent(z)


# -- writeback: the limit ----------------------------------------------------------------------


def test_writeback_limit_stops_after_exactly_n_pages(dev):
    z = dev
    for i in range(5):
        put(z, i, pp_page(1000 + 16 * i, seed=i))
    assert z.sysfs["writeback_limit"] == "0\n" and z.sysfs["writeback_limit_enable"] == "0\n"
    z.sysfs["writeback_limit"] = "2"
    z.sysfs["writeback_limit_enable"] = "1\n"
    assert z.sysfs["writeback_limit"] == "2\n" and z.sysfs["writeback_limit_enable"] == "1\n"
    store_err(z, "writeback", "page_indexes=0-4", errno.EIO)
    assert {i for i in range(5) if flags(z, i) & T.WB} == {4, 3}  # the two largest
    assert z.sysfs["writeback_limit"] == "0\n"
    assert z.sysfs["bd_stat"] == bd(2, 0, 2)
    consistent(z)
    store_err(z, "writeback", "page_index=0", errno.EIO)  # limit 0, enabled: EIO at once
    assert z.sysfs["bd_stat"] == bd(2, 0, 2) and flags(z, 0) == 0
    consistent(z)
    z.sysfs["writeback_limit"] = "10"
    z.sysfs["writeback"] = "page_indexes=0-4"  # 3 left: success, limit 10 -> 7
    assert z.sysfs["writeback_limit"] == "7\n"
    assert z.sysfs["bd_stat"] == bd(5, 0, 5)
    consistent(z)


def test_writeback_limit_disabled_is_unlimited_and_untouched(dev):
    z = dev
    for i in range(3):
        put(z, i, pp_page(500, seed=i))
    z.sysfs["writeback_limit"] = "1"  # not enabled
    z.sysfs["writeback"] = "page_indexes=0-2"
    assert z.sysfs["bd_stat"] == bd(3, 0, 3)
    assert z.sysfs["writeback_limit"] == "1\n"
    z.sysfs["writeback_limit_enable"] = "0"
    assert z.sysfs["writeback_limit_enable"] == "0\n"


def test_writeback_limit_zero_enabled_without_candidates_is_fine(dev):
    z = dev
    z.sysfs["writeback_limit_enable"] = "1"
    z.sysfs["writeback"] = "idle"  # nothing selected: the limit is never looked at
    put(z, 0, pp_page(500))
    store_err(z, "writeback", "page_index=0", errno.EIO)


@pytest.mark.parametrize("attr", ["writeback_limit", "writeback_limit_enable"])
@pytest.mark.parametrize("bad", ["abc", "-1", "1 ", "0x10", "18446744073709551616", "1.5"])
def test_writeback_limit_garbage_is_einval(dev, attr, bad):
    store_err(dev, attr, bad, errno.EINVAL)
    assert dev.sysfs[attr] == "0\n"


def test_writeback_limit_before_init_and_u64(tmp_path):
    z = Zram()
    z.sysfs["writeback_limit"] = "18446744073709551615"
    assert z.sysfs["writeback_limit"] == "18446744073709551615\n"
    z.sysfs["writeback_limit_enable"] = "7"
    assert z.sysfs["writeback_limit_enable"] == "1\n"


# -- writeback: errors -------------------------------------------------------------------------


def test_writeback_errors(tmp_path):
    z = Zram()
    z.sysfs["backing_dev"] = backing_file(tmp_path)
    store_err(z, "writeback", "idle", errno.EINVAL)  # not initialised
    z.sysfs["disksize"] = str(64 * P)
    z.comps[0].backend = SizedBackend(z.params[0])
    store_err(z, "backing_dev", backing_file(tmp_path, name="other"), errno.EBUSY)
    assert z.sysfs["backing_dev"] == f"{os.path.realpath(tmp_path / 'bd.img')}\n"
    put(z, 1, pp_page(500))
    for bad in ["type=foo", "foo", "type=", "Idle", "type=idle_huge", "type=huge,idle"]:
        store_err(z, "writeback", bad, errno.EINVAL)
    store_err(z, "writeback", "page_index=64", errno.ERANGE)  # nr_pages 64
    store_err(z, "writeback", "page_index=99999999999", errno.ERANGE)
    for bad in ["page_index=abc", "page_index=-1", "page_index=0x1", "page_index=1 2"]:
        store_err(z, "writeback", bad, errno.EINVAL)
    store_err(z, "writeback", "page_indexes=3", errno.EINVAL)  # no '-'
    store_err(z, "writeback", "page_indexes=a-3", errno.EINVAL)
    store_err(z, "writeback", "page_indexes=1-b", errno.EINVAL)
    store_err(z, "writeback", "page_indexes=-3", errno.EINVAL)
    store_err(z, "writeback", "page_indexes=5-3", errno.ERANGE)
    store_err(z, "writeback", "page_indexes=0-64", errno.ERANGE)
    store_err(z, "writeback", "page_indexes=64-70", errno.ERANGE)
    # A failed request after a successful scan writes nothing and leaves no PP_SLOT.
    store_err(z, "writeback", "page_index=1 page_index=64", errno.ERANGE)
    store_err(z, "writeback", "page_index=1 type=bogus", errno.EINVAL)
    assert flags(z, 1) == 0 and z.sysfs["bd_stat"] == bd(0, 0, 0)
    consistent(z)
    # Post-processing already running: EAGAIN (before the backing device is looked at).
    z._pp_lock.acquire()
    try:
        store_err(z, "writeback", "page_index=1", errno.EAGAIN)
        store_err(z, "writeback", "type=bogus", errno.EAGAIN)
        store_err(z, "recompress", "type=idle", errno.EAGAIN)
    finally:
        z._pp_lock.release()
    z.sysfs["writeback"] = "page_index=63"  # the last page: fine (empty)
    z.sysfs["writeback"] = "page_index=1"
    assert flags(z, 1) == T.WB


def test_writeback_without_backing_dev_is_enodev(tmp_path):
    z = make_dev(tmp_path, bd_pages=None)
    put(z, 0, pp_page(500))
    assert z.sysfs["backing_dev"] == "none\n"
    store_err(z, "writeback", "idle", errno.ENODEV)
    store_err(z, "writeback", "type=bogus", errno.ENODEV)  # checked before parsing
    z._pp_lock.acquire()
    try:
        store_err(z, "writeback", "idle", errno.EAGAIN)
    finally:
        z._pp_lock.release()
    assert z.sysfs["bd_stat"] == bd(0, 0, 0)


def test_writeback_attributes_absent_without_config():
    z = Zram(ZramConfig(writeback=False, multi_comp=False))
    for attr in ["backing_dev", "writeback", "writeback_limit", "writeback_limit_enable"]:
        store_err(z, attr, "1", errno.ENOENT)
    for attr in ["bd_stat", "recomp_algorithm"]:
        with pytest.raises(OSError) as e:
            z.sysfs[attr]
        assert e.value.errno == errno.ENOENT
    store_err(z, "recompress", "type=idle", errno.ENOENT)
    assert "writeback" not in z.sysfs and "idle" in z.sysfs


def test_writeback_mode_of_attributes(dev):
    s = dev.sysfs
    assert [s.mode(a) for a in ("backing_dev", "writeback", "writeback_limit")] == [
        0o644,
        0o200,
        0o644,
    ]
    assert s.mode("writeback_limit_enable") == 0o644 and s.mode("bd_stat") == 0o444
    assert s.mode("recomp_algorithm") == 0o644 and s.mode("recompress") == 0o200
    for attr in ("writeback", "recompress"):
        with pytest.raises(OSError) as e:
            s[attr]
        assert e.value.errno == errno.EACCES
    store_err(dev, "bd_stat", "1", errno.EACCES)


# -- writeback: bio errors and slots changing during the write ---------------------------------


def test_writeback_bio_error_is_returned_but_the_loop_continues(dev):
    z = dev
    pages = {i: pp_page(1000 + 16 * i, seed=i) for i in range(4)}
    for i, pg in pages.items():
        put(z, i, pg)
    disk = z.backing_dev.disk
    every_sector = set(range(64 * 8))

    def fail_slot_2(name, index):  # fail the write of slot 2 only (whatever its block)
        disk.fail_sectors = every_sector if index == 2 else set()

    z.yield_point = fail_slot_2
    store_err(z, "writeback", "page_indexes=0-3", errno.EIO)
    z.yield_point = None
    disk.fail_sectors = set()
    # Order 3, 2 (bucket 16), 1, 0 (bucket 15): 3 -> block 1, 2 fails on block 2,
    # which is kept for 1; 0 -> block 3.
    wb = {i: z.table.handle[i] for i in range(4) if flags(z, i) & T.WB}
    assert wb == {3: 1, 1: 2, 0: 3}
    assert flags(z, 2) == 0 and size(z, 2) == 1032
    assert z.sysfs["bd_stat"] == bd(3, 0, 3)
    for i, pg in pages.items():
        assert get(z, i) == pg
    consistent(z)


def test_writeback_bio_error_keeps_the_block_for_the_next_page(dev):
    z = dev
    for i in range(3):
        put(z, i, pp_page(1000 + 16 * i, seed=i))
    z.backing_dev.disk.fail_sectors = set(range(8, 16))  # block 1 is bad
    store_err(z, "writeback", "page_indexes=0-2", errno.EIO)
    # Every page tried block 1 (the reserved block is kept after a failure): none written.
    assert not any(flags(z, i) & T.WB for i in range(3))
    assert z.sysfs["bd_stat"] == bd(0, 0, 0) and not z.backing_dev.bitmap.any()
    consistent(z)


def test_reading_a_wb_slot_with_a_bio_error(dev):
    z = dev
    put(z, 0, pp_page(500))
    put(z, 1, pp_page(600))
    z.sysfs["writeback"] = "page_indexes=0-1"  # 1 -> block 1, 0 -> block 2
    z.backing_dev.disk.fail_sectors = {8}
    raises(errno.EIO, get, z, 1)
    assert z.io_stat().failed_reads == 1
    assert z.sysfs["bd_stat"] == bd(2, 1, 2)
    assert get(z, 0) == pp_page(500)
    assert z.sysfs["bd_stat"] == bd(2, 2, 2)
    z.backing_dev.disk.fail_sectors = set()
    assert get(z, 1) == pp_page(600)


@pytest.mark.parametrize("what", ["read", "write", "discard", "notify"])
def test_slot_touched_during_writeback_is_skipped(dev, what):
    """An access or a free between the zspool read and the re-lock cancels the slot
    (PP_SLOT cleared); its reserved block goes to the next page."""
    z = dev
    put(z, 0, pp_page(500))
    put(z, 1, pp_page(2000))  # processed first
    new = pp_page(700, seed=3)

    def touch(name, index):
        if name == "writeback_read_done" and index == 1:
            assert flags(z, 1) & T.PP_SLOT
            if what == "read":
                get(z, 1)
            elif what == "write":
                put(z, 1, new)
            elif what == "discard":
                z.discard(P, P)
            else:
                z.zram_slot_free_notify(1)
            assert not flags(z, 1) & T.PP_SLOT

    z.yield_point = touch
    z.sysfs["writeback"] = "page_indexes=0-1"
    z.yield_point = None
    # Block 1 was written for slot 1 (bd_writes counts it), then reused for slot 0.
    assert flags(z, 0) == T.WB and z.table.handle[0] == 1
    assert not flags(z, 1) & T.WB
    assert z.sysfs["bd_stat"] == bd(1, 0, 2)
    assert get(z, 0) == pp_page(500)
    if what == "read":
        assert get(z, 1) == pp_page(2000)
    elif what == "write":
        assert get(z, 1) == new
    else:
        assert z.table.flags[1] == 0
    consistent(z)


# -- idle marking ------------------------------------------------------------------------------

NS = 1_000_000_000


def test_idle_all_marks_allocated_non_same_non_wb(dev):
    z = dev
    put(z, 0, pp_page(500))
    put(z, 1, same_page(3))
    put(z, 2, pp_page(4000))
    put(z, 3, pp_page(600))
    z.sysfs["writeback"] = "page_index=3"
    z.sysfs["idle"] = "all\n"
    assert [flags(z, i) for i in range(5)] == [T.IDLE, T.SAME, T.HUGE | T.IDLE, T.WB, 0]
    consistent(z)


def test_idle_with_ages(tmp_path):
    now = [1000 * NS]
    z = make_dev(tmp_path, clock=lambda: now[0])
    put(z, 0, pp_page(500))
    put(z, 1, pp_page(600))
    now[0] = 1010 * NS
    put(z, 2, pp_page(700))
    put(z, 3, same_page(1))
    now[0] = 1015 * NS
    assert [z.table.ac_time[i] for i in range(4)] == [1000 * NS, 1000 * NS, 1010 * NS, 1010 * NS]

    def idle():
        return {i for i in range(64) if flags(z, i) & T.IDLE}

    z.sysfs["idle"] = "10"  # cutoff 1005 s: 0 and 1 are older
    assert idle() == {0, 1}
    z.sysfs["idle"] = "15"  # cutoff 1000 s: strictly older only -> none, IDLE cleared
    assert idle() == set()
    z.sysfs["idle"] = "3"  # cutoff 1012 s: all allocated non-same
    assert idle() == {0, 1, 2}
    z.sysfs["idle"] = "6"  # cutoff 1009 s: clears 2 again
    assert idle() == {0, 1}
    z.sysfs["idle"] = "0x10"  # base auto: 16 s, cutoff 999 s -> none
    assert idle() == set()
    z.sysfs["idle"] = "0"  # cutoff = now: everything accessed before now
    assert idle() == {0, 1, 2}
    get(z, 1)  # an access clears IDLE and stamps the time
    assert idle() == {0, 2} and z.table.ac_time[1] == 1015 * NS
    now[0] = 1016 * NS
    z.sysfs["idle"] = "1"  # cutoff 1015 s: slot 1 was accessed at 1015: not idle
    assert idle() == {0, 2}
    z.sysfs["writeback"] = "idle"
    assert {i for i in range(64) if flags(z, i) & T.WB} == {0, 2}
    assert z.table.ac_time[0] == 0  # written back: freed, then WB
    now[0] = 5000 * NS
    z.sysfs["idle"] = "1"
    assert idle() == {1}  # WB and SAME slots are never idle
    consistent(z)


def test_idle_errors(tmp_path):
    z = Zram()
    store_err(z, "idle", "all", errno.EINVAL)  # not initialised
    store_err(z, "idle", "10", errno.EINVAL)
    z.sysfs["disksize"] = str(16 * P)
    for bad in ["bogus", "-1", "1.5", "all all", "10 s", ""]:
        if bad:
            store_err(z, "idle", bad, errno.EINVAL)
    no_actime = Zram(ZramConfig(track_entry_actime=False))
    no_actime.sysfs["disksize"] = str(16 * P)
    no_actime.pwrite(pp_page(500), 0)
    store_err(no_actime, "idle", "10", errno.EINVAL)  # ages need TRACK_ENTRY_ACTIME
    no_actime.sysfs["idle"] = "all"
    assert no_actime.table.flags[0] & T.IDLE and no_actime.table.ac_time is None


@pytest.mark.parametrize("how", ["pread", "pwrite", "swap_read", "bio"])
def test_any_access_clears_idle_and_pp_slot(dev, how):
    z = dev
    put(z, 0, pp_page(500))
    put(z, 1, pp_page(600))
    z.sysfs["idle"] = "all"
    ctl = PpCtl()
    z.table.slot_lock(0)
    ctl.place(z, 0)
    z.table.slot_unlock(0)
    assert flags(z, 0) == T.IDLE | T.PP_SLOT and ctl.buckets[500 // 64] == [0]
    if how == "pread":
        get(z, 0)
    elif how == "pwrite":
        put(z, 0, pp_page(500, seed=5))
    elif how == "swap_read":
        from pyzram.zram.swap import zram_swap_read_page

        z.swap_read_ordering = "one_section"
        assert zram_swap_read_page(z, bytearray(P), 0) == 0
    else:
        from pyzram.block.bio import REQ_OP_READ, Bio, submit_bio_wait
        from pyzram.block.blkdev import BlockDevice

        bio = Bio(BlockDevice(z.disk), REQ_OP_READ, 0)
        bio.add_page(memoryview(bytearray(P)), P)
        assert submit_bio_wait(bio) == 0
    assert flags(z, 0) == 0
    assert flags(z, 1) == T.IDLE


def test_mark_idle_rechecks_the_slot_under_its_lock(dev, monkeypatch):
    """A slot that becomes SAME after the candidate scan must not get IDLE: the kernel tests
    allocated/SAME/WB and the access time under the slot lock.  (mark_idle used an unlocked
    snapshot of the flags and ac_time.)"""
    z = dev
    put(z, 0, pp_page(500))
    fired = []

    def before_lock(point, index):  # the table's hook before each slot lock attempt
        if point == "lock" and index == 0 and not fired:
            fired.append(index)
            put(z, 0, same_page(9))  # "another CPU" rewrites slot 0 first

    z.table.yield_point = before_lock
    z.sysfs["idle"] = "all"
    z.table.yield_point = None
    assert fired
    assert flags(z, 0) == T.SAME, "mark_idle set IDLE on a SAME slot"


def test_mark_idle_age_read_under_the_lock(tmp_path, monkeypatch):
    now = [100 * NS]
    z = make_dev(tmp_path, clock=lambda: now[0])
    put(z, 0, pp_page(500))
    now[0] = 200 * NS
    fired = []

    def before_lock(point, index):  # the table's hook before each slot lock attempt
        if point == "lock" and index == 0 and not fired:
            fired.append(index)
            get(z, 0)  # accessed at 200 s, after the scan but before the lock

    z.table.yield_point = before_lock
    z.sysfs["idle"] = "50"  # cutoff 150 s
    z.table.yield_point = None
    assert fired and z.table.ac_time[0] == 200 * NS
    assert not flags(z, 0) & T.IDLE, "slot accessed at 200 s marked idle with cutoff 150 s"


# -- recomp_algorithm --------------------------------------------------------------------------

LISTING = ["lzo-rle", "lzo", "lz4", "lz4hc", "zstd", "deflate"]


def listing(selected: str) -> str:
    return "".join(f"[{b}] " if b == selected else f"{b} " for b in LISTING) + "\n"


def shown(*entries: tuple[int, str]) -> str:
    """recomp_algorithm_show's bytes: each listing's end offset is added to sz (6.18)."""
    buf, sz = bytearray(4096), 0
    for prio, selected in entries:
        head, body = f"#{prio}: ".encode(), listing(selected).encode()
        buf[sz : sz + len(head)] = head
        sz += len(head)
        buf[sz : sz + len(body)] = body
        sz += sz + len(body)
    return buf[:sz].decode()


def test_recomp_algorithm_show_and_store():
    z = Zram()
    assert z.sysfs["recomp_algorithm"] == ""
    z.sysfs["recomp_algorithm"] = "algo=zstd"  # priority 1 by default
    one = "#1: " + listing("zstd")
    assert z.sysfs["recomp_algorithm"] == one + "\0" * 4  # the kernel's gap of 4 NULs
    z.sysfs["recomp_algorithm"] = 'priority=3 algo="lz4"\n'
    assert z.sysfs["recomp_algorithm"] == shown((1, "zstd"), (3, "lz4"))
    assert z.sysfs["recomp_algorithm"].replace("\0", "") == one + "#3: " + listing("lz4")
    z.sysfs["recomp_algorithm"] = "algo=deflate priority=1"  # replaces priority 1
    assert z.sysfs["recomp_algorithm"] == shown((1, "deflate"), (3, "lz4"))
    z.sysfs["disksize"] = "1M"
    assert z.num_active_comps == 3 and [c is not None for c in z.comps] == [1, 1, 0, 1]
    assert z.sysfs["recomp_algorithm"] == shown((1, "deflate"), (3, "lz4"))


@pytest.mark.parametrize(
    "value, err",
    [
        ("priority=1", errno.EINVAL),  # no algo
        ("algo=zstd priority=0", errno.EINVAL),
        ("algo=zstd priority=4", errno.EINVAL),
        ("algo=zstd priority=-1", errno.EINVAL),
        ("algo=zstd priority=x", errno.EINVAL),
        ("algo=bogus", errno.EINVAL),
        ("algo=842", errno.EINVAL),  # not built in this profile
        ("algo", errno.EINVAL),
        ("algo=", errno.EINVAL),
        ("zstd", errno.EINVAL),
    ],
)
def test_recomp_algorithm_errors(value, err):
    z = Zram()
    store_err(z, "recomp_algorithm", value, err)
    assert z.sysfs["recomp_algorithm"] == ""


def test_recomp_algorithm_after_init_is_ebusy():
    z = Zram()
    z.sysfs["disksize"] = "1M"
    store_err(z, "recomp_algorithm", "algo=zstd", errno.EBUSY)
    store_err(z, "recomp_algorithm", "algo=bogus", errno.EINVAL)  # name checked first
    store_err(z, "recomp_algorithm", "algo=zstd priority=7", errno.EINVAL)
    assert z.sysfs["recomp_algorithm"] == ""


# -- recompress --------------------------------------------------------------------------------


def test_recompress_exact(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    pages = {
        0: pp_page(1000, m1=300),  # 1024 class -> 320 class: accepted
        1: pp_page(4000, m1=500),  # huge -> 512 class: leaves the huge class
        2: pp_page(2000),  # cannot shrink: INCOMPRESSIBLE
        3: same_page(4),  # never a candidate
        4: pp_page(1016, m1=1000),  # same class (1024): rejected, INCOMPRESSIBLE
        5: pp_page(1016, m1=968),  # 1024 -> 976 class: accepted
    }
    for i, pg in pages.items():
        put(z, i, pg)
    used = pool_pages(1000, 4000, 2000, 1016, 1016) * P
    assert mm(z) == (6 * P, 1000 + 4096 + 2000 + 1016 + 1016, used, 0, used, 1, 0, 1, 1)
    z.sysfs["recompress"] = ""  # an empty write does nothing
    z.sysfs["recompress"] = "\n"  # no keys: every candidate
    consistent(z)
    assert [prio(z, i) for i in range(6)] == [1, 1, 0, 0, 0, 1]
    assert [size(z, i) for i in range(6)] == [300, 500, 2000, 0, 1016, 968]
    assert [flags(z, i) & ~T.PRIORITY_MASK for i in range(6)] == [
        0,
        0,
        T.INCOMPRESSIBLE,
        T.SAME,
        T.INCOMPRESSIBLE,
        0,
    ]
    assert z.comps[1].backend.calls == 5
    # compr_data_size exact; huge_pages 1 -> 0, huge_pages_since stays; mem_used_max
    # is not updated by recompression.
    st = mm(z)
    assert st[:2] == (6 * P, 300 + 500 + 2000 + 1016 + 968)
    assert st[3:] == (0, used, 1, 0, 0, 1)
    # The pool holds exactly the new objects (the old ones were freed).
    assert st[2] == P * (
        SPEC_CLASS[300][1] + SPEC_CLASS[500][1] + SPEC_CLASS[2000][1] + 1 + SPEC_CLASS[968][1]
    )
    for i, pg in pages.items():  # decompressed with their priority's codec
        assert get(z, i) == pg
    # Nothing left: recompressed slots (prio 1 = the highest) and INCOMPRESSIBLE are skipped.
    calls = z.comps[1].backend.calls
    z.sysfs["recompress"] = "type=idle"
    z.sysfs["idle"] = "all"
    z.sysfs["recompress"] = "type=idle"
    assert z.comps[1].backend.calls == calls
    consistent(z)


def test_recompress_types(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    pages = {
        0: pp_page(1000, m1=300),
        1: pp_page(4000, m1=300),
        2: pp_page(3800, m1=300),
        3: pp_page(2000, m1=300),
    }
    for i, pg in pages.items():
        put(z, i, pg)
    z.sysfs["idle"] = "all"
    get(z, 2)
    get(z, 3)  # idle: 0, 1; huge: 1, 2
    z.sysfs["recompress"] = "type=huge_idle"
    assert [prio(z, i) for i in range(4)] == [0, 1, 0, 0]
    z.sysfs["recompress"] = "type=huge"
    assert [prio(z, i) for i in range(4)] == [0, 1, 1, 0]
    z.sysfs["recompress"] = "type=idle"
    assert [prio(z, i) for i in range(4)] == [1, 1, 1, 0]
    assert mm(z)[7:] == (0, 2)
    z.sysfs["recompress"] = "type=idle"  # slot 3 is not idle
    assert prio(z, 3) == 0
    z.sysfs["recompress"] = "max_pages=10"
    assert prio(z, 3) == 1
    for i, pg in pages.items():
        assert get(z, i) == pg
    consistent(z)


def test_recompress_clears_idle_of_tried_slots(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(1000))  # cannot shrink
    put(z, 1, pp_page(1000, m1=200, seed=1))
    put(z, 2, pp_page(400, m1=200, seed=2))  # below the threshold: untouched
    z.sysfs["idle"] = "all"
    z.sysfs["recompress"] = "type=idle threshold=500"
    assert flags(z, 0) == T.INCOMPRESSIBLE  # tried: not idle any more
    assert flags(z, 1) == 1 << T.ZRAM_COMP_PRIORITY_BIT1 and size(z, 1) == 200
    assert flags(z, 2) == T.IDLE and size(z, 2) == 400  # skipped before the read
    consistent(z)


def test_recompress_threshold(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(1000, m1=600))  # new 600 >= threshold 600: rejected
    put(z, 1, pp_page(1000, m1=599, seed=1))  # 599 < 600: accepted
    put(z, 2, pp_page(599, m1=100, seed=2))  # old 599 < 600: skipped, budget untouched
    put(z, 3, pp_page(600, m1=100, seed=3))  # old 600: tried, accepted
    z.sysfs["recompress"] = "threshold=600 max_pages=3"
    assert [size(z, i) for i in range(4)] == [1000, 599, 599, 100]
    assert [prio(z, i) for i in range(4)] == [0, 1, 0, 1]
    assert flags(z, 0) == T.INCOMPRESSIBLE and flags(z, 2) == 0
    assert z.comps[1].backend.calls == 3
    store_err(z, "recompress", f"threshold={HUGE_CLASS_SIZE}", errno.EINVAL)
    store_err(z, "recompress", "threshold=99999", errno.EINVAL)
    store_err(z, "recompress", "threshold=-1", errno.EINVAL)
    z.sysfs["recompress"] = f"threshold={HUGE_CLASS_SIZE - 1}"  # the largest allowed
    consistent(z)


def test_recompress_max_pages(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    sizes = [1000, 2000, 3000, 1500, 4000]
    for i, n in enumerate(sizes):
        put(z, i, pp_page(n, m1=100 + i, seed=i))
    z.sysfs["recompress"] = "max_pages=2"  # the two largest first: 4 (huge), 2
    assert [prio(z, i) for i in range(5)] == [0, 0, 1, 0, 1]
    z.sysfs["recompress"] = "max_pages=1"
    assert [prio(z, i) for i in range(5)] == [0, 1, 1, 0, 1]
    z.sysfs["recompress"] = "max_pages=0"  # nothing
    assert z.comps[1].backend.calls == 3
    # A slot that fails to shrink still counts.
    put(z, 5, pp_page(3500))
    z.sysfs["recompress"] = "max_pages=1"
    assert flags(z, 5) == T.INCOMPRESSIBLE and [prio(z, i) for i in (0, 3)] == [0, 0]
    for bad in ["max_pages=x", "max_pages=-1", "max_pages", "type"]:
        store_err(z, "recompress", bad, errno.EINVAL)
    consistent(z)


def test_recompress_priorities_and_algo(tmp_path):
    z = make_dev(tmp_path, secondaries=2)  # prio 1 zstd (shrink1), prio 2 deflate (shrink2)
    assert z.num_active_comps == 3
    pages = {
        0: pp_page(2000, m1=1000, m2=100),  # prio 1 is accepted first
        1: pp_page(2000, m2=100, seed=1),  # prio 1 cannot, prio 2 can
        2: pp_page(2000, seed=2),  # neither can
        3: pp_page(2000, m1=300, m2=100, seed=3),
    }
    for i, pg in pages.items():
        put(z, i, pg)
    # priority=1: only prio 1; prio_max 2 < num_active_comps 3: no INCOMPRESSIBLE.
    z.sysfs["recompress"] = "priority=1"
    assert [prio(z, i) for i in range(4)] == [1, 0, 0, 1]
    assert not any(flags(z, i) & T.INCOMPRESSIBLE for i in range(4))
    # priority=0 is bumped to 1: nothing new (slots 1 and 2 cannot shrink with prio 1)
    z.sysfs["recompress"] = "priority=0"
    assert [prio(z, i) for i in range(4)] == [1, 0, 0, 1]
    # default range 1..2: slots at prio 1 go on to prio 2, the rest try 1 then 2.
    z.sysfs["recompress"] = ""  # an empty write never reaches the store
    assert [prio(z, i) for i in range(4)] == [1, 0, 0, 1]
    z.sysfs["recompress"] = "type=foo"
    assert [prio(z, i) for i in range(4)] == [2, 2, 0, 2]
    assert [size(z, i) for i in range(4)] == [100, 100, 2000, 100]
    assert flags(z, 2) == T.INCOMPRESSIBLE
    assert [(z.table.flags[i] >> T.ZRAM_COMP_PRIORITY_BIT1) & 3 for i in range(4)] == [2, 2, 0, 2]
    for i, pg in pages.items():
        assert get(z, i) == pg
    consistent(z)


def test_recompress_algo_selects_the_priority(tmp_path):
    z = make_dev(tmp_path, secondaries=2)
    put(z, 0, pp_page(2000, m1=300, m2=100))
    put(z, 1, pp_page(2000, m1=300, seed=1))  # prio 2 cannot
    z.sysfs["recompress"] = "algo=deflate"  # priority 2 only; 2 = the highest: INCOMPRESSIBLE
    assert prio(z, 0) == 2 and size(z, 0) == 100
    assert flags(z, 1) == T.INCOMPRESSIBLE
    assert z.comps[1].backend.calls == 0
    store_err(z, "recompress", "algo=lz4", errno.EINVAL)  # not configured
    store_err(z, "recompress", "algo=lzo-rle", errno.EINVAL)  # the primary is not searched
    store_err(z, "recompress", "algo=zstd priority=2", errno.EINVAL)  # searched from prio 2
    store_err(z, "recompress", "priority=3", errno.EINVAL)  # beyond num_active_comps
    z2 = make_dev(tmp_path, pages=8, bd_pages=None, secondaries=1)
    put(z2, 0, pp_page(2000, m1=300))
    z2.sysfs["recompress"] = "algo=zstd"
    assert prio(z2, 0) == 1


def test_recompress_a_gap_in_priorities(tmp_path):
    """Priorities 1 and 3 configured: num_active_comps = 3, so the default range is 1..2
    and priority 3 is only reached with priority=3 or algo= (6.15+)."""
    z = Zram()
    z.sysfs["recomp_algorithm"] = "algo=zstd priority=1"
    z.sysfs["recomp_algorithm"] = "algo=lz4 priority=3"
    z.sysfs["disksize"] = str(16 * P)
    z.comps[0].backend = SizedBackend(z.params[0])
    z.comps[1].backend = ShrinkBackend(z.params[1], 1)
    z.comps[3].backend = ShrinkBackend(z.params[3], 3)
    put(z, 0, pp_page(2000, m3=100))
    z.sysfs["recompress"] = "\n"
    # prio 1 tried and failed; prio_max 3 >= num_active_comps 3: INCOMPRESSIBLE
    assert prio(z, 0) == 0 and flags(z, 0) == T.INCOMPRESSIBLE
    store_err(z, "recompress", "priority=3", errno.EINVAL)  # prio_max min(4, 3) = 3
    store_err(z, "recompress", "algo=lz4", errno.EINVAL)
    assert z.comps[3].backend.calls == 0


def test_recompress_errors(tmp_path):
    z = Zram()
    z.sysfs["recomp_algorithm"] = "algo=zstd"
    store_err(z, "recompress", "type=idle", errno.EINVAL)  # not initialised
    z.sysfs["disksize"] = str(16 * P)
    z.sysfs["recompress"] = "type=idle"
    plain = Zram()
    plain.sysfs["disksize"] = str(16 * P)
    store_err(plain, "recompress", "type=idle", errno.EINVAL)  # no secondary algorithm
    store_err(plain, "recompress", "algo=zstd", errno.EINVAL)
    z._pp_lock.acquire()
    try:
        store_err(z, "recompress", "type=idle", errno.EAGAIN)
        store_err(z, "recompress", "algo=bogus", errno.EAGAIN)  # looked up after pp
        store_err(z, "recompress", "threshold=4000", errno.EINVAL)  # parsed before pp
        store_err(z, "recompress", "max_pages=x", errno.EINVAL)
    finally:
        z._pp_lock.release()


def test_recompress_compression_error_stops_with_it(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(1000, m1=100))
    put(z, 1, pp_page(2000, m1=100, seed=1))
    z.comps[1].backend.fail = True
    with pytest.raises(OSError) as e:
        z.sysfs["recompress"] = "max_pages=9"
    assert e.value.errno == errno.EINVAL
    assert z.comps[1].backend.calls == 1  # stopped after the first slot (slot 1)
    assert [flags(z, i) for i in range(2)] == [0, 0]  # not INCOMPRESSIBLE
    consistent(z)
    z.comps[1].backend.fail = False
    z.sysfs["recompress"] = "\n"
    assert [prio(z, i) for i in range(2)] == [1, 1]
    assert get(z, 0) == pp_page(1000, m1=100) and get(z, 1) == pp_page(2000, m1=100, seed=1)


def test_recompress_does_not_check_mem_limit_or_update_max(tmp_path):
    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(4000, m1=100))  # one huge page: 1 pool page
    assert mm(z)[2] == mm(z)[4] == P
    z.sysfs["mem_limit"] = str(P)
    z.sysfs["recompress"] = "\n"  # the 112 class needs 7 pages: no limit check, no max update
    assert size(z, 0) == 100 and prio(z, 0) == 1
    assert mm(z)[2:5] == (7 * P, P, P)
    consistent(z)


def kernel_class_index(z: Zram, n: int) -> int:
    """Kernel ``zs_lookup_class_index``: ``pool->size_class[get_size_class_index(size)]->index``
    for the size as given (mm/zsmalloc.c of 6.18), *not* grown by ``ZS_HANDLE_SIZE``
    as ``zs_malloc`` grows a request."""
    pool = z.mem_pool
    return pool.size_class[pool.class_index(n)].index


@pytest.mark.parametrize("old, new", [(1024, 1010), (1000, 990), (1016, 1008), (1017, 1000)])
def test_recompress_class_index_as_the_kernel(tmp_path, old, new):
    """Accepted only into a strictly smaller class, looked up without the handle size."""
    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(old, m1=new))
    z.sysfs["recompress"] = "\n"
    accept = kernel_class_index(z, new) < kernel_class_index(z, old)
    assert (prio(z, 0), size(z, 0)) == ((1, new) if accept else (0, old))
    # Sizes 993-1024 share the 1024-byte class (62), 977-992 the 992-byte one (60)
    # as the kernel looks them up; grown by the handle, 1017-1024 would be class 64
    # and 990 class 62: each case here would go the other way.
    assert accept == ((old, new) == (1000, 990))


@pytest.mark.parametrize(
    "new, accepted, in_huge_class",
    [
        (3616, True, False),
        (3624, True, False),
        (3625, True, True),
        (3632, True, True),
        (3633, False, True),
        (4000, False, True),
    ],
)
def test_recompress_huge_slot_to_the_largest_normal_class_size(
    tmp_path, new, accepted, in_huge_class
):
    """A huge slot recompressed to ``huge_class_size``..3632 bytes is accepted.

    ``recompress_slot`` compares ``zs_lookup_class_index`` of the old size (4096:
    the huge class, 254) and the new one, looked up without the handle: 3617-3632
    is class 225, the largest normal class.  ``zs_malloc`` then adds the handle,
    so 3625-3632 bytes still land in the huge class (one page each) but the
    slot is no longer ZRAM_HUGE and ``huge_pages`` drops.  3633 bytes and more
    stay huge and the slot is marked INCOMPRESSIBLE.
    """
    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(P, m1=new, seed=5))
    put(z, 1, pp_page(P, seed=6))  # the shrinker cannot shrink it: stays huge
    assert flags(z, 0) == T.HUGE and mm(z)[7] == 2 and mm(z)[2] == 2 * P
    z.sysfs["idle"] = "all"
    z.sysfs["recompress"] = "type=idle max_pages=1"  # the most recently placed: slot 1
    assert flags(z, 1) == T.HUGE | T.INCOMPRESSIBLE and flags(z, 0) == T.HUGE | T.IDLE
    z.sysfs["recompress"] = "type=huge"
    if accepted:
        assert (prio(z, 0), size(z, 0), flags(z, 0)) == (1, new, 1 << T.ZRAM_COMP_PRIORITY_BIT1)
        assert mm(z)[1] == P + new and mm(z)[7:] == (1, 2)
        # 3625-3632 bytes: still one object per page; smaller: a 3632-byte class zspage
        assert mm(z)[2] == (2 * P if in_huge_class else P + 8 * P)
    else:
        assert (prio(z, 0), size(z, 0), flags(z, 0)) == (0, P, T.HUGE | T.INCOMPRESSIBLE)
        assert mm(z)[1] == 2 * P and mm(z)[7:] == (2, 2)
    assert get(z, 0) == pp_page(P, m1=new, seed=5)
    consistent(z)


def test_recompress_real_codecs(tmp_path):
    from pyzram.workload.pages import synthetic_mix

    z = Zram()
    z.sysfs["backing_dev"] = backing_file(tmp_path)
    z.sysfs["recomp_algorithm"] = "algo=zstd"
    z.sysfs["recomp_algorithm"] = "algo=deflate priority=2"
    z.sysfs["disksize"] = str(256 * P)
    pages = synthetic_mix(200, 3)
    z.pwrite(pages.tobytes(), 0)
    before = [(size(z, i), flags(z, i)) for i in range(200)]
    z.sysfs["idle"] = "all"
    z.sysfs["recompress"] = "type=idle"
    consistent(z)
    n_prio = [0, 0, 0]
    for i in range(200):
        old_size, old_flags = before[i]
        if old_flags & T.SAME:
            assert flags(z, i) == T.SAME
            continue
        p = prio(z, i)
        n_prio[p] += 1
        if p == 0:  # no codec found a smaller class: the highest was tried
            assert size(z, i) == old_size and flags(z, i) & T.INCOMPRESSIBLE
        else:
            new = len(z.comps[p].backend.compress(pages[i].tobytes()))
            assert size(z, i) == new
            assert kernel_class_index(z, new) < kernel_class_index(z, old_size)
            assert not flags(z, i) & (T.HUGE | T.IDLE | T.INCOMPRESSIBLE)
    assert n_prio[1] > 0
    assert z.pread(200 * P, 0) == pages.tobytes()
    z.sysfs["writeback"] = "incompressible"
    assert (
        atomic64_read(z.stats.bd_count) == n_prio[0]
        and atomic64_read(z.stats.bd_writes) == n_prio[0]
    )
    assert z.pread(200 * P, 0) == pages.tobytes()
    assert atomic64_read(z.stats.bd_reads) == n_prio[0]
    consistent(z)


# -- WB slots through the swap path ------------------------------------------------------------


def test_wb_slots_swap_in_exactly(m, tmp_path):
    from pyzram.mm.folio import PG_uptodate
    from pyzram.mm.swapfile import mkswap, swap_cache_get_folio, swapoff, swapon
    from pyzram.mm.vmscan import AddressSpace, MemCgroup, shrink_inactive_list
    from pyzram.zram.swap import zram_init, zram_swap_ops

    zram_init(m)
    z = Zram()
    z.sysfs["backing_dev"] = backing_file(tmp_path)
    z.sysfs["disksize"] = str(256 * P)
    mkswap(z.disk)
    si = swapon(m, z.disk)
    assert si.ops is zram_swap_ops
    header = mm(z)  # slot 0: the swap header
    assert header[0] == P
    rng = np.random.default_rng(5)
    data = [
        rng.integers(0, 256 if k % 2 else 4, size=P, dtype=np.uint8).tobytes() for k in range(6)
    ]
    proc = AddressSpace(6, MemCgroup(m, 64), lambda vpn: data[vpn])
    for vpn in range(6):
        proc.do_anonymous_page(vpn)
    assert shrink_inactive_list(proc.memcg, 6) == 6  # one reclaim batch
    entries = [proc.pte_to_swp_entry(vpn) for vpn in range(6)]
    slots = [e.offset for e in entries]
    huge = [s for s in slots if flags(z, s) & T.HUGE]
    assert len(huge) == 3  # the random pages
    z.sysfs["writeback"] = "huge"
    assert all(flags(z, s) == T.WB for s in huge)
    z.sysfs["writeback"] = f"page_index={slots[0]}"
    wb = set(huge) | {slots[0]}
    assert z.sysfs["bd_stat"] == bd(4, 0, 4)
    consistent(z)
    proc.madvise_willneed(0, 6)  # one read plug over the six slots
    back = [swap_cache_get_folio(m, e) for e in entries]
    for g, d in zip(back, data, strict=True):
        assert g.test(PG_uptodate) and bytes(g.data) == d
    assert z.sysfs["bd_stat"] == bd(4, 4, 4)
    for s in slots:  # swapped in: accessed (the WB slots stay WB)
        assert flags(z, s) == (T.WB if s in wb else flags(z, s) & T.HUGE)
    proc.zap_pte_range(0, 6)  # the PTEs go: the slots are freed, the blocks released
    assert z.sysfs["bd_stat"] == bd(0, 4, 4) and mm(z)[:3] == header[:3]
    consistent(z)
    swapoff(si)


# -- concurrency: one post-processing at a time ------------------------------------------------


def test_concurrent_post_processing_is_eagain(tmp_path):
    import threading

    z = make_dev(tmp_path, secondaries=1)
    put(z, 0, pp_page(1000, m1=100))
    put(z, 1, pp_page(2000, m1=100))
    inside, release = threading.Event(), threading.Event()

    def hold(name, index):
        if name == "writeback_read_done":
            inside.set()
            assert release.wait(10)

    z.yield_point = hold
    errors = []
    t = threading.Thread(target=lambda: z.sysfs.write("writeback", "page_index=1"))
    t.start()
    try:
        assert inside.wait(10)
        for attr, cmd in [("writeback", "page_index=0"), ("recompress", "type=huge")]:
            try:
                z.sysfs[attr] = cmd
            except OSError as e:
                errors.append(e.errno)
        get(z, 0)  # I/O is not blocked
    finally:
        release.set()
        t.join(10)
    z.yield_point = None
    assert errors == [errno.EAGAIN, errno.EAGAIN]
    assert flags(z, 1) == T.WB and flags(z, 0) == 0
    z.sysfs["recompress"] = "\n"
    assert prio(z, 0) == 1
    consistent(z)


# -- reset -------------------------------------------------------------------------------------


def test_reset_releases_everything(tmp_path):
    z = make_dev(tmp_path, secondaries=2)
    for i in range(6):
        put(z, i, pp_page(1000 + 500 * i, m1=300, seed=i))
    z.sysfs["recompress"] = "max_pages=2"
    z.sysfs["writeback"] = "page_indexes=0-3"
    assert atomic64_read(z.stats.bd_count) == 4
    disk = z.backing_dev.disk
    z.sysfs["writeback_limit"] = "5"
    z.sysfs["reset"] = "1"
    assert z.sysfs["bd_stat"] == bd(0, 0, 0)
    assert z.sysfs["backing_dev"] == "none\n" and z.backing_dev is None
    assert disk.fd == -1  # the backing device was closed
    assert z.sysfs["recomp_algorithm"] == ""
    assert z.sysfs["mm_stat"] == " ".join(f"{0:8d}" for _ in range(9)) + "\n"
    assert z.num_active_comps == 0 and z.comp_algs == ["lzo-rle", None, None, None]
    store_err(z, "writeback", "idle", errno.EINVAL)
    store_err(z, "recompress", "type=idle", errno.EINVAL)
    z.check()
    # usable again, with a new backing device
    z.sysfs["backing_dev"] = backing_file(tmp_path, name="bd2.img")
    z.sysfs["disksize"] = str(8 * P)
    z.pwrite(np.random.default_rng(0).integers(0, 256, P, dtype=np.uint8).tobytes(), 0)
    z.sysfs["writeback"] = "huge"
    assert z.sysfs["bd_stat"] == bd(1, 0, 1)
    store_err(z, "recompress", "type=huge", errno.EINVAL)  # secondaries were forgotten
    consistent(z)
