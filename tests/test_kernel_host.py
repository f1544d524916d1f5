"""Tests for pyzram.host.kernel_zram against the host kernel's real zram (root only)."""

from __future__ import annotations

import errno
import gc

import numpy as np
import pytest

from pyzram.host.kernel_zram import KernelZram, unavailable_reason
from pyzram.workload.pages import PAGE_SIZE, synthetic_mix_with_kinds
from pyzram.zram.stat import parse_io_stat, parse_mm_stat

_REASON = unavailable_reason()

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]


def _gone(sysfs_dir, diskseq: str) -> bool:
    """True when our device is gone (the id may already be reused by someone else)."""
    try:
        return (sysfs_dir / "diskseq").read_text() != diskseq
    except FileNotFoundError:
        return True


def test_create_and_remove():
    with KernelZram() as z:
        assert z.sysfs_dir == z.sysfs_dir.parent / f"zram{z.id}"
        assert z.sysfs_dir.is_dir()
        assert z.dev_path.exists()
        assert z.read_attr("initstate") == "0\n"
        diskseq = z.read_attr("diskseq")
    assert z.closed
    assert _gone(z.sysfs_dir, diskseq)
    z.close()  # idempotent


def test_removed_when_body_raises():
    with pytest.raises(RuntimeError, match="boom"), KernelZram() as z:
        z.setup("lz4", "1M")
        z.pwrite(b"\1" * PAGE_SIZE, 0)  # the O_DIRECT fd is open: close must close it
        diskseq = z.read_attr("diskseq")
        raise RuntimeError("boom")
    assert _gone(z.sysfs_dir, diskseq)


def test_removed_when_garbage_collected():
    z = KernelZram().create()
    sysfs_dir, diskseq = z.sysfs_dir, z.read_attr("diskseq")
    del z
    gc.collect()
    assert _gone(sysfs_dir, diskseq)


def test_write_read_back():
    pages, _ = synthetic_mix_with_kinds(64, seed=11)
    with KernelZram() as z:
        z.setup("lz4", "1M")
        assert z.pwrite(pages, 0) == pages.nbytes
        assert z.pread(pages.nbytes, 0) == pages.tobytes()
        assert z.pread(2 * PAGE_SIZE, 100 * PAGE_SIZE) == bytes(2 * PAGE_SIZE)  # never written
        # Past the end of the device: a short (empty) read.
        assert z.pread(PAGE_SIZE, 256 * PAGE_SIZE) == b""
        with pytest.raises(OSError) as ei:
            z.pwrite(b"x" * 100, 0)  # not a whole logical block
        assert ei.value.errno == errno.EINVAL


def test_mm_stat_zero_pages():
    with KernelZram() as z:
        z.setup("lz4", "1M")
        assert z.mm_stat().orig_data_size == 0
        z.pwrite(bytes(10 * PAGE_SIZE), 0)
        st = z.mm_stat()
        assert st.same_pages == 10
        assert st.orig_data_size == 40960
        assert st.compr_data_size == 0
        assert st.huge_pages == 0
        text = z.read_attr("mm_stat")
        assert text == parse_mm_stat(text).format()  # stat.py formats like the kernel
        io = z.read_attr("io_stat")
        assert io == parse_io_stat(io).format()


def test_discard_counts_notify_free():
    with KernelZram() as z:
        z.setup("lz4", "1M")
        z.pwrite(np.full(8 * PAGE_SIZE, 0x41, np.uint8), 0)
        before = z.io_stat().notify_free
        z.discard(2 * PAGE_SIZE, 4 * PAGE_SIZE)
        assert z.io_stat().notify_free == before + 4
        st = z.mm_stat()
        assert st.orig_data_size == 4 * PAGE_SIZE and st.same_pages == 4


def test_write_attr_errnos():
    with KernelZram() as z:
        with pytest.raises(OSError) as ei:
            z.write_attr("comp_algorithm", "nope")
        assert ei.value.errno == errno.EINVAL
        z.write_attr("comp_algorithm", b"lz4")  # no newline added, none needed
        assert "[lz4]" in z.read_attr("comp_algorithm")
        z.write_attr("disksize", "1M")
        assert z.disksize() == 1 << 20
        with pytest.raises(OSError) as ei:
            z.write_attr("disksize", "2M")
        assert ei.value.errno == errno.EBUSY
        with pytest.raises(OSError) as ei:
            z.write_attr("comp_algorithm", "lz4")
        assert ei.value.errno == errno.EBUSY
        with pytest.raises(OSError) as ei:
            z.write_attr("reset", "0")
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(PermissionError):
            z.read_attr("reset")  # mode 0200: kernfs refuses even root
        # An open fd makes reset EBUSY until close_dev().
        z.pwrite(bytes(PAGE_SIZE), 0)
        with pytest.raises(OSError) as ei:
            z.write_attr("reset", "1")
        assert ei.value.errno == errno.EBUSY
        z.close_dev()
        z.write_attr("reset", "1")
        assert z.read_attr("initstate") == "0\n"
        with pytest.raises(ValueError):
            z.read_attr("../zram0/mm_stat")


def test_page_sizes():
    pages, kinds = synthetic_mix_with_kinds(120, seed=5)
    w = pages.view("<u8")
    same = (w == w[:, :1]).all(axis=1)
    with KernelZram() as z:
        z.setup("lz4", f"{len(pages) * PAGE_SIZE}")
        sizes = z.page_sizes(pages)
        st = z.mm_stat()
        assert sizes.dtype == np.int16 and sizes.shape == (len(pages),)
        assert np.array_equal(sizes == -1, same)
        stored = sizes[~same]
        assert (((stored >= 1) & (stored <= 3624)) | (stored == PAGE_SIZE)).all()
        assert (sizes[kinds == "random"] == PAGE_SIZE).all()
        assert st.compr_data_size == int(stored.astype(np.int64).sum())
        assert st.huge_pages == int((sizes == PAGE_SIZE).sum())
        assert st.same_pages == int(same.sum())
        with pytest.raises(ValueError):
            z.page_sizes(pages[:2], start=len(pages) - 1)  # past disksize
        with pytest.raises(RuntimeError):
            z.page_sizes(pages[:1])  # slot 0 is not empty any more
