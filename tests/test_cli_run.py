"""``pyzram run`` and ``compare`` from the outside: typer's CliRunner and real subprocesses.

Exit codes, the JSON schema of ``run --json`` and ``compare --json`` (keys and
types), the PNG of ``--plot``, and one-line errors without a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import NoneType

import pytest
from typer.testing import CliRunner

from pyzram.tools.cli import app, main
from pyzram.tools.commands.run import VMSTAT_KEYS
from pyzram.workload.pages import synthetic_mix, write_page_file

#: ``pyzram run --json``: every key and the type of its value.
RUN_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "io_path": str,
    "algorithm": str,
    "pages": int,
    "accesses": int,
    "mem_limit_pages": int,
    "mm_stat": str,
    "io_stat": str,
    "bd_stat": (str, NoneType),
    "vmstat": dict,
    "compression_ratio": (float, NoneType),
    "memory_ratio": (float, NoneType),
    "memory_saved_bytes": int,
    "swapout_pages_s": float,
    "swapin_pages_s": float,
    "write_batch_latency_us": dict,
    "read_batch_latency_us": dict,
    "intact": bool,
    "seconds": float,
    "bios": int,
    "source": str,
    "folio_order": int,
    "mthp_swapin": bool,
    "tlb_entries": int,
    "tlb_2m_entries": (int, type(None)),
    "swapped_pages_s": float,
    "mthp": dict,
    "post_processing": list,
    "written_back_pages": int,
    "recompressed_pages": int,
    "device": dict,
    "predicted_kernel_cpu_s": float,
    "kernel_cpu": dict,
    "zswap": (dict, NoneType),
    "area": str,
    "memory_used_bytes": int,
    "disk_write_pages": int,
    "timeline": list,
    "wall_seconds": float,
    "pages_seconds": float,
}
LATENCY_KEYS = {"n", "p50", "p90", "p99", "max"}
TIMELINE_KEYS = {
    "t", "phase", "mem_used_total", "orig_data_size", "compr_data_size", "pswpout", "pswpin"
}  # fmt: skip

SMALL = ["--limit", "300", "--mem-limit", "300K", "--accesses", "300"]


def check_run_schema(r: dict) -> None:
    assert set(r) == set(RUN_SCHEMA)
    for key, typ in RUN_SCHEMA.items():
        assert isinstance(r[key], typ), (key, r[key])
    assert 0 < r["seconds"] < r["wall_seconds"]  # the window sits inside the wall time
    assert r["io_path"] in ("swap_ops", "bio")
    assert len(r["mm_stat"].split()) == 9 and r["mm_stat"].endswith("\n")
    assert len(r["io_stat"].split()) == 4
    assert set(VMSTAT_KEYS) <= set(r["vmstat"])
    assert all(isinstance(v, int) for v in r["vmstat"].values())
    for lat in (r["write_batch_latency_us"], r["read_batch_latency_us"]):
        assert set(lat) == LATENCY_KEYS and all(isinstance(v, float) for v in lat.values())
    assert r["timeline"] and all(set(s) == TIMELINE_KEYS for s in r["timeline"])
    for size, stats in r["mthp"].items():
        assert size.startswith("hugepages-") and all(isinstance(v, int) for v in stats.values())


def pyzram(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyzram", *argv], capture_output=True, text=True, timeout=timeout
    )


# -- typer's CliRunner -------------------------------------------------------------------------


def test_runner_run_json_schema():
    res = CliRunner().invoke(app, ["run", *SMALL, "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    check_run_schema(r)
    assert r["intact"] is True and r["pages"] == 300 and r["mem_limit_pages"] == 75
    assert r["vmstat"]["pswpout"] > 0 and r["source"] == "embedded default corpus"


def test_runner_compare_json_schema(tmp_path):
    f = tmp_path / "w.pages"
    write_page_file(f, synthetic_mix(250, seed=3))
    res = CliRunner().invoke(app, ["compare", str(f), "--mem-limit", "256K", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"swap_ops", "bio"}
    for path, r in out.items():
        speedup = r.pop("speedup")
        assert isinstance(speedup, float) and speedup > 0
        check_run_schema(r)
        assert r["io_path"] == path and r["intact"] is True and r["source"] == str(f)
    assert out["bio"]["bios"] > 0 and out["swap_ops"]["bios"] == 0
    # the same workload on both paths: the same faults, the same pages swapped out
    assert out["bio"]["vmstat"]["pswpout"] == out["swap_ops"]["vmstat"]["pswpout"]
    assert out["bio"]["vmstat"]["pgmajfault"] == out["swap_ops"]["vmstat"]["pgmajfault"]


def test_runner_run_text_report():
    argv = ["run", "--mix", "zero=0.2,text=0.5,random=0.3", "--limit", "512", "--folio-order", "4"]
    res = CliRunner().invoke(app, [*argv, "--mem-limit", "512K", "--accesses", "300"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    for needle in (
        "mix zero=0.2,text=0.5,random=0.3 (seed 0)",
        "swapped pages/s",
        "thp_swpout / thp_swpout_fallback",
        "mm_stat:",
        "io_stat: ",
        "vmstat deltas: pgfault",
        "hugepages-64kB/stats: anon_fault_alloc 32",
        "intact",
    ):
        assert needle in out, needle


# -- subprocesses ---------------------------------------------------------------------------------


def test_subprocess_run_json_and_plot(tmp_path):
    png = tmp_path / "run.png"
    r = pyzram("run", *SMALL)
    assert r.returncode == 0, r.stderr
    assert "intact" in r.stdout and "mm_stat:" in r.stdout
    argv = ["--limit", "600", "--mem-limit", "600K", "--accesses", "600"]
    r = pyzram("run", *argv, "--json", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    check_run_schema(json.loads(r.stdout))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1200, 900)


def test_subprocess_compare_json():
    r = pyzram("compare", "--limit", "200", "--mem-limit", "200K", "--accesses", "200", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["swap_ops"]["intact"] is True and out["bio"]["intact"] is True
    assert isinstance(out["swap_ops"]["speedup"], float) and out["bio"]["speedup"] == 1.0


def _one_line(err: str, needle: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyzram: error: "), err
    assert needle in lines[0], lines[0]


def test_subprocess_errors_are_one_line(tmp_path):
    """Bad input of each kind as a real process: a bad size, an unknown algorithm, an
    unreadable page file, a PID that does not exist, a bad option value (side by side)."""
    cases = [
        (["run", "--mem-limit", "lots"], 2, "--mem-limit: bad size 'lots'"),
        (["compare", "--limit", "50", "-a", "lz5"], 2, "--algorithm: unknown algorithm 'lz5'"),
        (["run", str(tmp_path)], 1, "Is a directory (EISDIR)"),
        (["snapshot", "999999999", "-o", str(tmp_path / "x.pages")], 1, "no such process"),
        (["run", "--accesses", "many"], 2, "Invalid value for '--accesses'"),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pyzram", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv, _, _ in cases
    ]
    for (argv, code, needle), p in zip(cases, procs, strict=True):
        _, err = p.communicate(timeout=120)
        assert p.returncode == code, (argv, p.returncode, err)
        _one_line(err, needle)


@pytest.mark.parametrize(
    "argv,code,needle",
    [
        (["run", "--disksize", "12Q"], 2, "--disksize: bad size '12Q'"),
        (["compare", "--mem-limit", "0"], 2, "--mem-limit: bad size '0'"),
        (["run", "--limit", "50", "-a", "bogus"], 2, "--algorithm: unknown algorithm 'bogus'"),
        (
            ["run", "/nonexistent/w.pages"],
            1,
            "/nonexistent/w.pages: No such file or directory (ENOENT)",
        ),
        (["run", "--mix", "zeros=1"], 2, "--mix: unknown page kind 'zeros'"),
        (
            ["compare", "--mix", "zero=0.5", "--limit", "10"],
            2,
            "--mix: page mix shares add up to 0.5, not 1",
        ),
        (["run", "x.pages", "--mix", "zero=1"], 2, "--mix: give a PAGEFILE or --mix, not both"),
        (["run", "--limit", "50", "--folio-order", "12"], 2, "--folio-order: 12 out of range"),
        (["run", "--limit", "50", "--writeback", "idle"], 2, "--writeback: needs a backing device"),
        (["run", "--limit", "50", "--recompress", "type=idle"], 2, "--recompress: needs a"),
        (
            ["run", "--limit", "50", "--recompress-algorithm", "zstd", "--idle-age", "soon"],
            2,
            "--idle-age: must be all or a number of seconds, not 'soon'",
        ),
        (["run", "--limit", "50", "--pattern", "bogus"], 2, "--pattern: unknown access pattern"),
        (["run", "--accesses", "-5"], 2, "--accesses: must not be negative"),
        (["run", "--limit", "0"], 2, "--limit: must be at least 1"),
        (["run", "--write-ratio", "1.5"], 2, "--write-ratio: must be between 0 and 1"),
        (["run", "--io-path", "nvme"], 2, "--io-path: must be swap_ops or bio"),
        (["store", "-a", "lz5"], 2, "--algorithm: unknown algorithm 'lz5'"),
        (["validate", "--kernel", "qemu"], 2, "--kernel: must be host or vm"),
        (["explore", "--scenario", "nope"], 2, "--scenario: unknown scenario 'nope'"),
        (["ctl", "-o", "NAME,BOGUS"], 2, "--output: unknown column: BOGUS"),
        (["bench", "--threads", "0"], 2, "--threads: must be at least 1"),
        (["bench", "swap", "--repeat", "0"], 2, "--repeat: must be at least 1"),
        (["run", "--no-such-option"], 2, "No such option"),
    ],
)
def test_errors_are_one_line(argv, code, needle, capsys):
    """Usage errors exit 2 and name the option; failures exit 1 and name the file."""
    assert main(argv) == code
    _one_line(capsys.readouterr().err, needle)


def test_empty_page_file_names_the_file(tmp_path, capsys):
    f = tmp_path / "empty.pages"
    f.write_bytes(b"")
    assert main(["store", str(f)]) == 1
    _one_line(capsys.readouterr().err, f"{f}: no pages in the page file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_subprocess_unreadable_page_file(tmp_path):
    f = tmp_path / "secret.pages"
    write_page_file(f, synthetic_mix(4))
    f.chmod(0)
    r = pyzram("run", str(f))
    assert r.returncode == 1 and "Permission denied (EACCES)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
