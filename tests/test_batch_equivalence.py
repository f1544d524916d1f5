"""A multi-page bio is its pages one by one: a ``pwrite`` of N pages (one bio, through
``zram_bio_write``) leaves the pool exactly as N one-page writes in the same order.

These differential tests drive two devices with the same seeded operations, one in
multi-page writes and one page by page, and compare everything placement decides:
each class's fullness lists (order, in-use counts, free-object stacks), which zspage
and object every slot's data sits in, and mm_stat, including mem_used_max and the
mem_limit refusals (the bio stops at its first failing page, as the kernel's loop).
"""

from __future__ import annotations

import random

import pytest

from conftest import make_sized_zram, sized_page
from pyzram.zram import table as T

P = 4096
NPAGES = 96


def page_of(rng: random.Random) -> bytes:
    """Mostly pages of a few neighbouring classes (so runs collide), some same-filled,
    some huge."""
    r = rng.random()
    if r < 0.15:
        return rng.randrange(256).to_bytes(1, "little") * P
    if r < 0.25:
        return sized_page(rng.randrange(3700, 4096), rng.randrange(1 << 20))
    return sized_page(rng.choice((200, 210, 300, 500, 1000, 1500, 2100)), rng.randrange(1 << 20))


def layout(z) -> tuple:
    """Everything placement decides, with zspages named by where they sit."""
    pool = z.mem_pool
    where = {}
    lists = []
    for cls in pool.classes:
        for fg in range(len(cls.fullness_list)):
            for pos, zspage in enumerate(cls.zspages(fg)):
                where[zspage] = (cls.index, fg, pos)
                lists.append((cls.index, fg, pos, zspage.inuse, tuple(pool.free_objects(zspage))))
    slots = []
    for idx in range(z.table.nr_pages):
        flags, handle = z.table.flags[idx], z.table.handle[idx]
        if flags & (T.SAME | T.WB) or not handle:
            slots.append((idx, flags, handle if flags & T.SAME else 0))
            continue
        zspage, obj = pool._obj_to_location(pool._handle_to_obj(handle))
        slots.append((idx, flags, where[zspage], obj))
    return tuple(lists), tuple(slots), tuple(z.mm_stat()), pool.pages_allocated


@pytest.mark.parametrize("seed", range(12))
def test_batches_place_like_single_pages(seed):
    rng = random.Random(seed)
    batch, single = make_sized_zram(NPAGES), make_sized_zram(NPAGES)
    for step in range(40):
        op = rng.random()
        if op < 0.7:  # a write of n pages, overwrites included
            n = rng.randrange(2, 33)
            first = rng.randrange(NPAGES - n + 1)
            pages = [page_of(rng) for _ in range(n)]
            err_b = err_s = None
            try:
                batch.pwrite(b"".join(pages), first * P)
            except OSError as e:
                err_b = e
            for k, page in enumerate(pages):
                try:
                    single.pwrite(page, (first + k) * P)
                except OSError as e:
                    err_s = e
                    break
            assert (err_b is None) == (err_s is None), (step, err_b, err_s)
        elif op < 0.85:  # discard a range
            a = rng.randrange(NPAGES)
            b = min(NPAGES, a + rng.randrange(1, 9))
            for z in (batch, single):
                z.discard(a * P, (b - a) * P)
        elif op < 0.95:  # a mem_limit just above what is used (or off)
            limit = 0
            if rng.random() < 0.7:
                limit = batch.mem_pool.pages_allocated + rng.randrange(0, 6)
            for z in (batch, single):
                z.sysfs["mem_limit"] = str(limit * P)
        else:
            for z in (batch, single):
                z.sysfs["compact"] = "1"
        assert layout(batch) == layout(single), f"seed {seed}, step {step}"
    batch.check()
    single.check()


def test_a_long_write_compresses_each_page_once_ahead():
    """A bio of more pages than one codec batch (``ZCOMP_BATCH``) hands each
    batch's pages to the codec in one call just before writing them, and no
    page is compressed twice or on its own (a same-filled page goes to the
    codec with its batch; zram stores its fill word and leaves that output)."""
    from conftest import SizedBackend
    from pyzram.zram.zcomp import ZCOMP_BATCH

    calls = {"batch": [], "one": 0}

    class Counting(SizedBackend):
        def compress_batch(self, pages, dst, sizes):
            calls["batch"].append(len(pages))
            super().compress_batch(pages, dst, sizes)

        def compress_into(self, page, dst):
            calls["one"] += 1
            return super().compress_into(page, dst)

    n = 2 * ZCOMP_BATCH + 6
    z = make_sized_zram(n)
    z.comps[0].backend = Counting(z.params[0])
    pages = [sized_page(300 + i, i) for i in range(n)]
    pages[5] = bytes(P)  # same-filled
    z.pwrite(b"".join(pages), 0)
    # the base class's compress_batch calls compress_into once per page it is given
    assert calls["batch"] == [ZCOMP_BATCH, ZCOMP_BATCH, 6] and calls["one"] == n
    assert z.pread(n * P, 0) == b"".join(pages)
