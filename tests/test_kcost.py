"""The kernel's predicted CPU cost of a run (``pyzram.tools.kcost``)."""

from __future__ import annotations

import numpy as np
import pytest

from pyzram.tools import kcost
from pyzram.tools.commands.run import run_workload
from pyzram.workload.pages import synthetic_mix
from test_swap_core import swap_env  # noqa: F401  (autouse: fresh swap state, sio checks)

SMALL = dict(mem_limit_pages=64, accesses=600)


def test_counts_are_the_pages_through_the_device_and_the_major_faults():
    pages = synthetic_mix(400, seed=3)
    r = run_workload(pages, algorithm="lz4", **SMALL)
    cpu = r.kernel_cpu
    assert cpu["compressed_pages"] == r.vmstat["pswpout"] > 0
    assert cpu["decompressed_pages"] == r.vmstat["pswpin"] > 0
    assert cpu["major_faults"] == r.vmstat["pgmajfault"]
    assert cpu["compress_us_per_page"] > 0 and cpu["decompress_us_per_page"] > 0
    parts = cpu["compress_s"] + cpu["decompress_s"] + cpu["recompress_s"] + cpu["fault_s"]
    assert r.predicted_kernel_cpu_s == cpu["seconds"] == parts


def test_same_filled_pages_cost_no_codec_time():
    pages = np.zeros((300, 4096), dtype=np.uint8)
    pages[:, :] = np.arange(300, dtype=np.uint8)[:, None]  # each page one repeated byte
    r = run_workload(pages, algorithm="lz4", **SMALL)
    cpu = r.kernel_cpu
    assert cpu["compressed_pages"] > 0
    assert cpu["compress_us_per_page"] == cpu["decompress_us_per_page"] == 0.0
    assert r.predicted_kernel_cpu_s == cpu["fault_s"]


def test_a_slower_codec_is_predicted_slower():
    pages = synthetic_mix(300, seed=5, mix={"text": 1.0})
    fast = run_workload(pages, algorithm="lz4", **SMALL).kernel_cpu
    slow = run_workload(pages, algorithm="lz4hc", **SMALL).kernel_cpu
    assert slow["compressed_pages"] == fast["compressed_pages"]
    assert slow["compress_us_per_page"] > 2 * fast["compress_us_per_page"]


def _folio(offset: int, nr_pages: int = 1):
    """A folio as the sampler sees one: its page count and its first swap slot."""
    from types import SimpleNamespace

    return SimpleNamespace(swap=SimpleNamespace(offset=offset), nr_pages=nr_pages)


def _by_slot(pages: list[bytes]):
    """Samplers over ``pages``, slot ``i`` holding page ``i``."""
    ids = np.arange(len(pages), dtype=np.int64)
    return lambda seed: kcost.PageSampler(ids, ids, pages.__getitem__, seed)


def test_sampler_keeps_a_bounded_sample_and_counts_every_page():
    pages = [bytes([i % 251]) * 4096 for i in range(kcost.SAMPLE * 3)]
    s = _by_slot(pages)(1)
    for i in range(len(pages)):
        s.add(_folio(i))
    assert s.seen == kcost.SAMPLE * 3 and len(s.pages) == kcost.SAMPLE
    assert {p[0] for p in s.pages} != {p[0] for p in s.pages[:1]}
    assert all(p in pages for p in s.pages)  # each kept page is named, then read back


def test_sampler_keeps_each_page_with_the_same_chance():
    """The reservoir is uniform: over many seeds, the pages of the first, middle and
    last thirds of a stream are kept about equally often (each SAMPLE / n)."""
    n, seeds = kcost.SAMPLE * 8, 60
    pages = [i.to_bytes(4, "little") * 1024 for i in range(n)]
    thirds = [0, 0, 0]
    for seed in range(seeds):
        s = _by_slot(pages)(seed)
        for i in range(n):
            s.add(_folio(i))
        assert s.seen == n and len(s.pages) == kcost.SAMPLE
        for p in s.pages:
            thirds[min(2, int.from_bytes(p[:4], "little") * 3 // n)] += 1
    expected = seeds * kcost.SAMPLE / 3
    assert all(abs(t - expected) < 0.06 * expected for t in thirds), thirds


@pytest.mark.parametrize("folio_pages", [1, 8, 512])
def test_a_batch_keeps_the_pages_its_folios_would(folio_pages):
    """Pages given in large folios and in batches of them are kept as the same pages
    given one by one: ``add`` passes over a folio's pages to the next one kept."""
    from types import SimpleNamespace

    n = kcost.SAMPLE * 40
    pages = [i.to_bytes(4, "little") * 1024 for i in range(n)]
    one, batched = _by_slot(pages)(7), _by_slot(pages)(7)
    kept = []
    for p in pages:  # Algorithm L page by page on the same schedule, the reference
        one.seen += 1
        if len(kept) < kcost.SAMPLE:
            kept.append(p)
        elif one.seen == one._next:
            kept[one._slot[one._i]] = p
            one._i += 1
            if one._i == kcost.SCHEDULE:
                one._schedule(one._next)
            else:
                one._next = one._at[one._i]
    folios = [_folio(lo, folio_pages) for lo in range(0, n, folio_pages)]
    for lo in range(0, len(folios), 32):
        batched.add_batch(SimpleNamespace(bvecs=folios[lo : lo + 32]))
    assert batched.seen == one.seen == n
    assert batched.pages == kept


@pytest.mark.parametrize(
    "kw,path",
    [
        ({"folio_order": 0}, None),
        ({"folio_order": 4}, None),
        ({"folio_order": 9, "mem_limit_pages": 1024}, "thp_swpout"),
        ({"io_path": "bio"}, None),
        ({"backing": True, "writeback": "huge_idle", "pp_every": 4}, "bd_reads"),
        (
            {"zswap": "lzo", "zswap_params": {"max_pool_percent": "1"}, "totalram_pages": 16_384},
            "zswpwb",
        ),
    ],
    ids=["order0", "order4", "thp", "bio", "backing", "zswap-writeback"],
)
def test_a_run_names_each_page_by_the_bytes_it_passes_with(monkeypatch, tmp_path, kw, path):
    """In ``pyzram run`` the samplers keep pages by name, the source page each one's
    bytes are a copy of (``exp`` of the page whose PTE holds its slot): every
    page of every folio through ``submit_write`` (before it) and ``submit_read``
    (after it) holds the bytes of the page its name gives, writes to swapped
    pages included, on each way a page takes to the device and back (PMD THPs,
    bios, reads from the backing device, zswap's writeback)."""
    seen = []

    class Checking(kcost.PageSampler):
        def add(self, folio):
            for j in range(folio.nr_pages):
                named = bytes(self.page_of(self.name(folio, j)))
                seen.append(named == bytes(folio.page(j)))
            super().add(folio)

    monkeypatch.setattr(kcost, "PageSampler", Checking)
    kw = dict(SMALL, write_ratio=0.5, **kw)
    if kw.pop("backing", False):
        bd = tmp_path / "backing.img"
        bd.write_bytes(bytes(4 << 20))
        kw["backing_dev"] = str(bd)
    pages = synthetic_mix(1536 if kw.get("folio_order") == 9 else 512, seed=11)
    r = run_workload(pages, algorithm="lz4", **kw)
    v = r.vmstat
    assert r.intact and v["pswpin"] > 0
    assert len(seen) == v["pswpout"] + v["pswpin"] and all(seen)
    if path == "bd_reads":
        assert int(r.bd_stat.split()[1]) > 0  # read back through the backing device
    elif path is not None:
        assert v[path] > 0
