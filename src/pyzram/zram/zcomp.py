"""zcomp: zram's compression front end (model of drivers/block/zram/zcomp.c).

A backend is a ``struct zcomp_ops``: ``compress`` one 4096-byte page into a
buffer of ``2 * PAGE_SIZE`` and ``decompress`` it back, configured once from
``zcomp_params`` (level, dictionary) when the device is initialised.  A
``swap_iocb`` or a multi-page ``pwrite``
is processed page by page, as the kernel does: zram takes this CPU's stream
(``zcomp_stream_get``), compresses into its buffer (``zcomp_compress``) and
decompresses straight from the pool's memory into the page being read
(``zcomp_decompress``).

One thing is not done page by page: zram's write loop
(``zram_write_pages``, for a swap batch or a bio) hands the codec the pages
(up to :data:`ZCOMP_BATCH` at a time) in one call before it writes them
(``zcomp_compress_ahead``), and each page's
``zcomp_compress`` then takes its output from the stream.  The bytes, the
lengths and the order of every other step are the same; what changes is the
time: one call into the codec, which runs without the interpreter lock, in
place of one per page, so that threads writing at once overlap their
compression rather than hand the lock back and forth for every page.

Backends live in ``backend_<name>.py`` like the kernel's ``backend_<name>.c``
and are listed in the kernel's fixed order (``lzo-rle lzo lz4 lz4hc zstd
deflate 842``).  ``lz4``, ``lz4hc``, ``lzo`` and ``lzo-rle`` run on
pyzram's own C codecs (``pyzram._kcodec``), written to produce the kernel's
bytes, lz4 and lz4hc with a dictionary too; ``zstd`` and ``deflate`` use
python-zstandard and zlib (their sizes equal the kernel's on the pages
checked under qemu; see ``docs/architecture.md``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

import cython

from pyzram.config import ALL_BACKENDS
from pyzram.lib.cmdline import sysfs_streq
from pyzram.lib.percpu import PerCpu, this_cpu_ptr

if not cython.compiled:  # compiled, their C entry points (zcomp.pxd, kcodec_capi.h)
    from pyzram._kcodec import compress_into as kc_compress_into
    from pyzram._kcodec import decompress_into as kc_decompress_into

PAGE_SIZE = 4096
#: zcomp_strm buffer: compression output may be up to twice the page.
ZCOMP_BUFFER_SIZE = 2 * PAGE_SIZE
#: ``ZCOMP_PARAM_NO_LEVEL`` (INT_MIN): the backend's default level.
ZCOMP_PARAM_NO_LEVEL = -(2**31)
#: ``CRYPTO_MAX_ALG_NAME``: algorithm names must be shorter than this.
CRYPTO_MAX_ALG_NAME = 128
#: The pages compressed in one codec call ahead of their writes (as many as a
#: swap batch's ``SWAP_CLUSTER_MAX`` order-0 folios).
ZCOMP_BATCH = 32


@dataclass
class ZcompParams:
    """``struct zcomp_params``: what ``algorithm_params`` stored for one priority."""

    level: int = ZCOMP_PARAM_NO_LEVEL
    dict: bytes | None = None
    #: ``params->deflate.winbits`` (``algorithm_params`` ``deflate.winbits=``).
    deflate_winbits: int = ZCOMP_PARAM_NO_LEVEL

    def level_or(self, default: int) -> int:
        return default if self.level == ZCOMP_PARAM_NO_LEVEL else self.level


@cython.cclass
class ZcompStrm:
    """``struct zcomp_strm``: a compression stream and its ``2 * PAGE_SIZE`` buffer."""

    def __init__(self) -> None:
        self.buffer = bytearray(ZCOMP_BUFFER_SIZE)
        #: The buffer as bytes (a typed view when compiled) ...
        self.own = memoryview(self.buffer)
        #: ... and where the last page compressed is, which zsmalloc copies from:
        #: the buffer, or that page's output in the batch buffer below.
        self.mem = self.own
        #: The pages compressed ahead (:meth:`Zcomp.zcomp_compress_ahead`): page
        #: ``k``'s output is at ``ahead_mem[k * ZCOMP_BUFFER_SIZE:]`` (``ahead_out[k]``,
        #: a view of it made once), its length (or a negative errno)
        #: ``ahead_len[k]``; ``ahead_next`` the first not taken.
        self.ahead: list = []
        self.ahead_next = 0
        self.ahead_mem = memoryview(bytearray(ZCOMP_BATCH * ZCOMP_BUFFER_SIZE))
        self.ahead_out = [
            self.ahead_mem[k * ZCOMP_BUFFER_SIZE : (k + 1) * ZCOMP_BUFFER_SIZE]
            for k in range(ZCOMP_BATCH)
        ]
        #: The lengths as the codec is given them (an object: compiled, the typed
        #: view ``ahead_len`` would be made into a new one for each call).
        self.ahead_sizes = memoryview(bytearray(4 * ZCOMP_BATCH)).cast("i")
        self.ahead_len = self.ahead_sizes


@cython.cclass
class ZcompBackend:
    """``struct zcomp_ops``: one page in, one page out.

    Subclasses implement :meth:`compress` and :meth:`decompress` (bytes in,
    bytes out); :meth:`compress_into` and :meth:`decompress_into` are what
    zram calls, writing into the stream's buffer and into the page being
    read, and are overridden by backends that can do that in C.
    ``decompress`` raises ``OSError(EINVAL)`` on corrupt input (what zram
    counts as a failed read).  Compiled, an extension type (zcomp.pxd), so
    zram's calls into it are C calls.
    """

    name: str = ""
    #: True while a backend does not yet produce the kernel's exact bytes.
    provisional: bool = False

    def __init__(self, params: ZcompParams) -> None:
        self.params = params

    def compress(self, page: bytes | memoryview) -> bytes:
        raise NotImplementedError

    def decompress(self, data: bytes | memoryview) -> bytes:
        raise NotImplementedError

    def compress_into(self, page: Any, dst: bytearray) -> int:
        """``ops->compress``: compress ``page`` into ``dst``; its length or a negative errno."""
        try:
            out = self.compress(page)
        except OSError as e:
            return -(e.errno or errno.EINVAL)
        n = len(out)
        if n > len(dst):
            return -errno.ENOSPC
        dst[:n] = out
        return n

    def compress_batch(self, pages: list, dst: Any, sizes: Any) -> None:
        """``ops->compress`` of each of ``pages``: page ``i``'s output into
        ``dst[i * ZCOMP_BUFFER_SIZE:]``, its length or negative errno into
        ``sizes[i]``.  Backends on the C codecs do it in one call."""
        out = memoryview(dst)
        for i, page in enumerate(pages):
            at = i * ZCOMP_BUFFER_SIZE
            sizes[i] = self.compress_into(page, out[at : at + ZCOMP_BUFFER_SIZE])

    def decompress_into(self, src: Any, offset: int, length: int, page: Any) -> int:
        """``ops->decompress``: decode ``src[offset:offset+length]`` into ``page``;
        0, or ``-EINVAL`` (the page is then zero-filled)."""
        dst = memoryview(page).cast("B")
        try:
            out = self.decompress(memoryview(src)[offset : offset + length])
        except OSError:
            out = b""
        if len(out) != PAGE_SIZE:
            dst[:] = bytes(PAGE_SIZE)
            return -errno.EINVAL
        dst[:] = out
        return 0


@cython.cclass
class KernelCodecBackend(ZcompBackend):
    """A backend on pyzram's own C codecs (``pyzram._kcodec``).

    A subclass whose kernel backend takes ``algorithm_params``' dictionary
    (lz4, lz4hc) says what the kernel's dictionary load returns
    (:meth:`dict_loaded`); its pages then go through the same C calls with
    the dictionary.  Where that load does not take the whole dictionary, the
    kernel's backend refuses every page (``-EINVAL`` from ``ops->compress``:
    the write fails), and so does this one.

    A page's ``compress_into`` and ``decompress_into`` are the codec module's
    functions of those names; compiled, this class calls their C entry points
    (``kcodec_capi.h``), as the kernel's zcomp calls its backend: one C call
    with the offset and length as C integers and the page's bytes taken
    where they lie, not a Python call with its arguments boxed and parsed
    and both buffers acquired and released."""

    level_default = 1

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        from pyzram import _kcodec  # built by the package's own build

        self._k = _kcodec
        self._algo = _kcodec.ALGORITHMS.index(self.name)
        self._arg = max(1, params.level_or(self.level_default))
        self._dict = None
        self._dict_err = 0
        if params.dict:
            loaded = self.dict_loaded(len(params.dict))
            if loaded is not None:
                self._dict = params.dict
                if loaded != len(params.dict):
                    self._dict_err = -errno.EINVAL

    def dict_loaded(self, size: int) -> int | None:
        """What the kernel backend's dictionary load returns for ``size`` bytes;
        None where the backend takes no dictionary (lzo, lzo-rle)."""
        return None

    def compress(self, page: bytes | memoryview) -> bytes:
        if self._dict_err:
            raise OSError(-self._dict_err, f"{self.name}: the dictionary does not load whole")
        return self._k.compress(self.name, page, self._arg, self._dict)

    def decompress(self, data: bytes | memoryview) -> bytes:
        return self._k.decompress(self.name, data, PAGE_SIZE, self._dict)

    def compress_into(self, page: Any, dst: bytearray) -> int:
        if self._dict_err:
            return self._dict_err
        return kc_compress_into(self._algo, page, dst, self._arg, self._dict)

    def compress_batch(self, pages: list, dst: Any, sizes: Any) -> None:
        if self._dict_err:
            for i in range(len(pages)):
                sizes[i] = self._dict_err
            return
        self._k.compress_batch(self.name, pages, len(pages), dst, sizes, self._arg, self._dict)

    def decompress_into(self, src: Any, offset: int, length: int, page: Any) -> int:
        return kc_decompress_into(self._algo, src, offset, length, page, self._dict)


def _registry() -> dict[str, type[ZcompBackend]]:
    from pyzram.zram import (
        backend_deflate,
        backend_lz4,
        backend_lz4hc,
        backend_lzo,
        backend_lzorle,
        backend_zstd,
    )

    mods = (backend_lzorle, backend_lzo, backend_lz4, backend_lz4hc, backend_zstd, backend_deflate)
    return {m.Backend.name: m.Backend for m in mods}


def lookup_backend(name: str, built: tuple[str, ...]) -> str | None:
    """``lookup_backend_ops``: the backend whose name ``sysfs_streq``-matches ``name``.

    The kernel compares with ``sysfs_streq``, so a name stored with one
    trailing newline (``echo -e 'lz4\n' > comp_algorithm`` leaves ``"lz4\n"``)
    still selects lz4, although ``comp_algorithm`` then brackets nothing.
    """
    return next((b for b in built if sysfs_streq(name, b)), None)


def zcomp_available_algorithm(name: str, built: tuple[str, ...]) -> bool:
    """``zcomp_available_algorithm``: does ``name`` select one of the built backends?"""
    return lookup_backend(name, built) is not None


def zcomp_available_show(selected: str | None, built: tuple[str, ...]) -> str:
    """``zcomp_available_show``: ``"[lzo-rle] lzo lz4 \\n"``-style listing."""
    parts = [f"[{b}] " if b == selected else f"{b} " for b in ALL_BACKENDS if b in built]
    return "".join(parts) + "\n"


@cython.cclass
class Zcomp:
    """``struct zcomp``: one configured compressor of a device (one priority).

    Compiled, an extension type (zcomp.pxd): zram reaches its stream and its
    backend through C calls."""

    def __init__(self, name: str, params: ZcompParams) -> None:
        registry = _registry()
        resolved = lookup_backend(name, tuple(registry))
        if resolved is None:
            # 842 is a kernel backend pyzram does not implement.
            raise OSError(errno.EINVAL, f"compression backend {name!r} is not available")
        self.name = resolved
        self.params = params
        self.backend = registry[resolved](params)

        #: ``comp->stream``: one stream per CPU (here per thread).
        self._streams = PerCpu(ZcompStrm)

    @classmethod
    def create(cls, name: str, params: ZcompParams) -> Zcomp:
        """``zcomp_create``: errors surface as the ``disksize`` write's errno."""
        return cls(name, params)

    def zcomp_stream_get(self) -> ZcompStrm:
        """``zcomp_stream_get``: this CPU's stream (``raw_cpu_ptr(comp->stream)``).
        pyzram's CPUs are threads, so the stream is per thread and its mutex is
        never contended (not modelled)."""
        return this_cpu_ptr(self._streams)

    def zcomp_stream_put(self, zstrm: ZcompStrm) -> None:
        """``zcomp_stream_put``: nothing to release (see :meth:`zcomp_stream_get`)."""

    def zcomp_compress_ahead(self, zstrm: ZcompStrm, pages: list) -> None:
        """The pages (at most :data:`ZCOMP_BATCH`) that are about to be written
        one by one, each through ``zcomp_compress``, compressed now in one call
        into the stream's batch buffer; an empty list drops what was not taken.
        Not a kernel function: see the module docstring."""
        if pages:
            self.backend.compress_batch(pages, zstrm.ahead_mem, zstrm.ahead_sizes)
        zstrm.ahead = pages
        zstrm.ahead_next = 0

    def zcomp_compress(self, zstrm: ZcompStrm, src: Any) -> int:
        """``zcomp_compress``: ``src`` (one page) into the stream's buffer; the
        compressed length, or a negative errno.  The output is at ``zstrm.mem``:
        a page compressed ahead (:meth:`zcomp_compress_ahead`; the very object)
        has it in the batch buffer already, and ``zstrm.mem`` is that page's
        slot of it; the pages passed over (same-filled ones, which zram
        stores as their fill word) were not written."""
        ahead = zstrm.ahead
        k = zstrm.ahead_next
        while k < len(ahead):
            if ahead[k] is src:
                zstrm.ahead_next = k + 1
                zstrm.mem = zstrm.ahead_out[k]
                return zstrm.ahead_len[k]
            k += 1
        zstrm.mem = zstrm.own
        return self.backend.compress_into(src, zstrm.buffer)

    def zcomp_decompress(
        self, zstrm: ZcompStrm, src: Any, offset: int, length: int, dst: Any
    ) -> int:
        """``zcomp_decompress``: the object at ``src[offset:offset+length]`` into the
        page ``dst``; 0 or ``-EINVAL``."""
        return self.backend.decompress_into(src, offset, length, dst)
