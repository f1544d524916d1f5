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
    code = (
        "import sys, pyzram, pyzram.mm.zsmalloc, pyzram.zram.swap; "
        "print(pyzram.COMPILED, sorted({m.__file__.rsplit('.', 1)[1] "
        "for n, m in sys.modules.items() if n.startswith('pyzram.') and m.__file__}))"
    )
    assert _run(code, PYZRAM_INTERPRETED="1") == "False ['py']"


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


def test_an_extension_runs_unless_its_source_was_edited_after_the_build(tmp_path):
    """An installed wheel's files are all written in one moment, in any order (the
    ``.py`` may come microseconds after its extension): the extension runs.  A
    source edited after the build runs instead of its stale extension, with a
    warning."""
    from importlib.machinery import EXTENSION_SUFFIXES

    from pyzram._build import SourceFirstFinder

    source, built = tmp_path / "mod.py", tmp_path / f"mod{EXTENSION_SUFFIXES[0]}"
    source.write_text("")
    built.write_bytes(b"")
    finder = SourceFirstFinder(interpreted=False)
    t = built.stat().st_mtime
    os.utime(source, (t + 0.001, t + 0.001))  # as pip extracts a wheel
    assert finder.find_spec("pyzram.mod", [str(tmp_path)]) is None
    os.utime(source, (t + 60, t + 60))  # edited a minute after the build
    with pytest.warns(UserWarning, match="older than"):
        spec = finder.find_spec("pyzram.mod", [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)
    assert SourceFirstFinder(interpreted=True).find_spec("pyzram.mod", [str(tmp_path)])
