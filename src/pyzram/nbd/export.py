"""NBD exports: a pyzram device each, and the block-layer work between NBD requests and it.

An NBD client may address any byte range; zram takes whole 4 KiB pages only
(its logical block size).  The kernel's block layer bridges the two for a
buffered write to ``/dev/zramN``: the page cache reads the page, patches the
bytes and writes the whole page back, under the folio lock.  :class:`Export`
does the same with the device's public entry points (``pread``, ``pwrite``,
``discard``, ``write_zeroes``): a sub-page piece of a request is a
read-modify-write of its page, the page-aligned middle goes to the device as
it is.

The folio lock becomes a small array of *stripe locks* per export (page
index modulo :data:`NR_STRIPES`): every request that changes the device takes
the stripes of the pages it touches, in ascending order, so a
read-modify-write never interleaves with another change to the same page,
while requests to other pages run side by side in the device's own slot
locking.  Reads take no stripe lock; zram's slot lock already makes each page
read atomic.

``NBD_CMD_BLOCK_STATUS`` (:meth:`Export.block_status`) reads zram's slot
table: which pages were never written or were discarded (holes), which are
same-filled with zeros, and which hold data, per 4 KiB page, computed with
numpy over the table's arrays, as zram's own whole-table scans are.

Export options are sysfs attribute writes, with the same words and errors
as sysfs: ``NAME:size=64M,algorithm=lz4,backing_dev=/path`` writes
``comp_algorithm``, then ``backing_dev``, then ``disksize``.
"""

from __future__ import annotations

import errno
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyzram.config import ZramConfig
from pyzram.nbd import protocol as P
from pyzram.zram import table as T
from pyzram.zram.zram_drv import BIO_MAX_VECS, PAGE_SIZE, Zram

__all__ = [
    "MAX_EXTENTS",
    "NR_STRIPES",
    "Export",
    "ExportSpec",
    "find_export",
    "parse_export_spec",
]

#: Stripe locks per export (page index modulo this).
NR_STRIPES = 256
_PAGE_MASK = PAGE_SIZE - 1
#: Bytes of one bio of zram's reads (BIO_MAX_VECS pages).
_BIO_MAX_BYTES = BIO_MAX_VECS * PAGE_SIZE
#: Zero pages written at a time for WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE.
_ZERO_CHUNK = bytes(256 * PAGE_SIZE)

#: Most descriptors in one NBD_CMD_BLOCK_STATUS reply (512 KiB of them).  The
#: protocol lets a reply cover less than was asked; the client asks again from
#: where it ends.  A request (at most 4 GiB, 2^20 pages) rarely comes near it.
MAX_EXTENTS = 1 << 16
#: Slots classified per numpy step of a block status scan (with REQ_ONE from the
#: first step's size, doubling up to the largest): a scan stops at the first step
#: that completes the descriptors it needs, without classifying the rest.
_STATUS_FIRST_STEP = 256
_STATUS_STEP = 1 << 16
#: Ranges of up to this many pages are classified slot by slot in plain Python,
#: cheaper than numpy's per-call costs there (a page: ~5 against ~60 µs).
_STATUS_SCALAR = 32
_KIND_INT = T.ZRAM_SIZE_MASK | T.SAME | T.WB
_SAME_WB_INT = T.SAME | T.WB
_KIND_BITS = np.uint64(_KIND_INT)
_SAME_WB = np.uint64(_SAME_WB_INT)
_SAME = np.uint64(T.SAME)

#: Short option names -> the sysfs attribute they write.
ALIASES = {"size": "disksize", "algorithm": "comp_algorithm", "algo": "comp_algorithm"}

#: The sysfs attributes an export may set, in the order they must be written:
#: what zram accepts only before init, then ``disksize`` (init), then the rest.
SETUP_ORDER: tuple[str, ...] = (
    "comp_algorithm",
    "algorithm_params",
    "recomp_algorithm",
    "backing_dev",
    "disksize",
    "mem_limit",
    "writeback_limit_enable",
    "writeback_limit",
)


@dataclass
class ExportSpec:
    """What ``--export NAME:key=value,...`` asks for: a name, sysfs writes, a description."""

    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def ordered_attrs(self) -> list[tuple[str, str]]:
        """The attribute writes in the order zram needs them."""
        return [(a, self.attrs[a]) for a in SETUP_ORDER if a in self.attrs]


def parse_export_spec(text: str) -> ExportSpec:
    """Parse ``NAME:key=value,key=value`` (``NAME`` may be empty: the default export).

    Keys are the sysfs attributes of :data:`SETUP_ORDER`, or ``size``,
    ``algorithm`` (aliases of ``disksize``, ``comp_algorithm``) and
    ``description``.  ``size`` is required.  Bad text is ``ValueError``; bad
    values are found when the device is set up, with sysfs's errno.
    """
    name, sep, opts = text.partition(":")
    if not sep:
        raise ValueError(f"--export {text!r}: expected NAME:size=SIZE[,key=value...]")
    _check_name(name)
    spec = ExportSpec(name)
    for item in filter(None, opts.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"--export {text!r}: {item!r} is not key=value")
        if key == "description":
            spec.description = value
            continue
        attr = ALIASES.get(key, key)
        if attr not in SETUP_ORDER:
            known = ", ".join(["size", "algorithm", "description", *SETUP_ORDER])
            raise ValueError(f"--export {text!r}: unknown option {key!r} (known: {known})")
        spec.attrs[attr] = value
    if "disksize" not in spec.attrs:
        raise ValueError(f"--export {text!r}: size= is required")
    return spec


def _check_name(name: str) -> None:
    """Export names are NBD strings: UTF-8, no NUL, at most 4096 bytes."""
    if "\0" in name or len(name.encode()) > 4096:
        raise ValueError(f"export name {name[:40]!r}: NUL or longer than 4096 bytes")


class Export:
    """One named export: a :class:`~pyzram.zram.zram_drv.Zram` and its stripe locks.

    The I/O methods run in worker threads; the server has checked the range
    against :attr:`size` (``offset + length <= size``, ``length > 0``).
    """

    def __init__(self, spec: ExportSpec, dev_id: int, config: ZramConfig | None = None) -> None:
        self.name = spec.name
        self.description = spec.description
        self.spec = spec
        self.dev = Zram(config, dev_id=dev_id)
        self._stripes = [threading.Lock() for _ in range(NR_STRIPES)]
        self._clients_lock = threading.Lock()
        #: Connections in the transmission phase (each holds the device open).
        self.clients = 0
        for attr, value in spec.ordered_attrs():
            try:
                self.dev.sysfs[attr] = value
            except OSError as e:
                label = repr(self.name) if self.name else "(default)"
                raise OSError(e.errno, f"export {label}: {attr}={value}: {e.strerror}") from None

    def attach(self) -> Any:
        """A client enters the transmission phase: open the device, as a process
        opening ``/dev/zramN`` would (so ``reset`` is ``EBUSY`` meanwhile)."""
        bdev = self.dev.open()
        with self._clients_lock:
            self.clients += 1
        return bdev

    def detach(self, bdev: Any) -> None:
        """The client is gone: release what :meth:`attach` opened."""
        with self._clients_lock:
            self.clients -= 1
        self.dev.release(bdev)

    @property
    def size(self) -> int:
        """The export's size: the device's ``disksize`` (0 after a ``reset``)."""
        return self.dev.disksize

    @property
    def label(self) -> str:
        """How listings show the export (``[NBD]`` for the default, like ``[SWAP]``)."""
        return f"[NBD:{self.name}]" if self.name else "[NBD]"

    # -- stripe locks -------------------------------------------------------------

    def _lock(self, offset: int, length: int) -> list[threading.Lock]:
        """Take the stripes of the pages in the range, in ascending index order."""
        first = offset // PAGE_SIZE
        last = (offset + length - 1) // PAGE_SIZE
        if last - first + 1 >= NR_STRIPES:
            locks = self._stripes
        elif first % NR_STRIPES <= last % NR_STRIPES:
            locks = self._stripes[first % NR_STRIPES : last % NR_STRIPES + 1]
        else:  # wraps around the array: still in ascending index order
            locks = self._stripes[: last % NR_STRIPES + 1] + self._stripes[first % NR_STRIPES :]
        for lk in locks:
            lk.acquire()
        return locks

    def _lock_pages(self, pages: list[int]) -> list[threading.Lock]:
        """Take the stripes of scattered pages, in ascending index order."""
        locks = [self._stripes[i] for i in sorted({p % NR_STRIPES for p in pages})]
        for lk in locks:
            lk.acquire()
        return locks

    @staticmethod
    def _unlock(locks: list[threading.Lock]) -> None:
        for lk in reversed(locks):
            lk.release()

    # -- I/O ------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes | memoryview:
        """``length`` bytes at ``offset``: the covering pages, cut to the request."""
        dev = self.dev
        if not (offset | length) & _PAGE_MASK:
            return dev.pread(length, offset)
        start = offset & ~_PAGE_MASK
        end = (offset + length + _PAGE_MASK) & ~_PAGE_MASK
        data = dev.pread(end - start, start)
        return memoryview(data)[offset - start : offset - start + length]

    def read_aligned(self, offset: int, length: int) -> bytes | bytearray | memoryview:
        """:meth:`read` of a page-aligned range: the device's pages straight into
        one buffer (``Zram.pread_into``), which the server sends as it is."""
        if (offset | length) & _PAGE_MASK or length > _BIO_MAX_BYTES:
            return self.read(offset, length)
        out = bytearray(length)
        n = self.dev.pread_into(out, offset)
        return out if n == length else memoryview(out)[:n]

    def read_into(self, reqs: list[tuple[int, memoryview]]) -> list[BaseException | None]:
        """Page-aligned reads that arrived together, each into its own place in
        the reply's memory (``buf``, as many bytes as it asks for).

        Each read is one ``Zram.pread_into`` at its offset, as a server
        issuing one ``preadv`` per request would: its pages are decoded
        straight into ``buf``, and a page that does not decompress fails
        that read alone (``EIO``, one ``failed_reads``).  Returns each
        read's error, or ``None``.
        """
        dev = self.dev
        results: list[BaseException | None] = []
        for offset, buf in reqs:
            try:
                n = dev.pread_into(buf, offset)
                if n != len(buf):
                    raise OSError(errno.EINVAL, "read past the end of the export")
            except OSError as e:
                results.append(e)
            else:
                results.append(None)
        return results

    def write_many(self, items: list[tuple[int, bytes]]) -> list[None | BaseException]:
        """Page-aligned writes to distinct pages that arrived together: each is
        its own :meth:`write` (one ``pwrite``), in arrival order, and gets its
        own result."""
        return [_attempt(self.write, o, d) for o, d in items]

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``offset``; partial pages are read, patched and written back."""
        length = len(data)
        locks = self._lock(offset, length)
        try:
            self._patch(offset, memoryview(data))
        finally:
            self._unlock(locks)

    def trim(self, offset: int, length: int) -> None:
        """NBD_CMD_TRIM: discard the whole pages inside the range (zram's ``discard``).

        Trim is a hint; the partial pages at its edges keep their data, as
        the block layer's discard granularity (one zram page) would leave them.
        """
        start = (offset + _PAGE_MASK) & ~_PAGE_MASK
        end = (offset + length) & ~_PAGE_MASK
        if end <= start:
            return
        locks = self._lock(start, end - start)
        try:
            self.dev.discard(start, end - start)
        finally:
            self._unlock(locks)

    def zero(self, offset: int, length: int, may_trim: bool) -> None:
        """NBD_CMD_WRITE_ZEROES: the range reads back as zeros.

        Whole pages go down zram's write-zeroes path, which frees them like
        a discard (``may_trim``, the default); with ``NBD_CMD_FLAG_NO_HOLE``
        they are written as zero-filled pages instead, which zram keeps as
        same-filled slots (``same_pages``) without compressing them.  Partial
        pages at the edges are read-modify-written.
        """
        locks = self._lock(offset, length)
        try:
            end = offset + length
            start_full = (offset + _PAGE_MASK) & ~_PAGE_MASK
            end_full = end & ~_PAGE_MASK
            if end_full <= start_full:  # inside one page, or two partial pages
                self._patch(offset, memoryview(bytes(length)))
                return
            if offset < start_full:
                self._patch(offset, memoryview(bytes(start_full - offset)))
            if end_full < end:
                self._patch(end_full, memoryview(bytes(end - end_full)))
            if may_trim:
                self.dev.write_zeroes(start_full, end_full - start_full)
            else:
                pos = start_full
                while pos < end_full:
                    n = min(len(_ZERO_CHUNK), end_full - pos)
                    self.dev.pwrite(memoryview(_ZERO_CHUNK)[:n], pos)
                    pos += n
        finally:
            self._unlock(locks)

    def block_status(self, offset: int, length: int, req_one: bool = False) -> bytes:
        """NBD_CMD_BLOCK_STATUS for ``base:allocation``: the packed descriptors.

        Each 4 KiB page's status comes from its slot (:func:`page_status`);
        runs of equal status become one descriptor (32-bit length, 32-bit
        flags, big-endian), the first and last cut to the requested range,
        none past it.  With ``req_one`` (``NBD_CMD_FLAG_REQ_ONE``) only the
        first descriptor; otherwise at most :data:`MAX_EXTENTS`, which may
        cover less than the range (as the protocol allows).

        The scan runs under the ``init_lock`` read side (the table stays
        while it runs) and takes no slot lock: a page written while the scan
        runs may be reported as it was before that write, as for any request
        racing a write (the protocol orders neither); a write whose reply was
        sent before the request arrived has its slot complete, and is
        reported as it is.  A slot-lock per page would cost more than the
        scan, and could not make the answer fresher than the next write.
        """
        end = offset + length
        first = offset >> 12
        stop = (end + _PAGE_MASK) >> 12
        limit = 1 if req_one else MAX_EXTENTS
        dev = self.dev
        with dev.init_lock.read():
            tbl = dev.table
            if length <= 0 or tbl is None or not dev.init_done() or end > dev.disksize:
                raise OSError(errno.EINVAL, f"{offset}+{length} is not inside the device")
            if stop - first <= _STATUS_SCALAR:
                return _scalar_status(tbl, offset, end, limit)
            lens_parts: list[np.ndarray] = []
            vals_parts: list[np.ndarray] = []
            runs = 0
            pos = first
            # REQ_ONE: small steps first (the first run is often short), then doubling.
            step = min(_STATUS_FIRST_STEP, _STATUS_STEP) if req_one else _STATUS_STEP
            # More than ``limit`` runs: the first ``limit`` are complete (one follows).
            while pos < stop and runs <= limit:
                nxt = min(stop, pos + step)
                step = min(2 * step, _STATUS_STEP)
                st = page_status(tbl.flags_np[pos:nxt], tbl.handle_np[pos:nxt])
                # Run edges: 0, every change of status, the step's end.
                edges = np.concatenate(([0], np.flatnonzero(st[1:] != st[:-1]) + 1, [nxt - pos]))
                lens = edges[1:] - edges[:-1]
                vals = st[edges[:-1]]
                if runs and vals[0] == vals_parts[-1][-1]:  # the last run goes on
                    lens_parts[-1][-1] += lens[0]
                    lens, vals = lens[1:], vals[1:]
                if len(lens):
                    lens_parts.append(lens)
                    vals_parts.append(vals)
                    runs += len(lens)
                pos = nxt
        lens = lens_parts[0] if len(lens_parts) == 1 else np.concatenate(lens_parts)
        vals = vals_parts[0] if len(vals_parts) == 1 else np.concatenate(vals_parts)
        lens, vals = lens[:limit], vals[:limit]
        # Byte ends of the runs, the last cut to the request; lengths between them.
        ends = np.minimum((first + np.cumsum(lens)) << 12, end)
        out = np.empty((len(lens), 2), dtype=">u4")
        out[0, 0] = ends[0] - offset
        out[1:, 0] = ends[1:] - ends[:-1]
        out[:, 1] = vals
        return out.tobytes()

    def _patch(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset`` with the stripes held: RMW of partial edge pages."""
        dev = self.dev
        length = len(data)
        if not (offset | length) & _PAGE_MASK:
            dev.pwrite(data, offset)
            return
        end = offset + length
        head = offset & ~_PAGE_MASK
        if end <= head + PAGE_SIZE:  # within one page
            page = bytearray(dev.pread(PAGE_SIZE, head))
            page[offset - head : end - head] = data
            dev.pwrite(page, head)
            return
        pos = 0
        if offset != head:  # partial first page
            n = head + PAGE_SIZE - offset
            page = bytearray(dev.pread(PAGE_SIZE, head))
            page[offset - head :] = data[:n]
            dev.pwrite(page, head)
            pos = n
        tail = end & ~_PAGE_MASK
        if tail > offset + pos:  # whole pages in the middle
            dev.pwrite(data[pos : tail - offset], offset + pos)
        if tail != end:  # partial last page
            page = bytearray(dev.pread(PAGE_SIZE, tail))
            page[: end - tail] = data[tail - offset :]
            dev.pwrite(page, tail)


def page_status(flags: np.ndarray, handle: np.ndarray) -> np.ndarray:
    """``base:allocation`` status flags (uint8) of slots, from their ``flags`` and ``handle``.

    * Never written, or discarded (no size, not ZRAM_SAME, not ZRAM_WB,
      handle 0: what ``zram_free_page`` leaves): ``NBD_STATE_HOLE |
      NBD_STATE_ZERO``.  It reads as zeros, holds no storage, and a write
      there allocates from the pool, which may fail past ``mem_limit``:
      the protocol's hole ("future writes to that area may ... encounter
      ENOSPC").
    * Same-filled with fill word 0 (ZRAM_SAME, handle 0): ``NBD_STATE_ZERO``
      only.  It reads as zeros and holds no pool memory either, but it is a
      written page: ``zram_allocated`` is true, it counts in ``pages_stored``
      and ``same_pages``, and it is what ``NBD_CMD_WRITE_ZEROES`` with
      ``NBD_CMD_FLAG_NO_HOLE`` (or a write of zeros) leaves, so reporting a
      hole there would tell the client it got the hole it asked not to get.
      The protocol allows reporting allocated wherever unsure ("if clear,
      the block is allocated or the server could not otherwise determine
      its status"), never the reverse.
    * Everything else (compressed, huge, same-filled with another word,
      written back to the backing device): 0, data.
    """
    kind = flags & _KIND_BITS
    empty = handle == 0
    hole = (kind == 0) & empty
    zero = ((kind & _SAME_WB) == _SAME) & empty
    st = hole.view(np.uint8) * np.uint8(P.NBD_STATE_HOLE | P.NBD_STATE_ZERO)
    st += zero.view(np.uint8) * np.uint8(P.NBD_STATE_ZERO)
    return st


def _scalar_status(tbl: T.ZramTable, offset: int, end: int, limit: int) -> bytes:
    """:meth:`Export.block_status` of a short range, slot by slot (same statuses as
    :func:`page_status`, read from the table's memoryviews)."""
    flags, handle = tbl.flags, tbl.handle
    out: list[int] = []  # length, status, length, status, ...
    pos = offset
    for i in range(offset >> 12, (end + _PAGE_MASK) >> 12):
        f = flags[i]
        if handle[i]:
            st = 0
        elif not f & _KIND_INT:
            st = P.NBD_STATE_HOLE | P.NBD_STATE_ZERO
        elif f & _SAME_WB_INT == T.SAME:
            st = P.NBD_STATE_ZERO
        else:
            st = 0
        nxt = min(end, (i + 1) << 12)
        if out and out[-1] == st:
            out[-2] += nxt - pos
        elif len(out) == 2 * limit:
            break
        else:
            out += (nxt - pos, st)
        pos = nxt
    return struct.pack(f">{len(out)}I", *out)


def _attempt(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or the OSError it raised (a per-request result of a batch)."""
    try:
        return fn(*args)
    except OSError as e:
        return e


def find_export(exports: list[Export], name: str) -> Export:
    """The export called ``name``, else the one whose device is ``name`` (``zramN``)."""
    for e in exports:
        if e.name == name:
            return e
    for e in exports:
        if e.dev.disk_name == name:
            return e
    raise OSError(errno.ENOENT, f"no export or device {name!r}")
