"""``pyzram bench run``: the workload ``pyzram run`` simulates, on the host kernel's own swap.

The same page contents, the same access pattern and the same writes, first
through the real kernel — a memory cgroup limit and swap on a zram device —
then through :func:`pyzram.tools.commands.run.run_workload`, so the swapped pages per
second of both come from one run on one machine.

On the kernel side, through the interfaces a user would use:

* a fresh zram device from ``/sys/class/zram-control/hot_add``
  (:class:`~pyzram.host.kernel_zram.KernelZram`, never ``zram0``):
  ``comp_algorithm``, ``disksize``; a swap header
  (:func:`pyzram.mm.swapfile.mkswap`) and ``swapon(2)`` with the highest
  priority (``SWAP_FLAG_PREFER | 32767``), so the kernel swaps there first;
* a cgroup-v1 memory cgroup below our own (``memory.swappiness`` 100);
* a child process (this interpreter, standard library only) that reads the
  page file and the access arrays, maps ``nr_pages`` of anonymous memory
  (``MADV_NOHUGEPAGE`` for order-0 folios; ``MADV_HUGEPAGE`` and a 2 MiB
  aligned start where the host's THP settings give exactly the asked folio
  size), prints ``READY`` and waits.  We move it into the cgroup — its
  interpreter and arrays stay charged where they were allocated (cgroup v1
  does not move charges by default), so the cgroup charges only what it
  touches from then on — and set ``memory.limit_in_bytes`` to its usage
  plus the workload's limit.  The child then fills its memory page by page
  from the page file (``preadv``; the page file is in the page cache,
  charged to us), replays the pattern (a read touches one byte of the
  page; a write ``preadv``s the original bytes of the page that
  :func:`~pyzram.workload.patterns.write_sources` names), stops while we
  read the device's figures, then compares every page with what it last
  wrote and gives it back (``MADV_DONTNEED``: the check swaps nothing
  out), timing each phase and reading
  ``/proc/vmstat`` at each boundary.

Swapped pages per second on both sides = (``pswpout`` + ``pswpin``) over
the fill and the pattern, divided by their wall time (the final check
excluded).  ``/proc/vmstat`` is global: on a quiet host nothing else swaps
(no other swap area should be active); the zram device's own read/write
counts (``/sys/block/zramN/stat``) are reported beside it.

With ``zswap`` (a compressor), the host's zswap is put in front of the
zram area once it is on (``compressor``, the other parameters asked for,
then ``enabled`` Y); its debugfs files are read with the device's figures
at the end of the workload, and pyzram's machine gets the host's RAM
(``MemTotal``, the base of ``max_pool_percent``) and the same parameters.
Every zswap parameter is written back as it was, whatever happened.

Clean-up always runs, on errors and ``KeyboardInterrupt`` too: kill the
child, ``swapoff``, ``reset`` and ``hot_remove`` the device, restore
zswap's parameters, remove the cgroup.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pyzram.host.kernel_zram import KernelZram
from pyzram.host.kernel_zram import unavailable_reason as zram_unavailable
from pyzram.mm.swap import SWAP_FLAG_PREFER, SWAP_FLAG_PRIO_MASK
from pyzram.mm.swapfile import mkswap
from pyzram.mm.tlb import TLB_ENTRIES
from pyzram.tools.commands.run import (
    VMSTAT_KEYS,
    ZSWAP_VMSTAT_KEYS,
    RunReport,
    default_disksize,
    run_workload,
    swap_uuid,
    swapped_pages,
)
from pyzram.workload.pages import wait_ready, write_page_file
from pyzram.workload.patterns import make_pattern, write_sources

__all__ = [
    "BenchRun",
    "KernelSwapRun",
    "bench_run",
    "run_kernel_swap",
    "unavailable_reason",
]

PAGE_SIZE = 4096
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
#: swapon(2) priority: above anything an administrator sets by hand.
SWAP_PRIO = 32767

_CHILD = r"""
import array, ctypes, json, mmap, os, sys, time

pagefile, accfile, n, order = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
P = 4096

def vmstat():
    with open("/proc/vmstat") as f:
        return f.read()

with open(accfile, "rb") as f:
    nacc = int.from_bytes(f.read(8), "little")
    vpn = array.array("q")
    vpn.fromfile(f, nacc)
    src = array.array("q")
    src.fromfile(f, nacc)
exp = array.array("q", range(n))
fd = os.open(pagefile, os.O_RDONLY)
align = P << order if order else P
m = mmap.mmap(-1, n * P + align - P, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = -addr % align
m.madvise(mmap.MADV_HUGEPAGE if order else mmap.MADV_NOHUGEPAGE)
mv = memoryview(m)[off : off + n * P]
sys.stdout.write("READY\n")
sys.stdout.flush()
sys.stdin.readline()  # moved into the cgroup, limit set

vm = [vmstat()]
t = [time.monotonic()]
st = [os.times().system]
for p in range(0, n, 64):  # the process builds its memory, page by page
    c = min(64, n - p)
    os.preadv(fd, [mv[p * P : (p + c) * P]], p * P)
t.append(time.monotonic())
st.append(os.times().system)
vm.append(vmstat())
for i in range(nacc):
    v = vpn[i]
    s = src[i]
    if s >= 0:
        os.preadv(fd, [mv[v * P : (v + 1) * P]], s * P)
        exp[v] = s
    else:
        mv[v * P]
t.append(time.monotonic())
st.append(os.times().system)
vm.append(vmstat())
sys.stdout.write("PATTERN\n")
sys.stdout.flush()
sys.stdin.readline()  # the parent has read the device's stats
bad = 0
for v in range(n):  # each page checked, then given back (MADV_DONTNEED)
    if mv[v * P : (v + 1) * P] != os.pread(fd, P, exp[v] * P):
        bad += 1
    m.madvise(mmap.MADV_DONTNEED, off + v * P, P)
t.append(time.monotonic())
st.append(os.times().system)
vm.append(vmstat())
sys.stdout.write(json.dumps({"t": t, "stime": st, "vmstat": vm, "bad": bad}) + "\n")
sys.stdout.flush()
"""


@dataclass
class KernelSwapRun:
    """The workload on the host kernel: swap on a hot_added zram under a memcg limit."""

    kernel_release: str
    device: str
    algorithm: str
    pages: int
    accesses: int
    mem_limit_pages: int
    folio_order: int
    seconds: float  # fill + pattern, wall time
    #: The child's system time over fill + pattern (os.times): the kernel's CPU for its
    #: faults, reclaim, compression and decompression, and its page-file reads.
    system_seconds: float
    fill_seconds: float
    pattern_seconds: float
    check_seconds: float
    vmstat: dict[str, int]  # /proc/vmstat deltas over fill + pattern
    swapped_pages_s: float  # (pswpout + pswpin) / seconds
    intact: bool
    mm_stat: str  # the device's at the end of the workload (before the check)
    io_stat: str
    device_read_pages: int  # /sys/block/zramN/stat: sectors read / 8
    device_write_pages: int
    cgroup_baseline_bytes: int
    cgroup_limit_bytes: int
    cgroup_failcnt: int
    #: zswap in front of the area (None: off): parameters, debugfs (at the end of the
    #: workload) and meminfo Zswap/Zswapped (kB), as pyzram's RunReport.zswap.
    zswap: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchRun:
    """``pyzram bench run``: the kernel's and pyzram's figures for the same workload."""

    kernel: KernelSwapRun
    pyzram: RunReport
    #: pyzram's swapped pages/s over the kernel's (the goal: >= 1).
    ratio: float | None
    #: The kernel child's system time with no memory limit (nothing swaps): the part of
    #: ``kernel.system_seconds`` that is not swapping (first-touch faults, file reads).
    baseline_system_seconds: float | None = None

    @property
    def swap_system_seconds(self) -> float | None:
        """The kernel's measured system time of the swapping: limited - unlimited."""
        if self.baseline_system_seconds is None:
            return None
        return self.kernel.system_seconds - self.baseline_system_seconds

    def zswap_deviation(self) -> dict[str, dict] | None:
        """With zswap: ``zswpout``, ``zswpin``, ``zswpwb`` and ``pool_total_size``
        (and ``stored_pages``) of both sides, and pyzram's relative deviation."""
        if not (self.kernel.zswap and self.pyzram.zswap):
            return None
        out = {}
        for group, name in (
            ("vmstat", "zswpout"),
            ("vmstat", "zswpin"),
            ("vmstat", "zswpwb"),
            ("debugfs", "pool_total_size"),
            ("debugfs", "stored_pages"),
        ):
            if group == "vmstat":
                k, o = self.kernel.vmstat.get(name, 0), self.pyzram.vmstat.get(name, 0)
            else:
                k, o = self.kernel.zswap["debugfs"][name], self.pyzram.zswap["debugfs"][name]
            dev = (o - k) / k if k else (0.0 if o == 0 else None)
            out[name] = {"kernel": k, "pyzram": o, "deviation": dev}
        return out

    def as_dict(self) -> dict:
        d = self.pyzram.as_dict()
        for k in ("timeline", "device"):
            d.pop(k, None)
        out = {
            "kernel": self.kernel.as_dict(),
            "pyzram": d,
            "ratio": self.ratio,
            "baseline_system_seconds": self.baseline_system_seconds,
            "swap_system_seconds": self.swap_system_seconds,
        }
        if self.kernel.zswap:
            out["zswap"] = self.zswap_deviation()
        return out


def unavailable_reason() -> str | None:
    """Why the kernel side cannot run here (one line), or ``None``."""
    reason = zram_unavailable(probe=False)
    if reason is not None:
        return reason
    if not (CGROUP_V1_MEMORY / "memory.limit_in_bytes").exists():
        return f"no cgroup v1 memory controller at {CGROUP_V1_MEMORY} (cgroup v2 is not supported)"
    return None


# -- helpers ------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _swapon(path: Path, prio: int) -> None:
    """``swapon(2)`` with ``SWAP_FLAG_PREFER``."""
    flags = SWAP_FLAG_PREFER | (prio & SWAP_FLAG_PRIO_MASK)
    if _libc.swapon(os.fsencode(path), ctypes.c_int(flags)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"swapon: {os.strerror(e)}", str(path))


def _swapoff(path: Path) -> None:
    """``swapoff(2)``."""
    if _libc.swapoff(os.fsencode(path)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"swapoff: {os.strerror(e)}", str(path))


def _own_memcg() -> Path:
    """Our memory cgroup's directory (cgroup v1), from ``/proc/self/cgroup``."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                return CGROUP_V1_MEMORY / path.lstrip("/")
    return CGROUP_V1_MEMORY


def _parse_vmstat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value:
            out[name] = int(value)
    return out


def _vmstat_delta(before: str, after: str) -> dict[str, int]:
    """Deltas of the counters ``pyzram run`` reports, and of any ``thp_`` counter that moved."""
    a, b = _parse_vmstat(before), _parse_vmstat(after)
    out = {k: b.get(k, 0) - a.get(k, 0) for k in VMSTAT_KEYS + ZSWAP_VMSTAT_KEYS}
    out.update((k, b[k] - a.get(k, 0)) for k in b if k.startswith("thp_") and b[k] != a.get(k, 0))
    return out


def _thp_setting(path: Path) -> str:
    text = path.read_text()
    return text[text.index("[") + 1 : text.index("]")]


def _check_thp(order: int) -> None:
    """For ``order`` > 0: the host must give a ``MADV_HUGEPAGE`` mapping exactly that
    folio size (``hugepages-<size>/enabled``), or the two runs would differ."""
    if not order:
        return
    want = (PAGE_SIZE << order) // 1024
    top = _thp_setting(THP_DIR / "enabled")
    sizes = set()
    for d in THP_DIR.glob("hugepages-*kB"):
        if not (d / "enabled").exists():  # a size only shmem or file folios use
            continue
        setting = _thp_setting(d / "enabled")
        if setting == "inherit":
            setting = top
        if setting in ("always", "madvise"):
            sizes.add(int(d.name[len("hugepages-") : -2]))
    if sizes != {want}:
        have = ", ".join(f"{s}kB" for s in sorted(sizes)) or "none"
        raise ValueError(
            f"--folio-order {order} needs the host to enable exactly hugepages-{want}kB "
            f"for MADV_HUGEPAGE mappings ({THP_DIR}/hugepages-*/enabled); enabled: {have}"
        )


#: Reads of every page that leave each page-cache folio active and referenced.
_PAGE_CACHE_PASSES = 3


def _activate_page_cache(path: Path) -> None:
    """Read the page file page by page, ``_PAGE_CACHE_PASSES`` times, before the child runs.

    Each ``read`` marks the page-cache folio it starts in accessed
    (``filemap_read`` → ``folio_mark_accessed``): the first pass sets
    ``PG_referenced``, the second activates the folio (``pgactivate``), the
    third sets ``PG_referenced`` on the active folio.  From then on the
    child's reads of the file change nothing on the file LRU, so the
    workload's ``pgactivate`` is that of its anonymous memory alone — the
    figure ``pyzram run`` models — instead of adding up to every page of
    the file (large folios of the page file activated by the fill's and the
    writes' ``preadv``).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for _ in range(_PAGE_CACHE_PASSES):
            for off in range(0, size, PAGE_SIZE):
                os.pread(fd, PAGE_SIZE, off)
    finally:
        os.close(fd)


def _write_acc_file(path: Path, vpn: np.ndarray, src: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(len(vpn).to_bytes(8, "little"))
        f.write(vpn.astype("<i8").tobytes())
        f.write(src.astype("<i8").tobytes())


def _device_pages(stat_text: str) -> tuple[int, int]:
    """``/sys/block/zramN/stat``: sectors read (field 3) and written (field 7), in pages."""
    f = stat_text.split()
    return int(f[2]) // 8, int(f[6]) // 8


# -- the kernel run ---------------------------------------------------------------------------


def run_kernel_swap(
    pages: np.ndarray,
    *,
    algorithm: str = "lzo-rle",
    mem_limit_pages: int | None = None,
    disksize: int | None = None,
    pattern: str = "zipf",
    accesses: int | None = None,
    write_ratio: float = 0.1,
    seed: int = 0,
    folio_order: int = 0,
    timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
    unlimited: bool = False,
    zswap: str | None = None,
    zswap_params: dict[str, str] | None = None,
) -> KernelSwapRun:
    """Run the workload of :func:`pyzram.tools.commands.run.run_workload` (same arguments, same
    defaults) in a child process on the host kernel's swap; see the module docstring.

    ``OSError`` (EPERM, ENODEV) with a one-line reason where the host cannot
    do it; the kernel's errors (an unknown algorithm: EINVAL) as they come.
    ``unlimited``: the same child with no memory limit (nothing swaps), the
    baseline of what the workload costs the kernel without swapping.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise OSError(errno.EPERM if os.geteuid() else errno.ENODEV, reason)
    _check_thp(folio_order)
    n = len(pages)
    if n == 0:
        raise ValueError("no pages to run")
    limit = mem_limit_pages if mem_limit_pages is not None else max(32, n // 4)
    acc = make_pattern(
        pattern, n, accesses if accesses is not None else 2 * n, seed=seed, write_ratio=write_ratio
    )
    src = write_sources(acc, n, seed)
    say = progress or (lambda msg: None)
    zram = KernelZram()
    cgroup: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    swapped_on = False
    zswap_saved: dict[str, str] = {}
    zswap_state = None
    errors: list[BaseException] = []
    with tempfile.TemporaryDirectory(prefix="pyzram-bench-") as tmp:
        pagefile, accfile = Path(tmp) / "workload.pages", Path(tmp) / "accesses.bin"
        write_page_file(pagefile, pages)  # in the page cache now, charged to us
        _activate_page_cache(pagefile)
        _write_acc_file(accfile, acc.vpn, src)
        try:
            say("kernel: hot_add, swapon")
            zram.create()
            zram.setup(algorithm, disksize if disksize else default_disksize(n))
            mkswap(str(zram.dev_path), pages=zram.disksize() // PAGE_SIZE, uuid=swap_uuid(seed))
            _swapon(zram.dev_path, SWAP_PRIO)
            swapped_on = True
            if zswap:
                zswap_saved = _zswap_on(zswap, zswap_params or {})
            cgroup = _own_memcg() / f"pyzram-bench-{os.getpid()}-zram{zram.id}"
            cgroup.mkdir()
            (cgroup / "memory.swappiness").write_text("100")
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _CHILD, str(pagefile), str(accfile), str(n)]
                + [str(folio_order)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd="/",
                close_fds=True,
            )
            wait_ready(proc, timeout)
            (cgroup / "cgroup.procs").write_text(str(proc.pid))
            baseline = int((cgroup / "memory.usage_in_bytes").read_text())
            limit_bytes = baseline + limit * PAGE_SIZE
            if not unlimited:
                (cgroup / "memory.limit_in_bytes").write_text(str(limit_bytes))
            say(f"kernel: {n} pages, {len(acc)} accesses, limit {limit} pages")
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            try:
                wait_ready(proc, timeout, marker=b"PATTERN\n")
                # The device at the end of the workload, before the check.
                mm_text, io_text = zram.read_attr("mm_stat"), zram.read_attr("io_stat")
                reads, writes = _device_pages(zram.read_attr("stat"))
                if zswap:
                    zswap_state = _zswap_state()
                proc.stdin.write(b"check\n")
                proc.stdin.flush()
                line = wait_ready(proc, timeout, marker=b"\n")
            except RuntimeError:
                proc.wait(5)
                assert proc.stderr is not None
                tail = proc.stderr.read()[-500:].decode(errors="replace").strip()
                failcnt = (cgroup / "memory.failcnt").read_text().strip()
                raise RuntimeError(
                    f"the kernel-side child died (exit {proc.returncode}, memcg failcnt "
                    f"{failcnt}){': ' + tail.splitlines()[-1] if tail else ''}"
                ) from None
            res = json.loads(line)
            failcnt = int((cgroup / "memory.failcnt").read_text())
            proc.wait(timeout)
        except BaseException as e:
            errors.append(e)
        finally:
            _cleanup(proc, zram, swapped_on, cgroup, errors, zswap_saved)
    if errors:
        raise errors[0]
    t, vm = res["t"], res["vmstat"]
    seconds = t[2] - t[0]
    delta = _vmstat_delta(vm[0], vm[2])
    swapped = swapped_pages(delta)
    return KernelSwapRun(
        kernel_release=os.uname().release,
        device=f"zram{zram.id}",
        algorithm=algorithm,
        pages=n,
        accesses=len(acc),
        mem_limit_pages=limit,
        folio_order=folio_order,
        seconds=seconds,
        system_seconds=res["stime"][2] - res["stime"][0],
        fill_seconds=t[1] - t[0],
        pattern_seconds=t[2] - t[1],
        check_seconds=t[3] - t[2],
        vmstat=delta,
        swapped_pages_s=swapped / seconds if seconds else 0.0,
        intact=res["bad"] == 0,
        mm_stat=mm_text,
        io_stat=io_text,
        device_read_pages=reads,
        device_write_pages=writes,
        cgroup_baseline_bytes=baseline,
        cgroup_limit_bytes=limit_bytes,
        cgroup_failcnt=failcnt,
        zswap=zswap_state,
    )


def _zswap_on(compressor: str, params: dict[str, str]) -> dict[str, str]:
    """Save every zswap parameter, then set ``compressor``, ``params`` and ``enabled`` Y.

    Returns what was saved (for :func:`_zswap_restore`), filled before the first write.
    """
    from pyzram.host import kernel_zswap as kz

    reason = kz.unavailable_reason()
    if reason:
        raise OSError(errno.ENODEV, reason)
    kz._mount_debugfs()
    saved = {n: kz.read_param(n).rstrip("\n") for n in kz.PARAMETERS}
    try:
        kz.write_param("compressor", compressor)
        for name, value in params.items():
            if name != "enabled":
                kz.write_param(name, value)
        kz.write_param("enabled", "Y")
    except BaseException:
        _zswap_restore(saved, [])
        raise
    return saved


def _zswap_restore(saved: dict[str, str], errors: list[BaseException]) -> None:
    """Every zswap parameter back as it was: ``enabled`` off first (nothing new is
    stored meanwhile), the others, then ``enabled`` as it was.  Errors go to ``errors``."""
    from pyzram.host import kernel_zswap as kz

    if not saved:
        return
    steps = [("enabled", "N")]
    steps += [(n, saved[n]) for n in ("compressor", "max_pool_percent")]
    steps += [(n, saved[n]) for n in ("accept_threshold_percent", "shrinker_enabled")]
    steps.append(("enabled", saved["enabled"]))
    for name, value in steps:
        try:
            kz.write_param(name, value)
        except OSError as e:
            errors.append(e)


def _zswap_state() -> dict:
    """The host zswap's parameters, debugfs files and meminfo lines."""
    from pyzram.host import kernel_zswap as kz

    return {
        "parameters": {n: kz.read_param(n).strip() for n in kz.PARAMETERS},
        "debugfs": kz.read_debugfs(),
        "meminfo": kz.read_meminfo(),
    }


def _cleanup(
    proc: subprocess.Popen[bytes] | None,
    zram: KernelZram,
    swapped_on: bool,
    cgroup: Path | None,
    errors: list[BaseException],
    zswap_saved: dict[str, str] | None = None,
) -> None:
    """Every step, whatever failed before; the first error is kept in ``errors``."""
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if swapped_on:
        try:
            _swapoff(zram.dev_path)
        except OSError as e:
            errors.append(e)
    try:
        zram.close()  # reset + hot_remove (retried while busy)
    except OSError as e:
        errors.append(e)
    _zswap_restore(zswap_saved or {}, errors)
    if cgroup is not None and cgroup.exists():
        for attempt in range(100):  # the exited child may take a moment to leave
            try:
                cgroup.rmdir()
                break
            except OSError as e:
                if e.errno != errno.EBUSY or attempt == 99:
                    errors.append(e)
                    break
                time.sleep(0.02)


# -- both -------------------------------------------------------------------------------------


def _fastest(runs):
    """The run with the most swapped pages per second (the first of equals)."""
    return max(runs, key=lambda r: r.swapped_pages_s)


def bench_run(
    pages: np.ndarray,
    *,
    algorithm: str = "lzo-rle",
    mem_limit_pages: int | None = None,
    disksize: int | None = None,
    pattern: str = "zipf",
    accesses: int | None = None,
    write_ratio: float = 0.1,
    seed: int = 0,
    folio_order: int = 0,
    io_path: str = "swap_ops",
    source: str = "",
    timeout: float = 600.0,
    progress: Callable[[str], None] | None = None,
    zswap: str | None = None,
    zswap_params: dict[str, str] | None = None,
    tlb_entries: int = TLB_ENTRIES,
    tlb_2m_entries: int | None = None,
    repeat: int = 1,
) -> BenchRun:
    """The workload on the host kernel (:func:`run_kernel_swap`), then through
    :func:`pyzram.tools.commands.run.run_workload`; the ratio of their swapped pages/s.

    Each side runs ``repeat`` times and its fastest run is kept (counters and
    all), so that a pause of a shared host in one run does not decide the ratio.
    With ``zswap`` both sides put zswap (that compressor, ``zswap_params``) in
    front of the zram area, pyzram's machine with the host's RAM."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    kw = dict(
        algorithm=algorithm,
        mem_limit_pages=mem_limit_pages,
        disksize=disksize,
        pattern=pattern,
        accesses=accesses,
        write_ratio=write_ratio,
        seed=seed,
        folio_order=folio_order,
    )
    zkw: dict = {}
    if zswap:
        from pyzram.mm.zswap import host_totalram_pages

        zkw = {"zswap": zswap, "zswap_params": zswap_params}
    kernel = _fastest(
        run_kernel_swap(pages, timeout=timeout, progress=progress, **kw, **zkw)
        for _ in range(repeat)
    )
    if progress:
        progress("kernel: the same workload with no memory limit")
    base = run_kernel_swap(pages, timeout=timeout, unlimited=True, **kw)
    if progress:
        progress("pyzram: running the same workload")
    if zswap:
        zkw["totalram_pages"] = host_totalram_pages()
    # The kernel's process copies its pages from a page file already in memory (the
    # page cache); pyzram's copies them from one array in memory too, so neither
    # window includes making them (a --mix source makes each page when asked).
    pages = np.asarray(pages)
    ours = _fastest(
        run_workload(
            pages,
            io_path=io_path,
            source=source,
            tlb_entries=tlb_entries,
            tlb_2m_entries=tlb_2m_entries,
            **kw,
            **zkw,
        )
        for _ in range(repeat)
    )
    ratio = ours.swapped_pages_s / kernel.swapped_pages_s if kernel.swapped_pages_s else None
    return BenchRun(kernel, ours, ratio, base.system_seconds)
