"""pyzram against Debian's 6.18 kernel under qemu: every backend, writeback, idle ages, limits.

One boot (``pyzram.host.kernel_vm``) runs every case of this module: the
guest script is built once by the module fixture, the model side runs at the
same time through pyzram's public API, and each test then compares its part
of the guest's answers.  Skips with the reason where qemu, the static busybox,
gcc or the kernel package (cache or archive) is missing.  Sizes are bounded
for CI: the boot takes about 3 s and the whole module about 40 s under TCG
on 2 cores (see docs/architecture.md).
"""

from __future__ import annotations

import errno
import os
import tempfile

import numpy as np
import pytest

from pyzram import Zram, ZramConfig
from pyzram.workload.pages import capture, synthetic_mix
from pyzram.zram.zcomp import PAGE_SIZE

kernel_vm = pytest.importorskip("pyzram.host.kernel_vm")
REASON = None if os.environ.get("PYZRAM_NO_VM") is None else "PYZRAM_NO_VM is set"
REASON = REASON or kernel_vm.unavailable_reason()
pytestmark = [pytest.mark.vm, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

#: Per-page size checks: (algorithm, algorithm_params or None).  Those that start
#: with a dictionary's name (:data:`DICTIONARIES`) take it: "dict level=12" is
#: ``algo=<algorithm> dict=<path> level=12``.
SIZE_CASES = [
    ("lz4", None),
    ("lz4", "algo=lz4 level=4"),
    ("lz4", "dict"),
    ("lz4", "dict level=4"),
    ("lz4", "dict65535"),
    ("lz4", "dict64k"),
    ("lz4hc", None),
    ("lz4hc", "algo=lz4hc level=1"),
    ("lz4hc", "algo=lz4hc level=3"),
    ("lz4hc", "algo=lz4hc level=16"),
    ("lz4hc", "dict"),
    ("lz4hc", "dict level=16"),
    ("lz4hc", "dict65535 level=4"),
    ("lz4hc", "dict64k"),
    ("zstd", None),
    ("zstd", "algo=zstd level=-5"),
    ("zstd", "algo=zstd level=1"),
    ("zstd", "algo=zstd level=12"),
    ("zstd", "algo=zstd level=19"),
    ("zstd", "dict"),
    ("zstd", "dict level=12"),
    ("zstd", "dict level=19"),
    ("deflate", None),
    ("deflate", "algo=deflate level=1"),
    ("deflate", "algo=deflate level=9"),
    ("deflate", "algo=deflate deflate.winbits=15"),
    ("deflate", "algo=deflate level=9 deflate.winbits=-15"),
    ("deflate", "algo=deflate level=1 deflate.winbits=9"),
]

#: The dictionaries: "dict" trained on the live pages (python-zstandard's
#: ``train_dictionary``, 8 KiB), and live content of 64 KiB and of one byte less
#: (lz4's ``dictSmall`` rules below 64 KiB, none at 64 KiB; lz4hc's window).
DICTIONARIES = ("dict", "dict65535", "dict64k")

#: Dictionaries the kernel's lz4 backends do not load whole, and one they do:
#: (algorithm, dictionary size); one page written, the outcome and the counters
#: compared.  lz4 loads nothing below 8 bytes; both load at most 64 KiB.
DICT_LOAD_CASES = [("lz4", 7), ("lz4", 65537), ("lz4hc", 3), ("lz4hc", 65537)]

#: (state, attribute, value): the same write must give the same outcome (ok or errno).
WRITE_CASES = [
    ("uninit", "comp_algorithm", "lzo"),  # not built into this kernel
    ("uninit", "comp_algorithm", "lz4hc\n"),
    ("uninit", "comp_algorithm", "zstd"),
    ("uninit", "comp_algorithm", "842"),
    ("uninit", "algorithm_params", "algo=zstd level=3"),
    ("uninit", "algorithm_params", "algo=lz4hc level=abc"),
    ("uninit", "algorithm_params", "algo=deflate dict=/nonexistent"),
    ("uninit", "algorithm_params", "priority=1 level=3"),
    ("uninit", "algorithm_params", "priority=0 deflate.winbits=abc"),
    ("uninit", "algorithm_params", "priority=0 bogus=1"),  # ignored
    ("uninit", "algorithm_params", "priority=0 dict=/dev/null"),  # an empty file
    ("uninit", "backing_dev", "/nonexistent"),
    ("uninit", "backing_dev", "/dev/vdb"),
    ("uninit", "writeback", "idle"),
    ("uninit", "writeback_limit", "10"),
    ("uninit", "writeback_limit_enable", "1"),
    ("uninit", "writeback_limit", "abc"),
    ("uninit", "idle", "all"),
    ("uninit", "recomp_algorithm", "algo=zstd"),
    ("uninit", "recompress", "type=idle"),
    ("init", "writeback", "idle"),  # no backing device
    ("init", "writeback", "huge"),
    ("init", "writeback_limit", "1"),
    ("init", "writeback_limit_enable", "2"),
    ("init", "writeback_limit_enable", "x"),
    ("init", "idle", "all"),
    ("init", "idle", "5"),
    ("init", "idle", "-1"),
    ("init", "idle", "bogus"),
    ("init", "backing_dev", "/dev/vdb"),
    ("init", "comp_algorithm", "deflate"),
    ("init", "algorithm_params", "algo=zstd level=3"),
    ("init", "mem_limit", "1M"),
    ("init", "compact", "1"),
]

#: Readable attributes whose text must equal the kernel's, fresh and initialised.
READ_ATTRS = [
    "comp_algorithm",
    "disksize",
    "initstate",
    "mm_stat",
    "io_stat",
    "debug_stat",
    "bd_stat",
    "backing_dev",
    "writeback_limit",
    "writeback_limit_enable",
    "max_comp_streams",
    "mem_used_max",
    "recomp_algorithm",
]


def _outcome(fn) -> str:
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"


def _read(dev: Zram, attr: str) -> str:
    try:
        return dev.sysfs[attr]
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def _vm_read(p) -> str:
    return p.outcome if p.raw and p.raw[0] == "err" else p.value


def _model_page_sizes(cfg: ZramConfig, algo: str, params: str | None, pages) -> np.ndarray:
    """pyzram's per-page stored size, measured as the guest measures the kernel's."""
    dev = Zram(cfg)
    dev.sysfs["comp_algorithm"] = algo
    if params:
        dev.sysfs["algorithm_params"] = params
    dev.sysfs["disksize"] = str(len(pages) * PAGE_SIZE)
    sizes = np.empty(len(pages), dtype=np.int16)
    before = dev.mm_stat()
    for i, page in enumerate(pages):
        dev.pwrite(page.tobytes(), i * PAGE_SIZE)
        after = dev.mm_stat()
        if after.same_pages > before.same_pages:
            sizes[i] = -1
        elif after.huge_pages > before.huge_pages:
            sizes[i] = PAGE_SIZE
        else:
            sizes[i] = after.compr_data_size - before.compr_data_size
        before = after
    return sizes


class Session:
    """Everything the module asks the guest, and pyzram's answers beside it."""

    def __init__(self, tmp: str) -> None:
        from pyzram.tools.commands.validate import record_vm_scenarios, vm_dictionary

        self.oracle = kernel_vm.VmOracle()
        self.cfg = ZramConfig.from_kconfig_text(self.oracle.config_text())
        script = kernel_vm.VmScript()
        self.script = script
        self.synthetic = synthetic_mix(400, seed=21)
        self.live = capture("python", scale=0.1, limit=400)
        size_pages = np.concatenate([synthetic_mix(300, seed=5), self.live[:300]])
        raw = self.live[-17:].tobytes()
        contents = {
            "dict": vm_dictionary(self.live),
            "dict65535": raw[-65535:],
            "dict64k": raw[-65536:],
        }
        contents.update({f"load-{n}": raw[-n:] for _, n in DICT_LOAD_CASES})
        self.dict_paths = {}
        for name, data in contents.items():
            self.dict_paths[name] = f"{tmp}/{name}"
            with open(self.dict_paths[name], "wb") as f:
                f.write(data)
            script.add_file(self.dict_paths[name], data)

        # Per-page sizes, one page at a time.
        self.sizes = {}
        for algo, params in SIZE_CASES:
            name, _, rest = (params or "").partition(" ")
            if name in DICTIONARIES:
                p = f"algo={algo} dict={self.dict_paths[name]}" + (f" {rest}" if rest else "")
            else:
                p = params
            z = kernel_vm.VmZram(script)
            z.write_attr("comp_algorithm", algo)
            if p:
                z.write_attr("algorithm_params", p)
            z.write_attr("disksize", str(len(size_pages) * PAGE_SIZE))
            kernel = z.page_sizes(size_pages)
            z.remove()
            self.sizes[(algo, params)] = (_model_page_sizes(self.cfg, algo, p, size_pages), kernel)

        # Dictionaries loaded in part: one page (not same-filled) written, then the counters.
        page = next(p.tobytes() for p in self.live if len(set(p.view("<u8"))) > 1)
        self.dict_loads = []
        for algo, n in DICT_LOAD_CASES:
            p = f"algo={algo} dict={self.dict_paths[f'load-{n}']}"
            ours = Zram(self.cfg)
            z = kernel_vm.VmZram(script)
            ours.sysfs["comp_algorithm"] = algo
            ours.sysfs["algorithm_params"] = p
            ours.sysfs["disksize"] = "1M"
            z.write_attr("comp_algorithm", algo)
            z.write_attr("algorithm_params", p)
            z.write_attr("disksize", "1M")
            got = _outcome(lambda d=ours: d.pwrite(page, 0))
            k = z.pwrite(page, 0)
            texts = [(a, _read(ours, a), z.read_attr(a)) for a in ("io_stat", "mm_stat")]
            z.remove()
            self.dict_loads.append(((algo, n), got, k, texts))

        # Sysfs writes: outcome and the texts after each.
        self.writes = []
        for state, attr, value in WRITE_CASES:
            ours = Zram(self.cfg)
            z = kernel_vm.VmZram(script)
            if state == "init":
                ours.sysfs["disksize"] = "1M"
                z.write_attr("disksize", "1M")
            vm_value = value
            if attr == "backing_dev" and value == "/dev/vdb":
                value = f"{tmp}/backing"
                with open(value, "wb") as f:
                    f.truncate(script.backing_size)
            got = _outcome(lambda d=ours, a=attr, v=value: d.sysfs.write(a, v))
            k = z.write_attr(attr, vm_value)
            texts = [(a, _read(ours, a), z.read_attr(a)) for a in READ_ATTRS if a != "backing_dev"]
            z.remove()
            self.writes.append(((state, attr, vm_value), got, k, texts))

        # Fresh and initialised device texts.
        self.texts = []
        for state in ("uninit", "init"):
            ours = Zram(self.cfg)
            z = kernel_vm.VmZram(script)
            if state == "init":
                ours.sysfs["comp_algorithm"] = "zstd"
                ours.sysfs["disksize"] = "2M"
                z.write_attr("comp_algorithm", "zstd")
                z.write_attr("disksize", "2M")
            for a in [*READ_ATTRS, "reset", "compact", "idle", "writeback", "algorithm_params"]:
                self.texts.append((state, a, _read(ours, a), z.read_attr(a)))
            z.remove()

        # The validate scenarios: all of them on synthetic pages, the defaults on live ones.
        self.validate = record_vm_scenarios(self.synthetic, script, self.cfg, f"{tmp}/s")
        self.validate_live = record_vm_scenarios(
            self.live, script, self.cfg, f"{tmp}/l", levels=False
        )
        self.run = self.oracle.run(script, timeout=900)
        for r in self.validate + self.validate_live:
            r.resolve()


@pytest.fixture(scope="module")
def vm():
    with tempfile.TemporaryDirectory(prefix="pyzram-vmtest-") as tmp:
        for sub in ("s", "l"):
            os.mkdir(f"{tmp}/{sub}")
        yield Session(tmp)


def test_the_script_ran_to_its_end(vm):
    assert vm.run.completed, vm.run.console[-2000:]
    assert all(p.done for p in vm.script.pendings)


@pytest.mark.parametrize("case", SIZE_CASES, ids=[f"{a}-{p}" for a, p in SIZE_CASES])
def test_page_sizes_equal_kernel(vm, case):
    ours, kernel = vm.sizes[case]
    k = kernel.value
    assert (k == -1).sum() > 0 and (k == PAGE_SIZE).sum() > 0 and (k > 0).sum() > 100
    diff = np.nonzero(ours != k)[0]
    assert len(diff) == 0, (
        f"{len(diff)} of {len(k)} pages differ, e.g. {ours[diff[:5]]} vs {k[diff[:5]]}"
    )


def _assert_writes_equal(writes) -> None:
    """Each ``(what, outcome, kernel's, [(attribute, ours, kernel's text)])``: the same
    outcome and the same texts after it, or one line per difference."""
    bad = []
    for what, got, k, texts in writes:
        if got != k.outcome:
            bad.append(f"{what}: pyzram {got}, kernel {k.outcome}")
        for a, ours, kt in texts:
            if ours != _vm_read(kt):
                bad.append(f"after {what}: {a}: {ours!r} vs {_vm_read(kt)!r}")
    assert not bad, "\n".join(bad)


def test_dictionary_loads_equal_kernel(vm):
    """A dictionary the backend's load does not take whole fails the write (EIO,
    ``failed_writes``) in both; one it takes stores the page in both."""
    outcomes = {(case, k.outcome) for case, _, k, _ in vm.dict_loads}
    assert (("lz4", 65537), "EIO") in outcomes and (("lz4hc", 3), "ok") in outcomes, outcomes
    _assert_writes_equal((str(case), got, k, texts) for case, got, k, texts in vm.dict_loads)


def test_sysfs_writes_equal_kernel(vm):
    outcomes = {k.outcome for _, _, k, _ in vm.writes}
    assert {"ok", "EINVAL", "EBUSY", "ENOENT"} <= outcomes, outcomes  # the cases do differ
    _assert_writes_equal(
        (f"{state} {attr}={value!r}", got, k, texts)
        for (state, attr, value), got, k, texts in vm.writes
    )


def test_attribute_texts_equal_kernel(vm):
    bad = [
        f"{state} {a}: pyzram {ours!r}, kernel {_vm_read(k)!r}"
        for state, a, ours, k in vm.texts
        if ours != _vm_read(k)
    ]
    assert not bad, "\n".join(bad)


def _assert_equal(results) -> None:
    bad = []
    for r in results:
        for s in r.steps:
            if not s.equal:
                bad.append(f"{r.algorithm} {s.step}: {s.mismatches()}")
        for c in r.checks:
            if not c.equal:
                bad.append(f"{r.algorithm} {c.step}: {c.what}: {c.ours!r} vs {c.kernel!r}")
        if not r.io_stat_equal or not r.read_back_equal:
            bad.append(f"{r.algorithm}: io_stat {r.io_stat_equal}, read-back {r.read_back_equal}")
    assert not bad, "\n".join(bad)


def test_every_backend_and_level_equals_kernel(vm):
    names = [r.algorithm for r in vm.validate]
    assert {"lz4", "lz4hc", "zstd", "deflate"} <= set(names)
    assert all(any(n.startswith(f"{a} dict") for n in names) for a in ("lz4", "lz4hc", "zstd"))
    _assert_equal([r for r in vm.validate if "writeback" not in r.algorithm])


def test_writeback_idle_ages_and_limits_equal_kernel(vm):
    (wb,) = [r for r in vm.validate if "writeback" in r.algorithm]
    kernel_bd = [c.kernel for c in wb.checks if c.what == "read bd_stat"]
    # Writeback really happened in the guest: bd_count grew past zero.
    assert any(int(t.split()[0]) > 0 for t in kernel_bd if isinstance(t, str))
    _assert_equal([wb])


def test_live_process_pages_equal_kernel(vm):
    assert len(vm.live) >= 300
    _assert_equal(vm.validate_live)


# -- opt-in: a kernel with CONFIG_ZRAM_MULTI_COMP (scripts/build-vm-kernel) -----------------


def _multicomp_kernel():
    found = [k for k in kernel_vm.cached_kernels() if k.version.endswith("-multicomp")]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def recompress():
    k = _multicomp_kernel()
    if k is None:
        pytest.skip("no CONFIG_ZRAM_MULTI_COMP kernel in the cache (run scripts/build-vm-kernel)")
    from pyzram.tools.commands.validate import recompress_scenario

    oracle = kernel_vm.VmOracle(k)
    cfg = ZramConfig.from_kconfig_text(oracle.config_text())
    assert cfg.multi_comp
    script = kernel_vm.VmScript()
    with tempfile.TemporaryDirectory(prefix="pyzram-vmtest-") as tmp:
        backing = f"{tmp}/backing"
        with open(backing, "wb") as f:
            f.truncate(script.backing_size)
        dev = kernel_vm.VmZram(script)
        result = recompress_scenario(
            synthetic_mix(300, seed=21), dev, cfg, backing, script.backing_size
        )
        dev.remove()
        run = oracle.run(script, timeout=600)
    assert run.completed
    result.resolve()
    return result


def test_recompress_outcomes_and_recomp_algorithm_equal_kernel(recompress):
    checks = [c for c in recompress.checks if "bd_stat" not in c.what]
    assert any(c.what == "read recomp_algorithm" for c in checks)
    assert {"ok", "EINVAL"} <= {c.kernel for c in checks if c.what.startswith("write ")}
    bad = [f"{c.step}: {c.what}: {c.ours!r} vs {c.kernel!r}" for c in checks if not c.equal]
    assert not bad, "\n".join(bad)
    assert recompress.read_back_equal


def test_recompress_mm_stat_equals_kernel(recompress):
    bad = [f"{s.step}: {s.mismatches()}" for s in recompress.steps if not s.equal]
    bad += [f"{c.step}: {c.what}" for c in recompress.checks if not c.equal]
    assert not bad, "\n".join(bad)
