"""``pyzram run``: a workload under a memory limit, swapping to zram, and its report.

One process (:class:`~pyzram.mm.vmscan.AddressSpace`) whose pages hold the
workload's real bytes runs under a memcg limit; its first touch of every
page, then an access pattern, fault pages in; reclaim writes folios out
through the swap core to a zram device — through zram's ``swap_ops`` (the
seed) or through bios (``io_path="bio"``) — and faults read them back.
At the end every page is read once more and compared with what the
workload last wrote (``intact``).

The report has the device's kernel-format ``mm_stat``/``io_stat``/``bd_stat``,
the /proc/vmstat deltas, compression ratio and memory saved, swap-out and
swap-in pages/s, and latency percentiles of the submitted batches.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from pyzram.block.bio import bio_stats
from pyzram.ctl import device_state
from pyzram.mm.folio import PAGE_SIZE
from pyzram.mm.swap import vm_events
from pyzram.mm.swapfile import mkswap, swapoff, swapon
from pyzram.mm.vmscan import AddressSpace, MemCgroup
from pyzram.zram.stat import MmStat
from pyzram.zram.swap import zram_init
from pyzram.zram.zram_drv import Zram


@dataclass
class RunReport:
    """What ``pyzram run`` prints (``--json`` gives this as a dict)."""

    io_path: str
    algorithm: str
    pages: int
    accesses: int
    mem_limit_pages: int
    mm_stat: str
    io_stat: str
    bd_stat: str | None
    vmstat: dict[str, int]
    compression_ratio: float | None
    memory_saved_bytes: int
    swapout_pages_s: float  # pages / time spent in submit_write (the device path)
    swapin_pages_s: float  # pages / time spent in submit_read
    write_batch_latency_us: dict[str, float]
    read_batch_latency_us: dict[str, float]
    intact: bool
    seconds: float
    bios: int
    device: dict = field(default_factory=dict)  # pyzram.ctl.device_state at the end
    timeline: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    a = np.array(samples) * 1e6
    return {
        "n": float(len(a)),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


def _timed(fn: Callable, sink: list[float], pages: list[int]) -> Callable:
    def wrapper(ctx) -> None:
        n = ctx.sio.len // PAGE_SIZE
        t = time.perf_counter()
        fn(ctx)
        sink.append(time.perf_counter() - t)
        pages.append(n)

    return wrapper


def run_workload(
    pages: np.ndarray,
    *,
    algorithm: str = "lzo-rle",
    mem_limit_pages: int | None = None,
    disksize: int | None = None,
    io_path: str = "swap_ops",
    pattern: str = "zipf",
    accesses: int | None = None,
    write_ratio: float = 0.1,
    seed: int = 0,
    backing_dev: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Run the workload and return its report (see the module docstring)."""
    from pyzram.workload.patterns import make_pattern

    if io_path not in ("swap_ops", "bio"):
        raise ValueError(f"io_path must be swap_ops or bio, not {io_path!r}")
    n = len(pages)
    if n == 0:
        raise ValueError("no pages to run")
    limit = mem_limit_pages if mem_limit_pages is not None else max(32, n // 4)
    zram_init()
    dev = Zram()
    if backing_dev:
        dev.sysfs["backing_dev"] = backing_dev
    dev.sysfs["comp_algorithm"] = algorithm
    dev.sysfs["disksize"] = str(disksize if disksize else (n + 64) * PAGE_SIZE)
    mkswap(dev.disk)
    si = swapon(dev.disk, use_block_ops=(io_path == "swap_ops"))
    wlat: list[float] = []
    rlat: list[float] = []
    wpages: list[int] = []
    rpages: list[int] = []
    si.ops = dataclasses.replace(
        si.ops,
        submit_write=_timed(si.ops.submit_write, wlat, wpages),
        submit_read=_timed(si.ops.submit_read, rlat, rpages),
    )
    vm_events.reset()
    bio_stats.clear()
    memcg = MemCgroup(limit)
    expected = [pages[i].tobytes() for i in range(n)]
    mm = AddressSpace(n, memcg, lambda vpn: expected[vpn])
    acc = make_pattern(
        pattern, n, accesses if accesses is not None else 2 * n, seed=seed, write_ratio=write_ratio
    )
    rng = np.random.default_rng(seed)
    timeline: list[dict[str, float]] = []
    total = n + len(acc)
    t0 = time.perf_counter()
    try:

        def sample(step: int) -> None:
            st = dev.mm_stat()
            timeline.append(
                {
                    "t": time.perf_counter() - t0,
                    "mem_used_total": st.mem_used_total,
                    "orig_data_size": st.orig_data_size,
                    "compr_data_size": st.compr_data_size,
                    "pswpout": vm_events["pswpout"],
                    "pswpin": vm_events["pswpin"],
                }
            )
            if progress:
                progress(step, total)

        step = 0
        for vpn in range(n):  # the process builds its memory
            mm.touch(vpn)
            step += 1
            if step % 512 == 0:
                sample(step)
        for vpn, write in acc:
            if write:  # new contents from elsewhere in the workload
                new = expected[int(rng.integers(0, n))]
                expected[vpn] = new
                mm.touch(vpn, data=new)
            else:
                mm.touch(vpn)
            step += 1
            if step % 512 == 0:
                sample(step)
        seconds = time.perf_counter() - t0
        # The check reads every page once more (faulting the swapped ones back):
        # the device's figures below are those at the end of it.
        intact = all(mm.read(vpn) == expected[vpn] for vpn in range(n))
        report_stat = dev.mm_stat()
        mm_text, io_text, bd_text = dev.sysfs["mm_stat"], dev.sysfs["io_stat"], dev.bd_stat()
        counts = dict(vm_events.counts)
        device = device_state(dev, mountpoint="[SWAP]")
        bios = sum(bio_stats.values())
    finally:
        try:  # each swapped page has one reference, its PTE: the process exits
            swapoff(si, unuse=lambda entry, folio: 1)
        finally:
            dev.sysfs["reset"] = "1"
    return RunReport(
        io_path=io_path,
        algorithm=algorithm,
        pages=n,
        accesses=len(acc),
        mem_limit_pages=limit,
        mm_stat=mm_text,
        io_stat=io_text,
        bd_stat=bd_text if backing_dev else None,
        vmstat=counts,
        compression_ratio=_ratio(report_stat),
        memory_saved_bytes=max(0, report_stat.orig_data_size - report_stat.mem_used_total),
        swapout_pages_s=sum(wpages) / sum(wlat) if wlat else 0.0,
        swapin_pages_s=sum(rpages) / sum(rlat) if rlat else 0.0,
        write_batch_latency_us=_percentiles(wlat),
        read_batch_latency_us=_percentiles(rlat),
        intact=intact,
        seconds=seconds,
        bios=bios,
        device=device,
        timeline=timeline,
    )


def _ratio(st: MmStat) -> float | None:
    return st.orig_data_size / st.compr_data_size if st.compr_data_size else None
