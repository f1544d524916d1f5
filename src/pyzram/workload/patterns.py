"""Access patterns: which page a workload touches next, and whether it writes it.

An *access* is a pair ``(vpn, write)``: the index of a page in the workload's
anonymous memory (``0 <= vpn < nr_pages``) and whether the access stores to it
(a write dirties the page, so a page swapped in and then written must be
swapped out again; a read of a page whose swap copy is still valid need not).
A pattern is a sequence of accesses, kept as two parallel numpy arrays in
:class:`Accesses`: ``vpn`` (``int64``) and ``write`` (``bool``).

Generators (all vectorised, all deterministic for a given ``seed``):

* :func:`sequential` -- ``0, 1, 2, ...`` wrapping around at ``nr_pages``
  (a streaming scan: the worst case for LRU, every page is cold when touched).
* :func:`uniform_random` -- every page equally likely.
* :func:`zipfian` -- rank-frequency Zipf with exponent ``s`` over a random
  permutation of the pages (the hot pages are scattered, not the low indices);
  bounded support: exactly ``nr_pages`` ranks.
* :func:`phased` -- the run is split into phases; each phase touches mostly
  (``locality``, default 90%) its own working set of
  ``working_set * nr_pages`` pages and the rest uniformly.

``write_ratio`` is the probability that an access is a write; the write bits
come from their own random stream, so changing ``write_ratio`` does not change
which pages are touched.

Traces (:func:`read_trace`, :func:`write_trace`) replay recorded accesses;
the format, text or binary, is described in ``docs/traces.md``.
:func:`make_pattern` picks a pattern by name (``sequential``, ``random``,
``zipf``, ``phased``, ``trace:PATH``), as the command line does.
"""

from __future__ import annotations

import errno
import inspect
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_VPN",
    "PATTERNS",
    "TRACE_MAGIC",
    "Accesses",
    "make_pattern",
    "phased",
    "phased_working_sets",
    "read_trace",
    "sequential",
    "uniform_random",
    "write_sources",
    "write_trace",
    "zipfian",
]

VpnArray = npt.NDArray[np.int64]
WriteArray = npt.NDArray[np.bool_]

#: The first 8 bytes of a binary trace.
TRACE_MAGIC = b"PYZTRC01"
#: Bit 63 of a binary trace record: the access is a write.
_WRITE_BIT = np.uint64(1 << 63)
#: Bits 0..62 of a binary trace record: the page index.
_VPN_MASK = np.uint64((1 << 63) - 1)
#: Largest page index a trace (and :class:`Accesses`) can hold.
MAX_VPN = (1 << 63) - 1

#: Names :func:`make_pattern` accepts (besides ``trace:PATH``).
PATTERNS = ("sequential", "random", "zipf", "phased")

# Independent random streams derived from one seed: SeedSequence([seed, stream]).
_STREAM_VPN = 0
_STREAM_WRITE = 1
_STREAM_LAYOUT = 2
_STREAM_WRITE_SOURCE = 3


# ----------------------------------------------------------------------------------------
# the container


@dataclass(frozen=True, eq=False)
class Accesses:
    """A sequence of page accesses as two parallel arrays.

    ``vpn[i]`` is the page index of access ``i`` (``int64``, non-negative) and
    ``write[i]`` whether it is a write.  Iterating yields ``(vpn, write)``
    tuples of Python ``int`` and ``bool``; for speed, use the arrays.
    """

    vpn: VpnArray
    write: WriteArray

    def __post_init__(self) -> None:
        vpn = np.asarray(self.vpn)
        write = np.asarray(self.write)
        if vpn.ndim != 1 or write.ndim != 1:
            raise ValueError(f"vpn and write must be 1-D, got shapes {vpn.shape} {write.shape}")
        if len(vpn) != len(write):
            raise ValueError(f"vpn and write differ in length: {len(vpn)} != {len(write)}")
        if len(vpn) and vpn.dtype.kind not in "iu":
            raise ValueError(f"vpn must be integers, got {vpn.dtype}")
        if len(write) and write.dtype.kind != "b":
            raise ValueError(f"write must be booleans, got {write.dtype}")
        if vpn.dtype.kind == "u" and len(vpn) and int(vpn.max()) > MAX_VPN:
            raise ValueError(f"page index {int(vpn.max())} does not fit in 63 bits")
        vpn = np.ascontiguousarray(vpn, dtype=np.int64)
        if len(vpn) and int(vpn.min()) < 0:
            raise ValueError(f"negative page index {int(vpn.min())}")
        object.__setattr__(self, "vpn", vpn)
        object.__setattr__(self, "write", np.ascontiguousarray(write, dtype=np.bool_))

    @classmethod
    def empty(cls) -> Accesses:
        """No accesses."""
        return cls(np.empty(0, np.int64), np.empty(0, np.bool_))

    def __len__(self) -> int:
        return len(self.vpn)

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        return zip(self.vpn.tolist(), self.write.tolist(), strict=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Accesses):
            return NotImplemented
        return bool(np.array_equal(self.vpn, other.vpn) and np.array_equal(self.write, other.write))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def __repr__(self) -> str:
        return f"Accesses(n={len(self)}, writes={self.nr_writes}, max_vpn={self.max_vpn})"

    @property
    def max_vpn(self) -> int:
        """The largest page index accessed, or -1 when there are no accesses.

        ``max_vpn + 1`` is the number of pages a workload needs to replay this.
        """
        return int(self.vpn.max()) if len(self.vpn) else -1

    @property
    def nr_writes(self) -> int:
        """How many of the accesses are writes."""
        return int(np.count_nonzero(self.write))

    def concat(self, *others: Accesses) -> Accesses:
        """These accesses followed by those of ``others``, in order (a new object)."""
        parts = (self, *others)
        return Accesses(
            np.concatenate([p.vpn for p in parts]), np.concatenate([p.write for p in parts])
        )


# ----------------------------------------------------------------------------------------
# generators


def _rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one independent stream of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _check(nr_pages: int, n: int, seed: int, write_ratio: float) -> None:
    if isinstance(nr_pages, bool) or not isinstance(nr_pages, (int, np.integer)):
        raise TypeError(f"nr_pages must be an int, got {type(nr_pages).__name__}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not 0 < nr_pages <= MAX_VPN:
        raise ValueError(f"nr_pages must be between 1 and 2**63-1, got {nr_pages}")
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    if seed < 0:
        raise ValueError(f"seed must not be negative, got {seed}")
    if not 0.0 <= write_ratio <= 1.0:
        raise ValueError(f"write_ratio must be between 0 and 1, got {write_ratio}")


def _writes(n: int, seed: int, write_ratio: float) -> WriteArray:
    """``n`` write bits, each set with probability ``write_ratio``."""
    if write_ratio <= 0.0:
        return np.zeros(n, np.bool_)
    if write_ratio >= 1.0:
        return np.ones(n, np.bool_)
    return _rng(seed, _STREAM_WRITE).random(n) < write_ratio


def sequential(
    nr_pages: int, n: int, *, seed: int = 0, write_ratio: float = 0.0, start: int = 0
) -> Accesses:
    """``start, start+1, ...`` modulo ``nr_pages``: a scan that wraps around.

    The page order does not depend on ``seed``; the write bits do.
    """
    _check(nr_pages, n, seed, write_ratio)
    # In uint64 so that the sum of two page indices (each < 2**63) cannot overflow.
    vpn = np.arange(n, dtype=np.uint64) % np.uint64(nr_pages) + np.uint64(start % nr_pages)
    vpn[vpn >= nr_pages] -= np.uint64(nr_pages)
    return Accesses(vpn, _writes(n, seed, write_ratio))


def uniform_random(nr_pages: int, n: int, *, seed: int = 0, write_ratio: float = 0.0) -> Accesses:
    """Every access picks a page uniformly at random (with replacement)."""
    _check(nr_pages, n, seed, write_ratio)
    vpn = _rng(seed, _STREAM_VPN).integers(0, nr_pages, n, dtype=np.int64)
    return Accesses(vpn, _writes(n, seed, write_ratio))


def zipfian(
    nr_pages: int, n: int, *, seed: int = 0, write_ratio: float = 0.0, s: float = 1.0
) -> Accesses:
    """Zipf's law over the pages: the page of rank ``k`` is drawn with weight ``1/k**s``.

    Ranks ``1..nr_pages`` are assigned to the pages by a random permutation
    (from ``seed``), so the hot pages are spread over the address space.
    ``s = 0`` is uniform; the larger ``s``, the more skewed.  Sampling inverts
    the cumulative distribution with a binary search: memory is
    ``O(nr_pages)`` (a CDF and a permutation, 16 bytes a page) and time
    ``O(nr_pages + n log nr_pages)``.
    """
    _check(nr_pages, n, seed, write_ratio)
    if not s >= 0.0:  # also rejects NaN
        raise ValueError(f"zipf exponent s must be >= 0, got {s}")
    ranks = np.arange(1, nr_pages + 1, dtype=np.float64)
    cdf = np.cumsum(ranks ** (-float(s)))
    cdf /= cdf[-1]
    u = _rng(seed, _STREAM_VPN).random(n)
    rank = np.searchsorted(cdf, u, side="right")
    np.minimum(rank, nr_pages - 1, out=rank)  # guard against cdf[-1] rounding below 1
    page_of_rank = _rng(seed, _STREAM_LAYOUT).permutation(nr_pages)
    return Accesses(page_of_rank[rank].astype(np.int64), _writes(n, seed, write_ratio))


def _working_set_size(nr_pages: int, working_set: float) -> int:
    if not 0.0 < working_set <= 1.0:
        raise ValueError(f"working_set must be in (0, 1], got {working_set}")
    return min(nr_pages, max(1, round(working_set * nr_pages)))


def phased_working_sets(
    nr_pages: int, *, seed: int = 0, phases: int = 4, working_set: float = 0.25
) -> list[VpnArray]:
    """The working set of each phase of :func:`phased` with the same arguments.

    The pages are shuffled (from ``seed``) and phase ``k`` takes the ``k``-th
    run of ``round(working_set * nr_pages)`` of them (wrapping around), so the
    sets are disjoint while ``phases * working_set <= 1`` and scattered over
    the address space.  Each array is sorted.
    """
    if phases < 1:
        raise ValueError(f"phases must be at least 1, got {phases}")
    ws = _working_set_size(nr_pages, working_set)
    perm = _rng(seed, _STREAM_LAYOUT).permutation(nr_pages).astype(np.int64)
    return [np.sort(perm[(k * ws + np.arange(ws)) % nr_pages]) for k in range(phases)]


def phased(
    nr_pages: int,
    n: int,
    *,
    seed: int = 0,
    write_ratio: float = 0.0,
    phases: int = 4,
    working_set: float = 0.25,
    locality: float = 0.9,
) -> Accesses:
    """Phases of locality: a program that moves from one data set to the next.

    The ``n`` accesses are split into ``phases`` consecutive phases of (nearly)
    equal length; access ``i`` is in phase ``i * phases // n``.  In phase ``k``
    a fraction ``locality`` of the accesses (drawn independently) go uniformly
    to that phase's working set (see :func:`phased_working_sets`), the rest
    uniformly to all pages.  Memory is ``O(nr_pages)`` (the shuffled pages).
    """
    _check(nr_pages, n, seed, write_ratio)
    if not 0.0 <= locality <= 1.0:
        raise ValueError(f"locality must be between 0 and 1, got {locality}")
    if phases < 1:
        raise ValueError(f"phases must be at least 1, got {phases}")
    ws = _working_set_size(nr_pages, working_set)
    perm = _rng(seed, _STREAM_LAYOUT).permutation(nr_pages).astype(np.int64)
    rng = _rng(seed, _STREAM_VPN)
    phase = np.arange(n, dtype=np.int64) * phases // max(n, 1)
    local = rng.random(n) < locality
    in_set = perm[(phase * ws + rng.integers(0, ws, n, dtype=np.int64)) % nr_pages]
    anywhere = rng.integers(0, nr_pages, n, dtype=np.int64)
    return Accesses(np.where(local, in_set, anywhere), _writes(n, seed, write_ratio))


# ----------------------------------------------------------------------------------------
# traces


def _einval(where: str, msg: str) -> OSError:
    """One clear ``OSError(EINVAL)``: ``str(e)`` is ``[Errno 22] WHERE: MSG``."""
    return OSError(errno.EINVAL, f"{where}: {msg}")


#: ASCII whitespace as ``bytes.split()`` sees it: \t \n \v \f \r and space.
_SPACE = np.zeros(256, np.bool_)
_SPACE[[9, 10, 11, 12, 13, 32]] = True
_DIGIT = np.zeros(256, np.bool_)
_DIGIT[ord("0") : ord("9") + 1] = True
#: Longest page index the fast parser takes: 18 digits are always < 2**63.
_FAST_DIGITS = 18
_COMMENT = re.compile(rb"#[^\n]*")


def _parse_text_fast(data: bytes) -> Accesses | None:
    """Parse a well-formed text trace with numpy; ``None`` when it is not (or is unusual).

    Everything this accepts, :func:`_parse_text_slow` accepts with the same
    result; anything else goes to the slow parser, which finds the offending
    line for the error message.
    """
    if b"#" in data:
        data = _COMMENT.sub(b"", data)
    buf = np.frombuffer(data, np.uint8)
    space = _SPACE[buf]
    # Tokens: maximal runs of non-space bytes; starts and (exclusive) ends.
    edge = np.diff(np.concatenate(([True], space, [True])).view(np.int8))
    starts = np.flatnonzero(edge == -1)
    ends = np.flatnonzero(edge == 1)
    if len(starts) == 0:
        return Accesses.empty()
    # Every line holds no token or exactly two.
    line = np.searchsorted(np.flatnonzero(buf == ord("\n")), starts)
    per_line = np.bincount(line)
    if not np.all((per_line == 0) | (per_line == 2)):
        return None
    op_at, num_at, num_end = starts[0::2], starts[1::2], ends[1::2]
    if not np.all(ends[0::2] - op_at == 1):
        return None
    op = buf[op_at] | 0x20  # lower case
    write = op == ord("w")
    if not np.all(write | (op == ord("r"))):
        return None
    # The op letters are the only non-space bytes that are not digits.
    if np.count_nonzero(~(space | _DIGIT[buf])) != len(op_at):
        return None
    width = num_end - num_at
    if int(width.max()) > _FAST_DIGITS:
        return None
    vpn = np.zeros(len(num_at), np.int64)
    for k in range(int(width.max())):
        more = width > k
        digit = buf[np.minimum(num_at + k, len(buf) - 1)].astype(np.int64) - ord("0")
        vpn = np.where(more, vpn * 10 + digit, vpn)
    return Accesses(vpn, write)


def _parse_text(data: bytes, name: str) -> Accesses:
    fast = _parse_text_fast(data)
    return fast if fast is not None else _parse_text_slow(data, name)


def _parse_text_slow(data: bytes, name: str) -> Accesses:
    """Parse a text trace line by line, raising EINVAL with ``FILE:LINE`` on the first error."""
    vpns: list[int] = []
    writes: list[bool] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        body = raw.partition(b"#")[0]
        fields = body.split()
        if not fields:
            continue
        where = f"{name}:{lineno}"
        if len(fields) != 2:
            raise _einval(where, f"expected 'R VPN' or 'W VPN', got {_show(raw)}")
        op, num = fields
        if op in (b"R", b"r"):
            writes.append(False)
        elif op in (b"W", b"w"):
            writes.append(True)
        else:
            raise _einval(where, f"access type must be R or W, got {_show(op)}")
        if not (num.isdigit() and num.isascii()):
            raise _einval(where, f"page index must be a decimal number, got {_show(num)}")
        vpn = int(num)
        if vpn > MAX_VPN:
            raise _einval(where, f"page index {vpn} does not fit in 63 bits")
        vpns.append(vpn)
    return Accesses(np.array(vpns, dtype=np.int64), np.array(writes, dtype=np.bool_))


def _show(b: bytes) -> str:
    """A bytes field for an error message: quoted, non-ASCII escaped, shortened."""
    text = repr(b.strip().decode("ascii", "backslashreplace"))
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_binary(data: bytes, name: str) -> Accesses:
    body = len(data) - len(TRACE_MAGIC)
    if body % 8:
        raise _einval(
            name,
            f"truncated binary trace: {body} bytes after the header is not a whole number "
            f"of 8-byte records (record {body // 8} has {body % 8} bytes)",
        )
    rec = np.frombuffer(data, dtype="<u8", offset=len(TRACE_MAGIC))
    vpn = (rec & _VPN_MASK).astype(np.int64)
    write = (rec & _WRITE_BIT) != 0
    return Accesses(vpn, write)


def read_trace(path: str | os.PathLike[str]) -> Accesses:
    """Read a trace file, binary (starts with ``PYZTRC01``) or text; see ``docs/traces.md``.

    Raises ``OSError(EINVAL)`` for a malformed line (``"FILE:LINE: ..."``) or
    a truncated binary trace, and the usual :class:`OSError` (e.g.
    ``FileNotFoundError``) when the file cannot be read.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(TRACE_MAGIC):
        return _parse_binary(data, name)
    return _parse_text(data, name)


def write_trace(path: str | os.PathLike[str], accesses: Accesses, binary: bool = False) -> None:
    """Write ``accesses`` to ``path`` as a text trace or (``binary=True``) a binary one."""
    if binary:
        rec = accesses.vpn.astype(np.uint64)
        rec |= accesses.write.astype(np.uint64) << np.uint64(63)
        with open(path, "wb") as f:
            f.write(TRACE_MAGIC)
            f.write(rec.astype("<u8", copy=False).tobytes())
        return
    ops = np.where(accesses.write, "W ", "R ")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write("# pyzram trace: one access a line, R (read) or W (write) and a page index\n")
        f.writelines(
            f"{op}{v}\n" for op, v in zip(ops.tolist(), accesses.vpn.tolist(), strict=True)
        )


# ----------------------------------------------------------------------------------------
# what writes store


def write_sources(accesses: Accesses, nr_pages: int, seed: int = 0) -> VpnArray:
    """For each access, the page whose *original* bytes a write stores; ``-1`` for reads.

    A write in a workload replaces the page's contents with those of
    another page of the page source, drawn uniformly from its own random
    stream of ``seed``, so the new bytes are as compressible as the
    workload's.  The original bytes (not the current ones) keep a replay
    exact and stateless: ``pyzram run`` and the real-kernel child of
    ``pyzram bench run`` store the same bytes for the same access.
    """
    if nr_pages <= 0:
        raise ValueError(f"nr_pages must be positive, got {nr_pages}")
    src = _rng(seed, _STREAM_WRITE_SOURCE).integers(0, nr_pages, size=len(accesses))
    return np.where(accesses.write, src, -1).astype(np.int64)


# ----------------------------------------------------------------------------------------
# by name


def make_pattern(
    name: str,
    nr_pages: int,
    n: int,
    seed: int = 0,
    write_ratio: float = 0.0,
    **params: Any,
) -> Accesses:
    """The pattern called ``name``: one of :data:`PATTERNS` or ``trace:PATH``.

    ``params`` go to the generator (``s=`` for ``zipf``; ``phases=``,
    ``working_set=``, ``locality=`` for ``phased``; ``start=`` for
    ``sequential``).

    A trace is replayed as recorded (its own R/W bits; ``seed`` and
    ``write_ratio`` do not apply), cut to ``n`` accesses or repeated from the
    start until there are ``n``, so every pattern gives exactly ``n``.  Raises
    :class:`ValueError` when the trace touches a page ``>= nr_pages`` or is
    empty, and :class:`OSError` when it cannot be read.

    Unknown names raise :class:`ValueError` listing the valid ones.
    """
    if name.startswith("trace:"):
        path = name[len("trace:") :]
        if not path:
            raise ValueError("trace: needs a file name, e.g. trace:accesses.txt")
        if params:
            raise ValueError(f"a trace takes no parameters, got {', '.join(sorted(params))}")
        _check(nr_pages, n, seed, write_ratio)
        trace = read_trace(path)
        if trace.max_vpn >= nr_pages:
            raise ValueError(
                f"{path}: the trace touches page {trace.max_vpn} but the workload has "
                f"only {nr_pages} pages (needs at least {trace.max_vpn + 1})"
            )
        if n == len(trace):
            return trace
        if not len(trace):
            if n == 0:
                return trace
            raise ValueError(f"{path}: the trace has no accesses")
        idx = np.arange(n, dtype=np.int64) % len(trace)
        return Accesses(trace.vpn[idx], trace.write[idx])
    gens = {
        "sequential": sequential,
        "random": uniform_random,
        "zipf": zipfian,
        "phased": phased,
    }
    gen = gens.get(name)
    if gen is None:
        valid = ", ".join([*PATTERNS, "trace:PATH"])
        raise ValueError(f"unknown access pattern {name!r}; valid: {valid}")
    accepted = set(inspect.signature(gen).parameters) - {"nr_pages", "n", "seed", "write_ratio"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"access pattern {name!r} takes no parameter {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(accepted))}"
        )
    return gen(nr_pages, n, seed=seed, write_ratio=write_ratio, **params)
