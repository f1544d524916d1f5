"""pyzram: the Linux swap I/O path and the zram compressed-RAM block device, in Python.

    import pyzram
    dev = pyzram.Zram()                     # one device, as after hot_add
    dev.sysfs["comp_algorithm"] = "lz4"     # same words and errors as sysfs
    dev.sysfs["disksize"] = "64M"
    dev.pwrite(data, 0)                     # like pwrite(2) on /dev/zramN, O_DIRECT
    dev.sysfs["mm_stat"]                    # the kernel's exact text

See docs/architecture.md for the map from kernel files to modules.
"""

from pyzram.config import ZramConfig
from pyzram.zram.stat import IoStat, MmStat, parse_io_stat, parse_mm_stat
from pyzram.zram.zram_drv import Zram

__all__ = ["Zram", "ZramConfig", "MmStat", "IoStat", "parse_mm_stat", "parse_io_stat"]
__version__ = "0.1.0"
