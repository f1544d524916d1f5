"""Kernel build options that change what zram does (a model of the Kconfig switches).

``ZramConfig()`` is the experiment profile: every backend pyzram can run,
entry access times tracked, writeback and recompression built in.
``ZramConfig.from_running_kernel()`` reads the host's ``/proc/config.gz``
so a model device behaves like the host's
(``[lzo-rle] lzo lz4`` on the 6.18 kernels these machines run).
"""

from __future__ import annotations

import errno
import gzip
import re
from dataclasses import dataclass, field

#: Every backend zram knows, in ``zcomp``'s fixed listing order (backends[] of zcomp.c).
ALL_BACKENDS: tuple[str, ...] = ("lzo-rle", "lzo", "lz4", "lz4hc", "zstd", "deflate", "842")

#: The backends pyzram can run (842 is not implemented; see docs/architecture.md).
MODELLED_BACKENDS: tuple[str, ...] = ("lzo-rle", "lzo", "lz4", "lz4hc", "zstd", "deflate")

_CONFIG_BACKEND = {
    "lzo-rle": "CONFIG_ZRAM_BACKEND_LZO",
    "lzo": "CONFIG_ZRAM_BACKEND_LZO",
    "lz4": "CONFIG_ZRAM_BACKEND_LZ4",
    "lz4hc": "CONFIG_ZRAM_BACKEND_LZ4HC",
    "zstd": "CONFIG_ZRAM_BACKEND_ZSTD",
    "deflate": "CONFIG_ZRAM_BACKEND_DEFLATE",
    "842": "CONFIG_ZRAM_BACKEND_842",
}


@dataclass(frozen=True)
class ZramConfig:
    """The Kconfig options of zram and zsmalloc that pyzram models.

    Attributes mirror ``CONFIG_ZSMALLOC_CHAIN_SIZE``, ``CONFIG_ZRAM_BACKEND_*``,
    ``CONFIG_ZRAM_DEF_COMP``, ``CONFIG_ZRAM_TRACK_ENTRY_ACTIME``,
    ``CONFIG_ZRAM_WRITEBACK`` (backing_dev, writeback, bd_stat, the
    writeback limits) and ``CONFIG_ZRAM_MULTI_COMP`` (recomp_algorithm,
    recompress; ``ZRAM_MAX_COMPS`` 4 instead of 1).
    """

    zsmalloc_chain_size: int = 8
    backends: tuple[str, ...] = MODELLED_BACKENDS
    default_comp: str = "lzo-rle"
    track_entry_actime: bool = True
    writeback: bool = True
    multi_comp: bool = True
    kernel_release: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 4 <= self.zsmalloc_chain_size <= 16:
            raise ValueError("zsmalloc_chain_size must be in 4..16 (Kconfig range)")
        unknown = [b for b in self.backends if b not in ALL_BACKENDS]
        if unknown:
            raise ValueError(f"unknown zram backend(s): {', '.join(unknown)}")
        if self.default_comp not in self.backends:
            raise ValueError(f"default_comp {self.default_comp!r} is not among the backends")
        # Keep the kernel's listing order whatever order the caller used.
        object.__setattr__(self, "backends", tuple(b for b in ALL_BACKENDS if b in self.backends))

    @property
    def max_comps(self) -> int:
        """``ZRAM_MAX_COMPS``: 4 with CONFIG_ZRAM_MULTI_COMP, else 1."""
        return 4 if self.multi_comp else 1

    @classmethod
    def from_kconfig_text(cls, text: str) -> ZramConfig:
        """Build a config from the text of a kernel ``.config``."""
        opts: dict[str, str] = {}
        for line in text.splitlines():
            m = re.match(r"^(CONFIG_[A-Z0-9_]+)=(.*)$", line.strip())
            if m:
                opts[m.group(1)] = m.group(2).strip('"')
        if opts.get("CONFIG_ZRAM") not in ("y", "m"):
            raise OSError(errno.ENODEV, "the kernel config has no CONFIG_ZRAM")
        backends = tuple(b for b in ALL_BACKENDS if opts.get(_CONFIG_BACKEND[b]) == "y")
        if "842" in backends:
            # Kept honest: a host with 842 built cannot be mirrored byte for byte.
            backends = tuple(b for b in backends if b != "842")
        return cls(
            zsmalloc_chain_size=int(opts.get("CONFIG_ZSMALLOC_CHAIN_SIZE", "8")),
            backends=backends,
            default_comp=opts.get("CONFIG_ZRAM_DEF_COMP", "lzo-rle"),
            track_entry_actime=opts.get("CONFIG_ZRAM_TRACK_ENTRY_ACTIME") == "y",
            writeback=opts.get("CONFIG_ZRAM_WRITEBACK") == "y",
            multi_comp=opts.get("CONFIG_ZRAM_MULTI_COMP") == "y",
        )

    @classmethod
    def from_running_kernel(cls, path: str = "/proc/config.gz") -> ZramConfig:
        """The options of the running kernel, read from ``/proc/config.gz``.

        ``OSError(ENOENT)`` where the kernel does not expose its config.
        """
        try:
            with gzip.open(path, "rt") as f:
                text = f.read()
        except FileNotFoundError:
            raise OSError(errno.ENOENT, f"{path} not found (CONFIG_IKCONFIG_PROC off?)") from None
        cfg = cls.from_kconfig_text(text)
        try:
            with open("/proc/sys/kernel/osrelease") as f:
                release = f.read().strip()
        except OSError:
            release = None
        object.__setattr__(cfg, "kernel_release", release)
        return cfg
