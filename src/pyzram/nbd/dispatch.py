"""Dispatch: running parsed NBD requests against an export and building their replies.

:class:`Transmission` is one connection's transmission phase.  Each round
(:meth:`Transmission.process`) parses what arrived
(:func:`pyzram.nbd.requests.parse`), dispatches it in order, and leaves the
replies that are ready to the channel, which sends them in one go.

* A run of small aligned reads is read straight into one reply buffer
  (:meth:`Transmission.run_reads`, :meth:`Export.read_into`); consecutive
  small aligned writes to distinct pages are gathered into one batch
  (:meth:`Transmission.run_writes`), each written with its own ``pwrite``.
* Requests of :data:`~pyzram.nbd.requests.OFFLOAD_BYTES` or more go to the
  server's thread pool, so they run side by side and do not hold up the
  shard; the rest run right here (handing a 4 KiB request to another thread
  costs more CPU than the request).
* A READ over :data:`~pyzram.nbd.limits.STREAM_BYTES` is *streamed*: its
  reply header, then its data read from the device one piece at a time as
  the socket drains, while the reply holds the channel's output (no other
  reply may be sent inside it).  If a piece after the first fails, the
  header has already promised the data: the connection is dropped, which
  is what the protocol leaves a server for an error inside a simple reply
  or a ``DF`` chunk, and the client sees the request unanswered.

Errors of the device are mapped to the protocol's short list
(:func:`pyzram.nbd.protocol.nbd_errno`); a write past ``mem_limit`` is
``EIO`` and counts in ``failed_writes`` as its bio would.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyzram.nbd import protocol as P
from pyzram.nbd.channel import P_BUDGET, P_ENDING, Channel
from pyzram.nbd.export import MAX_EXTENTS, Export
from pyzram.nbd.handshake import BASE_ALLOCATION_ID, Negotiated
from pyzram.nbd.limits import INPUT_BUFFER, STREAM_BYTES, STREAM_CHUNK, Limits
from pyzram.nbd.requests import BATCH_PAGES, OFFLOAD_BYTES, READ_RUN, WriteStream, parse, validate

__all__ = ["OFFLOAD_STATUS_BYTES", "OFFLOAD_ZERO_BYTES", "Transmission"]

log = logging.getLogger("pyzram.nbd")

#: TRIM/WRITE_ZEROES of this many bytes or more run on the thread pool.
OFFLOAD_ZERO_BYTES = 16 << 20
#: BLOCK_STATUS of this many bytes or more runs on the pool too: its numpy scan
#: of the slot table costs ~0.2 ms per 256 MiB (2-4 ms for a 4 GiB request).
OFFLOAD_STATUS_BYTES = 256 << 20
_SIMPLE_PACK = P.SIMPLE_REPLY.pack
_SIMPLE_PACK_INTO = P.SIMPLE_REPLY.pack_into
_DATA_PACK_INTO = P.OFFSET_DATA_REPLY.pack_into
_SIMPLE_HEAD_SIZE = P.SIMPLE_REPLY.size
_DATA_HEAD_SIZE = P.OFFSET_DATA_REPLY.size
#: The fixed fields of a final OFFSET_DATA chunk (``P.offset_data_header``).
_DATA_HEAD = (P.NBD_STRUCTURED_REPLY_MAGIC, P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_OFFSET_DATA)
_PAGE = 4096
_PAGE_MASK = 4095

# Phases.
_TRANSMITTING = 1
_ENDING = 2  # NBD_CMD_DISC or a protocol violation: finish what is in flight, then close


class Transmission:
    """One connection's transmission phase on one export (see the module's docstring).

    ``on_idle`` is called when the connection is gone and may have nothing
    left in flight (the server then releases the device).
    """

    def __init__(
        self,
        chan: Channel,
        negotiated: Negotiated,
        limits: Limits,
        pool: ThreadPoolExecutor,
        on_idle: Callable[[], None],
    ) -> None:
        self.chan = chan
        self.export: Export = negotiated.export
        self.size = negotiated.export.size
        self.structured = negotiated.structured
        self.meta_allocation = negotiated.meta_allocation
        self.pool = pool
        self.max_block = limits.max_block_size
        #: Plain READs and WRITEs up to this skip validate (within both the maximum
        #: block size and what is held whole rather than streamed).
        self.fast_max = min(limits.max_block_size, STREAM_BYTES)
        self.max_inflight = limits.max_inflight
        self.max_inflight_bytes = limits.max_inflight_bytes
        self.inflight = 0
        self.inflight_bytes = 0
        self.pending: list[tuple[int, int, int, int, int, Any]] = []
        self.wstream: WriteStream | None = None
        self._rstreams: collections.deque[tuple[int, int, int]] = collections.deque()
        self._streaming = False
        self._phase = _TRANSMITTING
        self._in_io = False  # inside process: it settles at its end
        self._settle_scheduled = False
        self._idle: asyncio.Future[None] | None = None  # set when a request completes
        self._on_idle = on_idle
        self._loop = chan.loop

    @property
    def transmitting(self) -> bool:
        return self._phase == _TRANSMITTING

    def start(self) -> None:
        """Take over the channel's callbacks; parse what came behind the last option."""
        chan = self.chan
        chan.on_input = self.process
        chan.on_eof = self._eof
        chan.on_lost = self._lost
        chan.on_writable = self._writable
        chan.enter_transmission(INPUT_BUFFER)
        if chan.end > chan.start:
            self.process()

    # -- the channel's callbacks ------------------------------------------------------

    def _eof(self) -> bool:
        # Half-closed: the requests received still finish and get their replies.
        self.end_transmission("end of input")
        self.settle()
        return True

    def _lost(self) -> None:
        if self.wstream is not None and not self.wstream.storing:
            self.wstream.abandon()
        self._wake_idle()
        self._on_idle()

    def _writable(self) -> None:
        if self.chan.end > self.chan.start and not self._in_io and self.transmitting:
            self.process()

    # -- rounds -------------------------------------------------------------------------

    def over_budget(self) -> bool:
        return self.inflight >= self.max_inflight or self.inflight_bytes >= self.max_inflight_bytes

    def process(self) -> None:
        """Parse the requests received, dispatch them, send the replies that are ready."""
        if self._in_io:
            return
        self._in_io = True
        try:
            while self._phase == _TRANSMITTING:
                stopped = parse(self)
                if self.pending:
                    self.dispatch()
                # Parsing stopped at the budget: go on if dispatching freed it.
                if not stopped or self.over_budget() or self.chan.write_paused:
                    break
        finally:
            self._in_io = False
        self.settle()

    def settle(self) -> None:
        """After a round of work: send replies, pause or resume reading, end or finish."""
        self._settle_scheduled = False
        chan = self.chan
        if chan.out:
            chan.flush()
        if chan.lost:
            self._on_idle()
            return
        if self._phase == _ENDING:
            if not self.inflight:
                chan.close()  # the replies written leave first
            return
        # Over budget, no new request is read; but the payload of a streamed WRITE
        # already let in still is (it counts in the budget itself, and only its
        # payload can complete it: it paces itself with P_STREAM).
        if self.over_budget() and self.wstream is None:
            chan.pause(P_BUDGET)
        elif chan.paused & P_BUDGET:
            chan.unpause(P_BUDGET)

    def _schedule_settle(self) -> None:
        if not self._in_io and not self._settle_scheduled:
            self._settle_scheduled = True
            self._loop.call_soon(self.settle)

    def end_transmission(self, why: str | None = None) -> None:
        """NBD_CMD_DISC, end of input or a hard disconnect: no more requests are read;
        the ones received finish (their data reaches the device), then the connection
        closes.  A streamed WRITE still waiting for payload never gets it."""
        if why:
            log.debug("client gone: %s", why)
        self._phase = _ENDING
        self.chan.pause(P_ENDING)
        if self.wstream is not None and not self.wstream.storing:
            self.wstream.abandon()

    # -- requests ---------------------------------------------------------------------

    def send_error(self, cookie: int, err: int, message: str) -> None:
        """An error reply: a structured ``NBD_REPLY_TYPE_ERROR`` chunk, or a simple reply."""
        if self.structured:
            self.chan.queue(P.structured_error(cookie, err, message))
        else:
            self.chan.queue(P.simple_reply(cookie, err))
        self._schedule_settle()

    def request(
        self, cmd: int, flags: int, cookie: int, offset: int, length: int, data: Any
    ) -> None:
        """A request that is not a plain READ/WRITE inside the export (or a large WRITE)."""
        if (
            cmd <= P.NBD_CMD_WRITE
            and not flags
            and 0 < length <= self.fast_max
            and offset + length <= self.size
        ):
            bad = None
        else:
            bad = validate(self, cmd, flags, offset, length)
        if bad is not None:
            self.send_error(cookie, bad[0], bad[1])
        elif cmd == P.NBD_CMD_DISC:
            self.end_transmission()
        elif cmd == P.NBD_CMD_FLUSH:
            # Every write already replied to is in the device: nothing to wait for.
            self.chan.queue(P.simple_reply(cookie))
            self._schedule_settle()
        elif cmd == P.NBD_CMD_READ and length > STREAM_BYTES:
            self.inflight += 1
            self.inflight_bytes += STREAM_CHUNK
            self._rstreams.append((cookie, offset, length))
            if not self._streaming:
                self._streaming = True
                self._loop.create_task(self._stream_reads())
        else:
            self.inflight += 1
            self.inflight_bytes += _held_bytes(cmd, length)
            self.pending.append((cmd, flags, cookie, offset, length, data))

    def dispatch(self) -> None:
        """Run (or hand to the pool) the requests parsed in this round, in order."""
        export = self.export
        pending, self.pending = self.pending, []
        batch: list[tuple[int, int, int, Any]] = []  # writes
        npages = 0
        pages: set[int] = set()
        for cmd, flags, cookie, offset, length, data in pending:
            if cmd == READ_RUN:
                if batch:
                    self.run_writes(export, batch)
                    batch, npages = [], 0
                    pages.clear()
                self.run_reads(export, *data)
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
                    self.run_writes(export, batch)
                    batch, npages = [], 0
                    pages.clear()
                batch.append((cookie, offset, length, data))
                npages += count
                pages.update(range(first, last))  # writes to one page must not share a batch
                continue
            if batch:
                self.run_writes(export, batch)
                batch, npages = [], 0
                pages.clear()
            nbytes = _held_bytes(cmd, length)
            fn, args = _work(export, cmd, flags, offset, length, data)
            if cmd <= P.NBD_CMD_WRITE:
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
                    self.complete(cookie, cmd, offset, nbytes, None, e)
                else:
                    self.complete(cookie, cmd, offset, nbytes, result, None)
        if batch:
            self.run_writes(export, batch)

    def run_reads(
        self,
        export: Export,
        cookies: list[int],
        offsets: list[int],
        lengths: list[int],
    ) -> None:
        """A run of small aligned reads: one reply buffer.

        The replies are laid out in one buffer, each header followed by its
        data (a simple reply, or the one ``OFFSET_DATA`` chunk of a
        structured one), and the device reads every request straight into
        its place there (:meth:`Export.read_into`, one ``pread_into`` each),
        so the replies leave in one ``send`` with no copy.  If a read fails,
        each read of the run is answered on its own as it turned out (an
        error reply for the read of a page that does not decompress).
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
            self.chan.queue(reply)
            self._wake_idle()
            return
        for (cookie, offset, length), (_, buf), err in zip(
            zip(cookies, offsets, lengths, strict=True), reqs, results, strict=True
        ):
            self.inflight += 1
            self.inflight_bytes += length
            self.complete(cookie, P.NBD_CMD_READ, offset, length, None if err else buf, err)

    def run_writes(self, export: Export, batch: list[tuple[int, int, int, Any]]) -> None:
        """Small aligned writes to distinct pages: each its own ``pwrite``."""
        complete = self.complete
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
        complete = self.complete
        fut = self.pool.submit(fn, *args)

        def back(f: Future[Any]) -> None:
            err = f.exception()
            res = None if err else f.result()
            with contextlib.suppress(RuntimeError):  # the shard's loop is gone
                loop.call_soon_threadsafe(complete, cookie, cmd, offset, nbytes, res, err)

        fut.add_done_callback(back)

    def complete(
        self,
        cookie: int,
        cmd: int,
        offset: int,
        nbytes: int,
        result: Any,
        error: BaseException | None,
    ) -> None:
        """A request is done: account for it and queue its reply (the hot path of
        every request but batched reads: no call it does not need)."""
        self.inflight -= 1
        self.inflight_bytes -= nbytes
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)
        chan = self.chan
        if not chan.lost:
            out = chan.out
            if error is not None:
                if isinstance(error, OSError):
                    err = P.nbd_errno(error.errno)
                else:
                    log.error("request failed", exc_info=error)
                    err = P.NBD_EIO
                self.send_error(cookie, err, str(error))
            elif cmd != P.NBD_CMD_READ:
                if cmd == P.NBD_CMD_BLOCK_STATUS:
                    out.append(P.block_status_chunk(cookie, BASE_ALLOCATION_ID, result))
                else:
                    out.append(_SIMPLE_PACK(P.NBD_SIMPLE_REPLY_MAGIC, 0, cookie))
            else:
                if self.structured:
                    out.append(P.offset_data_header(cookie, offset, len(result)))
                else:
                    out.append(_SIMPLE_PACK(P.NBD_SIMPLE_REPLY_MAGIC, 0, cookie))
                out.append(result)
        if not self._in_io and not self._settle_scheduled:
            self._settle_scheduled = True
            self._loop.call_soon(self.settle)

    # -- streamed reads -----------------------------------------------------------------

    async def _stream_reads(self) -> None:
        """Send the queued large READs one after the other, each piece by piece."""
        try:
            while self._rstreams:
                cookie, offset, length = self._rstreams.popleft()
                try:
                    await self._stream_read(cookie, offset, length)
                finally:
                    self.chan.held = False
                    self.inflight -= 1
                    self.inflight_bytes -= STREAM_CHUNK
                    self._wake_idle()
                    self.settle()
        finally:
            self._streaming = False

    async def _stream_read(self, cookie: int, offset: int, length: int) -> None:
        """One large READ: header, then pieces as the socket drains (see the module)."""
        chan = self.chan
        read = self.export.read_aligned
        pos = offset
        end = offset + length
        n = min(end - pos, STREAM_CHUNK - pos % STREAM_CHUNK)
        try:
            data = await asyncio.wrap_future(self.pool.submit(read, pos, n))
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            err = P.nbd_errno(e.errno) if isinstance(e, OSError) else P.NBD_EIO
            self.send_error(cookie, err, str(e))
            return
        if chan.lost:
            return
        chan.flush()  # the replies queued before go first
        chan.held = True
        if self.structured:
            chan.write_now(P.offset_data_header(cookie, offset, length))
        else:
            chan.write_now(_SIMPLE_PACK(P.NBD_SIMPLE_REPLY_MAGIC, 0, cookie))
        while True:
            chan.write_now(data)
            pos += n
            if pos >= end:
                return
            try:
                await chan.drain()  # below the send buffer's low-water mark
            except ConnectionError:
                return
            n = min(end - pos, STREAM_CHUNK)
            try:
                data = await asyncio.wrap_future(self.pool.submit(read, pos, n))
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # the header promised the data: drop the client
                log.warning(
                    "read of %d bytes at %d failed after its reply began: %s", length, offset, e
                )
                chan.abort()
                return
            if chan.lost:
                return

    # -- shutdown ---------------------------------------------------------------------

    def _wake_idle(self) -> None:
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    async def wait_inflight(self, at_most: int) -> None:
        """Until at most ``at_most`` requests are in flight."""
        while self.inflight > at_most:
            self._idle = self._loop.create_future()
            try:
                await self._idle
            finally:
                self._idle = None


def _held_bytes(cmd: int, length: int) -> int:
    """Bytes a request makes the server hold until its reply is sent: its data
    for READ and WRITE, the largest reply for BLOCK_STATUS (8 bytes a 4 KiB
    page, at most :data:`MAX_EXTENTS` descriptors), nothing else."""
    if cmd <= P.NBD_CMD_WRITE:
        return length
    if cmd == P.NBD_CMD_BLOCK_STATUS:
        return min((length >> 9) + 8, MAX_EXTENTS * 8)
    return 0


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
