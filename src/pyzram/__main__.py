"""``python -m pyzram``: the same as the ``pyzram`` command."""

import sys

from pyzram.cli import main

sys.exit(main())
