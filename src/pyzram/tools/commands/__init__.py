"""One module per ``pyzram`` command; each exports ``command``, which :mod:`pyzram.tools.cli`
registers under the command's name."""
