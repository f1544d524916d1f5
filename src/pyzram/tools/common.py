"""What the commands share: the console, the page sources, the workload's options."""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console()

#: Exit codes, the same in every command: a failure (the command ran and something
#: failed: a file, the kernel, a check), a usage error (the command line cannot be
#: run as given: an unknown option, a bad option value), and an interrupt (Ctrl-C).
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """A command line that cannot be run as given; ``pyzram: error: OPTION: WHY``, exit 2."""

    def __init__(self, option: str | None, why: str) -> None:
        super().__init__(f"{option}: {why}" if option else why)
        self.option = option


#: glibc's ``mallopt`` parameters (malloc/malloc.c): freed memory at the top of the heap
#: beyond ``M_TRIM_THRESHOLD`` bytes goes back to the operating system, and a block of
#: ``M_MMAP_THRESHOLD`` bytes or more is mapped on its own and unmapped when freed.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: What the heap keeps once a measured window has run: every folio the model frees.
_KEEP_FREED = 1 << 30
#: The largest block taken from the heap (glibc's ceiling on 64-bit,
#: ``DEFAULT_MMAP_THRESHOLD_MAX``): a PMD-size folio's 2 MiB among them.
_HEAP_BLOCKS = 32 << 20


def _mallopt(param: int, env: str, nbytes: int) -> None:
    """``mallopt(param, nbytes)`` where the C library has it (glibc); left alone where
    the user chose a value (the environment variable ``env``) or there is none."""
    if env in os.environ:
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(param, nbytes)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """A measured stretch of work with the host Python's heap held still: its
    existing objects frozen (``gc.freeze``), so the cyclic collector looks only
    at objects made inside, and, from the first such window on, the memory
    the process frees kept for reuse.

    Without the first, the first full collection after start-up (every
    module, function and dictionary of the interpreter: 17–22 ms on the
    machines of ``docs/perf.md``) lands in whichever window happens to cross
    its threshold, a pause of the host language that no kernel has.
    Without the second, glibc hands the top of the heap back to the host
    kernel whenever more than 128 KiB of it is free, as it is each time
    reclaim frees a batch of folios, and the next folios' 4 KiB buffers
    fault their pages in again: a host page fault per folio that the
    kernel's page allocator, handing out pages from its free lists, does
    not pay (``docs/perf.md``: swap-in 4.1–4.8 µs a page with the memory
    kept, 5.7–7.8 without).  So the heap keeps up to 1 GiB of free memory
    (``M_TRIM_THRESHOLD``), and blocks up to 32 MiB come from it
    (``M_MMAP_THRESHOLD``: setting the first stops glibc from raising its
    mmap threshold as blocks are freed, and every block of 128 KiB or more,
    a PMD-size folio's 2 MiB buffer among them, would be mapped on its own,
    unmapped when freed and faulted in again).  The memory stays with the
    process after the window, as RAM stays with a machine: the next run in
    it (a bench's repeats, a sweep worker's next point) reuses it instead
    of faulting it in again.  Nested uses leave the unfreezing to the
    outermost.
    """
    outermost = gc.get_freeze_count() == 0
    gc.freeze()
    if outermost:
        _mallopt(_M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", _KEEP_FREED)
        _mallopt(_M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", _HEAP_BLOCKS)
    try:
        yield
    finally:
        if outermost:
            gc.unfreeze()


def check_algorithm(name: str | None, option: str = "--algorithm") -> None:
    """A usage error unless ``name`` is one of zram's compression backends (whether this
    build or kernel has it is the device's to say, with the kernel's EINVAL)."""
    from pyzram.config import ALL_BACKENDS

    if name is not None and name not in ALL_BACKENDS:
        known = ", ".join(ALL_BACKENDS)
        raise UsageError(option, f"unknown algorithm {name!r} (zram has {known})")


def check_count(option: str, value: int | None, least: int = 0) -> None:
    """A usage error if the option's number is below ``least`` (0: not negative)."""
    if value is not None and value < least:
        raise UsageError(
            option, "must not be negative" if least == 0 else f"must be at least {least}"
        )


ALGO_HELP = (
    "zram backend: lzo-rle (default), lzo, lz4, lz4hc (pyzram's kernel-identical C codecs), "
    "zstd, deflate (library codecs: the kernel's format and, on the pages checked, its sizes)"
)
PageFileArg = Annotated[
    Path | None,
    typer.Argument(help="page file (raw 4096-byte pages); default: the embedded corpus"),
]


def load_pages(path: Path | None, limit: int | None = None):
    """The pages of the page file ``path`` (default: the embedded corpus), the first
    ``limit`` of them; an empty file is a failure that names the file."""
    from pyzram.workload.pages import default_corpus, read_page_file

    check_count("--limit", limit, 1)
    pages = default_corpus() if path is None else read_page_file(path)
    if limit is not None:
        pages = pages[:limit]
    if len(pages) == 0:
        raise ValueError(f"{path}: no pages in the page file (it is empty)")
    return pages


def mm_table(title: str, columns: list[str], rows: list[tuple[str, ...]]) -> Table:
    t = Table(title=title)
    t.add_column("field")
    for c in columns:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*r)
    return t


def run_kwargs(
    algo,
    mem_limit,
    disksize,
    pattern,
    accesses,
    write_ratio,
    seed,
    backing_dev,
    *,
    folio_order: int = 0,
    mthp_swapin: bool = True,
    writeback: str | None = None,
    idle_age: str = "all",
    pp_every: int = 0,
    recompress_algo: str | None = None,
    recompress: str | None = None,
    tlb_entries: int | None = None,
    tlb_2m_entries: int | None = None,
) -> dict:
    """The keyword arguments of ``run_workload`` from the command line's options; a bad
    option value is a :class:`UsageError` naming the option."""
    from pyzram.lib.cmdline import memparse
    from pyzram.mm.vmscan import HPAGE_PMD_ORDER
    from pyzram.workload.patterns import PATTERNS

    check_algorithm(algo)
    check_algorithm(recompress_algo, "--recompress-algorithm")
    check_count("--accesses", accesses)
    check_count("--pp-every", pp_every)
    check_count("--tlb-entries", tlb_entries)
    check_count("--tlb-2m-entries", tlb_2m_entries)
    if not 0 <= write_ratio <= 1:
        raise UsageError("--write-ratio", f"must be between 0 and 1, not {write_ratio:g}")
    if not 0 <= folio_order <= HPAGE_PMD_ORDER:
        raise UsageError("--folio-order", f"{folio_order} out of range 0..{HPAGE_PMD_ORDER}")
    if pattern not in PATTERNS and not pattern.startswith("trace:"):
        known = ", ".join(PATTERNS)
        raise UsageError("--pattern", f"unknown access pattern {pattern!r} ({known}, trace:PATH)")
    if writeback is not None and backing_dev is None:
        raise UsageError("--writeback", "needs a backing device (--backing-dev FILE)")
    if recompress is not None and not recompress_algo:
        raise UsageError("--recompress", "needs a secondary algorithm (--recompress-algorithm)")
    if idle_age != "all" and not idle_age.isdigit():
        raise UsageError("--idle-age", f"must be all or a number of seconds, not {idle_age!r}")

    kw: dict = {
        "algorithm": algo,
        "pattern": pattern,
        "accesses": accesses,
        "write_ratio": write_ratio,
        "seed": seed,
        "backing_dev": str(backing_dev) if backing_dev else None,
        "folio_order": folio_order,
        "mthp_swapin": mthp_swapin,
        "writeback": writeback,
        "idle_age": idle_age,
        "pp_every": pp_every,
        "recompress_algo": recompress_algo,
        "recompress": recompress,
    }
    if tlb_entries is not None:
        kw["tlb_entries"] = tlb_entries
    if tlb_2m_entries is not None:
        kw["tlb_2m_entries"] = tlb_2m_entries
    for name, option, text in (
        ("mem_limit_pages", "--mem-limit", mem_limit),
        ("disksize", "--disksize", disksize),
    ):
        if text is None:
            continue
        value, end = memparse(text)
        if end != len(text) or not value:
            raise UsageError(option, f"bad size {text!r} (e.g. 64M, 1G)")
        kw[name] = value // 4096 if name == "mem_limit_pages" else value
    return kw


def workload_pages(pagefile: Path | None, limit: int | None, mix: str | None, seed: int):
    """The workload's page source and its description: the page file (mapped, not
    read), the embedded corpus, or (``--mix``) ``limit`` (default 4096) seeded
    synthetic pages of that mix, made on demand (a :class:`MixPages`)."""
    if mix is None:
        pages = load_pages(pagefile, limit)
        return pages, str(pagefile) if pagefile else "embedded default corpus"
    from pyzram.workload.pages import mix_pages, parse_mix

    if pagefile is not None:
        raise UsageError("--mix", "give a PAGEFILE or --mix, not both")
    check_count("--limit", limit, 1)
    n = 4096 if limit is None else limit
    try:
        kinds = parse_mix(mix)
    except ValueError as e:
        raise UsageError("--mix", str(e)) from None
    return mix_pages(n, seed=seed, mix=kinds), f"mix {mix} (seed {seed})"


MemLimitOpt = Annotated[
    str | None,
    typer.Option("--mem-limit", help="memcg limit, e.g. 16M (default: 1/4 of the pages)"),
]
DisksizeOpt = Annotated[
    str | None,
    typer.Option(
        help="zram disksize, e.g. 64M (default: the workload's pages in whole swap clusters, "
        "plus one)"
    ),
]
PatternOpt = Annotated[
    str, typer.Option(help="access pattern: sequential, random, zipf, phased, or trace:PATH")
]
MixOpt = Annotated[
    str | None,
    typer.Option(
        help="instead of PAGEFILE: --limit (default 4096) seeded synthetic pages of this mix, "
        "e.g. zero=0.1,same=0.05,text=0.3,random=0.1,binary=0.45 (kinds: zero, same, text, "
        "text_tail, struct, near_same, random, near_huge, binary)"
    ),
]
FolioOrderOpt = Annotated[
    int,
    typer.Option(
        "--folio-order",
        help="anonymous memory in folios of 2^K pages (mTHP 1..8, PMD THP 9); "
        "split to order 0 when no aligned swap slots are free",
    ),
]
MthpSwapinOpt = Annotated[
    bool,
    typer.Option(
        "--mthp-swapin/--no-mthp-swapin",
        help="zram swap-in of whole mTHP folios (orders 1..8; PMD THP always comes back "
        "as order 0)",
    ),
]
TlbEntriesOpt = Annotated[
    int,
    typer.Option(
        "--tlb-entries",
        help="pyzram's CPU data TLB: 4 KiB translations it caches per process (a cached "
        "page's accessed bit stays clear after reclaim clears it, as on x86; 0: every "
        "access sets it, as on arm64)",
    ),
]
Tlb2mEntriesOpt = Annotated[
    int | None,
    typer.Option(
        "--tlb-2m-entries",
        help="pyzram's CPU data TLB for 2 MiB (PMD) mappings, where it has entries of its "
        "own (default: a PMD mapping takes one of --tlb-entries; 0: every access sets "
        "the PMD's accessed bit)",
    ),
]
SeedOpt = Annotated[int, typer.Option(help="seed of the pattern, the writes and --mix")]
LimitOpt = Annotated[
    int | None, typer.Option(help="use only the first N pages (with --mix: generate N)")
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="print the result as JSON on stdout instead of the table"),
]


def print_kernel_line(name: str, text: str) -> None:
    """``NAME: TEXT`` for a line of the kernel's (mm_stat, io_stat ...), never cut or
    wrapped inside: on one line where it fits the console, else the name on its own
    line and the kernel's text on the next."""
    text = text.rstrip("\n")
    if len(name) + 2 + len(text) <= console.width:
        console.print(f"{name}: {text}", soft_wrap=True, markup=False, highlight=False)
    else:
        console.print(f"{name}:", soft_wrap=True, markup=False, highlight=False)
        console.print(text, soft_wrap=True, markup=False, highlight=False)


def print_field_table(
    title: str, fields: list[str], columns: list[tuple[str, list[str]]], header: str = "field"
) -> None:
    """A table of named rows (``fields``) and value columns that never cuts a name:
    where all the columns do not fit the console's width, as many as fit go in one
    table and the rest follow in the next ones, each with the field names in full."""
    name_width = max(len(header), *(len(f) for f in fields))
    chunks: list[list[tuple[str, list[str]]]] = [[]]
    used = name_width + 4  # the name column and the table's borders
    for col in columns:
        width = max(len(col[0]), *(len(Text.from_markup(c).plain) for c in col[1])) + 3
        if chunks[-1] and used + width > console.width:
            chunks.append([])
            used = name_width + 4
        chunks[-1].append(col)
        used += width
    for i, chunk in enumerate(chunks):
        more = f" ({i + 1} of {len(chunks)})" if len(chunks) > 1 else ""
        t = Table(title=title + more)
        t.add_column(header, no_wrap=True, min_width=name_width)
        for name, _ in chunk:
            t.add_column(name, justify="right", no_wrap=True)
        for r, field in enumerate(fields):
            t.add_row(field, *(cells[r] for _, cells in chunk))
        console.print(t)
