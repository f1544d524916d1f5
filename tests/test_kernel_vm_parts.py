"""The VM oracle's host-side parts that need no qemu: the cpio writer, result parsing, apt."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
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


def test_crypto_compressors_from_the_kconfig():
    text = (
        "CONFIG_ZSWAP=y\nCONFIG_CRYPTO_LZO=y\nCONFIG_CRYPTO_LZ4=m\n"
        "# CONFIG_CRYPTO_LZ4HC is not set\nCONFIG_CRYPTO_ZSTD=m\nCONFIG_CRYPTO_DEFLATE=m\n"
    )
    assert kv.kconfig_crypto_compressors(text) == ("lzo", "lzo-rle", "lz4", "zstd", "deflate")
    assert kv.kconfig_crypto_compressors(text.replace("CONFIG_ZSWAP=y", "")) == ()


def test_swap_header_is_what_mkswap_writes():
    h = kv.swap_header(16384)
    assert len(h) == kv.PAGE_SIZE and h[-10:] == b"SWAPSPACE2"
    assert int.from_bytes(h[1024:1028], "little") == 1  # version
    assert int.from_bytes(h[1028:1032], "little") == 16383  # last_page


def test_zswap_pageout_counters_are_deltas_of_the_guest_texts():
    """The commands VmZswap records, and its result from a console log written here."""
    from pyzram.mm.zswap import DEBUGFS_FILES

    s = kv.VmScript()
    z = kv.VmZswap(s, compressor="zstd", disksize=1 << 20)
    res = z.pageout(np.zeros((3, kv.PAGE_SIZE), dtype=np.uint8), read_back=True)
    z.remove()
    lines = [ln.split()[0] for ln in s.lines]
    assert lines[:6] == ["add", "w", "w", "pw", "close", "swapon"]
    assert s.lines[5] == "swapon - 65535" and s.lines[-2] == "swapoff -"
    params = [bytes.fromhex(ln.split()[1]).decode() for ln in s.lines if ln.startswith("W ")]
    assert params[0].endswith("/compressor") and params[1].endswith("/enabled")

    def text(p, t: str) -> str:
        return f"@@ {p.seq} hex {t.encode().hex()}"

    stored = iter([0, 2, 0])  # before, after MADV_PAGEOUT, after the read-back
    zswpout = iter([10, 12, 12])
    log = []
    for p, line in zip(s.pendings, s.lines, strict=True):
        cmd, *args = line.split()
        path = bytes.fromhex(args[0]).decode() if cmd == "R" else ""
        if cmd == "R" and path.endswith("/stored_pages"):
            log.append(text(p, f"{next(stored)}\n"))
        elif cmd == "R" and path.startswith(kv.ZSWAP_DEBUGFS_DIR):
            log.append(text(p, "0\n"))
        elif cmd == "R" and path == "/proc/vmstat":
            log.append(text(p, f"nr_free_pages 5\nzswpout {next(zswpout)}\nswpout_zero 1\n"))
        elif cmd == "R" and path == "/proc/meminfo":
            log.append(text(p, "MemTotal: 1000 kB\nZswap: 8 kB\nZswapped: 8 kB\n"))
        elif cmd == "R":
            log.append(text(p, "zstd\n"))
        else:  # map, madv, cmp (no page differs), unmap, writes, swapon ...
            log.append(f"@@ {p.seq} ok 0")
    kv._parse_results(s, "\n".join(log) + "\n@@ end\n")
    v = res.value
    assert len(DEBUGFS_FILES) == len(v["debugfs"]) and v["debugfs"]["stored_pages"] == 2
    assert v["vmstat"]["zswpout"] == 2 and v["vmstat"]["pswpout"] == 0
    assert v["compressor"] == "zstd" and v["read_back_equal"] and v["pages"] == 3
    assert v["meminfo"] == {"Zswap": 8, "Zswapped": 8}
    assert v["debugfs_read_back"]["stored_pages"] == 0

    # The guest refused the compressor: the result names the step.
    write = next(p for p, ln in zip(s.pendings, s.lines, strict=True) if ln.startswith("W "))
    write.raw = ("err", 2)
    with pytest.raises(OSError) as e:
        _ = res.value
    assert e.value.errno == 2 and "write compressor" in str(e.value)
