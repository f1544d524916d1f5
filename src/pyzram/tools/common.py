"""What the commands share: the console, the page sources, the workload's options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()

ALGO_HELP = (
    "zram backend: lzo-rle (default), lzo, lz4, lz4hc (pyzram's kernel-identical C codecs), "
    "zstd, deflate (library codecs: the kernel's format and, on the pages checked, its sizes)"
)
PageFileArg = Annotated[
    Path | None,
    typer.Argument(help="page file (raw 4096-byte pages); default: the embedded corpus"),
]


def load_pages(path: Path | None, limit: int | None = None):
    from pyzram.workload.pages import default_corpus, read_page_file

    pages = default_corpus() if path is None else read_page_file(path)
    if limit is not None:
        pages = pages[:limit]
    if len(pages) == 0:
        raise ValueError("no pages to process")
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
) -> dict:
    """The keyword arguments of ``run_workload`` from the command line's options."""
    from pyzram.lib.cmdline import memparse

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
    for name, text in (("mem_limit_pages", mem_limit), ("disksize", disksize)):
        if text is None:
            continue
        value, end = memparse(text)
        if end != len(text) or not value:
            raise ValueError(f"bad size {text!r} (e.g. 64M, 1G)")
        kw[name] = value // 4096 if name == "mem_limit_pages" else value
    return kw


def workload_pages(pagefile: Path | None, limit: int | None, mix: str | None, seed: int):
    """The workload's page source and its description: the page file, the embedded
    corpus, or (``--mix``) ``limit`` (default 4096) seeded synthetic pages of that mix."""
    if mix is None:
        pages = load_pages(pagefile, limit)
        return pages, str(pagefile) if pagefile else "embedded default corpus"
    from pyzram.workload.pages import parse_mix, synthetic_mix

    if pagefile is not None:
        raise ValueError("give a PAGEFILE or --mix, not both")
    n = 4096 if limit is None else limit
    if n <= 0:
        raise ValueError("no pages to process")
    return synthetic_mix(n, seed=seed, mix=parse_mix(mix)), f"mix {mix} (seed {seed})"


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
SeedOpt = Annotated[int, typer.Option(help="seed of the pattern, the writes and --mix")]
LimitOpt = Annotated[
    int | None, typer.Option(help="use only the first N pages (with --mix: generate N)")
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="print the result as JSON on stdout instead of the table"),
]
