"""The pyzram command as a Unix tool: one spelling per option, ``--version``, exit codes,
one-line errors naming the option or file, output that fits 80 columns, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer.main

import pyzram
from pyzram.host import kernel_swap as ks
from pyzram.host.kernel_zram import unavailable_reason
from pyzram.tools.cli import app
from pyzram.tools.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from pyzram.zram.stat import MmStat


def _commands():
    """Every command and subcommand of ``pyzram`` as (its words, its click command)."""
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        yield name, cmd
        for sub, subcmd in getattr(cmd, "commands", {}).items():
            yield f"{name} {sub}", subcmd


def test_one_spelling_per_option():
    """An algorithm is ``--algorithm``/``-a`` and ``--json`` is a flag (JSON on stdout)
    wherever they appear; no command spells them otherwise."""
    seen = {"algorithm": 0, "json": 0}
    for words, cmd in _commands():
        for p in cmd.params:
            names = [*p.opts, *getattr(p, "secondary_opts", [])]
            assert "--algo" not in names, words
            if p.name == "algo":
                assert sorted(names) == ["--algorithm", "-a"], (words, names)
                seen["algorithm"] += 1
            if "--json" in names:
                assert p.is_flag, f"{words}: --json takes no value"
                seen["json"] += 1
    assert seen["algorithm"] >= 8 and seen["json"] >= 10, seen


def _pyzram(*argv: str, timeout: float = 120, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "pyzram", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_version():
    r = _pyzram("--version")
    assert r.returncode == 0 and r.stdout == f"pyzram {pyzram.__version__}\n", r


def test_usage_and_failure_exit_codes_are_documented():
    """The codes the help promises are the codes main returns."""
    r = _pyzram("--help", env={**os.environ, "COLUMNS": "200"})
    assert "Exit status: 0 success, 1 failure, 2 usage error" in r.stdout
    assert "130 interrupted" in r.stdout
    assert (EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED) == (1, 2, 130)


def _interrupt(argv: list[str], after: float) -> subprocess.CompletedProcess[str]:
    """Start ``pyzram ARGV``, send it a real SIGINT after ``after`` seconds (as Ctrl-C
    does), and wait for it."""
    p = subprocess.Popen(
        [sys.executable, "-m", "pyzram", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after)
    assert p.poll() is None, "the command ended before the signal: make it larger"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _interrupted(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines()[-1:] == ["pyzram: interrupted"], r.stderr
    assert "Traceback" not in r.stderr and "error" not in r.stderr


def test_ctrl_c_run():
    """``pyzram run`` on a large mix, interrupted mid-run: one line, 130."""
    _interrupted(
        _interrupt(["run", "--mix", "zero=0.2,text=0.5,random=0.3", "--limit", "300000"], 3)
    )


def test_ctrl_c_run_json():
    """The same with ``--json`` (no progress bar): no half-written JSON, one line, 130."""
    argv = ["run", "--mix", "zero=0.2,text=0.5,random=0.3", "--limit", "300000", "--json"]
    r = _interrupt(argv, 3)
    _interrupted(r)
    assert r.stdout == ""


@pytest.mark.kernel
@pytest.mark.skipif(ks.unavailable_reason() is not None, reason=ks.unavailable_reason() or "")
def test_ctrl_c_bench_run_cleans_up_the_host():
    """``pyzram bench run`` interrupted while the host kernel swaps: one line, 130, and
    its zram device, swap area and cgroup are gone."""
    devices = sorted(Path("/sys/block").glob("zram*"))
    swaps = Path("/proc/swaps").read_text()
    argv = ["bench", "run", "--mix", "zero=0.2,text=0.5,random=0.3", "--limit", "60000"]
    p = subprocess.Popen(
        [sys.executable, "-m", "pyzram", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the device is swapped on (the kernel side is running).
    deadline = time.monotonic() + 60
    while Path("/proc/swaps").read_text() == swaps:
        assert p.poll() is None and time.monotonic() < deadline, "no swap area appeared"
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    _interrupted(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    assert sorted(Path("/sys/block").glob("zram*")) == devices
    assert Path("/proc/swaps").read_text() == swaps
    assert not list(ks._own_memcg().glob(f"pyzram-bench-{p.pid}-*"))


def _narrow(*argv: str) -> str:
    """``pyzram ARGV`` piped, at 80 columns: its stdout."""
    r = _pyzram(*argv, env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def _fits(out: str) -> None:
    assert "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out


def test_store_fits_80_columns():
    """Full field names, and the kernel's mm_stat line whole on a line of its own."""
    out = _narrow("store", "--limit", "200")
    _fits(out)
    doc = json.loads(_narrow("store", "--limit", "200", "--json"))
    assert doc["mm_stat_text"].rstrip("\n") in out.splitlines()
    for name in MmStat._fields:
        assert f" {name} " in out, name
    assert "data ratio (orig_data_size / compr_data_size): " in out
    assert "memory ratio (orig_data_size / mem_used_total): " in out


def test_bench_table_fits_80_columns_piped():
    """Piped, the bench's one table takes the console's width (80 here): cells fold,
    nothing is cut."""
    out = _narrow("bench", "--tiny", "--no-kernel")
    _fits(out)
    assert "met?" in out and "ratio" in out


def test_run_fits_80_columns_and_names_its_ratios():
    out = _narrow("run", "--limit", "300", "--mem-limit", "300K", "--accesses", "300")
    assert "data ratio (orig_data_size / compr_data_size)" in out
    assert "memory ratio (orig_data_size / mem_used_total)" in out
    lines = out.splitlines()
    mm = lines[lines.index("mm_stat:") + 1] if "mm_stat:" in lines else None
    mm = mm or next(line for line in lines if line.startswith("mm_stat: "))[9:]
    assert len(mm.split()) == 9


@pytest.mark.kernel
@pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")
def test_validate_fits_80_columns():
    """Six steps do not fit 80 columns: the table splits, every name in full."""
    out = _narrow("validate", "--limit", "200", "-a", "lz4")
    _fits(out)
    for name in (*MmStat._fields, "mem_used_max", "mem_limit", "overwrite", "compact"):
        assert f" {name} " in out, name
