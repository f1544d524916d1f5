"""``pyzram bench run``: the workload on the host kernel's swap (zram + memcg) and in pyzram.

The kernel tests need root, ``/sys/class/zram-control`` and a cgroup-v1 memory
controller; elsewhere they are skipped with the reason.  Each creates its own
zram device and cgroup and must leave nothing behind: no swap area, no
cgroup, the device reset and removed — also when the run fails or is
interrupted.
"""

from __future__ import annotations

import errno
import json
import os
import statistics
from pathlib import Path

import pytest

from conftest import HOST_TLB_CANDIDATES, host_tlb_entries
from pyzram.host import kernel_swap as ks
from pyzram.tools.cli import main
from pyzram.tools.commands.run import run_workload
from pyzram.workload.pages import synthetic_mix

REASON = ks.unavailable_reason()
needs_kernel = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture
def devices(monkeypatch):
    """Every KernelZram the bench creates, to check that each was removed."""
    made: list[ks.KernelZram] = []

    class Spy(ks.KernelZram):
        def create(self):
            made.append(self)
            return super().create()

    monkeypatch.setattr(ks, "KernelZram", Spy)
    return made


def _swaps() -> str:
    return Path("/proc/swaps").read_text()


def _leftover_cgroups() -> list[Path]:
    return list(ks._own_memcg().glob(f"pyzram-bench-{os.getpid()}-*"))


def _assert_clean(devices) -> None:
    assert devices and all(d.closed for d in devices)  # reset + hot_remove done
    for d in devices:
        assert f"/dev/zram{d.id} " not in _swaps()
    assert not _leftover_cgroups()


@pytest.mark.kernel
@needs_kernel
def test_bench_run_kernel_and_pyzram(devices):
    pages = synthetic_mix(1024, seed=1)
    res = ks.bench_run(pages, mem_limit_pages=256, accesses=1024, seed=2)
    k, o = res.kernel, res.pyzram
    _assert_clean(devices)
    assert k.intact and o.intact
    assert k.pages == o.pages == 1024 and k.accesses == o.accesses == 1024
    assert k.mem_limit_pages == o.mem_limit_pages == 256
    assert k.cgroup_limit_bytes == k.cgroup_baseline_bytes + 256 * 4096
    assert k.vmstat["pswpout"] > 0 and k.device_write_pages > 0  # the kernel did swap
    assert k.cgroup_failcnt > 0  # ... because the limit was hit
    assert len(k.mm_stat.split()) == 9 and k.device == f"zram{devices[0].id}"
    assert k.swapped_pages_s > 0 and o.swapped_pages_s > 0
    assert res.ratio == pytest.approx(o.swapped_pages_s / k.swapped_pages_s)
    d = res.as_dict()
    assert set(d) == {"kernel", "pyzram", "ratio", "baseline_system_seconds", "swap_system_seconds"}
    assert "timeline" not in d["pyzram"]
    # The kernel's system time of the swapping beside pyzram's prediction of it.
    assert k.system_seconds >= 0 and res.baseline_system_seconds >= 0
    assert d["swap_system_seconds"] == k.system_seconds - res.baseline_system_seconds
    assert o.predicted_kernel_cpu_s > 0


@pytest.mark.kernel
@needs_kernel
def test_swap_traffic_matches_the_kernel(devices):
    """The memory model predicts the kernel's own swap traffic: for the same pages,
    limit and pattern, every counter of pyzram's run is within 4 % of the median of
    five host-kernel runs (pswpout, pswpin, major faults, pages stolen and
    scanned, refaults, zero-page swap-outs; the zero-page swap-ins, the smallest
    count, about 300, within 8 %).  This needs the model's TLB: without it
    (``tlb_entries`` 0, every access sets the accessed bit) pswpin and major faults
    come out 6-9 % under the kernel's, as a hot page whose translation x86 still
    caches looks cold to reclaim.  On the host kernel build 6.18.44-fc-v1272, on
    2026-12-05: the kernel's own runs spread by 4 % on pswpin (893-934; on
    2026-12-06 once 857, 869 and 940 in three runs: hence five), pyzram
    within 2 % of their median on every counter but pgactivate, whose kernel
    figure (35-182) moves with TLB flushes the kernel does not see (the
    hypervisor's).  On the build 6.18.44-fc-v1300 the host's accessed bits are
    set on far more accesses (pgactivate about 200, pswpin 860-891): there the
    model predicts it with a TLB of 128 entries, every counter within 2 %, and
    with 2,048 its pswpin is 6 % over.  So the TLB size is the host's
    (:func:`conftest.host_tlb_entries`, by pgactivate), the rest is predicted.
    The counters cover the workload only, on both sides: the final check of the
    pages is not part of it."""
    pages = synthetic_mix(2048, seed=1)
    kw = dict(mem_limit_pages=512, accesses=4096, seed=2)
    runs = [ks.run_kernel_swap(pages, **kw) for _ in range(5)]
    _assert_clean(devices)
    tlb = host_tlb_entries(
        [r.vmstat["pgactivate"] for r in runs],
        lambda t: run_workload(pages, tlb_entries=t, **kw).vmstat["pgactivate"],
    )
    o = run_workload(pages, tlb_entries=tlb, **kw).vmstat
    tolerance = {"pswpout": 0.04, "pswpin": 0.04, "pgmajfault": 0.04, "pgsteal_anon": 0.04,
                 "swpout_zero": 0.04, "swpin_zero": 0.08, "pgscan_anon": 0.04,
                 "workingset_refault_anon": 0.04}  # fmt: skip
    for key, rel in tolerance.items():
        k = statistics.median(r.vmstat[key] for r in runs)
        assert k > 0, key
        assert o[key] == pytest.approx(k, rel=rel), (key, [r.vmstat[key] for r in runs], o[key])
    # A fresh memcg's stats stay unflushed for a run this short (35 ms on the host,
    # under the 2 s FLUSH_TIME): no refault is recent, the active list never ages.
    assert o["workingset_activate_anon"] == 0 and o["pgdeactivate"] == 0
    assert all(r.vmstat["pgdeactivate"] == 0 for r in runs)


@pytest.mark.kernel
@needs_kernel
def test_thp_swap_traffic_matches_the_kernel(devices):
    """The same with every fault a 2 MiB folio (``folio_order`` 9, PMD-mapped, split
    and swapped out a page at a time by reclaim): every counter within 4 % of the
    median of three host-kernel runs, ``pgactivate`` and the THP events included.

    The host's TLB is the one thing fitted, by pgactivate, jointly: its size
    (:data:`conftest.HOST_TLB_CANDIDATES`) and whether a PMD mapping takes one
    of its entries (``tlb_2m_entries`` None) or is never cached (0: the host
    build fc-v1300, a PVM guest, where such a run activates about 1,320 pages,
    the model with 128 entries and none for 2 MiB 1,311, and with a shared TLB
    none).  On that build, 2026-12-06: every counter within 1 % but the 23
    zero-filled swap-ins (the model 25)."""
    pages = synthetic_mix(4096, seed=1)
    kw = dict(mem_limit_pages=2048, accesses=8192, seed=2, folio_order=9)
    try:
        ks._check_thp(9)
    except OSError as e:
        pytest.skip(f"the host's THP settings: {e}")
    runs = [ks.run_kernel_swap(pages, **kw) for _ in range(3)]
    _assert_clean(devices)
    k_act = statistics.median(r.vmstat["pgactivate"] for r in runs)
    outs = [
        run_workload(pages, tlb_entries=t, tlb_2m_entries=t2m, **kw)
        for t in HOST_TLB_CANDIDATES
        for t2m in (None, 0)
    ]
    o = min(outs, key=lambda r: abs(r.vmstat["pgactivate"] - k_act)).vmstat
    for key in ("pswpout", "pswpin", "pgmajfault", "pgsteal_anon", "pgscan_anon",
                "workingset_refault_anon", "pgactivate", "thp_swpout", "thp_split_pmd",
                "swpout_zero"):  # fmt: skip
        k = statistics.median(r.vmstat[key] for r in runs)
        assert o[key] == pytest.approx(k, rel=0.04, abs=2), (
            key,
            [r.vmstat[key] for r in runs],
            o[key],
        )


@pytest.mark.kernel
@needs_kernel
def test_bench_run_cli_json(devices, capsys):
    argv = ["bench", "run", "--limit", "512", "--mem-limit", "512K", "--accesses", "512"]
    assert main([*argv, "--mix", "zero=0.2,text=0.5,random=0.3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kernel"]["intact"] and out["pyzram"]["intact"]
    assert out["pyzram"]["source"] == "mix zero=0.2,text=0.5,random=0.3 (seed 0)"
    assert isinstance(out["ratio"], float) and out["ratio"] > 0
    _assert_clean(devices)


@pytest.mark.kernel
@needs_kernel
def test_bench_run_kernel_error_cleans_up(devices):
    before = _swaps()
    with pytest.raises(OSError) as e:
        ks.run_kernel_swap(synthetic_mix(64, seed=1), algorithm="bogus", mem_limit_pages=32)
    assert e.value.errno == errno.EINVAL  # comp_algorithm_store said so
    _assert_clean(devices)
    assert _swaps() == before


@pytest.mark.kernel
@needs_kernel
def test_bench_run_interrupted_cleans_up(devices, monkeypatch):
    """A KeyboardInterrupt while the child waits in its cgroup, swap on: all undone."""
    real = ks.wait_ready
    children = []

    def interrupt(proc, timeout, marker=b"READY\n"):
        got = real(proc, timeout, marker)
        if marker == b"\n":  # the child has run: interrupt before reading its stats
            raise KeyboardInterrupt
        children.append(proc)
        return got

    monkeypatch.setattr(ks, "wait_ready", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ks.run_kernel_swap(synthetic_mix(256, seed=1), mem_limit_pages=64, accesses=100)
    _assert_clean(devices)
    assert children and children[0].returncode is not None  # killed and reaped


def test_not_root_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(ks.os, "geteuid", lambda: 1000)
    reason = ks.unavailable_reason()
    assert reason and "\n" not in reason
    with pytest.raises(OSError) as e:
        ks.run_kernel_swap(synthetic_mix(8))
    assert e.value.errno in (errno.EPERM, errno.ENODEV)
    assert main(["bench", "run", "--limit", "40"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyzram: error: ") and len(err.strip().splitlines()) == 1


def test_no_cgroup_v1_is_a_one_line_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(ks, "zram_unavailable", lambda probe=False: None)
    monkeypatch.setattr(ks, "CGROUP_V1_MEMORY", tmp_path / "memory")
    assert "no cgroup v1 memory controller" in ks.unavailable_reason()


def test_thp_settings_must_give_exactly_the_folio_size(monkeypatch, tmp_path):
    thp = tmp_path / "thp"
    for name, setting in (("hugepages-64kB", "never"), ("hugepages-2048kB", "inherit")):
        (thp / name).mkdir(parents=True)
        (thp / name / "enabled").write_text(f"always inherit madvise [{setting}]\n")
    (thp / "hugepages-8kB").mkdir()  # no enabled file: not an anonymous size
    (thp / "enabled").write_text("always [madvise] never\n")
    monkeypatch.setattr(ks, "THP_DIR", thp)
    ks._check_thp(0)
    ks._check_thp(9)  # 2048kB inherits madvise
    with pytest.raises(ValueError, match="hugepages-64kB.*enabled: 2048kB"):
        ks._check_thp(4)


def test_bench_run_keeps_the_fastest_of_its_runs_on_each_side(monkeypatch):
    """``repeat`` runs of each side, the fastest of each kept: a host's pause in one
    run does not decide the ratio (the unlimited baseline runs once)."""
    from types import SimpleNamespace

    kernel_rates = iter([50.0, 80.0, 60.0, 1.0])  # three limited runs, then the baseline
    ours_rates = iter([70.0, 40.0, 90.0])
    calls = {"kernel": 0, "ours": 0}

    def kernel(pages, unlimited=False, **kw):
        calls["kernel"] += 1
        return SimpleNamespace(swapped_pages_s=next(kernel_rates), system_seconds=0.5)

    def ours(pages, **kw):
        calls["ours"] += 1
        return SimpleNamespace(swapped_pages_s=next(ours_rates))

    monkeypatch.setattr(ks, "run_kernel_swap", kernel)
    monkeypatch.setattr(ks, "run_workload", ours)
    res = ks.bench_run(synthetic_mix(8, seed=1), repeat=3)
    assert calls == {"kernel": 4, "ours": 3}
    assert res.kernel.swapped_pages_s == 80.0 and res.pyzram.swapped_pages_s == 90.0
    assert res.ratio == 90.0 / 80.0
    with pytest.raises(ValueError):
        ks.bench_run(synthetic_mix(8, seed=1), repeat=0)
