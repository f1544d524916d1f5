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
from dataclasses import dataclass
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


def _no_capacity() -> int:
    return 0


class Gendisk:
    """``struct gendisk``.

    Compiled, an extension type (``blkdev.pxd``): a driver's swap hooks reach
    their device through ``si.bdev.disk.private_data`` as C loads, as the
    kernel's ``si->bdev->bd_disk->private_data`` does.
    """

    def __init__(
        self,
        disk_name: str,
        fops: BlockDeviceOperations,
        private_data: object = None,
        capacity_fn: Callable[[], int] = _no_capacity,
        features: int = 0,
        logical_block_size: int = 512,
    ) -> None:
        self.disk_name = disk_name
        self.fops = fops
        self.private_data = private_data
        self.capacity_fn = capacity_fn
        self.features = features
        self.logical_block_size = logical_block_size
        self._openers = 0
        #: ``bd_holder``: who claimed the disk exclusively (a swap area), or None.
        self.bd_holder: object = None
        #: Bios submitted to the disk, by op name (the ios of ``/sys/block/<disk>/stat``).
        self.bio_stats: Counter = Counter()

    def __repr__(self) -> str:
        return f"Gendisk(disk_name={self.disk_name!r})"

    @property
    def capacity(self) -> int:
        """``get_capacity``: size in 512-byte sectors."""
        return self.capacity_fn()


class BlockDevice:
    """``struct block_device``: the device node, opened by ``swapon``, mkswap...

    Compiled, an extension type, like :class:`Gendisk`."""

    def __init__(self, disk: Gendisk, holder: object = None) -> None:
        self.disk = disk
        self.holder = holder

    def __repr__(self) -> str:
        return f"BlockDevice(disk={self.disk!r})"

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
