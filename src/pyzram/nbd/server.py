"""``pyzram serve``: an asyncio NBD server whose exports are pyzram devices.

Protocol (NetworkBlockDevice ``doc/proto.md``): fixed newstyle handshake
without TLS; options ``NBD_OPT_EXPORT_NAME``, ``NBD_OPT_GO``,
``NBD_OPT_INFO`` (``NBD_INFO_EXPORT``, ``NAME``, ``DESCRIPTION``,
``BLOCK_SIZE``), ``NBD_OPT_LIST``, ``NBD_OPT_ABORT``,
``NBD_OPT_STRUCTURED_REPLY``; every other option is answered
``NBD_REP_ERR_UNSUP``.  Commands ``READ``, ``WRITE``, ``FLUSH``, ``TRIM``
(zram discard), ``WRITE_ZEROES`` (zram's write-zeroes path, or same-filled
pages with ``NO_HOLE``), ``CACHE`` and ``DISC``.

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
is no server-wide lock.  Small aligned reads that arrive together are read
as one batch (one ``read_pages``, one codec call).  Replies ready together
leave in one ``send``.  Each connection may have :data:`MAX_INFLIGHT`
requests (and :data:`MAX_INFLIGHT_BYTES`) in flight; past that, or while
its replies back up in the socket, the server stops reading it.

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

__all__ = ["MAX_INFLIGHT", "MAX_PAYLOAD", "NbdServer", "ServerThread", "build_exports", "serve"]

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
#: Most pages of small aligned reads (or writes) that go to the device as one batch.
BATCH_PAGES = 64
#: Socket send buffer asked for (the kernel caps it at net.core.wmem_max).
_SOCK_BUF = 4 << 20
#: StreamReader buffer limit: it stops reading the socket past twice this.
_STREAM_LIMIT = 1 << 20
#: Replies up to this size are joined into one buffer before the write.
_JOIN_LIMIT = 64 << 10
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
    (P.NBD_CMD_READ, P.NBD_CMD_WRITE, P.NBD_CMD_TRIM, P.NBD_CMD_WRITE_ZEROES, P.NBD_CMD_CACHE)
)

Done = Callable[[Any, BaseException | None], None]


class Disconnect(Exception):
    """The peer broke a MUST of the protocol: drop its connection."""


class Connection:
    """One client on one shard: the handshake, then the transmission phase on one export."""

    def __init__(
        self, server: NbdServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.structured = False
        self.no_zeroes = False
        self.export: Export | None = None
        self.size = 0
        self.inflight = 0
        self.inflight_bytes = 0
        self.closing = False
        self._bdev: Any = None
        self._loop = asyncio.get_running_loop()
        self._idle: asyncio.Future[None] | None = None  # set when a request completes
        self._out: list[bytes | memoryview] = []
        self._flush_scheduled = False
        self._pending: list[tuple[int, int, int, int, int, bytes | None]] = []
        self._dispatch_scheduled = False

    # -- handshake ----------------------------------------------------------------------

    def _opt_reply(self, option: int, reply: int, data: bytes = b"") -> None:
        self.writer.write(P.option_reply(option, reply, data))

    def _opt_error(self, option: int, reply: int, message: str) -> None:
        self._opt_reply(option, reply, message.encode()[: P.NBD_MAX_STRING])

    def transmission_flags(self) -> int:
        flags = _BASE_TRANSMISSION_FLAGS
        if self.structured:
            flags |= P.NBD_FLAG_SEND_DF
        return flags

    async def handshake(self) -> Export | None:
        """Fixed newstyle negotiation; the export chosen, or None after NBD_OPT_ABORT."""
        r, w = self.reader, self.writer
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
            else:  # STARTTLS, meta contexts, extended headers, and anything unknown
                name = P.OPT_NAMES.get(option, f"option {option}")
                self._opt_error(option, P.NBD_REP_ERR_UNSUP, f"{name} is not supported")
            await w.drain()

    def _lookup(self, raw: bytes) -> Export | None:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return self.server.export_map.get(name)

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

    def _send(self, data: bytes | memoryview) -> None:
        """Queue reply bytes; they leave in one write when the loop next gets control.

        One ``send(2)`` per reply costs a system call and a wake-up of the
        client each; with many requests in flight, corking the replies that
        are ready into one write saves most of that.
        """
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        t = self.writer.transport
        if t.is_closing() or not out:
            return
        if len(out) == 1:
            t.write(out[0])
            return
        small: list[bytes | memoryview] = []
        for item in out:
            if len(item) > _JOIN_LIMIT:
                if small:
                    t.write(b"".join(small))
                    small = []
                t.write(item)
            else:
                small.append(item)
        if small:
            t.write(b"".join(small))

    def _send_error(self, cookie: int, err: int, message: str) -> None:
        if self.closing:
            return
        if self.structured:
            self._send(P.structured_error(cookie, err, message))
        else:
            self._send(P.simple_reply(cookie, err))

    # -- transmission -------------------------------------------------------------------

    def _validate(self, cmd: int, flags: int, offset: int, length: int) -> tuple[int, str] | None:
        """The error (NBD value, message) for a request that must not run, else None."""
        if cmd not in _IO_CMDS and cmd not in (P.NBD_CMD_FLUSH, P.NBD_CMD_DISC):
            if cmd == P.NBD_CMD_BLOCK_STATUS:
                return P.NBD_EINVAL, "NBD_CMD_BLOCK_STATUS without a metadata context"
            return P.NBD_EINVAL, f"unknown command {cmd}"
        name = P.CMD_NAMES[cmd]
        if flags & ~_KNOWN_CMD_FLAGS:
            return P.NBD_EINVAL, f"{name}: unknown flags {flags:#x}"
        if flags & (P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_FAST_ZERO) and (
            cmd != P.NBD_CMD_WRITE_ZEROES
        ):
            return P.NBD_EINVAL, f"{name}: NO_HOLE/FAST_ZERO apply to NBD_CMD_WRITE_ZEROES only"
        if flags & P.NBD_CMD_FLAG_DF and (cmd != P.NBD_CMD_READ or not self.structured):
            return P.NBD_EINVAL, f"{name}: DF needs NBD_CMD_READ and structured replies"
        if flags & P.NBD_CMD_FLAG_REQ_ONE:
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

    async def transmission(self, export: Export) -> None:
        """Read requests until NBD_CMD_DISC; queue them for :meth:`_dispatch`."""
        r = self.reader
        unpack = P.REQUEST.unpack
        hdr_size = P.REQUEST.size
        transport = self.writer.transport
        while True:
            hdr = await r.readexactly(hdr_size)
            magic, flags, cmd, cookie, offset, length = unpack(hdr)
            if magic != P.NBD_REQUEST_MAGIC:
                raise Disconnect(f"bad request magic {magic:#x}")
            data = None
            if cmd == P.NBD_CMD_WRITE:
                if length > MAX_PAYLOAD:
                    if length > MAX_WRITE_SKIP:
                        raise Disconnect(f"NBD_CMD_WRITE of {length} bytes")
                    await _skip(r, length)
                    msg = f"NBD_CMD_WRITE of {length} bytes is over {MAX_PAYLOAD}"
                    self._send_error(cookie, P.NBD_EINVAL, msg)
                    continue
                data = await r.readexactly(length)
            # The common case (a plain READ or WRITE inside the export) skips _validate.
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
                return
            elif cmd == P.NBD_CMD_FLUSH:
                # Every write already replied to is in the device: nothing to wait for.
                self._send(P.simple_reply(cookie))
            else:
                self.inflight += 1
                if cmd == P.NBD_CMD_READ or cmd == P.NBD_CMD_WRITE:
                    self.inflight_bytes += length
                self._pending.append((cmd, flags, cookie, offset, length, data))
                if not self._dispatch_scheduled:
                    self._dispatch_scheduled = True
                    self._loop.call_soon(self._dispatch, export)
                if self.inflight >= MAX_INFLIGHT or self.inflight_bytes > MAX_INFLIGHT_BYTES:
                    await self._wait_budget()
            if transport.get_write_buffer_size() > (1 << 20):
                await self.writer.drain()

    def _dispatch(self, export: Export) -> None:
        """Run (or hand to the pool) the requests parsed since the last dispatch.

        It runs once the reader has emptied its buffer, so it sees every
        request that arrived together.  A run of consecutive small
        page-aligned reads (or writes) goes to the device as one batch of up
        to :data:`BATCH_PAGES` pages: one ``read_pages`` (``write_pages``)
        call over their slots, one codec call, as the seed's swap_ops path
        batches a swap_iocb.  Requests keep their order; large ones go to
        the thread pool, the rest run here one by one.
        """
        self._dispatch_scheduled = False
        pending, self._pending = self._pending, []
        kind = 0  # the batch being built: NBD_CMD_READ, NBD_CMD_WRITE, or 0 for none
        batch: list[tuple[int, int, int, bytes | None]] = []
        npages = 0
        pages: set[int] = set()
        for cmd, flags, cookie, offset, length, data in pending:
            batchable = (
                (cmd == P.NBD_CMD_READ or cmd == P.NBD_CMD_WRITE)
                and not (offset | length) & _PAGE_MASK
                and length <= BATCH_PAGES << 12
            )
            if batchable:
                first = offset >> 12
                span = range(first, first + (length >> 12))
                if batch and (
                    cmd != kind
                    or npages + len(span) > BATCH_PAGES
                    or (cmd == P.NBD_CMD_WRITE and not pages.isdisjoint(span))
                ):
                    self._run_batch(export, kind, batch)
                    batch, npages = [], 0
                    pages.clear()
                kind = cmd
                batch.append((cookie, offset, length, data))
                npages += len(span)
                if cmd == P.NBD_CMD_WRITE:  # writes to one page must not share a batch
                    pages.update(span)
                continue
            if batch:
                self._run_batch(export, kind, batch)
                batch, npages = [], 0
                pages.clear()
            nbytes = length if cmd in (P.NBD_CMD_READ, P.NBD_CMD_WRITE) else 0
            fn, args = _work(export, cmd, flags, offset, length, data)
            done = self._completion(cookie, cmd, offset, nbytes)
            big = length >= (OFFLOAD_BYTES if nbytes else OFFLOAD_ZERO_BYTES)
            if big and cmd != P.NBD_CMD_CACHE:
                self._offload(fn, args, done)
            else:
                _run(fn, args, done)
        if batch:
            self._run_batch(export, kind, batch)

    def _run_batch(
        self, export: Export, cmd: int, batch: list[tuple[int, int, int, bytes | None]]
    ) -> None:
        if len(batch) == 1:
            cookie, offset, length, data = batch[0]
            done = self._completion(cookie, cmd, offset, length)
            if cmd == P.NBD_CMD_READ:
                _run(export.read, (offset, length), done)
            else:
                _run(export.write, (offset, data), done)
            return
        try:
            if cmd == P.NBD_CMD_READ:
                results: list[Any] = export.read_many([(o, n) for _, o, n, _ in batch])
            else:
                results = export.write_many([(o, d) for _, o, _, d in batch])  # type: ignore[misc]
        except BaseException as e:
            results = [e] * len(batch)
        for (cookie, offset, length, _), res in zip(batch, results, strict=True):
            done = self._completion(cookie, cmd, offset, length)
            if isinstance(res, BaseException):
                done(None, res)
            else:
                done(res, None)

    def _offload(self, fn: Callable[..., Any], args: tuple[Any, ...], done: Done) -> None:
        loop = self._loop
        fut = self.server.pool.submit(fn, *args)

        def back(f: Future[Any]) -> None:
            err = f.exception()
            with contextlib.suppress(RuntimeError):  # the shard's loop is gone
                loop.call_soon_threadsafe(done, None if err else f.result(), err)

        fut.add_done_callback(back)

    def _completion(self, cookie: int, cmd: int, offset: int, nbytes: int) -> Done:
        def done(result: Any, error: BaseException | None) -> None:
            self.inflight -= 1
            self.inflight_bytes -= nbytes
            if self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
            if self.closing:
                return
            if error is not None:
                if isinstance(error, OSError):
                    err = P.nbd_errno(error.errno)
                else:
                    log.error("request failed", exc_info=error)
                    err = P.NBD_EIO
                self._send_error(cookie, err, str(error))
            elif cmd != P.NBD_CMD_READ:
                self._send(P.simple_reply(cookie))
            else:
                n = len(result)
                if self.structured:
                    self._send(P.offset_data_header(cookie, offset, n))
                else:
                    self._send(P.simple_reply(cookie))
                self._send(result)

        return done

    async def _wait_inflight(self, at_most: int) -> None:
        while self.inflight > at_most:
            await self._next_completion()

    async def _wait_budget(self) -> None:
        while self.inflight >= MAX_INFLIGHT or self.inflight_bytes > MAX_INFLIGHT_BYTES:
            await self._next_completion()

    async def _next_completion(self) -> None:
        self._idle = self._loop.create_future()
        try:
            await self._idle
        finally:
            self._idle = None

    async def run(self) -> None:
        """The whole connection; never raises for what the client does."""
        try:
            export = await self.handshake()
            await self.writer.drain()
            if export is not None:
                await self.transmission(export)
        except (asyncio.IncompleteReadError, ConnectionError, Disconnect) as e:
            log.debug("client gone: %s", e)
        finally:
            # Requests already received finish (their data reaches the device)
            # even when their replies can no longer be delivered.
            with contextlib.suppress(Exception):
                if self._pending:
                    self._dispatch(self.export)  # type: ignore[arg-type]
                await self._wait_inflight(0)
            with contextlib.suppress(Exception):
                self._flush()
            self.closing = True
            if self.export is not None:
                self.export.detach(self._bdev)
            with contextlib.suppress(Exception):
                await self.writer.drain()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


def _work(
    export: Export, cmd: int, flags: int, offset: int, length: int, data: bytes | None
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    if cmd == P.NBD_CMD_READ:
        return export.read, (offset, length)
    if cmd == P.NBD_CMD_WRITE:
        return export.write, (offset, data)
    if cmd == P.NBD_CMD_TRIM:
        return export.trim, (offset, length)
    if cmd == P.NBD_CMD_WRITE_ZEROES:
        return export.zero, (offset, length, not flags & P.NBD_CMD_FLAG_NO_HOLE)
    return _noop, ()  # NBD_CMD_CACHE: the data is already in memory


def _run(fn: Callable[..., Any], args: tuple[Any, ...], done: Done) -> None:
    try:
        result = fn(*args)
    except BaseException as e:  # becomes the request's error reply
        done(None, e)
    else:
        done(result, None)


def _noop() -> None:
    return None


async def _skip(r: asyncio.StreamReader, n: int) -> None:
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
        self.loop = asyncio.new_event_loop()
        self.assigned = 0  # connections handed over (main thread)
        self.finished = 0  # connections ended (this thread)
        self.conns: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
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
        task = self.loop.create_task(self._serve(sock))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        except OSError:
            sock.close()
            self.finished += 1
            return
        conn = Connection(self.server, reader, writer)
        self.conns.add(conn)
        try:
            await conn.run()
        except Exception:  # a bug must not take the shard down with it
            log.exception("connection failed")
        finally:
            self.conns.discard(conn)
            self.finished += 1

    async def shutdown(self, grace: float) -> None:
        """Drop negotiating clients; let the others' requests finish; disconnect all."""
        for conn in list(self.conns):
            if conn.export is None:
                conn.writer.transport.abort()
        deadline = self.loop.time() + grace
        for conn in list(self.conns):
            remaining = max(0.0, deadline - self.loop.time())
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(conn._wait_inflight(0), remaining)
            conn.writer.transport.abort()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


class NbdServer:
    """The server: exports, listeners, shards, the pool, the control socket.

    ``socket_path`` (a Unix socket) and/or ``port`` (TCP on ``host``, 127.0.0.1
    by default; 0 picks a free port) say where to listen.  ``ctl_path`` adds
    the control socket of :mod:`pyzram.nbd.control`.  ``threads`` is the
    number of shards and of pool threads.
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
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="pyzram-nbd-main", daemon=True
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

    asyncio.run(serve_until_signalled(server, ready))
    if banner:
        print("pyzram: server stopped", file=sys.stderr, flush=True)
