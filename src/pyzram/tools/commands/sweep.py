"""``pyzram sweep``: a grid of ``pyzram run`` configurations on Dask, and its report.

``pyzram sweep [PAGEFILE... | --mix MIX] --param NAME=V1,V2,... -o DIR`` runs
the grid (:mod:`pyzram.tools.sweep`) into ``DIR/results.parquet``;
``pyzram sweep report DIR`` ranks its cells by memory saved and by the
kernel's predicted CPU cost, with the Pareto front of the two and a PNG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pyzram.tools.common import JsonOpt, UsageError, console


def command(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="page files or fsspec URLs (default: the embedded corpus); "
            "`report DIR` reports a sweep's results",
            show_default=False,
        ),
    ] = None,
    mix: Annotated[
        str | None,
        typer.Option(help="instead of PAGEFILE...: synthetic pages of this mix (as run --mix)"),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="NAME=V1,V2,...: a pyzram run option without its dashes (algorithm, "
            "mem-limit, folio-order, pattern, io-path, seed, limit, writeback, "
            "recompress-algorithm, idle-age, ...) and its values; repeatable",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="the results' directory")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="address of a running Dask scheduler (default: a local cluster)"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="local cluster: worker processes (default: one per core)")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="report: the PNG of the front (default DIR/pareto.png)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A grid of pyzram run configurations on a Dask cluster; `sweep report DIR` ranks it.

    Each cell is one pyzram run with the cell's options, in a worker process; the
    results land in DIR/results.parquet (docs/sweep.md), and a rerun into the same
    DIR skips the cells already done.
    """
    sources = list(sources or [])
    if sources[:1] == ["report"]:
        if len(sources) != 2:
            raise UsageError("report", "give one results directory: pyzram sweep report DIR")
        for name, given in (
            ("--param", param),
            ("--mix", mix),
            ("--output", output),
            ("--scheduler", scheduler),
            ("--workers", workers),
        ):
            if given:
                raise UsageError(name, "is not an option of sweep report")
        report_command(Path(sources[1]), plot, as_json)
        return
    if plot is not None:
        raise UsageError("--plot", "is an option of sweep report")
    run_command(sources, mix, param or [], output, scheduler, workers, as_json)


def run_command(sources, mix, param, output, scheduler, workers, as_json) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from pyzram.tools import sweep as S

    if output is None:
        raise UsageError("--output", "the results' directory is required (-o DIR)")
    if workers is not None and workers < 1:
        raise UsageError("--workers", "must be at least 1")
    if workers is not None and scheduler:
        raise UsageError("--workers", "is for the local cluster, not with --scheduler")
    if not param:
        raise UsageError("--param", "give at least one NAME=V1,V2,...")
    if mix is not None and sources:
        raise UsageError("--mix", "give PAGEFILEs or --mix, not both")
    if mix is not None:
        from pyzram.workload.pages import parse_mix

        try:
            parse_mix(mix)
        except ValueError as e:
            raise UsageError("--mix", str(e)) from None
    for s in sources:
        if not S.is_url(s) and not Path(s).is_file():
            raise UsageError("PAGEFILE", f"{s}: no such page file")
    if len(set(sources)) != len(sources):
        raise UsageError("PAGEFILE", "a page file given twice")
    srcs = [S.Source(s) for s in sources] or [S.Source(None, mix)]
    cells = S.build_grid(srcs, S.parse_params(param))  # usage errors before any cell runs
    err = Console(stderr=True)
    with (
        Progress(
            "sweep",
            BarColumn(),
            MofNCompleteColumn(),
            "cells",
            TimeElapsedColumn(),
            console=err,
            transient=as_json,
        ) as bar,
        S.dask_client(scheduler, workers) as client,
    ):
        task = bar.add_task("sweep", total=None)
        res = S.sweep(
            cells,
            output,
            client,
            progress=lambda d, t: bar.update(task, completed=d, total=t),
        )
    if as_json:
        print(json.dumps(res.as_dict(), indent=2))
    else:
        console.print(
            f"{res.cells:,} cells: {res.ran:,} ran ({res.failed:,} failed), {res.skipped:,} "
            f"already done; {res.workers} workers, {res.seconds:.1f} s; {res.results}",
            soft_wrap=True,
        )
    if res.failed:
        raise typer.Exit(1)


# -- the report -------------------------------------------------------------------------------


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: more memory saved (first) at no more
    CPU (second), or less CPU at no less memory saved; ordered by CPU."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][0] > best:
            front.append(i)
            best = points[i][0]
    return front


def _varying(rows: list[dict]) -> list[str]:
    """The option columns whose value differs between cells (and source if it does)."""
    cols = sorted({c for r in rows for c in r if c.startswith("opt_")})
    keep = [c for c in cols if len({r.get(c) for r in rows}) > 1]
    if len({r.get("source") for r in rows}) > 1:
        keep.insert(0, "source")
    return keep


def _label(row: dict, cols: list[str]) -> str:
    parts = []
    for c in cols:
        v = row.get(c)
        if v is None:
            continue
        name = c.removeprefix("opt_").replace("_", "-")
        parts.append(Path(v).name if c == "source" else f"{name}={v}")
    return " ".join(parts) or "(one cell)"


def ranked(rows: list[dict]) -> dict:
    """The report as data: the cells ranked both ways, the front, the failures."""
    ok = [r for r in rows if r.get("error") is None]
    cols = _varying(ok)
    cells = []
    for r in ok:
        cells.append(
            {
                "cell_id": r["cell_id"],
                "label": _label(r, cols),
                "options": {
                    c.removeprefix("opt_").replace("_", "-"): r[c]
                    for c in sorted(r)
                    if c.startswith("opt_") and r[c] is not None
                },
                "source": r.get("source"),
                "memory_saved_bytes": r["memory_saved_bytes"],
                "predicted_kernel_cpu_s": r["predicted_kernel_cpu_s"],
                "intact": r["intact"],
            }
        )
    pts = [(c["memory_saved_bytes"], c["predicted_kernel_cpu_s"]) for c in cells]
    front = set(pareto_front(pts))
    for i, c in enumerate(cells):
        c["pareto"] = i in front
    by_mem = sorted(cells, key=lambda c: (-c["memory_saved_bytes"], c["predicted_kernel_cpu_s"]))
    by_cpu = sorted(cells, key=lambda c: (c["predicted_kernel_cpu_s"], -c["memory_saved_bytes"]))
    for rank, c in enumerate(by_mem, 1):
        c["rank_memory_saved"] = rank
    for rank, c in enumerate(by_cpu, 1):
        c["rank_kernel_cpu"] = rank
    return {
        "cells": by_mem,
        "by_kernel_cpu": [c["cell_id"] for c in by_cpu],
        "pareto_front": [cells[i]["cell_id"] for i in pareto_front(pts)],
        "failed": [
            {"cell_id": r["cell_id"], "source": r.get("source"), "error": r["error"]}
            for r in rows
            if r.get("error") is not None
        ],
    }


def report_command(out: Path, plot: Path | None, as_json: bool) -> None:
    from pyzram.tools import sweep as S

    path = out / S.RESULTS
    if not path.exists():
        raise UsageError("DIR", f"{out}: no {S.RESULTS} here (run pyzram sweep -o {out})")
    rep = ranked(S.read_results(path))
    if not rep["cells"]:
        raise ValueError(f"{path}: no cell has a result")
    png = plot if plot is not None else out / "pareto.png"
    from pyzram.tools.plot import plot_pareto

    plot_pareto(rep, png)
    rep["plot"] = str(png)
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    t = Table(title=f"{len(rep['cells'])} cells, ranked by memory saved")
    t.add_column("cell")
    for c in ("saved MiB", "#", "kernel CPU ms", "#", "front"):
        t.add_column(c, justify="right", no_wrap=True)
    for c in rep["cells"]:
        t.add_row(
            c["label"] + ("" if c["intact"] else " [red](NOT intact)[/red]"),
            f"{c['memory_saved_bytes'] / 2**20:,.2f}",
            str(c["rank_memory_saved"]),
            f"{c['predicted_kernel_cpu_s'] * 1e3:,.2f}",
            str(c["rank_kernel_cpu"]),
            "*" if c["pareto"] else "",
        )
    console.print(t)
    front = [next(c for c in rep["cells"] if c["cell_id"] == i) for i in rep["pareto_front"]]
    console.print(
        "Pareto front (more memory saved for more kernel CPU): "
        + "; ".join(c["label"] for c in front),
        soft_wrap=False,
    )
    for f in rep["failed"]:
        console.print(f"failed: {f['cell_id']}: {f['error']}", markup=False)
    console.print(f"plot: {png}")
