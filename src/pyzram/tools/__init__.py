"""Everything a user runs, above the kernel model: the ``pyzram`` command and its benches.

:mod:`pyzram.tools.cli` builds the command line; :mod:`pyzram.tools.commands`
holds one module per command (its code and its printing); :mod:`pyzram.tools.bench`
the benchmark rows and their table; :mod:`pyzram.tools.plot` the PNG of a run.
The tools reach the model (``mm/``, ``zram/``, ``block/``, ``lib/``,
``workload/``, ``host/``, ``nbd/``) only through its public entry points.
"""
