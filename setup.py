"""Build pyzram's compiled parts with the machine's compiler.

* ``pyzram._kcodec``: the kernel-identical codecs, hand-written C.
* The hot modules of the kernel model, compiled by Cython from their own
  ``.py`` source in pure-Python mode (:data:`COMPILED`; types, where given,
  come from annotations and the ``.pxd`` file beside a module).  The ``.py``
  files stay the one source of every kernel function and run as they are
  when not compiled: ``PYZRAM_COMPILE=0 pip install .`` (or an editable
  install with it) builds the codecs only, and the same modules then run
  interpreted.

Everything else is declared in pyproject.toml; setuptools needs this file
because extensions cannot be declared there.
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: Modules compiled from their .py source (the kernel model's hot paths, and the run's
#: page sampler and the workload's process, which work inside every measured window).
COMPILED = [
    "src/pyzram/lib/atomic.py",
    "src/pyzram/lib/rwsem.py",
    "src/pyzram/lib/spinlock.py",
    "src/pyzram/lib/xarray.py",
    "src/pyzram/lib/percpu.py",
    "src/pyzram/lib/list.py",
    "src/pyzram/lib/string.py",
    "src/pyzram/mm/zsmalloc.py",
    "src/pyzram/zram/table.py",
    "src/pyzram/zram/zcomp.py",
    "src/pyzram/zram/backend_lz4.py",
    "src/pyzram/zram/backend_lz4hc.py",
    "src/pyzram/zram/backend_lzo.py",
    "src/pyzram/zram/backend_lzorle.py",
    "src/pyzram/zram/zram_drv.py",
    "src/pyzram/zram/swap.py",
    "src/pyzram/block/blkdev.py",
    "src/pyzram/block/bio.py",
    "src/pyzram/mm/folio.py",
    "src/pyzram/mm/machine.py",
    "src/pyzram/mm/swap.py",
    "src/pyzram/mm/swap_ops.py",
    "src/pyzram/mm/swapfile.py",
    "src/pyzram/mm/page_io.py",
    "src/pyzram/mm/tlb.py",
    "src/pyzram/mm/vmscan.py",
    "src/pyzram/mm/zswap.py",
    "src/pyzram/tools/kcost.py",
    "src/pyzram/tools/bench/plug.py",
    "src/pyzram/workload/replay.py",
]


class ParallelBuildExt(build_ext):
    """Compile the extensions on every core (pip's build has no -j of its own)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


def extensions() -> list[Extension]:
    exts = [
        Extension(
            "pyzram._kcodec",
            sources=["src/pyzram/_kcodec/kcodec.c", "src/pyzram/_kcodec/lz4hc.c"],
            depends=["src/pyzram/_kcodec/lz4hc.h", "src/pyzram/_kcodec/kcodec_capi.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
        )
    ]
    if os.environ.get("PYZRAM_COMPILE", "1") == "0":
        return exts
    from Cython.Build import cythonize

    compiled = [
        Extension(
            path[len("src/") : -len(".py")].replace("/", "."),
            sources=[path],
            include_dirs=["src/pyzram/_kcodec"],  # kcodec_capi.h: the codecs' C entry points
            extra_compile_args=["-O2"],
        )
        for path in COMPILED
    ]
    return exts + cythonize(
        compiled,
        language_level=3,
        nthreads=os.cpu_count() or 1,
        compiler_directives={"annotation_typing": False, "binding": True, "nonecheck": True},
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": ParallelBuildExt})
