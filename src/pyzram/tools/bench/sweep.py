"""``pyzram bench sweep``: what the Dask cluster adds to a grid of runs.

One run measures, on the same 16 cells of the standard mix (two algorithms,
two memory limits, four seeds; ``--limit`` pages each):

1. each cell alone, one after another, in this process
   (:func:`pyzram.tools.sweep.run_cell`, what a cell runs in a worker);
2. the grid on a local cluster of one worker process, then of two; the
   sweep's elapsed time (first submit to last row written, the pages' hashes
   and the results file included, the cluster's start not) gives cells/hour;
3. each cell alone again.  A cell's time alone is the mean of the two
   passes, which bracket the sweeps: the shared host drifts by several per
   cent over a minute, and bracketing cancels a steady drift.

Cells of 16,384 pages (about 0.6 s each) by default: a sweep's fixed costs
(each worker's warm-up, the pages' hashes) do not halve with two workers,
and with cells of a few hundred milliseconds they hold the speed-up well
under the cores' 2x.

Rows: cells/hour of two workers over one (goal ≥ 1.8x: the cores are the
limit), each cell's wall time in the two-worker sweep over its time alone
(the worst cell; goal ≤ 1.1), and the scheduler's overhead per cell in the
one-worker sweep: (elapsed - the cells' wall times) / cells (goal ≤ 50 ms).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyzram.tools.bench.table import Row, cost_row, rate_row

STANDARD_MIX = "zero=0.1,same=0.05,text=0.3,random=0.1,binary=0.45"


def cpu_pressure() -> float | None:
    """/proc/pressure/cpu ``some avg10``: the share of the last 10 s in which some task
    waited for a CPU (other work on a shared host), in per cent."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def grid(limit: int) -> list:
    from pyzram.tools import sweep as S

    params = S.parse_params(
        [
            "algorithm=lzo-rle,lz4",
            f"mem-limit={limit // 4 * 4}K,{limit // 8 * 4}K",
            "seed=0,1,2,3",
            f"limit={limit}",
        ]
    )
    return S.build_grid([S.Source(None, STANDARD_MIX)], params)


def _sweep(cells, workers: int) -> tuple[float, list[dict]]:
    from pyzram.tools import sweep as S

    with tempfile.TemporaryDirectory(prefix="pyzram-bench-sweep-") as tmp:
        with S.dask_client(None, workers) as client:
            res = S.sweep(cells, Path(tmp), client)
        rows = S.read_results(Path(tmp) / S.RESULTS)
    if res.failed:
        raise RuntimeError(f"{res.failed} cells failed in the {workers}-worker sweep")
    return res.seconds, rows


#: The rows' keys and names, for a table that does not run them.
SWEEP_ROWS = {
    "sweep_2_workers": ("pyzram sweep, 16 cells of the standard mix, 2 local workers", "cells/h"),
    "sweep_cell_wall": ("a cell's wall time in the 2-worker sweep over the same run alone", "x"),
    "sweep_overhead": ("scheduler overhead per cell, 1 worker", "ms"),
}


#: Pages per cell by default.
SWEEP_PAGES = 16384


def _alone(cells) -> dict[str, float]:
    """Each cell's wall time, run alone in this process."""
    from pyzram.tools import sweep as S

    walls: dict[str, float] = {}
    for c in cells:
        row = S.run_cell(c)
        if row["error"]:
            raise RuntimeError(row["error"])
        walls[c.cell_id] = row["wall_s"]
    return walls


def bench_sweep(limit: int = SWEEP_PAGES, progress: Callable[[str], None] | None = None) -> dict:
    """The measurements (see the module docstring), with their rows as dicts."""
    res, rows = measure_sweep(limit, progress)
    res["rows"] = [r.as_dict() for r in rows]
    return res


def measure_sweep(
    limit: int = SWEEP_PAGES, progress: Callable[[str], None] | None = None
) -> tuple[dict, list[Row]]:
    """The measurements (see the module docstring) and their rows."""
    from pyzram.tools import sweep as S

    say = progress or (lambda msg: None)
    cells = grid(limit)
    n = len(cells)
    load0, psi0 = os.getloadavg(), cpu_pressure()
    say(f"{n} cells alone")
    # (the pages' hashes, as the sweep computes them, so that the rows share cell ids)
    for c in cells:
        c.pages_sha256 = S.pages_hash(c.source, c.params, None)
    S.warm_up()  # (as each worker is at the start of a sweep)
    t = time.perf_counter()
    before = _alone(cells)
    alone_s = time.perf_counter() - t
    say("1 worker")
    one_s, one = _sweep(cells, 1)
    say("2 workers")
    two_s, two = _sweep(cells, 2)
    say(f"{n} cells alone again")
    after = _alone(cells)
    alone = {k: (before[k] + after[k]) / 2 for k in before}
    # The host's own noise: the same cell alone, the second pass over the first.
    rerun = max((after[k] / before[k] for k in before), key=lambda x: abs(x - 1))
    load1, psi1 = os.getloadavg(), cpu_pressure()
    speedup = one_s / two_s
    walls = {r["cell_id"]: r["wall_s"] / alone[r["cell_id"]] for r in two}
    worst = max(walls.values(), key=lambda x: abs(x - 1))
    overhead_ms = (one_s - sum(r["wall_s"] for r in one)) / n * 1e3
    rows: list[Row] = [
        rate_row(
            "sweep_2_workers",
            f"pyzram sweep, {n} cells of the standard mix ({limit:,} pages each), 2 local workers",
            n / two_s * 3600,
            "cells/h",
            n / one_s * 3600,
            "1 local worker, same cells",
            goal=1.8,
        ),
        cost_row(
            "sweep_cell_wall",
            "a cell's wall time in the 2-worker sweep over the same run alone "
            f"(worst of {n}; median {statistics.median(walls.values()):.2f})",
            worst,
            "x",
            1.0,
            "the same cell alone in one process (mean of a run before and one after)",
            limit=1.1,
            limit_text="within 10 %",
            note=f"the host's noise: a cell alone, run again, {rerun:.2f}x at worst",
        ),
        cost_row(
            "sweep_overhead",
            "scheduler overhead per cell, 1 worker ((elapsed - cells' wall) / cells)",
            max(overhead_ms, 0.0),
            "ms",
            50.0,
            "goal threshold",
            limit=50.0,
        ),
    ]
    # (a worst cell faster in the sweep than alone is within 10 % too)
    rows[1].met = abs(worst - 1) <= 0.1
    return {
        "cells": n,
        "pages_per_cell": limit,
        "alone_s": alone_s,
        "one_worker_s": one_s,
        "two_workers_s": two_s,
        "speedup": speedup,
        "cell_wall_ratios": walls,
        "alone_before_s": before,
        "alone_after_s": after,
        "alone_rerun_worst": rerun,
        "overhead_ms_per_cell": overhead_ms,
        "loadavg_before": load0,
        "loadavg_after": load1,
        "cpu_pressure_before": psi0,
        "cpu_pressure_after": psi1,
        "cpus": os.cpu_count(),
    }, rows
