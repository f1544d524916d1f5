"""Drive the host kernel's real zram driver, for validating the model against it.

Every piece here goes through the interfaces a user-space tool would use
(Linux 6.18, ``drivers/block/zram/zram_drv.c``):

* ``/sys/class/zram-control/hot_add`` (``hot_add_show``): *reading* it creates a
  fresh, uninitialised device and prints its id; ``hot_remove``
  (``hot_remove_store``) takes the id back.  We only ever touch devices we
  created ourselves -- never ``zram0`` or anyone else's device.
* ``/sys/block/zramN/<attr>``: the per-device attributes.  Writes are made with
  one unbuffered ``write(2)`` of exactly the caller's bytes, so the ``-errno``
  that the attribute's ``*_store`` handler returns reaches the caller as the
  same :class:`OSError` errno our model must raise.
* ``/dev/zramN`` opened ``O_RDWR | O_DIRECT``: reads and writes bypass the page
  cache, so every ``pwrite`` is a bio that reaches ``zram_submit_bio`` at once
  (``zram_write_page`` per page) and ``mm_stat`` moves immediately.  O_DIRECT
  needs page-aligned user buffers, hence the anonymous ``mmap`` bounce buffer.
* ``ioctl(BLKDISCARD)``: a REQ_OP_DISCARD bio, which zram turns into
  ``zram_bio_discard`` (free every whole page in range, ``notify_free`` += 1
  per page).

A device is always reset and hot-removed when the :class:`KernelZram` is
closed, when the ``with`` body raises, when the object is garbage collected and,
through :func:`weakref.finalize`, at interpreter exit.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import mmap
import os
import struct
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from pyzram.zram.stat import IoStat, MmStat, parse_io_stat, parse_mm_stat

__all__ = [
    "BLKDISCARD",
    "ZRAM_CONTROL",
    "KernelZram",
    "kernel_zram",
    "unavailable_reason",
]

PAGE_SIZE = 4096
ZRAM_CONTROL = Path("/sys/class/zram-control")
SYS_BLOCK = Path("/sys/block")
DEV_DIR = Path("/dev")

#: ``_IO(0x12, 119)`` from ``include/uapi/linux/fs.h``; argument: ``u64 range[2]``.
BLKDISCARD = 0x1277

#: Largest chunk copied through the page-aligned bounce buffer per syscall.
BOUNCE_SIZE = 1 << 20

_RESET_TRIES = 100
_RETRY_SLEEP_S = 0.02
_DEV_WAIT_S = 5.0


def _zram_ok_without_probe() -> str | None:
    hot_add = ZRAM_CONTROL / "hot_add"
    if not hot_add.exists():
        return f"{hot_add} does not exist (no zram driver in this kernel?)"
    if os.geteuid() != 0:
        return "kernel zram needs root (hot_add is mode 0400)"
    if not os.access(hot_add, os.R_OK) or not os.access(ZRAM_CONTROL / "hot_remove", os.W_OK):
        return f"{ZRAM_CONTROL}/hot_add or hot_remove is not accessible"
    try:
        if os.statvfs(ZRAM_CONTROL).f_flag & os.ST_RDONLY:
            return "/sys is mounted read-only"
    except OSError as e:
        return f"cannot stat {ZRAM_CONTROL}: {e}"
    return None


@functools.cache
def _probe() -> str | None:
    """Create and remove one device: the only sure test that hot_add works here."""
    try:
        with KernelZram() as z:
            z.read_attr("mm_stat")
    except OSError as e:
        return f"hot_add/hot_remove failed: {e}"
    except Exception as e:  # any failure means "unavailable"
        return f"kernel zram unusable: {e!r}"
    return None


def unavailable_reason(probe: bool = True) -> str | None:
    """Why the host's zram cannot be used here, or ``None`` when it can.

    Checks that ``/sys/class/zram-control/hot_add`` exists, that we are root
    (``hot_add`` is mode 0400 and kernfs checks mode bits even for root) and,
    with ``probe`` (the default; the result is cached per process), that a
    device can really be created with ``hot_add``, its ``mm_stat`` read, and
    removed with ``hot_remove``.  The one-line answer is meant as a pytest
    skip reason.
    """
    reason = _zram_ok_without_probe()
    if reason is not None or not probe:
        return reason
    return _probe()


class _DevState:
    """What the finalizer needs; it must not reference the KernelZram itself."""

    __slots__ = ("id", "fd", "bounce", "released")

    def __init__(self, dev_id: int) -> None:
        self.id = dev_id
        self.fd: int | None = None
        self.bounce: mmap.mmap | None = None
        self.released = False


def _write_sysfs(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _close_fd(state: _DevState) -> None:
    if state.fd is not None:
        fd, state.fd = state.fd, None
        os.close(fd)


def _release(state: _DevState) -> OSError | None:
    """Close the fd, ``reset`` and ``hot_remove`` the device; return the first error.

    ``reset_store`` and ``hot_remove_store`` return ``-EBUSY`` while the block
    device is open (by us, or transiently by udev's probe after a change
    event), so both are retried for about a second.
    """
    if state.released:
        return None
    error: OSError | None = None
    try:
        _close_fd(state)
    except OSError as e:
        error = e
    if state.bounce is not None:
        state.bounce.close()
        state.bounce = None
    sysfs_dir = SYS_BLOCK / f"zram{state.id}"
    for target, data in (
        (sysfs_dir / "reset", b"1"),
        (ZRAM_CONTROL / "hot_remove", str(state.id).encode()),
    ):
        for attempt in range(_RESET_TRIES):
            try:
                _write_sysfs(target, data)
                break
            except OSError as e:
                if e.errno == errno.EBUSY and attempt + 1 < _RESET_TRIES:
                    time.sleep(_RETRY_SLEEP_S)
                    continue
                if e.errno == errno.ENOENT and target.name == "reset":
                    break  # already gone; hot_remove will say ENODEV if so
                if error is None:
                    error = e
                break
    state.released = True
    return error


class KernelZram:
    """One zram device of the host kernel, created with ``hot_add``, for this object only.

    Use as a context manager::

        with KernelZram() as z:
            z.setup("lz4", "64M")
            z.pwrite(pages.tobytes(), 0)
            print(z.mm_stat())

    ``__enter__`` (or :meth:`create`) reads ``hot_add``; :meth:`close` (also
    ``__exit__``, garbage collection and interpreter exit) closes the block
    device, writes ``1`` to ``reset`` and the id to ``hot_remove``.
    """

    id: int
    sysfs_dir: Path
    dev_path: Path

    def __init__(self) -> None:
        self._state: _DevState | None = None
        self._finalizer: weakref.finalize | None = None

    # -- life cycle -------------------------------------------------------------------

    def create(self) -> KernelZram:
        """Read ``/sys/class/zram-control/hot_add`` to create a device; wait for ``/dev/zramN``.

        ``hot_add_show`` allocates the lowest free id, adds the gendisk and
        prints the id.  devtmpfs creates the node asynchronously-ish, so we
        poll for it (up to 5 s) and check its ``dev_t`` against
        ``/sys/block/zramN/dev``.
        """
        if self._state is not None:
            raise RuntimeError(f"KernelZram already holds zram{self._state.id}")
        fd = os.open(ZRAM_CONTROL / "hot_add", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 64)
        finally:
            os.close(fd)
        dev_id = int(text.decode().strip())
        state = _DevState(dev_id)
        self._state = state
        self._finalizer = weakref.finalize(self, _release, state)
        self.id = dev_id
        self.sysfs_dir = SYS_BLOCK / f"zram{dev_id}"
        self.dev_path = DEV_DIR / f"zram{dev_id}"
        try:
            self._wait_for_node()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_for_node(self) -> None:
        major, minor = (int(x) for x in self.read_attr("dev").split(":"))
        want = os.makedev(major, minor)
        deadline = time.monotonic() + _DEV_WAIT_S
        while True:
            try:
                st = os.stat(self.dev_path)
                if st.st_rdev == want:
                    return
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise OSError(
                    errno.ENODEV, f"device node did not appear for zram{self.id}", self.dev_path
                )
            time.sleep(0.01)

    def close(self) -> None:
        """Close ``/dev/zramN``, ``reset`` and ``hot_remove`` the device (idempotent).

        Raises the first :class:`OSError` met, after trying every step.
        """
        if self._finalizer is None:
            return
        error = self._finalizer()
        self._finalizer = None
        if error is not None:
            raise error

    @property
    def closed(self) -> bool:
        """True once the device has been removed (or before it was created)."""
        return self._finalizer is None or not self._finalizer.alive

    def __enter__(self) -> KernelZram:
        return self.create()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._state is None:
            return "KernelZram(<not created>)"
        return f"KernelZram(zram{self.id}{', closed' if self.closed else ''})"

    def _live(self) -> _DevState:
        if self._state is None or self.closed:
            raise ValueError("KernelZram is not open (use it as a context manager)")
        return self._state

    # -- sysfs --------------------------------------------------------------------------

    def _attr_path(self, name: str) -> Path:
        self._live()
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise ValueError(f"bad attribute name {name!r}")
        return self.sysfs_dir / name

    def read_attr(self, name: str) -> str:
        """The raw text of ``/sys/block/zramN/<name>`` (newline included).

        Read with one ``read(2)`` of up to a page, as ``sysfs_kf_seq_show``
        produces at most PAGE_SIZE bytes; errors (e.g. EACCES for a
        write-only attribute) propagate unchanged.
        """
        fd = os.open(self._attr_path(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, PAGE_SIZE):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()

    def write_attr(self, name: str, value: str | bytes) -> None:
        """Write exactly ``value`` to ``/sys/block/zramN/<name>`` in one ``write(2)``.

        No newline is added and nothing is buffered, so the attribute's
        ``*_store`` handler sees precisely these bytes and its ``-errno``
        arrives as :class:`OSError` with the same errno (EINVAL, EBUSY, E2BIG...).
        """
        data = value.encode() if isinstance(value, str) else bytes(value)
        _write_sysfs(self._attr_path(name), data)

    def mm_stat(self) -> MmStat:
        """``/sys/block/zramN/mm_stat`` (``mm_stat_show``), parsed."""
        return parse_mm_stat(self.read_attr("mm_stat"))

    def io_stat(self) -> IoStat:
        """``/sys/block/zramN/io_stat`` (``io_stat_show``), parsed."""
        return parse_io_stat(self.read_attr("io_stat"))

    def setup(self, comp_algorithm: str | None, disksize: str | int) -> KernelZram:
        """Initialise the device: ``comp_algorithm`` (if given) then ``disksize``.

        The order matters: ``comp_algorithm_store`` returns EBUSY once the
        device is initialised, and ``disksize_store`` is what creates the
        compressor and the zsmalloc pool.  Returns ``self``.
        """
        if comp_algorithm is not None:
            self.write_attr("comp_algorithm", comp_algorithm)
        self.write_attr("disksize", str(disksize))
        return self

    def disksize(self) -> int:
        """``/sys/block/zramN/disksize`` in bytes (0 while uninitialised)."""
        return int(self.read_attr("disksize"))

    # -- block I/O ----------------------------------------------------------------------

    def _fd(self) -> int:
        state = self._live()
        if state.fd is None:
            state.fd = os.open(self.dev_path, os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC)
        return state.fd

    def _bounce(self) -> mmap.mmap:
        state = self._live()
        if state.bounce is None:
            # Anonymous mmap: page-aligned, as O_DIRECT requires.
            state.bounce = mmap.mmap(-1, BOUNCE_SIZE)
        return state.bounce

    def close_dev(self) -> None:
        """Close the O_DIRECT file descriptor of ``/dev/zramN`` if it is open.

        ``reset_store`` refuses with EBUSY while the block device has openers,
        so call this before writing ``reset`` yourself (``close`` does it).
        """
        if self._state is not None:
            _close_fd(self._state)

    def pwrite(
        self, data: bytes | bytearray | memoryview | npt.NDArray[np.uint8], offset: int
    ) -> int:
        """Write ``data`` to ``/dev/zramN`` at ``offset`` with O_DIRECT; return bytes written.

        The data is copied through a page-aligned bounce buffer in chunks of
        up to 1 MiB, one ``pwrite(2)`` each, so each chunk is one bio handled
        by ``zram_submit_bio`` -> ``zram_write_page`` per page.  Offsets and
        lengths must be multiples of the 4096-byte logical block size, else
        the kernel says EINVAL; I/O errors arrive as :class:`OSError`.
        """
        fd = self._fd()
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        src = memoryview(data).cast("B")
        buf = self._bounce()
        total = 0
        with memoryview(buf) as mv:
            while total < len(src):
                n = min(BOUNCE_SIZE, len(src) - total)
                mv[:n] = src[total : total + n]
                done = 0
                while done < n:
                    w = os.pwrite(fd, mv[done:n], offset + total + done)
                    if w <= 0:
                        return total + done
                    done += w
                total += n
        return total

    def pread(self, length: int, offset: int) -> bytes:
        """Read ``length`` bytes of ``/dev/zramN`` at ``offset`` with O_DIRECT.

        Goes through the same bounce buffer (``preadv(2)`` into it); stops
        early at the end of the device.  Alignment rules as for :meth:`pwrite`.
        """
        fd = self._fd()
        buf = self._bounce()
        out = bytearray()
        with memoryview(buf) as mv:
            while len(out) < length:
                n = min(BOUNCE_SIZE, length - len(out))
                got = os.preadv(fd, [mv[:n]], offset + len(out))
                if got <= 0:
                    break
                out += mv[:got]
                if got < n:
                    break
        return bytes(out)

    def pwrite_once(self, data: bytes | bytearray | memoryview, offset: int) -> int:
        """One ``pwrite(2)`` of ``data`` (at most the bounce buffer's 1 MiB) at
        ``offset`` on the O_DIRECT descriptor: what the syscall returns, or its
        error as :class:`OSError`, unaligned and out-of-range requests included."""
        fd = self._fd()
        n = len(data)
        with memoryview(self._bounce()) as mv:
            mv[:n] = data
            return os.pwrite(fd, mv[:n], offset)

    def pread_once(self, length: int, offset: int) -> bytes:
        """One ``pread(2)`` of ``length`` bytes (at most 1 MiB) at ``offset`` into the
        page-aligned bounce buffer on the O_DIRECT descriptor: the bytes it
        returned, or its error.  (libc's ``pread`` itself: Python's ``os.preadv``
        reads at the file position when the offset is -1.)"""
        import ctypes

        fd = self._fd()
        buf = self._bounce()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]
        libc.pread.restype = ctypes.c_ssize_t
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        n = libc.pread(fd, addr, length, offset)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), self.dev_path)
        with memoryview(buf) as mv:
            return bytes(mv[:n])

    def discard(self, offset: int, length: int) -> None:
        """``ioctl(BLKDISCARD, {offset, length})`` on ``/dev/zramN``.

        The block layer checks alignment (EINVAL) and range, then zram's
        ``zram_bio_discard`` frees every whole page in range and adds one
        ``notify_free`` per page.
        """
        fcntl.ioctl(self._fd(), BLKDISCARD, struct.pack("=QQ", offset, length))

    # -- measurement --------------------------------------------------------------------

    def page_sizes(
        self, pages: npt.ArrayLike | bytes | bytearray | memoryview, start: int = 0
    ) -> npt.NDArray[np.int16]:
        """The kernel's stored size of each 4096-byte page, measured one page at a time.

        Page ``i`` is written alone (O_DIRECT, one bio) to slot ``start + i``
        and ``mm_stat`` is read before and after: ``-1`` when it was stored
        same-filled (``same_pages`` + 1), ``4096`` when huge (``huge_pages``
        + 1), else the ``compr_data_size`` delta, i.e. the compressor's
        comp_len.  The caller sets ``comp_algorithm`` and a ``disksize`` big
        enough; the target slots must be empty (a fresh device), otherwise
        the deltas would include the freed old content (detected: error).
        """
        arr = _as_pages(pages)
        n = arr.shape[0]
        if (start + n) * PAGE_SIZE > self.disksize():
            raise ValueError(
                f"zram{self.id}: disksize {self.disksize()} too small for "
                f"{n} pages from slot {start}"
            )
        sizes = np.empty(n, dtype=np.int16)
        before = self.mm_stat()
        fd = self._fd()
        buf = self._bounce()
        with memoryview(buf) as mv:
            page_mv = mv[:PAGE_SIZE]
            for i in range(n):
                page_mv[:] = arr[i].data
                w = os.pwrite(fd, page_mv, (start + i) * PAGE_SIZE)
                if w != PAGE_SIZE:
                    raise OSError(errno.EIO, f"short O_DIRECT write ({w} bytes)", self.dev_path)
                after = self.mm_stat()
                if after.orig_data_size - before.orig_data_size != PAGE_SIZE:
                    raise RuntimeError(
                        f"slot {start + i} of zram{self.id} was not empty "
                        "(orig_data_size did not grow by one page)"
                    )
                if after.same_pages > before.same_pages:
                    sizes[i] = -1
                elif after.huge_pages > before.huge_pages:
                    sizes[i] = PAGE_SIZE
                else:
                    sizes[i] = after.compr_data_size - before.compr_data_size
                before = after
        return sizes


def _as_pages(data: npt.ArrayLike | bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        arr = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        arr = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)  # type: ignore[arg-type]
    if arr.size % PAGE_SIZE:
        raise ValueError(f"{arr.size} bytes is not a whole number of 4096-byte pages")
    return arr.reshape(-1, PAGE_SIZE)


@contextmanager
def kernel_zram(
    comp_algorithm: str | None = None, disksize: str | int = "64M"
) -> Iterator[KernelZram]:
    """A :class:`KernelZram` already set up with ``comp_algorithm`` and ``disksize``."""
    with KernelZram() as z:
        z.setup(comp_algorithm, disksize)
        yield z
