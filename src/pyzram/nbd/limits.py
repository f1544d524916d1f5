"""What one client can make ``pyzram serve`` hold: the bounds and their defaults.

Each bound follows what nbdkit and qemu-nbd do and is an option of
``pyzram serve``:

* ``max_block_size`` (``--max-block-size``, 32 MiB, qemu-nbd's
  ``NBD_MAX_BUFFER_SIZE``): the maximum advertised in ``NBD_INFO_BLOCK_SIZE``.
  A READ over it is ``NBD_EINVAL`` (``NBD_EOVERFLOW`` with ``DF``), a WRITE
  over it has its payload read and dropped, then ``NBD_EINVAL``; over twice
  it, a hard disconnect (nbdkit's answers).
* ``max_connections`` (``--max-connections``, 64): connections served at once,
  handshakes included; one more is closed as soon as it is accepted (as
  nbdkit's ``limit`` filter refuses a client over its limit).
* ``handshake_timeout`` (``--handshake-timeout``, 10 s, qemu-nbd's
  ``handshake-max-seconds``): a client that has not entered the
  transmission phase by then is disconnected (0: never).
* ``max_inflight`` (``--max-inflight``, 64) and ``max_inflight_bytes``
  (``--max-inflight-bytes``, 8 MiB): requests, and bytes of READ/WRITE data
  (a BLOCK_STATUS counts its largest reply), one connection may have in the
  server before it stops reading that connection; one request is always let
  in, however large.
* ``send_buffer`` (``--send-buffer``, 2 MiB): the transport's write-buffer
  high-water mark; while more of a connection's replies wait unsent, the
  server reads no more requests from it (asyncio's ``pause_writing``), and
  a large READ produces its next piece only once the buffer is below a
  quarter of it.

A READ or WRITE larger than :data:`STREAM_BYTES` is never held whole: its
data moves in pieces of :data:`STREAM_CHUNK` (read from the device as the
socket drains; written to the device as the payload arrives).  So one
connection holds at most about ``max_inflight_bytes + send_buffer +
2 * STREAM_CHUNK`` of request data, one more request of up to
:data:`STREAM_BYTES` let in past the budget, and its 256 KiB input buffer;
the server ``max_connections`` times that (:meth:`Limits.connection_bound`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["INPUT_BUFFER", "STREAM_BYTES", "STREAM_CHUNK", "Limits", "parse_size"]

#: A READ or WRITE longer than this is streamed in pieces of STREAM_CHUNK.
STREAM_BYTES = 1 << 20
STREAM_CHUNK = 1 << 20
#: The input buffer of a connection in the transmission phase.
INPUT_BUFFER = 256 << 10


@dataclass(frozen=True)
class Limits:
    """The bounds of one server (see the module's docstring for each rule)."""

    max_block_size: int = 32 << 20
    max_connections: int = 64
    handshake_timeout: float = 10.0
    max_inflight: int = 64
    max_inflight_bytes: int = 8 << 20
    send_buffer: int = 2 << 20

    def __post_init__(self) -> None:
        mb = self.max_block_size
        if mb < 4096 or mb > 1 << 30 or mb % 4096:
            raise ValueError(
                "--max-block-size must be a multiple of 4096 between 4K and 1G"
                " (the protocol's maximum is a multiple of the preferred block size)"
            )
        if self.max_connections < 1:
            raise ValueError("--max-connections must be at least 1")
        if self.handshake_timeout < 0:
            raise ValueError("--handshake-timeout must not be negative")
        if self.max_inflight < 1:
            raise ValueError("--max-inflight must be at least 1")
        if self.max_inflight_bytes < 4096:
            raise ValueError("--max-inflight-bytes must be at least 4K")
        if self.send_buffer < 4096:
            raise ValueError("--send-buffer must be at least 4K")

    @property
    def max_write_skip(self) -> int:
        """An oversized WRITE payload up to this is read past (then EINVAL); a
        longer one cannot be skipped cheaply and ends the connection (nbdkit)."""
        return 2 * self.max_block_size

    def connection_bound(self) -> int:
        """Bytes of buffers one connection in the transmission phase may make the
        server hold: its input buffer, request data in flight, unsent replies
        and the pieces of a streamed request."""
        return (
            INPUT_BUFFER
            + self.max_inflight_bytes
            + self.send_buffer
            + 2 * STREAM_CHUNK
            + min(self.max_block_size, STREAM_BYTES)
        )


def parse_size(text: str, option: str) -> int:
    """``<number>[KMGTPE]`` (powers of 1024, as zram's ``disksize``) for ``option``."""
    from pyzram.lib.cmdline import memparse

    value, end = memparse(text)
    if not text or end != len(text):
        raise ValueError(f"{option} {text!r}: expected a size such as 4096, 64K or 32M")
    return value
