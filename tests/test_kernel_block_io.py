"""Block I/O on the device node answers as ``/dev/zramN`` opened ``O_DIRECT`` does.

Every case is one ``pwrite(2)`` or ``preadv(2)`` on the host kernel's device and
the same call on pyzram's, in the same state (uninitialised, or initialised and
written by the cases before): offsets and lengths at and around 0, the logical
block, the end of the device and the end of the file offset type, negative
offsets, empty and oversized requests.  Each outcome (the count, or the errno),
the bytes read, and after every case ``mm_stat`` and ``io_stat`` must be equal.
"""

from __future__ import annotations

import errno
import random

import pytest

from pyzram import Zram, ZramConfig
from pyzram.host.kernel_zram import KernelZram, unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

P = 4096
SIZE = 16 * P  # the device: small, so a request can be twice its size
OFFSETS = [0, 1, 511, 512, P - 1, P, 3 * P, SIZE - P - 1, SIZE - P, SIZE - 1, SIZE, SIZE + 1,
           SIZE + P, 2**63 - P, 2**63 - 1, -1, -P]  # fmt: skip
LENGTHS = [0, 1, 511, 512, P - 1, P, P + 1, 2 * P, SIZE, 2 * SIZE]


def _page_data(rng: random.Random, n: int) -> bytes:
    """Compressible text with some same-filled pages (so every write path runs)."""
    out = bytearray()
    while len(out) < n:
        if rng.random() < 0.2:
            out += bytes([rng.randrange(4)]) * P
        else:
            out += (b"block io %d " % rng.randrange(10**6)) * (P // 12 + 1)
    return bytes(out[:n])


def _outcome(call):
    try:
        return ("ok", call())
    except OSError as e:
        return ("error", errno.errorcode.get(e.errno, str(e.errno)))


@pytest.mark.parametrize("init", [False, True], ids=["uninitialised", "initialised"])
def test_every_request_answers_as_the_kernel(init):
    ours = Zram(ZramConfig.from_running_kernel())
    rng = random.Random(7)
    cases = [(op, o, n) for op in ("write", "read") for o in OFFSETS for n in LENGTHS]
    rng.shuffle(cases)
    mismatches = []
    with KernelZram() as k:
        if init:
            k.write_attr("comp_algorithm", "lz4")
            k.write_attr("disksize", str(SIZE))
            ours.sysfs["comp_algorithm"] = "lz4"
            ours.sysfs["disksize"] = str(SIZE)
        for op, offset, length in cases:
            if op == "write":
                data = _page_data(rng, length)
                got_k = _outcome(lambda: k.pwrite_once(data, offset))  # noqa: B023
                got_o = _outcome(lambda: ours.pwrite(data, offset))  # noqa: B023
            else:
                got_k = _outcome(lambda: k.pread_once(length, offset))  # noqa: B023
                got_o = _outcome(lambda: ours.pread(length, offset))  # noqa: B023
            if got_k != got_o:
                mismatches.append((op, offset, length, got_k[:2], got_o[:2]))
            for name in ("mm_stat", "io_stat"):
                if ours.sysfs[name] != k.read_attr(name):
                    mismatches.append((op, offset, length, name))
        if init:
            assert ours.pread(SIZE, 0) == k.pread_once(SIZE, 0)
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ: {mismatches[:8]}"


@pytest.mark.parametrize("init", [False, True], ids=["uninitialised", "initialised"])
@pytest.mark.parametrize("length", [4095, 4096, 4097, 5000])
def test_a_sysfs_write_takes_one_page_as_the_kernel(init, length):
    """kernfs takes at most a page per write(2) of a sysfs file: the store runs on
    the first 4096 bytes (``disksize`` of 4096 ones: ENOMEM uninitialised, EBUSY
    initialised)."""
    ours = Zram(ZramConfig.from_running_kernel())
    with KernelZram() as k:
        if init:
            k.write_attr("disksize", "1M")
            ours.sysfs["disksize"] = "1M"
        value = "1" * length
        got_k = _outcome(lambda: k.write_attr("disksize", value))
        got_o = _outcome(lambda: ours.sysfs.write("disksize", value))
        assert got_o[0] == got_k[0] and (got_o[0] == "ok" or got_o == got_k)
        assert ours.sysfs["disksize"] == k.read_attr("disksize")
