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
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pyzram.config import ZramConfig
from pyzram.zram.stat import MmStat
from pyzram.zram.zram_drv import PAGE_SIZE, Zram


@dataclass
class StepResult:
    """One step of a scenario: both devices' mm_stat after it."""

    step: str
    ours: MmStat
    kernel: MmStat

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
class ScenarioResult:
    """All steps of one algorithm's scenario."""

    algorithm: str
    pages: int
    steps: list[StepResult] = field(default_factory=list)
    read_back_equal: bool = True
    io_stat_equal: bool = True

    @property
    def equal(self) -> bool:
        return self.read_back_equal and self.io_stat_equal and all(s.equal for s in self.steps)


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
) -> ScenarioResult:
    """Run the scenario on ``kernel`` (a KernelZram already entered) and on pyzram.

    ``after_init`` is called with our device once it is initialised (tests
    use it to swap in a compressor that replays the kernel's own sizes).
    """
    n = len(pages)
    disksize = max(2 * n, 64) * PAGE_SIZE
    ours = Zram(ZramConfig.from_running_kernel())
    result = ScenarioResult(algorithm, n)
    for dev in (ours, kernel):
        _write_attr(dev, "comp_algorithm", algorithm)
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
    result.io_stat_equal = ours.io_stat() == kernel.io_stat()
    length = 2 * n * PAGE_SIZE
    result.read_back_equal = ours.pread(length, 0) == kernel.pread(length, 0)
    ours.check()
    return result


def _write_attr(dev, name: str, value: str) -> None:
    if isinstance(dev, Zram):
        dev.sysfs[name] = value
    else:
        dev.write_attr(name, value)


def validate(pages: np.ndarray, algorithms: list[str] | None = None) -> list[ScenarioResult]:
    """Run the scenario for each algorithm the host kernel has (or those given)."""
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
