"""Memory copies, fills and comparisons (model of lib/string.c's ``memcpy``,
``memset_l`` and ``memcmp``, and highmem.h's ``memcpy_to_page``).

The kernel moves an object's bytes with ``memcpy`` on two pointers.  The
model's memory is Python buffers (a pool's arena, a stream buffer, a page), so
:func:`memcpy` takes each buffer with an offset into it, and checks both spans
before it copies: a copy that would run past either buffer raises
``ValueError`` and writes nothing, where the kernel would corrupt memory.

- **Compiled**, the copy is libc's ``memcpy`` from the source's memory, taken
  through the buffer protocol, into the destination's typed view
  (string.pxd).  It takes no reference on either buffer's view and executes
  no locked instruction, so the copy's stores drain into memory that is not
  in the cache while the CPU goes on to the next page, as the kernel's do.
  (A slice assignment between typed views counts an acquisition on each
  slice with an atomic instruction, and the atomic after the copy waits
  until every store of the copy has reached the cache.)
- **Interpreted**, it is the slice assignment that copies the same bytes.

:func:`memcpy_to_page` copies into, :func:`memset_l` fills and :func:`memcmp`
compares pages given as their Python objects (a ``bytearray``, or a view of
a large folio's memory), whose memory compiled code takes through the
buffer protocol (``PyObject_GetBuffer``, contiguous, no format; writable to
be written): a typed view of a page would be a view object made and freed
and its format string checked, about 1.2k instructions.
"""

from __future__ import annotations

from typing import Any

import cython

if not cython.compiled:  # compiled, libc's and the buffer protocol's C functions (string.pxd)
    libc_memcpy = libc_memcmp = Py_buffer = PyObject_GetBuffer = PyBuffer_Release = None
    PyBUF_SIMPLE = PyBUF_WRITABLE = None


def memcpy(dst: Any, dst_off: int, src: Any, src_off: int, n: int) -> None:
    """``memcpy(dst + dst_off, src + src_off, n)``: copy ``n`` bytes from any
    contiguous buffer ``src`` (a stream buffer, a page, the arena itself) into
    ``dst``; the spans must lie inside their buffers (``ValueError``
    otherwise, nothing copied)."""
    if cython.compiled:
        view = cython.declare(Py_buffer)
        PyObject_GetBuffer(src, cython.address(view), PyBUF_SIMPLE)
        try:
            _check_spans("memcpy", n, dst_off, len(dst), src_off, view.len)
            if n:
                libc_memcpy(
                    cython.address(dst[dst_off]), cython.cast(cython.p_uchar, view.buf) + src_off, n
                )
        finally:
            PyBuffer_Release(cython.address(view))
    else:
        mem = memoryview(src).cast("B")
        _check_spans("memcpy", n, dst_off, len(dst), src_off, len(mem))
        dst[dst_off : dst_off + n] = mem[src_off : src_off + n]


def memcpy_to_page(page: Any, offset: int, src: Any, src_off: int, n: int) -> None:
    """``memcpy_to_page(page, offset, src + src_off, n)``: copy ``n`` bytes into the
    page's buffer at ``offset``; the spans must lie inside their buffers
    (``ValueError`` otherwise, nothing copied), the page must be writable."""
    if cython.compiled:
        view = cython.declare(Py_buffer)
        PyObject_GetBuffer(page, cython.address(view), PyBUF_WRITABLE)
        try:
            _check_spans("memcpy_to_page", n, offset, view.len, src_off, len(src))
            if n:
                libc_memcpy(
                    cython.cast(cython.p_uchar, view.buf) + offset, cython.address(src[src_off]), n
                )
        finally:
            PyBuffer_Release(cython.address(view))
    else:
        dst = memoryview(page)
        _check_spans("memcpy_to_page", n, offset, len(dst), src_off, len(src))
        dst[offset : offset + n] = src[src_off : src_off + n]


def memset_l(page: Any, fill: int, n: int) -> None:
    """``memset_l(page, fill, n)``: the page's first ``n`` 64-bit words set to
    ``fill`` (as x86-64 stores it, little-endian); they must lie inside the
    page (``ValueError`` otherwise, nothing written), the page must be writable."""
    if cython.compiled:
        view = cython.declare(Py_buffer)
        PyObject_GetBuffer(page, cython.address(view), PyBUF_WRITABLE)
        try:
            _check_spans("memset_l", n * 8, 0, view.len, 0, n * 8)
            if n:
                # The first word, then what is written so far copied after itself
                # (8, 16, 32, ... bytes): libc's wide stores, about as few as a
                # copy of the page makes, where 8-byte stores, one a word, would
                # fill the store buffer with stores into lines not in the cache.
                mem = cython.cast(cython.p_uchar, view.buf)
                libc_memcpy(mem, cython.address(fill), 8)
                done = 8
                while done < n * 8:
                    step = min(done, n * 8 - done)
                    libc_memcpy(mem + done, mem, step)
                    done += step
        finally:
            PyBuffer_Release(cython.address(view))
    else:
        dst = memoryview(page)
        _check_spans("memset_l", n * 8, 0, len(dst), 0, n * 8)
        dst[: n * 8] = fill.to_bytes(8, "little") * n


def memcmp(a: Any, a_off: int, b: Any, b_off: int, n: int) -> int:
    """``memcmp(a + a_off, b + b_off, n)``: -1, 0 or 1 as the first byte that
    differs is lower in ``a``, none differs, or it is higher (the spans must
    lie inside their buffers: ``ValueError`` otherwise); ``a`` and ``b`` may
    be the same buffer, the spans may overlap."""
    if cython.compiled:
        va = cython.declare(Py_buffer)
        vb = cython.declare(Py_buffer)
        PyObject_GetBuffer(a, cython.address(va), PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(b, cython.address(vb), PyBUF_SIMPLE)
            try:
                _check_spans("memcmp", n, a_off, va.len, b_off, vb.len)
                r = libc_memcmp(
                    cython.cast(cython.p_uchar, va.buf) + a_off,
                    cython.cast(cython.p_uchar, vb.buf) + b_off,
                    n,
                )
            finally:
                PyBuffer_Release(cython.address(vb))
        finally:
            PyBuffer_Release(cython.address(va))
    else:
        ma, mb = memoryview(a).cast("B"), memoryview(b).cast("B")
        _check_spans("memcmp", n, a_off, len(ma), b_off, len(mb))
        x, y = bytes(ma[a_off : a_off + n]), bytes(mb[b_off : b_off + n])
        r = (x > y) - (x < y)
    return (r > 0) - (r < 0)


def _check_spans(what: str, n: int, dst_off: int, dst_len: int, src_off: int, src_len: int) -> None:
    """Both spans inside their buffers, else ``ValueError`` naming the copy."""
    if n < 0 or dst_off < 0 or src_off < 0 or dst_off > dst_len - n or src_off > src_len - n:
        raise ValueError(
            f"{what} of {n} bytes from offset {src_off} of {src_len} "
            f"to offset {dst_off} of {dst_len}"
        )
