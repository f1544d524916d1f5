"""``pyzram sweep``: a grid on a local cluster and on a real scheduler with two
workers, equal to standalone ``pyzram run --json``; resume after a kill; usage
errors before any cell runs; the report and its Pareto front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pyzram.tools.commands.sweep import pareto_front, ranked
from pyzram.tools.sweep import MM_STAT_FIELDS
from pyzram.workload.pages import synthetic_mix, write_page_file

#: A 2x2 grid on the embedded corpus, small enough for 2 shared cores.
GRID = ["--param", "algorithm=lz4,lzo-rle", "--param", "mem-limit=256K,512K"]
FIXED = ["--param", "limit=512", "--param", "accesses=1024"]
#: What a cell must equal in the standalone run.
EXACT = ("mm_stat", "io_stat", "intact", "pages", "accesses", "mem_limit_pages", "bios")


def pyzram(*argv: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyzram", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def rows(out: Path) -> list[dict]:
    return pq.read_table(out / "results.parquet").to_pylist()


def key(r: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in r.items() if k.startswith("opt_")))


def standalone(r: dict, *source: str) -> dict:
    argv = []
    for k, v in r.items():
        if k.startswith("opt_") and v is not None:
            argv += ["--" + k.removeprefix("opt_").replace("_", "-"), v]
    p = pyzram("run", *source, *argv, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def check_equal(cell: dict, alone: dict) -> None:
    for k in EXACT:
        assert cell[k] == alone[k], k
    for k in ("pswpout", "pswpin", "pgmajfault", "swpout_zero", "swpin_zero"):
        assert cell[f"vmstat_{k}"] == alone["vmstat"][k], k
    assert [cell[f] for f in MM_STAT_FIELDS] == [int(x) for x in alone["mm_stat"].split()]
    assert cell["kernel_cpu_compressed_pages"] == alone["kernel_cpu"]["compressed_pages"]


def test_local_cluster_grid_equals_standalone_runs(tmp_path):
    out = tmp_path / "sweep"
    p = pyzram("sweep", *GRID, *FIXED, "-o", str(out), "--workers", "2", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert (res["cells"], res["ran"], res["skipped"], res["failed"]) == (4, 4, 0, 0)
    got = rows(out)
    assert len(got) == 4 and len({key(r) for r in got}) == 4
    assert len({r["worker"] for r in got}) <= 2
    for r in got:
        assert r["error"] is None and r["intact"] is True
        assert r["pyzram_version"] and r["wall_s"] > 0 and r["predicted_kernel_cpu_s"] > 0
        check_equal(r, standalone(r))
    # Again into the same directory: every cell is done already.
    p = pyzram("sweep", *GRID, *FIXED, "-o", str(out), "--workers", "1", "--json")
    assert p.returncode == 0, p.stderr
    again = json.loads(p.stdout)
    assert (again["ran"], again["skipped"]) == (0, 4)
    assert rows(out) == got


def test_local_workers_run_a_cell_as_it_runs_alone():
    """The local cluster's workers leave out Dask's statistical profiler (a thread
    that takes the GIL every 10 ms to sample the running cell) and tick their
    event loop once a second rather than every 20 ms; the warm-up reads the
    blobs the mix's text and binary pages are cut from, so a worker's first cell
    does not, and freezes what the worker holds out of the garbage collector's
    way, so a cell's collections walk its own objects."""
    from pyzram.tools.sweep import dask_client, warm_up

    def blobs() -> tuple[int, int]:
        from pyzram.workload import pages as P

        return P._text_blob.cache_info().currsize, P._binary_blob.cache_info().currsize

    with dask_client(None, 1) as client:
        import dask

        profiling = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
        assert list(profiling.values()) == [False]
        tick = client.run(lambda: dask.config.get("distributed.admin.tick.interval"))
        assert list(tick.values()) == ["1s"]
        assert list(client.run(blobs).values()) == [(0, 0)]
        client.run(warm_up)
        assert list(client.run(blobs).values()) == [(1, 1)]
        import gc

        frozen = client.run(gc.get_freeze_count)  # the worker's own objects, out of the way
        assert list(frozen.values())[0] > 10_000


def _wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.1)


def test_real_scheduler_and_two_workers_equal_the_local_cluster(tmp_path):
    pages = synthetic_mix(512, seed=11)
    write_page_file(tmp_path / "p.pages", pages)
    url = (tmp_path / "p.pages").resolve().as_uri()  # file://: read by the workers
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                 "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )
        )  # fmt: skip
        _wait_for(sched_file.exists, 60, "the scheduler did not start")
        _wait_for(lambda: json.loads(sched_file.read_text() or "{}"), 10, "no address")
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                     "--no-dashboard", "--host", "127.0.0.1"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                )
            )  # fmt: skip
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=120)
        remote = tmp_path / "remote"
        p = pyzram("sweep", url, *GRID, *FIXED, "-o", str(remote), "--scheduler", address,
                   "--json")  # fmt: skip
        assert p.returncode == 0, p.stderr
        res = json.loads(p.stdout)
        assert (res["cells"], res["ran"], res["failed"], res["workers"]) == (4, 4, 0, 2)
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait()
    local = tmp_path / "local"
    p = pyzram("sweep", url, *GRID, *FIXED, "-o", str(local), "--workers", "2", "--json")
    assert p.returncode == 0, p.stderr
    by_key = {key(r): r for r in rows(local)}
    remote_rows = rows(remote)
    assert len(remote_rows) == 4 and {r["source"] for r in remote_rows} == {url}
    for r in remote_rows:
        loc = by_key[key(r)]
        assert r["cell_id"] == loc["cell_id"]
        for k in (*EXACT, *MM_STAT_FIELDS, "vmstat_pswpout", "vmstat_pswpin"):
            assert r[k] == loc[k], k
    check_equal(remote_rows[0], standalone(remote_rows[0], str(tmp_path / "p.pages")))


def test_resume_after_the_sweep_is_killed_halfway(tmp_path):
    out = tmp_path / "sweep"
    seeds = [str(s) for s in range(10)]
    grid = ["--param", "seed=" + ",".join(seeds), "--param", "limit=8192", "--param",
            "accesses=16384"]  # fmt: skip
    argv = [sys.executable, "-m", "pyzram", "sweep", *grid, "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:

        def some_done() -> bool:
            try:
                return len(rows(out)) >= 2
            except (OSError, ValueError):
                return False

        _wait_for(some_done, 240, "no cell finished")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its cluster, as a crash would
        proc.wait()
    before = rows(out)
    assert 2 <= len(before) < len(seeds), "the sweep was not killed halfway"
    p = pyzram("sweep", *grid, "-o", str(out), "--workers", "1", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["skipped"] == len(before) and res["ran"] == len(seeds) - len(before)
    after = rows(out)
    assert sorted(r["opt_seed"] for r in after) == seeds
    old = {r["cell_id"]: r for r in before}
    for r in after:  # the cells done before are kept as they were
        if r["cell_id"] in old:
            assert r == old[r["cell_id"]]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--param", "colour=red"], "--param: unknown parameter 'colour'"),
        (["--param", "seed=1,x"], "--param: seed=x: "),
        (["--param", "folio-order=0,12"], "--param: folio-order=12: 12 out of range"),
        (["--param", "algorithm=lz4,nope"], "--param: algorithm=nope: unknown algorithm"),
        (["--param", "mem-limit=1M,lots"], "--param: mem-limit=lots: bad size"),
        (["--param", "pattern=zipf,spiral"], "--param: pattern=spiral: unknown access"),
        (["--param", "seed"], "--param: 'seed' is not NAME=V1,V2,..."),
        (["--param", "json=1"], "--param: unknown parameter 'json'"),
        (["--param", "seed=1", "--mix", "zero=2"], "--mix: "),
    ],
)
def test_bad_params_fail_before_any_cell_runs(tmp_path, argv, needle):
    out = tmp_path / "sweep"
    p = pyzram("sweep", *argv, "-o", str(out), timeout=60)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyzram: error: "), p.stderr
    assert needle in lines[0]
    assert not out.exists()  # nothing ran, no cluster was started


def test_a_failing_cell_is_recorded_and_the_others_go_on(tmp_path):
    good = tmp_path / "good.pages"
    write_page_file(good, synthetic_mix(256, seed=1))
    bad = tmp_path / "bad.pages"
    bad.write_bytes(b"")  # an empty page file: that cell fails
    out = tmp_path / "sweep"
    p = pyzram("sweep", str(good), bad.as_uri(), "--param", "accesses=256", "-o", str(out),
               "--workers", "1", "--json")  # fmt: skip
    assert p.returncode == 1
    res = json.loads(p.stdout)
    assert (res["cells"], res["ran"], res["failed"]) == (2, 2, 1)
    by_source = {r["source"]: r for r in rows(out)}
    assert by_source[str(good)]["error"] is None and by_source[str(good)]["intact"]
    assert "no pages" in by_source[bad.as_uri()]["error"]


def test_pareto_front():
    #        saved, cpu
    pts = [(10, 5), (20, 9), (15, 9), (5, 1), (20, 12), (4, 2)]
    assert pareto_front(pts) == [3, 0, 1]


def test_report_ranks_and_plots(tmp_path):
    out = tmp_path / "sweep"
    p = pyzram("sweep", *GRID, *FIXED, "-o", str(out), "--workers", "2")
    assert p.returncode == 0, p.stderr
    p = pyzram("sweep", "report", str(out), "--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    cells = rep["cells"]
    assert len(cells) == 4 and not rep["failed"]
    saved = [c["memory_saved_bytes"] for c in cells]
    assert saved == sorted(saved, reverse=True)
    cpu = {c["cell_id"]: c["predicted_kernel_cpu_s"] for c in cells}
    assert [cpu[i] for i in rep["by_kernel_cpu"]] == sorted(cpu.values())
    assert rep["pareto_front"] and all(
        c["pareto"] == (c["cell_id"] in rep["pareto_front"]) for c in cells
    )
    assert rep == {**ranked(rows(out)), "plot": str(out / "pareto.png")}
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = pyzram("sweep", "report", str(out), env=dict(os.environ, COLUMNS="80"))
    assert p.returncode == 0, p.stderr
    assert max(len(line) for line in p.stdout.splitlines()) <= 80
    assert "Pareto front" in p.stdout and "algorithm=lz4" in p.stdout


def test_ctrl_c_ends_the_sweep_with_one_line_and_keeps_what_is_done(tmp_path):
    """Ctrl-C reaches the whole process group (the sweep and its local workers): one
    line, exit 130, the cells done so far in results.parquet, and a rerun goes on."""
    out = tmp_path / "sweep"
    grid = ["--param", "seed=0,1,2,3,4,5,6,7", "--param", "limit=4096"]
    argv = [sys.executable, "-m", "pyzram", "sweep", *grid, "-o", str(out), "--workers", "1"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _wait_for(lambda: (out / "results.parquet").exists(), 240, "no cell finished")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "pyzram: interrupted", err
    assert "Traceback" not in err and "error" not in err
    done = len(rows(out))
    assert 1 <= done < 8
    p = pyzram("sweep", *grid, "-o", str(out), "--workers", "1", "--json")
    res = json.loads(p.stdout)
    assert (res["skipped"], res["ran"], res["failed"]) == (done, 8 - done, 0)


def test_bench_table_sweep_rows():
    """``pyzram bench``'s sweep rows: measured on a local cluster when the plan asks
    (the rows of ``pyzram bench sweep``), skipped with the reason otherwise."""
    import dataclasses

    from pyzram.tools.bench.sweep import SWEEP_ROWS
    from pyzram.tools.bench.table import PLANS, sweep_rows

    skipped = sweep_rows(PLANS["tiny"], lambda msg: None)
    assert [r.key for r in skipped] == list(SWEEP_ROWS)
    assert all(r.skipped == "not run in the tiny plan" for r in skipped)
    plan = dataclasses.replace(PLANS["tiny"], sweep_pages=256)
    rows = {r.key: r for r in sweep_rows(plan, lambda msg: None)}
    assert set(rows) == set(SWEEP_ROWS)
    for r in rows.values():
        assert r.skipped is None and r.ours is not None and r.ours >= 0, r
    assert rows["sweep_2_workers"].ours_unit == "cells/h" and rows["sweep_2_workers"].ratio > 0
    # (the cells alone ran twice, around the sweeps: the row says how much a rerun moved)
    assert "run again" in rows["sweep_cell_wall"].note
