"""zcomp: zram's compression front end (model of drivers/block/zram/zcomp.c).

A backend is a ``struct zcomp_ops``: ``compress`` one 4096-byte page into a
buffer of ``2 * PAGE_SIZE`` and ``decompress`` it back, configured once from
``zcomp_params`` (level, dictionary) when the device is initialised.  pyzram
adds batch entry points, because a ``swap_iocb`` or a multi-page ``pwrite``
is processed as one unit: a backend may compress N pages in one C call.

Backends live in ``backend_<name>.py`` like the kernel's ``backend_<name>.c``
and are listed in the kernel's fixed order (``lzo-rle lzo lz4 lz4hc zstd
deflate 842``).  ``lz4``, ``lz4hc``, ``lzo`` and ``lzo-rle`` run on
pyzram's own C codecs (``pyzram._kcodec``), written to produce the kernel's
bytes; ``zstd`` and ``deflate`` use python-zstandard and zlib (their sizes
equal the kernel's on the pages checked under qemu; see
``docs/architecture.md``).
"""

from __future__ import annotations

import errno
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyzram.config import ALL_BACKENDS
from pyzram.lib.cmdline import sysfs_streq

PAGE_SIZE = 4096
#: zcomp_strm buffer: compression output may be up to twice the page.
ZCOMP_BUFFER_SIZE = 2 * PAGE_SIZE
#: ``ZCOMP_PARAM_NO_LEVEL`` (INT_MIN): the backend's default level.
ZCOMP_PARAM_NO_LEVEL = -(2**31)
#: ``CRYPTO_MAX_ALG_NAME``: algorithm names must be shorter than this.
CRYPTO_MAX_ALG_NAME = 128


@dataclass
class ZcompParams:
    """``struct zcomp_params``: what ``algorithm_params`` stored for one priority."""

    level: int = ZCOMP_PARAM_NO_LEVEL
    dict: bytes | None = None

    def level_or(self, default: int) -> int:
        return default if self.level == ZCOMP_PARAM_NO_LEVEL else self.level


class ZcompBackend:
    """``struct zcomp_ops`` plus batch entry points.

    Subclasses implement :meth:`compress` and :meth:`decompress`; the batch
    methods default to a loop and are overridden where one call can do a
    whole batch.  ``decompress`` raises ``OSError(EINVAL)`` on corrupt input
    (what zram counts as a failed read).
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

    def compress_batch(self, pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compress ``pages`` (N x 4096 uint8): returns (dst, sizes).

        Page i's output is ``dst[i*8192 : i*8192 + sizes[i]]``.
        """
        n = len(pages)
        dst = np.empty(n * ZCOMP_BUFFER_SIZE, dtype=np.uint8)
        sizes = np.empty(n, dtype=np.int32)
        for i in range(n):
            out = self.compress(pages[i].data)
            if len(out) > ZCOMP_BUFFER_SIZE:
                raise OSError(errno.ENOSPC, f"{self.name}: output exceeds the zcomp buffer")
            base = i * ZCOMP_BUFFER_SIZE
            dst[base : base + len(out)] = np.frombuffer(out, dtype=np.uint8)
            sizes[i] = len(out)
        return dst, sizes

    def decompress_batch(
        self, src, offsets: np.ndarray, lengths: np.ndarray, out: Any = None
    ) -> tuple[Any, np.ndarray]:
        """Decompress N objects of ``src`` (any buffer, e.g. the pool's arena) into
        ``out``: one buffer of N pages (an N x 4096 uint8 array, allocated if
        not given, or a bytearray) or a list of N writable 4096-byte buffers
        (the pages of the folios being read).
        Returns (out, results).

        ``results[i]`` is 0 or a negative errno; failed pages are zero-filled.
        ``lengths`` may be an ``array('i')`` (a small batch); ``results`` is then
        one too where the backend decodes in C.
        """
        n = len(offsets)
        if out is None:
            out = np.empty((n, PAGE_SIZE), dtype=np.uint8)
        if isinstance(out, (list, tuple)):
            pages = [memoryview(b).cast("B") for b in out]
        else:  # one buffer of N pages (an N x 4096 array, a bytearray)
            flat = memoryview(out).cast("B")
            pages = [flat[i * PAGE_SIZE : (i + 1) * PAGE_SIZE] for i in range(n)]
        results = np.zeros(n, dtype=np.int32)
        view = memoryview(src)
        for i in range(n):
            dst = pages[i]
            o, ln = int(offsets[i]), int(lengths[i])
            try:
                page = self.decompress(view[o : o + ln])
            except OSError as e:
                results[i] = -(e.errno or errno.EINVAL)
                dst[:] = bytes(PAGE_SIZE)
                continue
            if len(page) != PAGE_SIZE:
                results[i] = -errno.EINVAL
                dst[:] = bytes(PAGE_SIZE)
                continue
            dst[:] = page
        return out, results


class KernelCodecBackend(ZcompBackend):
    """A backend on pyzram's own C codecs (``pyzram._kcodec``): one C call per batch."""

    level_default = 1

    def __init__(self, params: ZcompParams) -> None:
        super().__init__(params)
        from pyzram import _kcodec  # built by the package's own build

        self._k = _kcodec
        self._arg = max(1, params.level_or(self.level_default))

    def compress(self, page: bytes | memoryview) -> bytes:
        return self._k.compress(self.name, page, self._arg)

    def decompress(self, data: bytes | memoryview) -> bytes:
        return self._k.decompress(self.name, data, PAGE_SIZE)

    def compress_batch(self, pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(pages)
        dst = np.empty(n * ZCOMP_BUFFER_SIZE, dtype=np.uint8)
        sizes = np.empty(n, dtype=np.int32)
        if n:
            self._k.compress_batch(self.name, np.ascontiguousarray(pages), n, dst, sizes, self._arg)
        return dst, sizes

    def decompress_batch(
        self, src, offsets: np.ndarray, lengths: np.ndarray, out: Any = None
    ) -> tuple[Any, np.ndarray]:
        n = len(offsets)
        if out is None:
            out = np.empty((n, PAGE_SIZE), dtype=np.uint8)
        if isinstance(lengths, array):  # a small batch (Zram._read_small): no numpy steps
            results: Any = array("i", bytes(4 * n))
        else:
            lengths = np.ascontiguousarray(lengths, dtype=np.int32)
            results = np.zeros(n, dtype=np.int32)
        if n:
            self._k.decompress_batch(
                self.name,
                src,
                np.ascontiguousarray(offsets, dtype=np.int64),
                lengths,
                n,
                out,  # one buffer, or a list of page buffers: decoded into each
                results,
            )
        return out, results


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


class Zcomp:
    """``struct zcomp``: one configured compressor of a device (one priority)."""

    def __init__(self, name: str, params: ZcompParams) -> None:
        registry = _registry()
        resolved = lookup_backend(name, tuple(registry))
        if resolved is None:
            # 842 is a kernel backend pyzram does not implement.
            raise OSError(errno.EINVAL, f"compression backend {name!r} is not available")
        self.name = resolved
        self.params = params
        self.backend = registry[resolved](params)

    @classmethod
    def create(cls, name: str, params: ZcompParams) -> Zcomp:
        """``zcomp_create``: errors surface as the ``disksize`` write's errno."""
        return cls(name, params)
