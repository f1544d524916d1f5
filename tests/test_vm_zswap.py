"""pyzram's zswap against the zswap of Debian's 6.18 kernel under qemu, for every compressor.

The host kernel's crypto API has lzo, lzo-rle and deflate only; the VM
kernel (``pyzram.host.kernel_vm``) loads lz4, lz4hc, zstd and deflate as
modules and has lzo and lzo-rle built in.  One boot runs the whole module:
for each compressor the guest puts zswap in front of a zram swap area of its
own, maps the pages, pushes them out with ``MADV_PAGEOUT``, reads the debugfs
and vmstat counters and faults every page back
(``validate.ZswapVmRecord``, what ``pyzram validate --zswap --kernel vm``
runs); then the outcome and text of a dozen parameter writes.  pyzram runs
the same with the guest's RAM and crypto compressors, and each test compares
its part.

Pages: 1,500 of a live Python process, a 1,000-page synthetic mix of every
kind (zero, same-filled, text, structs, binaries, random) and 500 pages at
the edge of compressibility (near-incompressible, random, binary), 3,000 in
all, six compressors, 13 parameter writes (about 350 guest commands): one
boot of about 7 s, the module about 10 s with pyzram's side, under TCG on 2
cores.  Skips with the reason where qemu, the static busybox, gcc or
the kernel package (cache or archive) is missing.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from pyzram.mm.zswap import Zswap
from pyzram.workload.pages import capture, synthetic_mix

kernel_vm = pytest.importorskip("pyzram.host.kernel_vm")
REASON = None if os.environ.get("PYZRAM_NO_VM") is None else "PYZRAM_NO_VM is set"
REASON = REASON or kernel_vm.unavailable_reason()
pytestmark = [pytest.mark.vm, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

COMPRESSORS = ["lzo", "lzo-rle", "lz4", "lz4hc", "zstd", "deflate"]

#: Written to /sys/module/zswap/parameters after the runs: the outcome (text or errno)
#: of each must be the kernel's.
PARAM_WRITES = [
    ("compressor", "nosuch"),
    ("compressor", "842"),  # not built into this kernel
    ("compressor", "sha256"),  # not a compressor
    ("compressor", " zstd \n"),
    ("compressor", "lz4hc-generic"),  # not its driver name: lz4hc-scomp
    ("compressor", "lz4hc-scomp"),
    ("compressor", "zstd-generic"),
    ("compressor", "deflate"),
    ("max_pool_percent", "abc"),
    ("max_pool_percent", "0x0f\n"),
    ("accept_threshold_percent", "+80"),
    ("shrinker_enabled", "maybe"),
    ("shrinker_enabled", "off"),
    ("enabled", "x"),
    ("enabled", "1"),
]

#: Pages at the edge of compressibility, where "does it fit in one page" decides.
EDGE_MIX = {"near_huge": 0.5, "random": 0.2, "binary": 0.2, "text_tail": 0.1}


def _outcome(write, read, name: str, value: str) -> str:
    try:
        write(name, value)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return read(name)


class Session:
    """The guest's answers and pyzram's beside them, for the whole module."""

    def __init__(self) -> None:
        from pyzram.tools.commands.validate import ZswapVmRecord, vm_zswap_compressors

        self.oracle = kernel_vm.VmOracle()
        self.algorithms = vm_zswap_compressors(self.oracle)
        self.pages = np.concatenate(
            [
                capture("python", scale=0.5, limit=1500),
                synthetic_mix(1000, seed=23),
                synthetic_mix(500, seed=29, mix=EDGE_MIX),
            ]
        )
        script = kernel_vm.VmScript()
        self.script = script
        self.record = ZswapVmRecord(self.pages, script, self.algorithms)
        params = kernel_vm.ZSWAP_PARAMS_DIR
        self.writes = [
            (
                name,
                value,
                script.write_file(f"{params}/{name}", value),
                script.read_file(f"{params}/{name}"),
            )
            for name, value in PARAM_WRITES
        ]
        self.run = self.oracle.run(script, timeout=900)
        name = f"vm {self.oracle.kernel.release}"
        self.results = {r["algorithm"]: r for r in self.record.results(name)}


@pytest.fixture(scope="module")
def vm():
    return Session()


def test_the_script_ran_to_its_end(vm):
    assert vm.run.completed, vm.run.console[-2000:]
    assert all(p.done for p in vm.script.pendings)


def test_the_guest_has_every_compressor(vm):
    assert vm.algorithms == COMPRESSORS
    assert set(vm.record.guest_compressors()) == set(COMPRESSORS)


@pytest.mark.parametrize("algorithm", COMPRESSORS)
def test_stored_incompressible_and_pool_equal_kernel(vm, algorithm):
    kern, ours = vm.record.kernel[algorithm], vm.record.ours[algorithm]
    k = kern["debugfs"]
    # The guest's zswap really took the pages, compressed and as they are.
    assert kern["compressor"] == algorithm
    assert k["stored_pages"] > 2000 and k["stored_incompressible_pages"] > 50
    assert k["pool_total_size"] > 0 and kern["vmstat"]["zswpout"] == k["stored_pages"]
    assert kern["vmstat"]["swpout_zero"] > 0 and kern["vmstat"]["pswpout"] == 0
    for name in ("stored_pages", "stored_incompressible_pages", "pool_total_size"):
        assert ours["debugfs"][name] == k[name], (algorithm, name, ours["debugfs"][name], k[name])
    row = vm.results[algorithm]
    bad = [f for f in row["fields"] if not f["equal"]]
    assert not bad, bad
    assert kern["read_back_equal"] and ours["read_back_equal"], kern.get("read_back_differing")
    zswpin = kern["vmstat_read_back"]["zswpin"]
    assert zswpin == k["stored_pages"] == ours["vmstat_read_back"]["zswpin"]
    assert kern["debugfs_read_back"]["stored_pages"] == 0  # every entry loaded and freed


def test_parameter_writes_equal_kernel(vm):
    """The guest's zswap after the runs, and a model with the same history."""
    model = Zswap(compressors=vm.record.guest_compressors())
    for a in vm.algorithms:
        model.param_write("compressor", a)
        model.param_write("enabled", "Y")
        model.param_write("enabled", "N")
    outcomes = []
    for name, value, w, r in vm.writes:
        kernel = w.outcome if w.outcome != "ok" else r.value
        ours = _outcome(model.param_write, model.param_read, name, value)
        outcomes.append(kernel)
        assert ours == kernel, (name, value, ours, kernel)
    assert {"ENOENT", "EINVAL"} <= set(outcomes)
    assert {"zstd\n", "lz4hc-scomp\n", "zstd-generic\n"} <= set(outcomes)
