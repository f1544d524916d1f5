"""``pyzram bench`` and its subcommands: the benchmark table and single benches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pyzram.mm.tlb import TLB_ENTRIES
from pyzram.tools.bench.sweep import SWEEP_PAGES
from pyzram.tools.commands.run import ZswapCompressorOpt, ZswapOpt, ZswapPoolOpt
from pyzram.tools.common import (
    ALGO_HELP,
    DisksizeOpt,
    FolioOrderOpt,
    JsonOpt,
    LimitOpt,
    MemLimitOpt,
    MixOpt,
    PageFileArg,
    PatternOpt,
    SeedOpt,
    Tlb2mEntriesOpt,
    TlbEntriesOpt,
    UsageError,
    check_algorithm,
    check_count,
    console,
    load_pages,
    print_kernel_line,
    run_kwargs,
    workload_pages,
)


def command(
    ctx: typer.Context,
    algo: Annotated[
        str, typer.Option("--algorithm", "-a", help="lz4, lzo or lzo-rle (our kernel-exact codecs)")
    ] = "lz4",
    threads: Annotated[int, typer.Option(help="threads for the multi-thread rows")] = 2,
    quick: Annotated[
        bool, typer.Option("--quick", help="smaller corpus and curve (10^4..10^5): < 90 s")
    ] = False,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="a few pages (tests)")] = False,
    no_kernel: Annotated[bool, typer.Option("--no-kernel", help="skip the host kernel")] = False,
    as_json: JsonOpt = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="write the linear-scaling curve as a PNG")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="also write the table as Markdown (README)")
    ] = None,
) -> None:
    """Every figure in one run on one corpus: ours, the reference, the ratio, the goal."""
    if ctx.invoked_subcommand is not None:
        return
    from pyzram.tools.bench.table import run_bench

    if threads < 1:
        raise UsageError("--threads", "must be at least 1")
    if algo not in ("lz4", "lzo", "lzo-rle"):
        raise UsageError("--algorithm", f"must be lz4, lzo or lzo-rle, not {algo!r}")
    err = Console(stderr=True)
    plan = "tiny" if tiny else "quick" if quick else "full"
    with err.status("pyzram bench") as status:
        report = run_bench(
            plan,
            algo=algo,
            threads=threads,
            kernel=not no_kernel,
            plot=plot,
            progress=lambda msg: status.update(f"pyzram bench: {msg}"),
        )
    if markdown is not None:
        markdown.write_text(report.markdown())
    if as_json:
        print(report.to_json())
        return
    console.print(_bench_table(report))
    if plot is not None:
        console.print(f"wrote {plot}")


def _bench_table(report) -> Table:
    """The one table of ``pyzram bench``: row, ours, reference (what), ratio, goal, met?"""
    from rich.markup import escape

    from pyzram.tools.bench.table import format_value as num

    t = Table(
        title=f"pyzram bench ({report.plan}), {report.algorithm}, {report.date}, "
        f"{report.machine}; corpus: {report.corpus}; {report.seconds:.0f} s",
        show_lines=False,
    )
    for c, j in (
        ("row", "left"),
        ("ours", "right"),
        ("reference (what)", "left"),
        ("ratio", "right"),
        ("goal", "left"),
        ("met?", "left"),
    ):
        t.add_column(c, justify=j, overflow="fold")
    for r in report.rows:
        name = escape(r.name) + (f" [dim]({escape(r.note)})[/dim]" if r.note else "")
        if r.skipped:
            skip = f"skipped: {escape(r.skipped)}"
            t.add_row(name, num(r.ours, r.ours_unit), skip, "-", "-", "-")
            continue
        ref = f"{num(r.reference, r.ours_unit)} ({escape(r.reference_what)})"
        met = "-" if r.met is None else "[green]yes[/green]" if r.met else "[red]no[/red]"
        goal = r.goal_text or "-"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        t.add_row(name, num(r.ours, r.ours_unit), ref, ratio, goal, met)
    return t


def zram_command(
    pagefile: PageFileArg = None,
    algo: Annotated[list[str] | None, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = None,
    bs: Annotated[
        list[int] | None, typer.Option(help="request size in bytes (multiple of 4096)")
    ] = None,
    repeat: Annotated[int, typer.Option(help="best of N runs")] = 3,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    no_kernel: Annotated[bool, typer.Option("--no-kernel", help="skip the host kernel")] = False,
    as_json: JsonOpt = False,
) -> None:
    """pwrite/pread pages/s through Zram, beside the host kernel's zram (O_DIRECT)."""
    from pyzram.tools.bench.device import bench_zram as run

    for a in algo or []:
        check_algorithm(a)
    for b in bs or []:
        if b <= 0 or b % 4096:
            raise UsageError("--bs", f"must be a positive multiple of 4096, not {b}")
    check_count("--repeat", repeat, 1)
    pages = load_pages(pagefile, limit)
    rows = run(pages, algo or ["lzo-rle", "lz4"], bs or [4096, 131072], repeat, not no_kernel)
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    t = Table(title=f"zram throughput, {len(pages)} pages, best of {repeat}")
    for c in ("target", "algorithm", "bs", "write pages/s", "read pages/s"):
        t.add_column(c, justify="right" if c not in ("target", "algorithm") else "left")
    for r in rows:
        t.add_row(
            r.target, r.algorithm, str(r.bs), f"{r.write_pages_s:,.0f}", f"{r.read_pages_s:,.0f}"
        )
    console.print(t)


def codecs_command(
    pagefile: PageFileArg = None,
    repeat: Annotated[int, typer.Option(help="best of N runs")] = 5,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    no_kernel: Annotated[bool, typer.Option("--no-kernel", help="skip the host kernel")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Codec pages/s: our batch C codecs, python-lz4/python-lzo loops, the host's zram."""
    from pyzram.tools.bench.device import bench_codecs as run

    check_count("--repeat", repeat, 1)
    pages = load_pages(pagefile, limit)
    rows = run(pages, repeat, not no_kernel)
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    t = Table(title=f"codecs on {len(pages)} pages, best of {repeat}")
    t.add_column("what")
    t.add_column("compress pages/s", justify="right")
    t.add_column("decompress pages/s", justify="right")
    for r in rows:
        t.add_row(
            r.what,
            "-" if r.compress_pages_s is None else f"{r.compress_pages_s:,.0f}",
            "-" if r.decompress_pages_s is None else f"{r.decompress_pages_s:,.0f}",
        )
    console.print(t)


def swap_command(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    repeat: Annotated[int, typer.Option(help="best of N runs")] = 3,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Swap-out and swap-in pages/s: zram's swap_ops path vs the bio path."""
    from pyzram.tools.bench.device import bench_swap as run

    check_algorithm(algo)
    check_count("--repeat", repeat, 1)
    pages = load_pages(pagefile, limit)
    rows = run(pages, algo, repeat)
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    t = Table(title=f"swap on zram ({algo}), {len(pages)} pages, best of {repeat}")
    cols = (
        "path",
        "swap-out pages/s",
        "swap-in pages/s (32/batch)",
        "swap-in pages/s (fault)",
        "write batches",
        "read batches",
        "bios",
        "intact",
        "µs/page beyond codec",
    )
    for c in cols:
        t.add_column(c, justify="left" if c in ("path", "intact") else "right")
    for r in rows:
        t.add_row(
            r.path,
            f"{r.swapout_pages_s:,.0f}",
            f"{r.swapin_batched_pages_s:,.0f}",
            f"{r.swapin_fault_pages_s:,.0f}",
            str(r.write_batches),
            str(r.read_batches),
            str(r.bios),
            "yes" if r.intact else "NO",
            f"{r.py_us_per_page_beyond_codec:.1f}",
        )
    console.print(t)
    ops, bio = rows
    console.print(
        f"swap_ops / bio swap-out: {ops.swapout_pages_s / bio.swapout_pages_s:.2f}x, "
        f"swap-in: {ops.swapin_batched_pages_s / bio.swapin_batched_pages_s:.2f}x"
    )


def nbd_command(
    runtime: Annotated[float, typer.Option(help="seconds per fio job")] = 5.0,
    iodepth: Annotated[int, typer.Option(help="requests in flight for the 4 KiB jobs")] = 16,
    size: Annotated[str, typer.Option(help="export size of both servers")] = "256M",
    region: Annotated[str, typer.Option(help="bytes of the export fio uses")] = "128M",
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    compress: Annotated[int, typer.Option(help="fio buffer_compress_percentage")] = 50,
    repeat: Annotated[int, typer.Option(help="alternate the servers N times, keep the best")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="pyzram serve --threads (default: its own)")
    ] = None,
    no_nbdkit: Annotated[bool, typer.Option("--no-nbdkit", help="skip nbdkit")] = False,
    loop: Annotated[str, typer.Option(help="pyzram serve's event loop: uvloop or asyncio")] = (
        "uvloop"
    ),
    as_json: JsonOpt = False,
) -> None:
    """fio (nbd engine) IOPS and MB/s: pyzram serve vs nbdkit memory allocator=zstd."""
    from pyzram.nbd.bench import bench_nbd as run
    from pyzram.nbd.server import LOOPS

    check_algorithm(algo)
    if loop not in LOOPS:
        raise UsageError("--loop", f"must be one of {', '.join(LOOPS)}, not {loop!r}")

    def progress(text: str) -> None:
        if not as_json:
            console.print(f"[dim]{text}[/dim]")

    rows, extra = run(
        size=size,
        region=region,
        runtime=runtime,
        iodepth=iodepth,
        algorithm=algo,
        compress=compress,
        repeat=repeat,
        threads=threads,
        nbdkit=not no_nbdkit,
        loop=loop,
        progress=progress,
    )
    if as_json:
        print(json.dumps({"rows": [r.as_dict() for r in rows], **extra}, indent=2))
        return
    t = Table(title=f"fio over NBD, {runtime:g} s a job, best of {repeat}")
    for c in ("target", "job", "bs", "iodepth", "IOPS", "MB/s", "server CPU µs/req"):
        t.add_column(c, justify="left" if c in ("target", "job") else "right")
    for r in rows:
        cpu = "-" if r.server_cpu_us is None else f"{r.server_cpu_us:,.1f}"
        t.add_row(r.target, r.job, r.bs, str(r.iodepth), f"{r.iops:,.0f}", f"{r.mb_s:,.1f}", cpu)
    console.print(t)
    targets = list(dict.fromkeys(r.target for r in rows))
    if len(targets) == 2:
        ours = {r.job: r for r in rows if r.target == targets[0]}
        theirs = {r.job: r for r in rows if r.target == targets[1]}
        console.print(
            "pyzram / nbdkit: "
            + ", ".join(f"{j} {ours[j].iops / theirs[j].iops:.2f}x" for j in ours if theirs[j].iops)
        )
    if "pyzram_mm_stat" in extra:
        console.print(f"pyzram mm_stat: {extra['pyzram_mm_stat'].rstrip()}", soft_wrap=True)


def run_command(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    mem_limit: MemLimitOpt = None,
    disksize: DisksizeOpt = None,
    io_path: Annotated[str, typer.Option(help="pyzram's path: swap_ops or bio")] = "swap_ops",
    pattern: PatternOpt = "zipf",
    accesses: Annotated[int | None, typer.Option(help="accesses after the fill (2x pages)")] = None,
    write_ratio: Annotated[float, typer.Option(help="share of accesses that write")] = 0.1,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    mix: MixOpt = None,
    folio_order: FolioOrderOpt = 0,
    tlb_entries: TlbEntriesOpt = TLB_ENTRIES,
    tlb_2m_entries: Tlb2mEntriesOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds the kernel-side child may take")] = 600,
    repeat: Annotated[int, typer.Option(help="runs of each side, the fastest kept")] = 3,
    zswap: ZswapOpt = False,
    zswap_compressor: ZswapCompressorOpt = "lzo",
    zswap_max_pool_percent: ZswapPoolOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The same workload on the host kernel (memcg limit, swap on a hot_added zram) and in
    pyzram: swapped pages/s of each and their ratio (needs root, zram-control, cgroup v1);
    with ``--zswap``, zswap in front of the area on both sides, and its counters side by side.
    Each side runs ``--repeat`` times; its fastest run is the one reported."""
    from pyzram.host.kernel_swap import bench_run as run
    from pyzram.tools.commands.run import zswap_kwargs

    # The workload itself (no device policy: the kernel side has no backing device).
    workload = ("algorithm", "mem_limit_pages", "disksize", "pattern", "accesses")
    workload += ("write_ratio", "seed", "folio_order")
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
        tlb_entries=tlb_entries,
        tlb_2m_entries=tlb_2m_entries,
    )
    kw = {k: v for k, v in kw.items() if k in workload}
    if io_path not in ("swap_ops", "bio"):
        raise UsageError("--io-path", f"must be swap_ops or bio, not {io_path!r}")
    check_count("--repeat", repeat, 1)
    zkw = zswap_kwargs(zswap, zswap_compressor, zswap_max_pool_percent, None)
    pages, source = workload_pages(pagefile, limit, mix, seed)
    err = Console(stderr=True)
    with err.status("pyzram bench run") as status:
        res = run(
            pages,
            io_path=io_path,
            source=source,
            timeout=timeout,
            progress=lambda msg: status.update(f"pyzram bench run: {msg}"),
            tlb_entries=tlb_entries,
            tlb_2m_entries=tlb_2m_entries,
            repeat=repeat,
            **kw,
            **zkw,
        )
    if as_json:
        print(json.dumps(res.as_dict(), indent=2))
    else:
        k, o = res.kernel, res.pyzram
        t = Table(
            title=f"swap on zram ({k.algorithm}), {source}: {k.pages:,} pages, "
            f"{k.accesses:,} accesses, limit {k.mem_limit_pages:,} pages, folio order "
            f"{k.folio_order}; the fastest of {repeat} runs of each"
        )
        for c in ("target", "pswpout", "pswpin", "major faults", "seconds", "swapped pages/s"):
            t.add_column(c, justify="left" if c == "target" else "right")
        t.add_column("intact")
        for name, vm, secs, rate, ok in (
            ("kernel", k.vmstat, k.seconds, k.swapped_pages_s, k.intact),
            ("pyzram", o.vmstat, o.seconds, o.swapped_pages_s, o.intact),
        ):
            t.add_row(
                name,
                f"{vm.get('pswpout', 0):,}",
                f"{vm.get('pswpin', 0):,}",
                f"{vm.get('pgmajfault', 0):,}",
                f"{secs:.3f}",
                f"{rate:,.0f}",
                "yes" if ok else "[red]NO[/red]",
            )
        console.print(t)
        print_kernel_line("kernel", f"Linux {k.kernel_release}, {k.device}")
        tlb = f"a TLB of {o.tlb_entries:,} entries"
        if o.tlb_2m_entries is not None:
            tlb += f" and {o.tlb_2m_entries:,} for 2 MiB mappings"
        print_kernel_line("pyzram", f"the {o.io_path} path, {tlb}")
        ratio = "-" if res.ratio is None else f"{res.ratio:.2f}x"
        goal = "met" if res.ratio is not None and res.ratio >= 1 else "not met"
        console.print(f"pyzram / kernel swapped pages/s: {ratio} (goal >= 1x: {goal})")
        pred, meas, swap = o.predicted_kernel_cpu_s, k.system_seconds, res.swap_system_seconds
        share = f" ({pred / swap:.0%} of it)" if swap and swap > 0 else ""
        console.print(
            f"kernel CPU of the swapping: measured {swap * 1e3:,.0f} ms (the child's system "
            f"time, {meas * 1e3:,.0f} ms, less {res.baseline_system_seconds * 1e3:,.0f} ms "
            f"with no memory limit); pyzram predicts {pred * 1e3:,.1f} ms (codec + major "
            f"faults){share}",
            soft_wrap=True,
        )
        console.print(f"kernel mm_stat: {k.mm_stat.rstrip()}", soft_wrap=True)
        console.print(f"pyzram mm_stat: {o.mm_stat.rstrip()}", soft_wrap=True)
        dev = res.zswap_deviation()
        if dev is not None:
            zt = Table(title=f"zswap ({k.zswap['parameters']['compressor']}) in front of the area")
            for c in ("counter", "kernel", "pyzram", "deviation"):
                zt.add_column(c, justify="left" if c == "counter" else "right")
            for name, d in dev.items():
                pct = "-" if d["deviation"] is None else f"{100 * d['deviation']:+.2f} %"
                zt.add_row(name, f"{d['kernel']:,}", f"{d['pyzram']:,}", pct)
            console.print(zt)
    if not (res.kernel.intact and res.pyzram.intact):
        raise typer.Exit(1)


def sweep_command(
    limit: Annotated[int, typer.Option(help="pages of each cell (the standard mix)")] = SWEEP_PAGES,
    as_json: JsonOpt = False,
) -> None:
    """pyzram sweep on a local Dask cluster: 16 cells on 2 workers against 1, each cell
    against the same run alone, and the scheduler's overhead per cell."""
    from pyzram.tools.bench.sweep import bench_sweep

    check_count("--limit", limit, 64)
    err = Console(stderr=True)
    with err.status("pyzram bench sweep") as status:
        res = bench_sweep(limit, progress=lambda m: status.update(f"pyzram bench sweep: {m}"))
    if as_json:
        print(json.dumps(res, indent=2))
        return
    from pyzram.tools.bench.table import format_value as num

    t = Table(
        title=f"pyzram sweep, {res['cells']} cells, {res['cpus']} CPUs, load average "
        f"{res['loadavg_before'][0]:.2f} before, {res['loadavg_after'][0]:.2f} after, CPU "
        f"pressure {res['cpu_pressure_before']} % before, {res['cpu_pressure_after']} % after"
    )
    for c in ("row", "ours", "reference", "ratio", "goal", "met?"):
        t.add_column(c, justify="right" if c in ("ours", "ratio") else "left", overflow="fold")
    for r in res["rows"]:
        met = "-" if r["met"] is None else "[green]yes[/green]" if r["met"] else "[red]no[/red]"
        t.add_row(
            r["name"],
            num(r["ours"], r["ours_unit"]),
            f"{num(r['reference'], r['ours_unit'])} ({r['reference_what']})",
            f"{r['ratio']:.2f}x",
            r["goal_text"] or "-",
            met,
        )
    console.print(t)
    console.print(
        f"alone {res['alone_s']:.1f} s, 1 worker {res['one_worker_s']:.1f} s, "
        f"2 workers {res['two_workers_s']:.1f} s"
    )
