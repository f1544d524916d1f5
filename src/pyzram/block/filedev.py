"""A file-backed block device (like a loop device): a plain swap disk or a backing_dev.

``FileDisk(path)`` exposes a real file as a bio-based disk with 512-byte
sectors: READ and WRITE are ``pread``/``pwrite`` of each bio_vec at its
sector, DISCARD and WRITE_ZEROES punch a hole (``fallocate``) or write
zeros.  Completion is synchronous.  ``fail_sectors`` injects I/O errors for
tests (any bio touching one of those sectors fails with BLK_STS_IOERR).
"""

from __future__ import annotations

import os
from pathlib import Path

from pyzram.block.bio import (
    BLK_STS_IOERR,
    REQ_OP_DISCARD,
    REQ_OP_READ,
    REQ_OP_WRITE,
    REQ_OP_WRITE_ZEROES,
    SECTOR_SHIFT,
    Bio,
    bio_endio,
)
from pyzram.block.blkdev import BLK_FEAT_SYNCHRONOUS, BlockDeviceOperations, Gendisk

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


class FileDisk:
    """A disk whose sectors are the bytes of a real file."""

    def __init__(self, path: str | os.PathLike[str], size: int | None = None) -> None:
        self.path = Path(path)
        flags = os.O_RDWR | os.O_CREAT
        self.fd = os.open(self.path, flags, 0o600)
        if size is not None:
            os.ftruncate(self.fd, size)
        self.fail_sectors: set[int] = set()
        self.bios: list[tuple[str, int, int]] = []  # (op, sector, bytes): an I/O trace
        self.fops = BlockDeviceOperations("filedisk", submit_bio=self.submit_bio)
        self.disk = Gendisk(
            f"file:{self.path.name}",
            self.fops,
            private_data=self,
            capacity_fn=lambda: os.fstat(self.fd).st_size >> SECTOR_SHIFT,
            features=BLK_FEAT_SYNCHRONOUS,
            logical_block_size=512,
        )

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> FileDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit_bio(self, bio: Bio) -> None:
        """This disk's ``submit_bio``: do the I/O now and end the bio."""
        pos = bio.sector << SECTOR_SHIFT
        nsect = max(1, bio.size >> SECTOR_SHIFT)
        self.bios.append((bio.op_name, bio.sector, bio.size))
        if self.fail_sectors and any(
            s in self.fail_sectors for s in range(bio.sector, bio.sector + nsect)
        ):
            bio.status = BLK_STS_IOERR
            bio_endio(bio)
            return
        try:
            if bio.op == REQ_OP_READ:
                for bv in bio.bvecs:
                    view = bv.view()
                    got = os.preadv(self.fd, [view], pos)
                    if got < bv.len:
                        view[got:] = bytes(bv.len - got)
                    pos += bv.len
            elif bio.op == REQ_OP_WRITE:
                for bv in bio.bvecs:
                    os.pwrite(self.fd, bv.view(), pos)
                    pos += bv.len
            elif bio.op in (REQ_OP_DISCARD, REQ_OP_WRITE_ZEROES):
                try:
                    _punch_hole(self.fd, pos, bio.size)
                except OSError:
                    os.pwrite(self.fd, bytes(bio.size), pos)
            else:
                bio.status = BLK_STS_IOERR
        except OSError:
            bio.status = BLK_STS_IOERR
        bio_endio(bio)


def _punch_hole(fd: int, offset: int, length: int) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    ret = libc.fallocate(
        fd,
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        ctypes.c_long(offset),
        ctypes.c_long(length),
    )
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
