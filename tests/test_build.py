"""The kernel model runs in two forms from one source: its hot modules compiled by
Cython, and the same ``.py`` files interpreted (``PYZRAM_INTERPRETED=1``).  The
fidelity tests (the host kernel comparison, the interleaving explorer, the
differential tests) must pass in both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyzram

ROOT = Path(__file__).resolve().parent.parent
#: What the interpreted form must pass as well.
FIDELITY_TESTS = [
    "tests/test_kernel_compare.py",
    "tests/test_explore.py",
    "tests/test_batch_equivalence.py",
    "tests/test_zram_swap.py",
    "tests/test_zsmalloc.py",
    "tests/test_zram.py",
    "tests/test_machine.py",
    "tests/test_swap_core.py",
    "tests/test_locks.py",
]


def _run(code: str, **env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_the_environment_switch_loads_every_module_from_its_source():
    """Every module of the model from its ``.py``; the codec module, which is
    C by design (no ``.py``), is what the interpreted zcomp calls."""
    code = (
        "import sys, pyzram, pyzram.mm.zsmalloc, pyzram.zram.swap; "
        "print(pyzram.COMPILED, sorted({m.__file__.rsplit('.', 1)[1] "
        "for n, m in sys.modules.items() "
        "if n.startswith('pyzram.') and n != 'pyzram._kcodec' and m.__file__}), "
        "'pyzram._kcodec' in sys.modules)"
    )
    assert _run(code, PYZRAM_INTERPRETED="1") == "False ['py'] True"


def test_every_module_has_the_names_it_exports():
    """Compiled, a constant a module imports may be a C variable of that module
    (its ``.pxd``), which is then no attribute: it must not be in ``__all__``."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(pyzram.__path__, "pyzram."):
        if info.name.startswith("pyzram._"):
            continue
        mod = importlib.import_module(info.name)
        missing = [n for n in getattr(mod, "__all__", ()) if not hasattr(mod, n)]
        assert not missing, (info.name, missing)


@pytest.mark.skipif(not pyzram.COMPILED, reason="the compiled modules are not built here")
def test_the_compiled_modules_are_extensions():
    from pyzram.mm import zsmalloc
    from pyzram.zram import table, zram_drv

    for mod in (zram_drv, zsmalloc, table):
        assert mod.__file__.endswith(".so"), mod.__file__


@pytest.mark.skipif(not pyzram.COMPILED, reason="this run is interpreted already")
def test_the_interpreted_form_passes_the_fidelity_tests():
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FIDELITY_TESTS],
        cwd=ROOT,
        env={**os.environ, "PYZRAM_INTERPRETED": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1]


def test_the_build_is_stale_only_when_a_source_was_edited_after_it(tmp_path):
    """An installed wheel's files are all written in one moment, in any order (a
    ``.py`` may come microseconds after its extension): the build is current.  A
    ``.py`` or ``.pxd`` edited after the build makes it stale; a C extension with
    no Python source never is."""
    from importlib.machinery import EXTENSION_SUFFIXES

    from pyzram._build import stale_extensions

    sub = tmp_path / "mm"
    sub.mkdir()
    source, types = sub / "mod.py", sub / "mod.pxd"
    built = sub / f"mod{EXTENSION_SUFFIXES[0]}"
    codec = tmp_path / f"_codec{EXTENSION_SUFFIXES[0]}"
    for f in (source, types, built, codec):
        f.write_bytes(b"")
    t = built.stat().st_mtime
    for f in (source, types):
        os.utime(f, (t + 0.001, t + 0.001))  # as pip extracts a wheel
    os.utime(codec, (t - 3600, t - 3600))
    assert stale_extensions(str(tmp_path)) == []
    os.utime(types, (t + 60, t + 60))  # the types edited a minute after the build
    assert stale_extensions(str(tmp_path)) == [str(types)]
    os.utime(source, (t + 60, t + 60))
    assert stale_extensions(str(tmp_path)) == [str(types), str(source)]


def test_an_edited_source_runs_every_module_from_its_source(tmp_path):
    """One module's source edited after the build: the process runs every module
    from its source (the compiled modules take each other's types as built, so
    one stale module cannot run beside the others), with one warning."""
    import shutil
    from importlib.machinery import EXTENSION_SUFFIXES

    here = Path(pyzram.__file__).parent
    if not (here / "zram" / f"zram_drv{EXTENSION_SUFFIXES[0]}").exists():
        pytest.skip("built without the compiled modules (PYZRAM_COMPILE=0)")
    pkg = tmp_path / "pyzram"
    shutil.copytree(here, pkg, copy_function=shutil.copy2)
    (pkg / "mm" / "folio.py").touch()  # edited now, after the build
    code = "import pyzram; print(pyzram.COMPILED)"
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "PYZRAM_INTERPRETED": ""},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout.strip() == "False"
    assert out.stderr.count("changed since the build") == 1 and "folio.py" in out.stderr
