"""The host kernel's zswap, driven as a user would: parameters, a swap area, MADV_PAGEOUT.

:class:`KernelZswap` (a context manager) saves every parameter of
``/sys/module/zswap/parameters``, mounts debugfs if needed, ``hot_add``\\ s
a zram device of its own (never ``zram0``), gives it a swap header and
``swapon(2)``\\ s it at the highest priority, then sets the parameters it
is asked for.  :meth:`KernelZswap.pageout` maps the pages anonymously
(``MADV_NOHUGEPAGE``: order-0 folios, as ``zswap_store`` stores page by
page anyway), fills them and pushes them out with ``madvise(MADV_PAGEOUT)``
(advice 21): reclaim writes each folio out through ``swap_writeout``, where
zero-filled pages go to the swap core's zero map and the rest are offered to
``zswap_store``.  The counters come from ``/sys/kernel/debug/zswap`` and
``/proc/vmstat`` (``zswpout``, ``zswpin``, ``zswpwb``, ``swpout_zero``,
``pswpout``), as deltas.

Clean-up always runs: the mapping is unmapped (freeing its swap slots, which
invalidates their zswap entries), the area swapped off, the device reset and
removed, and every parameter written back as it was (``enabled`` last
written first, so nothing new is stored while the others are restored).
zswap, once set up by a first ``enabled`` write, stays set up (its debugfs
directory remains): the kernel has no way back.

``/proc/vmstat`` and zswap's counters are global: on a host where something
else swaps at the same time the deltas include it.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from pyzram.host.kernel_zram import KernelZram
from pyzram.host.kernel_zram import unavailable_reason as zram_unavailable
from pyzram.mm.zswap import DEBUGFS_FILES, PARAMETERS

__all__ = ["KernelZswap", "parse_meminfo", "parse_vmstat", "read_vmstat", "unavailable_reason"]

PAGE_SIZE = 4096
PARAMS_DIR = Path("/sys/module/zswap/parameters")
DEBUGFS = Path("/sys/kernel/debug")
DEBUGFS_DIR = DEBUGFS / "zswap"
MADV_PAGEOUT = 21
MADV_NOHUGEPAGE = 15
SWAP_FLAG_PREFER = 0x8000
SWAP_PRIO = 32767
VMSTAT_KEYS = ("zswpout", "zswpin", "zswpwb", "swpout_zero", "swpin_zero", "pswpout", "pswpin")

_libc = ctypes.CDLL(None, use_errno=True)


def unavailable_reason() -> str | None:
    """Why the host's zswap cannot be driven here (one line), or ``None``."""
    if not PARAMS_DIR.is_dir():
        return "the host kernel has no zswap (/sys/module/zswap/parameters is missing)"
    reason = zram_unavailable(probe=False)
    if reason is not None:
        return reason
    if os.geteuid() != 0:
        return "driving the host's zswap needs root"
    return None


def parse_vmstat(text: str, keys: tuple[str, ...] = VMSTAT_KEYS) -> dict[str, int]:
    """``keys`` of a /proc/vmstat text (0 for one the kernel does not have)."""
    out = dict.fromkeys(keys, 0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in out:
            out[name] = int(value)
    return out


def read_vmstat(keys: tuple[str, ...] = VMSTAT_KEYS) -> dict[str, int]:
    with open("/proc/vmstat") as f:
        return parse_vmstat(f.read(), keys)


def parse_meminfo(text: str) -> dict[str, int]:
    """``Zswap`` and ``Zswapped`` of a /proc/meminfo text, in kB."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Zswap", "Zswapped"):
            out[name] = int(rest.split()[0])
    return out


def read_meminfo() -> dict[str, int]:
    with open("/proc/meminfo") as f:
        return parse_meminfo(f.read())


def _mount_debugfs() -> None:
    if DEBUGFS_DIR.parent.joinpath("zswap").exists() or os.path.ismount(DEBUGFS):
        return
    subprocess.run(["mount", "-t", "debugfs", "none", str(DEBUGFS)], check=True)


def read_param(name: str) -> str:
    return (PARAMS_DIR / name).read_text()


def write_param(name: str, value: str | bytes) -> None:
    """One ``write(2)`` of ``value``: ``OSError`` with the kernel's errno on refusal."""
    data = value.encode() if isinstance(value, str) else value
    fd = os.open(PARAMS_DIR / name, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_debugfs() -> dict[str, int]:
    """Every file of /sys/kernel/debug/zswap (empty before zswap is set up)."""
    if not DEBUGFS_DIR.is_dir():
        return {}
    return {
        n: int((DEBUGFS_DIR / n).read_text()) for n in DEBUGFS_FILES if (DEBUGFS_DIR / n).exists()
    }


class KernelZswap:
    """The host's zswap in front of a zram swap area of our own.

    ``params`` are written after the area is on (``compressor`` before
    ``enabled``); ``disksize`` is the zram device's size (the backing swap).
    """

    def __init__(
        self,
        *,
        compressor: str = "lzo",
        params: dict[str, str] | None = None,
        disksize: int = 256 << 20,
        backing_algorithm: str = "lzo-rle",
    ) -> None:
        self.compressor = compressor
        self.params = dict(params or {})
        self.disksize = disksize
        self.backing_algorithm = backing_algorithm
        self.saved: dict[str, str] = {}
        self.zram: KernelZram | None = None
        self.node: Path | None = None
        self._swapped_on = False

    # -- lifetime ----------------------------------------------------------------------

    def __enter__(self) -> KernelZswap:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise OSError(reason)
        _mount_debugfs()
        self.saved = {n: read_param(n).rstrip("\n") for n in PARAMETERS}
        self.zram = KernelZram().create()
        self.zram.setup(self.backing_algorithm, self.disksize)
        self.node = self.zram.dev_path
        from pyzram.mm.swapfile import mkswap

        mkswap(str(self.node), pages=self.zram.disksize() // PAGE_SIZE)
        flags = SWAP_FLAG_PREFER | SWAP_PRIO
        if _libc.swapon(os.fsencode(self.node), ctypes.c_int(flags)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"swapon: {os.strerror(e)}", str(self.node))
        self._swapped_on = True
        write_param("compressor", self.compressor)
        for name, value in self.params.items():
            if name != "enabled":
                write_param(name, value)
        write_param("enabled", self.params.get("enabled", "Y"))

    def close(self) -> None:
        errors: list[BaseException] = []
        if self.saved:
            try:
                write_param("enabled", "N")
            except OSError as e:
                errors.append(e)
        if self._swapped_on and self.node is not None:
            if _libc.swapoff(os.fsencode(self.node)) != 0:
                e = ctypes.get_errno()
                errors.append(OSError(e, f"swapoff: {os.strerror(e)}", str(self.node)))
            else:
                self._swapped_on = False
        if self.zram is not None and not self._swapped_on:
            try:
                self.zram.close()  # reset + hot_remove
            except OSError as e:
                errors.append(e)
            self.zram = None
        if self.saved:
            for name in ("compressor", "max_pool_percent", "accept_threshold_percent"):
                try:
                    write_param(name, self.saved[name])
                except OSError as e:
                    errors.append(e)
            for name in ("shrinker_enabled", "enabled"):
                try:
                    write_param(name, self.saved[name])
                except OSError as e:
                    errors.append(e)
            self.saved = {}
        if errors:
            raise errors[0]

    # -- pages ------------------------------------------------------------------------

    def pageout(self, pages: np.ndarray, *, read_back: bool = False) -> dict:
        """Push ``pages`` out with ``MADV_PAGEOUT``; the counters' deltas.

        With ``read_back``, every page is then faulted back in and compared
        (``read_back_equal``), and the counters after that are returned too.
        The mapping is unmapped before returning (its slots freed).
        """
        n = len(pages)
        # One CPU from the fill to the page-out: MADV_PAGEOUT drains only this CPU's
        # LRU batches (lru_add_drain), and a page still in another CPU's batch is
        # not on the LRU, so it would not be paged out (up to a batch of pages).
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
        buf = mmap.mmap(-1, n * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            buf.madvise(MADV_NOHUGEPAGE)
            arr = np.frombuffer(buf, dtype=np.uint8).reshape(n, PAGE_SIZE)
            arr[:] = pages
            before_dbg, before_vm, t0 = read_debugfs(), read_vmstat(), time.perf_counter()
            buf.madvise(MADV_PAGEOUT)
            t1 = time.perf_counter()
            after_dbg, after_vm, meminfo = read_debugfs(), read_vmstat(), read_meminfo()
            out = {
                "pages": n,
                "compressor": read_param("compressor").strip(),
                "debugfs": {k: after_dbg[k] - before_dbg.get(k, 0) for k in after_dbg},
                "debugfs_after": after_dbg,
                "vmstat": {k: after_vm[k] - before_vm[k] for k in after_vm},
                "meminfo": meminfo,
                "pageout_seconds": t1 - t0,
            }
            if read_back:
                t2 = time.perf_counter()
                equal = bool(np.array_equal(arr, pages))
                t3 = time.perf_counter()
                vm2 = read_vmstat()
                out["read_back_equal"] = equal
                out["read_back_seconds"] = t3 - t2
                out["vmstat_read_back"] = {k: vm2[k] - after_vm[k] for k in vm2}
                out["debugfs_read_back"] = read_debugfs()
            del arr
        finally:
            buf.close()
            os.sched_setaffinity(0, allowed)
        return out
