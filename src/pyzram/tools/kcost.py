"""What the kernel would spend on a run's swapping: its predicted CPU cost.

pyzram's own wall time says how fast Python simulated the run, not what the
kernel would have paid.  The prediction counts the kernel's work instead:

* every page that reached zram on swap-out was compressed once (zram's
  same-filled pages are detected, not compressed: they cost nothing here);
* every page read back from zram was decompressed once (same-filled and
  huge pages, which zram stores raw, are filled or copied, not decompressed);
* every page a post-processing step recompressed was decompressed with the
  primary algorithm and compressed again with the secondary one;
* every major fault pays the kernel's fault path around the read
  (``do_swap_page``: swap cache lookup, folio allocation and memcg charge,
  PTE install), :data:`FAULT_US` each.

The per-page times are those of the codec zram uses (``Zcomp``: pyzram's
kernel-identical C codecs for lzo-rle, lzo, lz4 and lz4hc, the libraries
for zstd and deflate), timed on this CPU on a sample of the very pages the
run wrote and read (a seeded reservoir of :data:`SAMPLE` pages each, taken
at the device's ``submit_write`` / ``submit_read``), best of three.  What
is not counted: reclaim's LRU scan, rmap walk and TLB flushes, the swap
slot allocation and the swap core's own bookkeeping; ``pyzram bench run``
shows the prediction beside the host kernel's measured system time.

The samplers are fed at the device's submits by :class:`TimedOps`, the
ops ``pyzram run`` puts around the area's own, which also time each batch
for the run's batch figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pyzram.mm.folio import PAGE_SIZE
from pyzram.mm.swap_ops import SwapOps

#: Pages kept per direction for timing the codec.
SAMPLE = 512
#: Keeps of the sampler's schedule drawn at a time.
SCHEDULE = 1024
#: The kernel's major-fault path beyond the decompression, µs per fault (do_swap_page,
#: swap cache, folio allocation and memcg charge, PTE install; a 6.18 kernel on the
#: 2-vCPU EPYC of docs/perf.md).
FAULT_US = 1.0
#: Timing repeats (best of).
REPEAT = 3
#: The clock of :class:`TimedOps`.
_perf_counter = time.perf_counter
#: The sampler's constants as it reads them (compiled: C integers, ``kcost.pxd``).
_SAMPLE = SAMPLE
_SCHEDULE = SCHEDULE


class PageSampler:
    """A seeded reservoir of the pages passing one direction of the device, and their
    count: every page seen has the same chance to be kept.

    Li's "Algorithm L": after the first :data:`SAMPLE` pages, the next page kept
    is a random number of pages further on, and it replaces a uniformly drawn
    one of those kept.  Which pages are kept and where they go depends on the
    random numbers alone, not on the pages, so the sampler draws that schedule
    ahead, :data:`SCHEDULE` keeps at a time with numpy (the page counts at
    which pages are kept, and the entries they replace): a page passing by
    costs a comparison with the next count.

    A kept page is kept by name, not copied: the name of what page ``j`` of a
    passing folio holds is ``names[vpn_of_slot[folio.swap.offset + j]]`` (in
    ``pyzram run``: the swap area's reverse map gives the page whose PTE holds
    the slot, and ``names`` the page of the workload's source whose bytes that
    page holds), and ``page_of(name)`` gives those bytes back when the sample
    is read (:attr:`pages`), after the run.  So keeping a page costs the
    measured run two array reads, not a 4 KiB copy.  Compiled (``kcost.pxd``),
    an extension type: its counts are C integers, its arrays typed views."""

    def __init__(
        self, names: Any, vpn_of_slot: Any, page_of: Callable[[int], Any], seed: int = 0
    ) -> None:
        self.names = names
        self.vpn_of_slot = vpn_of_slot
        self.page_of = page_of
        self._keys = np.zeros(SAMPLE, dtype=np.int64)  # the kept pages' names, in order
        self.kept = 0  # pages in the reservoir
        self.seen = 0
        self.active = True  # (cleared when the workload ends: its final check is not counted)
        self._rng = np.random.default_rng(seed)
        self._log_w = math.log(1.0 - self._rng.random()) / SAMPLE  # log W, the draws' state
        self._at: list[int] = []  # the counts at which the next pages are kept ...
        self._slot: list[int] = []  # ... and the reservoir entries they replace
        self._i = 0
        self._schedule(SAMPLE)

    def _schedule(self, last: int) -> None:
        """The next :data:`SCHEDULE` keeps after the one at count ``last``: each skips
        ``floor(log(u) / log(1 - W))`` pages, then ``W *= u' ** (1 / SAMPLE)``."""
        r = self._rng.random((3, SCHEDULE))
        u = 1.0 - r[:2]  # uniform on (0, 1]: each has a logarithm
        steps = np.log(u[1]) / SAMPLE
        log_w = self._log_w + np.concatenate(([0.0], np.cumsum(steps[:-1])))
        skip = np.floor(np.log(u[0]) / np.log1p(-np.exp(log_w)))
        self._at = (last + np.cumsum(skip + 1)).astype(np.int64).tolist()
        self._slot = (r[2] * SAMPLE).astype(np.int64).tolist()
        self._log_w = float(log_w[-1] + steps[-1])
        self._i = 0
        self._next = self._at[0]

    @property
    def pages(self) -> list[bytes]:
        """The kept pages' bytes (``page_of`` of each name), in reservoir order."""
        return [bytes(self.page_of(int(key))) for key in self._keys[: self.kept]]

    def name(self, folio, j: int) -> int:
        """The name of what page ``j`` of ``folio`` (under swap I/O) holds."""
        return self.names[self.vpn_of_slot[folio.swap.offset + j]]

    def add(self, folio) -> None:
        """Count the pages of one folio and keep some of them: the first ``SAMPLE``
        pages seen, then each page whose count the schedule names (a large
        folio's pages in between are counted, not visited)."""
        n = folio.nr_pages
        first = self.seen  # the pages counted before this folio's
        self.seen = first + n
        if self.kept < _SAMPLE:
            k = self.kept
            m = min(n, _SAMPLE - k)
            for j in range(m):
                self._keys[k + j] = self.name(folio, j)
            self.kept = k + m
        while self._next <= self.seen:
            self._replace(folio, self._next - first - 1)  # the folio's page with that count

    def _replace(self, folio, j: int) -> None:
        """Page ``j`` of ``folio`` replaces the entry the schedule draws; on to the next."""
        self._keys[self._slot[self._i]] = self.name(folio, j)
        self._i += 1
        if self._i == _SCHEDULE:
            self._schedule(self._next)
        else:
            self._next = self._at[self._i]

    def add_batch(self, sio) -> None:
        """Every folio of a swap_iocb (a write's before its submit, a read's after)."""
        if not self.active or sio is None:
            return
        for folio in sio.bvecs:
            self.add(folio)


class TimedOps(SwapOps):
    """An area's ``swap_ops`` with its submits timed: each batch's seconds in
    ``submit_write`` / ``submit_read`` go into ``wlat`` / ``rlat`` and its
    pages into ``wpages`` / ``rpages``; a written batch's folios go to the
    sampler ``write_sampler`` before its submit (what is written), a read
    one's to ``read_sampler`` once read.  The other hooks, the name and the
    flags are those of ``inner``.  ``pyzram run`` swaps an area's ops for one
    of these for its batch figures (the fastest-slowest latencies, the device
    path's pages a second).

    Compiled (``kcost.pxd``), an extension type: it runs at every batch
    inside the measured window, a C call and two clock reads around the
    device's work, and its other hooks are C calls to ``inner``'s."""

    def __init__(
        self,
        inner: SwapOps,
        wlat: list[float],
        wpages: list[int],
        rlat: list[float],
        rpages: list[int],
        write_sampler: PageSampler | None = None,
        read_sampler: PageSampler | None = None,
    ) -> None:
        SwapOps.__init__(self, inner.name, inner.flags)
        self.inner = inner
        self.wlat = wlat
        self.wpages = wpages
        self.rlat = rlat
        self.rpages = rpages
        self.write_sampler = write_sampler
        self.read_sampler = read_sampler

    def submit_write(self, ctx) -> None:
        sio = ctx.sio
        n = sio.len // PAGE_SIZE
        if self.write_sampler is not None:
            self.write_sampler.add_batch(sio)
        t = _perf_counter()
        self.inner.submit_write(ctx)
        self.wlat.append(_perf_counter() - t)
        self.wpages.append(n)

    def submit_read(self, ctx) -> None:
        sio = ctx.sio
        n = sio.len // PAGE_SIZE
        t = _perf_counter()
        self.inner.submit_read(ctx)
        self.rlat.append(_perf_counter() - t)
        self.rpages.append(n)
        if self.read_sampler is not None:
            self.read_sampler.add_batch(sio)

    def can_merge(self, si, folio, prev, prev_size: int, rw: int) -> bool:
        return self.inner.can_merge(si, folio, prev, prev_size, rw)

    def slot_free_notify(self, si, offset: int) -> None:
        self.inner.slot_free_notify(si, offset)


def _same_filled(page: bytes) -> bool:
    words = np.frombuffer(page, dtype=np.uint64)
    return bool((words == words[0]).all())


def _backend(algorithm: str):
    from pyzram.zram.zcomp import Zcomp, ZcompParams

    return Zcomp(algorithm, ZcompParams()).backend


def _best(fn, items) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        t = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, time.perf_counter() - t)
    return best if items else 0.0


def codec_us_per_page(
    sample: list[bytes], algorithm: str, huge_class_size: int
) -> tuple[float, float]:
    """(compress, decompress) µs per page of ``sample``, as zram pays them: a
    same-filled page costs neither, a page that compresses to ``huge_class_size``
    or more is compressed but read back with a copy (no decompression)."""
    if not sample:
        return 0.0, 0.0
    be = _backend(algorithm)
    todo = [p for p in sample if not _same_filled(p)]
    comp = [be.compress(p) for p in todo]
    stored = [c for c in comp if len(c) < huge_class_size]
    c_s = _best(be.compress, todo)
    d_s = _best(be.decompress, stored)
    return c_s / len(sample) * 1e6, d_s / len(sample) * 1e6


def predict(
    *,
    writes: PageSampler,
    reads: PageSampler,
    algorithm: str,
    huge_class_size: int,
    major_faults: int,
    recompressed_pages: int = 0,
    recompress_algo: str | None = None,
) -> dict:
    """The prediction as the report's ``kernel_cpu`` dict (see the module docstring);
    ``seconds`` is the total."""
    c_us, _ = codec_us_per_page(writes.pages, algorithm, huge_class_size)
    _, d_us = codec_us_per_page(reads.pages, algorithm, huge_class_size)
    r_us = 0.0
    if recompressed_pages and recompress_algo:
        # Recompression decompresses (primary) and compresses (secondary) the pages it
        # moves; timed on the written sample's pages.
        _, dw_us = codec_us_per_page(writes.pages, algorithm, huge_class_size)
        rc_us, _ = codec_us_per_page(writes.pages, recompress_algo, huge_class_size)
        r_us = dw_us + rc_us
    compress_s = writes.seen * c_us * 1e-6
    decompress_s = reads.seen * d_us * 1e-6
    recompress_s = recompressed_pages * r_us * 1e-6
    fault_s = major_faults * FAULT_US * 1e-6
    return {
        "compressed_pages": writes.seen,
        "decompressed_pages": reads.seen,
        "recompressed_pages": recompressed_pages,
        "major_faults": major_faults,
        "compress_us_per_page": c_us,
        "decompress_us_per_page": d_us,
        "recompress_us_per_page": r_us,
        "fault_us": FAULT_US,
        "compress_s": compress_s,
        "decompress_s": decompress_s,
        "recompress_s": recompress_s,
        "fault_s": fault_s,
        "seconds": compress_s + decompress_s + recompress_s + fault_s,
    }
