"""Memory copies (model of lib/string.c: ``memcpy``).

The kernel moves an object's bytes with ``memcpy`` on two pointers.  The
model's memory is Python buffers (a pool's arena, a stream buffer, a page), so
:func:`memcpy` takes each buffer with an offset into it, and checks both spans
before it copies: a copy that would run past either buffer raises
``ValueError`` and writes nothing, where the kernel would corrupt memory.

- **Compiled**, the copy is libc's ``memcpy`` on the two typed views' memory
  (string.pxd).  It takes no reference on either view and executes no locked
  instruction, so the copy's stores drain into memory that is not in the
  cache while the CPU goes on to the next page, as the kernel's do.  (A
  slice assignment between typed views counts an acquisition on each slice
  with an atomic instruction, and the atomic after the copy waits until
  every store of the copy has reached the cache.)
- **Interpreted**, it is the slice assignment that copies the same bytes.
"""

from __future__ import annotations

from typing import Any

import cython


def memcpy(dst: Any, dst_off: int, src: Any, src_off: int, n: int) -> None:
    """``memcpy(dst + dst_off, src + src_off, n)``: copy ``n`` bytes; the spans
    must lie inside their buffers (``ValueError`` otherwise, nothing copied)."""
    if n < 0 or dst_off < 0 or src_off < 0 or dst_off > len(dst) - n or src_off > len(src) - n:
        raise ValueError(
            f"memcpy of {n} bytes from offset {src_off} of {len(src)} "
            f"to offset {dst_off} of {len(dst)}"
        )
    if n == 0:
        return
    if cython.compiled:
        libc_memcpy(cython.address(dst[dst_off]), cython.address(src[src_off]), n)  # noqa: F821
    else:
        dst[dst_off : dst_off + n] = src[src_off : src_off + n]
