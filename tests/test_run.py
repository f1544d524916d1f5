"""pyzram run / compare: a workload larger than its memory limit through swap on zram."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from pyzram.tools.cli import main
from pyzram.tools.commands.run import run_workload
from pyzram.workload.pages import mix_pages, synthetic_mix, write_page_file


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


def test_a_mix_made_on_demand_runs_as_its_array_does():
    """``run --mix`` takes its pages from a :class:`MixPages`: the same run, to the
    counter, as from the same pages in one array."""
    src = mix_pages(400, seed=5)
    kw = {"mem_limit_pages": 100, "accesses": 800, "seed": 3, "write_ratio": 0.3}
    a, b = run_workload(src, **kw), run_workload(np.asarray(src), **kw)
    assert a.intact and b.intact
    assert (a.mm_stat, a.vmstat, a.io_stat) == (b.mm_stat, b.vmstat, b.io_stat)


def test_a_mix_made_on_demand_is_never_made_whole(monkeypatch):
    """A run reads a :class:`MixPages` page by page: the pages are never made as one
    array (a million of them would be 4 GiB beside the model's memory)."""
    from pyzram.workload.pages import MixPages

    def whole(self, dtype=None, copy=None):
        raise AssertionError("the whole mix was made")

    monkeypatch.setattr(MixPages, "__array__", whole)
    r = run_workload(mix_pages(200, seed=5), mem_limit_pages=64, accesses=300, seed=1)
    assert r.intact and r.vmstat["pswpout"] > 0


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
    assert main(["run", "--limit", "50", "--mem-limit", "lots"]) == 2  # a usage error
    assert "bad size" in capsys.readouterr().err
    assert main(["run", "--limit", "50", "--io-path", "nvme"]) == 2
    assert "--io-path: must be swap_ops or bio" in capsys.readouterr().err


def test_run_plot_png(tmp_path, capsys):
    png = tmp_path / "run.png"
    argv = ["run", "--limit", "1500", "--mem-limit", "1M", "--accesses", "2000", "--plot", str(png)]
    assert main(argv) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1200  # width
    assert int.from_bytes(data[20:24], "big") == 900  # height
    assert main(["run", "--limit", "1", "--accesses", "0", "--plot", str(png)]) == 1
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


def test_run_large_folios_report_mthp_stats():
    pages = synthetic_mix(512, seed=6)
    r = run_workload(pages, mem_limit_pages=128, accesses=400, seed=2, folio_order=4)
    assert r.intact and r.folio_order == 4
    stats = r.mthp["hugepages-64kB"]
    assert stats["anon_fault_alloc"] == 512 // 16
    assert stats["swpout"] > 0 and stats["swpin"] > 0
    assert r.vmstat["pswpout"] >= 16 * stats["swpout"]
    assert r.vmstat["thp_swpout"] == 0  # not PMD-size


def test_run_post_processing_writes_back_and_recompresses(tmp_path):
    bd = tmp_path / "backing.img"
    bd.write_bytes(bytes(4 << 20))
    pages = synthetic_mix(600, seed=7)
    r = run_workload(
        pages,
        mem_limit_pages=150,
        accesses=600,
        backing_dev=str(bd),
        writeback="huge_idle",
        recompress_algo="zstd",
        pp_every=15,
        seed=3,
    )
    assert r.intact
    assert len(r.post_processing) >= 2
    ev = r.post_processing[0]
    assert ev["reclaim_batches"] >= 15 and ev["recompress"]["request"] == "type=idle"
    assert ev["writeback"]["request"] == "huge_idle"
    bd_count, bd_reads, bd_writes = (int(x) for x in r.bd_stat.split())
    assert r.written_back_pages == bd_writes > 0
    assert bd_reads > 0  # written-back pages came back through the backing device
    assert r.recompressed_pages > 0
    rec = [e["recompress"] for e in r.post_processing]
    assert any(s["compr_data_size_after"] < s["compr_data_size_before"] for s in rec)


def test_run_post_processing_once_at_the_end(tmp_path):
    bd = tmp_path / "backing.img"
    bd.write_bytes(bytes(4 << 20))
    pages = synthetic_mix(300, seed=8)
    r = run_workload(pages, mem_limit_pages=64, accesses=200, backing_dev=str(bd), writeback="huge")
    (ev,) = r.post_processing
    assert ev["access"] == 300 + 200 and "recompress" not in ev
    assert ev["writeback"]["pages"] == r.written_back_pages > 0 and r.intact


@pytest.mark.parametrize(
    "kw,exc,needle",
    [
        ({"writeback": "idle"}, ValueError, "backing device"),
        ({"writeback": "cold", "backing_dev": "/x"}, ValueError, "writeback mode"),
        ({"recompress": "type=idle"}, ValueError, "secondary algorithm"),
        ({"pp_every": -1}, ValueError, "negative"),
        ({"folio_order": 10}, ValueError, "folio order"),
        ({"recompress_algo": "nope"}, OSError, ""),
        ({"recompress_algo": "zstd", "recompress": "threshold=x"}, OSError, ""),
        ({"recompress_algo": "zstd", "idle_age": "soon"}, OSError, "idle"),
    ],
)
def test_run_policy_errors(kw, exc, needle):
    with pytest.raises(exc, match=needle or None) as e:
        run_workload(synthetic_mix(64, seed=1), mem_limit_pages=32, accesses=10, **kw)
    if exc is OSError:
        assert e.value.errno == errno.EINVAL


def test_vmstat_and_rate_cover_the_workload_not_the_check():
    """The report's vmstat deltas and swapped pages/s are those of the fill and
    the pattern, as on the kernel side of ``bench run``: with no pattern at
    all, the final check still faults every swapped page back in, and none of
    that is counted."""
    pages = synthetic_mix(512, seed=5)
    r = run_workload(pages, algorithm="lz4", mem_limit_pages=128, accesses=0)
    assert r.intact and r.accesses == 0
    assert r.vmstat["pswpout"] > 0  # the fill swapped out
    assert r.vmstat["pgmajfault"] == 0 and r.vmstat["pswpin"] == 0  # the check did not count
    swapped = r.vmstat["pswpout"] + r.vmstat["pswpin"]
    assert r.swapped_pages_s == pytest.approx(swapped / r.seconds)
    assert r.read_batch_latency_us == {} and r.swapin_pages_s == 0.0  # no read batch counted


def test_a_run_is_repeatable_to_the_byte():
    """The same options give the same device, byte for byte: the swap header's UUID
    comes from the seed (a random one changes compr_data_size run to run)."""
    from pyzram.tools.commands.run import swap_uuid

    pages = synthetic_mix(512, seed=11)
    runs = [
        run_workload(pages, io_path="swap_ops", algorithm="lzo-rle", mem_limit_pages=64,
                     accesses=1024, seed=s)
        for s in (3, 3, 4)
    ]  # fmt: skip
    assert runs[0].mm_stat == runs[1].mm_stat and runs[0].vmstat == runs[1].vmstat
    assert swap_uuid(3) == swap_uuid(3) != swap_uuid(4) and len(swap_uuid(3)) == 16


_FREED_BACK = """
import ctypes, os
from pyzram.tools.common import frozen_heap

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
# glibc's default thresholds (128 KiB), which a fresh interpreter's history of freed
# blocks may have raised already: blocks of 2 MiB are mapped on their own, and more
# than 128 KiB free at the heap's top goes back to the host kernel
libc.mallopt(-3, 128 * 1024)
libc.mallopt(-1, 128 * 1024)

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = Mallinfo2

STATM = os.open("/proc/self/statm", os.O_RDONLY)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

def rss():
    # a file opened once, read into small objects: nothing from the C heap
    return int(os.pread(STATM, 128, 0).split()[1]) * PAGE_SIZE

def freed_by_dropping(nbytes):
    # C blocks, their addresses kept in an array made first (below them), so that
    # the top of the heap is the last block
    n = nbytes // (32 * 1024)
    blocks = (ctypes.c_void_p * n)()
    for i in range(n):
        blocks[i] = libc.malloc(32 * 1024)
        ctypes.memset(blocks[i], 1, 32 * 1024)  # resident
    before = rss()
    for i in reversed(range(n)):
        libc.free(blocks[i])
    return before - rss()

def mapped_of_thps(n):
    mapped = libc.mallinfo2().hblkhd
    blocks = [bytearray(2 << 20) for _ in range(n)]
    return (libc.mallinfo2().hblkhd - mapped) >> 20  # MiB mapped on their own

outside = freed_by_dropping(64 << 20)
thp_outside = mapped_of_thps(48)
with frozen_heap():
    inside = freed_by_dropping(64 << 20)
    thp_inside = mapped_of_thps(48)
after = freed_by_dropping(64 << 20)
thp_after = mapped_of_thps(48)
print(outside >> 20, inside >> 20, after >> 20, thp_outside, thp_inside, thp_after)
"""


def test_frozen_heap_keeps_the_memory_freed_inside_for_reuse():
    """From a measured window on, the C heap keeps what is freed (the folios reclaim
    frees hold the next ones' pages, as the kernel's free lists do; the next run
    in the process reuses them); before the first one, glibc gives the heap's
    free top back to the host kernel.  Measured in a fresh interpreter, whose
    heap top is the blocks just made (MiB given back by freeing 64 MiB of 32 KiB
    C blocks: before, inside and after a window, glibc's default thresholds set
    first).

    2 MiB buffers (PMD-size folios) come from the heap inside a window and after
    it, where a freed one's memory holds the next; with glibc's default
    threshold (set first) those the heap's free memory cannot hold are each
    mapped on its own, unmapped when freed and faulted in again (96 MiB of
    them, more than the heap has free; ``mallinfo2``'s MiB in mapped blocks)."""
    import ctypes
    import subprocess
    import sys

    if getattr(ctypes.CDLL(None), "mallopt", None) is None:
        pytest.skip("the C library has no mallopt (not glibc)")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
    }
    out = subprocess.run(
        [sys.executable, "-c", _FREED_BACK], env=env, capture_output=True, text=True, check=True
    ).stdout
    outside, inside, after, thp_outside, thp_inside, thp_after = map(int, out.split())
    assert outside > 48 and inside < 8 and after < 8, (outside, inside, after)
    assert thp_outside > 48 and thp_inside == 0 and thp_after == 0, (
        thp_outside,
        thp_inside,
        thp_after,
    )


def test_frozen_heap_freezes_until_the_outermost_use_ends():
    """A run's window freezes the interpreter's objects; a window inside another (a
    bench row's run) leaves them frozen for the outer one, which unfreezes them."""
    import gc

    from pyzram.tools.common import frozen_heap

    was_frozen = gc.get_freeze_count() > 0  # (a sweep worker's warm-up freezes for good)
    gc.unfreeze()
    try:
        with frozen_heap():
            outer = gc.get_freeze_count()
            assert outer > 0
            with frozen_heap():
                pass
            assert gc.get_freeze_count() >= outer
        assert gc.get_freeze_count() == 0
    finally:
        if was_frozen:
            gc.freeze()
