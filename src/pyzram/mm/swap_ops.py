"""``struct swap_ops`` and the one-slot block-driver registry (the seed series, patch 1/3).

A swap area does its I/O through ``si.ops``: ``submit_write(ctx)`` and
``submit_read(ctx)`` receive a whole batch (a ``swap_iocb`` of up to 32
folios), ``can_merge(si, folio, prev, prev_size, rw)`` (optional) decides
whether the next folio may join the batch (the area comes first: the
kernel's hook finds it through the global ``swap_info``), and
``slot_free_notify(si, offset)`` (patch 3/3, optional) is told when a slot
becomes free — under the cluster lock, so it must not block.

The kernel's ``struct swap_ops`` is a const table of function pointers, one
per implementation (``swap_bdev_ops``, ``swap_fs_ops``, ``zram_swap_ops``).
Here the table is a class: an implementation subclasses :class:`SwapOps`
and defines its hooks as methods, and one instance of it is what
``si->ops`` points to.  Compiled, :class:`SwapOps` is an extension type
whose hooks are C methods (``swap_ops.pxd``): ``si.ops.can_merge(...)`` is
an indirect C call through the type's method table, as the kernel's
``si->ops->can_merge(...)`` is one through the struct.  A hook an
implementation leaves undefined is the base class's, which does what the
swap core does for a NULL pointer (``can_merge``: always; no free
notification); :func:`swap_ops_defines` tells whether a hook is defined,
the kernel's test of the pointer.

``swap_register_block_ops(m, fops, ops)`` lets one block driver claim the
areas of its disks on machine ``m`` (the registry is the machine's
``swap_block_ops``): at ``swapon`` of a block device whose
``disk.fops is fops`` the area takes ``ops`` instead of ``swap_bdev_ops``.
The contract of the patch, exactly:

* ``EINVAL`` (warned once) if ``fops`` or ``ops`` is missing, or ``ops``
  does not define ``submit_read`` or ``submit_write``;
* ``EBUSY`` if the single slot is taken, by anyone, the same fops included;
* ``swap_unregister_block_ops(m, fops)``: no-op when empty; a different
  ``fops`` is warned about once and changes nothing (soft owner check);
* areas swapped on while registered keep their ops until swapoff.
"""

from __future__ import annotations

import errno
import threading
import warnings
from typing import TYPE_CHECKING

import cython

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


@cython.cclass
class SwapOps:
    """``struct swap_ops``: an implementation's hooks (its methods) and ``flags``.

    Subclass it and define ``submit_write`` and ``submit_read`` (required:
    the registry refuses ops without them), and ``can_merge`` and
    ``slot_free_notify`` where the implementation has them.  ``name`` is
    the kernel symbol the instance stands for (``"zram_swap_ops"``).
    """

    def __init__(self, name: str, flags: int = 0) -> None:
        self.name = name
        self.flags = flags

    def submit_write(self, ctx: SwapIoCtx) -> None:
        """``submit_write``: write the batch; own it from now on and end it
        (``swap_write_end``) exactly once.  Not defined here: a NULL pointer."""
        raise NotImplementedError(f"{self.name} has no submit_write")

    def submit_read(self, ctx: SwapIoCtx) -> None:
        """``submit_read``: read the batch; end it (``swap_read_end``) exactly
        once.  Not defined here: a NULL pointer."""
        raise NotImplementedError(f"{self.name} has no submit_read")

    def can_merge(self, si: SwapInfo, folio: Folio, prev: Folio, prev_size: int, rw: int) -> bool:
        """``can_merge``: may ``folio`` join the batch whose last folio is ``prev``?
        Not defined here, and the swap core's answer for a NULL hook is yes:
        batch until full or flushed."""
        return True

    def slot_free_notify(self, si: SwapInfo, offset: int) -> None:
        """``slot_free_notify``: slot ``offset`` became free (under the cluster
        lock: must not block).  Not defined here: nobody is told."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, flags={self.flags:#x})"


def swap_ops_defines(ops: SwapOps, hook: str) -> bool:
    """Whether ``ops`` defines ``hook`` (the kernel's ``ops->hook != NULL``); false
    for anything that is not a :class:`SwapOps`."""
    if not isinstance(ops, SwapOps):
        return False
    return getattr(type(ops), hook) is not getattr(SwapOps, hook)


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
    if (
        fops is None
        or not swap_ops_defines(ops, "submit_read")
        or not swap_ops_defines(ops, "submit_write")
    ):
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
