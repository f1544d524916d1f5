"""``pyzram bench``: throughput of pyzram's device beside the host kernel's zram.

``bench_zram`` writes a whole page file through ``Zram.pwrite`` and reads
it back with ``Zram.pread`` in requests of ``bs`` bytes (the dd-style
``bs=`` of perf-baseline.md), and, when the host has zram-control, does the
same O_DIRECT writes and reads on a fresh kernel device in the same run.
Figures are pages per second (4 KiB pages), best of ``repeat`` runs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from pyzram.config import ZramConfig
from pyzram.zram.zram_drv import PAGE_SIZE, Zram


@dataclass
class BenchRow:
    target: str  # "pyzram" or "kernel"
    algorithm: str
    bs: int
    pages: int
    write_pages_s: float
    read_pages_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def _measure(dev, setup, data: bytes, bs: int, repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` write and read rates; ``setup`` re-creates the device state."""
    n = len(data) // PAGE_SIZE
    mv = memoryview(data)
    best_w = best_r = float("inf")
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        for off in range(0, len(data), bs):
            dev.pwrite(mv[off : off + bs], off)
        t1 = time.perf_counter()
        for off in range(0, len(data), bs):
            dev.pread(min(bs, len(data) - off), off)
        t2 = time.perf_counter()
        best_w, best_r = min(best_w, t1 - t0), min(best_r, t2 - t1)
    return n / best_w, n / best_r


def bench_zram(
    pages: np.ndarray,
    algorithms: list[str],
    bs_list: list[int],
    repeat: int = 3,
    kernel: bool = True,
) -> list[BenchRow]:
    """Measure pyzram (and the host kernel when available) for each algorithm and bs."""
    from pyzram.host.kernel_zram import KernelZram, unavailable_reason

    data = np.ascontiguousarray(pages).tobytes()
    n = len(pages)
    disksize = str(max(n, 64) * PAGE_SIZE)
    rows: list[BenchRow] = []
    cfg = ZramConfig.from_running_kernel() if kernel and not unavailable_reason() else None
    for algo in algorithms:
        for bs in bs_list:
            dev = Zram()

            def setup_ours(dev=dev, algo=algo) -> None:
                dev.sysfs["reset"] = "1"
                dev.sysfs["comp_algorithm"] = algo
                dev.sysfs["disksize"] = disksize

            w, r = _measure(dev, setup_ours, data, bs, repeat)
            rows.append(BenchRow("pyzram", algo, bs, n, w, r))
            if cfg is not None and algo in cfg.backends:
                with KernelZram() as k:

                    def setup_kernel(k=k, algo=algo) -> None:
                        k.close_dev()
                        k.write_attr("reset", "1")
                        k.write_attr("comp_algorithm", algo)
                        k.write_attr("disksize", disksize)

                    w, r = _measure(k, setup_kernel, data, bs, repeat)
                rows.append(BenchRow("kernel", algo, bs, n, w, r))
    return rows


# -- pyzram bench swap -------------------------------------------------------------------


@dataclass
class SwapBenchRow:
    """One swap path's figures (pages/s; batches and bios per run)."""

    path: str  # "swap_ops" (the seed) or "bio" (swap_bdev_ops over zram's bio path)
    algorithm: str
    pages: int
    swapout_pages_s: float
    swapin_batched_pages_s: float  # 32-folio read batches (swapoff, madvise WILLNEED)
    swapin_fault_pages_s: float  # one folio per batch (SWP_SYNCHRONOUS_IO fault path)
    write_batches: int
    read_batches: int
    bios: int
    intact: bool
    py_us_per_page_beyond_codec: float

    def as_dict(self) -> dict:
        return asdict(self)


def _swap_run(
    pages: np.ndarray,
    algorithm: str,
    path: str,
    fault: bool = True,
    config: ZramConfig | None = None,
) -> dict:
    """Swap a process's pages out and back in through the swap core on a fresh device.

    The pages are faulted in (untimed), reclaimed (``shrink_inactive_list``,
    32 pages a batch; timed: ``out``), faulted back one by one
    (``do_swap_page``, one folio per read batch on zram; timed:
    ``in_fault``), reclaimed again (untimed) and brought back by ``swapoff``
    (32-folio read batches; timed: ``in_batched``).  ``fault=False`` skips
    the fault pass and its second reclaim (``in_fault`` is then 0.0);
    ``config`` picks the device profile (default: the experiment profile).
    Batches and bios count the timed passes.  Shared by ``pyzram bench
    swap`` and ``pyzram bench``.
    """
    from pyzram.mm.swapfile import swapoff
    from pyzram.tools.bench.table import process, reclaim_all, swap_area

    n = len(pages)
    config = config or ZramConfig()
    with swap_area(n, algorithm, path, config) as (m, dev, si):
        mm = process(m, pages)
        for vpn in range(n):
            mm.do_anonymous_page(vpn)
        ev, bios = m.vm_events, dev.disk.bio_stats
        t0 = time.perf_counter()
        reclaim_all(mm)
        t_out = time.perf_counter() - t0
        write_batches, untimed_bios = ev["nrswpout"], 0
        intact = True
        dt_fault = 0.0
        if fault:
            t = time.perf_counter()
            got = [mm.do_swap_page(vpn) for vpn in range(n)]
            dt_fault = time.perf_counter() - t
            intact = all(bytes(g.data) == pages[i].tobytes() for i, g in enumerate(got))
            del got
            before = sum(bios.values())
            reclaim_all(mm)
            untimed_bios = sum(bios.values()) - before
        t = time.perf_counter()
        swapoff(si)
        dt_batched = time.perf_counter() - t
        intact = intact and all(bytes(mm.present[i].data) == pages[i].tobytes() for i in range(n))
        return {
            "out": t_out,
            "in_batched": dt_batched,
            "in_fault": dt_fault,
            "write_batches": write_batches,
            "read_batches": ev["nrswpin"],
            "bios": sum(bios.values()) - untimed_bios,
            "intact": intact,
        }


def _codec_seconds(pages: np.ndarray, algorithm: str) -> float:
    """Time of the codec alone over the pages: each page compressed into a stream
    buffer and decompressed back, as zram calls the backend."""
    dev = Zram()
    dev.sysfs["comp_algorithm"] = algorithm
    dev.sysfs["disksize"] = str(len(pages) * PAGE_SIZE)
    backend = dev.comps[0].backend
    stride = 2 * PAGE_SIZE
    dst = bytearray(len(pages) * stride)
    view = memoryview(dst)
    page = bytearray(PAGE_SIZE)
    t = time.perf_counter()
    sizes = [
        backend.compress_into(pages[i].data, view[i * stride : (i + 1) * stride])
        for i in range(len(pages))
    ]
    t1 = time.perf_counter()
    for i, size in enumerate(sizes):
        backend.decompress_into(dst, i * stride, size, page)
    return (t1 - t) + (time.perf_counter() - t1)


def bench_swap(
    pages: np.ndarray, algorithm: str = "lzo-rle", repeat: int = 3
) -> list[SwapBenchRow]:
    """Swap-out and swap-in of the same pages through both paths, best of ``repeat``."""
    rows = []
    codec = min(_codec_seconds(pages, algorithm) for _ in range(repeat))
    n = len(pages)
    for path in ("swap_ops", "bio"):
        runs = [_swap_run(pages, algorithm, path) for _ in range(repeat)]
        best = {k: min(r[k] for r in runs) for k in ("out", "in_batched")}
        best["in_fault"] = min(r["in_fault"] for r in runs)
        last = runs[-1]
        beyond = (best["out"] + best["in_batched"] - codec) / n * 1e6
        rows.append(
            SwapBenchRow(
                path,
                algorithm,
                n,
                n / best["out"],
                n / best["in_batched"],
                n / best["in_fault"],
                last["write_batches"],
                last["read_batches"],
                last["bios"],
                all(r["intact"] for r in runs),
                beyond,
            )
        )
    return rows


# -- pyzram bench codecs -----------------------------------------------------------------


@dataclass
class CodecBenchRow:
    """One codec figure: pages/s over the same pages."""

    what: str  # e.g. "pyzram lz4 batch, 1 thread"
    compress_pages_s: float | None
    decompress_pages_s: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _kcodec_rows(algo: str, pages: np.ndarray, repeat: int) -> list[CodecBenchRow]:
    """Our C codec on the pages: one batch call, then the batch split over two threads."""
    import threading

    from pyzram import _kcodec

    n = len(pages)
    dst = np.empty(n * 2 * PAGE_SIZE, dtype=np.uint8)
    sizes = np.empty(n, dtype=np.int32)
    tc = _best(lambda: _kcodec.compress_batch(algo, pages, n, dst, sizes), repeat)
    out = np.empty((n, PAGE_SIZE), dtype=np.uint8)
    res = np.empty(n, dtype=np.int32)
    offs = np.arange(n, dtype=np.int64) * 2 * PAGE_SIZE
    src = dst.tobytes()
    td = _best(lambda: _kcodec.decompress_batch(algo, src, offs, sizes, n, out, res), repeat)
    half = n // 2

    def two() -> None:
        ts = [
            threading.Thread(
                target=_kcodec.compress_batch,
                args=(algo, pages[a:b], b - a, dst[a * 8192 : b * 8192], sizes[a:b]),
            )
            for a, b in ((0, half), (half, n))
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    return [
        CodecBenchRow(f"pyzram {algo} batch, 1 thread", n / tc, n / td),
        CodecBenchRow(f"pyzram {algo} batch, 2 threads", n / _best(two, repeat), None),
    ]


def python_codec_rows(pages: np.ndarray, repeat: int = 3) -> list[CodecBenchRow]:
    """python-lz4 and python-lzo loops (one call per page) on the pages: the references."""
    import lz4.block

    pages = np.ascontiguousarray(pages)
    n = len(pages)
    blobs = [pages[i].tobytes() for i in range(n)]
    rows: list[CodecBenchRow] = []
    comp = [lz4.block.compress(b, store_size=False) for b in blobs]
    rows.append(
        CodecBenchRow(
            "python-lz4 loop (liblz4, not kernel-exact)",
            n / _best(lambda: [lz4.block.compress(b, store_size=False) for b in blobs], repeat),
            n
            / _best(
                lambda: [lz4.block.decompress(c, uncompressed_size=PAGE_SIZE) for c in comp],
                repeat,
            ),
        )
    )
    try:
        import lzo  # python-lzo, optional

        lcomp = [lzo.compress(b, 1, False) for b in blobs]
        rows.append(
            CodecBenchRow(
                "python-lzo lzo1x_1 loop (liblzo2, not kernel-exact)",
                n / _best(lambda: [lzo.compress(b, 1, False) for b in blobs], repeat),
                n / _best(lambda: [lzo.decompress(c, False, PAGE_SIZE) for c in lcomp], repeat),
            )
        )
    except ImportError:
        rows.append(CodecBenchRow("python-lzo loop (not installed)", None, None))
    return rows


def bench_codecs(pages: np.ndarray, repeat: int = 3, kernel: bool = True) -> list[CodecBenchRow]:
    """Our batch codecs (1 and 2 threads), python-lz4 / python-lzo loops, host zram."""
    pages = np.ascontiguousarray(pages)
    rows: list[CodecBenchRow] = []
    for algo in ("lz4", "lzo", "lzo-rle"):
        rows += _kcodec_rows(algo, pages, repeat)
    rows += python_codec_rows(pages, repeat)
    if kernel:
        for r in bench_zram(pages, ["lz4", "lzo", "lzo-rle"], [131072], repeat, kernel=True):
            if r.target == "kernel":
                rows.append(
                    CodecBenchRow(
                        f"host kernel zram {r.algorithm}, O_DIRECT 128 KiB (write/read)",
                        r.write_pages_s,
                        r.read_pages_s,
                    )
                )
    return rows
