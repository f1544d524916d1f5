"""The workload's process: its memory built, then its access pattern replayed.

:func:`replay` is the simulated process's own loop, the instruction stream
whose loads and stores reach the model's page tables through
:meth:`~pyzram.mm.vmscan.AddressSpace.touch`.  It runs inside every measured
window of ``pyzram run``, once per access, so it is compiled like the model
(``replay.pxd``): a C loop over the pattern and a C call to ``touch``, as
the kernel's side of ``bench run`` is a C program touching its memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyzram.mm.vmscan import AddressSpace


def replay(
    mm: AddressSpace,
    page_of: Callable[[int], Any],
    acc: Any,
    src: Any,
    exp: Any,
    sample: Callable[[int, str], None],
    after_step: Callable[[int], None] | None = None,
) -> int:
    """The process: it builds its memory page by page (the fill), then replays the
    access pattern ``acc`` (a write stores the original bytes of the page ``src``
    names, ``page_of(s)``, and ``exp`` keeps which page each one holds now);
    about 64 ``sample``\\ s over each phase (at most every 512 steps);
    ``after_step(step)`` after each step.  Returns the steps taken."""
    n = len(exp)
    fill_every = max(1, min(512, n // 64))
    pattern_every = max(1, min(512, len(acc) // 64))
    step = 0
    for vpn in range(n):
        mm.touch(vpn)
        step += 1
        if step % fill_every == 0 or step == n:
            sample(step, "fill")
        if after_step is not None:
            after_step(step)
    chunk = 1 << 16  # the pattern's arrays taken as lists a chunk at a time
    for lo in range(0, len(src), chunk):
        vpns = acc.vpn[lo : lo + chunk].tolist()
        srcs = src[lo : lo + chunk].tolist()
        if len(vpns) != len(srcs):
            raise ValueError("the pattern and its write sources differ in length")
        for i in range(len(vpns)):
            vpn = vpns[i]
            s = srcs[i]
            if s >= 0:  # a write: the original bytes of page s
                mm.touch(vpn, False, page_of(s))
                exp[vpn] = s  # (after: a swap-in on the way read the old bytes)
            else:
                mm.touch(vpn)
            step += 1
            if (step - n) % pattern_every == 0:
                sample(step, "pattern")
            if after_step is not None:
                after_step(step)
    return step
