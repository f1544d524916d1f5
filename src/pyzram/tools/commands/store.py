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
    backing_algorithm: str = "lzo-rle",
) -> dict:
    """The pages as ``MADV_PAGEOUT`` pushes them through pyzram's swap path with zswap.

    A machine (``totalram_pages``: the host's RAM unless told) with zswap on
    in front of a zram swap area (``backing_algorithm``), as
    :class:`~pyzram.host.kernel_zswap.KernelZswap` sets the host up and
    :class:`~pyzram.host.kernel_vm.VmZswap` a guest; a process whose pages hold
    ``pages`` (order-0 folios, each faulted in) and
    ``AddressSpace.madvise_pageout`` over all of them:
    reclaim writes each folio out through ``swap_writeout``, where an
    all-zero page goes to the zero map (``swpout_zero``), the others to
    ``zswap_store``, and what zswap refuses to the zram area (``pswpout``).
    With ``read_back`` every page is then faulted back (``do_swap_page`` ->
    ``swap_read_folio`` -> ``zswap_load``) and compared.  The result has
    the keys of :meth:`pyzram.host.kernel_zswap.KernelZswap.pageout`.
    """
    import time

    import numpy as np

    from pyzram.config import ZramConfig
    from pyzram.mm.folio import PAGE_SIZE
    from pyzram.mm.zswap import host_totalram_pages
    from pyzram.tools.bench.table import process, swap_area

    n = len(pages)
    with swap_area(n, backing_algorithm, "swap_ops", ZramConfig()) as (m, _dev, _si):
        if totalram_pages is None:
            try:
                totalram_pages = host_totalram_pages()
            except OSError:
                totalram_pages = m.totalram_pages
        m.totalram_pages = m.zswap.totalram_pages = totalram_pages
        zs = m.zswap
        zs.compressors = tuple(compressors or ZSWAP_COMPRESSORS)
        zs.param_write("compressor", compressor)
        for name, value in (params or {}).items():
            if name != "enabled":
                zs.param_write(name, value)
        zs.param_write("enabled", (params or {}).get("enabled", "Y"))
        mm = process(m, pages)
        for vpn in range(n):
            mm.touch(vpn)
        keys = ("zswpout", "zswpin", "zswpwb", "swpout_zero", "pswpout")
        before = {k: m.vm_events[k] for k in keys}
        t0 = time.perf_counter()
        mm.madvise_pageout(0, n)
        t1 = time.perf_counter()
        vm = {k: m.vm_events[k] - before[k] for k in keys}
        out = {
            "pages": n,
            "compressor": zs.param_read("compressor").strip(),
            "debugfs": zs.debugfs(),
            "vmstat": vm,
            "meminfo": zs.meminfo(),
            "pageout_seconds": t1 - t0,
        }
        if read_back:
            # Each page faulted back (order-0 folios: a folio's bytes are its page) and
            # compared in place, as the host side's one pass of np.array_equal does.
            flat = memoryview(np.ascontiguousarray(pages).reshape(-1))
            expected = [flat[vpn * PAGE_SIZE : (vpn + 1) * PAGE_SIZE] for vpn in range(n)]
            t2 = time.perf_counter()
            equal = all(mm.touch(vpn).data == expected[vpn] for vpn in range(n))
            out["read_back_equal"] = equal
            out["read_back_seconds"] = time.perf_counter() - t2
            out["vmstat_read_back"] = {
                "zswpin": m.vm_events["zswpin"],
                "pswpin": m.vm_events["pswpin"],
                "swpin_zero": m.vm_events["swpin_zero"],
            }
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
            help="zswap instead of zram: a process's pages pushed out with MADV_PAGEOUT "
            "through pyzram's swap path, zswap in front of a zram area (zero pages to the "
            "zero map, the rest to zswap_store); its debugfs, vmstat and meminfo",
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
