"""pyzram against the host kernel's zram: the same pages, the same mm_stat, the same errnos.

Every test hot_adds its own kernel device (``KernelZram``), which is always
reset and hot_removed, and skips with the reason where zram-control or root
is missing.  Pages: synthetic mixes and the live memory of a process the
test starts itself.
"""

from __future__ import annotations

import errno
import hashlib

import numpy as np
import pytest

from pyzram import Zram, ZramConfig
from pyzram.host.kernel_zram import KernelZram, unavailable_reason
from pyzram.tools.commands.validate import run_scenario
from pyzram.workload.pages import capture, synthetic_mix
from pyzram.zram.zcomp import PAGE_SIZE, ZcompBackend

REASON = unavailable_reason()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
HOST_ALGOS = ["lzo-rle", "lzo", "lz4"]


@pytest.fixture(scope="module")
def live_pages() -> np.ndarray:
    """Resident anonymous pages of a Python workload this test starts."""
    return capture("python", scale=0.15, limit=1200)


@pytest.fixture(scope="module")
def synthetic_pages() -> np.ndarray:
    return synthetic_mix(800, seed=21)


def _assert_equal(result) -> None:
    for step in result.steps:
        assert step.equal, f"{result.algorithm} {step.step}: {step.mismatches()}"
    assert result.io_stat_equal
    assert result.read_back_equal


@pytest.mark.parametrize("algo", HOST_ALGOS)
def test_synthetic_stream_equals_kernel(algo, synthetic_pages):
    with KernelZram() as k:
        _assert_equal(run_scenario(synthetic_pages, algo, k))


@pytest.mark.parametrize("algo", HOST_ALGOS)
def test_live_process_stream_equals_kernel(algo, live_pages):
    assert len(live_pages) >= 500
    with KernelZram() as k:
        _assert_equal(run_scenario(live_pages, algo, k))


class KernelSizeBackend(ZcompBackend):
    """Replays the kernel's own per-page compressed sizes (measured one page at a time).

    Output is a unique token of the kernel's length, remembered so reads
    return the original page; this checks the zsmalloc/zram accounting
    independently of pyzram's codecs.
    """

    name = "kernel-sizes"

    def __init__(self, params, sizes: dict[bytes, int]) -> None:
        super().__init__(params)
        self.sizes = sizes
        self.pages: dict[bytes, bytes] = {}

    def compress(self, page):
        page = bytes(page)
        n = self.sizes[hashlib.sha1(page).digest()]
        n = 3700 if n == PAGE_SIZE else n  # huge in the kernel: anything >= 3625
        token = (hashlib.sha256(page).digest() * 128)[:n]
        self.pages[token] = page
        return token

    def decompress(self, data):
        return self.pages[bytes(data)]


def test_pool_accounting_with_kernel_sizes():
    pages = synthetic_mix(600, seed=5)
    with KernelZram() as k:
        k.setup("lz4", len(pages) * PAGE_SIZE)
        sizes = k.page_sizes(pages)
    assert (sizes == -1).sum() > 0 and (sizes == PAGE_SIZE).sum() > 0
    oracle = {hashlib.sha1(p.tobytes()).digest(): int(s) for p, s in zip(pages, sizes, strict=True)}

    def use_kernel_sizes(dev: Zram) -> None:
        dev.comps[0].backend = KernelSizeBackend(dev.params[0], oracle)

    with KernelZram() as k:
        _assert_equal(run_scenario(pages, "lz4", k, after_init=use_kernel_sizes))


# -- sysfs: the same writes give the same result or the same errno -----------------

LONG_NAME = "x" * 200
CASES = [
    # (setup: "uninit" | "init", attribute, value)
    ("uninit", "comp_algorithm", "nope"),
    ("uninit", "comp_algorithm", "lz4\n"),
    ("uninit", "comp_algorithm", "lz4\n\n"),
    ("uninit", "comp_algorithm", LONG_NAME),
    ("uninit", "comp_algorithm", "y" * 127),
    ("uninit", "comp_algorithm", "z" * 5000),
    ("uninit", "disksize", "abc"),
    ("uninit", "disksize", "0"),
    ("uninit", "disksize", "K"),
    ("uninit", "mem_limit", "abc"),
    ("uninit", "mem_limit", "K"),
    ("uninit", "mem_limit", "3M junk"),
    ("uninit", "reset", "0"),
    ("uninit", "reset", "abc"),
    ("uninit", "reset", "70000"),
    ("uninit", "reset", "1 "),
    ("uninit", "reset", "1"),
    ("uninit", "compact", "1"),
    ("uninit", "idle", "all"),
    ("uninit", "idle", "bogus"),
    ("uninit", "mem_used_max", "1"),
    ("uninit", "mem_used_max", "0"),
    ("uninit", "algorithm_params", "level"),
    ("uninit", "algorithm_params", "level="),
    ("uninit", "algorithm_params", "level=abc"),
    ("uninit", "algorithm_params", "level=99999999999"),
    ("uninit", "algorithm_params", "priority=1 level=3"),
    ("uninit", "algorithm_params", "algo=zstd level=3"),
    ("uninit", "algorithm_params", "algo=lzo-rle level=3"),
    ("uninit", "algorithm_params", "foo=bar"),
    ("uninit", "algorithm_params", "dict=/nonexistent/dict"),
    ("init", "disksize", "1M"),
    ("init", "comp_algorithm", "lzo"),
    ("init", "comp_algorithm", "nope"),
    ("init", "compact", "1"),
    ("init", "idle", "all"),
    ("init", "idle", "10"),
    ("init", "mem_used_max", "0"),
    ("init", "mem_used_max", "00"),
    ("init", "mem_limit", "0"),
    ("init", "reset", "1"),
]


def _outcome(write) -> str:
    try:
        write()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"


@pytest.mark.parametrize("state,attr,value", CASES)
def test_sysfs_write_outcome_equals_kernel(state, attr, value):
    ours = Zram(ZramConfig.from_running_kernel())
    with KernelZram() as k:
        if state == "init":
            k.write_attr("disksize", "1M")
            ours.sysfs["disksize"] = "1M"
        got_kernel = _outcome(lambda: k.write_attr(attr, value))
        got_ours = _outcome(lambda: ours.sysfs.write(attr, value))
        assert got_ours == got_kernel, f"{attr}={value!r}"
        for name in ("comp_algorithm", "disksize", "initstate", "mm_stat", "io_stat"):
            assert ours.sysfs[name] == k.read_attr(name), name


def test_reset_while_open_is_ebusy_on_both():
    ours = Zram(ZramConfig.from_running_kernel())
    with KernelZram() as k:
        k.setup(None, "1M")
        ours.sysfs["disksize"] = "1M"
        k.pwrite(bytes(PAGE_SIZE), 0)  # opens /dev/zramN
        ours.open()
        assert _outcome(lambda: k.write_attr("reset", "1")) == "EBUSY"
        assert _outcome(lambda: ours.sysfs.write("reset", "1")) == "EBUSY"
        k.close_dev()
        ours.release()
        assert _outcome(lambda: k.write_attr("reset", "1")) == "ok"
        assert _outcome(lambda: ours.sysfs.write("reset", "1")) == "ok"


@pytest.mark.parametrize("attr", ["reset", "compact", "mem_limit", "idle", "algorithm_params"])
def test_write_only_attributes_refuse_reads(attr):
    ours = Zram(ZramConfig.from_running_kernel())
    with KernelZram() as k:
        with pytest.raises(PermissionError):
            k.read_attr(attr)
    with pytest.raises(OSError) as e:
        ours.sysfs[attr]
    assert e.value.errno == errno.EACCES


def test_fresh_device_text_equals_kernel():
    ours = Zram(ZramConfig.from_running_kernel())
    with KernelZram() as k:
        for name in ("comp_algorithm", "disksize", "initstate", "mm_stat", "io_stat", "debug_stat"):
            assert ours.sysfs[name] == k.read_attr(name), name
