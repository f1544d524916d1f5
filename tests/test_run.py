"""pyzram run / compare: a workload larger than its memory limit through swap on zram."""

from __future__ import annotations

import json

import pytest

from pyzram.cli import main
from pyzram.run import run_workload
from pyzram.workload.pages import synthetic_mix, write_page_file
from test_swap_core import swap_env  # noqa: F401  (autouse: fresh swap state, sio checks)


@pytest.mark.parametrize("io_path", ["swap_ops", "bio"])
def test_run_swaps_and_every_byte_comes_back(io_path):
    pages = synthetic_mix(400, seed=5)
    r = run_workload(pages, io_path=io_path, mem_limit_pages=100, accesses=600, seed=1)
    assert r.intact
    assert r.vmstat["pswpout"] > 0 and r.vmstat["pswpin"] > 0 and r.vmstat["pgmajfault"] > 0
    assert r.vmstat["nrswpout"] > 0
    assert (r.bios > 0) == (io_path == "bio")
    assert r.compression_ratio and r.compression_ratio > 1
    assert len(r.mm_stat.split()) == 9 and r.write_batch_latency_us["p50"] > 0


def test_compare_json(tmp_path, capsys):
    f = tmp_path / "w.pages"
    write_page_file(f, synthetic_mix(300, seed=2))
    argv = ["compare", str(f), "--mem-limit", "300K", "--accesses", "300", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"swap_ops", "bio"}
    assert out["swap_ops"]["intact"] and out["bio"]["intact"]
    assert out["swap_ops"]["speedup"] > 0 and out["bio"]["bios"] > 0
    assert out["swap_ops"]["bios"] == 0


def test_run_cli_table_and_errors(capsys):
    assert main(["run", "--limit", "200", "--mem-limit", "200K", "--accesses", "100"]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(["run", "--limit", "50", "--mem-limit", "lots"]) == 1
    assert "bad size" in capsys.readouterr().err
    assert main(["run", "--limit", "50", "--io-path", "nvme"]) == 1
    assert "io_path" in capsys.readouterr().err


def test_run_plot_png(tmp_path, capsys):
    png = tmp_path / "run.png"
    argv = ["run", "--limit", "1500", "--mem-limit", "1M", "--accesses", "2000", "--plot", str(png)]
    assert main(argv) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1200  # width
    assert int.from_bytes(data[20:24], "big") == 900  # height
    assert main(["run", "--limit", "100", "--accesses", "10", "--plot", str(png)]) == 1
    assert "too short to plot" in capsys.readouterr().err


def test_run_save_state_and_ctl(tmp_path, capsys):
    state = tmp_path / "state.json"
    argv = ["run", "--limit", "300", "--mem-limit", "300K", "--accesses", "100"]
    assert main([*argv, "--save-state", str(state), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["ctl", str(state), "--bytes", "--raw", "--noheadings", "-o", "NAME,DATA"]) == 0
    name, data = capsys.readouterr().out.split()
    assert name == "/dev/zram0"
    assert int(data) == int(report["mm_stat"].split()[0])
    assert main(["ctl", str(state), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["zram"][0]["mountpoint"] == "[SWAP]"
