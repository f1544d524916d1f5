"""Compiled or interpreted: which form of the kernel model's modules runs.

The hot modules (``setup.py``'s ``COMPILED``) are built by Cython from their
own ``.py`` source (and ``.pxd`` types), and the extension sits beside the
source.  Python imports the extension when both are there.
``PYZRAM_INTERPRETED=1`` in the environment makes every ``pyzram`` module
load from its ``.py`` instead, in the same installation, so one checkout runs
(and CI tests) both forms of the same code.  If any extension is older than
its ``.py`` or ``.pxd`` by more than two seconds (the source was edited since
the last build), every module runs from its source, with one warning to
rebuild (``pip install -e .``): the compiled modules take each other's types
as built, so one stale module cannot run beside the others.
``pyzram.COMPILED`` says which form this process runs.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import warnings
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec

ENV = "PYZRAM_INTERPRETED"
#: An extension is stale when its source is newer by more than this: an edit after
#: the build.  Installing a wheel writes every file in the same moment, in any
#: order, so an installed ``.py`` may be newer than its extension by microseconds.
STALE_S = 2.0


class SourceFirstFinder(importlib.abc.MetaPathFinder):
    """Finds every ``pyzram.*`` module that has a ``.py`` file as that file, where
    an extension of the same name may sit beside it: the interpreted form."""

    def find_spec(self, name: str, path, target=None) -> ModuleSpec | None:  # noqa: ANN001
        if not name.startswith("pyzram.") or path is None:
            return None
        leaf = name.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(name, source)
        return None


def stale_extensions(package_dir: str) -> list[str]:
    """The sources (``.py`` or ``.pxd``) under ``package_dir`` newer than their
    module's extension by more than :data:`STALE_S`."""
    stale = []
    for root, _dirs, files in os.walk(package_dir):
        names = set(files)
        for f in files:
            suffix = next((s for s in EXTENSION_SUFFIXES if f.endswith(s)), None)
            if suffix is None:
                continue
            stem = f[: -len(suffix)]
            if stem + ".py" not in names:
                continue  # the C codecs: no Python source
            built = os.path.getmtime(os.path.join(root, f))
            for src in (stem + ".py", stem + ".pxd"):
                path = os.path.join(root, src)
                if src in names and os.path.getmtime(path) - built > STALE_S:
                    stale.append(path)
    return sorted(stale)


def install() -> None:
    """Put :class:`SourceFirstFinder` first on ``sys.meta_path`` (once) where the
    interpreted form is asked for, or where the build is older than its source."""
    if any(isinstance(f, SourceFirstFinder) for f in sys.meta_path):
        return
    if os.environ.get(ENV) != "1":
        stale = stale_extensions(os.path.dirname(os.path.abspath(__file__)))
        if not stale:
            return
        warnings.warn(
            f"{len(stale)} of pyzram's sources changed since the build ({stale[0]}"
            f"{', ...' if len(stale) > 1 else ''}): every module runs from its source; "
            "rebuild with 'pip install -e .'",
            stacklevel=3,
        )
    sys.meta_path.insert(0, SourceFirstFinder())


install()


def _compiled() -> bool:
    from pyzram.zram import zram_drv

    return not (zram_drv.__file__ or "").endswith(".py")
