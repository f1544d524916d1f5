"""The text of zram's read-only stat files, and its parsing.

Models ``mm_stat_show``, ``io_stat_show`` and ``debug_stat_show`` of
drivers/block/zram/zram_drv.c (Linux 6.18).  The format strings are the
kernel's, so that ``Zram.sysfs["mm_stat"]`` and ``/sys/block/zramN/mm_stat``
can be compared as strings, and :func:`parse_mm_stat` reads both.
"""

from __future__ import annotations

from typing import NamedTuple


class MmStat(NamedTuple):
    """The nine fields of ``/sys/block/zramN/mm_stat``, in the kernel's order."""

    orig_data_size: int
    compr_data_size: int
    mem_used_total: int
    mem_limit: int
    mem_used_max: int
    same_pages: int
    pages_compacted: int
    huge_pages: int
    huge_pages_since: int

    def format(self) -> str:
        """The kernel's ``"%8llu %8llu %8llu %8lu %8ld %8llu %8lu %8llu %8llu\\n"``."""
        return " ".join(f"{v:8d}" for v in self) + "\n"


class IoStat(NamedTuple):
    """``io_stat``: failed_reads, failed_writes, (invalid_io: always 0), notify_free."""

    failed_reads: int
    failed_writes: int
    invalid_io: int
    notify_free: int

    def format(self) -> str:
        """The kernel's ``"%8llu %8llu 0 %8llu\\n"`` (invalid_io is a literal 0)."""
        return f"{self.failed_reads:8d} {self.failed_writes:8d} 0 {self.notify_free:8d}\n"


def format_debug_stat(miss_free: int) -> str:
    """``debug_stat`` of 6.15+: ``"version: 1\\n"`` then ``"0 %8llu\\n"`` (writestall gone)."""
    return f"version: 1\n0 {miss_free:8d}\n"


def parse_mm_stat(text: str) -> MmStat:
    """Parse ``mm_stat`` text (ours or the kernel's) into :class:`MmStat`."""
    fields = text.split()
    if len(fields) != len(MmStat._fields):
        raise ValueError(f"mm_stat has {len(fields)} fields, expected 9: {text!r}")
    return MmStat(*(int(f) for f in fields))


def parse_io_stat(text: str) -> IoStat:
    """Parse ``io_stat`` text into :class:`IoStat`."""
    fields = text.split()
    if len(fields) != 4:
        raise ValueError(f"io_stat has {len(fields)} fields, expected 4: {text!r}")
    return IoStat(*(int(f) for f in fields))
