"""A hypothesis state machine: random write/overwrite/read/discard/notify/reset/compact
sequences against a plain dict model.  No data may be lost, and every counter
must agree with the slot table and the pool after every step (``Zram.check``).
"""

from __future__ import annotations

import errno

import hypothesis.strategies as st
import numpy as np
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pyzram import Zram

P = 4096
NPAGES = 48

KINDS = ["zero", "same", "text", "random", "short"]


def make_page(kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    if kind == "zero":
        return bytes(P)
    if kind == "same":
        return int(rng.integers(1, 2**63)).to_bytes(8, "little") * (P // 8)
    if kind == "random":
        return rng.integers(0, 256, P, dtype=np.uint8).tobytes()
    if kind == "short":  # compresses to a few dozen bytes
        return bytes([seed % 251 + 1]) * 100 + bytes(P - 100)
    words = [b"zram ", b"swap ", b"page ", b"folio ", b"slot "]
    text = b"".join(words[i] for i in rng.integers(0, len(words), 1200))
    return (text * 2)[:P]


class ZramMachine(RuleBasedStateMachine):
    @initialize(algo=st.sampled_from(["lzo-rle", "lzo", "lz4", "zstd"]))
    def init(self, algo):
        self.algo = algo
        self.dev = Zram()
        self.dev.sysfs["comp_algorithm"] = algo
        self.dev.sysfs["disksize"] = str(NPAGES * P)
        self.model: dict[int, bytes] = {}
        self.notify = 0

    @rule(
        slot=st.integers(0, NPAGES - 1),
        kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
        seed=st.integers(0, 10**6),
    )
    def write(self, slot, kinds, seed):
        n = min(len(kinds), NPAGES - slot)
        pages = [make_page(k, seed + i) for i, k in enumerate(kinds[:n])]
        assert self.dev.pwrite(b"".join(pages), slot * P) == n * P
        for i, p in enumerate(pages):
            self.model[slot + i] = p

    @rule(slot=st.integers(0, NPAGES - 1), n=st.integers(1, 8))
    def read(self, slot, n):
        n = min(n, NPAGES - slot)
        got = self.dev.pread(n * P, slot * P)
        want = b"".join(self.model.get(slot + i, bytes(P)) for i in range(n))
        assert got == want

    @rule(slot=st.integers(0, NPAGES - 1), n=st.integers(1, 6))
    def discard(self, slot, n):
        n = min(n, NPAGES - slot)
        self.dev.discard(slot * P, n * P)
        self.notify += n
        for i in range(n):
            self.model.pop(slot + i, None)

    @rule(slot=st.integers(0, NPAGES - 1))
    def slot_free_notify(self, slot):
        self.dev.zram_slot_free_notify(slot)
        self.notify += 1
        self.model.pop(slot, None)

    @rule()
    def compact(self):
        before = self.dev.mm_stat()
        self.dev.sysfs["compact"] = "1"
        after = self.dev.mm_stat()
        freed = after.pages_compacted - before.pages_compacted
        assert before.mem_used_total - after.mem_used_total == freed * P

    @rule(extra=st.integers(0, 3))
    def mem_limit_write(self, extra):
        """A limit just above current usage: a write may be refused, never half-done."""
        used = self.dev.mm_stat().mem_used_total
        self.dev.sysfs["mem_limit"] = str(used + extra * P)
        slot = len(self.model) % NPAGES
        page = make_page("random", slot)
        try:
            self.dev.pwrite(page, slot * P)
            self.model[slot] = page
        except OSError as e:
            assert e.errno == errno.EIO
        self.dev.sysfs["mem_limit"] = "0"

    @rule()
    def reset(self):
        self.dev.sysfs["reset"] = "1"
        assert self.dev.sysfs["mm_stat"].split() == ["0"] * 9
        self.dev.sysfs["comp_algorithm"] = self.algo
        self.dev.sysfs["disksize"] = str(NPAGES * P)
        self.model.clear()
        self.notify = 0

    @invariant()
    def consistent(self):
        self.dev.check()
        st_ = self.dev.mm_stat()
        assert st_.orig_data_size == len(self.model) * P
        same = sum(1 for p in self.model.values() if p == p[:8] * (P // 8))
        assert st_.same_pages == same
        assert st_.mem_used_max >= st_.mem_used_total
        assert self.dev.io_stat().notify_free == self.notify


TestZramMachine = ZramMachine.TestCase
TestZramMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
