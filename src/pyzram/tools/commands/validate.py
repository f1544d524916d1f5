"""The same page stream through pyzram and through the host kernel's zram.

``validate()`` runs one scenario per algorithm on a fresh kernel device
(``hot_add``, always reset and ``hot_remove``-d) and on a
``Zram(ZramConfig.from_running_kernel())`` side by side, and compares
``mm_stat`` — all nine fields — after every step:

1. ``write``: every page, in order, as one O_DIRECT stream;
2. ``overwrite``: every third slot rewritten with a page from elsewhere in
   the stream (new object allocated before the old one is freed);
3. ``discard``: pages 1-2 as one range, plus every seventh page on its
   own (``BLKDISCARD``);
4. ``compact``: ``echo 1 > compact``;
5. ``mem_used_max``: ``echo 0 > mem_used_max``;
6. ``mem_limit``: a limit 16 KiB above the current usage, then pages
   written one by one into the free second half of the device until
   writes are refused (``EIO``; ``failed_writes`` must agree too);
7. ``read``: every slot read back on both; the bytes must be equal.

This is what ``pyzram validate`` prints and what the kernel tests assert.

``kernel="vm"`` runs the same scenarios against Debian's 6.18 kernel booted
under qemu (:mod:`pyzram.host.kernel_vm`), all in one boot: the scenario for
every algorithm that kernel has (lz4, lz4hc, zstd, deflate; it has no lzo),
the same with ``algorithm_params`` levels and a trained dictionary (lz4,
lz4hc and zstd), and a
feature scenario (:func:`feature_scenario`) for writeback in each mode,
``writeback_limit``, idle marking with ages, ``bd_stat``, ``io_stat``,
``debug_stat``, ``mem_limit`` and ``compact``, and, on a kernel built with
``CONFIG_ZRAM_MULTI_COMP`` (``scripts/build-vm-kernel``), recompression
(:func:`recompress_scenario`).  There the guest's results
are known only after the boot, so both sides record their results first
(:class:`~pyzram.host.kernel_vm.Pending`) and are compared afterwards.

``validate --zswap`` (:func:`validate_zswap`) pushes the pages out with
``MADV_PAGEOUT`` through a kernel's zswap and through pyzram's and compares
the debugfs and vmstat counters (``ZSWAP_FIELDS``): the host's zswap
(:class:`~pyzram.host.kernel_zswap.KernelZswap`), or with ``kernel="vm"``
the VM kernel's for every compressor of its crypto API, in one boot
(:func:`validate_zswap_vm`, :class:`ZswapVmRecord`).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import typer

from pyzram.config import ZramConfig
from pyzram.tools.common import (
    JsonOpt,
    PageFileArg,
    UsageError,
    check_algorithm,
    console,
    load_pages,
    mm_table,
    print_field_table,
)
from pyzram.zram.stat import MmStat
from pyzram.zram.zram_drv import PAGE_SIZE, Zram


def _value(x):
    """A VM result (``Pending``) once the script has run, or the value itself."""
    return x.value if hasattr(x, "script") and hasattr(x, "seq") else x


@dataclass
class StepResult:
    """One step of a scenario: both devices' mm_stat after it."""

    step: str
    ours: MmStat
    kernel: MmStat

    def resolve(self) -> None:
        self.kernel = _value(self.kernel)

    @property
    def equal(self) -> bool:
        return self.ours == self.kernel

    def mismatches(self) -> list[str]:
        return [
            f"{name}: pyzram {a} kernel {b}"
            for name, a, b in zip(MmStat._fields, self.ours, self.kernel, strict=True)
            if a != b
        ]


@dataclass
class Check:
    """One more comparison: a write's outcome (``ok`` or the errno's name) or a sysfs text."""

    step: str
    what: str
    ours: str
    kernel: object  # str, or a Pending until resolved

    @property
    def equal(self) -> bool:
        return self.ours == self.kernel

    def resolve(self) -> None:
        k = self.kernel
        if hasattr(k, "outcome") and hasattr(k, "raw"):
            if self.what.startswith(("write ", "writeback", "pwrite", "discard")):
                self.kernel = k.outcome
            else:
                self.kernel = k.outcome if k.raw and k.raw[0] == "err" else k.value


@dataclass
class ScenarioResult:
    """All steps of one algorithm's scenario."""

    algorithm: str
    pages: int
    steps: list[StepResult] = field(default_factory=list)
    read_back_equal: bool = True
    io_stat_equal: bool = True
    checks: list[Check] = field(default_factory=list)
    kernel_name: str = "host"
    _deferred: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def equal(self) -> bool:
        return (
            self.read_back_equal
            and self.io_stat_equal
            and all(s.equal for s in self.steps)
            and all(c.equal for c in self.checks)
        )

    def resolve(self) -> None:
        """Fill in the kernel's side where it was recorded for later (the VM)."""
        for s in self.steps:
            s.resolve()
        for c in self.checks:
            c.resolve()
        for f in self._deferred:
            f()
        self._deferred.clear()


class _Both:
    """Applies each operation to both devices and records mm_stat."""

    def __init__(self, ours: Zram, kernel, result: ScenarioResult) -> None:
        self.ours, self.kernel, self.result = ours, kernel, result

    def step(self, name: str, op: Callable[[object], object]) -> None:
        op(self.ours)
        op(self.kernel)
        self.result.steps.append(StepResult(name, self.ours.mm_stat(), self.kernel.mm_stat()))


def run_scenario(
    pages: np.ndarray,
    algorithm: str,
    kernel,
    after_init: Callable[[Zram], None] | None = None,
    *,
    config: ZramConfig | None = None,
    params: str | None = None,
    label: str | None = None,
) -> ScenarioResult:
    """Run the scenario on ``kernel`` (a KernelZram already entered, or a VmZram) and on pyzram.

    ``after_init`` is called with our device once it is initialised (tests
    use it to swap in a compressor that replays the kernel's own sizes).
    ``config`` is the kernel's (default: the running kernel's); ``params``
    is written to ``algorithm_params`` before ``disksize``.  With a VmZram
    the result is complete only after the VM ran and ``resolve()`` was called.
    """
    n = len(pages)
    disksize = max(2 * n, 64) * PAGE_SIZE
    ours = Zram(config or ZramConfig.from_running_kernel())
    result = ScenarioResult(label or algorithm, n)
    for dev in (ours, kernel):
        _write_attr(dev, "comp_algorithm", algorithm)
        if params:
            _write_attr(dev, "algorithm_params", params)
        _write_attr(dev, "disksize", str(disksize))
    if after_init is not None:
        after_init(ours)
    both = _Both(ours, kernel, result)
    data = np.ascontiguousarray(pages).tobytes()
    both.step("write", lambda d: d.pwrite(data, 0))

    rng = np.random.default_rng(12345)
    slots = np.arange(0, n, 3)
    sources = rng.integers(0, n, size=len(slots))

    def overwrite(d) -> None:
        for slot, src in zip(slots.tolist(), sources.tolist(), strict=True):
            d.pwrite(pages[src].tobytes(), slot * PAGE_SIZE)

    both.step("overwrite", overwrite)

    def discard(d) -> None:
        if n >= 4:
            d.discard(PAGE_SIZE, 2 * PAGE_SIZE)
        for slot in range(5, n, 7):
            d.discard(slot * PAGE_SIZE, PAGE_SIZE)

    both.step("discard", discard)
    both.step("compact", lambda d: _write_attr(d, "compact", "1"))
    both.step("mem_used_max", lambda d: _write_attr(d, "mem_used_max", "0"))
    limit = ours.mm_stat().mem_used_total + 4 * PAGE_SIZE

    def fill_to_limit(d) -> None:
        _write_attr(d, "mem_limit", str(limit))
        for i in range(n):
            try:
                d.pwrite(pages[i].tobytes(), (n + i) * PAGE_SIZE)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise

    both.step("mem_limit", fill_to_limit)
    io_ours, io_kernel = ours.io_stat(), kernel.io_stat()
    length = 2 * n * PAGE_SIZE
    read_ours, read_kernel = ours.pread(length, 0), kernel.pread(length, 0)
    ours.check()

    def compare() -> None:
        result.io_stat_equal = io_ours == _value(io_kernel)
        result.read_back_equal = read_ours == _value(read_kernel)

    result._deferred.append(compare)
    if not hasattr(kernel, "script"):
        result.resolve()
    return result


def _write_attr(dev, name: str, value: str) -> None:
    if isinstance(dev, Zram):
        dev.sysfs[name] = value
    else:
        dev.write_attr(name, value)


def validate(
    pages: np.ndarray, algorithms: list[str] | None = None, kernel: str = "host"
) -> list[ScenarioResult]:
    """Run the scenario for each algorithm the kernel has (or those given).

    ``kernel`` is ``"host"`` (the running kernel's zram, ``hot_add``) or
    ``"vm"`` (:func:`validate_vm`: Debian's 6.18 under qemu).
    """
    if kernel == "vm":
        return validate_vm(pages, algorithms)
    if kernel != "host":
        raise ValueError(f"kernel must be 'host' or 'vm', not {kernel!r}")
    from pyzram.host.kernel_zram import KernelZram, unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise OSError(reason)
    cfg = ZramConfig.from_running_kernel()
    algos = algorithms or list(cfg.backends)
    results = []
    for algo in algos:
        with KernelZram() as k:
            results.append(run_scenario(pages, algo, k))
    return results


# -- against the VM's kernel --------------------------------------------------------------

#: ``algorithm_params`` variants run by ``validate --kernel vm`` (besides each default level).
VM_LEVELS: tuple[tuple[str, str], ...] = (
    ("lz4", "algo=lz4 level=8"),
    ("lz4hc", "algo=lz4hc level=4"),
    ("lz4hc", "algo=lz4hc level=12"),
    ("zstd", "algo=zstd level=1"),
    ("zstd", "algo=zstd level=-3"),
    ("zstd", "algo=zstd level=9"),
    ("deflate", "algo=deflate level=1"),
    ("deflate", "algo=deflate level=9"),
)

#: The backends that take ``algorithm_params``' ``dict=`` (the VM runs each with one).
DICT_BACKENDS = ("lz4", "lz4hc", "zstd")

#: Pages the feature scenario uses at most (TCG is slow).
FEATURE_PAGES = 2048


def _outcome(fn: Callable[[], object]) -> str:
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "error"
    return "ok"


class VirtualClock:
    """``ktime_get_boottime`` for the model: moves only when the script sleeps."""

    def __init__(self, start_ns: int = 10**12) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


class _Twin:
    """Each operation on pyzram at once and on the VM's device (recorded), compared later."""

    def __init__(self, ours: Zram, vm, result: ScenarioResult, clock: VirtualClock) -> None:
        self.ours, self.vm, self.result, self.clock = ours, vm, result, clock
        self.step_name = "setup"
        self._mark = 0

    def write(self, attr: str, value: str, vm_value: str | None = None) -> None:
        got = _outcome(lambda: self.ours.sysfs.write(attr, value))
        k = self.vm.write_attr(attr, value if vm_value is None else vm_value)
        self.result.checks.append(Check(self.step_name, f"write {attr}={value!r}", got, k))

    def read(self, attr: str) -> None:
        try:
            got = self.ours.sysfs[attr]
        except OSError as e:
            got = errno.errorcode.get(e.errno or 0, str(e.errno))
        self.result.checks.append(
            Check(self.step_name, f"read {attr}", got, self.vm.read_attr(attr))
        )

    def pwrite(self, data: bytes, offset: int) -> None:
        got = _outcome(lambda: self.ours.pwrite(data, offset))
        what = f"pwrite {len(data) // PAGE_SIZE} pages at slot {offset // PAGE_SIZE}"
        self.result.checks.append(Check(self.step_name, what, got, self.vm.pwrite(data, offset)))

    def discard(self, offset: int, length: int) -> None:
        got = _outcome(lambda: self.ours.discard(offset, length))
        what = f"discard slots {offset // PAGE_SIZE}..{(offset + length) // PAGE_SIZE - 1}"
        self.result.checks.append(Check(self.step_name, what, got, self.vm.discard(offset, length)))

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        self.vm.script.sleep(seconds)

    def snap(self, step: str) -> None:
        """End of a step: mm_stat into the table, bd_stat and io_stat texts compared.

        The checks recorded since the previous step are labelled ``step``.
        """
        self.result.steps.append(StepResult(step, self.ours.mm_stat(), self.vm.mm_stat()))
        for attr in ("bd_stat", "io_stat"):
            self.read(attr)
        for c in self.result.checks[self._mark :]:
            c.step = step
        self._mark = len(self.result.checks)


def feature_scenario(
    pages: np.ndarray,
    vm,
    config: ZramConfig,
    backing_file: str,
    backing_size: int,
    algorithm: str = "lz4",
) -> ScenarioResult:
    """Writeback, limits, idle ages, bd_stat, io_stat, compact, mem_limit: pyzram and ``vm``.

    ``vm`` is a VmZram whose guest has its backing device at ``/dev/vdb``
    (``backing_size`` bytes); pyzram's is ``backing_file``, of the same size,
    so block allocation (``alloc_block_bdev``) sees the same bitmap.  Every
    sysfs write's outcome (``ok`` or errno), every ``bd_stat``/``io_stat``
    text and ``mm_stat`` after each step are compared.
    """
    pages = pages[:FEATURE_PAGES]
    n = len(pages)
    half = max(n // 2, 1)
    clock = VirtualClock()
    ours = Zram(config, clock=clock)
    result = ScenarioResult(f"{algorithm} + writeback", n)
    t = _Twin(ours, vm, result, clock)
    disksize = (2 * n + 256) * PAGE_SIZE
    assert backing_size >= disksize
    t.write("comp_algorithm", algorithm)
    t.write("backing_dev", backing_file, vm_value="/dev/vdb")
    t.write("writeback", "idle")  # not initialised: EINVAL
    t.write("disksize", str(disksize))
    t.write("backing_dev", backing_file, vm_value="/dev/vdb")  # initialised: EBUSY
    for attr in ("writeback_limit_enable", "writeback_limit", "bd_stat", "debug_stat"):
        t.read(attr)
    t.snap("setup")
    t.pwrite(pages[:half].tobytes(), 0)
    t.snap("write")
    t.write("writeback", "huge")
    t.snap("wb huge")
    t.write("idle", "all")
    t.write("writeback", "huge_idle")
    t.snap("wb huge_idle")
    t.write("writeback_limit_enable", "1")
    t.write("writeback_limit", "8")
    t.read("writeback_limit")
    t.write("writeback", "idle")  # stops when the limit is spent
    t.read("writeback_limit")
    t.read("writeback_limit_enable")
    t.snap("wb limit 8")
    t.write("writeback_limit_enable", "0")
    t.write("writeback", "type=idle")
    t.snap("wb idle")
    t.pwrite(pages[half:].tobytes(), half * PAGE_SIZE)
    t.write("writeback", f"page_index={half + 1}")
    t.write("writeback", f"page_indexes={half + 2}-{half + 20}")
    t.write("writeback", f"page_index={disksize // PAGE_SIZE}")
    t.write("writeback", "page_indexes=20-10")
    t.write("writeback", "bogus")
    t.write("writeback", "incompressible")
    t.snap("wb index")
    base = n + 8
    group = min(64, half)
    t.pwrite(pages[:group].tobytes(), base * PAGE_SIZE)
    t.sleep(3.0)
    t.pwrite(pages[group : 2 * group].tobytes(), (base + group) * PAGE_SIZE)
    t.write("idle", "2")
    t.write("writeback", "idle")
    t.snap("idle 2 s")
    length = (base + 2 * group) * PAGE_SIZE
    got, k = ours.pread(length, 0), vm.pread(length, 0)
    result._deferred.append(lambda: setattr(result, "read_back_equal", got == _value(k)))
    t.snap("read")
    t.discard(0, 16 * PAGE_SIZE)
    t.discard((half + 1) * PAGE_SIZE, 4 * PAGE_SIZE)
    t.snap("discard")
    t.write("compact", "1")
    t.snap("compact")
    t.write("mem_used_max", "0")
    limit = ours.mm_stat().mem_used_total + 4 * PAGE_SIZE
    t.write("mem_limit", str(limit))
    fill = base + 2 * group
    for i in range(min(n, 64)):
        t.pwrite(pages[i].tobytes(), (fill + i) * PAGE_SIZE)
    t.snap("mem_limit")
    t.read("debug_stat")
    t.snap("end")
    ours.check()
    return result


def recompress_scenario(
    pages: np.ndarray,
    vm,
    config: ZramConfig,
    backing_file: str,
    backing_size: int,
) -> ScenarioResult:
    """Recompression (``CONFIG_ZRAM_MULTI_COMP``): ``recomp_algorithm``, ``recompress``.

    lz4 primary, zstd / deflate / lz4hc (level 12) as priorities 1-3, then
    ``recompress`` by type (idle, huge, huge_idle), ``threshold``,
    ``max_pages``, ``algo`` and ``priority``, good and bad requests, and
    ``writeback incompressible`` of what could not be recompressed.  Every
    outcome, ``recomp_algorithm`` / ``bd_stat`` / ``io_stat`` / ``debug_stat``
    text and ``mm_stat`` after each step is compared.
    """
    pages = pages[:FEATURE_PAGES]
    n = len(pages)
    clock = VirtualClock()
    ours = Zram(config, clock=clock)
    result = ScenarioResult("lz4 + recompress", n)
    t = _Twin(ours, vm, result, clock)
    disksize = (n + 64) * PAGE_SIZE
    assert backing_size >= disksize
    t.write("comp_algorithm", "lz4")
    for value in (
        "algo=zstd priority=1",
        "algo=deflate priority=2",
        "algo=lz4hc priority=3",
        "algo=nope priority=1",
        "algo=zstd priority=0",
        "algo=zstd priority=4",
        "algo=zstd",
    ):
        t.write("recomp_algorithm", value)
    t.write("algorithm_params", "priority=3 level=12")
    t.write("recompress", "type=idle")  # not initialised
    t.write("backing_dev", backing_file, vm_value="/dev/vdb")
    t.write("disksize", str(disksize))
    t.read("recomp_algorithm")
    t.snap("setup")
    t.pwrite(pages.tobytes(), 0)
    t.snap("write")
    for value in ("type=bogus", "threshold=5000", "algo=nope", "priority=9", "max_pages=x"):
        t.write("recompress", value)
    t.write("idle", "all")
    t.write("recompress", "type=idle max_pages=40")
    t.snap("idle, 40")
    t.write("recompress", "type=huge")
    t.snap("huge")
    t.write("recompress", "type=huge_idle algo=deflate")
    t.snap("huge_idle deflate")
    t.write("idle", "all")
    t.write("recompress", "type=idle threshold=1000 priority=3")
    t.snap("threshold 1000 prio 3")
    t.write("idle", "all")
    t.write("recompress", "type=idle")
    t.snap("idle")
    t.write("writeback", "incompressible")
    t.snap("wb incompressible")
    got, k = ours.pread(n * PAGE_SIZE, 0), vm.pread(n * PAGE_SIZE, 0)
    result._deferred.append(lambda: setattr(result, "read_back_equal", got == _value(k)))
    t.discard(0, 32 * PAGE_SIZE)
    t.write("compact", "1")
    t.read("debug_stat")
    t.snap("read, discard, compact")
    ours.check()
    return result


def vm_dictionary(pages: np.ndarray, size: int = 8192) -> bytes:
    """A dictionary trained on ``pages`` (python-zstandard's ``train_dictionary``):
    zstd's format with its entropy tables, plain content to lz4 and lz4hc."""
    import zstandard

    samples = [p.tobytes() for p in pages[: min(len(pages), 2000)]]
    try:
        return zstandard.train_dictionary(size, samples).as_bytes()
    except zstandard.ZstdError:
        return b"".join(samples)[:size]  # too few samples: a raw-content dictionary


def record_vm_scenarios(
    pages: np.ndarray,
    script,
    config: ZramConfig,
    tmp: str,
    algorithms: list[str] | None = None,
    *,
    levels: bool = True,
    features: bool = True,
) -> list[ScenarioResult]:
    """Record the VM scenarios into ``script`` (a VmScript) while pyzram runs its side.

    ``tmp`` is a directory for pyzram's backing file and the dictionary (which
    the guest gets at the same path).  The results are complete once
    the script has run and each result's ``resolve()`` was called.
    """
    from pyzram.host.kernel_vm import VmZram

    algos = algorithms or list(config.backends)
    missing = [a for a in algos if a not in config.backends]
    if missing:
        raise ValueError(
            f"the VM kernel has no {', '.join(missing)} backend "
            f"(it has {' '.join(config.backends)})"
        )
    results: list[ScenarioResult] = []

    def one(algo: str, params: str | None = None, label: str | None = None) -> None:
        dev = VmZram(script)
        results.append(run_scenario(pages, algo, dev, config=config, params=params, label=label))
        dev.remove()

    for algo in algos:
        one(algo)
    if levels:
        for algo, params in VM_LEVELS:
            if algo in algos:
                one(algo, params, f"{algo} {params.split(' ', 1)[1]}")
        dict_algos = [a for a in DICT_BACKENDS if a in algos]
        if dict_algos:
            path = f"{tmp}/trained.dict"
            data = vm_dictionary(pages)
            with open(path, "wb") as f:
                f.write(data)
            script.add_file(path, data)
            for algo in dict_algos:
                one(algo, f"algo={algo} dict={path}", f"{algo} dict ({len(data)} B)")
    if features:
        backing = f"{tmp}/backing"
        with open(backing, "wb") as f:
            f.truncate(script.backing_size)
        dev = VmZram(script)
        algo = "lz4" if "lz4" in algos else algos[0]
        results.append(
            feature_scenario(pages, dev, config, backing, script.backing_size, algorithm=algo)
        )
        dev.remove()
        if config.multi_comp:
            backing = f"{tmp}/backing-recomp"
            with open(backing, "wb") as f:
                f.truncate(script.backing_size)
            dev = VmZram(script)
            results.append(recompress_scenario(pages, dev, config, backing, script.backing_size))
            dev.remove()
    return results


def validate_vm(
    pages: np.ndarray,
    algorithms: list[str] | None = None,
    *,
    levels: bool | None = None,
    features: bool | None = None,
    oracle=None,
) -> list[ScenarioResult]:
    """The scenarios against Debian's 6.18 kernel under qemu, in one boot.

    Without ``algorithms``: every backend of that kernel, the ``VM_LEVELS``
    variants, a dictionary for lz4, lz4hc and zstd and the feature scenario
    (``levels`` and ``features`` default to that).  Raises :class:`OSError` with the reason
    where the VM cannot run, :class:`ValueError` for an algorithm the VM
    kernel lacks.
    """
    import tempfile

    from pyzram.host.kernel_vm import VmOracle, VmScript, unavailable_reason

    if oracle is None:
        reason = unavailable_reason()
        if reason:
            raise OSError(reason)
        oracle = VmOracle()
    cfg = ZramConfig.from_kconfig_text(oracle.config_text())
    script = VmScript()
    with tempfile.TemporaryDirectory(prefix="pyzram-vm-") as tmp:
        results = record_vm_scenarios(
            pages,
            script,
            cfg,
            tmp,
            algorithms,
            levels=algorithms is None if levels is None else levels,
            features=algorithms is None if features is None else features,
        )
        run = oracle.run(script)
    name = f"vm {oracle.kernel.release} (qemu {run.accel}, {run.seconds:.1f} s)"
    for r in results:
        r.kernel_name = name
        r.resolve()
    return results


# -- the command ------------------------------------------------------------------------------


def command(
    pagefile: PageFileArg = None,
    algo: Annotated[
        list[str] | None,
        typer.Option("--algorithm", "-a", help="algorithm(s); default: all the kernel has"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="use only the first N pages")] = None,
    kernel: Annotated[
        str,
        typer.Option(
            help="host: the running kernel's zram (hot_add); vm: Debian's 6.18 kernel under "
            "qemu, every backend it has, algorithm_params levels, a dictionary (lz4, lz4hc, "
            "zstd) and writeback, idle ages, bd_stat, writeback_limit, mem_limit, compact"
        ),
    ] = "host",
    zswap: Annotated[
        bool,
        typer.Option(
            "--zswap",
            help="zswap instead of zram: the pages pushed out with MADV_PAGEOUT through the "
            "kernel's zswap (a hot_added zram swap area behind it) and through pyzram's; "
            "with --kernel vm every compressor of the VM kernel's crypto API (lzo, lzo-rle, "
            "lz4, lz4hc, zstd, deflate)",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The same pages through pyzram and a real kernel's zram (or zswap): equal counters."""
    if kernel not in ("host", "vm"):
        raise UsageError("--kernel", f"must be host or vm, not {kernel!r}")
    if zswap:
        _validate_zswap(load_pages(pagefile, limit), algo, as_json, kernel)
        return
    for a in algo or []:
        check_algorithm(a)
    pages = load_pages(pagefile, limit)
    results = validate(pages, algo, kernel=kernel)
    if as_json:
        out = [
            {
                "algorithm": r.algorithm,
                "pages": r.pages,
                "equal": r.equal,
                "read_back_equal": r.read_back_equal,
                "io_stat_equal": r.io_stat_equal,
                "steps": [
                    {
                        "step": s.step,
                        "equal": s.equal,
                        "pyzram": s.ours._asdict(),
                        "kernel": s.kernel._asdict(),
                    }
                    for s in r.steps
                ],
            }
            for r in results
        ]
        for d, r in zip(out, results, strict=True):
            if r.checks:
                d["kernel"] = r.kernel_name
                d["checks"] = [
                    {"step": c.step, "what": c.what, "pyzram": c.ours, "kernel": c.kernel}
                    for c in r.checks
                ]
        print(json.dumps(out, indent=2))
    else:
        for r in results:
            columns = []
            for s in r.steps:
                cells = [
                    f"{a}" if a == b else f"[red]{a} (kernel {b})[/red]"
                    for a, b in zip(s.ours, s.kernel, strict=True)
                ]
                cells.append("yes" if s.equal else "[red]NO[/red]")
                columns.append((s.step, cells))
            print_field_table(
                f"{r.algorithm}: {r.pages} pages, mm_stat of pyzram (= kernel)",
                [*MmStat._fields, "equal"],
                columns,
            )
            console.print(
                f"read-back equal: {'yes' if r.read_back_equal else 'NO'}; "
                f"io_stat equal: {'yes' if r.io_stat_equal else 'NO'}"
            )
            if r.checks:
                same = sum(c.equal for c in r.checks)
                console.print(
                    f"{same} of {len(r.checks)} write outcomes and sysfs texts "
                    "(bd_stat, io_stat, writeback_limit, debug_stat) equal"
                )
                for c in r.checks:
                    if not c.equal:
                        console.print(
                            f"[red]{c.step}: {c.what}: pyzram {c.ours!r}, kernel {c.kernel!r}[/red]"
                        )
        ok = sum(r.equal for r in results)
        what = "scenarios" if kernel == "vm" else "algorithms"
        against = results[0].kernel_name if kernel == "vm" and results else "the kernel"
        console.print(f"{ok} of {len(results)} {what} equal {against} in every field")
    if not all(r.equal for r in results):
        raise typer.Exit(1)


#: What ``validate --zswap`` compares: debugfs files, then vmstat counters.
ZSWAP_FIELDS = (
    ("debugfs", "stored_pages"),
    ("debugfs", "stored_incompressible_pages"),
    ("debugfs", "pool_total_size"),
    ("debugfs", "pool_limit_hit"),
    ("debugfs", "reject_compress_fail"),
    ("debugfs", "reject_compress_poor"),
    ("debugfs", "reject_alloc_fail"),
    ("debugfs", "written_back_pages"),
    ("vmstat", "zswpout"),
    ("vmstat", "swpout_zero"),
    ("vmstat", "pswpout"),
)


def _zswap_result(algorithm: str, n: int, ours: dict, kern: dict, kernel_name: str) -> dict:
    """One compressor's row of ``validate --zswap``: every ``ZSWAP_FIELDS`` field side by side."""
    fields = []
    for group, name in ZSWAP_FIELDS:
        o, kv = ours[group].get(name, 0), kern[group].get(name, 0)
        fields.append({"field": f"{group} {name}", "pyzram": o, "kernel": kv, "equal": o == kv})
    return {
        "algorithm": algorithm,
        "pages": n,
        "kernel": kernel_name,
        "equal": all(f["equal"] for f in fields),
        "read_back_equal": ours["read_back_equal"] and kern["read_back_equal"],
        "fields": fields,
    }


def validate_zswap(pages, algorithms: list[str] | None = None, kernel: str = "host") -> list[dict]:
    """Each algorithm: the pages through a kernel's zswap and pyzram's, side by side.

    ``kernel`` is ``"host"`` (the running kernel's zswap, in front of a
    ``hot_add``-ed zram area) or ``"vm"`` (:func:`validate_zswap_vm`).
    """
    if kernel == "vm":
        return validate_zswap_vm(pages, algorithms)
    if kernel != "host":
        raise ValueError(f"kernel must be 'host' or 'vm', not {kernel!r}")
    from pyzram.host.kernel_zswap import KernelZswap, unavailable_reason
    from pyzram.mm.zswap import host_crypto_compressors, host_totalram_pages
    from pyzram.tools.commands.store import zswap_pageout

    reason = unavailable_reason()
    if reason:
        raise OSError(errno.ENODEV, reason)
    have = host_crypto_compressors()
    algos = algorithms or list(have)
    for a in algos:
        if a not in have:
            raise UsageError("--algorithm", f"the host's crypto API has {', '.join(have)}, not {a}")
    disksize = max(64 << 20, 2 * len(pages) * 4096)
    name = f"host {os.uname().release}"
    out = []
    for a in algos:
        with KernelZswap(compressor=a, disksize=disksize) as k:
            kern = k.pageout(pages, read_back=True)
        ours = zswap_pageout(
            pages, a, totalram_pages=host_totalram_pages(), compressors=have, read_back=True
        )
        out.append(_zswap_result(a, len(pages), ours, kern, name))
    return out


#: The zram algorithm of the swap area behind the guest's zswap (its zram has no lzo-rle).
VM_ZSWAP_BACKING = "lz4"
#: Pages ``validate --zswap --kernel vm`` takes at most: the guest (1 GiB) holds them
#: twice (the mapping and the page disk's cache) besides zswap's pool.
VM_ZSWAP_MAX_PAGES = 32768


class ZswapVmRecord:
    """The zswap runs recorded into a guest script, and pyzram's side once it ran.

    :meth:`results` reads the guest's answers (its /proc/crypto, ``MemTotal``
    and each compressor's counters), runs pyzram's side with that RAM, those
    compressors and the same lz4 zram area
    (:func:`~pyzram.tools.commands.store.zswap_pageout`), and keeps both
    sides' dicts in :attr:`kernel` and :attr:`ours` by compressor.
    """

    def __init__(self, pages, script, algorithms: list[str]) -> None:
        from pyzram.host.kernel_vm import VmZswap

        self.pages = pages
        self.crypto = script.read_file("/proc/crypto")
        self.meminfo = script.read_file("/proc/meminfo")
        disksize = max(64 << 20, 2 * len(pages) * PAGE_SIZE)
        self.recorded = []
        for a in algorithms:
            z = VmZswap(script, compressor=a, disksize=disksize, backing_algorithm=VM_ZSWAP_BACKING)
            self.recorded.append((a, z.pageout(pages, read_back=True)))
            z.remove()
        self.kernel: dict[str, dict] = {}
        self.ours: dict[str, dict] = {}

    def guest_compressors(self) -> tuple[str, ...]:
        """The compressors of the guest's /proc/crypto (read before zswap was set up)."""
        from pyzram.mm.zswap import crypto_compressors

        return crypto_compressors(self.crypto.value)

    def results(self, kernel_name: str) -> list[dict]:
        from pyzram.mm.zswap import totalram_pages_of
        from pyzram.tools.commands.store import zswap_pageout

        guest = self.guest_compressors()
        totalram = totalram_pages_of(self.meminfo.value)
        out = []
        for a, rec in self.recorded:
            self.kernel[a] = kern = rec.value
            self.ours[a] = ours = zswap_pageout(
                self.pages,
                a,
                totalram_pages=totalram,
                compressors=guest,
                read_back=True,
                backing_algorithm=VM_ZSWAP_BACKING,
            )
            out.append(_zswap_result(a, len(self.pages), ours, kern, kernel_name))
        return out


def vm_zswap_compressors(oracle, algorithms: list[str] | None = None) -> list[str]:
    """``algorithms``, or every compressor the VM kernel's Kconfig builds (checked)."""
    from pyzram.host.kernel_vm import kconfig_crypto_compressors

    have = kconfig_crypto_compressors(oracle.config_text())
    if not have:
        raise OSError(errno.ENODEV, f"the VM kernel {oracle.kernel.release} has no zswap")
    algos = algorithms or list(have)
    for a in algos:
        if a not in have:
            raise UsageError(
                "--algorithm", f"the VM kernel's crypto API has {', '.join(have)}, not {a}"
            )
    return algos


def validate_zswap_vm(pages, algorithms: list[str] | None = None, *, oracle=None) -> list[dict]:
    """Each compressor of Debian's 6.18 kernel under qemu: its zswap and pyzram's, in one boot.

    The guest loads the crypto API's compressor modules (lz4, lz4hc, zstd,
    deflate; lzo and lzo-rle are built in) and, per compressor, does what
    :class:`~pyzram.host.kernel_zswap.KernelZswap` does on the host
    (:class:`~pyzram.host.kernel_vm.VmZswap`): a ``hot_add``-ed zram swap
    area (lz4) at the highest priority, ``compressor`` then ``enabled``
    written, the pages mapped and pushed out with ``MADV_PAGEOUT``, the
    debugfs and vmstat counters read, every page faulted back and compared
    (:class:`ZswapVmRecord`).  Without ``algorithms``: every compressor the
    VM kernel's Kconfig builds.  Raises :class:`OSError` where the VM cannot
    run or the guest refused a step, :class:`UsageError` for a compressor the
    VM kernel lacks or more pages than the guest holds.
    """
    from pyzram.host.kernel_vm import VmOracle, VmScript, unavailable_reason

    if len(pages) > VM_ZSWAP_MAX_PAGES:
        raise UsageError(
            "--limit", f"the VM takes at most {VM_ZSWAP_MAX_PAGES} pages, not {len(pages)}"
        )
    if oracle is None:
        reason = unavailable_reason()
        if reason:
            raise OSError(errno.ENODEV, reason)
        oracle = VmOracle()
    algos = vm_zswap_compressors(oracle, algorithms)
    script = VmScript()
    record = ZswapVmRecord(pages, script, algos)
    run = oracle.run(script)
    return record.results(f"vm {oracle.kernel.release} (qemu {run.accel}, {run.seconds:.1f} s)")


def _validate_zswap(pages, algorithms: list[str] | None, as_json: bool, kernel: str) -> None:
    results = validate_zswap(pages, algorithms, kernel=kernel)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            title = f"zswap {r['algorithm']}: {r['pages']} pages, MADV_PAGEOUT"
            t = mm_table(title, ["pyzram", "kernel", "equal"], [])
            for f in r["fields"]:
                t.add_row(
                    f["field"],
                    f"{f['pyzram']:,}",
                    f"{f['kernel']:,}",
                    "yes" if f["equal"] else "[red]NO[/red]",
                )
            console.print(t)
            console.print(f"read-back equal: {'yes' if r['read_back_equal'] else 'NO'}")
        ok = sum(r["equal"] for r in results)
        against = results[0]["kernel"] if results else "the kernel"
        console.print(
            f"{ok} of {len(results)} compressors equal the zswap of {against} in every field"
        )
    if not all(r["equal"] and r["read_back_equal"] for r in results):
        raise typer.Exit(1)
