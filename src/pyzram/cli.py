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
bench_app = typer.Typer(no_args_is_help=True, help="Throughput figures (see README).")
app.add_typer(bench_app, name="bench")
console = Console()

ALGO_HELP = (
    "zram backend: lzo-rle (default), lzo, lz4 (pyzram's kernel-identical C codecs), "
    "lz4hc, zstd, deflate (library codecs: the kernel's format, sizes may differ)"
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
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The same pages through pyzram and the host kernel's zram: mm_stat must be equal."""
    from pyzram.validate import validate as run

    pages = _load_pages(pagefile, limit)
    results = run(pages, algo)
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
        ok = sum(r.equal for r in results)
        console.print(f"{ok} of {len(results)} algorithms equal the kernel in every field")
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
    algo, mem_limit, disksize, pattern, accesses, write_ratio, seed, backing_dev
) -> dict:
    from pyzram.lib.cmdline import memparse

    kw: dict = {
        "algorithm": algo,
        "pattern": pattern,
        "accesses": accesses,
        "write_ratio": write_ratio,
        "seed": seed,
        "backing_dev": str(backing_dev) if backing_dev else None,
    }
    for name, text in (("mem_limit_pages", mem_limit), ("disksize", disksize)):
        if text is None:
            continue
        value, end = memparse(text)
        if end != len(text) or not value:
            raise ValueError(f"bad size {text!r} (e.g. 64M, 1G)")
        kw[name] = value // 4096 if name == "mem_limit_pages" else value
    return kw


MemLimitOpt = Annotated[
    str | None,
    typer.Option("--mem-limit", help="memcg limit, e.g. 16M (default: 1/4 of the pages)"),
]
DisksizeOpt = Annotated[
    str | None, typer.Option(help="zram disksize, e.g. 64M (default: the workload's size)")
]
PatternOpt = Annotated[
    str, typer.Option(help="access pattern: sequential, random, zipf, phased, or trace:PATH")
]


def _report_table(reports) -> Table:
    t = Table(title="swap on zram")
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
        ("swap-out pages/s (device path)", lambda r: f"{r.swapout_pages_s:,.0f}"),
        ("swap-in pages/s (device path)", lambda r: f"{r.swapin_pages_s:,.0f}"),
        ("write batch p50/p99 µs", lambda r: _p(r.write_batch_latency_us)),
        ("read batch p50/p99 µs", lambda r: _p(r.read_batch_latency_us)),
        ("seconds", lambda r: f"{r.seconds:.2f}"),
        ("intact", lambda r: "yes" if r.intact else "[red]NO[/red]"),
    ]
    for name, fmt in rows:
        t.add_row(name, *(fmt(r) for r in reports))
    return t


def _p(lat: dict) -> str:
    return f"{lat['p50']:.0f} / {lat['p99']:.0f}" if lat else "-"


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
    seed: Annotated[int, typer.Option(help="seed of the pattern and the writes")] = 0,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
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

    pages = _load_pages(pagefile, limit)
    kw = _run_kwargs(algo, mem_limit, disksize, pattern, accesses, write_ratio, seed, backing_dev)
    if as_json:
        report = run_workload(pages, io_path=io_path, **kw)
        print(json.dumps(report.as_dict(), indent=2))
    else:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("running", total=None)
            report = run_workload(
                pages,
                io_path=io_path,
                progress=lambda d, t: bar.update(task, completed=d, total=t),
                **kw,
            )
        console.print(_report_table([report]))
        console.print(f"mm_stat: {report.mm_stat.rstrip()}", soft_wrap=True)
        console.print(f"io_stat: {report.io_stat.rstrip()}", soft_wrap=True)
        if report.bd_stat:
            console.print(f"bd_stat: {report.bd_stat.rstrip()}", soft_wrap=True)
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
    seed: Annotated[int, typer.Option(help="seed of the pattern and the writes")] = 0,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The same workload through zram's swap_ops path and through the bio path."""
    from pyzram.run import run_workload

    pages = _load_pages(pagefile, limit)
    kw = _run_kwargs(algo, mem_limit, disksize, pattern, accesses, write_ratio, seed, None)
    ops = run_workload(pages, io_path="swap_ops", **kw)
    bio = run_workload(pages, io_path="bio", **kw)
    speedup = bio.seconds / ops.seconds if ops.seconds else None
    if as_json:
        out = {
            r.io_path: {**r.as_dict(), "speedup": speedup if r is ops else 1.0} for r in (ops, bio)
        }
        print(json.dumps(out, indent=2))
    else:
        console.print(_report_table([ops, bio]))
        console.print(f"speedup of swap_ops over bio (whole run): {speedup:.2f}x")
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
) -> None:
    """zramctl's listing (same columns and options) for saved or host devices."""
    import glob
    import os

    from pyzram import ctl as c

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
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            return 1
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
