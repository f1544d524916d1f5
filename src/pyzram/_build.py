"""Compiled or interpreted: which form of the kernel model's modules runs.

The hot modules (``setup.py``'s ``COMPILED``) are built by Cython from their
own ``.py`` source, and the extension sits beside the source.  Python
imports the extension when both are there.  ``PYZRAM_INTERPRETED=1`` in the
environment makes every ``pyzram`` module load from its ``.py`` instead, in
the same installation, so one checkout runs (and CI tests) both forms of the
same code.  An extension older than its ``.py`` by more than two seconds
(the source was edited since the last build) is never loaded either: the
source runs, with a warning to rebuild (``pip install -e .``).  ``pyzram.COMPILED`` says which
form this process runs.
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
    """Finds a ``pyzram.*`` module as its ``.py`` file where an extension of the
    same name sits beside it and the interpreted form is asked for, or the
    extension is older than the source; otherwise leaves the search to the
    normal finders."""

    def __init__(self, interpreted: bool) -> None:
        self.interpreted = interpreted

    def find_spec(self, name: str, path, target=None) -> ModuleSpec | None:  # noqa: ANN001
        if not name.startswith("pyzram.") or path is None:
            return None
        leaf = name.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if not os.path.isfile(source):
                continue
            if not self.interpreted:
                built = [os.path.join(entry, leaf + s) for s in EXTENSION_SUFFIXES]
                built = [b for b in built if os.path.isfile(b)]
                if not built or os.path.getmtime(source) - os.path.getmtime(built[0]) <= STALE_S:
                    return None
                warnings.warn(
                    f"{built[0]} is older than {source}: running the source; "
                    "rebuild with 'pip install -e .'",
                    stacklevel=2,
                )
            return importlib.util.spec_from_file_location(name, source)
        return None


def install() -> None:
    """Put :class:`SourceFirstFinder` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, SourceFirstFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFirstFinder(os.environ.get(ENV) == "1"))


install()


def _compiled() -> bool:
    from pyzram.zram import zram_drv

    return not (zram_drv.__file__ or "").endswith(".py")
