"""``/sys/block/zramN``: zram's device attributes (the ``*_show``/``*_store`` of zram_drv.c).

``dev.sysfs[name]`` reads an attribute, ``dev.sysfs[name] = text`` writes it,
with what the kernel would do for the same ``read(2)``/``write(2)``:

* the file modes of Linux 6.18 (``0200`` write-only files refuse reads with
  ``EACCES``, even for root, because kernfs checks the mode at open);
* kernfs's write rules: one write(2) takes at most PAGE_SIZE bytes (the
  rest is not written), an empty write does nothing, the store sees a
  NUL-terminated string;
* each store's own parser (``memparse``, ``kstrto*``, ``sysfs_streq``,
  ``next_arg``) and errnos, in the kernel's order of checks.

A store that fails raises ``OSError`` with the kernel's errno and changes
nothing.  Attributes that need CONFIG_ZRAM_WRITEBACK or CONFIG_ZRAM_MULTI_COMP
are absent (``ENOENT``), as on a kernel built without them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from pyzram.lib.atomic import atomic64_set
from pyzram.lib.cmdline import memparse, parse_args, sysfs_streq
from pyzram.lib.kstrtox import U64_MASK, kstrtoint, kstrtou16, kstrtoul, kstrtoull
from pyzram.zram import table as T
from pyzram.zram.zcomp import (
    CRYPTO_MAX_ALG_NAME,
    ZCOMP_PARAM_NO_LEVEL,
    ZcompParams,
    zcomp_available_algorithm,
    zcomp_available_show,
)

if TYPE_CHECKING:
    from pyzram.zram.zram_drv import Zram

PAGE_SIZE = 4096
PAGE_SHIFT = 12
NSEC_PER_SEC = 1_000_000_000

#: name -> file mode, as DEVICE_ATTR_RO/WO/RW declare them in 6.18.
ATTR_MODES: dict[str, int] = {
    "disksize": 0o644,
    "initstate": 0o444,
    "reset": 0o200,
    "compact": 0o200,
    "mem_limit": 0o200,
    "mem_used_max": 0o200,
    "idle": 0o200,
    "comp_algorithm": 0o644,
    "algorithm_params": 0o200,
    "io_stat": 0o444,
    "mm_stat": 0o444,
    "debug_stat": 0o444,
}
#: Present only with CONFIG_ZRAM_WRITEBACK.
WRITEBACK_ATTR_MODES: dict[str, int] = {
    "backing_dev": 0o644,
    "writeback": 0o200,
    "writeback_limit": 0o644,
    "writeback_limit_enable": 0o644,
    "bd_stat": 0o444,
}
#: Present only with CONFIG_ZRAM_MULTI_COMP.
MULTI_COMP_ATTR_MODES: dict[str, int] = {"recomp_algorithm": 0o644, "recompress": 0o200}


class ZramSysfs(Mapping[str, str]):
    """The attribute directory of one :class:`~pyzram.zram.zram_drv.Zram`."""

    def __init__(self, zram: Zram) -> None:
        self._zram = zram

    # -- Mapping: reading -------------------------------------------------------

    def __getitem__(self, name: str) -> str:
        mode = self._mode(name)
        if not mode & 0o444:
            raise OSError(errno.EACCES, f"{name}: Permission denied (mode {mode:04o})")
        return getattr(self, f"{name}_show")()

    def _modes(self) -> dict[str, int]:
        cfg = self._zram.config
        modes = dict(ATTR_MODES)
        if cfg.writeback:
            modes.update(WRITEBACK_ATTR_MODES)
        if cfg.multi_comp:
            modes.update(MULTI_COMP_ATTR_MODES)
        return modes

    def __contains__(self, name: object) -> bool:
        return name in self._modes()

    def __iter__(self) -> Iterator[str]:
        return iter(self._modes())

    def __len__(self) -> int:
        return len(self._modes())

    def mode(self, name: str) -> int:
        """The file mode of attribute ``name`` (``ENOENT`` if absent)."""
        return self._mode(name)

    def _mode(self, name: str) -> int:
        try:
            return self._modes()[name]
        except KeyError:
            raise OSError(errno.ENOENT, f"{name}: No such file or directory") from None

    # -- writing ------------------------------------------------------------------

    def __setitem__(self, name: str, value: str | bytes) -> None:
        self.write(name, value)

    def write(self, name: str, value: str | bytes) -> int:
        """``write(2)`` of ``value`` to the attribute; returns the count written."""
        mode = self._mode(name)
        if not mode & 0o222:
            raise OSError(errno.EACCES, f"{name}: Permission denied (mode {mode:04o})")
        # kernfs_fop_write_iter: a sysfs file (no atomic_write_len) takes at most a
        # page per write(2); the rest is not written.
        raw = (value.encode() if isinstance(value, str) else bytes(value))[:PAGE_SIZE]
        if not raw:  # sysfs_kf_write: nothing to do
            return 0
        buf = raw.split(b"\0", 1)[0].decode("latin-1")
        getattr(self, f"{name}_store")(buf)
        return len(raw)

    # -- show handlers --------------------------------------------------------------

    def initstate_show(self) -> str:
        with self._zram.init_lock.read():
            return f"{int(self._zram.init_done())}\n"

    def disksize_show(self) -> str:
        return f"{self._zram.disksize}\n"

    def comp_algorithm_show(self) -> str:
        z = self._zram
        with z.init_lock.read():
            return zcomp_available_show(z.comp_algs[0], z.config.backends)

    def mm_stat_show(self) -> str:
        return self._zram.mm_stat().format()

    def io_stat_show(self) -> str:
        with self._zram.init_lock.read():
            return self._zram.io_stat().format()

    def debug_stat_show(self) -> str:
        with self._zram.init_lock.read():
            return self._zram.debug_stat()

    def backing_dev_show(self) -> str:
        z = self._zram
        with z.init_lock.read():
            return f"{z.backing_dev.path}\n" if z.backing_dev is not None else "none\n"

    def bd_stat_show(self) -> str:
        with self._zram.init_lock.read():
            return self._zram.bd_stat()

    def writeback_limit_show(self) -> str:
        z = self._zram
        with z.init_lock.read(), z._wb_limit_lock:
            return f"{z.bd_wb_limit}\n"

    def writeback_limit_enable_show(self) -> str:
        z = self._zram
        with z.init_lock.read(), z._wb_limit_lock:
            return f"{int(z.wb_limit_enable)}\n"

    def recomp_algorithm_show(self) -> str:
        """``recomp_algorithm_show``, with its offset arithmetic as 6.18 has it.

        ``zcomp_available_show(comp, buf, at)`` returns the *end offset*
        (``at`` plus what it wrote) and the caller adds that to ``sz``, so
        each listing after the first starts past a gap the page buffer
        leaves as NUL bytes, and the read returns them (``"#1: … \n"``,
        4 NULs, ``"#2: … \n"``, 38 NULs, …; seen on a 6.18.15 kernel built
        with ``CONFIG_ZRAM_MULTI_COMP``).
        """
        z = self._zram
        buf = bytearray(PAGE_SIZE)
        sz = 0
        with z.init_lock.read():
            for p in range(1, z.config.max_comps):
                if z.comp_algs[p] is None:
                    continue
                for text, gives_end in (
                    (f"#{p}: ", False),
                    (zcomp_available_show(z.comp_algs[p], z.config.backends), True),
                ):
                    data = text.encode()[: max(0, PAGE_SIZE - 1 - sz)] if sz < PAGE_SIZE else b""
                    buf[sz : sz + len(data)] = data
                    sz += sz + len(data) if gives_end else len(data)
        return buf[: min(sz, PAGE_SIZE)].decode()

    # -- store handlers ---------------------------------------------------------------

    def disksize_store(self, buf: str) -> None:
        disksize, _ = memparse(buf)
        if not disksize:
            raise OSError(errno.EINVAL, "disksize: 0")
        z = self._zram
        with z.init_lock.write():
            z.initialise(disksize)

    def reset_store(self, buf: str) -> None:
        if not kstrtou16(buf, 10):
            raise OSError(errno.EINVAL, "reset: 0")
        self._zram.reset()

    def mem_limit_store(self, buf: str) -> None:
        limit, end = memparse(buf)
        if end == 0:
            raise OSError(errno.EINVAL, "mem_limit: nothing parsed")
        z = self._zram
        with z.init_lock.write():
            z.limit_pages = (((limit + PAGE_SIZE - 1) & U64_MASK) & ~(PAGE_SIZE - 1)) >> PAGE_SHIFT

    def mem_used_max_store(self, buf: str) -> None:
        try:
            val = kstrtoul(buf, 10)
        except OSError:
            val = -1
        if val != 0:
            raise OSError(errno.EINVAL, "mem_used_max: only 0 may be written")
        z = self._zram
        with z.init_lock.read():
            if z.init_done():
                atomic64_set(z.stats.max_used_pages, z.mem_pool.zs_get_total_pages())

    def compact_store(self, buf: str) -> None:
        z = self._zram
        with z.init_lock.read():
            if not z.init_done():
                raise OSError(errno.EINVAL, "compact: device not initialised")
            z.mem_pool.zs_compact()

    def idle_store(self, buf: str) -> None:
        """``idle_store``: ``all``, or an age in seconds with TRACK_ENTRY_ACTIME."""
        z = self._zram
        cutoff = 0
        if not sysfs_streq(buf, "all"):
            if not z.config.track_entry_actime:
                raise OSError(errno.EINVAL, "idle: only 'all' (no CONFIG_ZRAM_TRACK_ENTRY_ACTIME)")
            try:
                age_sec = kstrtoull(buf, 0)
            except OSError:
                raise OSError(
                    errno.EINVAL, f"idle: {buf.strip()!r} is not 'all' or an age"
                ) from None
            cutoff = z.clock() - age_sec * NSEC_PER_SEC
        with z.init_lock.read():
            if not z.init_done():
                raise OSError(errno.EINVAL, "idle: device not initialised")
            mark_idle(z, cutoff)

    def comp_algorithm_store(self, buf: str) -> None:
        comp_algorithm_store(self._zram, 0, buf)

    def recomp_algorithm_store(self, buf: str) -> None:
        """``recomp_algorithm_store``: ``algo=NAME [priority=1..3]`` before init."""
        prio, alg = 1, None
        for param, val in parse_args(buf):
            if not val:
                raise OSError(errno.EINVAL, f"recomp_algorithm: {param!r} has no value")
            if param == "algo":
                alg = val
            elif param == "priority":
                prio = kstrtoint(val, 10)
        if alg is None:
            raise OSError(errno.EINVAL, "recomp_algorithm: algo= is required")
        if not 1 <= prio < self._zram.config.max_comps:
            raise OSError(errno.EINVAL, f"recomp_algorithm: priority {prio} out of range")
        comp_algorithm_store(self._zram, prio, alg)

    def recompress_store(self, buf: str) -> None:
        from pyzram.zram.writeback import recompress_store

        recompress_store(self._zram, buf)

    def writeback_store(self, buf: str) -> None:
        from pyzram.zram.writeback import writeback_store

        writeback_store(self._zram, buf)

    def writeback_limit_store(self, buf: str) -> None:
        val = _kstrtoull_einval(buf, "writeback_limit")
        z = self._zram
        with z.init_lock.read(), z._wb_limit_lock:
            z.bd_wb_limit = val

    def writeback_limit_enable_store(self, buf: str) -> None:
        val = _kstrtoull_einval(buf, "writeback_limit_enable")
        z = self._zram
        with z.init_lock.read(), z._wb_limit_lock:
            z.wb_limit_enable = bool(val)

    def backing_dev_store(self, buf: str) -> None:
        backing_dev_store(self._zram, buf)

    def algorithm_params_store(self, buf: str) -> None:
        """``algorithm_params_store``: ``priority= level= algo= dict= deflate.winbits=``,
        applied at next init; other parameters are ignored, as the kernel ignores them."""
        z = self._zram
        prio, level, winbits = 0, ZCOMP_PARAM_NO_LEVEL, ZCOMP_PARAM_NO_LEVEL
        algo = dict_path = None
        for param, val in parse_args(buf):
            if not val:
                raise OSError(errno.EINVAL, f"algorithm_params: {param!r} has no value")
            if param == "priority":
                prio = kstrtoint(val, 10)
            elif param == "level":
                level = kstrtoint(val, 10)
            elif param == "algo":
                algo = val
            elif param == "dict":
                dict_path = val
            elif param == "deflate.winbits":
                winbits = kstrtoint(val, 10)
        if algo is not None:
            prio = next((p for p, a in enumerate(z.comp_algs) if a == algo), -1)
        if not 0 <= prio < z.config.max_comps:
            raise OSError(errno.EINVAL, "algorithm_params: no such priority / algorithm")
        z.params[prio] = ZcompParams()  # comp_params_reset
        data = None
        if dict_path is not None:
            try:  # kernel_read_file_from_path: an empty file is EINVAL too
                with open(dict_path, "rb") as f:
                    data = f.read()
                if not data:
                    raise OSError(errno.EINVAL, "empty")
            except OSError:
                raise OSError(errno.EINVAL, f"algorithm_params: cannot read {dict_path}") from None
        z.params[prio] = ZcompParams(level=level, dict=data, deflate_winbits=winbits)


def _kstrtoull_einval(buf: str, name: str) -> int:
    """``if (kstrtoull(buf, 10, &val)) return -EINVAL``: every parse error is EINVAL."""
    try:
        return kstrtoull(buf, 10)
    except OSError:
        raise OSError(errno.EINVAL, f"{name}: not a number") from None


def comp_algorithm_store(zram: Zram, prio: int, buf: str) -> None:
    """``__comp_algorithm_store``: name checks, then only while uninitialised."""
    if len(buf) >= CRYPTO_MAX_ALG_NAME:
        raise OSError(errno.E2BIG, "algorithm name too long")
    name = buf[:-1] if buf.endswith("\n") else buf
    if not zcomp_available_algorithm(name, zram.config.backends):
        raise OSError(errno.EINVAL, f"algorithm {name!r} is not available")
    with zram.init_lock.write():
        if zram.init_done():
            raise OSError(errno.EBUSY, "Can't change algorithm for initialized device")
        zram.comp_algs[prio] = name


def backing_dev_store(zram: Zram, buf: str) -> None:
    """``backing_dev_store``: open the backing device; only before init.

    pyzram accepts a regular file as well as a block device node (both are
    opened as a :class:`~pyzram.block.filedev.FileDisk`), where the kernel
    takes block devices only; anything else is ``ENOTBLK``.
    """
    import stat

    from pyzram.block.filedev import FileDisk
    from pyzram.zram.writeback import BackingDev

    path = buf[:-1] if buf.endswith("\n") else buf
    with zram.init_lock.write():
        if zram.init_done():
            raise OSError(errno.EBUSY, "Can't setup backing device for initialized device")
        st = os.stat(path)  # ENOENT and friends, as filp_open returns them
        if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise OSError(errno.ENOTBLK, f"{path} is not a block device")
        nr_pages = st.st_size >> PAGE_SHIFT if stat.S_ISREG(st.st_mode) else None
        disk = FileDisk(path)
        if nr_pages is None:
            nr_pages = disk.disk.capacity >> (PAGE_SHIFT - 9)
        if not nr_pages:  # refuse a zero-sized device
            disk.close()
            raise OSError(errno.EINVAL, f"{path} is empty")
        zram.reset_bdev()
        zram.backing_dev = BackingDev(disk, os.path.realpath(path), nr_pages)


def mark_idle(zram: Zram, cutoff: int) -> None:
    """``mark_idle``: set IDLE on allocated slots not SAME/WB, older than ``cutoff``.

    ``cutoff == 0`` marks all of them (``idle=all``); with an age, slots
    accessed at or after the cutoff get IDLE cleared.  A vectorised scan
    finds the slots that hold anything; each is then rechecked and changed
    under its slot lock, as the kernel's loop does, so a slot freed or
    accessed in between is judged on what it holds then.
    """
    tbl = zram.table
    flags = tbl.flags
    ac_time = tbl.ac_time if cutoff else None
    for index in np.flatnonzero(tbl.allocated_mask()).tolist():
        tbl.slot_lock(index)
        try:
            f = flags[index]
            if not tbl.allocated(index) or f & (T.SAME | T.WB):
                continue
            if ac_time is None or ac_time[index] < cutoff:
                flags[index] = f | T.IDLE
            else:
                flags[index] = f & (U64_MASK ^ T.IDLE)
        finally:
            tbl.slot_unlock(index)
