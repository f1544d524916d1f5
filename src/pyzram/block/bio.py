"""Bios (model of include/linux/blk_types.h, bio.h and block/bio.c).

A :class:`Bio` is one block I/O: an operation, a start sector and a list of
bio_vecs, each a view of real memory (a folio's bytes).  ``submit_bio``
hands it to the device's ``block_device_operations.submit_bio`` — the
bio-based drivers zram and our file-backed disk complete it before
returning, as ``BLK_FEAT_SYNCHRONOUS`` devices do — and ``bio_endio`` runs
its ``end_io`` exactly once.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyzram.block.blkdev import BlockDevice

SECTOR_SHIFT = 9
SECTOR_SIZE = 512

# enum req_op
REQ_OP_READ = 0
REQ_OP_WRITE = 1
REQ_OP_DISCARD = 3
REQ_OP_WRITE_ZEROES = 9
# request flags
REQ_SYNC = 1 << 11
REQ_SWAP = 1 << 20

# blk_status_t
BLK_STS_OK = 0
BLK_STS_IOERR = 10

OP_NAMES = {
    REQ_OP_READ: "READ",
    REQ_OP_WRITE: "WRITE",
    REQ_OP_DISCARD: "DISCARD",
    REQ_OP_WRITE_ZEROES: "WRITE_ZEROES",
}


@dataclass
class BioVec:
    """``struct bio_vec``: ``len`` bytes of ``page`` (a writable memoryview) at ``offset``."""

    page: memoryview
    len: int
    offset: int = 0

    def view(self) -> memoryview:
        return self.page[self.offset : self.offset + self.len]


@dataclass(eq=False)
class Bio:
    """``struct bio``."""

    bdev: BlockDevice
    op: int
    sector: int
    bvecs: list[BioVec] = field(default_factory=list)
    opf_flags: int = 0
    size: int = 0  # bi_iter.bi_size, for DISCARD / WRITE_ZEROES (no bvecs)
    status: int = BLK_STS_OK
    end_io: Callable[[Bio], None] | None = None
    private: object = None
    _ended: bool = False

    def add_page(self, page: memoryview, length: int, offset: int = 0) -> None:
        """``bio_add_page`` / ``bio_add_folio``."""
        self.bvecs.append(BioVec(page, length, offset))
        self.size += length

    @property
    def op_name(self) -> str:
        return OP_NAMES.get(self.op, str(self.op))


def bio_endio(bio: Bio) -> None:
    """``bio_endio``: complete the bio; ``end_io`` runs exactly once."""
    if bio._ended:
        raise RuntimeError("bio_endio called twice")
    bio._ended = True
    if bio.end_io is not None:
        bio.end_io(bio)


def submit_bio(bio: Bio) -> None:
    """``submit_bio``: check the range, then the driver's ``submit_bio``."""
    disk = bio.bdev.disk
    disk.bio_stats[bio.op_name] += 1
    end = bio.sector + (bio.size >> SECTOR_SHIFT)
    if bio.sector < 0 or end > disk.capacity:
        # bio_check_eod: "attempt to access beyond end of device"
        bio.status = BLK_STS_IOERR
        bio_endio(bio)
        return
    disk.fops.submit_bio(bio)


def submit_bio_wait(bio: Bio) -> int:
    """``submit_bio_wait``: submit and wait; 0 or ``-EIO``."""
    done: list[Bio] = []
    bio.end_io = done.append
    submit_bio(bio)
    if not done:
        raise RuntimeError("synchronous bio did not complete")
    return 0 if bio.status == BLK_STS_OK else -errno.EIO
