"""pyzram devices over NBD, so real block-device tools (nbdcopy, qemu-img, fio) can use them.

* :mod:`.protocol` -- the NBD protocol's constants and wire structures;
* :mod:`.export` -- an export: a pyzram device plus the block-layer work
  (sub-page read-modify-write, discard, write-zeroes, block status from the
  slot table) between NBD and it;
* :mod:`.server` -- ``pyzram serve``, the asyncio server;
* :mod:`.control` -- the control socket behind ``pyzram ctl --socket``;
* :mod:`.bench` -- ``pyzram bench nbd``, fio against us and nbdkit.

See docs/nbd.md.
"""
