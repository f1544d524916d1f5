"""Build pyzram's compiled parts with the machine's compiler.

* ``pyzram._kcodec``: the kernel-identical codecs, hand-written C, built
  with profile feedback where the compiler is gcc: compiled once
  instrumented, run on a training set of real pages (the standard
  library's sources as text, the interpreter's shared libraries as
  binary, the training process's own heap, zero, same-filled and random
  pages), and compiled again with the counts (``-fprofile-use``), which
  lays out the compressors' loops for the paths that real pages take (lz4
  compresses about 4 % faster).  The bytes the codecs produce do not
  depend on it; ``PYZRAM_PGO=0`` builds without, and a failed training
  run builds without a profile.
* The hot modules of the kernel model, compiled by Cython from their own
  ``.py`` source in pure-Python mode (:data:`COMPILED`; types, where given,
  come from annotations and the ``.pxd`` file beside a module).  The ``.py``
  files stay the one source of every kernel function and run as they are
  when not compiled: ``PYZRAM_COMPILE=0 pip install .`` (or an editable
  install with it) builds the codecs only, and the same modules then run
  interpreted.

The compiled modules call the interpreter's C API through the global offset
table (``-fno-plt``: no jump through a PLT stub on each of the few dozen
calls a page makes, mostly the error test after a call).  Debug information
is left out (``-g0``: the build takes a third less time)
unless ``CFLAGS`` asks for it (``CFLAGS=-g pip install .``, for ``perf`` and
``valgrind`` line-level profiles).

Everything else is declared in pyproject.toml; setuptools needs this file
because extensions cannot be declared there.
"""

import os
import shutil
import subprocess
import sys
import tempfile

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
    "src/pyzram/mm/mm_types.py",
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


#: Debug information only when CFLAGS asks for it.
DEBUG_INFO = [] if "-g" in os.environ.get("CFLAGS", "").split() else ["-g0"]

#: The codecs' training run (a child interpreter, the instrumented module's path as
#: argv[1]): about 2,800 real pages (text 29 %, binary 21 %,
#: heap 29 %, zero 9 %, same-filled 4 %, random 9 %), each compressed and
#: decompressed by every algorithm one page at a time, then compressed in batches
#: (``compress_batch``: zram's writes run its inlined copy of the compressor).
PGO_TRAINING = r"""
import glob, importlib.util, os, random, sys, sysconfig
spec = importlib.util.spec_from_file_location("pyzram._kcodec", sys.argv[1])
kc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kc)
P = 4096
def file_pages(paths, limit):
    out = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        data += bytes(-len(data) % P)  # a file's last page, zero-padded as in the page cache
        out += [data[i : i + P] for i in range(0, len(data), P)]
        if len(out) >= limit:
            break
    return out[:limit]
def anon_pages(limit):
    # This process's own anonymous memory (its heap of Python objects): what swap sees.
    out = []
    try:
        maps, mem = open("/proc/self/maps"), open("/proc/self/mem", "rb", 0)
    except OSError:  # no procfs: the other pages only
        return out
    with maps, mem:
        for line in maps:
            f = line.split()
            if f[1] != "rw-p" or (len(f) > 5 and f[5] != "[heap]"):
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            try:
                mem.seek(lo)
                data = mem.read(min(hi - lo, (limit - len(out)) * P))
            except OSError:
                continue
            out += [data[i : i + P] for i in range(0, len(data) - P + 1, P)]
            if len(out) >= limit:
                break
    return out[:limit]
stdlib = sysconfig.get_path("stdlib")
text = file_pages(sorted(glob.glob(os.path.join(stdlib, "*.py"))), 800)
libdir = sysconfig.get_config_var("LIBDIR") or ""
binary = file_pages(sorted(glob.glob(os.path.join(libdir, "libpython*.so*")))
                    + sorted(glob.glob(os.path.join(stdlib, "lib-dynload", "*.so"))), 600)
heap = anon_pages(800)
rng = random.Random(1)
pages = text + binary + heap + [bytes(P)] * 250
pages += [rng.randrange(1, 256).to_bytes(1, "little") * P for _ in range(100)]
pages += [rng.randbytes(P) for _ in range(250)]
pages = [p for p in pages if len(p) == P]
rng.shuffle(pages)
n = len(pages)
for algo, accel in (("lz4", 1), ("lzo-rle", 1), ("lzo", 1), ("lz4hc", 9)):
    buf = bytearray(2 * P)
    page = bytearray(P)
    for src in pages:
        m = kc.compress_into(algo, src, buf, accel)
        assert kc.decompress_into(algo, buf, 0, m, page) == 0 and page == src
    dst = bytearray(n * 2 * P)
    sizes = memoryview(bytearray(4 * n)).cast("i")
    for _ in range(3):
        kc.compress_batch(algo, b"".join(pages), n, dst, sizes, accel)
"""


class ParallelBuildExt(build_ext):
    """Compile the extensions on every core (pip's build has no -j of its own),
    the codecs with profile feedback (see the module docstring)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extension(self, ext: Extension) -> None:
        if ext.name != "pyzram._kcodec" or not self._pgo() or self._up_to_date(ext):
            super().build_extension(ext)
            return
        base = list(ext.extra_compile_args)
        with tempfile.TemporaryDirectory(prefix="pyzram-pgo-") as d:
            prof = os.path.abspath(os.path.join(d, "profile"))
            ext.extra_compile_args = base + ["-fprofile-generate", f"-fprofile-dir={prof}"]
            ext.extra_link_args = ["-fprofile-generate"]
            objects = self.compiler.compile(
                ext.sources,
                output_dir=self.build_temp,
                include_dirs=ext.include_dirs,
                extra_postargs=ext.extra_compile_args,
                depends=ext.depends,
            )
            trained = os.path.join(d, os.path.basename(self.get_ext_filename(ext.name)))
            self.compiler.link_shared_object(
                objects,
                trained,
                libraries=self.get_libraries(ext),
                library_dirs=ext.library_dirs,
                extra_postargs=ext.extra_link_args,
                target_lang="c",
            )
            trained_ok = (
                subprocess.run([sys.executable, "-c", PGO_TRAINING, trained]).returncode == 0
            )
            if trained_ok:
                ext.extra_compile_args = base + [
                    "-fprofile-use",
                    f"-fprofile-dir={prof}",
                    "-fprofile-partial-training",
                    "-Wno-missing-profile",
                ]
            else:  # the codecs are the same without the profile, only slower
                print("pyzram: the codecs' training run failed; building them without a profile")
                ext.extra_compile_args = base
            ext.extra_link_args = []
            try:
                super().build_extension(ext)  # compiles every source again
            finally:
                ext.extra_compile_args = base

    def _up_to_date(self, ext: Extension) -> bool:
        """build_ext's own test: the module is newer than its sources."""
        path = self.get_ext_fullpath(ext.name)
        if self.force or not os.path.exists(path):
            return False
        mtime = os.path.getmtime(path)
        return all(os.path.getmtime(f) < mtime for f in [*ext.sources, *ext.depends])

    def _pgo(self) -> bool:
        """Profile feedback: gcc only (its -fprofile-* options), unless PYZRAM_PGO=0."""
        if os.environ.get("PYZRAM_PGO", "1") == "0" or not shutil.which("gcc"):
            return False
        cc = getattr(self.compiler, "compiler_so", None) or ["cc"]
        out = subprocess.run([cc[0], "--version"], capture_output=True, text=True).stdout
        return "free software foundation" in out.lower()


def extensions() -> list[Extension]:
    exts = [
        Extension(
            "pyzram._kcodec",
            sources=["src/pyzram/_kcodec/kcodec.c", "src/pyzram/_kcodec/lz4hc.c"],
            depends=["src/pyzram/_kcodec/lz4hc.h", "src/pyzram/_kcodec/kcodec_capi.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", *DEBUG_INFO],
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
            extra_compile_args=["-O2", "-fno-plt", *DEBUG_INFO],
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
