"""``pyzram store``: what zram would do with a set of pages."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pyzram.config import ZramConfig
from pyzram.tools.common import (
    ALGO_HELP,
    JsonOpt,
    PageFileArg,
    UsageError,
    check_algorithm,
    console,
    load_pages,
    mm_table,
    print_kernel_line,
)

#: The three ratios ``store`` prints: its JSON key and the name it prints, which says
#: how each is computed from the mm_stat fields.
RATIOS = (
    ("ratio_orig_to_compr", "data ratio (orig_data_size / compr_data_size)"),
    ("ratio_orig_to_mem_used", "memory ratio (orig_data_size / mem_used_total)"),
    ("zsmalloc_overhead", "zsmalloc overhead (mem_used_total / compr_data_size)"),
)


def command(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    chain: Annotated[int, typer.Option(help="CONFIG_ZSMALLOC_CHAIN_SIZE (4..16)")] = 8,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What zram would do with these pages: mm_stat, ratios, same/huge pages."""
    from pyzram.zram.zram_drv import PAGE_SIZE, Zram

    check_algorithm(algo)
    if not 4 <= chain <= 16:
        raise UsageError("--chain", f"must be 4..16, not {chain}")
    pages = load_pages(pagefile, limit)
    dev = Zram(ZramConfig(zsmalloc_chain_size=chain))
    dev.sysfs["comp_algorithm"] = algo
    dev.sysfs["disksize"] = str(len(pages) * PAGE_SIZE)
    dev.pwrite(pages.tobytes(), 0)
    mm = dev.mm_stat()
    text = dev.sysfs["mm_stat"]
    summary = {
        "pages": len(pages),
        "algorithm": algo,
        "mm_stat": mm._asdict(),
        "mm_stat_text": text,
        "ratio_orig_to_compr": mm.orig_data_size / mm.compr_data_size
        if mm.compr_data_size
        else None,
        "ratio_orig_to_mem_used": mm.orig_data_size / mm.mem_used_total
        if mm.mem_used_total
        else None,
        "zsmalloc_overhead": mm.mem_used_total / mm.compr_data_size if mm.compr_data_size else None,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    src = str(pagefile) if pagefile else "embedded default corpus"
    t = mm_table(f"zram ({algo}) storing {len(pages)} pages of {src}", ["value"], [])
    for name, v in mm._asdict().items():
        t.add_row(name, f"{v:,}")
    console.print(t)
    print_kernel_line("mm_stat", text)
    for key, name in RATIOS:
        if summary[key] is not None:
            console.print(f"{name}: {summary[key]:.3f}")
