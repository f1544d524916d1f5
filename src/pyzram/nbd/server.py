"""``pyzram serve``: an asyncio NBD server whose exports are pyzram devices.

Protocol (NetworkBlockDevice ``doc/proto.md``): fixed newstyle handshake
without TLS; options ``NBD_OPT_EXPORT_NAME``, ``NBD_OPT_GO``,
``NBD_OPT_INFO`` (``NBD_INFO_EXPORT``, ``NAME``, ``DESCRIPTION``,
``BLOCK_SIZE``), ``NBD_OPT_LIST``, ``NBD_OPT_ABORT``,
``NBD_OPT_STRUCTURED_REPLY``, and once structured replies are on
``NBD_OPT_LIST_META_CONTEXT`` / ``NBD_OPT_SET_META_CONTEXT`` with the one
context ``base:allocation``; every other option is answered
``NBD_REP_ERR_UNSUP``.  Commands ``READ``, ``WRITE``, ``FLUSH``, ``TRIM``
(zram discard), ``WRITE_ZEROES`` (zram's write-zeroes path, or same-filled
pages with ``NO_HOLE``), ``CACHE``, ``DISC`` and ``BLOCK_STATUS`` (holes
and zeros from zram's slot table, see :meth:`Export.block_status`).

Transmission flags say what the device does: a write is in zram's pool
when its reply leaves, so ``FLUSH`` and ``FUA`` have nothing left to wait
for (``NBD_FLAG_SEND_FLUSH``, ``SEND_FUA``); all connections share one
device with no cache of their own (``CAN_MULTI_CONN``); zeroing is never
slower than writing (``SEND_FAST_ZERO``); ``SEND_DF`` once structured
replies are on, because a read is always one chunk.  The minimum block size
is 1: sub-page requests are read-modify-writes of the page (see
:mod:`pyzram.nbd.export`); the preferred size is zram's 4096 and the most one
request may carry is :data:`MAX_PAYLOAD`.

Threads.  The main thread's event loop accepts connections, runs the
control socket and waits for SIGINT/SIGTERM.  Each accepted connection goes
to one of ``threads`` *shards*, a thread with its own event loop that runs
the connection's handshake and requests.  Small requests run right there,
between reading requests and writing replies (handing a 4 KiB request to
another thread costs more CPU than the request itself: see docs/nbd.md);
requests of :data:`OFFLOAD_BYTES` or more go to a thread pool, so they run
side by side and do not hold up the shard.  Requests to one device, from
any connection or thread, run concurrently under zram's own locks
(``init_lock`` read side, slot locks) and the export's stripe locks; there
is no server-wide lock.  A connection is an ``asyncio.BufferedProtocol``
that parses requests where the socket put them (see :class:`Connection`).
Small aligned reads that arrive together are read straight into one reply
buffer (one ``pread_into`` each).  Replies ready together leave in one
``send`` (large ones in one ``sendmsg``, without copying the data).  The
loops are uvloop's by default (``loop="asyncio"`` for the standard one).
Each connection may have :data:`MAX_INFLIGHT` requests (and
:data:`MAX_INFLIGHT_BYTES`) in flight; past that, or while its replies back
up in the socket, the server stops reading it.

Bad input ends in the protocol's error replies or a clean disconnect of
that one connection; a request is applied only once fully received, so a
client that vanishes mid-write loses nothing it was told was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyzram.nbd import protocol as P
from pyzram.nbd.export import Export, ExportSpec

__all__ = [
    "DEFAULT_LOOP",
    "LOOPS",
    "MAX_INFLIGHT",
    "MAX_PAYLOAD",
    "NbdServer",
    "ServerThread",
    "build_exports",
    "loop_factory",
    "serve",
]

log = logging.getLogger("pyzram.nbd")

#: NBD_INFO_BLOCK_SIZE: any byte range, 4 KiB preferred, 32 MiB at most per request.
MIN_BLOCK_SIZE = 1
PREFERRED_BLOCK_SIZE = 4096
MAX_PAYLOAD = 32 << 20
#: Requests one connection may have in flight before the server stops reading it.
MAX_INFLIGHT = 64
#: Bytes of READ/WRITE data one connection may have in flight.
MAX_INFLIGHT_BYTES = 4 * MAX_PAYLOAD
#: Option data the server reads; longer options are skipped and refused with
#: NBD_REP_ERR_TOO_BIG, and beyond MAX_OPTION_SKIP the client is disconnected.
MAX_OPTION_LENGTH = 64 << 10
MAX_OPTION_SKIP = 16 << 20
#: An oversized WRITE payload up to this is read and dropped (then EINVAL);
#: anything larger cannot be skipped cheaply and ends the connection (as nbdkit).
MAX_WRITE_SKIP = 2 * MAX_PAYLOAD
#: READ/WRITE of this many bytes or more, and TRIM/WRITE_ZEROES of
#: OFFLOAD_ZERO_BYTES or more, run on the thread pool instead of the shard.
OFFLOAD_BYTES = 256 << 10
OFFLOAD_ZERO_BYTES = 16 << 20
#: BLOCK_STATUS of this many bytes or more runs on the pool too: its numpy scan
#: of the slot table costs ~0.2 ms per 256 MiB (2-4 ms for a 4 GiB request).
OFFLOAD_STATUS_BYTES = 256 << 20
#: Most pages of small aligned reads (or writes) that go to the device as one batch.
BATCH_PAGES = 64
#: Socket send buffer asked for (the kernel caps it at net.core.wmem_max).
_SOCK_BUF = 4 << 20
#: The connection's input buffer: requests are parsed where the socket put them.
_RBUF_SIZE = 256 << 10
#: Free space kept at the end of the input buffer (the unparsed tail is moved
#: to the front when less is left); more than the largest WRITE kept inline.
_MIN_FREE = 128 << 10
#: A WRITE payload up to this size is received into the input buffer; a larger
#: one straight into a buffer of its own (no copy out of the input buffer).
_INLINE_MAX = 64 << 10
#: Input the handshake may leave unread before reading pauses.
_MAX_HOLD = _RBUF_SIZE - _MIN_FREE
#: Buffered reply bytes past which the server stops reading (pause_writing).
_WRITE_HIGH = 2 << 20
#: Replies of at least this many bytes in all leave with one sendmsg (no join).
_SENDMSG_BYTES = 64 << 10
#: Most buffers one sendmsg takes (IOV_MAX is 1024 on Linux).
_IOV_MAX = 1024
_REQUEST_SIZE = P.REQUEST.size
_REQUEST_UNPACK = P.REQUEST.unpack_from
_SIMPLE_PACK = P.SIMPLE_REPLY.pack
_SIMPLE_PACK_INTO = P.SIMPLE_REPLY.pack_into
_DATA_PACK_INTO = P.OFFSET_DATA_REPLY.pack_into
#: A pending entry that is a run of small aligned reads (see Connection._parse).
_READ_RUN = -1
_SIMPLE_HEAD_SIZE = P.SIMPLE_REPLY.size
_DATA_HEAD_SIZE = P.OFFSET_DATA_REPLY.size
_PAGE = 4096
#: The fixed fields of a final OFFSET_DATA chunk (``P.offset_data_header``).
_DATA_HEAD = (P.NBD_STRUCTURED_REPLY_MAGIC, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_OFFSET_DATA)
#: Event loops the server can run on (``--loop``).
LOOPS = ("asyncio", "uvloop")
DEFAULT_LOOP = "uvloop"
#: How long shutdown waits for requests in flight before closing connections.
SHUTDOWN_GRACE_S = 10.0
_PAGE_MASK = 4095

_KNOWN_CMD_FLAGS = (
    P.NBD_CMD_FLAG_FUA
    | P.NBD_CMD_FLAG_NO_HOLE
    | P.NBD_CMD_FLAG_DF
    | P.NBD_CMD_FLAG_REQ_ONE
    | P.NBD_CMD_FLAG_FAST_ZERO
)
_BASE_TRANSMISSION_FLAGS = (
    P.NBD_FLAG_HAS_FLAGS
    | P.NBD_FLAG_SEND_FLUSH
    | P.NBD_FLAG_SEND_FUA
    | P.NBD_FLAG_SEND_TRIM
    | P.NBD_FLAG_SEND_WRITE_ZEROES
    | P.NBD_FLAG_CAN_MULTI_CONN
    | P.NBD_FLAG_SEND_CACHE
    | P.NBD_FLAG_SEND_FAST_ZERO
)
_IO_CMDS = frozenset(
    (
        P.NBD_CMD_READ,
        P.NBD_CMD_WRITE,
        P.NBD_CMD_TRIM,
        P.NBD_CMD_WRITE_ZEROES,
        P.NBD_CMD_CACHE,
        P.NBD_CMD_BLOCK_STATUS,
    )
)
#: The metadata context id of ``base:allocation`` in NBD_OPT_SET_META_CONTEXT's
#: reply and in NBD_REPLY_TYPE_BLOCK_STATUS chunks (any value would do; nbdkit's).
BASE_ALLOCATION_ID = 1


class Disconnect(Exception):
    """The peer broke a MUST of the protocol: drop its connection."""


# Connection phases.
_NEGOTIATING = 0
_TRANSMITTING = 1
_ENDING = 2  # NBD_CMD_DISC or a protocol violation: finish what is in flight, then close

# Why reading is paused (bits of Connection._paused).
_P_HANDSHAKE = 1  # the handshake's buffer is full
_P_BUDGET = 2  # MAX_INFLIGHT / MAX_INFLIGHT_BYTES reached
_P_WRITE = 4  # replies back up in the transport
_P_ENDING = 8  # no more requests are read


class Connection(asyncio.BufferedProtocol):
    """One client on one shard: the handshake, then the transmission phase on one export.

    A :class:`asyncio.BufferedProtocol`: the transport receives straight into
    the connection's own buffer, and requests are parsed there with
    ``struct.unpack_from`` as they arrive (no ``StreamReader`` await per
    request, no task per request).  A WRITE payload too big for that buffer
    is received straight into a buffer of its own.  The handshake, which
    is rare and branchy, stays a coroutine that reads from the same buffer
    (:meth:`readexactly`), and then hands over to :meth:`_process`.

    What one burst of input brought is parsed, then dispatched together
    (:meth:`_dispatch`: small aligned reads or writes become one device
    batch), and the replies that are ready leave in one ``send``.
    """

    def __init__(self, server: NbdServer, shard: Shard, sock: socket.socket) -> None:
        self.server = server
        self.shard = shard
        self._sock = sock
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.structured = False
        self.no_zeroes = False
        #: ``base:allocation`` selected by the last NBD_OPT_SET_META_CONTEXT, and for which
        #: export name (a GO or EXPORT_NAME of another export drops it).
        self.meta_allocation = False
        self._meta_export: str | None = None
        self.export: Export | None = None
        self.size = 0
        self.inflight = 0
        self.inflight_bytes = 0
        #: Replies can no longer be delivered (the connection is gone).
        self.closing = False
        self._bdev: Any = None
        self._loop = shard.loop
        self._phase = _NEGOTIATING
        self._rbuf = bytearray(_RBUF_SIZE)
        self._rview = memoryview(self._rbuf)
        self._start = 0  # unparsed input is _rbuf[_start:_end]
        self._end = 0
        # A WRITE payload being received into a buffer of its own.
        self._payload: bytearray | None = None
        self._pview: memoryview | None = None
        self._pfill = 0
        self._preq: tuple[int, int, int, int] = (0, 0, 0, 0)
        # An oversized WRITE payload being read and dropped.
        self._skip = 0
        self._skip_req: tuple[int, int] = (0, 0)
        self._waiter: asyncio.Future[None] | None = None  # the handshake waits for input
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._paused = 0
        self._lost = False
        self._eof = False
        self._finished = False
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None  # set when a request completes
        self._out: list[bytes | bytearray | memoryview] = []
        self._in_io = False  # inside _process: it flushes and settles at its end
        self._settle_scheduled = False
        self._pending: list[tuple[int, int, int, int, int, Any]] = []
        #: Set when the connection is gone and nothing of it is in flight.
        self.finished: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio.BufferedProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Writes past this much buffered pause reading (see pause_writing).
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH)
        if self._sock.fileno() < 0:  # the loop took the descriptor: no direct sends
            self._sock = None  # type: ignore[assignment]
        self._task = self._loop.create_task(self._negotiate())

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._pview is not None:
            return self._pview[self._pfill :]
        if self._skip:
            return self._rview[: min(self._skip, _RBUF_SIZE)]
        if _RBUF_SIZE - self._end < _MIN_FREE and self._start:
            self._compact()
        return self._rview[self._end :]

    def _compact(self) -> None:
        """Move the unparsed tail of the input to the front of the buffer."""
        n = self._end - self._start
        if n:
            self._rbuf[:n] = bytes(self._rview[self._start : self._end])
        self._start, self._end = 0, n

    def buffer_updated(self, nbytes: int) -> None:
        if self._pview is not None:  # a large WRITE payload
            self._pfill += nbytes
            if self._pfill < len(self._pview):
                return
            data = self._payload
            self._payload = self._pview = None
            flags, cookie, offset, length = self._preq
            self._request(P.NBD_CMD_WRITE, flags, cookie, offset, length, data)
            self._process()
            return
        if self._skip:  # an oversized WRITE payload, dropped
            self._skip -= nbytes
            if not self._skip:
                cookie, length = self._skip_req
                msg = f"NBD_CMD_WRITE of {length} bytes is over {MAX_PAYLOAD}"
                self._send_error(cookie, P.NBD_EINVAL, msg)
                self._process()
            return
        self._end += nbytes
        phase = self._phase
        if phase == _TRANSMITTING:
            self._process()
        elif phase == _NEGOTIATING:
            self._wake()
            if self._end - self._start > _MAX_HOLD:  # get_buffer must always have room
                self._pause(_P_HANDSHAKE)
        else:  # ending: input after NBD_CMD_DISC is not read
            self._start = self._end = 0

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        if self._phase != _TRANSMITTING:
            return False  # the transport closes itself
        # Half-closed: the requests received still finish and get their replies.
        self._end_transmission("end of input")
        self._settle()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.closing = True
        self._out.clear()
        self._wake()
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_exception(ConnectionResetError("connection lost"))
        self._maybe_finish()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause(_P_WRITE)

    def resume_writing(self) -> None:
        self._write_paused = False
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)
        self._unpause(_P_WRITE)

    def _pause(self, why: int) -> None:
        if not self._paused and not self._lost:
            self.transport.pause_reading()
        self._paused |= why

    def _unpause(self, why: int) -> None:
        if not self._paused & why:
            return
        self._paused &= ~why
        if self._paused or self._lost:
            return
        self.transport.resume_reading()
        if self._phase == _TRANSMITTING and self._end > self._start and not self._in_io:
            self._process()  # requests that arrived before the pause

    # -- the handshake's reading and writing ----------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait_input(self) -> None:
        if self._lost or self._eof:
            raise asyncio.IncompleteReadError(b"", None)
        self._unpause(_P_HANDSHAKE)
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def readexactly(self, n: int) -> bytes:
        """The next ``n`` bytes of input (``n`` ≤ :data:`MAX_OPTION_LENGTH`)."""
        while self._end - self._start < n:
            if self._start and _RBUF_SIZE - self._start < n:
                self._compact()
            await self._wait_input()
        data = bytes(self._rview[self._start : self._start + n])
        self._start += n
        return data

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of input, at least one (``b""`` at the end)."""
        if self._end == self._start:
            try:
                await self._wait_input()
            except asyncio.IncompleteReadError:
                return b""
        k = min(n, self._end - self._start)
        data = bytes(self._rview[self._start : self._start + k])
        self._start += k
        if self._start == self._end:
            self._start = self._end = 0
        return data

    def write(self, data: bytes) -> None:
        """Handshake output (the transport sends or buffers it)."""
        if not self._lost:
            self.transport.write(data)

    async def drain(self) -> None:
        """Until the transport's buffer is below its limit."""
        if self._lost:
            raise ConnectionResetError("connection lost")
        if self._write_paused:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # -- handshake ----------------------------------------------------------------------

    def _opt_reply(self, option: int, reply: int, data: bytes = b"") -> None:
        self.write(P.option_reply(option, reply, data))

    def _opt_error(self, option: int, reply: int, message: str) -> None:
        self._opt_reply(option, reply, message.encode()[: P.NBD_MAX_STRING])

    def transmission_flags(self) -> int:
        flags = _BASE_TRANSMISSION_FLAGS
        if self.structured:
            flags |= P.NBD_FLAG_SEND_DF
        return flags

    async def _negotiate(self) -> None:
        """The handshake task; on success the transmission phase takes over."""
        export = None
        try:
            export = await self.handshake()
        except (asyncio.IncompleteReadError, ConnectionError, Disconnect) as e:
            log.debug("client gone: %s", e)
        except Exception:  # a bug must not take the shard down with it
            log.exception("connection failed")
        if export is None or self._lost:
            if not self._lost:
                self.transport.close()  # what was written still leaves first
            self._maybe_finish()
            return
        self._phase = _TRANSMITTING
        self._unpause(_P_HANDSHAKE)
        if self._end > self._start:  # requests sent right behind the option
            self._process()

    async def handshake(self) -> Export | None:
        """Fixed newstyle negotiation; the export chosen, or None after NBD_OPT_ABORT."""
        r = w = self
        w.write(
            P.GREETING.pack(
                P.NBDMAGIC, P.IHAVEOPT, P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES
            )
        )
        (cflags,) = P.CLIENT_FLAGS.unpack(await r.readexactly(4))
        if cflags & ~(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES):
            raise Disconnect(f"unknown client flags {cflags:#x}")
        self.no_zeroes = bool(cflags & P.NBD_FLAG_C_NO_ZEROES)
        while True:
            magic, option, length = P.OPTION.unpack(await r.readexactly(P.OPTION.size))
            if magic != P.IHAVEOPT:
                raise Disconnect(f"bad option magic {magic:#x}")
            if length > MAX_OPTION_LENGTH:
                if length > MAX_OPTION_SKIP:
                    raise Disconnect(f"option data of {length} bytes")
                await _skip(r, length)
                self._opt_error(option, P.NBD_REP_ERR_TOO_BIG, "option data too long")
                await w.drain()
                continue
            data = await r.readexactly(length) if length else b""
            if self.server.stopping and option != P.NBD_OPT_ABORT:
                self._opt_error(option, P.NBD_REP_ERR_SHUTDOWN, "server is shutting down")
            elif option == P.NBD_OPT_EXPORT_NAME:
                export = self._lookup(data)
                if export is None:  # this option cannot fail politely: hard disconnect
                    raise Disconnect(f"NBD_OPT_EXPORT_NAME of unknown export {data[:64]!r}")
                self._meta_for(export)
                try:
                    self._attach(export)
                except OSError as e:
                    raise Disconnect(f"export unavailable: {e}") from None
                reply = P.EXPORT_NAME_REPLY.pack(export.size, self.transmission_flags())
                w.write(reply if self.no_zeroes else reply + P.EXPORT_NAME_ZEROES)
                return export
            elif option == P.NBD_OPT_ABORT:
                self._opt_reply(option, P.NBD_REP_ACK)
                with contextlib.suppress(ConnectionError):
                    await w.drain()
                return None
            elif option in (P.NBD_OPT_GO, P.NBD_OPT_INFO):
                export = self._info(option, data)
                if export is not None and option == P.NBD_OPT_GO:
                    return export
            elif option == P.NBD_OPT_LIST:
                if data:
                    self._opt_error(option, P.NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data")
                else:
                    for e in self.server.exports:  # the name, then its description
                        name = e.name.encode()
                        desc = e.description.encode()[: P.NBD_MAX_STRING]
                        body = P.U32.pack(len(name)) + name + desc
                        self._opt_reply(option, P.NBD_REP_SERVER, body)
                    self._opt_reply(option, P.NBD_REP_ACK)
            elif option == P.NBD_OPT_STRUCTURED_REPLY:
                if data:
                    self._opt_error(option, P.NBD_REP_ERR_INVALID, "option takes no data")
                else:
                    self.structured = True
                    self._opt_reply(option, P.NBD_REP_ACK)
            elif option in (P.NBD_OPT_LIST_META_CONTEXT, P.NBD_OPT_SET_META_CONTEXT):
                self._meta_context(option, data)
            else:  # STARTTLS, extended headers, and anything unknown
                name = P.OPT_NAMES.get(option, f"option {option}")
                self._opt_error(option, P.NBD_REP_ERR_UNSUP, f"{name} is not supported")
            await w.drain()

    def _lookup(self, raw: bytes) -> Export | None:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return self.server.export_map.get(name)

    def _meta_context(self, option: int, data: bytes) -> None:
        """NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT.

        The data: export name (32-bit length, string), number of queries,
        then each query (32-bit length, string).  The one context is
        ``base:allocation``.  LIST with no query lists it; a ``base:``
        query (the namespace with an empty leaf name) lists every context of
        that namespace, so it too; its replies carry context id 0 (the
        protocol reserves the field there).  SET selects it for the query
        ``base:allocation`` only (no query selects nothing) and replies with
        :data:`BASE_ALLOCATION_ID`.  Queries of other namespaces, and other
        leaf names of ``base:``, find nothing (the protocol says to ignore
        unknown namespaces).  SET replaces the selection even when it fails.
        Both need structured replies first (``NBD_REP_ERR_INVALID``), as
        ``NBD_CMD_BLOCK_STATUS`` can only be answered by one.
        """
        is_set = option == P.NBD_OPT_SET_META_CONTEXT
        if is_set:
            self.meta_allocation = False
            self._meta_export = None
        name = P.OPT_NAMES[option]
        if not self.structured:
            msg = f"{name} needs NBD_OPT_STRUCTURED_REPLY first"
            self._opt_error(option, P.NBD_REP_ERR_INVALID, msg)
            return
        parsed = _parse_meta_request(data)
        if isinstance(parsed, str):
            self._opt_error(option, P.NBD_REP_ERR_INVALID, f"{name}: {parsed}")
            return
        raw, queries = parsed
        export = self._lookup(raw)
        if export is None:
            shown = raw[:256].decode("utf-8", "replace")
            self._opt_error(option, P.NBD_REP_ERR_UNKNOWN, f"no export named {shown!r}")
            return
        if is_set:
            found = P.BASE_ALLOCATION in queries
        else:
            found = not queries or any(q in (P.BASE_NAMESPACE, P.BASE_ALLOCATION) for q in queries)
        if found:
            ctx_id = BASE_ALLOCATION_ID if is_set else 0
            body = P.U32.pack(ctx_id) + P.BASE_ALLOCATION.encode()
            self._opt_reply(option, P.NBD_REP_META_CONTEXT, body)
        if is_set:
            self.meta_allocation = found
            self._meta_export = export.name
        self._opt_reply(option, P.NBD_REP_ACK)

    def _meta_for(self, export: Export) -> None:
        """Entering transmission on ``export``: keep the contexts only if they were set for it.

        The protocol lets a client use ``NBD_CMD_BLOCK_STATUS`` only if its
        last NBD_OPT_SET_META_CONTEXT named the export it finally selects;
        a selection made for another export does not carry over (as nbdkit
        and qemu-nbd drop it).
        """
        if self._meta_export != export.name:
            self.meta_allocation = False

    def _attach(self, export: Export) -> None:
        """Hold the device open for the transmission phase (so ``reset`` is EBUSY)."""
        self._bdev = export.attach()
        self.export = export
        self.size = export.size

    def _info(self, option: int, data: bytes) -> Export | None:
        """NBD_OPT_INFO / NBD_OPT_GO: replies, and the export if it may be used."""
        if len(data) < 6:
            self._opt_error(option, P.NBD_REP_ERR_INVALID, "option data too short")
            return None
        (nlen,) = P.U32.unpack_from(data)
        if nlen > len(data) - 6:
            self._opt_error(option, P.NBD_REP_ERR_INVALID, "name length runs past the data")
            return None
        (nreq,) = P.U16.unpack_from(data, 4 + nlen)
        if len(data) != 4 + nlen + 2 + 2 * nreq:
            self._opt_error(option, P.NBD_REP_ERR_INVALID, "information request count mismatch")
            return None
        requests = {P.U16.unpack_from(data, 6 + nlen + 2 * i)[0] for i in range(nreq)}
        raw = data[4 : 4 + nlen]
        export = self._lookup(raw)
        if export is None:
            shown = raw[:256].decode("utf-8", "replace")
            self._opt_error(option, P.NBD_REP_ERR_UNKNOWN, f"no export named {shown!r}")
            return None
        if option == P.NBD_OPT_GO:
            self._meta_for(export)
            try:
                self._attach(export)
            except OSError as e:  # the device is being reset
                self._opt_error(option, P.NBD_REP_ERR_UNKNOWN, f"export unavailable: {e}")
                return None
        rep = P.NBD_REP_INFO
        info = P.INFO_EXPORT.pack(P.NBD_INFO_EXPORT, export.size, self.transmission_flags())
        self._opt_reply(option, rep, info)
        if P.NBD_INFO_NAME in requests:
            self._opt_reply(option, rep, P.INFO_TYPE.pack(P.NBD_INFO_NAME) + export.name.encode())
        if P.NBD_INFO_DESCRIPTION in requests:
            desc = export.description or f"pyzram {export.dev.disk_name}"
            raw_desc = desc.encode()[: P.NBD_MAX_STRING]
            self._opt_reply(option, rep, P.INFO_TYPE.pack(P.NBD_INFO_DESCRIPTION) + raw_desc)
        # Block sizes are sent whether asked for or not (the protocol allows it).
        sizes = (MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE, MAX_PAYLOAD)
        self._opt_reply(option, rep, P.INFO_BLOCK_SIZE.pack(P.NBD_INFO_BLOCK_SIZE, *sizes))
        self._opt_reply(option, P.NBD_REP_ACK)
        return export

    # -- replies ------------------------------------------------------------------------

    def _send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue reply bytes; they leave together when this round of work ends.

        One ``send(2)`` per reply costs a system call and a wake-up of the
        client each; with many requests in flight, corking the replies that
        are ready into one write saves most of that.
        """
        if self.closing:
            return
        self._out.append(data)
        if not self._in_io and not self._settle_scheduled:
            self._settle_scheduled = True
            self._loop.call_soon(self._settle)

    def _flush(self) -> None:
        """Send the queued replies: one ``send``, or one ``sendmsg`` when large.

        Large replies (a 1 MiB read) leave with ``sendmsg`` straight from the
        device's buffer, header and data in one call and no copy, while the
        transport has nothing buffered (so the order of bytes is kept);
        whatever the socket does not take goes to the transport, which
        sends it when the socket drains.  Small replies are joined into one
        buffer and written.
        """
        out = self._out
        if not out:
            return
        self._out = []
        t = self.transport
        if self._lost or t.is_closing():
            return
        if len(out) == 1:
            t.write(out[0])
            return
        sock = self._sock
        if sock is not None and len(out) <= _IOV_MAX and not t.get_write_buffer_size():
            total = 0
            for b in out:
                total += len(b)
            if total >= _SENDMSG_BYTES:
                try:
                    sent = sock.sendmsg(out)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:  # the transport finds and reports the error
                    sent = 0
                if sent == total:
                    return
                rest: list[bytes | bytearray | memoryview] = []
                for b in out:
                    n = len(b)
                    if sent >= n:
                        sent -= n
                        continue
                    rest.append(memoryview(b)[sent:] if sent else b)
                    sent = 0
                out = rest
        t.write(b"".join(out))

    def _send_error(self, cookie: int, err: int, message: str) -> None:
        if self.structured:
            self._send(P.structured_error(cookie, err, message))
        else:
            self._send(P.simple_reply(cookie, err))

    # -- transmission -------------------------------------------------------------------

    def _validate(self, cmd: int, flags: int, offset: int, length: int) -> tuple[int, str] | None:
        """The error (NBD value, message) for a request that must not run, else None."""
        if cmd not in _IO_CMDS and cmd not in (P.NBD_CMD_FLUSH, P.NBD_CMD_DISC):
            return P.NBD_EINVAL, f"unknown command {cmd}"
        if cmd == P.NBD_CMD_BLOCK_STATUS and not self.meta_allocation:
            return P.NBD_EINVAL, "NBD_CMD_BLOCK_STATUS without a metadata context"
        name = P.CMD_NAMES[cmd]
        if flags & ~_KNOWN_CMD_FLAGS:
            return P.NBD_EINVAL, f"{name}: unknown flags {flags:#x}"
        if flags & (P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_FAST_ZERO) and (
            cmd != P.NBD_CMD_WRITE_ZEROES
        ):
            return P.NBD_EINVAL, f"{name}: NO_HOLE/FAST_ZERO apply to NBD_CMD_WRITE_ZEROES only"
        if flags & P.NBD_CMD_FLAG_DF and (cmd != P.NBD_CMD_READ or not self.structured):
            return P.NBD_EINVAL, f"{name}: DF needs NBD_CMD_READ and structured replies"
        if flags & P.NBD_CMD_FLAG_REQ_ONE and cmd != P.NBD_CMD_BLOCK_STATUS:
            return P.NBD_EINVAL, f"{name}: REQ_ONE applies to NBD_CMD_BLOCK_STATUS only"
        if cmd == P.NBD_CMD_FLUSH:
            if offset or length:
                return P.NBD_EINVAL, "NBD_CMD_FLUSH: offset and length must be 0"
            return None
        if cmd == P.NBD_CMD_DISC:
            return None
        if length == 0:
            return P.NBD_EINVAL, f"{name}: zero length"
        if cmd == P.NBD_CMD_READ and length > MAX_PAYLOAD:
            err = P.NBD_EOVERFLOW if flags & P.NBD_CMD_FLAG_DF else P.NBD_EINVAL
            return err, f"{name}: {length} bytes is over the maximum payload {MAX_PAYLOAD}"
        if offset + length > self.size:
            err = P.NBD_ENOSPC if cmd in (P.NBD_CMD_WRITE, P.NBD_CMD_WRITE_ZEROES) else P.NBD_EINVAL
            return err, f"{name}: {offset}+{length} is beyond the export's {self.size} bytes"
        return None

    def _over_budget(self) -> bool:
        return self.inflight >= MAX_INFLIGHT or self.inflight_bytes > MAX_INFLIGHT_BYTES

    def _process(self) -> None:
        """Parse the requests received, dispatch them, send the replies that are ready."""
        if self._in_io:
            return
        self._in_io = True
        try:
            while self._phase == _TRANSMITTING:
                stopped = self._parse()
                if self._pending:
                    self._dispatch()
                # Parsing stopped at the budget: go on if dispatching freed it.
                if not stopped or self._over_budget() or self._write_paused:
                    break
        finally:
            self._in_io = False
        self._settle()

    def _settle(self) -> None:
        """After a round of work: send replies, pause or resume reading, end or finish."""
        self._settle_scheduled = False
        if self._out:
            self._flush()
        if self._lost:
            self._maybe_finish()
            return
        if self._phase == _ENDING:
            if not self.inflight and not self.transport.is_closing():
                self.transport.close()  # the replies written leave first
            return
        if self._over_budget():
            self._pause(_P_BUDGET)
        elif self._paused & _P_BUDGET:
            self._unpause(_P_BUDGET)

    def _end_transmission(self, why: str | None = None) -> None:
        """NBD_CMD_DISC, or a hard disconnect: no more requests are read; the ones
        received finish (their data reaches the device), then the connection closes."""
        if why:
            log.debug("client gone: %s", why)
        self._phase = _ENDING
        self._pause(_P_ENDING)

    def _parse(self) -> bool:
        """Queue the complete requests in the input; True if it stopped at the budget.

        Consecutive plain page-aligned READs (each under :data:`OFFLOAD_BYTES`,
        together up to :data:`BATCH_PAGES` pages) are queued as one *run*:
        their cookies, offsets and lengths in three lists, which
        :meth:`_run_reads` reads as one device batch and answers in one
        buffer.  Anything else ends the run, so requests keep their order.
        """
        buf = self._rbuf
        view = self._rview
        pos = self._start
        end = self._end
        size = self.size
        pending = self._pending
        unpack = _REQUEST_UNPACK
        stopped = False
        run: tuple[list[int], list[int], list[int]] = ([], [], [])
        run_pages = BATCH_PAGES + 1  # no run open
        while end - pos >= _REQUEST_SIZE:
            if (
                self.inflight >= MAX_INFLIGHT
                or self.inflight_bytes > MAX_INFLIGHT_BYTES
                or self._write_paused
            ):
                stopped = True
                break
            magic, flags, cmd, cookie, offset, length = unpack(buf, pos)
            if magic != P.NBD_REQUEST_MAGIC:
                self._end_transmission(f"bad request magic {magic:#x}")
                pos = end
                break
            if cmd == P.NBD_CMD_WRITE:
                body = pos + _REQUEST_SIZE
                have = end - body
                if length > MAX_PAYLOAD:
                    if length > MAX_WRITE_SKIP:
                        self._end_transmission(f"NBD_CMD_WRITE of {length} bytes")
                        pos = end
                        break
                    if have >= length:
                        pos = body + length
                        msg = f"NBD_CMD_WRITE of {length} bytes is over {MAX_PAYLOAD}"
                        self._send_error(cookie, P.NBD_EINVAL, msg)
                        continue
                    # Read the payload past and drop it, then refuse the request.
                    self._skip = length - have
                    self._skip_req = (cookie, length)
                    pos = end
                    break
                if have >= length:
                    data: Any = view[body : body + length].tobytes()
                    pos = body + length
                elif length <= _INLINE_MAX:
                    break  # the rest comes into this buffer
                else:  # the rest is received straight into a buffer of its own
                    payload = bytearray(length)
                    payload[:have] = view[body:end]
                    self._payload = payload
                    self._pview = memoryview(payload)
                    self._pfill = have
                    self._preq = (flags, cookie, offset, length)
                    pos = end
                    break
            else:
                data = None
                pos += _REQUEST_SIZE
                # A plain page-aligned READ under OFFLOAD_BYTES joins the run of reads.
                if (
                    cmd == P.NBD_CMD_READ
                    and not flags
                    and 0 < length < OFFLOAD_BYTES
                    and not (offset | length) & _PAGE_MASK
                    and offset + length <= size
                ):
                    count = length >> 12
                    if run_pages + count > BATCH_PAGES:
                        run = ([], [], [])
                        pending.append((_READ_RUN, 0, 0, 0, 0, run))
                        run_pages = 0
                    run[0].append(cookie)
                    run[1].append(offset)
                    run[2].append(length)
                    run_pages += count
                    self.inflight += 1
                    self.inflight_bytes += length
                    continue
            run_pages = BATCH_PAGES + 1  # anything else ends the run
            # The common case (a plain READ or WRITE inside the export) skips _validate.
            if cmd <= P.NBD_CMD_WRITE and not flags and 0 < length <= MAX_PAYLOAD:
                if offset + length <= size:
                    self.inflight += 1
                    self.inflight_bytes += length
                    pending.append((cmd, flags, cookie, offset, length, data))
                    continue
            self._request(cmd, flags, cookie, offset, length, data)
            if self._phase != _TRANSMITTING:
                pos = end
                break
        if pos >= end:
            self._start = self._end = 0
        else:
            self._start = pos
        return stopped

    def _request(
        self, cmd: int, flags: int, cookie: int, offset: int, length: int, data: Any
    ) -> None:
        """A request that is not a plain READ/WRITE inside the export (or a large WRITE)."""
        if (
            cmd <= P.NBD_CMD_WRITE
            and not flags
            and 0 < length <= MAX_PAYLOAD
            and offset + length <= self.size
        ):
            bad = None
        else:
            bad = self._validate(cmd, flags, offset, length)
        if bad is not None:
            self._send_error(cookie, bad[0], bad[1])
        elif cmd == P.NBD_CMD_DISC:
            self._end_transmission()
        elif cmd == P.NBD_CMD_FLUSH:
            # Every write already replied to is in the device: nothing to wait for.
            self._send(P.simple_reply(cookie))
        else:
            self.inflight += 1
            if cmd == P.NBD_CMD_READ or cmd == P.NBD_CMD_WRITE:
                self.inflight_bytes += length
            self._pending.append((cmd, flags, cookie, offset, length, data))

    def _dispatch(self) -> None:
        """Run (or hand to the pool) the requests parsed in this round.

        A run of small aligned reads is one device batch (:meth:`_run_reads`);
        consecutive small page-aligned writes to distinct pages are gathered
        into one batch of up to :data:`BATCH_PAGES` pages (:meth:`_run_writes`),
        each written with its own ``pwrite``.  Requests keep their
        order; large ones go to the thread pool, the rest run here one by one.
        """
        export = self.export
        assert export is not None
        pending, self._pending = self._pending, []
        batch: list[tuple[int, int, int, Any]] = []  # writes
        npages = 0
        pages: set[int] = set()
        for cmd, flags, cookie, offset, length, data in pending:
            if cmd == _READ_RUN:
                if batch:
                    self._run_writes(export, batch)
                    batch, npages = [], 0
                    pages.clear()
                self._run_reads(export, *data)
                continue
            if (
                cmd == P.NBD_CMD_WRITE
                and not (offset | length) & _PAGE_MASK
                and length <= BATCH_PAGES << 12
            ):
                first = offset >> 12
                count = length >> 12
                last = first + count
                if batch and (
                    npages + count > BATCH_PAGES or not pages.isdisjoint(range(first, last))
                ):
                    self._run_writes(export, batch)
                    batch, npages = [], 0
                    pages.clear()
                batch.append((cookie, offset, length, data))
                npages += count
                pages.update(range(first, last))  # writes to one page must not share a batch
                continue
            if batch:
                self._run_writes(export, batch)
                batch, npages = [], 0
                pages.clear()
            nbytes = length if cmd <= P.NBD_CMD_WRITE else 0
            fn, args = _work(export, cmd, flags, offset, length, data)
            if nbytes:
                big = length >= OFFLOAD_BYTES
            elif cmd == P.NBD_CMD_BLOCK_STATUS:
                big = length >= OFFLOAD_STATUS_BYTES
            else:
                big = length >= OFFLOAD_ZERO_BYTES
            if big and cmd != P.NBD_CMD_CACHE:
                self._offload(fn, args, cookie, cmd, offset, nbytes)
            else:
                try:
                    result = fn(*args)
                except BaseException as e:  # becomes the request's error reply
                    self._complete(cookie, cmd, offset, nbytes, None, e)
                else:
                    self._complete(cookie, cmd, offset, nbytes, result, None)
        if batch:
            self._run_writes(export, batch)

    def _run_reads(
        self,
        export: Export,
        cookies: list[int],
        offsets: list[int],
        lengths: list[int],
    ) -> None:
        """A run of small aligned reads: one device batch, one reply buffer.

        The replies are laid out in one buffer, each header followed by its
        data (a simple reply, or the one ``OFFSET_DATA`` chunk of a
        structured one), and the device decodes every read straight into
        its place there (:meth:`Export.read_into`), so the replies leave in
        one ``send`` with no copy.  If a read fails, each read is answered
        on its own as it turned out (an error reply for the read of a page
        that does not decompress).
        """
        k = len(cookies)
        nbytes = sum(lengths)
        structured = self.structured
        head = _DATA_HEAD_SIZE if structured else _SIMPLE_HEAD_SIZE
        reply = bytearray(k * head + nbytes)
        view = memoryview(reply)
        reqs = []
        pos = 0
        for cookie, offset, length in zip(cookies, offsets, lengths, strict=True):
            if structured:
                _DATA_PACK_INTO(reply, pos, *_DATA_HEAD, cookie, length + 8, offset)
            else:
                _SIMPLE_PACK_INTO(reply, pos, P.NBD_SIMPLE_REPLY_MAGIC, 0, cookie)
            pos += head
            reqs.append((offset, view[pos : pos + length]))
            pos += length
        try:
            results = export.read_into(reqs)
        except BaseException as e:  # not a device error: the reads fail with it
            log.error("read batch failed", exc_info=e)
            results = [e] * k
        self.inflight -= k
        self.inflight_bytes -= nbytes
        if not any(results):
            if not self.closing:
                self._out.append(reply)
            idle = self._idle
            if idle is not None and not idle.done():
                idle.set_result(None)
            return
        for (cookie, offset, length), (_, buf), err in zip(
            zip(cookies, offsets, lengths, strict=True), reqs, results, strict=True
        ):
            self.inflight += 1
            self.inflight_bytes += length
            self._complete(cookie, P.NBD_CMD_READ, offset, length, None if err else buf, err)

    def _run_writes(self, export: Export, batch: list[tuple[int, int, int, Any]]) -> None:
        """Small aligned writes to distinct pages: each its own ``pwrite``."""
        complete = self._complete
        cmd = P.NBD_CMD_WRITE
        if len(batch) == 1:
            cookie, offset, length, data = batch[0]
            try:
                export.write(offset, data)
            except BaseException as e:
                complete(cookie, cmd, offset, length, None, e)
            else:
                complete(cookie, cmd, offset, length, None, None)
            return
        try:
            results: list[Any] = export.write_many([(o, d) for _, o, _, d in batch])
        except BaseException as e:
            results = [e] * len(batch)
        for (cookie, offset, length, _), res in zip(batch, results, strict=True):
            if isinstance(res, BaseException):
                complete(cookie, cmd, offset, length, None, res)
            else:
                complete(cookie, cmd, offset, length, res, None)

    def _offload(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        cookie: int,
        cmd: int,
        offset: int,
        nbytes: int,
    ) -> None:
        loop = self._loop
        complete = self._complete
        fut = self.server.pool.submit(fn, *args)

        def back(f: Future[Any]) -> None:
            err = f.exception()
            res = None if err else f.result()
            with contextlib.suppress(RuntimeError):  # the shard's loop is gone
                loop.call_soon_threadsafe(complete, cookie, cmd, offset, nbytes, res, err)

        fut.add_done_callback(back)

    def _complete(
        self,
        cookie: int,
        cmd: int,
        offset: int,
        nbytes: int,
        result: Any,
        error: BaseException | None,
    ) -> None:
        """A request is done: account for it and queue its reply."""
        self.inflight -= 1
        self.inflight_bytes -= nbytes
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)
        if not self.closing:
            if error is not None:
                if isinstance(error, OSError):
                    err = P.nbd_errno(error.errno)
                else:
                    log.error("request failed", exc_info=error)
                    err = P.NBD_EIO
                self._send_error(cookie, err, str(error))
            elif cmd == P.NBD_CMD_BLOCK_STATUS:
                self._out.append(P.block_status_chunk(cookie, BASE_ALLOCATION_ID, result))
            elif cmd != P.NBD_CMD_READ:
                self._out.append(_SIMPLE_PACK(P.NBD_SIMPLE_REPLY_MAGIC, 0, cookie))
            else:
                if self.structured:
                    self._out.append(P.offset_data_header(cookie, offset, len(result)))
                else:
                    self._out.append(_SIMPLE_PACK(P.NBD_SIMPLE_REPLY_MAGIC, 0, cookie))
                self._out.append(result)
        if not self._in_io and not self._settle_scheduled:
            self._settle_scheduled = True
            self._loop.call_soon(self._settle)

    async def _wait_inflight(self, at_most: int) -> None:
        while self.inflight > at_most:
            self._idle = self._loop.create_future()
            try:
                await self._idle
            finally:
                self._idle = None

    def _maybe_finish(self) -> None:
        """Once the connection is gone, the handshake over and nothing in flight:
        release the device and tell the shard."""
        if self._finished or not self._lost or self.inflight:
            return
        if self._task is not None and not self._task.done() and self._phase == _NEGOTIATING:
            if asyncio.current_task(self._loop) is not self._task:
                return  # _negotiate calls again when it ends
        self._finished = True
        if self.export is not None:
            self.export.detach(self._bdev)
        self.shard.conns.discard(self)
        self.shard.finished += 1
        if not self.finished.done():
            self.finished.set_result(None)


def _work(
    export: Export, cmd: int, flags: int, offset: int, length: int, data: Any
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    if cmd == P.NBD_CMD_READ:
        return export.read_aligned, (offset, length)
    if cmd == P.NBD_CMD_WRITE:
        return export.write, (offset, data)
    if cmd == P.NBD_CMD_TRIM:
        return export.trim, (offset, length)
    if cmd == P.NBD_CMD_WRITE_ZEROES:
        return export.zero, (offset, length, not flags & P.NBD_CMD_FLAG_NO_HOLE)
    if cmd == P.NBD_CMD_BLOCK_STATUS:
        return export.block_status, (offset, length, bool(flags & P.NBD_CMD_FLAG_REQ_ONE))
    return _noop, ()  # NBD_CMD_CACHE: the data is already in memory


def _noop() -> None:
    return None


def _parse_meta_request(data: bytes) -> tuple[bytes, list[str]] | str:
    """NBD_OPT_*_META_CONTEXT data: (raw export name, queries), or what is wrong with it."""
    n = len(data)
    if n < 8:
        return "option data too short"
    (nlen,) = P.U32.unpack_from(data)
    if nlen > n - 8:
        return "export name length runs past the data"
    raw = data[4 : 4 + nlen]
    (count,) = P.U32.unpack_from(data, 4 + nlen)
    pos = 8 + nlen
    queries: list[str] = []
    for _ in range(count):
        if pos + 4 > n:
            return "fewer queries than counted"
        (qlen,) = P.U32.unpack_from(data, pos)
        pos += 4
        if qlen > n - pos:
            return "query length runs past the data"
        try:
            queries.append(data[pos : pos + qlen].decode("utf-8"))
        except UnicodeDecodeError:
            return "query is not UTF-8"
        pos += qlen
    if pos != n:
        return "data past the last query"
    return raw, queries


async def _skip(r: Connection, n: int) -> None:
    """Read and drop ``n`` bytes without holding them all."""
    while n:
        chunk = await r.read(min(n, 1 << 20))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(chunk)


class Shard:
    """A thread with its own event loop, serving the connections it is given."""

    def __init__(self, server: NbdServer, index: int) -> None:
        self.server = server
        self.loop = server.new_loop()
        self.assigned = 0  # connections handed over (main thread)
        self.finished = 0  # connections ended (this thread)
        self.conns: set[Connection] = set()
        self.thread = threading.Thread(target=self._main, name=f"pyzram-nbd-{index}", daemon=True)
        self.thread.start()

    @property
    def load(self) -> int:
        return self.assigned - self.finished

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def adopt(self, sock: socket.socket) -> None:
        """Serve ``sock`` (called in this shard's thread)."""
        self.loop.create_task(self._serve(sock))

    def _connection(self, sock: socket.socket) -> Connection:
        conn = Connection(self.server, self, sock)
        self.conns.add(conn)
        return conn

    async def _serve(self, sock: socket.socket) -> None:
        made: list[Connection] = []

        def factory() -> Connection:
            made.append(self._connection(sock))
            return made[-1]

        try:
            await self.loop.connect_accepted_socket(factory, sock)
        except OSError:
            sock.close()
            if made and made[0] in self.conns:
                self.conns.discard(made[0])
            elif made:
                return  # it finished (and was counted) already
            self.finished += 1

    async def shutdown(self, grace: float) -> None:
        """Drop negotiating clients; let the others' requests finish; disconnect all."""
        for conn in list(self.conns):
            if conn.export is None and conn.transport is not None:
                conn.transport.abort()
        deadline = self.loop.time() + grace
        for conn in list(self.conns):
            remaining = max(0.0, deadline - self.loop.time())
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(conn._wait_inflight(0), remaining)
            if conn.transport is not None:
                conn.transport.abort()
        waiting = [c.finished for c in self.conns]
        if waiting:
            await asyncio.wait(waiting, timeout=grace)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event-loop constructor called ``name`` (one of :data:`LOOPS`).

    ``uvloop`` (libuv) spends less CPU per wake-up, read and send than
    asyncio's own selector loop; ``asyncio`` is the standard library's.
    An unknown name, or ``uvloop`` where it is not installed, is ``ValueError``.
    """
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ValueError("--loop uvloop: the uvloop package is not installed") from None
        return uvloop.new_event_loop
    raise ValueError(f"--loop {name!r}: expected one of {', '.join(LOOPS)}")


class NbdServer:
    """The server: exports, listeners, shards, the pool, the control socket.

    ``socket_path`` (a Unix socket) and/or ``port`` (TCP on ``host``, 127.0.0.1
    by default; 0 picks a free port) say where to listen.  ``ctl_path`` adds
    the control socket of :mod:`pyzram.nbd.control`.  ``threads`` is the
    number of shards and of pool threads.  ``loop`` is the event loop of the
    shards (:data:`LOOPS`).
    """

    def __init__(
        self,
        exports: list[Export],
        *,
        socket_path: str | os.PathLike[str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        ctl_path: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        loop: str = DEFAULT_LOOP,
    ) -> None:
        if not exports:
            raise ValueError("nothing to serve: give --size or --export")
        if socket_path is None and port is None:
            raise ValueError("give --socket PATH and/or --port PORT")
        if threads is not None and threads < 1:
            raise ValueError("--threads must be at least 1")
        self.exports = exports
        self.export_map = {e.name: e for e in exports}
        if len(self.export_map) != len(exports):
            raise ValueError("two exports have the same name")
        self.socket_path = os.fspath(socket_path) if socket_path is not None else None
        self.port = port
        self.host = host
        self.ctl_path = os.fspath(ctl_path) if ctl_path is not None else None
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.new_loop = loop_factory(loop)
        self.loop_name = loop
        self.stopping = False
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="pyzram-nbd-io")
        self.shards: list[Shard] = []
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._rr = itertools.count()
        self._created: list[str] = []
        self._ctl: Any = None

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return sum(s.load for s in self.shards)

    async def start(self) -> None:
        """Bind the listeners, start the shards (errors: ``OSError`` as bind gives it)."""
        try:
            if self.socket_path is not None:
                _claim_socket_path(self.socket_path)
                lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._listeners.append(lsock)
                lsock.bind(self.socket_path)
                self._created.append(self.socket_path)
                os.chmod(self.socket_path, 0o600)
            if self.port is not None:
                lsock = socket.create_server((self.host, self.port), backlog=128)
                self._listeners.append(lsock)
                self.port = lsock.getsockname()[1]
            if self.ctl_path is not None:
                from pyzram.nbd.control import ControlServer

                _claim_socket_path(self.ctl_path)
                self._ctl = ControlServer(self, self.ctl_path)
                await self._ctl.start()
                self._created.append(self.ctl_path)
            self.shards = [Shard(self, i) for i in range(self.threads)]
            for lsock in self._listeners:
                lsock.listen(128)
                lsock.setblocking(False)
                self._accepting.append(asyncio.create_task(self._accept(lsock)))
        except BaseException:
            await self.close()
            raise

    async def _accept(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(lsock)
            except OSError as e:  # EMFILE and friends: wait, do not spin
                log.warning("accept: %s", e)
                await asyncio.sleep(0.1)
                continue
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):  # a whole 1 MiB reply in one send()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCK_BUF)
            # The least loaded shard; round robin among equals.
            start = next(self._rr)
            n = len(self.shards)
            shard = min((self.shards[(start + i) % n] for i in range(n)), key=lambda s: s.load)
            shard.assigned += 1
            try:
                shard.loop.call_soon_threadsafe(shard.adopt, sock)
            except RuntimeError:  # shutting down
                sock.close()

    async def close(self) -> None:
        """Stop listening, let requests in flight finish, close clients, remove sockets."""
        self.stopping = True
        for task in self._accepting:
            task.cancel()
        for task in self._accepting:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._accepting.clear()
        for lsock in self._listeners:
            lsock.close()
        self._listeners.clear()
        if self._ctl is not None:
            await self._ctl.close()
            self._ctl = None
        for shard in self.shards:
            fut = asyncio.run_coroutine_threadsafe(shard.shutdown(SHUTDOWN_GRACE_S), shard.loop)
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(fut)
        loop = asyncio.get_running_loop()
        for shard in self.shards:
            await loop.run_in_executor(None, shard.stop)
        self.shards.clear()
        await loop.run_in_executor(None, self.pool.shutdown)
        for path in self._created:  # only what this server bound, never another's
            _remove_socket(path)
        self._created.clear()

    def where(self) -> list[str]:
        """NBD URIs of the first export, for the banner."""
        name = self.exports[0].name
        out = []
        if self.socket_path is not None:
            out.append(f"nbd+unix:///{name}?socket={self.socket_path}")
        if self.port is not None:
            out.append(f"nbd://{self.host}:{self.port}/{name}")
        return out


def _claim_socket_path(path: str) -> None:
    """Refuse a path where a live server listens or a non-socket lies; clear a stale socket."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, "exists and is not a socket", path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover from a killed server
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "a server is already listening there", path)


def _remove_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)


def build_exports(specs: list[ExportSpec]) -> list[Export]:
    """One device per spec (``zram0``, ``zram1``, ... in order)."""
    names = [s.name for s in specs]
    for n in names:
        if names.count(n) > 1:
            raise ValueError(f"export name {n!r} given twice")
    return [Export(spec, dev_id=i) for i, spec in enumerate(specs)]


class ServerThread:
    """An :class:`NbdServer` running in a background thread of this process.

    For tests, notebooks and scripts that want to look at the served
    devices while real clients use them::

        with ServerThread(build_exports([spec]), socket_path=path) as srv:
            ...  # nbdcopy ... nbd+unix:///?socket=path; srv.exports[0].dev.sysfs["mm_stat"]

    ``kwargs`` are :class:`NbdServer`'s.  Start-up errors (a socket in use)
    are raised by the constructor; leaving the ``with`` block stops the
    server as SIGTERM would.
    """

    def __init__(self, exports: list[Export], **kwargs: Any) -> None:
        self.server = NbdServer(exports, **kwargs)
        self.exports = exports
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        factory = self.server.new_loop
        self.thread = threading.Thread(
            target=lambda: _run_loop(factory, self._main()), name="pyzram-nbd-main", daemon=True
        )
        self.thread.start()
        self._ready.wait()
        if self._error is not None:
            self.thread.join()
            raise self._error

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.close()

    def stop(self) -> None:
        """Close the server (requests in flight finish first) and join its thread."""
        if self.thread.is_alive() and self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run_loop(factory: Callable[[], asyncio.AbstractEventLoop], main: Any) -> None:
    """``asyncio.run(main)`` on a loop made by ``factory``."""
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


async def serve_until_signalled(server: NbdServer, ready: Callable[[NbdServer], None]) -> None:
    """Run ``server`` until SIGINT or SIGTERM, then close it cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await server.start()
        ready(server)
        await stop.wait()
    finally:
        await server.close()
        for sig in installed:
            loop.remove_signal_handler(sig)


def serve(
    specs: list[ExportSpec],
    *,
    socket_path: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    ctl_path: str | None = None,
    threads: int | None = None,
    loop: str = DEFAULT_LOOP,
    banner: bool = True,
) -> None:
    """``pyzram serve``: build the devices, serve until SIGINT/SIGTERM."""
    exports = build_exports(specs)
    server = NbdServer(
        exports,
        socket_path=socket_path,
        port=port,
        host=host,
        ctl_path=ctl_path,
        threads=threads,
        loop=loop,
    )

    def ready(s: NbdServer) -> None:
        if not banner:
            return
        for e in s.exports:
            algo = e.dev.sysfs["comp_algorithm"].split("[")[-1].split("]")[0]
            label = repr(e.name) if e.name else "'' (default)"
            print(
                f"pyzram: {e.dev.disk_name} ({e.size >> 20} MiB, {algo}) as export {label}",
                flush=True,
            )
        for uri in s.where():
            print(f"pyzram: serving {uri}", flush=True)
        if s.ctl_path is not None:
            print(f"pyzram: control socket {s.ctl_path}", flush=True)

    _run_loop(server.new_loop, serve_until_signalled(server, ready))
    if banner:
        print("pyzram: server stopped", file=sys.stderr, flush=True)
