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


#: The compressors zswap can take here (the crypto API's names of our codecs).
ZSWAP_COMPRESSORS = ("lzo", "lzo-rle", "lz4", "lz4hc", "zstd", "deflate")


def zswap_pageout(
    pages,
    compressor: str = "lzo",
    *,
    totalram_pages: int | None = None,
    compressors: tuple[str, ...] | None = None,
    read_back: bool = False,
    params: dict[str, str] | None = None,
) -> dict:
    """The pages as ``MADV_PAGEOUT`` pushes them through pyzram's zswap.

    Each page is an order-0 swap-cache folio written out by reclaim: an
    all-zero page goes to the swap core's zero map (``swpout_zero``), any
    other is offered to ``zswap_store``; a page zswap refuses would be
    written to the swap area (``pswpout``).  With ``read_back`` every page is
    then loaded back (``zswap_load``, or the zero map) and compared.  The
    result has the keys of :meth:`pyzram.host.kernel_zswap.KernelZswap.pageout`.
    """
    import time
    from types import SimpleNamespace

    from pyzram.mm.folio import Folio, PG_locked, SwpEntry
    from pyzram.mm.page_io import is_folio_zero_filled
    from pyzram.mm.swap import VmEvents
    from pyzram.mm.zswap import Zswap, host_totalram_pages, zswap_load, zswap_store, zswap_swapon

    kw: dict = {"compressors": compressors or ZSWAP_COMPRESSORS}
    try:
        kw["totalram_pages"] = totalram_pages or host_totalram_pages()
    except OSError:
        pass
    m = SimpleNamespace(zswap=Zswap(**kw), vm_events=VmEvents())
    zs = m.zswap
    zs.param_write("compressor", compressor)
    for name, value in (params or {}).items():
        zs.param_write(name, value)
    zs.param_write("enabled", "Y")
    n = len(pages)
    zswap_swapon(m, 0, n + 1)
    zero = []
    t0 = time.perf_counter()
    for i in range(n):
        folio = Folio(0, pages[i].tobytes())
        folio.swap = SwpEntry(0, i + 1)  # slot 0 holds the swap header
        folio.lock()
        if is_folio_zero_filled(folio):
            m.vm_events.count("swpout_zero")
            zero.append(True)
        else:
            zero.append(False)
            if not zswap_store(m, folio):
                m.vm_events.count("pswpout")
        if folio.test(PG_locked):
            folio.unlock()
    t1 = time.perf_counter()
    vm = {k: m.vm_events[k] for k in ("zswpout", "zswpin", "zswpwb", "swpout_zero", "pswpout")}
    out = {
        "pages": n,
        "compressor": zs.param_read("compressor").strip(),
        "debugfs": zs.debugfs(),
        "vmstat": vm,
        "meminfo": zs.meminfo(),
        "pageout_seconds": t1 - t0,
    }
    if read_back:
        equal = True
        t2 = time.perf_counter()
        for i in range(n):
            if zero[i]:
                continue
            folio = Folio(0)
            folio.swap = SwpEntry(0, i + 1)
            folio.lock()
            if zswap_load(m, folio) != 0 or bytes(folio.data) != pages[i].tobytes():
                equal = False
        out["read_back_equal"] = equal
        out["read_back_seconds"] = time.perf_counter() - t2
        out["vmstat_read_back"] = {"zswpin": m.vm_events["zswpin"]}
        out["debugfs_read_back"] = zs.debugfs()
    return out


def _zswap_command(pages, pagefile, algo: str, as_json: bool) -> None:
    if algo not in ZSWAP_COMPRESSORS:
        raise UsageError("--algorithm", f"zswap compressors are {', '.join(ZSWAP_COMPRESSORS)}")
    r = zswap_pageout(pages, algo)
    d = r["debugfs"]
    stored = d["stored_pages"]
    r["ratio_stored_to_pool"] = stored * 4096 / d["pool_total_size"] if stored else None
    if as_json:
        print(json.dumps(r, indent=2))
        return
    src = str(pagefile) if pagefile else "embedded default corpus"
    t = mm_table(f"zswap ({algo}) after MADV_PAGEOUT of {len(pages)} pages of {src}", ["value"], [])
    for name, v in d.items():
        t.add_row(f"debugfs {name}", f"{v:,}")
    for name, v in r["vmstat"].items():
        t.add_row(f"vmstat {name}", f"{v:,}")
    for name, v in r["meminfo"].items():
        t.add_row(f"meminfo {name}", f"{v:,} kB")
    console.print(t)
    if r["ratio_stored_to_pool"] is not None:
        console.print(
            f"memory ratio (stored_pages * 4096 / pool_total_size): {r['ratio_stored_to_pool']:.3f}"
        )


def command(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    chain: Annotated[int, typer.Option(help="CONFIG_ZSMALLOC_CHAIN_SIZE (4..16)")] = 8,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    zswap: Annotated[
        bool,
        typer.Option(
            "--zswap",
            help="zswap instead of zram: the pages as MADV_PAGEOUT pushes them (zero pages "
            "to the swap core's zero map, the rest to zswap_store); its debugfs counters",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """What zram (or zswap) would do with these pages: mm_stat, ratios, same/huge pages."""
    from pyzram.zram.zram_drv import PAGE_SIZE, Zram

    if zswap:
        _zswap_command(load_pages(pagefile, limit), pagefile, algo, as_json)
        return
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
