"""``pyzram bench`` (no subcommand): the one-table harness, in its tiny plan.

The tiny plan (a few hundred synthetic pages, no live capture, a 64 MiB
device for the memory rows, a 200 -> 2000 page curve) keeps these tests to
a few seconds; the host kernel is left out (``--no-kernel``), so no device
is created.  What is checked: the JSON schema, that every ratio is computed
from the row's own measured numbers in the documented direction, that
``met`` follows from ratio and goal, and that the figures move when a
measurement does (nothing is hard-coded).
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from pyzram.tools.bench import table as bench_all
from pyzram.tools.cli import main

ROW_KEYS = {"name", "ours", "ours_unit", "reference", "reference_what", "ratio", "goal", "met"}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One tiny run through the CLI, with --json, --markdown and --plot."""
    d = tmp_path_factory.mktemp("bench")
    md, png = d / "bench.md", d / "scaling.png"
    argv = ["bench", "--tiny", "--no-kernel", "--json", "--markdown", str(md)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([*argv, "--plot", str(png)])
    return rc, json.loads(out.getvalue()), md.read_text(), png


def _check_ratio(row: dict) -> None:
    ours, ref, ratio = row["ours"], row["reference"], row["ratio"]
    assert isinstance(ratio, float) and math.isfinite(ratio), row
    if row["better"] == "higher":
        assert ratio == pytest.approx(ours / ref), row
    else:
        want = ref / ours if ours > 0 else 1e6
        assert ratio == pytest.approx(min(want, 1e6)), row


def test_cli_json_schema(cli_run):
    rc, doc, _md, _png = cli_run
    assert rc == 0
    for k in ("date", "machine", "corpus", "pages", "plan", "algorithm", "rows", "scaling"):
        assert k in doc
    assert doc["plan"] == "tiny" and doc["algorithm"] == "lz4"
    rows = doc["rows"]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    for want in (
        "ops_vs_bio_out",
        "ops_vs_bio_in",
        "beyond_codec_core",
        "beyond_codec_submit_interpreted",
        "codec_lz4_c",
    ):
        assert want in keys
    for want in (
        "mem_per_slot", "create_16g", "scaling_200", "end_to_end", "write_1t", "read",
        "zswap_store", "zswap_load",
    ):  # fmt: skip
        assert want in keys
    for r in rows:
        assert ROW_KEYS <= set(r), r
        assert isinstance(r["name"], str) and r["name"]
        assert r["goal"] is None or isinstance(r["goal"], float)
        assert r["met"] is None or isinstance(r["met"], bool)
        if r["skipped"]:
            assert r["ratio"] is None and r["met"] is None
            continue
        assert isinstance(r["ours"], float) and isinstance(r["reference"], float)
        _check_ratio(r)
        if r["goal"] is not None:
            assert r["met"] == (r["ratio"] >= r["goal"])
    # Without the kernel its rows are skipped with the reason, not faked.
    by_key = {r["key"]: r for r in rows}
    assert "--no-kernel" in by_key["write_1t"]["skipped"]
    assert "--no-kernel" in by_key["read_interpreted"]["skipped"]
    assert by_key["end_to_end"]["skipped"]
    assert "--no-kernel" in by_key["zswap_store"]["skipped"]
    assert by_key["sweep_2_workers"]["skipped"] == "not run in the tiny plan"


def test_cli_goals_in_issue_terms(cli_run):
    rows = {r["key"]: r for r in cli_run[1]["rows"]}
    # "ours <= limit" rows: goal = reference / limit, so ratio >= goal <=> ours <= limit.
    mem = rows["mem_per_slot"]
    assert mem["goal"] == pytest.approx(mem["reference"] / 24.0)
    assert mem["met"] == (mem["ours"] <= 24.0)
    # work beyond the codec: at most 2 µs a page through the swap core, 1 on the submit path
    for key, limit in (("beyond_codec_core", 2.0), ("beyond_codec_submit", 1.0)):
        beyond = rows[key]
        assert beyond["reference"] == limit and beyond["goal"] == 1.0
        assert beyond["met"] == (beyond["ours"] <= limit)
    scale = rows["scaling_200"]
    assert scale["goal"] == pytest.approx(1 / 1.1)
    pts = cli_run[1]["scaling"]
    assert [p["pages"] for p in pts] == [200, 2000]
    assert all(p["intact"] for p in pts)
    t = [p["write_s"] + p["read_s"] for p in pts]
    assert scale["ours"] == pytest.approx(t[1] / (10 * t[0]))
    for key in ("ops_vs_bio_out", "ops_vs_bio_in"):
        assert rows[key]["goal"] == 1.5


def test_cli_markdown_and_plot(cli_run):
    _rc, doc, md, png = cli_run
    assert doc["date"] in md and "| row | ours | reference (what) | ratio | goal | met? |" in md
    assert md.count("\n| ") >= len(doc["rows"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_stdout(capsys):
    """``--json`` means what it means in every command: JSON on stdout, no table."""
    assert main(["bench", "--tiny", "--no-kernel", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"]
    # The option takes no value: a file name after it is an extra argument, a usage error.
    assert main(["bench", "--tiny", "--no-kernel", "--json", "-"]) == 2


def test_ratios_follow_the_measurements(monkeypatch):
    """Replace two measurements with known times: the rows built on them follow."""

    def fake_submit(pages, algo, path, threads, config, repeat, after_each=None):
        # swap_ops: 1 s write + 1 s read; bio: 3 s + 3 s -> 3x; the null backend 0.25 + 0.25
        t = {"swap_ops": 1.0, "bio": 3.0, "null": 0.25}[path]
        for _ in range(repeat):
            if after_each is not None:
                after_each()
        return {"write_s": t, "read_s": t, "intact": None if path == "null" else True}

    codec_times = iter([0.5, 0.75] * 8)  # the floor is the fastest of the runs in between

    monkeypatch.setattr(bench_all, "best_submit", fake_submit)
    monkeypatch.setattr(bench_all, "interpreted_submit", lambda *a: {"write_s": 2.5, "read_s": 2.5})
    monkeypatch.setattr(bench_all, "codec_seconds", lambda *a, **k: next(codec_times))
    report = bench_all.run_bench("tiny", kernel=False)
    rows = {r.key: r for r in report.rows}
    n = report.pages
    sub = rows["ops_vs_bio_submit"]
    assert sub.ours == pytest.approx(n / 2.0) and sub.reference == pytest.approx(n / 6.0)
    assert sub.ratio == pytest.approx(3.0)
    beyond = rows["beyond_codec_submit"]
    assert beyond.ours == pytest.approx((2.0 - 0.5) / n * 1e6)
    assert beyond.ratio == pytest.approx(1.0 / beyond.ours)
    assert beyond.met is (beyond.ours <= 1.0)
    interp = rows["beyond_codec_submit_interpreted"]
    assert interp.ours == pytest.approx((5.0 - 0.5) / n * 1e6) and interp.goal is None
    floor = rows["swap_core_floor"]
    assert floor.ours == pytest.approx(0.5 / n * 1e6) and floor.goal is None


def test_bad_options_are_one_line_errors(capsys):
    assert main(["bench", "--tiny", "--no-kernel", "-a", "zstd"]) == 2
    assert "--algorithm: must be lz4, lzo or lzo-rle" in capsys.readouterr().err
    assert main(["bench", "--tiny", "--no-kernel", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_row_helpers():
    r = bench_all.rate_row("k", "x", 150.0, "pages/s", 100.0, "ref", 1.5)
    assert r.ratio == pytest.approx(1.5) and r.met is True
    c = bench_all.cost_row("k", "x", 30.0, "B/slot", 16.0, "kernel", 24.0)
    assert c.ratio == pytest.approx(16 / 30) and c.goal == pytest.approx(16 / 24)
    assert c.met is False
    assert bench_all.cost_row("k", "x", 20.0, "B/slot", 16.0, "kernel", 24.0).met is True
    z = bench_all.cost_row("k", "x", -0.1, "µs/page", 1.0, "goal", 1.0)
    assert z.ratio == 1e6 and z.met is True


def test_subcommands_still_work(capsys):
    assert main(["bench", "swap", "--limit", "64", "--repeat", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == ["swap_ops", "bio"]
    assert all(r["intact"] for r in rows)


@pytest.mark.kernel
def test_kernel_measurements_small():
    """The kernel-side measurements on a few pages: rates, intact data, bytes per slot.

    Every device is a hot_added one of ours (KernelZram), reset and removed on exit.
    """
    from pyzram.host.kernel_zram import unavailable_reason
    from pyzram.workload.pages import synthetic_mix

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    pages = synthetic_mix(512, seed=3)
    rates = bench_all.kernel_odirect(pages, "lz4", 1)
    assert rates["intact"] and rates["write_pages_s"] > 0 and rates["read_pages_s"] > 0
    mem = bench_all.kernel_device_memory(1 << 30, "lz4")
    assert 8 <= mem["per_slot"] <= 64 and 0 < mem["create_s"] < 5
    stored = bench_all.kernel_stored_memory(pages, "lz4", 16)
    assert stored["objects"] > 0 and stored["per_object"] >= 16


def test_null_backend_measures_the_swap_core_alone(monkeypatch):
    """``path="null"``: the batches reach a do-nothing swap_ops, so zram sees
    only the swap header (mkswap's write, swapon's read); every batch still
    ends exactly once and no area is left behind."""
    from pyzram.mm.machine import Machine
    from pyzram.workload.pages import synthetic_mix
    from pyzram.zram import zram_drv

    calls: list[str] = []
    machines: list[Machine] = []

    class Recorded(Machine):
        def __init__(self, **kw):
            super().__init__(**kw)
            machines.append(self)

    def counting(name, fn):
        def wrapper(*a, **k):
            calls.append(name)
            return fn(*a, **k)

        return wrapper

    pages = synthetic_mix(100, seed=3)
    with monkeypatch.context() as m:
        m.setattr(zram_drv, "zram_bio_write", counting("write", zram_drv.zram_bio_write))
        m.setattr(zram_drv, "zram_bio_read", counting("read", zram_drv.zram_bio_read))
        m.setattr(bench_all, "Machine", Recorded)
        r = bench_all.submit_batches(pages, "lz4", "null", 1, bench_all._host_config("lz4"))
    assert calls == ["write", "read"]  # mkswap's header and swapon's read of it, no more
    assert r["intact"] is None and r["write_s"] > 0 and r["read_s"] > 0
    (mach,) = machines  # the bench booted one machine, and powered it off
    assert mach.sio_pool.allocated_total == 2 * -(-100 // 32)  # write and read batches
    assert mach.sio_pool.outstanding == 0
    assert not mach.active_areas()
    real = bench_all.submit_batches(pages, "lz4", "swap_ops", 1, bench_all._host_config("lz4"))
    assert real["intact"] is True


def test_bench_zram_cli_json(capsys):
    """``pyzram bench zram``: pwrite/pread pages/s per algorithm and request size,
    ours beside the host kernel's where it can be measured."""
    from pyzram.host.kernel_zram import unavailable_reason

    argv = ["bench", "zram", "--limit", "96", "--repeat", "1", "-a", "lz4", "--bs", "4096"]
    assert main([*argv, "--bs", "16384", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    kernel = unavailable_reason() is None
    assert {(r["target"], r["bs"]) for r in rows} >= {("pyzram", 4096), ("pyzram", 16384)}
    assert {r["target"] for r in rows} == ({"pyzram", "kernel"} if kernel else {"pyzram"})
    for r in rows:
        assert r["algorithm"] == "lz4" and r["pages"] == 96
        assert r["write_pages_s"] > 0 and r["read_pages_s"] > 0
    assert main([*argv, "--bs", "1000"]) == 2  # not whole pages: a usage error, one line
    assert capsys.readouterr().err.count("\n") == 1


def test_bench_codecs_cli_json(capsys):
    """``pyzram bench codecs``: every codec row has a measured figure (or ``None``
    where that direction does not exist), no host kernel asked for."""
    assert main(["bench", "codecs", "--limit", "64", "--repeat", "1", "--no-kernel", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    whats = [r["what"] for r in rows]
    assert any("lz4" in w for w in whats) and any("lzo" in w for w in whats)
    assert not any(w.startswith("host kernel") for w in whats)
    for r in rows:
        figures = [r["compress_pages_s"], r["decompress_pages_s"]]
        if r["what"].endswith("(not installed)"):  # a peer library this machine lacks
            assert figures == [None, None]
            continue
        assert any(f is not None for f in figures)
        assert all(f is None or f > 0 for f in figures)


def test_bench_process_has_room_for_its_pages_and_page_tables():
    """The benches' process faults every page in without reclaim, its page tables
    (charged to the memcg as cgroup v1 does) included, so swapoff can bring every
    page back."""
    from pyzram.mm.machine import Machine
    from pyzram.tools.bench.table import process
    from pyzram.workload.pages import synthetic_mix

    with Machine() as m:
        mm = process(m, synthetic_mix(4, seed=1), nr_pages=20_000)
        for vpn in range(20_000):
            mm.do_anonymous_page(vpn)
        assert mm.pgtables == 40 + 1 and mm.memcg.usage == 20_000 + 41
        assert mm.memcg.usage <= mm.memcg.limit_pages - 32  # room to fault back into
