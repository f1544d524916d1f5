"""``python -m pyzram``: the same as the ``pyzram`` command."""

import sys

from pyzram.tools.cli import main

sys.exit(main())
