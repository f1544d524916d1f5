"""Block devices (model of struct block_device, gendisk, block_device_operations).

A :class:`Gendisk` is the driver's disk: its ``fops`` (the
``block_device_operations`` the swap core matches registered ``swap_ops``
against), ``private_data`` (the zram device, say), capacity in sectors and
the queue features the swap core reads at ``swapon`` (synchronous, stable
writes, non-rotational).  A :class:`BlockDevice` is the opened device node.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyzram.block.bio import Bio

BLK_FEAT_SYNCHRONOUS = 1 << 0
BLK_FEAT_STABLE_WRITES = 1 << 1
BLK_FEAT_ROTATIONAL = 1 << 2


@dataclass(eq=False)
class BlockDeviceOperations:
    """``struct block_device_operations``: the driver's methods.

    ``swap_slot_free_notify`` is the pre-series hook (removed by patch 3/3 of
    the swap_ops series, which routes the notification through ``swap_ops``).
    """

    name: str
    submit_bio: Callable[[Bio], None]
    open: Callable[[Gendisk], None] | None = None
    release: Callable[[Gendisk], None] | None = None
    swap_slot_free_notify: Callable[[BlockDevice, int], None] | None = None


@dataclass(eq=False)
class Gendisk:
    """``struct gendisk``."""

    disk_name: str
    fops: BlockDeviceOperations
    private_data: object = None
    capacity_fn: Callable[[], int] = lambda: 0
    features: int = 0
    logical_block_size: int = 512
    _openers: int = field(default=0)
    #: ``bd_holder``: who claimed the disk exclusively (a swap area), or None.
    bd_holder: object = field(default=None)
    #: Bios submitted to the disk, by op name (the ios of ``/sys/block/<disk>/stat``).
    bio_stats: Counter = field(default_factory=Counter)

    @property
    def capacity(self) -> int:
        """``get_capacity``: size in 512-byte sectors."""
        return self.capacity_fn()


@dataclass(eq=False)
class BlockDevice:
    """``struct block_device``: the device node, opened by ``swapon``, mkswap..."""

    disk: Gendisk
    holder: object = None

    @property
    def size(self) -> int:
        return self.disk.capacity << 9


def blkdev_get(disk: Gendisk, holder: object = None) -> BlockDevice:
    """``bdev_file_open_by_dev``: open the disk (``fops->open``), pinning it.

    With a ``holder`` the open is exclusive (``BLK_OPEN_EXCL``,
    ``bd_prepare_to_claim``): ``EBUSY`` while another holder has the disk.
    """
    if holder is not None:
        if disk.bd_holder is not None and disk.bd_holder is not holder:
            raise OSError(errno.EBUSY, f"{disk.disk_name} is claimed by another holder")
    if disk.fops.open is not None:
        disk.fops.open(disk)
    disk._openers += 1
    if holder is not None:
        disk.bd_holder = holder
    return BlockDevice(disk, holder)


def blkdev_put(bdev: BlockDevice) -> None:
    """``bdev_fput``: drop an opener (``fops->release``)."""
    disk = bdev.disk
    if disk._openers <= 0:
        raise OSError(errno.EINVAL, f"{disk.disk_name} is not open")
    disk._openers -= 1
    if bdev.holder is not None and disk.bd_holder is bdev.holder:
        disk.bd_holder = None  # bd_end_claim
    if disk.fops.release is not None:
        disk.fops.release(disk)
