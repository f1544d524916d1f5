"""The ``pyzram`` command (also ``python -m pyzram``).

Every command that takes pages reads a page file (raw concatenated 4096-byte
pages, as ``pyzram snapshot`` writes) or, without one, the embedded default
corpus (``pyzram.workload.pages.default_corpus``).  Errors print one line,
``pyzram: error: ...``, and exit non-zero; never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pyzram.config import ZramConfig
from pyzram.zram.stat import MmStat

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The Linux swap I/O path and zram, modelled in Python to the byte.",
)
bench_app = typer.Typer(
    invoke_without_command=True,
    help="Throughput figures (see README); with no subcommand, every figure in one table.",
)
app.add_typer(bench_app, name="bench")
console = Console()

ALGO_HELP = (
    "zram backend: lzo-rle (default), lzo, lz4, lz4hc (pyzram's kernel-identical C codecs), "
    "zstd, deflate (library codecs: the kernel's format and, on the pages checked, its sizes)"
)
PageFileArg = Annotated[
    Path | None,
    typer.Argument(help="page file (raw 4096-byte pages); default: the embedded corpus"),
]


def _load_pages(path: Path | None, limit: int | None = None):
    from pyzram.workload.pages import default_corpus, read_page_file

    pages = default_corpus() if path is None else read_page_file(path)
    if limit is not None:
        pages = pages[:limit]
    if len(pages) == 0:
        raise ValueError("no pages to process")
    return pages


def _mm_table(title: str, columns: list[str], rows: list[tuple[str, ...]]) -> Table:
    t = Table(title=title)
    t.add_column("field")
    for c in columns:
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(*r)
    return t


@app.command()
def store(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algo", "-a", help=ALGO_HELP)] = "lzo-rle",
    chain: Annotated[int, typer.Option(help="CONFIG_ZSMALLOC_CHAIN_SIZE (4..16)")] = 8,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """What zram would do with these pages: mm_stat, ratios, same/huge pages."""
    from pyzram.zram.zram_drv import PAGE_SIZE, Zram

    pages = _load_pages(pagefile, limit)
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
    t = _mm_table(f"zram ({algo}) storing {len(pages)} pages of {src}", ["value"], [])
    for name, v in mm._asdict().items():
        t.add_row(name, f"{v:,}")
    console.print(t)
    console.print(f"mm_stat: {text.rstrip()}")
    for key in ("ratio_orig_to_compr", "ratio_orig_to_mem_used", "zsmalloc_overhead"):
        if summary[key] is not None:
            console.print(f"{key}: {summary[key]:.3f}")


@app.command()
def validate(
    pagefile: PageFileArg = None,
    algo: Annotated[
        list[str] | None,
        typer.Option("--algo", "-a", help="algorithm(s); default: all the host has"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    kernel: Annotated[
        str,
        typer.Option(
            help="host: the running kernel's zram (hot_add); vm: Debian's 6.18 kernel under "
            "qemu, every backend it has, algorithm_params levels, a zstd dictionary and "
            "writeback, idle ages, bd_stat, writeback_limit, mem_limit, compact"
        ),
    ] = "host",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The same pages through pyzram and a real kernel's zram: mm_stat must be equal."""
    from pyzram.validate import validate as run

    if kernel not in ("host", "vm"):
        raise ValueError(f"--kernel must be host or vm, not {kernel!r}")
    pages = _load_pages(pagefile, limit)
    results = run(pages, algo, kernel=kernel)
    if as_json:
        out = [
            {
                "algorithm": r.algorithm,
                "pages": r.pages,
                "equal": r.equal,
                "read_back_equal": r.read_back_equal,
                "io_stat_equal": r.io_stat_equal,
                "steps": [
                    {
                        "step": s.step,
                        "equal": s.equal,
                        "pyzram": s.ours._asdict(),
                        "kernel": s.kernel._asdict(),
                    }
                    for s in r.steps
                ],
            }
            for r in results
        ]
        for d, r in zip(out, results, strict=True):
            if r.checks:
                d["kernel"] = r.kernel_name
                d["checks"] = [
                    {"step": c.step, "what": c.what, "pyzram": c.ours, "kernel": c.kernel}
                    for c in r.checks
                ]
        print(json.dumps(out, indent=2))
    else:
        for r in results:
            t = Table(title=f"{r.algorithm}: {r.pages} pages, mm_stat of pyzram (= kernel)")
            t.add_column("field")
            for s in r.steps:
                t.add_column(s.step, justify="right")
            for i, name in enumerate(MmStat._fields):
                cells = []
                for s in r.steps:
                    a, b = s.ours[i], s.kernel[i]
                    cells.append(f"{a}" if a == b else f"[red]{a} (kernel {b})[/red]")
                t.add_row(name, *cells)
            t.add_row("equal", *("yes" if s.equal else "[red]NO[/red]" for s in r.steps))
            console.print(t)
            console.print(
                f"read-back equal: {'yes' if r.read_back_equal else 'NO'}; "
                f"io_stat equal: {'yes' if r.io_stat_equal else 'NO'}"
            )
            if r.checks:
                same = sum(c.equal for c in r.checks)
                console.print(
                    f"{same} of {len(r.checks)} write outcomes and sysfs texts "
                    "(bd_stat, io_stat, writeback_limit, debug_stat) equal"
                )
                for c in r.checks:
                    if not c.equal:
                        console.print(
                            f"[red]{c.step}: {c.what}: pyzram {c.ours!r}, kernel {c.kernel!r}[/red]"
                        )
        ok = sum(r.equal for r in results)
        what = "scenarios" if kernel == "vm" else "algorithms"
        against = results[0].kernel_name if kernel == "vm" and results else "the kernel"
        console.print(f"{ok} of {len(results)} {what} equal {against} in every field")
    if not all(r.equal for r in results):
        raise typer.Exit(1)


@app.command()
def snapshot(
    pid: Annotated[int | None, typer.Argument(help="the running process to capture")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="page file to write")] = Path(
        "snapshot.pages"
    ),
    spawn: Annotated[
        str | None, typer.Option(help="instead of PID: start a sample workload (python, sqlite)")
    ] = None,
) -> None:
    """Capture a live process's resident anonymous memory as a page file."""
    from rich.progress import Progress

    from pyzram.workload.pages import capture, snapshot_process, write_page_file

    if (pid is None) == (spawn is None):
        raise ValueError("give exactly one of PID or --spawn")
    if pid is not None:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"reading pid {pid}", total=None)
            pages = snapshot_process(
                pid, progress=lambda d, t: bar.update(task, completed=d, total=t)
            )
    else:
        pages = capture(spawn)
    write_page_file(output, pages)
    console.print(f"wrote {len(pages)} pages ({len(pages) * 4096 / 2**20:.1f} MiB) to {output}")


def _run_kwargs(
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


def _workload_pages(pagefile: Path | None, limit: int | None, mix: str | None, seed: int):
    """The workload's page source and its description: the page file, the embedded
    corpus, or (``--mix``) ``limit`` (default 4096) seeded synthetic pages of that mix."""
    if mix is None:
        pages = _load_pages(pagefile, limit)
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


def _report_table(reports) -> Table:
    """The run's figures, one column per report (``run``: one; ``compare``: two)."""
    t = Table(title=f"swap on zram: {reports[0].source}" if reports[0].source else "swap on zram")
    t.add_column("")
    for r in reports:
        t.add_column(r.io_path, justify="right")
    rows = [
        ("pages / accesses", lambda r: f"{r.pages:,} / {r.accesses:,}"),
        ("mem limit (pages)", lambda r: f"{r.mem_limit_pages:,}"),
        (
            "pswpout / pswpin",
            lambda r: f"{r.vmstat.get('pswpout', 0):,} / {r.vmstat.get('pswpin', 0):,}",
        ),
        (
            "write / read batches",
            lambda r: f"{r.vmstat.get('nrswpout', 0):,} / {r.vmstat.get('nrswpin', 0):,}",
        ),
        ("bios", lambda r: f"{r.bios:,}"),
        ("major faults", lambda r: f"{r.vmstat.get('pgmajfault', 0):,}"),
        (
            "compression ratio",
            lambda r: f"{r.compression_ratio:.2f}" if r.compression_ratio else "-",
        ),
        ("memory saved", lambda r: f"{r.memory_saved_bytes / 2**20:.1f} MiB"),
        ("swapped pages/s (fill + pattern)", lambda r: f"{r.swapped_pages_s:,.0f}"),
        ("swap-out pages/s (device path)", lambda r: f"{r.swapout_pages_s:,.0f}"),
        ("swap-in pages/s (device path)", lambda r: f"{r.swapin_pages_s:,.0f}"),
        ("write batch p50/p99 µs", lambda r: _p(r.write_batch_latency_us)),
        ("read batch p50/p99 µs", lambda r: _p(r.read_batch_latency_us)),
    ]
    if any(r.folio_order for r in reports):
        rows += [
            ("folio order", lambda r: f"{r.folio_order} ({4 << r.folio_order} KiB)"),
            (
                "thp_swpout / thp_swpout_fallback",
                lambda r: (
                    f"{r.vmstat.get('thp_swpout', 0):,} / "
                    f"{r.vmstat.get('thp_swpout_fallback', 0):,}"
                ),
            ),
            ("mTHP swpout / swpout_fallback / swpin", _mthp_cell),
        ]
    if any(r.post_processing for r in reports):
        rows += [
            ("post-processing steps", lambda r: f"{len(r.post_processing):,}"),
            (
                "written back / recompressed pages",
                lambda r: f"{r.written_back_pages:,} / {r.recompressed_pages:,}",
            ),
        ]
    rows += [
        ("seconds", lambda r: f"{r.seconds:.2f}"),
        ("intact", lambda r: "yes" if r.intact else "[red]NO[/red]"),
    ]
    for name, fmt in rows:
        t.add_row(name, *(fmt(r) for r in reports))
    return t


def _mthp_cell(r) -> str:
    from pyzram.mm.vmscan import mthp_size_name

    stats = r.mthp.get(mthp_size_name(r.folio_order), {})
    return " / ".join(f"{stats.get(k, 0):,}" for k in ("swpout", "swpout_fallback", "swpin"))


def _p(lat: dict) -> str:
    return f"{lat['p50']:.0f} / {lat['p99']:.0f}" if lat else "-"


def _print_report_details(report) -> None:
    """The device's kernel-format lines, the vmstat deltas, the mTHP stats and the
    post-processing steps of one run, as text."""
    console.print(f"mm_stat: {report.mm_stat.rstrip()}", soft_wrap=True)
    console.print(f"io_stat: {report.io_stat.rstrip()}", soft_wrap=True)
    if report.bd_stat:
        console.print(f"bd_stat: {report.bd_stat.rstrip()}", soft_wrap=True)
    console.print(
        "vmstat deltas: " + ", ".join(f"{k} {v:,}" for k, v in report.vmstat.items()),
        soft_wrap=True,
    )
    for size, stats in report.mthp.items():
        console.print(
            f"{size}/stats: " + ", ".join(f"{k} {v:,}" for k, v in stats.items()), soft_wrap=True
        )
    if report.post_processing:
        console.print(_pp_summary(report.post_processing), soft_wrap=True)


def _pp_summary(events: list[dict]) -> str:
    """One line for the run's post-processing steps (each step is in ``--json``)."""
    parts = []
    for what in ("recompress", "writeback"):
        steps = [ev[what] for ev in events if what in ev]
        if not steps:
            continue
        errors = sorted({st["error"] for st in steps if "error" in st})
        pages = sum(st["pages"] for st in steps)
        err = f" (errors: {', '.join(errors)})" if errors else ""
        parts.append(f"{what} {steps[0]['request']!r} {pages:,} pages{err}")
    when = ", ".join(f"{ev['reclaim_batches']:,}" for ev in events[:5])
    more = f" ... ({len(events)} steps)" if len(events) > 5 else ""
    return f"post-processing at reclaim batch {when}{more}: " + "; ".join(parts)


@app.command()
def run(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algorithm", "-a", help=ALGO_HELP)] = "lzo-rle",
    mem_limit: MemLimitOpt = None,
    disksize: DisksizeOpt = None,
    io_path: Annotated[str, typer.Option(help="swap_ops (the seed) or bio")] = "swap_ops",
    backing_dev: Annotated[Path | None, typer.Option(help="a file as zram's backing_dev")] = None,
    pattern: PatternOpt = "zipf",
    accesses: Annotated[int | None, typer.Option(help="accesses after the fill (2x pages)")] = None,
    write_ratio: Annotated[float, typer.Option(help="share of accesses that write")] = 0.1,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    mix: MixOpt = None,
    folio_order: FolioOrderOpt = 0,
    mthp_swapin: MthpSwapinOpt = True,
    writeback: Annotated[
        str | None,
        typer.Option(help="write back to --backing-dev: idle, huge, huge_idle or incompressible"),
    ] = None,
    recompress_algo: Annotated[
        str | None, typer.Option(help="secondary algorithm (recomp_algorithm algo=ALGO)")
    ] = None,
    recompress: Annotated[
        str | None,
        typer.Option(
            help="recompress request, e.g. 'type=idle threshold=1000' (default with "
            "--recompress-algo: type=idle)"
        ),
    ] = None,
    idle_age: Annotated[
        str,
        typer.Option(help="written to idle before an idle writeback/recompress: all or SECONDS"),
    ] = "all",
    pp_every: Annotated[
        int,
        typer.Option(
            help="post-process every N reclaim batches (0: once, after the access pattern)"
        ),
    ] = 0,
    plot: Annotated[
        Path | None, typer.Option(help="write a PNG time series (pool, ratio, swap rates)")
    ] = None,
    save_state: Annotated[
        Path | None, typer.Option(help="save the device's state for `pyzram ctl`")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The main job: a workload under a memory limit swapping to zram, and its report."""
    from rich.progress import Progress

    from pyzram.run import run_workload

    kw = _run_kwargs(
        algo,
        mem_limit,
        disksize,
        pattern,
        accesses,
        write_ratio,
        seed,
        backing_dev,
        folio_order=folio_order,
        mthp_swapin=mthp_swapin,
        writeback=writeback,
        idle_age=idle_age,
        pp_every=pp_every,
        recompress_algo=recompress_algo,
        recompress=recompress,
    )
    pages, source = _workload_pages(pagefile, limit, mix, seed)
    if as_json:
        report = run_workload(pages, io_path=io_path, source=source, **kw)
        print(json.dumps(report.as_dict(), indent=2))
    else:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("running", total=None)
            report = run_workload(
                pages,
                io_path=io_path,
                source=source,
                progress=lambda d, t: bar.update(task, completed=d, total=t),
                **kw,
            )
        console.print(_report_table([report]))
        _print_report_details(report)
    if save_state is not None:
        from pyzram.ctl import save_state as save

        save(save_state, [report.device])
    if plot is not None:
        from pyzram.plot import plot_run

        plot_run(report, plot)
        if not as_json:
            console.print(f"plot: {plot}")
    if not report.intact:
        raise typer.Exit(1)


@app.command()
def compare(
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
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The same workload through zram's swap_ops path and through the bio path."""
    from pyzram.run import run_workload

    kw = _run_kwargs(
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
    pages, source = _workload_pages(pagefile, limit, mix, seed)
    ops = run_workload(pages, io_path="swap_ops", source=source, **kw)
    bio = run_workload(pages, io_path="bio", source=source, **kw)
    speedup = bio.seconds / ops.seconds if ops.seconds else None
    if as_json:
        out = {
            r.io_path: {**r.as_dict(), "speedup": speedup if r is ops else 1.0} for r in (ops, bio)
        }
        print(json.dumps(out, indent=2))
    else:
        console.print(_report_table([ops, bio]))
        console.print(f"speedup of swap_ops over bio (fill + pattern): {speedup:.2f}x")
    if not (ops.intact and bio.intact):
        raise typer.Exit(1)


@app.command()
def ctl(
    state: Annotated[
        Path | None,
        typer.Argument(help="a state file from `pyzram run --save-state`; default: host devices"),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="columns, e.g. NAME,DATA (+LIST appends)")
    ] = None,
    output_all: Annotated[bool, typer.Option("--output-all", help="all columns")] = False,
    bytes_: Annotated[bool, typer.Option("--bytes", "-b", help="sizes in bytes")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="raw output, no alignment")] = False,
    noheadings: Annotated[bool, typer.Option("--noheadings", "-n", help="no header")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    socket: Annotated[
        Path | None,
        typer.Option("--socket", help="a running `pyzram serve` (its NBD or .ctl socket)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="with --socket: export or zramN to read/write")
    ] = None,
    read: Annotated[
        list[str] | None, typer.Option("--read", help="with --socket: print sysfs attribute ATTR")
    ] = None,
    write: Annotated[
        list[str] | None,
        typer.Option("--write", help="with --socket: write ATTR=VALUE (before any --read)"),
    ] = None,
) -> None:
    """zramctl's listing (same columns and options) for saved, served or host devices."""
    import glob
    import os

    from pyzram import ctl as c

    if socket is not None:
        from pyzram.nbd.control import ctl_socket

        text = ctl_socket(
            socket,
            device=device,
            reads=read or [],
            writes=write or [],
            columns=c.parse_columns(output, output_all),
            bytes_=bytes_,
            raw=raw,
            noheadings=noheadings,
            as_json=as_json,
        )
        if text:
            print(text, end="" if text.endswith("\n") else "\n")
        return
    if device is not None or read or write:
        raise ValueError("--device, --read and --write need --socket")
    if state is not None:
        states = c.load_state(state)
    else:  # the host's zram devices, read-only
        names = sorted(os.path.basename(p) for p in glob.glob("/sys/block/zram*"))
        states = [c.host_device_state(n) for n in names]
    cols = c.parse_columns(output, output_all)
    if as_json:
        print(c.format_json(states, cols, bytes_=bytes_))
    else:
        text = c.format_table(states, cols, bytes_=bytes_, raw=raw, noheadings=noheadings)
        if text:
            print(text, end="" if text.endswith("\n") else "\n")


@app.command()
def serve(
    socket: Annotated[
        Path | None, typer.Option("--socket", help="listen on this Unix socket")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="listen on TCP PORT of --bind (0: any free port)"),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option("--size", help="serve one device of this disksize as the default export"),
    ] = None,
    algo: Annotated[
        str | None, typer.Option("--algorithm", "-a", help="with --size: " + ALGO_HELP)
    ] = None,
    backing_dev: Annotated[
        Path | None, typer.Option("--backing-dev", help="with --size: a file as zram's backing_dev")
    ] = None,
    export: Annotated[
        list[str] | None,
        typer.Option(
            "--export",
            help="NAME:size=SIZE[,key=value...], repeatable, one device each; keys: "
            "algorithm, backing_dev, mem_limit, description, other sysfs attributes",
        ),
    ] = None,
    ctl_socket: Annotated[
        Path | None, typer.Option("--ctl", help="control socket (default: SOCKET.ctl)")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="threads serving connections, and for large requests (min(4, CPUs))"),
    ] = None,
    loop: Annotated[
        str, typer.Option(help="event loop: uvloop (libuv, the default) or asyncio (stdlib)")
    ] = "uvloop",
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            help="with --port: the address to listen on; beyond loopback "
            "(127.0.0.0/8, ::1) it needs --tls require",
        ),
    ] = "127.0.0.1",
    tls: Annotated[
        str | None,
        typer.Option(
            "--tls",
            help="off, on (NBD_OPT_STARTTLS offered) or require (nothing but STARTTLS "
            "before TLS); default: require with --tls-certificates, else off",
        ),
    ] = None,
    tls_certificates: Annotated[
        Path | None,
        typer.Option(
            "--tls-certificates",
            help="X.509 directory: server-cert.pem, server-key.pem (and ca-cert.pem "
            "for --tls-verify-peer), as nbdkit and qemu's tls-creds-x509 use",
        ),
    ] = None,
    tls_verify_peer: Annotated[
        bool,
        typer.Option(
            "--tls-verify-peer", help="clients must present a certificate signed by ca-cert.pem"
        ),
    ] = False,
    max_connections: Annotated[
        int, typer.Option(help="connections served at once; more are closed at once")
    ] = 64,
    handshake_timeout: Annotated[
        float,
        typer.Option(help="seconds a client may take to choose an export (0: no limit)"),
    ] = 10.0,
    max_block_size: Annotated[
        str,
        typer.Option(
            help="largest request (NBD_INFO_BLOCK_SIZE maximum); a READ over it is "
            "EINVAL (EOVERFLOW with DF), a WRITE over it EINVAL"
        ),
    ] = "32M",
    max_inflight: Annotated[
        int, typer.Option(help="requests one connection may have in flight before it is not read")
    ] = 64,
    max_inflight_bytes: Annotated[
        str,
        typer.Option(
            help="bytes of READ/WRITE data (and BLOCK_STATUS replies) one connection may have "
            "in flight before it is not read"
        ),
    ] = "8M",
    send_buffer: Annotated[
        str,
        typer.Option(help="unsent reply bytes of one connection past which it is not read"),
    ] = "2M",
) -> None:
    """Serve pyzram devices over NBD (nbdcopy, qemu-img, fio ... can use them) until SIGINT.

    Every bound on what a client can make the server hold is an option: one
    connection holds at most about its 256 KiB input buffer,
    --max-inflight-bytes, --send-buffer and two 1 MiB pieces of a large
    request (READs and WRITEs over 1 MiB are streamed in pieces): about
    13 MiB at the defaults. TLS, once required, is required on every
    listener, the Unix socket included.
    """
    from pyzram.nbd.control import control_path
    from pyzram.nbd.export import ExportSpec, parse_export_spec
    from pyzram.nbd.limits import Limits, parse_size
    from pyzram.nbd.server import serve as run_server
    from pyzram.nbd.tls import TLS_MODES, TlsConfig, server_context

    limits = Limits(
        max_block_size=parse_size(max_block_size, "--max-block-size"),
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        max_inflight=max_inflight,
        max_inflight_bytes=parse_size(max_inflight_bytes, "--max-inflight-bytes"),
        send_buffer=parse_size(send_buffer, "--send-buffer"),
    )
    if port is None and bind != "127.0.0.1":
        raise ValueError("--bind goes with --port (it is the TCP address)")
    mode = tls if tls is not None else ("require" if tls_certificates is not None else "off")
    if mode not in TLS_MODES:
        raise ValueError(f"--tls {mode!r}: expected one of {', '.join(TLS_MODES)}")
    tls_config = None
    if mode != "off":
        context = server_context(tls_certificates, verify_peer=tls_verify_peer)
        tls_config = TlsConfig(context, require=mode == "require")
    elif tls_certificates is not None or tls_verify_peer:
        raise ValueError("--tls off: --tls-certificates and --tls-verify-peer need TLS on")

    specs = []
    if size is not None:
        attrs = {"disksize": size}
        if algo is not None:
            attrs["comp_algorithm"] = algo
        if backing_dev is not None:
            attrs["backing_dev"] = str(backing_dev)
        specs.append(ExportSpec("", attrs))
    elif algo is not None or backing_dev is not None:
        raise ValueError("--algorithm and --backing-dev go with --size (or use --export)")
    specs += [parse_export_spec(text) for text in export or []]
    ctl_path = ctl_socket if ctl_socket is not None else socket and control_path(socket)
    run_server(
        specs,
        socket_path=str(socket) if socket is not None else None,
        port=port,
        ctl_path=str(ctl_path) if ctl_path is not None else None,
        threads=threads,
        loop=loop,
        host=bind,
        limits=limits,
        tls=tls_config,
    )


def _runs(schedule: list[str]) -> str:
    """``["R","R","W"]`` -> ``"R×2 → W"``."""
    out: list[str] = []
    for name in schedule:
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + 1)
        else:
            out.append((name, 1))
    return " → ".join(n if c == 1 else f"{n}×{c}" for n, c in out)


@app.command()
def explore(
    scenario: Annotated[
        str | None, typer.Option(help="one scenario (default: all); see --list")
    ] = None,
    variant: Annotated[str | None, typer.Option(help="one variant of it (default: all)")] = None,
    seed: Annotated[
        int | None, typer.Option(help="sample schedules with this seed (default: enumerate)")
    ] = None,
    max_schedules: Annotated[int, typer.Option(help="bound on schedules per scenario")] = 2000,
    preemption_bound: Annotated[
        int, typer.Option(help="most preemptions a schedule may contain (enumeration)")
    ] = 2,
    list_: Annotated[bool, typer.Option("--list", help="list scenarios and variants")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Explore interleavings of zram's locking: which variants let a race through."""
    from pyzram import explore as ex

    if list_:
        for name, variants in ex.SCENARIOS.items():
            console.print(f"{name}: {', '.join(variants)}")
        return
    findings = ex.explore(
        scenario,
        variant,
        max_schedules=max_schedules,
        seed=seed,
        preemption_bound=preemption_bound,
    )
    if as_json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
        return
    t = Table(title="zram interleaving explorer")
    for c in ("scenario", "variant", "race", "minimal schedule", "schedules"):
        t.add_column(c)
    for f in findings:
        sched = _runs(f.minimal_schedule) if f.minimal_schedule else "-"
        t.add_row(
            f.scenario,
            f.variant,
            "[red]found[/red]" if f.race_found else "none",
            sched,
            str(f.schedules_explored),
        )
    console.print(t)
    for f in findings:
        console.print(f"[bold]{f.scenario}/{f.variant}[/bold]: {f.description}")


@bench_app.callback()
def bench_all(
    ctx: typer.Context,
    algo: Annotated[
        str, typer.Option("--algo", "-a", help="lz4, lzo or lzo-rle (our kernel-exact codecs)")
    ] = "lz4",
    threads: Annotated[int, typer.Option(help="threads for the multi-thread rows")] = 2,
    quick: Annotated[
        bool, typer.Option("--quick", help="smaller corpus and curve (10^4..10^5): < 90 s")
    ] = False,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="a few pages (tests)")] = False,
    no_kernel: Annotated[bool, typer.Option("--no-kernel", help="skip the host kernel")] = False,
    as_json: Annotated[
        str | None, typer.Option("--json", help="also write the rows as JSON to FILE (- : stdout)")
    ] = None,
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
    from pyzram.bench_all import run_bench

    if threads < 1:
        raise ValueError("--threads must be at least 1")
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
    if as_json is not None:
        if as_json == "-":
            print(report.to_json())
            return
        Path(as_json).write_text(report.to_json() + "\n")
    # Piped output gets a wide table rather than rich's 80 columns.
    out = console if console.is_terminal else Console(width=220)
    out.print(_bench_table(report))
    if plot is not None:
        out.print(f"wrote {plot}")


def _bench_table(report) -> Table:
    """The one table of ``pyzram bench``: row, ours, reference (what), ratio, goal, met?"""
    from rich.markup import escape

    from pyzram.bench_all import format_value as num

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


@bench_app.command("zram")
def bench_zram(
    pagefile: PageFileArg = None,
    algo: Annotated[list[str] | None, typer.Option("--algo", "-a", help=ALGO_HELP)] = None,
    bs: Annotated[
        list[int] | None, typer.Option(help="request size in bytes (multiple of 4096)")
    ] = None,
    repeat: Annotated[int, typer.Option(help="best of N runs")] = 3,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    no_kernel: Annotated[bool, typer.Option("--no-kernel", help="skip the host kernel")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """pwrite/pread pages/s through Zram, beside the host kernel's zram (O_DIRECT)."""
    from pyzram.bench import bench_zram as run

    pages = _load_pages(pagefile, limit)
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


@bench_app.command("codecs")
def bench_codecs(
    pagefile: PageFileArg = None,
    repeat: Annotated[int, typer.Option(help="best of N runs")] = 5,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    no_kernel: Annotated[bool, typer.Option("--no-kernel", help="skip the host kernel")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Codec pages/s: our batch C codecs, python-lz4/python-lzo loops, the host's zram."""
    from pyzram.bench import bench_codecs as run

    pages = _load_pages(pagefile, limit)
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


@bench_app.command("swap")
def bench_swap(
    pagefile: PageFileArg = None,
    algo: Annotated[str, typer.Option("--algo", "-a", help=ALGO_HELP)] = "lzo-rle",
    repeat: Annotated[int, typer.Option(help="best of N runs")] = 3,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Swap-out and swap-in pages/s: zram's swap_ops path vs the bio path."""
    from pyzram.bench import bench_swap as run

    pages = _load_pages(pagefile, limit)
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


@bench_app.command("nbd")
def bench_nbd(
    runtime: Annotated[float, typer.Option(help="seconds per fio job")] = 5.0,
    iodepth: Annotated[int, typer.Option(help="requests in flight for the 4 KiB jobs")] = 16,
    size: Annotated[str, typer.Option(help="export size of both servers")] = "256M",
    region: Annotated[str, typer.Option(help="bytes of the export fio uses")] = "128M",
    algo: Annotated[str, typer.Option("--algo", "-a", help=ALGO_HELP)] = "lzo-rle",
    compress: Annotated[int, typer.Option(help="fio buffer_compress_percentage")] = 50,
    repeat: Annotated[int, typer.Option(help="alternate the servers N times, keep the best")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="pyzram serve --threads (default: its own)")
    ] = None,
    no_nbdkit: Annotated[bool, typer.Option("--no-nbdkit", help="skip nbdkit")] = False,
    loop: Annotated[str, typer.Option(help="pyzram serve's event loop: uvloop or asyncio")] = (
        "uvloop"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """fio (nbd engine) IOPS and MB/s: pyzram serve vs nbdkit memory allocator=zstd."""
    from pyzram.nbd.bench import bench_nbd as run
    from pyzram.nbd.server import LOOPS

    if loop not in LOOPS:
        raise ValueError(f"--loop must be one of {', '.join(LOOPS)}, not {loop!r}")

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


@bench_app.command("run")
def bench_run(
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
    timeout: Annotated[float, typer.Option(help="seconds the kernel-side child may take")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The same workload on the host kernel (memcg limit, swap on a hot_added zram) and in
    pyzram: swapped pages/s of each and their ratio (needs root, zram-control, cgroup v1)."""
    from pyzram.host.kernel_swap import bench_run as run

    # The workload itself (no device policy: the kernel side has no backing device).
    workload = ("algorithm", "mem_limit_pages", "disksize", "pattern", "accesses")
    workload += ("write_ratio", "seed", "folio_order")
    kw = _run_kwargs(
        algo,
        mem_limit,
        disksize,
        pattern,
        accesses,
        write_ratio,
        seed,
        None,
        folio_order=folio_order,
    )
    kw = {k: v for k, v in kw.items() if k in workload}
    pages, source = _workload_pages(pagefile, limit, mix, seed)
    err = Console(stderr=True)
    with err.status("pyzram bench run") as status:
        res = run(
            pages,
            io_path=io_path,
            source=source,
            timeout=timeout,
            progress=lambda msg: status.update(f"pyzram bench run: {msg}"),
            **kw,
        )
    if as_json:
        print(json.dumps(res.as_dict(), indent=2))
    else:
        k, o = res.kernel, res.pyzram
        t = Table(
            title=f"swap on zram ({k.algorithm}), {source}: {k.pages:,} pages, "
            f"{k.accesses:,} accesses, limit {k.mem_limit_pages:,} pages, folio order "
            f"{k.folio_order}"
        )
        for c in ("target", "pswpout", "pswpin", "major faults", "seconds", "swapped pages/s"):
            t.add_column(c, justify="left" if c == "target" else "right")
        t.add_column("intact")
        for name, vm, secs, rate, ok in (
            (
                f"kernel {k.kernel_release} ({k.device})",
                k.vmstat,
                k.seconds,
                k.swapped_pages_s,
                k.intact,
            ),
            (f"pyzram ({o.io_path})", o.vmstat, o.seconds, o.swapped_pages_s, o.intact),
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
        ratio = "-" if res.ratio is None else f"{res.ratio:.2f}x"
        goal = "met" if res.ratio is not None and res.ratio >= 1 else "not met"
        console.print(f"pyzram / kernel swapped pages/s: {ratio} (goal >= 1x: {goal})")
        console.print(f"kernel mm_stat: {k.mm_stat.rstrip()}", soft_wrap=True)
        console.print(f"pyzram mm_stat: {o.mm_stat.rstrip()}", soft_wrap=True)
    if not (res.kernel.intact and res.pyzram.intact):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; turn expected errors into one line and exit 1."""
    import errno as _errno

    try:
        rc = app(args=argv, standalone_mode=False)
    except (OSError, ValueError) as e:
        msg = str(e)
        if isinstance(e, OSError) and e.strerror:
            msg = e.strerror
            if e.errno in _errno.errorcode:
                msg += f" ({_errno.errorcode[e.errno]})"
            if e.filename:
                msg = f"{e.filename}: {msg}"
        print(f"pyzram: error: {msg}", file=sys.stderr)
        return 1
    except typer.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        print("pyzram: interrupted", file=sys.stderr)
        return 130
    except typer.Abort:
        return 1
    except Exception as e:
        # Usage errors (a bad option value, an unknown option): click's ClickException,
        # which typer >= 0.23 bundles instead of depending on click; matched by its
        # interface so both work.  One line, click's exit code (2).
        message = getattr(e, "format_message", None)
        code = getattr(e, "exit_code", None)
        if callable(message) and isinstance(code, int):
            text = message()
            if text:  # (no text: no arguments, and the help has been shown)
                print(f"pyzram: error: {text}", file=sys.stderr)
            return code
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
