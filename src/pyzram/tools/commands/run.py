"""``pyzram run``: a workload under a memory limit, swapping to zram, and its report.

One process (:class:`~pyzram.mm.vmscan.AddressSpace`) whose pages hold the
workload's real bytes runs under a memcg limit; its first touch of every
page, then an access pattern, fault pages in (as folios of ``folio_order``
where asked); a write stores another page's original bytes
(:func:`~pyzram.workload.patterns.write_sources`); reclaim writes folios out
through the swap core to a zram device — through zram's ``swap_ops`` (the
seed) or through bios (``io_path="bio"``) — and faults read them back.
At the end every page is read once more and compared with what the
workload last wrote (``intact``).

Post-processing policy, driven through the device's sysfs words as a user
(or a daemon such as Android's) would: with ``recompress`` (and a
``recompress_algo``, set as ``recomp_algorithm`` before ``disksize``) and/or
``writeback`` (a mode of ``writeback``; needs ``backing_dev``), the run
marks slots idle (``echo IDLE_AGE > idle``) before each step whose type
involves idle slots, then writes ``recompress`` and then ``writeback``
(recompression clears ZRAM_IDLE on the slots it touched, so idle is marked
again before the writeback), every ``pp_every`` reclaim batches during the
run, or once after the access pattern (before the final check) when
``pp_every`` is 0.  Both requests are also written once to the empty
device at setup, so a bad mode or parameter fails before the run.

The report has the device's kernel-format ``mm_stat``/``io_stat``/``bd_stat``,
the /proc/vmstat deltas and the per-size mTHP stats of the workload (fill
and pattern; the final check is not part of it), compression ratio and
memory saved, swapped pages/s of the workload, swap-out and swap-in
pages/s of the device path and the latency percentiles of its batches,
and what each post-processing step did.
"""

from __future__ import annotations

import errno
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.table import Table

from pyzram.lib.cmdline import parse_args
from pyzram.mm.folio import PAGE_SIZE
from pyzram.mm.machine import Machine
from pyzram.mm.swap import SWAPFILE_CLUSTER
from pyzram.mm.swapfile import mkswap, swapoff, swapon
from pyzram.mm.tlb import TLB_ENTRIES
from pyzram.mm.vmscan import AddressSpace, MemCgroup, mthp_size_name
from pyzram.tools import kcost
from pyzram.tools.commands.ctl import device_state
from pyzram.tools.common import (
    ALGO_HELP,
    DisksizeOpt,
    FolioOrderOpt,
    JsonOpt,
    LimitOpt,
    MemLimitOpt,
    MixOpt,
    MthpSwapinOpt,
    PageFileArg,
    PatternOpt,
    SeedOpt,
    Tlb2mEntriesOpt,
    TlbEntriesOpt,
    UsageError,
    console,
    frozen_heap,
    print_kernel_line,
    run_kwargs,
    workload_pages,
)
from pyzram.workload.replay import replay
from pyzram.zram import table as T
from pyzram.zram.stat import MmStat
from pyzram.zram.swap import zram_init
from pyzram.zram.zram_drv import Zram

if TYPE_CHECKING:
    from pyzram.workload.pages import PageSource

#: ``writeback`` modes (``echo MODE > /sys/block/zramN/writeback``).
WRITEBACK_MODES = ("idle", "huge", "huge_idle", "incompressible")
_IDLE_TYPES = ("idle", "huge_idle")
#: /proc/vmstat counters always in the report (others appear when they moved).
VMSTAT_KEYS = (
    "pgfault",
    "pgmajfault",
    "pswpin",
    "pswpout",
    "swpin_zero",
    "swpout_zero",
    "pgscan_anon",
    "pgsteal_anon",
    "pgactivate",
    "pgdeactivate",
    "workingset_refault_anon",
    "workingset_activate_anon",
    "thp_swpout",
    "thp_swpout_fallback",
)
#: ... and with zswap.
ZSWAP_VMSTAT_KEYS = ("zswpout", "zswpin", "zswpwb")


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
    vmstat: dict[str, int]  # /proc/vmstat deltas over fill + pattern (the check excluded)
    #: The data ratio: orig_data_size / compr_data_size, what the codec achieved
    #: (``mm_stat`` fields 1 / 2; None when nothing is stored).
    compression_ratio: float | None
    #: The memory ratio: orig_data_size / mem_used_total, what the memory holding the
    #: data achieved, zsmalloc's overhead included (zramctl's COMP-RATIO, DATA / TOTAL).
    memory_ratio: float | None
    memory_saved_bytes: int
    swapout_pages_s: float  # pages / time spent in submit_write (the device path)
    swapin_pages_s: float  # pages / time spent in submit_read
    write_batch_latency_us: dict[str, float]
    read_batch_latency_us: dict[str, float]
    intact: bool
    #: The measured window: the workload alone (fill + access pattern).
    seconds: float
    bios: int
    source: str = ""
    folio_order: int = 0
    mthp_swapin: bool = True
    #: The model CPU's data TLB size (``Machine.tlb_entries``), and its entries for
    #: 2 MiB mappings where they are apart (``Machine.tlb_2m_entries``; None: shared).
    tlb_entries: int = TLB_ENTRIES
    tlb_2m_entries: int | None = None
    #: (pswpout + pswpin) / seconds of the fill and the pattern (the final check excluded).
    swapped_pages_s: float = 0.0
    #: /sys/kernel/mm/transparent_hugepage/hugepages-<size>/stats deltas, per size.
    mthp: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Post-processing: one dict per step (when, what was asked, what it did).
    post_processing: list[dict] = field(default_factory=list)
    written_back_pages: int = 0  # bd_writes over the run's writeback steps
    recompressed_pages: int = 0  # slots a recompress step moved to a secondary algorithm
    device: dict = field(default_factory=dict)  # pyzram.tools.commands.ctl.device_state at the end
    #: The kernel's predicted CPU seconds for the run's swapping (pyzram.tools.kcost), and
    #: what it is made of.
    predicted_kernel_cpu_s: float = 0.0
    kernel_cpu: dict = field(default_factory=dict)
    timeline: list[dict[str, float]] = field(default_factory=list)
    #: What the user waited for: the device set up, the workload, the final check of
    #: every byte and the teardown (``run_workload`` from call to return) ...
    wall_seconds: float = 0.0
    #: ... plus making the pages (reading the page file, or generating the mix),
    #: which the command measures.
    pages_seconds: float = 0.0
    #: The swap area: "zram" (a zram device) or "file" (a swap file on the host's disk).
    area: str = "zram"
    #: zswap in front of the area (None: off): its parameters, its debugfs files and
    #: /proc/meminfo Zswap/Zswapped (kB) at the end of the workload.
    zswap: dict | None = None
    #: What holds the swapped data in memory at the end of the workload: zram's
    #: mem_used_total plus zswap's pool_total_size (bytes).
    memory_used_bytes: int = 0
    #: Pages written to a disk: pswpout to a swap file, zram's bd_writes to its
    #: backing device (zram itself is memory).
    disk_write_pages: int = 0

    @property
    def column(self) -> str:
        """The report's column name: the I/O path, the area, zswap."""
        name = self.io_path if self.area == "zram" else "swap file"
        return f"zswap + {name}" if self.zswap else name

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


def _slot_counts(dev: Zram) -> tuple[int, int]:
    """Slots stored by a secondary algorithm (priority > 0), and ZRAM_INCOMPRESSIBLE ones."""
    f = dev.table.flags_np
    prio = (f >> np.uint64(T.ZRAM_COMP_PRIORITY_BIT1)) & np.uint64(T.ZRAM_COMP_PRIORITY_MASK)
    return int(np.count_nonzero(prio)), int(np.count_nonzero(f & np.uint64(T.INCOMPRESSIBLE)))


def _bd_writes(dev: Zram) -> int:
    return int(dev.sysfs["bd_stat"].split()[2])


@dataclass(frozen=True)
class PostProcessing:
    """The run's post-processing policy (see the module docstring)."""

    writeback: str | None = None
    recompress: str | None = None
    idle_age: str = "all"
    every: int = 0

    @property
    def enabled(self) -> bool:
        return self.writeback is not None or self.recompress is not None

    def run(self, dev: Zram, access: int, batches: int) -> dict:
        """One post-processing step; OSErrors of the device (EAGAIN, ENOSPC, EIO ...)
        are recorded in the step, as a daemon would log them and go on."""
        ev: dict = {"access": access, "reclaim_batches": batches}
        t0 = time.perf_counter()
        if self.recompress is not None:
            rtype = dict(parse_args(self.recompress)).get("type")
            if rtype in _IDLE_TYPES:
                dev.sysfs["idle"] = self.idle_age
            st0 = dev.mm_stat()
            recomp0, incomp0 = _slot_counts(dev)
            step: dict = {"request": self.recompress}
            try:
                dev.sysfs["recompress"] = self.recompress
            except OSError as e:
                step["error"] = errno.errorcode.get(e.errno, str(e.errno))
            st1 = dev.mm_stat()
            recomp1, incomp1 = _slot_counts(dev)
            step.update(
                pages=recomp1 - recomp0,
                incompressible=incomp1 - incomp0,
                compr_data_size_before=st0.compr_data_size,
                compr_data_size_after=st1.compr_data_size,
            )
            ev["recompress"] = step
        if self.writeback is not None:
            if self.writeback in _IDLE_TYPES:
                dev.sysfs["idle"] = self.idle_age
            bd0 = _bd_writes(dev)
            step = {"request": self.writeback}
            try:
                dev.sysfs["writeback"] = self.writeback
            except OSError as e:
                step["error"] = errno.errorcode.get(e.errno, str(e.errno))
            step["pages"] = _bd_writes(dev) - bd0
            ev["writeback"] = step
        ev["seconds"] = time.perf_counter() - t0
        return ev


def default_disksize(nr_pages: int) -> int:
    """The default ``disksize``: room for every page of the workload, in whole swap
    clusters (512 slots), plus the cluster that slot 0 (the swap header) makes an
    order-0 one, so that large folios find free clusters of their own."""
    return (-(-nr_pages // SWAPFILE_CLUSTER) + 1) * SWAPFILE_CLUSTER * PAGE_SIZE


def swap_uuid(seed: int) -> bytes:
    """The swap header's UUID of a run with ``seed`` (``mkswap -U``): the header is a
    page zram stores, so a random UUID would change ``compr_data_size`` by a byte or
    two from run to run; the same on the host kernel's side of ``bench run``."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"pyzram-run-seed-{seed}").bytes


def _check(mm: AddressSpace, pages, exp, folio_order: int, progress, step: int, total: int) -> bool:
    """The final check: every page read once more (faulting the swapped ones back)
    against what was last written, each folio given back once its pages are
    checked (``MADV_DONTNEED``), so the check swaps nothing out."""
    n = len(exp)
    intact = True
    nr = 1 << folio_order  # folios are naturally aligned: whole ones at a time
    for base in range(0, n, nr):
        end = min(base + nr, n)
        for vpn in range(base, end):
            intact = mm.read(vpn) == pages[exp[vpn]].tobytes() and intact
        mm.zap_pte_range(base, end)
        if progress and end % 4096 < nr:
            progress(step + end, total)
    return intact


def _workload_counts(m: Machine) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The vmstat counters ``run`` reports (zswap's when it is on) and the mTHP stats
    per size, from the machine's vm events."""
    ev = m.vm_events
    counts = dict.fromkeys(VMSTAT_KEYS + (ZSWAP_VMSTAT_KEYS if m.zswap.enabled else ()), 0)
    counts.update((k, v) for k, v in ev.counts.items() if v)
    mthp: dict[str, dict[str, int]] = {}
    for (order, name), v in sorted(ev.mthp.items()):
        if v:
            mthp.setdefault(mthp_size_name(order), {})[name] = v
    return counts, mthp


def run_workload(
    pages: PageSource,
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
    folio_order: int = 0,
    mthp_swapin: bool = True,
    writeback: str | None = None,
    idle_age: str | int = "all",
    pp_every: int = 0,
    recompress_algo: str | None = None,
    recompress: str | None = None,
    source: str = "",
    progress: Callable[[int, int], None] | None = None,
    zswap: str | None = None,
    zswap_params: dict[str, str] | None = None,
    totalram_pages: int | None = None,
    swap_file: str | Path | None = None,
    tlb_entries: int = TLB_ENTRIES,
    tlb_2m_entries: int | None = None,
) -> RunReport:
    """Run the workload and return its report (see the module docstring).

    ``pages`` is the page source (``(N, 4096)`` uint8); ``folio_order`` the
    folio size anonymous faults try (0..9); ``writeback`` one of
    :data:`WRITEBACK_MODES`; ``recompress`` the parameters written to
    ``recompress`` (default ``type=idle`` when only ``recompress_algo`` is
    given); ``idle_age`` what is written to ``idle`` first (``all`` or
    seconds); ``pp_every`` the post-processing period in reclaim batches
    (0: once, after the access pattern).  ``zswap`` (a compressor) puts
    zswap in front of the area (``enabled`` Y, ``compressor`` ZSWAP, then
    ``zswap_params``); ``totalram_pages`` is the machine's RAM, the base of
    ``max_pool_percent``; ``swap_file`` swaps to that file (made of
    ``disksize`` bytes) instead of zram.  ``tlb_entries`` and
    ``tlb_2m_entries`` size the model CPU's TLB (:class:`Machine`).
    ``ValueError`` for inconsistent options, the device's ``OSError`` for a
    bad sysfs word.
    """
    from pyzram.workload.patterns import make_pattern, write_sources

    if io_path not in ("swap_ops", "bio"):
        raise ValueError(f"io_path must be swap_ops or bio, not {io_path!r}")
    if writeback is not None and writeback not in WRITEBACK_MODES:
        raise ValueError(f"writeback mode must be one of {', '.join(WRITEBACK_MODES)}")
    if writeback is not None and not backing_dev:
        raise ValueError("writeback needs a backing device (--backing-dev FILE)")
    if recompress is not None and not recompress_algo:
        raise ValueError("recompress needs a secondary algorithm (--recompress-algorithm ALGO)")
    if recompress_algo and recompress is None:
        recompress = "type=idle"
    if pp_every < 0:
        raise ValueError(f"the post-processing period must not be negative, got {pp_every}")
    if swap_file is not None and (backing_dev or writeback or recompress or recompress_algo):
        raise ValueError("a swap file has no zram: no backing_dev, writeback or recompress")
    if zswap_params and not zswap:
        raise ValueError("zswap parameters need zswap (a compressor)")
    t_call = time.perf_counter()
    n = len(pages)
    if n == 0:
        raise ValueError("no pages to run")
    limit = mem_limit_pages if mem_limit_pages is not None else max(32, n // 4)
    pp = PostProcessing(writeback, recompress, str(idle_age), pp_every)
    mkw = {"totalram_pages": totalram_pages} if totalram_pages else {}
    m = Machine(
        swap_ops_series=io_path == "swap_ops",
        tlb_entries=tlb_entries,
        tlb_2m_entries=tlb_2m_entries,
        **mkw,
    )
    if zswap:  # the parameters first, then enabled (a bad word fails before the run)
        m.zswap.param_write("compressor", zswap)
        for name, value in (zswap_params or {}).items():
            m.zswap.param_write(name, value)
        m.zswap.param_write("enabled", "Y")
    memcg = MemCgroup(m, limit)
    page_of = pages.__getitem__  # page vpn of the source (an array's row, or made on demand)
    mm = AddressSpace(n, memcg, page_of, folio_order=folio_order, mthp_swapin=mthp_swapin)
    acc = make_pattern(
        pattern, n, accesses if accesses is not None else 2 * n, seed=seed, write_ratio=write_ratio
    )
    src = write_sources(acc, n, seed)
    if swap_file is not None:
        return _run_on_swap_file(
            m, mm, pages, acc, src, Path(swap_file), disksize or default_disksize(n),
            io_path=io_path, algorithm=algorithm, limit=limit, source=source,
            folio_order=folio_order, mthp_swapin=mthp_swapin, progress=progress, t_call=t_call,
        )  # fmt: skip
    zram_init(m)
    dev = Zram()
    if backing_dev:
        dev.sysfs["backing_dev"] = backing_dev
    dev.sysfs["comp_algorithm"] = algorithm
    if recompress_algo:
        dev.sysfs["recomp_algorithm"] = f"algo={recompress_algo}"
    dev.sysfs["disksize"] = str(disksize if disksize else default_disksize(n))
    try:
        if pp.enabled:  # check the requests on the empty device: errors before the run
            dev.sysfs["idle"] = pp.idle_age
            if recompress is not None:
                dev.sysfs["recompress"] = recompress
            if writeback is not None:
                dev.sysfs["writeback"] = writeback
        mkswap(dev.disk, uuid=swap_uuid(seed))
    except BaseException:
        dev.sysfs["reset"] = "1"
        raise
    si = swapon(m, dev.disk)
    wlat: list[float] = []
    rlat: list[float] = []
    wpages: list[int] = []
    rpages: list[int] = []
    # exp[vpn]: the page of the source whose original bytes page vpn holds now.
    exp = np.arange(n, dtype=np.int64)
    # The samplers keep a page by the source page it holds: exp[] of the page whose
    # PTE holds its slot (the area's reverse map).
    wsample = kcost.PageSampler(exp, si.rmap_vpn, page_of, seed)
    rsample = kcost.PageSampler(exp, si.rmap_vpn, page_of, seed + 1)
    si.ops = kcost.TimedOps(
        si.ops, wlat, wpages, rlat, rpages, write_sampler=wsample, read_sampler=rsample
    )
    vm_events = m.vm_events
    bio_stats = dev.disk.bio_stats
    bios_before = sum(bio_stats.values())  # mkswap's and swapon's header I/O
    timeline: list[dict[str, float]] = []
    events: list[dict] = []
    total = n + len(acc) + n  # the fill, the pattern, the final check
    t0 = time.perf_counter()
    try:

        def sample(step: int, phase: str) -> None:
            st = dev.mm_stat()
            timeline.append(
                {
                    "t": time.perf_counter() - t0,
                    "phase": phase,
                    "mem_used_total": st.mem_used_total + m.zswap.zswap_total_pages() * PAGE_SIZE,
                    "orig_data_size": st.orig_data_size + m.zswap.stored_pages * PAGE_SIZE,
                    "compr_data_size": st.compr_data_size,
                    "pswpout": vm_events["pswpout"],
                    "pswpin": vm_events["pswpin"],
                }
            )
            if progress:
                progress(step, total)

        next_pp = pp.every if pp.enabled and pp.every else None

        def post_process(step: int) -> None:
            nonlocal next_pp
            if next_pp is not None and memcg.nr_reclaim_batches >= next_pp:
                events.append(pp.run(dev, step, memcg.nr_reclaim_batches))
                next_pp = memcg.nr_reclaim_batches + pp.every

        with frozen_heap():
            step = replay(
                mm, page_of, acc, src, exp, sample, post_process if next_pp is not None else None
            )
        seconds = time.perf_counter() - t0
        # The vmstat deltas and swapped pages/s are those of the workload (fill +
        # pattern), as on the kernel side of `bench run`: the check is ours.
        # So are the device path's batch figures: the timers keep filling the
        # original lists during the check, these copies stop here.
        wlat, rlat, wpages, rpages = list(wlat), list(rlat), list(wpages), list(rpages)
        wsample.active = rsample.active = False
        counts, mthp = _workload_counts(m)
        if pp.enabled and not pp.every:
            events.append(pp.run(dev, step, memcg.nr_reclaim_batches))
        # The device's figures are those at the end of the workload (and of its
        # post-processing), as `bench run` reads the kernel's; then the check.
        report_stat = dev.mm_stat()
        zswap_state = zswap_report(m) if zswap else None
        mm_text, io_text, bd_text = dev.sysfs["mm_stat"], dev.sysfs["io_stat"], dev.bd_stat()
        device = device_state(dev, mountpoint="[SWAP]")
        bios = sum(bio_stats.values()) - bios_before
        with frozen_heap():
            intact = _check(mm, pages, exp, folio_order, progress, step, total)
    finally:
        try:  # the process exits (exit_mmap), then swapoff
            mm.zap_pte_range(0, n)
            swapoff(si)
        finally:
            m.close()
            dev.sysfs["reset"] = "1"
    recompressed = sum(e.get("recompress", {}).get("pages", 0) for e in events)
    cpu = kcost.predict(
        writes=wsample,
        reads=rsample,
        algorithm=algorithm,
        huge_class_size=dev.huge_class_size,
        major_faults=counts.get("pgmajfault", 0),
        recompressed_pages=recompressed,
        recompress_algo=recompress_algo,
    )
    wall = time.perf_counter() - t_call
    pool = zswap_state["debugfs"] if zswap_state else {}
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
        memory_ratio=_memory_ratio(report_stat)
        if not zswap_state
        else (report_stat.orig_data_size + pool["stored_pages"] * PAGE_SIZE)
        / (report_stat.mem_used_total + pool["pool_total_size"] or 1),
        memory_saved_bytes=max(
            0,
            report_stat.orig_data_size
            - report_stat.mem_used_total
            + pool.get("stored_pages", 0) * PAGE_SIZE
            - pool.get("pool_total_size", 0),
        ),
        swapout_pages_s=sum(wpages) / sum(wlat) if wlat else 0.0,
        swapin_pages_s=sum(rpages) / sum(rlat) if rlat else 0.0,
        write_batch_latency_us=_percentiles(wlat),
        read_batch_latency_us=_percentiles(rlat),
        intact=intact,
        seconds=seconds,
        bios=bios,
        source=source,
        folio_order=folio_order,
        mthp_swapin=mthp_swapin,
        tlb_entries=m.tlb_entries,
        tlb_2m_entries=m.tlb_2m_entries,
        swapped_pages_s=swapped_pages(counts) / seconds if seconds else 0.0,
        mthp=mthp,
        post_processing=events,
        written_back_pages=sum(e.get("writeback", {}).get("pages", 0) for e in events),
        recompressed_pages=recompressed,
        device=device,
        predicted_kernel_cpu_s=cpu["seconds"],
        kernel_cpu=cpu,
        timeline=timeline,
        wall_seconds=wall,
        zswap=zswap_state,
        memory_used_bytes=report_stat.mem_used_total + pool.get("pool_total_size", 0),
        disk_write_pages=sum(e.get("writeback", {}).get("pages", 0) for e in events),
    )


def swapped_pages(counts: dict[str, int]) -> int:
    """Pages swapped out and in: to and from the area (``pswpout``, ``pswpin``) and
    zswap (``zswpout``, ``zswpin``); a page zswap wrote back (``zswpwb``) went out
    once, though both zswap and the area counted it."""
    g = counts.get
    return g("pswpout", 0) + g("pswpin", 0) + g("zswpout", 0) + g("zswpin", 0) - g("zswpwb", 0)


def zswap_report(m: Machine) -> dict:
    """zswap's parameters, debugfs files and meminfo lines, as the host shows them."""
    from pyzram.mm.zswap import PARAMETERS

    zs = m.zswap
    return {
        "parameters": {name: zs.param_read(name).strip() for name in PARAMETERS},
        "debugfs": zs.debugfs(),
        "meminfo": zs.meminfo(),
    }


def _run_on_swap_file(
    m: Machine,
    mm: AddressSpace,
    pages: PageSource,
    acc,
    src: np.ndarray,
    path: Path,
    size: int,
    *,
    io_path: str,
    algorithm: str,
    limit: int,
    source: str,
    folio_order: int,
    mthp_swapin: bool,
    progress: Callable[[int, int], None] | None,
    t_call: float,
) -> RunReport:
    """``run_workload`` on a swap file (``swap_fs_ops``): the same fill, pattern and
    check; no zram, so no mm_stat: memory is zswap's pool, the disk gets ``pswpout``."""
    n = len(pages)
    with open(path, "wb") as f:  # a swap file has every block allocated
        f.truncate(0)
        chunk = bytes(1 << 20)
        left = size
        while left > 0:
            left -= f.write(chunk[: min(left, len(chunk))])
    try:
        mkswap(path)
        si = swapon(m, path)
        wlat: list[float] = []
        rlat: list[float] = []
        wpages: list[int] = []
        rpages: list[int] = []
        si.ops = kcost.TimedOps(si.ops, wlat, wpages, rlat, rpages)
        vm_events = m.vm_events
        zs = m.zswap
        exp = np.arange(n, dtype=np.int64)
        timeline: list[dict[str, float]] = []
        total = n + len(acc) + n
        t0 = time.perf_counter()

        def sample(step: int, phase: str) -> None:
            timeline.append(
                {
                    "t": time.perf_counter() - t0,
                    "phase": phase,
                    "mem_used_total": zs.zswap_total_pages() * PAGE_SIZE,
                    "orig_data_size": zs.stored_pages * PAGE_SIZE,
                    "compr_data_size": 0,
                    "pswpout": vm_events["pswpout"],
                    "pswpin": vm_events["pswpin"],
                }
            )
            if progress:
                progress(step, total)

        try:
            with frozen_heap():
                step = replay(mm, mm.source, acc, src, exp, sample)
            seconds = time.perf_counter() - t0
            wlat, rlat, wpages, rpages = list(wlat), list(rlat), list(wpages), list(rpages)
            counts, mthp = _workload_counts(m)
            zswap_state = zswap_report(m) if zs.enabled else None
            with frozen_heap():
                intact = _check(mm, pages, exp, folio_order, progress, step, total)
        finally:
            try:
                mm.zap_pte_range(0, n)
                swapoff(si)
            finally:
                m.close()
    finally:
        path.unlink(missing_ok=True)
    pool = zswap_state["debugfs"] if zswap_state else {}
    pool_bytes = pool.get("pool_total_size", 0)
    stored = pool.get("stored_pages", 0) * PAGE_SIZE
    return RunReport(
        io_path=io_path,
        algorithm=zswap_state["parameters"]["compressor"] if zswap_state else algorithm,
        pages=n,
        accesses=len(acc),
        mem_limit_pages=limit,
        mm_stat="",
        io_stat="",
        bd_stat=None,
        vmstat=counts,
        compression_ratio=None,
        memory_ratio=stored / pool_bytes if pool_bytes else None,
        memory_saved_bytes=max(0, stored - pool_bytes),
        swapout_pages_s=sum(wpages) / sum(wlat) if wlat else 0.0,
        swapin_pages_s=sum(rpages) / sum(rlat) if rlat else 0.0,
        write_batch_latency_us=_percentiles(wlat),
        read_batch_latency_us=_percentiles(rlat),
        intact=intact,
        seconds=seconds,
        bios=0,
        source=source,
        folio_order=folio_order,
        mthp_swapin=mthp_swapin,
        tlb_entries=m.tlb_entries,
        tlb_2m_entries=m.tlb_2m_entries,
        swapped_pages_s=swapped_pages(counts) / seconds if seconds else 0.0,
        mthp=mthp,
        timeline=timeline,
        wall_seconds=time.perf_counter() - t_call,
        area="file",
        zswap=zswap_state,
        memory_used_bytes=pool_bytes,
        disk_write_pages=counts.get("pswpout", 0),
    )


def _ratio(st: MmStat) -> float | None:
    """The data ratio: orig_data_size / compr_data_size."""
    return st.orig_data_size / st.compr_data_size if st.compr_data_size else None


def _memory_ratio(st: MmStat) -> float | None:
    """The memory ratio: orig_data_size / mem_used_total (zramctl's COMP-RATIO)."""
    return st.orig_data_size / st.mem_used_total if st.mem_used_total else None


# -- the command ------------------------------------------------------------------------------


def _report_table(reports) -> Table:
    """The run's figures, one column per report (``run``: one; ``compare``: two)."""
    what = "swap" if any(r.zswap or r.area != "zram" for r in reports) else "swap on zram"
    t = Table(title=f"{what}: {reports[0].source}" if reports[0].source else what)
    t.add_column("")
    for r in reports:
        t.add_column(r.column, justify="right")
    rows = [
        ("pages / accesses", lambda r: f"{r.pages:,} / {r.accesses:,}"),
        ("mem limit (pages)", lambda r: f"{r.mem_limit_pages:,}"),
        (
            "pswpout / pswpin",
            lambda r: f"{r.vmstat.get('pswpout', 0):,} / {r.vmstat.get('pswpin', 0):,}",
        ),
        (
            "write / read batches",
            lambda r: f"{r.vmstat.get('nrswpout', 0):,} / {r.vmstat.get('nrswpin', 0):,}",
        ),
        ("bios", lambda r: f"{r.bios:,}"),
        ("major faults", lambda r: f"{r.vmstat.get('pgmajfault', 0):,}"),
        (
            "data ratio (orig_data_size / compr_data_size)",
            lambda r: f"{r.compression_ratio:.2f}" if r.compression_ratio else "-",
        ),
        (
            "memory ratio (orig_data_size / mem_used_total)",
            lambda r: f"{r.memory_ratio:.2f}" if r.memory_ratio else "-",
        ),
        ("memory saved", lambda r: f"{r.memory_saved_bytes / 2**20:.1f} MiB"),
    ]
    if any(r.zswap or r.area != "zram" for r in reports):
        rows += [
            (
                "memory used (zram mem_used_total + zswap pool)",
                lambda r: f"{r.memory_used_bytes / 2**20:.1f} MiB",
            ),
            ("pages that reached the disk", lambda r: f"{r.disk_write_pages:,}"),
            (
                "zswpout / zswpin / zswpwb",
                lambda r: " / ".join(
                    f"{r.vmstat.get(k, 0):,}" for k in ("zswpout", "zswpin", "zswpwb")
                ),
            ),
            (
                "zswap stored pages / pool_limit_hit",
                lambda r: (
                    f"{r.zswap['debugfs']['stored_pages']:,} / "
                    f"{r.zswap['debugfs']['pool_limit_hit']:,}"
                    if r.zswap
                    else "-"
                ),
            ),
        ]
    rows += [
        ("swapped pages/s (fill + pattern)", lambda r: f"{r.swapped_pages_s:,.0f}"),
        ("swap-out pages/s (device path)", lambda r: f"{r.swapout_pages_s:,.0f}"),
        ("swap-in pages/s (device path)", lambda r: f"{r.swapin_pages_s:,.0f}"),
        ("write batch p50/p99 µs", lambda r: _p(r.write_batch_latency_us)),
        ("read batch p50/p99 µs", lambda r: _p(r.read_batch_latency_us)),
    ]
    if any(r.folio_order for r in reports):
        rows += [
            ("folio order", lambda r: f"{r.folio_order} ({4 << r.folio_order} KiB)"),
            (
                "thp_swpout / thp_swpout_fallback",
                lambda r: (
                    f"{r.vmstat.get('thp_swpout', 0):,} / "
                    f"{r.vmstat.get('thp_swpout_fallback', 0):,}"
                ),
            ),
            ("mTHP swpout / swpout_fallback / swpin", _mthp_cell),
        ]
    if any(r.post_processing for r in reports):
        rows += [
            ("post-processing steps", lambda r: f"{len(r.post_processing):,}"),
            (
                "written back / recompressed pages",
                lambda r: f"{r.written_back_pages:,} / {r.recompressed_pages:,}",
            ),
        ]
    rows += [
        ("seconds: workload (fill + pattern)", lambda r: f"{r.seconds:.2f}"),
        ("seconds: wall (all you waited for)", lambda r: f"{r.pages_seconds + r.wall_seconds:.2f}"),
        ("kernel CPU, predicted (ms)", lambda r: f"{r.predicted_kernel_cpu_s * 1e3:,.1f}"),
        ("intact", lambda r: "yes" if r.intact else "[red]NO[/red]"),
    ]
    for name, fmt in rows:
        t.add_row(name, *(fmt(r) for r in reports))
    return t


#: What the two time rows of the report cover.
WALL_NOTE = (
    "seconds: the workload is the fill and the access pattern, the window the rates use; "
    "wall adds making the pages, setting up the device, the final check of every byte "
    "and the teardown"
)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr that moves from the first second (a spinner and the
    elapsed time while the pages are made, then the steps of the run); yields the
    ``progress(done, total)`` callback, or None when ``enabled`` is false."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn())
    with Progress(
        *columns, TaskProgressColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("making the pages", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, description="running", completed=done, total=total)

        yield step


def _mthp_cell(r) -> str:
    from pyzram.mm.vmscan import mthp_size_name

    stats = r.mthp.get(mthp_size_name(r.folio_order), {})
    return " / ".join(f"{stats.get(k, 0):,}" for k in ("swpout", "swpout_fallback", "swpin"))


def _p(lat: dict) -> str:
    return f"{lat['p50']:.0f} / {lat['p99']:.0f}" if lat else "-"


def _print_report_details(report) -> None:
    """The device's kernel-format lines, the vmstat deltas, the mTHP stats and the
    post-processing steps of one run, as text."""
    if report.mm_stat:
        print_kernel_line("mm_stat", report.mm_stat)
        print_kernel_line("io_stat", report.io_stat)
    if report.bd_stat:
        print_kernel_line("bd_stat", report.bd_stat)
    if report.zswap:
        z = report.zswap
        console.print(
            "zswap parameters: " + ", ".join(f"{k} {v}" for k, v in z["parameters"].items()),
            soft_wrap=True,
        )
        console.print(
            "zswap debugfs: " + ", ".join(f"{k} {v:,}" for k, v in z["debugfs"].items()),
            soft_wrap=True,
        )
        console.print(
            "meminfo: " + ", ".join(f"{k} {v:,} kB" for k, v in z["meminfo"].items()),
            soft_wrap=True,
        )
    console.print(
        "vmstat deltas: " + ", ".join(f"{k} {v:,}" for k, v in report.vmstat.items()),
        soft_wrap=True,
    )
    for size, stats in report.mthp.items():
        console.print(
            f"{size}/stats: " + ", ".join(f"{k} {v:,}" for k, v in stats.items()), soft_wrap=True
        )
    if report.post_processing:
        console.print(_pp_summary(report.post_processing), soft_wrap=True)


def _pp_summary(events: list[dict]) -> str:
    """One line for the run's post-processing steps (each step is in ``--json``)."""
    parts = []
    for what in ("recompress", "writeback"):
        steps = [ev[what] for ev in events if what in ev]
        if not steps:
            continue
        errors = sorted({st["error"] for st in steps if "error" in st})
        pages = sum(st["pages"] for st in steps)
        err = f" (errors: {', '.join(errors)})" if errors else ""
        parts.append(f"{what} {steps[0]['request']!r} {pages:,} pages{err}")
    when = ", ".join(f"{ev['reclaim_batches']:,}" for ev in events[:5])
    more = f" ... ({len(events)} steps)" if len(events) > 5 else ""
    return f"post-processing at reclaim batch {when}{more}: " + "; ".join(parts)


ZswapOpt = Annotated[
    bool,
    typer.Option(
        "--zswap",
        help="zswap in front of the swap area (enabled Y): reclaim offers it every page first",
    ),
]
ZswapCompressorOpt = Annotated[
    str, typer.Option("--zswap-compressor", help="zswap's compressor (lzo, lzo-rle, ...)")
]
ZswapPoolOpt = Annotated[
    int | None,
    typer.Option("--zswap-max-pool-percent", help="zswap's max_pool_percent (default 20)"),
]
RamOpt = Annotated[
    str | None,
    typer.Option("--ram", help="the machine's RAM (e.g. 4G), the base of max_pool_percent"),
]


def zswap_kwargs(zswap: bool, compressor: str, max_pool_percent: int | None, ram: str | None):
    """``run_workload``'s zswap keywords from the command line; ``UsageError`` on a bad one."""
    from pyzram.lib.cmdline import memparse
    from pyzram.mm.zswap import CRYPTO_COMPRESSORS, crypto_cra_name

    kw: dict = {}
    if ram is not None:
        value, end = memparse(ram)
        if not end or end != len(ram):
            raise UsageError("--ram", f"not a size: {ram!r}")
        kw["totalram_pages"] = value // PAGE_SIZE
        if kw["totalram_pages"] < 1:
            raise UsageError("--ram", f"must be at least a page, not {ram!r}")
    if not zswap:
        if max_pool_percent is not None:
            raise UsageError("--zswap-max-pool-percent", "needs --zswap")
        return kw
    if crypto_cra_name(compressor) is None:
        raise UsageError("--zswap-compressor", f"must be one of {', '.join(CRYPTO_COMPRESSORS)}")
    kw["zswap"] = compressor
    if max_pool_percent is not None:
        if max_pool_percent < 0:
            raise UsageError("--zswap-max-pool-percent", "must not be negative")
        kw["zswap_params"] = {"max_pool_percent": str(max_pool_percent)}
    return kw


def workload_options(
    *,
    algo,
    mem_limit,
    disksize,
    io_path,
    backing_dev,
    pattern,
    accesses,
    write_ratio,
    seed,
    folio_order,
    mthp_swapin,
    writeback,
    recompress_algo,
    recompress,
    idle_age,
    pp_every,
    zswap=False,
    zswap_compressor="lzo",
    zswap_max_pool_percent=None,
    ram=None,
    tlb_entries=None,
    tlb_2m_entries=None,
    **_others,
) -> dict:
    """``run_workload``'s keyword arguments but ``io_path`` from ``command``'s options
    (by its parameter names; the page source and the output options are ignored); a
    bad value is a :class:`UsageError` naming the option."""
    if io_path not in ("swap_ops", "bio"):
        raise UsageError("--io-path", f"must be swap_ops or bio, not {io_path!r}")
    if writeback is not None and writeback not in WRITEBACK_MODES:
        raise UsageError("--writeback", f"must be one of {', '.join(WRITEBACK_MODES)}")
    kw = run_kwargs(
        algo,
        mem_limit,
        disksize,
        pattern,
        accesses,
        write_ratio,
        seed,
        backing_dev,
        folio_order=folio_order,
        mthp_swapin=mthp_swapin,
        writeback=writeback,
        idle_age=idle_age,
        pp_every=pp_every,
        recompress_algo=recompress_algo,
        recompress=recompress,
        tlb_entries=tlb_entries,
        tlb_2m_entries=tlb_2m_entries,
    )
    kw.update(zswap_kwargs(zswap, zswap_compressor, zswap_max_pool_percent, ram))
    return kw


def command(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    mem_limit: MemLimitOpt = None,
    disksize: DisksizeOpt = None,
    io_path: Annotated[str, typer.Option(help="swap_ops (the seed) or bio")] = "swap_ops",
    backing_dev: Annotated[Path | None, typer.Option(help="a file as zram's backing_dev")] = None,
    pattern: PatternOpt = "zipf",
    accesses: Annotated[int | None, typer.Option(help="accesses after the fill (2x pages)")] = None,
    write_ratio: Annotated[float, typer.Option(help="share of accesses that write")] = 0.1,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    mix: MixOpt = None,
    folio_order: FolioOrderOpt = 0,
    mthp_swapin: MthpSwapinOpt = True,
    tlb_entries: TlbEntriesOpt = TLB_ENTRIES,
    tlb_2m_entries: Tlb2mEntriesOpt = None,
    writeback: Annotated[
        str | None,
        typer.Option(help="write back to --backing-dev: idle, huge, huge_idle or incompressible"),
    ] = None,
    recompress_algo: Annotated[
        str | None,
        typer.Option(
            "--recompress-algorithm", help="secondary algorithm (recomp_algorithm algo=ALGO)"
        ),
    ] = None,
    recompress: Annotated[
        str | None,
        typer.Option(
            help="recompress request, e.g. 'type=idle threshold=1000' (default with "
            "--recompress-algorithm: type=idle)"
        ),
    ] = None,
    idle_age: Annotated[
        str,
        typer.Option(help="written to idle before an idle writeback/recompress: all or SECONDS"),
    ] = "all",
    pp_every: Annotated[
        int,
        typer.Option(
            help="post-process every N reclaim batches (0: once, after the access pattern)"
        ),
    ] = 0,
    plot: Annotated[
        Path | None, typer.Option(help="write a PNG time series (pool, ratio, swap rates)")
    ] = None,
    save_state: Annotated[
        Path | None, typer.Option(help="save the device's state for `pyzram ctl`")
    ] = None,
    zswap: ZswapOpt = False,
    zswap_compressor: ZswapCompressorOpt = "lzo",
    zswap_max_pool_percent: ZswapPoolOpt = None,
    ram: RamOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The main job: a workload under a memory limit swapping to zram, and its report."""
    kw = workload_options(**locals())
    with progress_bar(not as_json) as step:
        t = time.perf_counter()
        pages, source = workload_pages(pagefile, limit, mix, seed)
        pages_s = time.perf_counter() - t
        report = run_workload(pages, io_path=io_path, source=source, progress=step, **kw)
    report.pages_seconds = pages_s
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(_report_table([report]))
        console.print(WALL_NOTE, soft_wrap=True)
        _print_report_details(report)
    if save_state is not None:
        from pyzram.tools.commands.ctl import save_state as save

        save(save_state, [report.device])
    if plot is not None:
        from pyzram.tools.plot import plot_run

        plot_run(report, plot)
        if not as_json:
            console.print(f"plot: {plot}")
    if not report.intact:
        raise typer.Exit(1)
