"""The byte layer of an NBD connection: receive buffer, corked output, flow control.

:class:`Channel` is the connection's :class:`asyncio.BufferedProtocol`: the
transport receives straight into its buffer (no ``StreamReader``, no copy
per request), and the layers above parse in place.  It knows nothing of NBD;
it offers three ways to consume input:

* the handshake's coroutine API (:meth:`Channel.readexactly`,
  :meth:`Channel.read`, :meth:`Channel.write`, :meth:`Channel.drain`), as a
  stream would;
* a callback, :attr:`Channel.on_input`, after each receive once the
  transmission phase has begun (it parses ``buf[start:end]`` in place);
* a *sink*: the next bytes go straight into a buffer of the caller's
  (a WRITE payload piece) or are dropped (:meth:`Channel.skip`).

Flow control follows asyncio's protocol rules: reading is paused
(``transport.pause_reading``) while any reason to pause holds (see the
``P_*`` bits: the handshake's buffer is full, the connection's in-flight
budget is spent, replies back up past the transport's high-water mark, a
streamed WRITE piece is being stored, the connection is ending), and resumed
when the last reason goes.  Output is corked: replies ready together are
queued with :meth:`Channel.queue` and leave in one ``send`` (large ones in
one ``sendmsg`` straight from their buffers) when the layer above calls
:meth:`Channel.flush`.  While a streamed reply owns the output
(:attr:`Channel.held`), queued replies wait, as NBD forbids interleaving
another reply inside one.
"""

from __future__ import annotations

import asyncio
import mmap
import socket
import ssl
from collections.abc import Callable
from typing import Any

__all__ = [
    "Channel",
    "P_BUDGET",
    "P_ENDING",
    "P_HANDSHAKE",
    "P_STREAM",
    "P_WRITE",
]

# Why reading is paused (bits of Channel.paused).
P_HANDSHAKE = 1  # the handshake's buffer is full
P_BUDGET = 2  # max_inflight / max_inflight_bytes reached
P_WRITE = 4  # replies back up in the transport
P_ENDING = 8  # no more requests are read
P_STREAM = 16  # a streamed WRITE piece is being stored

#: The input buffer while negotiating (grown for a long option, up to 64 KiB + 16).
HANDSHAKE_BUFFER = 4096
#: Free space kept at the end of the transmission buffer (the unparsed tail is
#: moved to the front when less is left); more than the largest WRITE kept inline.
MIN_FREE = 128 << 10
#: Input buffers of this size or more are anonymous mappings (see Channel.resize).
_MMAP_BUFFER = 64 << 10
#: Replies of at least this many bytes in all leave with one sendmsg (no join).
_SENDMSG_BYTES = 64 << 10
#: Most buffers one sendmsg takes (IOV_MAX is 1024 on Linux).
_IOV_MAX = 1024

Buffer = bytes | bytearray | memoryview


def _nothing() -> None:
    return None


def _no_eof() -> bool:
    return False


class Channel(asyncio.BufferedProtocol):
    """One connection's bytes (see the module's docstring).

    ``sock`` is the accepted socket (for ``sendmsg`` of large replies; dropped
    when the loop owns its descriptor or TLS wraps it); ``send_buffer`` is
    the transport's write-buffer high-water mark; ``on_made`` is called with
    the channel once the transport exists.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket | None,
        send_buffer: int,
        on_made: Callable[[Channel], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.send_buffer = send_buffer
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._on_made = on_made
        #: Called after input arrives (transmission phase), on EOF (returns
        #: whether to keep the transport half-open), when the transport is
        #: lost, and when a paused writer may write again.
        self.on_input: Callable[[], None] = _nothing
        self.on_eof: Callable[[], bool] = _no_eof
        self.on_lost: Callable[[], None] = _nothing
        self.on_writable: Callable[[], None] = _nothing
        self.buf: Any = bytearray(HANDSHAKE_BUFFER)
        self.view = memoryview(self.buf)
        self.start = 0  # unparsed input is buf[start:end]
        self.end = 0
        self.negotiating = True
        self.tls = False
        # A sink: the next len(sink) bytes go there, then sink_done() is called.
        self._sink: memoryview | None = None
        self._sink_fill = 0
        self._sink_done: Callable[[], None] = _nothing
        # Bytes to drop, then skip_done() is called.
        self._skip = 0
        self._skip_done: Callable[[], None] = _nothing
        self.out: list[Buffer] = []
        #: A streamed reply owns the output: queued replies wait for it.
        self.held = False
        self.write_paused = False
        self.paused = 0
        self.lost = False
        self.eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.BufferedProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=self.send_buffer)
        if self.sock is not None and self.sock.fileno() < 0:  # the loop took the descriptor
            self.sock = None
        self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        sink = self._sink
        if sink is not None:
            return sink[self._sink_fill :]
        if self._skip:
            return self.view[: min(self._skip, len(self.buf))]
        if len(self.buf) - self.end < MIN_FREE and self.start and not self.negotiating:
            self.compact()
        return self.view[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        sink = self._sink
        if sink is not None:
            self._sink_fill += nbytes
            if self._sink_fill == len(sink):
                self._sink = None
                self._sink_done()
            return
        if self._skip:
            self._skip -= nbytes
            if not self._skip:
                self._skip_done()
            return
        self.end += nbytes
        if self.negotiating:
            self._wake()
            if len(self.buf) - self.end < 16:  # get_buffer must always have room
                if self.start:
                    self.compact()
                if len(self.buf) - self.end < 16:
                    self.pause(P_HANDSHAKE)
        else:
            self.on_input()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        if self.negotiating:
            return False  # the transport closes itself
        keep = self.on_eof()
        return keep and not self.tls  # TLS transports cannot stay half-open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.out.clear()
        self._sink = None
        self._wake()
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_exception(ConnectionResetError("connection lost"))
        self.on_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.pause(P_WRITE)

    def resume_writing(self) -> None:
        self.write_paused = False
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)
        self.unpause(P_WRITE)
        self.on_writable()

    # -- flow control -------------------------------------------------------------------

    def pause(self, why: int) -> None:
        """Stop reading for reason ``why`` (a ``P_*`` bit)."""
        if not self.paused and not self.lost:
            self.transport.pause_reading()
        self.paused |= why

    def unpause(self, why: int) -> None:
        """Reason ``why`` no longer holds; read again if no other does."""
        if not self.paused & why:
            return
        self.paused &= ~why
        if self.paused or self.lost:
            return
        self.transport.resume_reading()
        if not self.negotiating and self.end > self.start:
            self.on_input()  # requests that arrived before the pause

    def compact(self) -> None:
        """Move the unparsed tail of the input to the front of the buffer."""
        n = self.end - self.start
        if n:
            self.buf[:n] = bytes(self.view[self.start : self.end])
        self.start, self.end = 0, n

    def resize(self, size: int) -> None:
        """Give the input buffer ``size`` bytes (at least what is unparsed in it).

        A large buffer is an anonymous mapping, whose pages cost memory only
        once input has reached them (a ``bytearray`` is zeroed, so touched,
        whole): an idle connection holds the few pages its requests use,
        not the whole buffer.
        """
        n = self.end - self.start
        size = max(size, n)
        buf: Any = mmap.mmap(-1, size) if size >= _MMAP_BUFFER else bytearray(size)
        buf[:n] = self.view[self.start : self.end]
        self.view.release()
        self.buf, self.view = buf, memoryview(buf)
        self.start, self.end = 0, n

    def receive_into(self, sink: memoryview, done: Callable[[], None]) -> None:
        """Receive the next ``len(sink)`` bytes straight into ``sink``, then call ``done``.

        The caller first copies what the input buffer already holds of them
        and empties it (:attr:`start` = :attr:`end`).
        """
        self._sink = sink
        self._sink_fill = 0
        self._sink_done = done

    def skip(self, n: int, done: Callable[[], None]) -> None:
        """Drop the next ``n`` bytes of input (an oversized payload), then call ``done``."""
        self._skip = n
        self._skip_done = done

    # -- the handshake's stream API -------------------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait_input(self) -> None:
        if self.lost or self.eof:
            raise asyncio.IncompleteReadError(b"", None)
        self.unpause(P_HANDSHAKE)
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def readexactly(self, n: int) -> bytes:
        """The next ``n`` bytes of input (the buffer grows to hold them)."""
        while self.end - self.start < n:
            if len(self.buf) - self.start < n:
                if self.start:
                    self.compact()
                if len(self.buf) < n + 16:
                    self.resize(n + 16)
            await self._wait_input()
        data = bytes(self.view[self.start : self.start + n])
        self.start += n
        if self.start == self.end:
            self.start = self.end = 0
        return data

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of input, at least one (``b""`` at the end)."""
        if self.end == self.start:
            try:
                await self._wait_input()
            except asyncio.IncompleteReadError:
                return b""
        k = min(n, self.end - self.start)
        data = bytes(self.view[self.start : self.start + k])
        self.start += k
        if self.start == self.end:
            self.start = self.end = 0
        return data

    def write(self, data: bytes) -> None:
        """Handshake output (the transport sends or buffers it)."""
        if not self.lost:
            self.transport.write(data)

    async def drain(self) -> None:
        """Until the transport's buffer is below its high-water mark."""
        if self.lost:
            raise ConnectionResetError("connection lost")
        if self.write_paused:
            self._drain_waiter = self.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    async def start_tls(self, context: ssl.SSLContext, timeout: float | None) -> None:
        """NBD_OPT_STARTTLS was acknowledged: the TLS handshake, then TLS underneath.

        The loop wraps the transport (``loop.start_tls``, server side); from
        then on bytes come decrypted through the same protocol methods, and
        large replies go through the TLS transport (no direct ``sendmsg``).
        """
        self.sock = None
        self.tls = True
        self.start = self.end = 0
        new = await self.loop.start_tls(
            self.transport, self, context, server_side=True, ssl_handshake_timeout=timeout
        )
        if new is None:
            raise ConnectionResetError("connection closed during the TLS handshake")
        self.transport = new  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=self.send_buffer)

    def enter_transmission(self, size: int) -> None:
        """The handshake is over: a transmission-sized buffer, reading resumed."""
        self.negotiating = False
        self.resize(size)
        self.unpause(P_HANDSHAKE)

    # -- output -------------------------------------------------------------------------

    def queue(self, data: Buffer) -> None:
        """Queue reply bytes; they leave together at the next :meth:`flush`."""
        if not self.lost:
            self.out.append(data)

    def flush(self) -> None:
        """Send the queued replies: one ``send``, or one ``sendmsg`` when large.

        Large replies (a 1 MiB read) leave with ``sendmsg`` straight from the
        device's buffer, header and data in one call and no copy, while the
        transport has nothing buffered (so the order of bytes is kept);
        whatever the socket does not take goes to the transport, which
        sends it when the socket drains.  Small replies are joined into one
        buffer and written.  Nothing leaves while a streamed reply holds the
        output.
        """
        out = self.out
        if not out or self.held:
            return
        self.out = []
        t = self.transport
        if self.lost or t.is_closing():
            return
        if len(out) == 1:
            t.write(out[0])
            return
        sock = self.sock
        if sock is not None and len(out) <= _IOV_MAX and not t.get_write_buffer_size():
            total = 0
            for b in out:
                total += len(b)
            if total >= _SENDMSG_BYTES:
                try:
                    sent = sock.sendmsg(out)
                except OSError:  # would block, or an error the transport finds and reports
                    sent = 0
                if sent == total:
                    return
                rest: list[Buffer] = []
                for b in out:
                    n = len(b)
                    if sent >= n:
                        sent -= n
                        continue
                    rest.append(memoryview(b)[sent:] if sent else b)
                    sent = 0
                out = rest
        t.write(b"".join(out))

    def write_now(self, data: Buffer) -> None:
        """Write a piece of the streamed reply that holds the output."""
        if not self.lost and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Close once what was written has left."""
        if not self.lost and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now."""
        if self.transport is not None and not self.lost:
            self.transport.abort()
