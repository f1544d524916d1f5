"""Shared test helpers.

``sized_page(n)`` makes a page that the ``SizedBackend`` "compresses" to
exactly ``n`` bytes, so the worked examples of zram-spec.md section 9 can be
replayed with the comp_len they assume, and still read back exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyzram import Zram, ZramConfig
from pyzram.zram import table as T
from pyzram.zram.zcomp import PAGE_SIZE, ZcompBackend


class SizedBackend(ZcompBackend):
    """Test codec: the first two bytes of a page give its compressed length.

    Output is the page's first ``n`` bytes; decompression pads with zeros,
    so a page whose bytes past ``n`` are zero round-trips exactly.
    """

    name = "sized"

    def compress(self, page):
        page = bytes(page)
        n = int.from_bytes(page[:2], "little")
        return page[:n]

    def decompress(self, data):
        data = bytes(data)
        if len(data) < 2 or int.from_bytes(data[:2], "little") != len(data):
            raise OSError(22, "sized: corrupt")
        return data + bytes(PAGE_SIZE - len(data))


def sized_page(n: int, seed: int = 0) -> bytes:
    """A non-same-filled page that SizedBackend compresses to ``n`` bytes."""
    assert 2 <= n <= PAGE_SIZE
    rng = np.random.default_rng(seed + n)
    body = rng.integers(1, 256, size=n, dtype=np.uint8).tobytes()
    page = n.to_bytes(2, "little") + body[2:n] + bytes(PAGE_SIZE - n)
    return page


def corrupt(z: Zram, slot: int) -> None:
    """Overwrite the compressed object of ``slot`` so that it no longer decompresses
    (cf. test_zram::test_corrupt_object_fails_read)."""
    size = z.table.get_obj_size(slot)
    assert size and not z.table.flags[slot] & (T.HUGE | T.SAME)
    z.mem_pool.zs_obj_write(z.table.handle[slot], b"\xff" * size, size)


def make_sized_zram(pages: int = 64, config: ZramConfig | None = None, **kw) -> Zram:
    """An initialised Zram whose primary compressor is SizedBackend."""
    dev = Zram(config, **kw)
    dev.sysfs["disksize"] = str(pages * PAGE_SIZE)
    dev.comps[0].backend = SizedBackend(dev.params[0])
    return dev


@pytest.fixture
def sized_zram():
    return make_sized_zram()


@pytest.fixture
def m():
    """A fresh machine (the kernel's global state: swap areas, registry, vm events),
    powered off after the test."""
    from pyzram.mm.machine import Machine

    with Machine() as machine:
        yield machine


#: The model TLB sizes (``tlb_entries``) that predict the host kernels these tests
#: have run on: 2,048 on the host build 6.18.44-fc-v1272, 128 on 6.18.44-fc-v1300
#: (a PVM guest, ``kvm-pvm`` in its boot log, whose accessed bits are set again on
#: far more accesses: its runs activate about 200 pages of the 2,048-page test
#: workload, the model 23 with 2,048 entries and 218 with 128).
HOST_TLB_CANDIDATES = (2048, 128)


def host_tlb_entries(kernel_pgactivate: list[int], pyzram_pgactivate) -> int:
    """The candidate TLB size whose run activates as many pages as the host kernel's
    median: the one host property fitted; every other counter is then held to the
    kernel's.  ``pyzram_pgactivate(tlb_entries)`` runs the model with that size."""
    import statistics

    k = statistics.median(kernel_pgactivate)
    return min(HOST_TLB_CANDIDATES, key=lambda t: abs(pyzram_pgactivate(t) - k))
