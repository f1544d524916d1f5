"""``pyzram compare``: one workload through zram's swap_ops path and through the bio path."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from pyzram.tools.commands.run import WALL_NOTE, _report_table, progress_bar
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
    as_json: JsonOpt = False,
) -> None:
    """The same workload through zram's swap_ops path and through the bio path."""
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
    )
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
