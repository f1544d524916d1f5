"""pyzram: the Linux swap I/O path and the zram compressed-RAM block device, in Python.

    import pyzram
    dev = pyzram.Zram()                     # one device, as after hot_add
    dev.sysfs["comp_algorithm"] = "lz4"     # same words and errors as sysfs
    dev.sysfs["disksize"] = "64M"
    dev.pwrite(data, 0)                     # like pwrite(2) on /dev/zramN, O_DIRECT
    dev.sysfs["mm_stat"]                    # the kernel's exact text

    m = pyzram.Machine()                    # a booted kernel: swap areas, vm events...
    zram_init(m); si = swapon(m, dev.disk)  # pyzram.zram.swap, pyzram.mm.swapfile

See docs/architecture.md for the map from kernel files to modules.
``pyzram.COMPILED`` says whether the kernel model's hot modules run compiled
(the default where they were built) or interpreted (``PYZRAM_INTERPRETED=1``).
"""

import os

# pyzram does no linear algebra: without this, importing numpy starts OpenBLAS's
# thread pool, whose threads spin after any BLAS call and take a core from the
# model (a user's own setting wins; it only counts before numpy is imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pyzram import _build  # noqa: E402, I001  (first: it decides how the modules below load)
from pyzram.config import ZramConfig  # noqa: E402
from pyzram.mm.machine import Machine  # noqa: E402
from pyzram.zram.stat import IoStat, MmStat, parse_io_stat, parse_mm_stat  # noqa: E402
from pyzram.zram.zram_drv import Zram  # noqa: E402

#: True where the kernel model's hot modules run as their compiled extensions.
COMPILED = _build._compiled()

__all__ = [
    "COMPILED",
    "Machine",
    "Zram",
    "ZramConfig",
    "MmStat",
    "IoStat",
    "parse_mm_stat",
    "parse_io_stat",
]
__version__ = "0.1.0"
