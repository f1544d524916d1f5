"""Tests for pyzram.workload.pages: page files, synthetic mixes, files, live snapshots."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pyzram.workload import pages as P
from pyzram.workload.pages import (
    MIX_KINDS,
    PAGE_SIZE,
    SYNTHETIC_KINDS,
    anonymous_mappings,
    default_corpus,
    file_pages,
    mix_pages,
    parse_mix,
    read_page_file,
    snapshot_process,
    spawn_workload,
    synthetic_mix,
    synthetic_mix_with_kinds,
    write_page_file,
)


def same_filled(pages: np.ndarray) -> np.ndarray:
    """zram's rule: all 512 native u64 words of the page are equal."""
    w = pages.view("<u8")
    return (w == w[:, :1]).all(axis=1)


# -- page files --------------------------------------------------------------------------


def test_page_file_round_trip(tmp_path):
    pages = synthetic_mix(37, seed=3)
    path = tmp_path / "x.pages"
    write_page_file(path, pages)
    assert path.stat().st_size == 37 * PAGE_SIZE
    back = read_page_file(path)
    assert back.shape == (37, PAGE_SIZE)
    assert back.dtype == np.uint8
    assert back.flags.c_contiguous
    assert not back.flags.writeable
    assert np.array_equal(back, pages)


def test_empty_page_file(tmp_path):
    path = tmp_path / "empty.pages"
    write_page_file(path, np.zeros((0, PAGE_SIZE), np.uint8))
    assert read_page_file(path).shape == (0, PAGE_SIZE)


@pytest.mark.parametrize("size", [1, 4095, 4097, 3 * PAGE_SIZE - 8])
def test_bad_page_file_size(tmp_path, size):
    path = tmp_path / "bad.pages"
    path.write_bytes(b"\1" * size)
    with pytest.raises(OSError) as ei:
        read_page_file(path)
    assert ei.value.errno == errno.EINVAL
    assert "multiple of 4096" in str(ei.value)


def test_write_page_file_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError):
        write_page_file(tmp_path / "x", np.zeros((2, 100), np.uint8))
    with pytest.raises(ValueError):
        write_page_file(tmp_path / "x", np.zeros((2, PAGE_SIZE), np.uint16))


# -- synthetic ---------------------------------------------------------------------------


def test_synthetic_shape_and_determinism():
    a = synthetic_mix(500)
    b = synthetic_mix(500, seed=7)
    c = synthetic_mix(500, seed=8)
    assert a.shape == (500, PAGE_SIZE) and a.dtype == np.uint8 and a.flags.c_contiguous
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert synthetic_mix(0).shape == (0, PAGE_SIZE)


def test_synthetic_proportions():
    n = 2000
    pages, kinds = synthetic_mix_with_kinds(n)
    counts = {k: int((kinds == k).sum()) for k in np.unique(kinds)}
    assert sum(counts.values()) == n
    for kind, share in SYNTHETIC_KINDS.items():
        if kind in ("text", "struct"):
            continue
        assert counts[kind] == int(n * share), kind
    assert counts["near_same"] == n // 100
    assert counts["struct"] + counts["near_same"] == int(n * 0.10)
    assert 0.24 <= counts["text"] / n <= 0.26
    # Shuffled: the categories are not in blocks.
    assert len(set(kinds[:100].tolist())) >= 5


def test_synthetic_same_filled_rule():
    n = 2000
    pages, kinds = synthetic_mix_with_kinds(n)
    same = np.array([(p.view("<u8") == p.view("<u8")[0]).all() for p in pages])
    assert np.array_equal(same, same_filled(pages))
    zero = ~pages.any(axis=1)
    assert zero.sum() == int(n * 0.25)
    assert np.array_equal(zero, kinds == "zero")
    assert np.array_equal(same, (kinds == "zero") | (kinds == "same"))
    assert same.mean() == pytest.approx(0.35, abs=0.001)
    # Every non-zero same-filled pattern is present.
    firsts = {int(w) for w in pages[kinds == "same"].view("<u8")[:, 0]}
    for pattern in (0xFFFFFFFFFFFFFFFF, 0x0101010101010101, 0xDEADBEEFDEADBEEF, 0x3F8000003F800000):
        assert pattern in firsts
    # Near-same pages look periodic but are not same-filled; some have a 16-byte period.
    near = pages[kinds == "near_same"]
    assert len(near) == 20 and not same_filled(near).any()
    w = near.view("<u8")
    period16 = (w[:, 0::2] == w[:, :1]).all(axis=1) & (w[:, 1::2] == w[:, 1:2]).all(axis=1)
    assert period16.any()


def test_synthetic_near_huge_and_random():
    pages, kinds = synthetic_mix_with_kinds(1000, seed=1)
    near = pages[kinds == "near_huge"]
    last_nonzero = np.array([np.flatnonzero(p).max() for p in near])
    assert (last_nonzero < 3700).all() and (last_nonzero >= 3500).all()
    lz4 = pytest.importorskip("lz4.block")
    sizes = [len(lz4.compress(p.tobytes(), store_size=False)) for p in near]
    assert 3400 <= min(sizes) and max(sizes) <= 3800
    assert min(sizes) < 3625 <= max(sizes)  # straddles zram's huge_class_size
    rand = pages[kinds == "random"]
    assert all(len(lz4.compress(p.tobytes(), store_size=False)) > 4096 for p in rand[:20])


def test_synthetic_text_is_text():
    pages, kinds = synthetic_mix_with_kinds(400, seed=2)
    text = pages[kinds == "text"]
    printable = (text >= 9) & (text < 127)
    assert printable.mean() > 0.95
    tail = pages[kinds == "text_tail"]
    assert (tail[:, -256:] == 0).all()


# -- files -------------------------------------------------------------------------------


def test_file_pages(tmp_path):
    sizes = {"a": 0, "b": 1, "c": PAGE_SIZE, "d": 5000}
    paths = []
    for name, size in sizes.items():
        p = tmp_path / name
        p.write_bytes(bytes((i * 7 + 1) % 251 + 1 for i in range(size)))
        paths.append(p)
    pages = file_pages(paths)
    assert pages.shape == (4, PAGE_SIZE)
    assert pages[0, 0] != 0 and not pages[0, 1:].any()
    assert pages[1].all()
    assert pages[2, : 5000 - PAGE_SIZE].all() and not pages[3, 5000 - PAGE_SIZE :].any()
    assert np.array_equal(pages[2:].reshape(-1)[:5000], np.frombuffer(paths[3].read_bytes(), "u1"))
    assert file_pages(paths, limit=2).shape == (2, PAGE_SIZE)
    assert np.array_equal(file_pages(tmp_path), pages)  # a directory: its files, sorted
    assert file_pages([]).shape == (0, PAGE_SIZE)


def test_default_corpus():
    a = default_corpus(512)
    assert a.shape == (512, PAGE_SIZE) and a.flags.c_contiguous
    assert np.array_equal(a, default_corpus(512))
    same = same_filled(a)
    assert 0.15 < same.mean() < 0.35


# -- configurable mixes ------------------------------------------------------------------


def test_parse_mix():
    text = "zero=0.1, same=0.05,text=0.3,random=0.1,binary=0.45"
    assert parse_mix(text) == {
        "zero": 0.1,
        "same": 0.05,
        "text": 0.3,
        "random": 0.1,
        "binary": 0.45,
    }
    assert parse_mix("near_huge=1") == {"near_huge": 1.0}
    assert set(MIX_KINDS) == {*SYNTHETIC_KINDS, "near_same", "binary"}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("", "empty page mix"),
        ("zero", "want KIND=SHARE"),
        ("=0.5,text=0.5", "want KIND=SHARE"),
        ("zeros=1", "unknown page kind 'zeros'"),
        ("zero=0.5,zero=0.5", "named twice"),
        ("zero=x,text=1", "number from 0 to 1"),
        ("zero=-0.5,text=1.5", "number from 0 to 1"),
        ("zero=0.5,text=0.4", "add up to 0.9, not 1"),
    ],
)
def test_parse_mix_errors(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_mix(text)


def test_synthetic_custom_mix_counts_and_determinism():
    mix = parse_mix("zero=0.1,same=0.05,text=0.3,random=0.1,binary=0.45")
    pages, kinds = synthetic_mix_with_kinds(1001, seed=3, mix=mix)
    counts = {k: int((kinds == k).sum()) for k in np.unique(kinds)}
    # floor(n * share), the one page left over to the largest fractional part (binary .45)
    assert counts == {"zero": 100, "same": 50, "text": 300, "random": 100, "binary": 451}
    assert np.array_equal(pages, synthetic_mix(1001, seed=3, mix=mix))
    assert not np.array_equal(pages, synthetic_mix(1001, seed=4, mix=mix))
    assert np.array_equal(np.flatnonzero(~pages.any(axis=1)), np.flatnonzero(kinds == "zero"))
    assert not same_filled(pages[kinds == "random"]).any()
    # no mix is the default mix, unchanged
    assert np.array_equal(synthetic_mix(300), synthetic_mix(300, mix=None))
    with pytest.raises(ValueError, match="add up to 1"):
        synthetic_mix(10, mix={"zero": 0.5})


def test_binary_pages_are_pages_of_real_binaries():
    pages, kinds = synthetic_mix_with_kinds(40, seed=1, mix={"binary": 1.0})
    assert (kinds == "binary").all()
    blob = P._binary_blob()
    whole = blob[: len(blob) // PAGE_SIZE * PAGE_SIZE].reshape(-1, PAGE_SIZE)
    index = {whole[i].tobytes(): i for i in range(len(whole))}
    assert all(p.tobytes() in index for p in pages)
    assert blob[:4].tobytes() == b"\x7fELF"  # the interpreter's executable comes first
    lz4 = pytest.importorskip("lz4.block")
    sizes = [len(lz4.compress(p.tobytes(), store_size=False)) for p in pages]
    assert 100 < np.median(sizes) < 4000  # compressible, unlike random bytes


@pytest.mark.parametrize("mix", [None, {k: 1 / len(MIX_KINDS) for k in MIX_KINDS}])
def test_a_mix_made_page_by_page_is_the_mix_as_one_array(mix):
    src = mix_pages(2000, seed=5, mix=mix)
    pages, kinds = synthetic_mix_with_kinds(2000, seed=5, mix=mix)
    assert len(src) == 2000 and np.array_equal(src.kinds, kinds)
    for i in range(len(src)):
        page = src[i]
        assert page.shape == (PAGE_SIZE,) and not page.flags.writeable
        assert np.array_equal(page, pages[i]), (i, kinds[i])
    assert np.array_equal(src[np.int64(7)], pages[7]) and np.array_equal(src[-1], pages[-1])
    assert np.array_equal(src[100:140:3], pages[100:140:3])
    with pytest.raises(IndexError):
        src[2000]


def test_a_mix_holds_only_the_pages_that_exist_as_themselves():
    """Text and binary pages are windows of their blobs, zero pages one page: a mix
    of them holds a small part of its pages' bytes; random bytes are held whole."""
    import tracemalloc

    P._text_blob(), P._binary_blob()  # the blobs, made once per process

    def held(mix: dict[str, float]) -> int:
        tracemalloc.start()
        try:
            src = mix_pages(8192, seed=1, mix=mix)
            size, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(src) == 8192
        return size

    pages_bytes = 8192 * PAGE_SIZE
    assert held({"zero": 0.2, "text": 0.3, "text_tail": 0.1, "binary": 0.4}) < pages_bytes // 50
    assert held({"random": 0.5, "text": 0.5}) > pages_bytes // 2


# -- live processes ----------------------------------------------------------------------

# The child builds the marker at run time (reversed), so its bytes only appear in the
# snapshot if the bytearray's pages were really read.
_MARKER = b"pyzram-snapshot-marker-0123456789"
_CHILD = f"""
import sys
marker = {_MARKER[::-1]!r}[::-1]
buf = bytearray(marker * (4 * 1024 * 1024 // len(marker)))
sys.stdout.write("READY\\n"); sys.stdout.flush()
sys.stdin.read()
"""


def _wait_blocked(pid: int, timeout: float = 5.0) -> None:
    """Wait until the child sleeps (in its stdin read), so its memory stops changing."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 3 and time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        streak = streak + 1 if stat[stat.rfind(b")") + 2 :][:1] == b"S" else 0
        time.sleep(0.01)


@pytest.fixture
def marker_child():
    proc = subprocess.Popen(
        [sys.executable, "-S", "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout.readline() == b"READY\n"
        _wait_blocked(proc.pid)
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def test_snapshot_finds_marker(marker_child):
    maps = anonymous_mappings(marker_child.pid)
    assert maps and all(m.perms[1] == "w" and m.perms[3] == "p" for m in maps)
    assert any(m.path == "[stack]" for m in maps)
    assert not any(m.path.startswith("/") or m.path in ("[vdso]", "[vvar]") for m in maps)
    snap = snapshot_process(marker_child.pid)
    assert snap.ndim == 2 and snap.shape[1] == PAGE_SIZE and snap.dtype == np.uint8
    assert len(snap) > 4 * 1024 * 1024 // PAGE_SIZE
    assert _MARKER in snap.tobytes()
    # Nearly all of the 4 MiB bytearray is there (1024 pages hold the marker).
    pages_with_marker = sum(_MARKER[:16] in p.tobytes() for p in snap)
    assert pages_with_marker >= 1000
    assert snapshot_process(marker_child.pid, limit=10).shape == (10, PAGE_SIZE)
    assert np.array_equal(snapshot_process(marker_child.pid, limit=10), snap[:10])


def test_snapshot_dead_pid():
    proc = subprocess.Popen([sys.executable, "-S", "-c", "pass"])
    proc.wait()
    with pytest.raises(OSError) as ei:
        snapshot_process(proc.pid)
    assert ei.value.errno in (errno.ESRCH, errno.ENOENT)


def test_snapshot_zombie():
    proc = subprocess.Popen([sys.executable, "-S", "-c", "pass"])
    try:
        # Wait for it to exit without reaping it.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with pytest.raises(OSError) as ei:
            snapshot_process(proc.pid)
        assert ei.value.errno in (errno.ESRCH, errno.ENOENT)
    finally:
        proc.wait()


def test_spawn_workload_python():
    with spawn_workload("python", scale=0.05) as proc:
        assert proc.poll() is None
        snap = snapshot_process(proc.pid)
    assert proc.poll() is not None  # killed and reaped
    assert len(snap) > 1000
    assert b"@example.org" in snap.tobytes()


@pytest.mark.skipif("sqlite" not in P.WORKLOAD_KINDS, reason="no sqlite3 module")
def test_capture_sqlite():
    t = time.monotonic()
    snap = P.capture("sqlite", scale=0.02, limit=5000)
    assert time.monotonic() - t < 30
    assert 0 < len(snap) <= 5000
    assert b"SQLite format" in snap.tobytes() or b"example.com" in snap.tobytes()


def test_spawn_workload_unknown_kind():
    with pytest.raises(ValueError), spawn_workload("nope"):
        pass
