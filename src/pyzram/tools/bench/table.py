"""``pyzram bench`` with no subcommand: every speed and memory figure in one run, one table.

Why one harness: the VM these figures come from is shared and noisy, so a
ratio is only meaningful when both of its numbers come from the same run on
the same pages.  Every row here therefore carries our figure, the reference
figure measured a moment before or after it (the host kernel's zram, our own
bio path, a python-lz4 loop ...), and the ratio between them.

The page corpus is built once at start: the resident anonymous memory of a
live Python process that pyzram spawns and snapshots
(:func:`pyzram.workload.pages.capture`), plus the seeded synthetic mix
(:func:`pyzram.workload.pages.synthetic_mix`), shuffled together with a
fixed seed so that any contiguous half of it has the same mix.

Ratio convention: ``ratio >= goal`` always means the goal is met.  For rates
(pages/s) the ratio is ours / reference; for costs (seconds, bytes,
microseconds) it is reference / ours, and an absolute goal ("< 1 µs",
"<= 24 B/slot", "<= 1.1x") becomes ``goal = reference / limit``, so the row
still reads "bigger is better".  ``goal_text`` gives the goal in its own
terms.

Rows are documented in ``docs/perf.md`` ("Benchmark harness").
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyzram.config import ZramConfig
from pyzram.mm.machine import Machine
from pyzram.tools.common import frozen_heap
from pyzram.zram.zram_drv import PAGE_SIZE, Zram

Progress = Callable[[str], None]

#: Pages per swap_iocb batch (SWAP_CLUSTER_MAX).
BATCH = 32
#: Disksize of the memory rows: 16 GiB, i.e. 4 Mi slots.
MEM_DISKSIZE = 16 << 30
#: The algorithms with kernel-exact C codecs (``_kcodec``), which the codec floor needs.
KCODEC_ALGOS = ("lz4", "lzo", "lzo-rle")


# ----------------------------------------------------------------------------------------
# rows


@dataclass
class Row:
    """One line of the table; ``as_dict`` is one element of ``--json``'s ``rows``."""

    key: str
    name: str
    ours: float | None
    ours_unit: str
    reference: float | None
    reference_what: str
    ratio: float | None
    goal: float | None
    met: bool | None
    goal_text: str = ""
    note: str = ""
    skipped: str | None = None
    #: "higher" (rates: ratio = ours / reference) or "lower" (costs: reference / ours).
    better: str = "higher"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_RATIO_CAP = 1e6


def _met(ratio: float | None, goal: float | None) -> bool | None:
    if ratio is None or goal is None:
        return None
    return ratio >= goal


def rate_row(
    key: str,
    name: str,
    ours: float,
    unit: str,
    reference: float,
    reference_what: str,
    goal: float | None = None,
    note: str = "",
) -> Row:
    """A "higher is better" row (pages/s): ratio = ours / reference."""
    ratio = ours / reference if reference > 0 else None
    goal_text = f"ratio ≥ {goal:g}" if goal is not None else ""
    return Row(
        key, name, ours, unit, reference, reference_what, ratio, goal, _met(ratio, goal),
        goal_text, note,
    )  # fmt: skip


def cost_row(
    key: str,
    name: str,
    ours: float,
    unit: str,
    reference: float,
    reference_what: str,
    limit: float | None = None,
    limit_text: str | None = None,
    note: str = "",
) -> Row:
    """A "lower is better" row (seconds, bytes, µs): ratio = reference / ours.

    ``limit`` is an absolute goal on ``ours`` ("ours <= limit"); it becomes
    the ratio goal ``reference / limit``, so that ``ratio >= goal`` exactly
    when ``ours <= limit``.  ``ours <= 0`` (a cost lost in the noise) gives
    the capped ratio 1e6.
    """
    ratio = reference / ours if ours > 0 else _RATIO_CAP
    ratio = min(ratio, _RATIO_CAP)
    goal = reference / limit if limit is not None else None
    text = limit_text or (f"≤ {limit:g} {unit}" if limit is not None else "")
    return Row(
        key, name, ours, unit, reference, reference_what, ratio, goal, _met(ratio, goal),
        text, note, better="lower",
    )  # fmt: skip


def skipped_row(
    key: str, name: str, unit: str, reference_what: str, reason: str, better: str = "higher"
) -> Row:
    """A row that could not be measured in this run, with the reason."""
    return Row(
        key, name, None, unit, None, reference_what, None, None, None, "", "", reason, better
    )


# ----------------------------------------------------------------------------------------
# plans


@dataclass(frozen=True)
class Plan:
    """How much work each part does: ``full``, ``quick`` (< 90 s) or ``tiny`` (tests)."""

    name: str
    real_kinds: tuple[str, ...]  # live processes to snapshot ("python", "sqlite")
    real_scale: float
    synthetic: int  # synthetic-mix pages
    repeat: int  # best of N for the throughput rows
    scaling: tuple[int, ...]  # page counts of the linear-scaling curve
    scaling_repeat: tuple[int, ...]
    mem_disksize: int = MEM_DISKSIZE
    mem_pages: int = 8192  # pages written for the per-stored-page figure
    end_to_end_pages: int = 16384  # corpus pages for `bench run` (0: not run)
    sweep_pages: int = 0  # pages per cell of the `bench sweep` rows (0: not run)


PLANS: dict[str, Plan] = {
    "full": Plan(
        "full", real_kinds=("python", "sqlite"), real_scale=1.0, synthetic=8192, repeat=3,
        scaling=(10**4, 10**5, 10**6), scaling_repeat=(3, 2, 1), sweep_pages=16384,
    ),
    "quick": Plan(
        "quick", real_kinds=("python",), real_scale=1.0, synthetic=4096, repeat=2,
        scaling=(10**4, 10**5), scaling_repeat=(2, 1), end_to_end_pages=8192,
    ),
    "tiny": Plan(
        "tiny", real_kinds=(), real_scale=1.0, synthetic=256, repeat=1,
        scaling=(200, 2000), scaling_repeat=(1, 1), mem_disksize=64 << 20, mem_pages=256,
        end_to_end_pages=0,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------------------
# the corpus


def build_corpus(plan: Plan, progress: Progress | None = None) -> tuple[np.ndarray, str]:
    """Real memory captured now plus the synthetic mix, shuffled (seed 7); and its description."""
    from pyzram.workload.pages import WORKLOAD_KINDS, capture, synthetic_mix

    parts: list[np.ndarray] = []
    desc: list[str] = []
    for kind in plan.real_kinds:
        if kind not in WORKLOAD_KINDS:
            continue
        if progress:
            progress(f"capturing a live {kind} process")
        pages = capture(kind, plan.real_scale)
        parts.append(pages)
        desc.append(f"{len(pages)} pages of a live {kind} process")
    syn = synthetic_mix(plan.synthetic, seed=7)
    parts.append(syn)
    desc.append(f"{len(syn)} synthetic-mix pages")
    pages = np.concatenate(parts)
    perm = np.random.default_rng(7).permutation(len(pages))
    return np.ascontiguousarray(pages[perm]), " + ".join(desc)


def _host_config(algo: str) -> ZramConfig:
    """The host kernel's profile (no ACTIME, no writeback): like for like with the kernel.

    Falls back to the experiment profile when ``/proc/config.gz`` is missing
    or lacks ``algo``.
    """
    try:
        cfg = ZramConfig.from_running_kernel()
    except OSError:
        return ZramConfig()
    return cfg if algo in cfg.backends else ZramConfig()


def _same_filled(pages: np.ndarray) -> np.ndarray:
    """zram's same-filled test (every u64 word equals word 0), vectorised."""
    words = np.ascontiguousarray(pages).view(np.uint64).reshape(len(pages), PAGE_SIZE // 8)
    return (words == words[:, :1]).all(axis=1)


# ----------------------------------------------------------------------------------------
# the host kernel: O_DIRECT 4 KiB writes and reads


def kernel_reason() -> str | None:
    """Why the host's zram cannot be measured here (None when it can)."""
    from pyzram.host.kernel_zram import unavailable_reason

    return unavailable_reason()


def _aligned(size: int) -> np.ndarray:
    """A page-aligned uint8 buffer (O_DIRECT needs aligned user memory)."""
    raw = np.empty(size + PAGE_SIZE, dtype=np.uint8)
    off = -raw.ctypes.data % PAGE_SIZE
    return raw[off : off + size]


def kernel_odirect(pages: np.ndarray, algo: str, repeat: int) -> dict[str, Any]:
    """Best-of-``repeat`` pages/s of the host zram with one O_DIRECT 4 KiB syscall per page.

    A fresh ``hot_add`` device per run (so every write lands in an empty
    slot, as ours do).  The source is a page-aligned numpy buffer and
    the 4 KiB memoryviews are cut before the clock starts, so the loop is
    one ``os.pwrite`` / ``os.preadv`` per page: the Python cost per call is
    a fraction of a microsecond (on the 2-vCPU VM this loop and
    ``dd bs=4K oflag=direct`` give the same rate within the noise).
    """
    from pyzram.host.kernel_zram import KernelZram

    n = len(pages)
    size = n * PAGE_SIZE
    src = _aligned(size)
    src[:] = np.ascontiguousarray(pages).reshape(-1)
    dst = _aligned(size)
    offs = list(range(0, size, PAGE_SIZE))
    wchunks = [src[o : o + PAGE_SIZE].data for o in offs]
    rchunks = [[dst[o : o + PAGE_SIZE].data] for o in offs]
    best_w = best_r = float("inf")
    intact = True
    for _ in range(repeat):
        dst[:] = 0
        with KernelZram() as k:
            k.setup(algo, str(size))
            fd = os.open(k.dev_path, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
            try:
                pw, pr = os.pwrite, os.preadv
                t0 = time.perf_counter()
                for c, o in zip(wchunks, offs, strict=True):
                    pw(fd, c, o)
                t1 = time.perf_counter()
                for v, o in zip(rchunks, offs, strict=True):
                    pr(fd, v, o)
                t2 = time.perf_counter()
            finally:
                os.close(fd)
        best_w, best_r = min(best_w, t1 - t0), min(best_r, t2 - t1)
        intact = intact and bool(np.array_equal(src, dst))
    return {"write_pages_s": n / best_w, "read_pages_s": n / best_r, "intact": intact}


# ----------------------------------------------------------------------------------------
# our swap_ops path, driven batch by batch


@contextmanager
def swap_area(
    n_pages: int, algo: str, path: str, config: ZramConfig
) -> Iterator[tuple[Machine, Zram, Any]]:
    """A machine with a fresh zram device swapped on; powered off and reset after.

    ``path`` "swap_ops" boots a kernel with the series (zram registers its
    ``swap_ops``); "bio" one without (the area does its I/O through bios).

    The machines of the runs before are collected first: each leaves its
    process's pages, folios and page tables as one cyclic graph, which the
    host Python's collector would otherwise take apart in whichever timed
    stretch of a later run its threshold falls (a full collection of 17,040
    folios and their machine in the middle of a swapoff), a cost of the
    harness's teardown that no path measured here has.
    """
    from pyzram.mm.swap import SWAP_CLUSTER_MAX
    from pyzram.mm.swapfile import mkswap, swapon
    from pyzram.zram.swap import zram_init

    gc.collect()
    m = Machine(swap_ops_series=path == "swap_ops")
    zram_init(m)
    dev = Zram(config)
    dev.sysfs["comp_algorithm"] = algo
    dev.sysfs["disksize"] = str((n_pages + SWAP_CLUSTER_MAX * 16 + 1) * PAGE_SIZE)
    mkswap(dev.disk)
    si = swapon(m, dev.disk)
    try:
        yield m, dev, si
    finally:
        m.close()
        dev.sysfs["reset"] = "1"


def process(m: Machine, pages: np.ndarray, nr_pages: int | None = None) -> Any:
    """A process on ``m`` of ``nr_pages`` pages (default ``len(pages)``), page ``vpn``
    holding ``pages[vpn % len(pages)]``, in a memcg with room for all of them
    and their page tables (its faults never reclaim: reclaim is what the caller
    drives)."""
    from pyzram.mm.swap import SWAP_CLUSTER_MAX
    from pyzram.mm.vmscan import PTRS_PER_PTE, PUD_NR_PAGES, AddressSpace, MemCgroup

    k = len(pages)
    n = k if nr_pages is None else nr_pages
    pgtables = -(-n // PTRS_PER_PTE) + -(-n // PUD_NR_PAGES)
    memcg = MemCgroup(m, n + pgtables + SWAP_CLUSTER_MAX)
    return AddressSpace(n, memcg, lambda vpn: pages[vpn % k].data)


def reclaim_all(mm: Any) -> None:
    """Reclaim every page of ``mm``'s memcg, 32 at a time (``shrink_inactive_list``)."""
    from pyzram.mm.swap import SWAP_CLUSTER_MAX
    from pyzram.mm.vmscan import shrink_inactive_list

    memcg = mm.memcg
    while len(memcg.inactive):
        if not shrink_inactive_list(memcg, SWAP_CLUSTER_MAX):
            raise RuntimeError("reclaim made no progress (swap full, or writes failing)")


def _run_threads(fn: Callable[[int, int], None], n: int, threads: int) -> float:
    """Wall time of ``fn(lo, hi)`` over ``threads`` contiguous parts of ``range(n)``."""
    if threads <= 1:
        t = time.perf_counter()
        fn(0, n)
        return time.perf_counter() - t
    cuts = [n * i // threads // BATCH * BATCH for i in range(threads)] + [n]
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def body(lo: int, hi: int) -> None:
        start.wait()
        try:
            fn(lo, hi)
        except BaseException as e:  # reported after the join
            errors.append(e)

    ts = [threading.Thread(target=body, args=(cuts[i], cuts[i + 1])) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return dt


def submit_batches(
    pages: np.ndarray, algo: str, path: str, threads: int, config: ZramConfig
) -> dict[str, Any]:
    """Write then read every page through the area's ``ops``, folios prepared beforehand.

    This is the swap_ops path itself (``zram_swap_submit_write`` /
    ``zram_swap_submit_read``; with ``path="bio"``, ``swap_bdev_ops``
    building one bio per batch for ``zram_submit_bio``): the folios are
    made, given swap slots and put under writeback (or allocated in the swap
    cache, for reads) before the clock starts, as reclaim and the fault path
    would have done; the timed loop is ``swap_add_folio`` per folio, which
    forms the batches (up to 32 folios, split where the ops' ``can_merge``
    says so: sector adjacency for bios) and submits each, plus a final
    ``swap_*_submit``.  Zero pages go to zram too (its same-filled path), as
    they do with O_DIRECT writes to the kernel's device.  ``threads``
    workers each batch and submit their own contiguous part.

    ``path="null"`` measures the swap core's own share: the same batches go
    to a do-nothing ``swap_ops`` (``submit_write``/``submit_read`` just end
    the batch), so the time is ``swap_add_folio``, the hand-over and
    ``swap_write_end``/``swap_read_end`` alone, with no device work; no data
    moves, so ``intact`` is ``None``.
    """
    from pyzram.mm.folio import Folio, PG_dirty, PG_uptodate
    from pyzram.mm.page_io import swap_read_submit, swap_write_submit
    from pyzram.mm.swap import SwapIoCtx
    from pyzram.mm.swap_ops import READ, WRITE
    from pyzram.mm.swapfile import (
        folio_alloc_swap,
        swap_cache_alloc_folio,
        swap_cache_del_folio,
        swap_duplicate,
        swap_free,
    )
    from pyzram.tools.bench.plug import NullSwapOps, add_folios

    n = len(pages)
    null = path == "null"
    with swap_area(n, algo, "swap_ops" if null else path, config) as (m, _dev, si):
        if null:
            si.ops = NullSwapOps(si.ops)
        # The state reclaim leaves between swap_writeout and the submit: each folio
        # in the swap cache, one PTE reference on its slot, under writeback.
        folios = [Folio(0, pages[i].data) for i in range(n)]
        for f in folios:
            f.lock()
            swap_duplicate(m, folio_alloc_swap(m, f))
            f.start_writeback()
            f.unlock()

        def make_submit(folios_: list[Any], rw: int, submit: Callable[[Any], None]):
            def run(lo: int, hi: int) -> None:
                ctx = SwapIoCtx(m)
                add_folios(ctx, folios_, lo, hi, rw)
                submit(ctx)

            return run

        t_write = _run_threads(make_submit(folios, WRITE, swap_write_submit), n, threads)
        failed_writes = sum(1 for f in folios if f.flags & PG_dirty)
        entries = [f.swap for f in folios]
        for f in folios:
            f.lock()
            swap_cache_del_folio(m, f)
            f.unlock()
        del folios
        got = [swap_cache_alloc_folio(m, e) for e in entries]
        t_read = _run_threads(make_submit(got, READ, swap_read_submit), n, threads)
        ok = all(g.flags & PG_uptodate for g in got)
        if ok and not null:
            back = np.frombuffer(b"".join(g.data for g in got), dtype=np.uint8)
            ok = bool(np.array_equal(back.reshape(n, PAGE_SIZE), pages))
        for g, e in zip(got, entries, strict=True):
            g.lock()
            swap_cache_del_folio(m, g)
            g.unlock()
            swap_free(m, e)
    intact = None if null else bool(ok and not failed_writes)
    return {"write_s": t_write, "read_s": t_read, "intact": intact}


def interpreted_submit(pages: np.ndarray, algo: str, repeat: int) -> dict[str, Any]:
    """:func:`best_submit` of the swap_ops path, 1 thread, run by the same source
    interpreted (a child process with ``PYZRAM_INTERPRETED=1``), plus its
    codec floor: what compilation buys, from the same run."""
    import subprocess
    import sys
    import tempfile

    code = (
        "import json, sys, numpy as np, pyzram\n"
        "from pyzram.tools.bench import table as B\n"
        "pages = np.load(sys.argv[1]); algo = sys.argv[2]; rep = int(sys.argv[3])\n"
        "cfg = B._host_config(algo)\n"
        "r = B.best_submit(pages, algo, 'swap_ops', 1, cfg, rep)\n"
        "r['compiled'] = pyzram.COMPILED\n"
        "print(json.dumps(r))\n"
    )
    with tempfile.TemporaryDirectory(prefix="pyzram-bench-") as d:
        path = os.path.join(d, "pages.npy")
        np.save(path, pages)
        out = subprocess.run(
            [sys.executable, "-c", code, path, algo, str(repeat)],
            env={**os.environ, "PYZRAM_INTERPRETED": "1"},
            capture_output=True,
            text=True,
            check=True,
        )
    res = json.loads(out.stdout.splitlines()[-1])
    assert res["compiled"] is False
    return res


def best_submit(
    pages: np.ndarray,
    algo: str,
    path: str,
    threads: int,
    config: ZramConfig,
    repeat: int,
    after_each: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Best-of-``repeat`` of :func:`submit_batches` (write and read minimised separately);
    ``after_each()`` after each run (the codec floor's timing, in between)."""
    runs = []
    for _ in range(repeat):
        runs.append(submit_batches(pages, algo, path, threads, config))
        if after_each is not None:
            after_each()
    return {
        "write_s": min(r["write_s"] for r in runs),
        "read_s": min(r["read_s"] for r in runs),
        "intact": None if path == "null" else all(r["intact"] for r in runs),
    }


def codec_seconds(pages: np.ndarray, algo: str, huge_class_size: int, repeat: int) -> float:
    """The codec alone: one batch compress of the pages zram compresses + one batch
    decompress of those it stores compressed (best of ``repeat``).

    Same-filled pages never reach the codec in zram (nor zero pages in the
    swap core), and huge pages are stored raw and read back with a copy, so
    they are left out: what remains is the floor any zram write + read of
    these pages must pay, and "Python work beyond the codec" is measured
    above it.  The decoder reads the objects packed end to end, in slot
    order.  A pool packs each size class's objects in that class's
    zspages, so a read in slot order goes from class to class and the
    first line of each object is a miss that a read of packed objects
    mostly avoids: that cost stays in the work beyond this floor
    (``docs/perf.md``).  The buffers the codec writes are written once before the
    clock starts, as zram's pool memory is present when it writes there: a
    first write to a new mapping would time the host's page faults (half
    a microsecond a page), not the codec.
    """
    from pyzram import _kcodec

    todo = np.ascontiguousarray(pages[~_same_filled(pages)])
    n = len(todo)
    if n == 0:
        return 0.0
    dst = np.empty(n * 2 * PAGE_SIZE, dtype=np.uint8)
    dst.fill(0)  # (present: see above)
    sizes = np.empty(n, dtype=np.int32)
    best_c = best_d = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        _kcodec.compress_batch(algo, todo, n, dst, sizes)
        best_c = min(best_c, time.perf_counter() - t)
    keep = np.flatnonzero((sizes > 0) & (sizes < huge_class_size))
    m = len(keep)
    if m:
        # The objects packed end to end in slot order (spread a buffer slot apart,
        # each would start on a line and often a page of its own).
        lens = np.ascontiguousarray(sizes[keep])
        offs = np.zeros(m, dtype=np.int64)
        np.cumsum(lens[:-1], out=offs[1:])
        src = b"".join(
            dst[o : o + n].tobytes()
            for o, n in zip((keep * 2 * PAGE_SIZE).tolist(), lens.tolist(), strict=True)
        )
        out = np.empty((m, PAGE_SIZE), dtype=np.uint8)
        out.fill(0)
        res = np.empty(m, dtype=np.int32)
        for _ in range(repeat):
            t = time.perf_counter()
            _kcodec.decompress_batch(algo, src, offs, lens, m, out, res)
            best_d = min(best_d, time.perf_counter() - t)
    return best_c + (best_d if m else 0.0)


# ----------------------------------------------------------------------------------------
# memory


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            out[name] = int(rest.split()[0]) * 1024
    return out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ours_device_memory(disksize: int, config: ZramConfig, algo: str) -> dict[str, float]:
    """Bytes per slot of our slot table + pool + compressor after ``disksize`` is set.

    ``tracemalloc`` sees every allocation, numpy arrays included, whether
    touched or not (like the kernel's ``vzalloc``, which zeroes and so
    touches its pages); the RSS delta only sees touched pages (numpy's
    calloc leaves them untouched), so the bytes per slot we report are the
    larger of the two.  Also the time ``disksize_store`` took.
    """
    gc.collect()
    dev = Zram(config)
    dev.sysfs["comp_algorithm"] = algo
    rss0 = _rss()
    tracemalloc.start()
    try:
        t = time.perf_counter()
        dev.sysfs["disksize"] = str(disksize)
        dt = time.perf_counter() - t
        traced, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss = _rss() - rss0
    slots = disksize // PAGE_SIZE
    dev.sysfs["reset"] = "1"
    return {
        "traced_per_slot": traced / slots,
        "rss_per_slot": rss / slots,
        "per_slot": max(traced, rss) / slots,
        "create_s": dt,
    }


def kernel_device_memory(disksize: int, algo: str) -> dict[str, float]:
    """The host kernel's bytes per slot and creation time at ``disksize`` (a hot_added device).

    ``disksize_store`` ``vzalloc``s the table and creates the pool and the
    per-CPU streams: the ``VmallocUsed`` + ``Slab`` delta of /proc/meminfo
    across that one write is what it cost (other activity on the machine
    adds noise of a few hundred KiB, under 0.1 B/slot at 16 GiB).
    """
    from pyzram.host.kernel_zram import KernelZram

    with KernelZram() as k:
        k.write_attr("comp_algorithm", algo)
        m0 = _meminfo()
        t = time.perf_counter()
        k.write_attr("disksize", str(disksize))
        dt = time.perf_counter() - t
        m1 = _meminfo()
    d_vmalloc = m1["VmallocUsed"] - m0["VmallocUsed"]
    d_slab = m1["Slab"] - m0["Slab"]
    slots = disksize // PAGE_SIZE
    return {
        "per_slot": (d_vmalloc + max(d_slab, 0)) / slots,
        "vmalloc_per_slot": d_vmalloc / slots,
        "memfree_per_slot": (m0["MemFree"] - m1["MemFree"]) / slots,
        "create_s": dt,
    }


def ours_stored_memory(pages: np.ndarray, config: ZramConfig, algo: str) -> dict[str, Any]:
    """Metadata bytes per stored object after writing ``pages``: slot entry + pool metadata.

    The pool's metadata is what ``tracemalloc`` sees the writes add (handle
    table, zspage records, class lists ...).  The objects' bytes themselves
    (``mem_used_total``) are not metadata: when the pool keeps them in
    traced memory (``bytearray`` zspages) the growth is at least
    ``mem_used_total`` and that is subtracted; a pool whose zspages live in
    an ``mmap`` arena is not traced, and nothing is subtracted.  The slot
    entry is the table's bytes per slot.  Objects = pages not stored as
    same-filled.
    """
    n = len(pages)
    warm = Zram(config)  # first-use costs (codec contexts, caches) out of the window
    warm.sysfs["comp_algorithm"] = algo
    warm.sysfs["disksize"] = str(64 * PAGE_SIZE)
    warm.pwrite(np.ascontiguousarray(pages[:64]).tobytes(), 0)
    warm.sysfs["reset"] = "1"
    dev = Zram(config)
    dev.sysfs["comp_algorithm"] = algo
    dev.sysfs["disksize"] = str(n * PAGE_SIZE)
    table_per_slot = dev.table.nbytes / dev.nr_pages if dev.table is not None else 0.0
    data = np.ascontiguousarray(pages).tobytes()
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        dev.pwrite(data, 0)
        del data
        gc.collect()
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    mm = dev.mm_stat()
    objs = max(n - mm.same_pages, 1)
    dev.sysfs["reset"] = "1"
    grown = traced - base
    data_traced = grown >= mm.mem_used_total
    pool_meta = grown - (mm.mem_used_total if data_traced else 0)
    return {
        "per_object": table_per_slot + pool_meta / objs,
        "table_per_slot": table_per_slot,
        "pool_meta_per_object": pool_meta / objs,
        "objects": n - mm.same_pages,
        "data_traced": data_traced,
    }


def _slab_counts(name: str) -> tuple[int, int] | None:
    """(objects, slab_size) of /sys/kernel/slab/NAME, or None if unreadable."""
    p = Path("/sys/kernel/slab") / name
    try:
        objects = int((p / "objects").read_text().split()[0])
        size = int((p / "slab_size").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return objects, size


def kernel_stored_memory(pages: np.ndarray, algo: str, entry_size: int) -> dict[str, float]:
    """The kernel's metadata bytes per stored object after writing ``pages``.

    ``entry_size`` bytes of slot table (``sizeof(struct zram_table_entry)``,
    from the host's config) plus the growth of the device's own slab caches,
    ``zs_handle-zramN`` (one 8-byte handle per object) and ``zspage-zramN``
    (one ``struct zspage`` per zspage), counted in objects times
    ``slab_size``.  Those caches can be merged with others (SLUB merging),
    so unrelated activity in the same moment is noise.
    """
    from pyzram.host.kernel_zram import KernelZram

    n = len(pages)
    with KernelZram() as k:
        k.setup(algo, str(n * PAGE_SIZE))
        names = (f"zs_handle-zram{k.id}", f"zspage-zram{k.id}")
        before = [_slab_counts(c) for c in names]
        k.pwrite(np.ascontiguousarray(pages), 0)
        after = [_slab_counts(c) for c in names]
        mm = k.mm_stat()
    if None in before or None in after:
        raise OSError("cannot read the zsmalloc slab caches under /sys/kernel/slab")
    objs = n - mm.same_pages
    meta = sum((a[0] - b[0]) * a[1] for a, b in zip(after, before, strict=True))  # type: ignore[index]
    # A merged cache can shrink meanwhile (other users free objects): the growth is then
    # unmeasurable, and 0 is the honest lower bound rather than a negative size.
    return {"per_object": entry_size + max(meta, 0) / max(objs, 1), "objects": objs}


# ----------------------------------------------------------------------------------------
# linear scaling


def scaling_point(
    source: np.ndarray, n: int, algo: str, config: ZramConfig, chunk: int = 8192
) -> dict[str, Any]:
    """Swap ``n`` pages of a process out and back in through reclaim and faults.

    Page ``i`` is ``source[i % len(source)]`` (the corpus repeated: zram does
    not deduplicate, so a repeated page costs what the first did).  Work
    goes in chunks of ``chunk`` pages so that 10^6 pages (4 GiB) never exist
    as folios at once: per chunk, the pages are faulted in (untimed), then
    reclaimed through ``shrink_inactive_list`` (timed).  Swap-in likewise:
    per chunk a fault on each page (``do_swap_page``; timed), a vectorised
    compare with the source, and the chunk unmapped (``zap_pte_range``;
    untimed).
    """
    k = len(source)
    t_write = t_read = 0.0
    intact = True
    with swap_area(n, algo, "swap_ops", config) as (m, _dev, _si):
        mm = process(m, source, n)
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            for vpn in range(lo, hi):
                mm.do_anonymous_page(vpn)
            t = time.perf_counter()
            reclaim_all(mm)
            t_write += time.perf_counter() - t
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            t = time.perf_counter()
            got = [mm.do_swap_page(vpn) for vpn in range(lo, hi)]
            t_read += time.perf_counter() - t
            if intact:
                idx = np.arange(lo, hi) % k
                back = np.frombuffer(b"".join(g.data for g in got), dtype=np.uint8)
                intact = bool(np.array_equal(back.reshape(hi - lo, PAGE_SIZE), source[idx]))
            del got
            mm.zap_pte_range(lo, hi)
    return {"pages": n, "write_s": t_write, "read_s": t_read, "intact": intact}


def plot_scaling(
    points: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str
) -> None:
    """Seconds against pages on log-log axes, with the ideal linear line through the first point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([p["pages"] for p in points], dtype=float)
    w = np.array([p["write_s"] for p in points])
    r = np.array([p["read_s"] for p in points])
    tot = w + r
    fig, ax = plt.subplots(figsize=(8, 6), dpi=150)
    ax.loglog(n, tot, "o-", label="swap-out + swap-in")
    ax.loglog(n, w, "s--", label="swap-out")
    ax.loglog(n, r, "^--", label="swap-in")
    ideal = tot[0] * n / n[0]
    ax.loglog(n, ideal, "k:", label="ideal linear (through the first point)")
    bound = ideal * 1.1 ** np.log10(n / n[0])
    ax.loglog(n, bound, color="grey", lw=0.7, label="goal bound (1.1x per decade)")
    ax.set_xlabel("pages (4 KiB)")
    ax.set_ylabel("seconds")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# end to end (pyzram run vs the kernel's swap on zram), from `bench run`

END_TO_END_NAME = "end-to-end pyzram run vs kernel swap on zram"
END_TO_END_WHAT = "host kernel: swap on a hot_added zram under a cgroup v1 memory limit"
#: The end-to-end goal: pyzram's swapped pages/s at least the kernel's (``bench run``).
END_TO_END_GOAL = 1.0
#: Runs of each side of the end-to-end row; the fastest is kept (as ``bench run``).
END_TO_END_RUNS = 3


def end_to_end_rows(
    pages: np.ndarray, algo: str, kernel_reason_: str | None, progress: Progress | None = None
) -> list[Row]:
    """The row of ``pyzram bench run`` (:func:`pyzram.host.kernel_swap.bench_run`).

    The same workload (these pages, its default zipf pattern and limit)
    runs on the host kernel's swap and through :func:`pyzram.tools.commands.run.run_workload`;
    the figure is swapped pages per second, (pswpout + pswpin) / seconds,
    on each side.  Skipped with the reason when the module is missing, the
    kernel side cannot run here, or the run fails (the rest of the table
    still prints).
    """
    name = f"{END_TO_END_NAME}, {algo}, {len(pages):,} pages"
    try:
        from pyzram.host import kernel_swap
    except ImportError:
        return [
            skipped_row(
                "end_to_end", f"{END_TO_END_NAME}: not available", "pages/s", END_TO_END_WHAT,
                "pyzram.host.kernel_swap (bench run) is not in this tree",
            )
        ]  # fmt: skip
    reason = kernel_reason_ or kernel_swap.unavailable_reason()
    if reason is not None:
        return [skipped_row("end_to_end", name, "pages/s", END_TO_END_WHAT, f"kernel: {reason}")]
    try:
        r = kernel_swap.bench_run(pages, algorithm=algo, progress=progress, repeat=END_TO_END_RUNS)
    except Exception as e:  # any failure of the other tool: say so, keep the table
        return [skipped_row("end_to_end", name, "pages/s", END_TO_END_WHAT, f"failed: {e!r}")]
    k, ours = r.kernel, r.pyzram
    note = (
        f"{ours.accesses:,} accesses, limit {ours.mem_limit_pages:,} pages; "
        f"pyzram {ours.seconds:.2f} s, kernel {k.seconds:.2f} s, the fastest of "
        f"{END_TO_END_RUNS} runs each"
        + ("" if ours.intact and k.intact else "; PAGES CAME BACK WRONG")
    )
    return [
        rate_row(
            "end_to_end", name, ours.swapped_pages_s, "pages/s", k.swapped_pages_s,
            END_TO_END_WHAT + ", same workload", END_TO_END_GOAL, note,
        )
    ]  # fmt: skip


def sweep_rows(plan: Plan, say: Callable[[str], None]) -> list[Row]:
    """The rows of ``pyzram bench sweep`` (:mod:`pyzram.tools.bench.sweep`): two
    local workers over one, a cell's wall time in the sweep, the scheduler's
    overhead.  Run by the full plan only (a sweep of 16 cells on a cluster
    takes minutes); otherwise, or if the cluster fails, skipped with the reason."""
    from pyzram.tools.bench.sweep import SWEEP_ROWS, measure_sweep

    what = "the same cells on 1 worker / alone"
    if not plan.sweep_pages:
        return [
            skipped_row(key, name, unit, what, f"not run in the {plan.name} plan")
            for key, (name, unit) in SWEEP_ROWS.items()
        ]
    say("sweep on a local Dask cluster")
    try:
        _res, rows = measure_sweep(plan.sweep_pages, progress=say)
    except Exception as e:  # the cluster or a cell failed: say so, keep the table
        return [
            skipped_row(key, name, unit, what, f"failed: {e!r}")
            for key, (name, unit) in SWEEP_ROWS.items()
        ]
    return rows


#: zswap's rows use a compressor the host kernel's crypto API has.
ZSWAP_BENCH_COMPRESSOR = "lzo"
ZSWAP_WHAT = "host kernel zswap ({c}) over a zram swap area: {how}"


def zswap_rows(pages: np.ndarray, kernel_reason_: str | None, repeat: int = 1) -> list[Row]:
    """zswap store and load through the swap core, against the host kernel's zswap.

    The same pages on both sides, as ``pyzram validate --zswap`` sets them
    up (:func:`pyzram.tools.commands.store.zswap_pageout` and
    :class:`pyzram.host.kernel_zswap.KernelZswap`): stored with
    ``MADV_PAGEOUT`` over all of them (pyzram: ``madvise_pageout``, reclaim,
    ``swap_writeout``, ``zswap_store``), then loaded by faulting each back
    and comparing it (pyzram: ``do_swap_page``, ``swap_read_folio``,
    ``zswap_load``).  pages/s = pages / seconds of each pass, the best of
    ``repeat`` runs of each side (the two sides take turns), as the other
    throughput rows.  Skipped with the reason where the host has no zswap or
    no root.
    """
    from pyzram.host import kernel_zswap
    from pyzram.tools.commands.store import zswap_pageout

    c = ZSWAP_BENCH_COMPRESSOR
    n = len(pages)
    names = {
        "zswap_store": (f"zswap store through the swap core (MADV_PAGEOUT), {c}, {n:,} pages",
                        ZSWAP_WHAT.format(c=c, how="MADV_PAGEOUT of the same pages")),
        "zswap_load": (f"zswap load through the swap core (faults), {c}, {n:,} pages",
                       ZSWAP_WHAT.format(c=c, how="faulting the same pages back")),
    }  # fmt: skip
    reason = kernel_reason_ or kernel_zswap.unavailable_reason()
    if reason is not None:
        return [
            skipped_row(k, name, "pages/s", what, f"kernel: {reason}")
            for k, (name, what) in names.items()
        ]
    ours_runs, kern_runs = [], []
    try:
        for _ in range(repeat):
            ours_runs.append(zswap_pageout(pages, c, read_back=True))
            with kernel_zswap.KernelZswap(compressor=c) as kz:
                kern_runs.append(kz.pageout(pages, read_back=True))
    except Exception as e:  # any failure of the host side: say so, keep the table
        return [
            skipped_row(k, name, "pages/s", what, f"failed: {e!r}")
            for k, (name, what) in names.items()
        ]
    intact = all(r.get("read_back_equal") for r in ours_runs + kern_runs)
    same = all(
        o["debugfs"].get("stored_pages") == k["debugfs"].get("stored_pages")
        for o, k in zip(ours_runs, kern_runs, strict=True)
    )
    note = ("" if intact else "PAGES CAME BACK WRONG; ") + (
        "stored_pages equal" if same else "stored_pages DIFFER"
    )
    if repeat > 1:
        note += f"; best of {repeat}"
    rows = []
    for key, secs in (("zswap_store", "pageout_seconds"), ("zswap_load", "read_back_seconds")):
        name, what = names[key]
        ours_s = min(r[secs] for r in ours_runs)
        kern_s = min(r[secs] for r in kern_runs)
        rows.append(rate_row(key, name, n / ours_s, "pages/s", n / kern_s, what, 1.0, note))
    return rows


# ----------------------------------------------------------------------------------------
# the whole run


@dataclass
class Report:
    """Everything ``pyzram bench`` prints; ``as_dict`` is the ``--json`` document."""

    date: str
    machine: str
    plan: str
    algorithm: str
    threads: int
    corpus: str
    pages: int
    seconds: float = 0.0
    rows: list[Row] = field(default_factory=list)
    scaling: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds spent in each part, in order (where the --quick budget goes).
    stages: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [r.as_dict() for r in self.rows]
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def markdown(self) -> str:
        """The table as Markdown, headed by date, machine and corpus (for the README)."""
        lines = [
            f"`pyzram bench{'' if self.plan == 'full' else ' --' + self.plan}` "
            f"({self.algorithm}, {self.threads} threads), {self.date}, {self.machine}; "
            f"corpus: {self.corpus}; {self.seconds:.0f} s.",
            "",
            "| row | ours | reference (what) | ratio | goal | met? |",
            "|---|---:|---|---:|---|---|",
        ]
        for r in self.rows:
            name = r.name + (f" ({r.note})" if r.note else "")
            ours = format_value(r.ours, r.ours_unit)
            if r.skipped:
                lines.append(f"| {name} | {ours} | skipped: {r.skipped} | - | - | - |")
                continue
            ref = f"{format_value(r.reference, r.ours_unit)} ({r.reference_what})"
            ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
            met = "-" if r.met is None else "yes" if r.met else "**no**"
            lines.append(f"| {name} | {ours} | {ref} | {ratio} | {r.goal_text or '-'} | {met} |")
        return "\n".join(lines) + "\n"


def format_value(x: float | None, unit: str) -> str:
    """``12,345 pages/s``, ``16.1 B/slot``, ``0.0421 s``; ``-`` for None."""
    if x is None:
        return "-"
    if unit == "pages/s" or abs(x) >= 100:
        return f"{x:,.0f} {unit}"
    return f"{x:.3g} {unit}"


def machine_description() -> str:
    """e.g. ``2 vCPU AMD EPYC 7R13, 23.4 GiB, Linux 6.18.44, Python 3.11.7 (pyzram
    compiled)``."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = f", {_meminfo()['MemTotal'] / 2**30:.1f} GiB"
    except (OSError, KeyError):
        mem = ""
    import pyzram

    form = "compiled" if pyzram.COMPILED else "interpreted"
    return (
        f"{os.cpu_count()} vCPU {model}{mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()} (pyzram {form})"
    )


def run_bench(
    plan: Plan | str = "full",
    algo: str = "lz4",
    threads: int = 2,
    kernel: bool = True,
    plot: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Measure every row on one corpus, in this process; return the report.

    The interpreter's objects from before are frozen for the whole run
    (:func:`~pyzram.tools.common.frozen_heap`), so no full collection of
    them lands inside a timed row."""
    with frozen_heap():
        return _measure_rows(plan, algo, threads, kernel, plot, progress)


def _measure_rows(
    plan: Plan | str,
    algo: str,
    threads: int,
    kernel: bool,
    plot: str | os.PathLike[str] | None,
    progress: Progress | None,
) -> Report:
    """The body of :func:`run_bench`."""
    from pyzram.tools.bench.device import _swap_run

    if algo not in KCODEC_ALGOS:
        # The codec floor and the codec rows need our kernel-exact C codecs.
        raise ValueError(f"pyzram bench measures {', '.join(KCODEC_ALGOS)}, not {algo!r}")
    if isinstance(plan, str):
        plan = PLANS[plan]
    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    stage = {"name": "corpus", "t": t_start}

    def say(msg: str) -> None:
        """Report progress and close the previous stage's clock."""
        now = time.perf_counter()
        name = str(stage["name"])
        stages[name] = stages.get(name, 0.0) + now - float(stage["t"])
        stage.update(name=msg, t=now)
        if progress is not None:
            progress(msg)

    pages, corpus = build_corpus(plan, progress)
    n = len(pages)
    report = Report(
        date=datetime.date.today().isoformat(),
        machine=machine_description(),
        plan=plan.name,
        algorithm=algo,
        threads=threads,
        corpus=corpus,
        pages=n,
    )
    rows = report.rows
    config = _host_config(algo)
    reason = kernel_reason() if kernel else "--no-kernel"
    rep = plan.repeat

    # -- the host kernel's O_DIRECT 4 KiB rates ---------------------------------------
    kern: dict[str, Any] | None = None
    if reason is None:
        say("host kernel zram, O_DIRECT 4 KiB")
        try:
            kern = kernel_odirect(pages, algo, rep)
        except OSError as e:
            reason = f"host zram failed: {e}"
    kw_what = f"host kernel zram {algo}, O_DIRECT 4 KiB pwrite, 1 thread"
    kr_what = f"host kernel zram {algo}, O_DIRECT 4 KiB pread, 1 thread"

    # -- the codec floor: the codec alone on these pages, measured between the runs of
    # the swap_ops paths below, so that a slow or fast stretch of the host falls on both
    # sides of "work beyond the codec" --------------------------------------------------
    huge = Zram(config)
    huge.sysfs["comp_algorithm"] = algo
    huge.sysfs["disksize"] = str(64 * PAGE_SIZE)
    huge_class_size = huge.huge_class_size
    huge.sysfs["reset"] = "1"
    codec_runs: list[float] = []

    def codec_once() -> None:
        codec_runs.append(codec_seconds(pages, algo, huge_class_size, 1))

    # -- our swap_ops path on prepared batches ------------------------------------------
    say("swap_ops submit, 1 thread (and the codec alone after each run)")
    one = best_submit(pages, algo, "swap_ops", 1, config, max(rep, 3), after_each=codec_once)
    say(f"swap_ops submit, {threads} threads")
    many = best_submit(pages, algo, "swap_ops", threads, config, rep) if threads > 1 else one
    say("swap_ops submit, interpreted")
    interp = interpreted_submit(pages, algo, rep)
    say("bio path submit")
    bio_submit = best_submit(pages, algo, "bio", 1, config, rep)
    say("swap core alone (null swap_ops)")
    null_submit = best_submit(pages, algo, "null", 1, config, max(rep, 3))
    say("swap core: swap_ops and bio (and the codec alone after each pair)")
    core: dict[str, list[dict[str, Any]]] = {"swap_ops": [], "bio": []}
    for _ in range(max(rep, 3)):
        for path in ("swap_ops", "bio"):
            core[path].append(_swap_run(pages, algo, path, fault=False, config=config))
        codec_once()
    core_best = {
        path: {k: min(r[k] for r in runs) for k in ("out", "in_batched")}
        for path, runs in core.items()
    }
    intact = (
        one["intact"]
        and many["intact"]
        and bio_submit["intact"]
        and all(r["intact"] for runs in core.values() for r in runs)
    )
    intact_note = "" if intact else "PAGES CAME BACK WRONG"
    w1, r1 = n / one["write_s"], n / one["read_s"]
    wt, rt = n / many["write_s"], n / many["read_s"]
    core_w, core_r = n / core_best["swap_ops"]["out"], n / core_best["swap_ops"]["in_batched"]
    t_note = f"{threads} threads, one device, each submitting its own half"
    if kern is not None:
        kw, kr = kern["write_pages_s"], kern["read_pages_s"]
        rows.append(
            rate_row(
                "write_1t", f"zram writes, swap_ops submit (32-folio batches), {algo}, 1 thread",
                w1, "pages/s", kw, kw_what, 1.0, intact_note,
            )
        )  # fmt: skip
        rows.append(
            rate_row(
                "write_nt", f"zram writes, swap_ops submit, {algo}, {threads} threads",
                wt, "pages/s", kw, kw_what, 1.5, t_note,
            )
        )  # fmt: skip
        rows.append(
            rate_row(
                "write_core",
                f"zram writes through the swap core (reclaim: shrink_inactive_list), {algo}",
                core_w, "pages/s", kw, kw_what, 1.0,
                "1 thread; slot allocation and reclaim bookkeeping included; "
                "zero pages take the swap core's zero map",
            )
        )  # fmt: skip
        best_r, which = (r1, "1 thread") if r1 >= rt else (rt, f"{threads} threads")
        rows.append(
            rate_row(
                "read", f"zram reads, swap_ops submit (32-folio batches), {algo}, best of 1/"
                f"{threads} threads", best_r, "pages/s", kr, kr_what, 1.5,
                f"best: {which} (1 thread {r1:,.0f}, {threads} threads {rt:,.0f} pages/s)",
            )
        )  # fmt: skip
        iw, ir = n / interp["write_s"], n / interp["read_s"]
        rows.append(
            rate_row(
                "write_1t_interpreted", "zram writes, swap_ops submit, 1 thread, interpreted "
                "(the same source, PYZRAM_INTERPRETED=1)", iw, "pages/s", kw, kw_what, None,
                f"compiled: {w1:,.0f} pages/s ({w1 / iw:.2f}x)",
            )
        )  # fmt: skip
        rows.append(
            rate_row(
                "read_interpreted", "zram reads, swap_ops submit, 1 thread, interpreted",
                ir, "pages/s", kr, kr_what, None,
                f"compiled: {r1:,.0f} pages/s ({r1 / ir:.2f}x)",
            )
        )  # fmt: skip
        rows.append(
            rate_row(
                "read_core",
                f"zram reads through the swap core (swapoff: try_to_unuse, 32/batch), {algo}",
                core_r, "pages/s", kr, kr_what, 1.5, "1 thread",
            )
        )  # fmt: skip
    else:
        for key, name, what in (
            ("write_1t", f"zram writes, swap_ops submit, {algo}, 1 thread", kw_what),
            ("write_nt", f"zram writes, swap_ops submit, {algo}, {threads} threads", kw_what),
            ("write_core", f"zram writes through the swap core, {algo}", kw_what),
            ("read", f"zram reads, swap_ops submit, {algo}", kr_what),
            ("write_1t_interpreted", "zram writes, swap_ops submit, interpreted", kw_what),
            ("read_interpreted", "zram reads, swap_ops submit, interpreted", kr_what),
            ("read_core", f"zram reads through the swap core, {algo}", kr_what),
        ):
            rows.append(skipped_row(key, name, "pages/s", what, f"kernel: {reason}"))

    # -- swap_ops vs bio --------------------------------------------------------------------
    bo, bi = core_best["bio"]["out"], core_best["bio"]["in_batched"]
    rows.append(
        rate_row(
            "ops_vs_bio_out", "swap-out through the swap core: swap_ops path",
            core_w, "pages/s", n / bo, "our bio path (swap_bdev_ops -> zram_submit_bio)", 1.5,
        )
    )  # fmt: skip
    rows.append(
        rate_row(
            "ops_vs_bio_in", "swap-in (32/batch) through the swap core: swap_ops path",
            core_r, "pages/s", n / bi, "our bio path (swap_bdev_ops -> zram_submit_bio)", 1.5,
        )
    )  # fmt: skip
    ops_t = one["write_s"] + one["read_s"]
    bio_t = bio_submit["write_s"] + bio_submit["read_s"]
    rows.append(
        rate_row(
            "ops_vs_bio_submit", "write + read, swap_ops submit on prepared batches",
            n / ops_t, "pages/s", n / bio_t, "our bio path, same prepared batches", None,
            "1 thread; pages/s of the write and read passes together",
        )
    )  # fmt: skip
    codec_s = min(codec_runs)  # the fastest of the 2 x repeat runs taken in between
    core_t = core_best["swap_ops"]["out"] + core_best["swap_ops"]["in_batched"]
    for key, name, total, limit in (
        ("beyond_codec_core", "Python work beyond the codec, swap core + swap_ops", core_t, 2.0),
        ("beyond_codec_submit", "Python work beyond the codec, swap_ops submit only", ops_t, 1.0),
    ):
        us = (total - codec_s) / n * 1e6
        rows.append(
            cost_row(
                key, name, us, "µs/page", limit, "goal threshold (the codec floor is subtracted)",
                limit, f"≤ {limit:g} µs/page",
                f"write + read {total / n * 1e6:.2f} µs/page, codec {codec_s / n * 1e6:.2f}",
            )
        )  # fmt: skip
    interp_t = interp["write_s"] + interp["read_s"]
    us = (interp_t - codec_s) / n * 1e6
    rows.append(
        cost_row(
            "beyond_codec_submit_interpreted",
            "the same, interpreted: the same source without compilation",
            us, "µs/page", 1.0, "the < 1 µs/page threshold above", None, None,
            f"write + read {interp_t / n * 1e6:.2f} µs/page (PYZRAM_INTERPRETED=1); "
            f"compiled {ops_t / n * 1e6:.2f}",
        )
    )  # fmt: skip
    null_us = (null_submit["write_s"] + null_submit["read_s"]) / n * 1e6
    rows.append(
        cost_row(
            "swap_core_floor", "of which the swap core alone: swap_add_folio + hand-over + "
            "swap_*_end, do-nothing swap_ops", null_us, "µs/page", 1.0,
            "the < 1 µs/page budget above", None, None,
            f"write + read, no device work (write {null_submit['write_s'] / n * 1e6:.2f}, "
            f"read {null_submit['read_s'] / n * 1e6:.2f} µs/page)",
        )
    )  # fmt: skip

    # -- codecs ------------------------------------------------------------------------------
    say("codecs")
    rows += codec_rows(pages, max(rep, 3))

    # -- end to end --------------------------------------------------------------------------
    if plan.end_to_end_pages:
        say("end-to-end run vs kernel swap")
        rows += end_to_end_rows(pages[: plan.end_to_end_pages], algo, reason, progress)
    else:
        rows += [
            skipped_row(
                "end_to_end", END_TO_END_NAME, "pages/s", END_TO_END_WHAT,
                f"not run in the {plan.name} plan",
            )
        ]  # fmt: skip

    # -- zswap ---------------------------------------------------------------------------------
    say("zswap store and load vs the kernel's zswap")
    rows += zswap_rows(pages[: plan.end_to_end_pages or 4096], reason, plan.repeat)

    # -- sweeps on a local Dask cluster ------------------------------------------------------
    rows += sweep_rows(plan, say)

    # -- memory ------------------------------------------------------------------------------
    say("memory")
    rows += memory_rows(pages, plan, algo, config, reason)

    # -- linear scaling ------------------------------------------------------------------------
    pts: list[dict[str, Any]] = []
    for size, reps in zip(plan.scaling, plan.scaling_repeat, strict=True):
        say(f"scaling: {size:,} pages")
        runs = [scaling_point(pages, size, algo, config) for _ in range(reps)]
        best = min(runs, key=lambda r: r["write_s"] + r["read_s"])
        best["intact"] = all(r["intact"] for r in runs)
        best["repeat"] = reps
        pts.append(best)
    report.scaling = pts
    for a, b in zip(pts, pts[1:], strict=False):
        ta, tb = a["write_s"] + a["read_s"], b["write_s"] + b["read_s"]
        k = b["pages"] / a["pages"]
        growth = tb / (k * ta)
        rows.append(
            cost_row(
                f"scaling_{a['pages']}", f"linear scaling {a['pages']:,} -> {b['pages']:,} pages: "
                f"t({b['pages']:,}) / ({k:g} t({a['pages']:,}))", growth, "x",
                1.0, "ideal linear", 1.1, "≤ 1.1",
                f"{ta:.2f} s -> {tb:.2f} s (swap-out + swap-in)"
                + ("" if a["intact"] and b["intact"] else "; PAGES CAME BACK WRONG"),
            )
        )  # fmt: skip
    if plot is not None and len(pts) >= 2:
        plot_scaling(
            pts, plot, f"pyzram swap-out + swap-in ({algo}), {report.machine.split(',')[0]}"
        )
    say("done")
    report.stages = {k: round(v, 2) for k, v in stages.items()}
    report.seconds = time.perf_counter() - t_start
    return report


def codec_rows(pages: np.ndarray, repeat: int) -> list[Row]:
    """Our batch C codecs against python-lz4 / python-lzo loops on the same pages."""
    from pyzram.tools.bench.device import _kcodec_rows, python_codec_rows

    ours = {r.what: r for algo in ("lz4", "lzo") for r in _kcodec_rows(algo, pages, repeat)}
    refs = {r.what: r for r in python_codec_rows(pages, repeat)}
    plz4 = next((r for w, r in refs.items() if w.startswith("python-lz4")), None)
    plzo = next((r for w, r in refs.items() if w.startswith("python-lzo")), None)
    rows: list[Row] = []
    for algo, ref, ref_name in (("lz4", plz4, "python-lz4"), ("lzo", plzo, "python-lzo")):
        one, two = ours[f"pyzram {algo} batch, 1 thread"], ours[f"pyzram {algo} batch, 2 threads"]
        what_c = f"{ref_name} loop, compress, 1 thread"
        what_d = f"{ref_name} loop, decompress, 1 thread"
        if ref is None or ref.compress_pages_s is None:
            for key, name, what in (
                (f"codec_{algo}_c", f"{algo} batch compress, 1 thread", what_c),
                (f"codec_{algo}_c2", f"{algo} batch compress, 2 threads", what_c),
                (f"codec_{algo}_d", f"{algo} batch decompress, 1 thread", what_d),
            ):
                rows.append(skipped_row(key, name, "pages/s", what, f"{ref_name} not installed"))
            continue
        assert one.compress_pages_s and two.compress_pages_s and one.decompress_pages_s
        assert ref.decompress_pages_s
        rows.append(
            rate_row(
                f"codec_{algo}_c", f"{algo} batch compress (kernel-exact C), 1 thread",
                one.compress_pages_s, "pages/s", ref.compress_pages_s, what_c,
            )
        )  # fmt: skip
        rows.append(
            rate_row(
                f"codec_{algo}_c2", f"{algo} batch compress (kernel-exact C), 2 threads",
                two.compress_pages_s, "pages/s", ref.compress_pages_s, what_c,
            )
        )  # fmt: skip
        rows.append(
            rate_row(
                f"codec_{algo}_d", f"{algo} batch decompress (kernel-exact C), 1 thread",
                one.decompress_pages_s, "pages/s", ref.decompress_pages_s, what_d,
            )
        )  # fmt: skip
    return rows


def memory_rows(
    pages: np.ndarray, plan: Plan, algo: str, config: ZramConfig, reason: str | None
) -> list[Row]:
    """Bytes per slot and creation time at 16 GiB; metadata per stored object."""
    rows: list[Row] = []
    size_txt = f"{plan.mem_disksize / 2**30:g} GiB"
    slots = plan.mem_disksize // PAGE_SIZE
    ours = ours_device_memory(plan.mem_disksize, config, algo)
    kern_dev: dict[str, float] | None = None
    kreason = reason
    if kreason is None:
        try:
            kern_dev = kernel_device_memory(plan.mem_disksize, algo)
        except OSError as e:
            kreason = f"host zram failed: {e}"
    entry = 24 if config.track_entry_actime else 16
    mem_note = (
        f"tracemalloc {ours['traced_per_slot']:.2f}, RSS {ours['rss_per_slot']:.2f} B/slot; "
        f"{slots:,} slots; host profile (ACTIME {'on' if config.track_entry_actime else 'off'})"
    )
    name = f"slot table + pool metadata at disksize {size_txt}"
    if kern_dev is not None:
        rows.append(
            cost_row(
                "mem_per_slot", name, ours["per_slot"], "B/slot", kern_dev["per_slot"],
                f"host kernel (VmallocUsed + Slab delta; MemFree delta "
                f"{kern_dev['memfree_per_slot']:.1f}; sizeof(zram_table_entry) = {entry})",
                24.0, "≤ 24 B/slot", mem_note,
            )
        )  # fmt: skip
        rows.append(
            cost_row(
                "create_16g", f"create a {size_txt} device (disksize_store)",
                ours["create_s"], "s", kern_dev["create_s"], "host kernel, same write",
                1.0, "< 1 s",
            )
        )  # fmt: skip
    else:
        rows.append(
            cost_row(
                "mem_per_slot", name, ours["per_slot"], "B/slot", float(entry),
                f"sizeof(zram_table_entry) on this config (kernel not measured: {kreason})",
                24.0, "≤ 24 B/slot", mem_note,
            )
        )  # fmt: skip
        rows.append(
            cost_row(
                "create_16g", f"create a {size_txt} device (disksize_store)", ours["create_s"],
                "s", 1.0, f"goal threshold (kernel not measured: {kreason})", 1.0, "< 1 s",
            )
        )  # fmt: skip
    sample = pages[: plan.mem_pages]
    stored = ours_stored_memory(sample, config, algo)
    snote = (
        f"{stored['objects']:,} objects from {len(sample):,} pages; table "
        f"{stored['table_per_slot']:.1f} + pool {stored['pool_meta_per_object']:.1f} B; "
        f"object bytes {'in traced memory, subtracted' if stored['data_traced'] else 'untraced'}"
    )
    sname = "metadata per stored page (slot entry + handle + zspage)"
    if kreason is None:
        try:
            kst = kernel_stored_memory(sample, algo, entry)
            rows.append(
                cost_row(
                    "mem_per_stored", sname, stored["per_object"], "B/object",
                    kst["per_object"], "host kernel: table entry + zs_handle + zspage slab growth",
                    None, None, snote,
                )
            )  # fmt: skip
            return rows
        except OSError as e:
            kreason = f"host zram failed: {e}"
    rows.append(
        skipped_row("mem_per_stored", sname, "B/object", "host kernel", f"{kreason}", "lower")
    )
    rows[-1].ours = stored["per_object"]
    rows[-1].note = snote
    return rows
