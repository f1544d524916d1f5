"""``struct swap_ops`` and the one-slot block-driver registry (the seed series, patch 1/3).

A swap area does its I/O through ``si.ops``: ``submit_write(ctx)`` and
``submit_read(ctx)`` receive a whole batch (a ``swap_iocb`` of up to 32
folios), ``can_merge(si, folio, prev, prev_size, rw)`` (optional; ``None`` =
always) decides whether the next folio may join the batch (the area comes
first: the kernel's hook finds it through the global ``swap_info``), and
``slot_free_notify`` (patch 3/3, optional) is told when a slot becomes free
— under the cluster lock, so it must not block.

``swap_register_block_ops(m, fops, ops)`` lets one block driver claim the
areas of its disks on machine ``m`` (the registry is the machine's
``swap_block_ops``): at ``swapon`` of a block device whose
``disk.fops is fops`` the area takes ``ops`` instead of ``swap_bdev_ops``.
The contract of the patch, exactly:

* ``EINVAL`` (warned once) if ``fops`` or ``ops`` is missing, or ``ops``
  lacks ``submit_read`` or ``submit_write``;
* ``EBUSY`` if the single slot is taken, by anyone, the same fops included;
* ``swap_unregister_block_ops(m, fops)``: no-op when empty; a different
  ``fops`` is warned about once and changes nothing (soft owner check);
* areas swapped on while registered keep their ops until swapoff.
"""

from __future__ import annotations

import errno
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyzram.block.blkdev import BlockDeviceOperations
    from pyzram.mm.folio import Folio
    from pyzram.mm.machine import Machine
    from pyzram.mm.swap import SwapIoCtx
    from pyzram.mm.swapfile import SwapInfo

#: The backend must not recurse into the filesystem: reclaim's may_enter_fs() checks it.
SWAP_OPS_F_NOFS = 1 << 0

READ = 0
WRITE = 1


class SwapOps:
    """``struct swap_ops``: the area's methods and flags, fixed once made.

    Compiled, an extension type (``swap_ops.pxd``) with read-only fields, so
    the swap core's ``si.ops.submit_read`` is a C load, as the kernel's
    ``si->ops->submit_read`` is.  A variant is made with :meth:`replace`.
    """

    def __init__(
        self,
        name: str,
        submit_write: Callable[[SwapIoCtx], None] | None,
        submit_read: Callable[[SwapIoCtx], None] | None,
        can_merge: Callable[[SwapInfo, Folio, Folio, int, int], bool] | None = None,
        slot_free_notify: Callable[[SwapInfo, int], None] | None = None,
        flags: int = 0,
    ) -> None:
        self.name = name
        self.submit_write = submit_write
        self.submit_read = submit_read
        self.can_merge = can_merge
        self.slot_free_notify = slot_free_notify
        self.flags = flags

    def replace(self, **changes: object) -> SwapOps:
        """A copy with the fields named in ``changes`` replaced (an unknown name is
        a ``TypeError``, as a constructor's unknown keyword is)."""
        fields = {
            "name": self.name,
            "submit_write": self.submit_write,
            "submit_read": self.submit_read,
            "can_merge": self.can_merge,
            "slot_free_notify": self.slot_free_notify,
            "flags": self.flags,
        }
        for key in changes:
            if key not in fields:
                raise TypeError(f"SwapOps has no field {key!r}")
        fields.update(changes)
        return SwapOps(**fields)

    def __repr__(self) -> str:
        return f"SwapOps(name={self.name!r}, flags={self.flags:#x})"


class SwapBlockOps:
    """The registry's one slot (``swap_block_ops`` and its mutex), held by the machine."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # swap_block_ops_lock (a mutex)
        self.fops: BlockDeviceOperations | None = None
        self.ops: SwapOps | None = None
        self.warned: set[str] = set()

    def warn_once(self, key: str, msg: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)


def swap_register_block_ops(
    m: Machine, fops: BlockDeviceOperations | None, ops: SwapOps | None
) -> None:
    """``swap_register_block_ops``: claim the one slot; ``OSError`` EINVAL / EBUSY."""
    reg = m.swap_block_ops
    if fops is None or ops is None or ops.submit_read is None or ops.submit_write is None:
        reg.warn_once("einval", "swap_register_block_ops: missing fops, ops or callbacks")
        raise OSError(errno.EINVAL, "swap_register_block_ops: missing fops, ops or callbacks")
    with reg.lock:
        if reg.fops is not None:
            raise OSError(errno.EBUSY, "swap block ops already registered")
        reg.fops, reg.ops = fops, ops


def swap_unregister_block_ops(m: Machine, fops: BlockDeviceOperations) -> None:
    """``swap_unregister_block_ops``: release the slot if ``fops`` owns it."""
    reg = m.swap_block_ops
    with reg.lock:
        if reg.fops is None:
            return
        if reg.fops is not fops:
            reg.warn_once("owner", "swap_unregister_block_ops: fops does not own the registration")
            return
        reg.fops = reg.ops = None


def lookup_swap_block_ops(si: SwapInfo) -> SwapOps | None:
    """``lookup_swap_block_ops``: the registered ops if ``si``'s disk matches."""
    bdev = si.bdev
    if bdev is None:
        return None
    reg = si.machine.swap_block_ops
    with reg.lock:
        if reg.fops is not None and bdev.disk.fops is reg.fops:
            return reg.ops
        return None


def registered_block_ops(m: Machine) -> tuple[BlockDeviceOperations | None, SwapOps | None]:
    """What the slot holds now (for tests and reports)."""
    reg = m.swap_block_ops
    with reg.lock:
        return reg.fops, reg.ops
