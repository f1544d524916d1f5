"""``pyzram compare``: one workload through zram's swap_ops path and through the bio path,
or (``--zswap``) on zram alone and on zswap in front of a swap file."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from pyzram.mm.tlb import TLB_ENTRIES
from pyzram.tools.commands.run import (
    WALL_NOTE,
    RamOpt,
    ZswapCompressorOpt,
    ZswapPoolOpt,
    _report_table,
    progress_bar,
    zswap_kwargs,
)
from pyzram.tools.common import (
    ALGO_HELP,
    DisksizeOpt,
    FolioOrderOpt,
    JsonOpt,
    LimitOpt,
    MemLimitOpt,
    MixOpt,
    MthpSwapinOpt,
    PageFileArg,
    PatternOpt,
    SeedOpt,
    Tlb2mEntriesOpt,
    TlbEntriesOpt,
    console,
    run_kwargs,
    workload_pages,
)


def command(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    mem_limit: MemLimitOpt = None,
    disksize: DisksizeOpt = None,
    pattern: PatternOpt = "zipf",
    accesses: Annotated[int | None, typer.Option(help="accesses after the fill (2x pages)")] = None,
    write_ratio: Annotated[float, typer.Option(help="share of accesses that write")] = 0.1,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    mix: MixOpt = None,
    folio_order: FolioOrderOpt = 0,
    mthp_swapin: MthpSwapinOpt = True,
    tlb_entries: TlbEntriesOpt = TLB_ENTRIES,
    tlb_2m_entries: Tlb2mEntriesOpt = None,
    zswap: Annotated[
        bool,
        typer.Option(
            "--zswap",
            help="compare zram alone with zswap in front of a swap file (a temporary file)",
        ),
    ] = False,
    zswap_compressor: ZswapCompressorOpt = "lzo",
    zswap_max_pool_percent: ZswapPoolOpt = None,
    ram: RamOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The same workload through zram's swap_ops path and through the bio path
    (``--zswap``: on zram alone and on zswap over a swap file)."""
    from pyzram.tools.commands.run import run_workload

    kw = run_kwargs(
        algo,
        mem_limit,
        disksize,
        pattern,
        accesses,
        write_ratio,
        seed,
        None,
        folio_order=folio_order,
        mthp_swapin=mthp_swapin,
        tlb_entries=tlb_entries,
        tlb_2m_entries=tlb_2m_entries,
    )
    if zswap:
        zkw = zswap_kwargs(True, zswap_compressor, zswap_max_pool_percent, ram)
        _compare_zswap(pagefile, limit, mix, seed, kw, zkw, as_json)
        return
    with progress_bar(not as_json) as step:
        t = time.perf_counter()
        pages, source = workload_pages(pagefile, limit, mix, seed)
        pages_s = time.perf_counter() - t
        ops = run_workload(pages, io_path="swap_ops", source=source, progress=step, **kw)
        bio = run_workload(pages, io_path="bio", source=source, progress=step, **kw)
    ops.pages_seconds = pages_s  # made once, for both runs
    speedup = bio.seconds / ops.seconds if ops.seconds else None
    if as_json:
        out = {
            r.io_path: {**r.as_dict(), "speedup": speedup if r is ops else 1.0} for r in (ops, bio)
        }
        print(json.dumps(out, indent=2))
    else:
        console.print(_report_table([ops, bio]))
        console.print(f"speedup of swap_ops over bio (fill + pattern): {speedup:.2f}x")
        console.print(
            WALL_NOTE + " (the pages are made once, counted in the first column)", soft_wrap=True
        )
    if not (ops.intact and bio.intact):
        raise typer.Exit(1)


def _compare_zswap(pagefile, limit, mix, seed, kw: dict, zkw: dict, as_json: bool) -> None:
    """zram alone, then zswap in front of a swap file (same RAM, same workload)."""
    import tempfile
    from pathlib import Path

    from pyzram.tools.commands.run import run_workload

    ram = {"totalram_pages": zkw["totalram_pages"]} if "totalram_pages" in zkw else {}
    with progress_bar(not as_json) as step, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        pages, source = workload_pages(pagefile, limit, mix, seed)
        pages_s = time.perf_counter() - t
        zram = run_workload(pages, source=source, progress=step, **kw, **ram)
        fkw = {k: v for k, v in kw.items() if k != "algorithm"}
        swap_file = Path(tmp) / "swapfile"
        zsw = run_workload(pages, source=source, progress=step, swap_file=swap_file, **fkw, **zkw)
    zram.pages_seconds = pages_s
    if as_json:
        print(json.dumps({"zram": zram.as_dict(), "zswap": zsw.as_dict()}, indent=2))
    else:
        console.print(_report_table([zram, zsw]))
        saved = zsw.memory_saved_bytes - zram.memory_saved_bytes
        console.print(
            f"zswap + swap file vs zram: {zsw.disk_write_pages:,} pages reached the disk; "
            f"memory used {zsw.memory_used_bytes / 2**20:.1f} vs "
            f"{zram.memory_used_bytes / 2**20:.1f} MiB, saved {saved / 2**20:+.1f} MiB",
            soft_wrap=True,
        )
        console.print(
            WALL_NOTE + " (the pages are made once, counted in the first column)", soft_wrap=True
        )
    if not (zram.intact and zsw.intact):
        raise typer.Exit(1)
