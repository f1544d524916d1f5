"""The benches: :mod:`.table` (``pyzram bench``: every figure in one table) and
:mod:`.device` (``pyzram bench zram|codecs|swap``: one bench each)."""
