"""The old name of :mod:`pyzram.tools.commands.ctl`, for :mod:`pyzram.nbd.control`.

``import pyzram.ctl`` gives that module itself (not a copy), so that both
names see the same functions.  New code imports :mod:`pyzram.tools.commands.ctl`.
"""

import sys

from pyzram.tools.commands import ctl as _ctl

sys.modules[__name__] = _ctl
