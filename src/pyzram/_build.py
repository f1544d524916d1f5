"""Compiled or interpreted: which form of the kernel model's modules runs.

The hot modules (``setup.py``'s ``COMPILED``) are built by Cython from their
own ``.py`` source, and the extension sits beside the source.  Python
imports the extension when both are there.  ``PYZRAM_INTERPRETED=1`` in the
environment makes every ``pyzram`` module load from its ``.py`` instead, in
the same installation, so one checkout runs (and CI tests) both forms of the
same code.  :data:`COMPILED` says which form this process runs.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec

ENV = "PYZRAM_INTERPRETED"


class SourceFirstFinder(importlib.abc.MetaPathFinder):
    """Finds ``pyzram.*`` modules as ``.py`` files even where an extension of the
    same name sits beside them."""

    def find_spec(self, name: str, path, target=None) -> ModuleSpec | None:  # noqa: ANN001
        if not name.startswith("pyzram.") or path is None:
            return None
        leaf = name.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(name, source)
        return None


def install() -> None:
    """Put :class:`SourceFirstFinder` first on ``sys.meta_path`` if the
    environment asks for the interpreted form."""
    if os.environ.get(ENV) == "1" and not any(
        isinstance(f, SourceFirstFinder) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, SourceFirstFinder())


install()


def _compiled() -> bool:
    from pyzram.zram import zram_drv

    return not (zram_drv.__file__ or "").endswith(".py")
