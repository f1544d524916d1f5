"""The VM oracle's host-side parts that need no qemu: the cpio writer, result parsing, apt."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pyzram.host import kernel_vm as kv


def test_newc_archive_lists_with_cpio(tmp_path):
    data = kv._newc([("d", 0o040755, b""), ("d/f", 0o100644, b"abc"), ("x", 0o100755, b"1" * 5)])
    assert data[:6] == b"070701" and len(data) % 4 == 0
    assert b"TRAILER!!!" in data
    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed")
    r = subprocess.run(["cpio", "-it"], input=data, capture_output=True, check=True)
    assert r.stdout.decode().split() == ["d", "d/f", "x"]
    out = tmp_path / "x"
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=tmp_path, check=True)
    assert (tmp_path / "d" / "f").read_bytes() == b"abc" and out.read_bytes() == b"11111"


def test_results_are_parsed_from_the_console():
    s = kv.VmScript()
    a = s.op("r mm_stat", lambda b: b.decode())
    b = s.op("w disksize 31")
    c = s.op("clock")
    log = "[    1.0] noise\r\n@@ 1 hex 300a\r\n@@ 2 err 16\r\n@@ 3 ok 12345\r\n@@ end\r\n"
    assert kv._parse_results(s, log)
    assert a.value == "0\n" and b.outcome == "EBUSY" and c.value == 12345
    with pytest.raises(OSError) as e:
        _ = b.value
    assert e.value.errno == 16


def test_apt_stays_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYZRAM_CACHE", str(tmp_path))
    root = kv._apt_root()
    opts = kv._apt_options(root)
    values = [opts[i + 1] for i, o in enumerate(opts) if o == "-o"]
    dirs = [v.split("=", 1)[1] for v in values if v.startswith("Dir::")]
    assert dirs and all(d.startswith(str(tmp_path)) for d in dirs)
    assert "trixie-backports" in (root / "sources.list").read_text()
