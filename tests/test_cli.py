"""The pyzram command: output, JSON, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pyzram.host.kernel_zram import unavailable_reason
from pyzram.tools.cli import main
from pyzram.workload.pages import synthetic_mix, write_page_file


def test_store_json(tmp_path, capsys):
    f = tmp_path / "mix.pages"
    write_page_file(f, synthetic_mix(300, seed=2))
    assert main(["store", str(f), "--algorithm", "lz4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pages"] == 300
    assert out["mm_stat"]["orig_data_size"] == 300 * 4096
    assert out["mm_stat_text"].count(" ") >= 8


def test_store_default_corpus_table(capsys):
    assert main(["store", "--limit", "200"]) == 0
    out = capsys.readouterr().out
    assert "mem_used_total" in out and "embedded default corpus" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["store", "/nonexistent.pages"], "No such file"),
        (["store", "--algorithm", "bogus", "--limit", "10"], "unknown algorithm 'bogus'"),
        (["store", "--algorithm", "842", "--limit", "10"], "not available (EINVAL)"),
        (["snapshot", "-o", "/tmp/x.pages"], "exactly one of PID or --spawn"),
        (["snapshot", "999999999", "-o", "/tmp/x.pages"], "error"),
    ],
)
def test_errors_are_one_line(argv, needle, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_page_file_size(tmp_path, capsys):
    f = tmp_path / "bad.pages"
    f.write_bytes(b"x" * 5000)
    assert main(["store", str(f)]) == 1
    assert "4096" in capsys.readouterr().err


def test_python_dash_m():
    r = subprocess.run(
        [sys.executable, "-m", "pyzram", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0
    for cmd in ("store", "validate", "snapshot", "bench"):
        assert cmd in r.stdout


@pytest.mark.kernel
@pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")
def test_validate_json(capsys):
    assert main(["validate", "--limit", "300", "--algorithm", "lz4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["equal"] and out[0]["algorithm"] == "lz4"
    assert [s["step"] for s in out[0]["steps"]][0] == "write"


def test_snapshot_spawn(tmp_path, capsys):
    f = tmp_path / "py.pages"
    assert main(["snapshot", "-o", str(f), "--spawn", "python"]) == 0
    assert f.stat().st_size % 4096 == 0 and f.stat().st_size > 0


def test_explore_json(capsys):
    assert main(["explore", "--list"]) == 0
    assert "read_vs_idle_writeback: legacy, one_section" in capsys.readouterr().out
    argv = ["explore", "--scenario", "read_vs_idle_writeback", "--variant", "legacy", "--json"]
    assert main(argv) == 0
    (finding,) = json.loads(capsys.readouterr().out)
    assert finding["race_found"] and finding["minimal_schedule"]
    assert main(["explore", "--scenario", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def _vm_reason() -> str | None:
    from pyzram.host import kernel_vm

    return kernel_vm.unavailable_reason()


@pytest.mark.vm
def test_validate_kernel_vm_json(capsys):
    reason = _vm_reason()
    if reason:
        pytest.skip(reason)
    assert (
        main(["validate", "--kernel", "vm", "--limit", "120", "--algorithm", "zstd", "--json"]) == 0
    )
    (out,) = json.loads(capsys.readouterr().out)
    assert out["equal"] and out["algorithm"] == "zstd" and out["pages"] == 120
    assert [s["step"] for s in out["steps"]][0] == "write"
    assert out["steps"][0]["kernel"]["orig_data_size"] > 0
    assert main(["validate", "--kernel", "vm", "--limit", "10", "--algorithm", "lzo"]) == 1
    assert "no lzo backend" in capsys.readouterr().err


@pytest.mark.vm
def test_validate_zswap_kernel_vm_json(capsys):
    reason = _vm_reason()
    if reason:
        pytest.skip(reason)
    argv = ["validate", "--zswap", "--kernel", "vm", "--limit", "200", "-a", "zstd", "-a", "lz4"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["algorithm"] for r in out] == ["zstd", "lz4"]
    for r in out:
        assert r["equal"] and r["read_back_equal"] and r["pages"] == 200
        assert r["kernel"].startswith("vm 6.18")
        fields = {f["field"]: f for f in r["fields"]}
        assert fields["debugfs stored_pages"]["kernel"] > 0
        assert all(f["pyzram"] == f["kernel"] for f in r["fields"])
    assert main(["validate", "--zswap", "--kernel", "vm", "--limit", "10", "-a", "842"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyzram: error: --algorithm: ") and "zstd" in err
