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
