"""Request parsing: NBD transmission-phase requests, read where the socket put them.

:func:`parse` walks the complete requests in the channel's input buffer with
``struct.unpack_from`` and queues them on the transmission
(:class:`pyzram.nbd.dispatch.Transmission`) for dispatch.  It stops at the
connection's budget (``max_inflight`` requests, ``max_inflight_bytes`` of
data, replies backed up past the send buffer), so a client that sends more
than it reads is simply no longer read.

Payloads follow the protocol's length field, bounded by the advertised
maximum block size (:attr:`Limits.max_block_size`):

* up to 64 KiB: sliced out of the input buffer;
* up to :data:`~pyzram.nbd.limits.STREAM_BYTES`: received straight into a
  buffer of its own (no copy out of the input buffer), the request applied
  once it is whole;
* larger, up to the maximum: *streamed* (:class:`WriteStream`): received in
  pieces of :data:`~pyzram.nbd.limits.STREAM_CHUNK`, each stored to the
  device as it completes while the next is received (two at most), so a
  client that announces 32 MiB and sends one byte costs one piece, not
  32 MiB.  The reply follows
  the last piece (the first error of any piece, else success).  A client
  that vanishes mid-way leaves the pieces received stored, as a kernel bio
  split in several would, and was told nothing;
* over the maximum: read past and dropped, then ``NBD_EINVAL``; over twice
  the maximum a hard disconnect (nbdkit's answers).

Consecutive plain page-aligned READs under the offload size are gathered
into *runs* (see :func:`parse`).  Errors are the protocol's (and nbdkit's):
see :func:`validate`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from pyzram.nbd import protocol as P
from pyzram.nbd.channel import P_STREAM
from pyzram.nbd.limits import STREAM_BYTES, STREAM_CHUNK

if TYPE_CHECKING:
    from pyzram.nbd.dispatch import Transmission

__all__ = ["BATCH_PAGES", "OFFLOAD_BYTES", "READ_RUN", "WriteStream", "parse", "validate"]

log = logging.getLogger("pyzram.nbd")

#: READ/WRITE of this many bytes or more run on the thread pool instead of the shard.
OFFLOAD_BYTES = 256 << 10
#: Most pages of small aligned reads (or writes) that go to the device as one batch.
BATCH_PAGES = 64
#: A pending entry that is a run of small aligned reads.
READ_RUN = -1
#: A WRITE payload up to this size is received into the input buffer; a larger
#: one straight into a buffer of its own (no copy out of the input buffer).
INLINE_MAX = 64 << 10
#: Pieces of one streamed WRITE stored at once (one more cannot be received meanwhile).
MAX_STORING = 2
_REQUEST_SIZE = P.REQUEST.size
_REQUEST_UNPACK = P.REQUEST.unpack_from
_PAGE_MASK = 4095
_KNOWN_CMD_FLAGS = (
    P.NBD_CMD_FLAG_FUA
    | P.NBD_CMD_FLAG_NO_HOLE
    | P.NBD_CMD_FLAG_DF
    | P.NBD_CMD_FLAG_REQ_ONE
    | P.NBD_CMD_FLAG_FAST_ZERO
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


def validate(
    tx: Transmission, cmd: int, flags: int, offset: int, length: int
) -> tuple[int, str] | None:
    """The error (NBD value, message) for a request that must not run, else None.

    A zero length or a flag that does not apply (``NO_HOLE``/``FAST_ZERO``
    off ``WRITE_ZEROES``, ``DF`` off a structured ``READ``, ``REQ_ONE`` off
    ``BLOCK_STATUS``, unknown bits) is ``EINVAL``; a READ over the maximum
    block size ``EINVAL`` (``EOVERFLOW`` with ``DF``, as the protocol asks);
    past the end ``EINVAL``, or ``ENOSPC`` for WRITE and WRITE_ZEROES.
    """
    if cmd not in _IO_CMDS and cmd not in (P.NBD_CMD_FLUSH, P.NBD_CMD_DISC):
        return P.NBD_EINVAL, f"unknown command {cmd}"
    if cmd == P.NBD_CMD_BLOCK_STATUS and not tx.meta_allocation:
        return P.NBD_EINVAL, "NBD_CMD_BLOCK_STATUS without a metadata context"
    name = P.CMD_NAMES[cmd]
    if flags & ~_KNOWN_CMD_FLAGS:
        return P.NBD_EINVAL, f"{name}: unknown flags {flags:#x}"
    if flags & (P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_FAST_ZERO) and (
        cmd != P.NBD_CMD_WRITE_ZEROES
    ):
        return P.NBD_EINVAL, f"{name}: NO_HOLE/FAST_ZERO apply to NBD_CMD_WRITE_ZEROES only"
    if flags & P.NBD_CMD_FLAG_DF and (cmd != P.NBD_CMD_READ or not tx.structured):
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
    if cmd == P.NBD_CMD_READ and length > tx.max_block:
        err = P.NBD_EOVERFLOW if flags & P.NBD_CMD_FLAG_DF else P.NBD_EINVAL
        return err, f"{name}: {length} bytes is over the maximum block size {tx.max_block}"
    if offset + length > tx.size:
        err = P.NBD_ENOSPC if cmd in (P.NBD_CMD_WRITE, P.NBD_CMD_WRITE_ZEROES) else P.NBD_EINVAL
        return err, f"{name}: {offset}+{length} is beyond the export's {tx.size} bytes"
    return None


def parse(tx: Transmission) -> bool:
    """Queue the complete requests in the input; True if it stopped at the budget.

    Consecutive plain page-aligned READs (each under :data:`OFFLOAD_BYTES`,
    together up to :data:`BATCH_PAGES` pages) are queued as one *run*:
    their cookies, offsets and lengths in three lists, which the
    dispatcher reads as one device batch and answers in one buffer.
    Anything else ends the run, so requests keep their order.
    """
    chan = tx.chan
    if tx.wstream is not None and not tx.wstream.feed():
        return False  # a streamed WRITE is waiting for its payload or its store
    buf = chan.buf
    view = chan.view
    pos = chan.start
    end = chan.end
    size = tx.size
    max_block = tx.max_block
    fast_max = tx.fast_max
    max_inflight = tx.max_inflight
    max_bytes = tx.max_inflight_bytes
    pending = tx.pending
    unpack = _REQUEST_UNPACK
    stopped = False
    run: tuple[list[int], list[int], list[int]] = ([], [], [])
    run_pages = BATCH_PAGES + 1  # no run open
    while end - pos >= _REQUEST_SIZE:
        if tx.inflight >= max_inflight or tx.inflight_bytes >= max_bytes or chan.write_paused:
            stopped = True
            break
        magic, flags, cmd, cookie, offset, length = unpack(buf, pos)
        if magic != P.NBD_REQUEST_MAGIC:
            tx.end_transmission(f"bad request magic {magic:#x}")
            pos = end
            break
        if cmd == P.NBD_CMD_WRITE:
            body = pos + _REQUEST_SIZE
            have = end - body
            if length > max_block:
                if length > 2 * max_block:
                    tx.end_transmission(f"NBD_CMD_WRITE of {length} bytes")
                    pos = end
                    break
                msg = f"NBD_CMD_WRITE of {length} bytes is over the maximum block size {max_block}"
                if have >= length:
                    pos = body + length
                    tx.send_error(cookie, P.NBD_EINVAL, msg)
                    continue
                # Read the payload past and drop it, then refuse the request.
                chan.start = chan.end = 0
                chan.skip(length - have, _Refusal(tx, cookie, msg))
                return False
            if length > STREAM_BYTES:
                bad = validate(tx, cmd, flags, offset, length)
                if bad is not None:  # read the payload past, then refuse it
                    if have >= length:
                        pos = body + length
                        tx.send_error(cookie, *bad)
                        continue
                    chan.start = chan.end = 0
                    chan.skip(length - have, _Refusal(tx, cookie, bad[1], bad[0]))
                    return False
                chan.start = body
                tx.inflight += 1
                tx.inflight_bytes += STREAM_CHUNK
                tx.wstream = WriteStream(tx, cookie, offset, length)
                if not tx.wstream.feed():
                    return False
                pos = chan.start
                end = chan.end
                continue
            if have >= length:
                data: Any = view[body : body + length].tobytes()
                pos = body + length
            elif length <= INLINE_MAX:
                break  # the rest comes into this buffer
            else:  # the rest is received straight into a buffer of its own
                payload = bytearray(length)
                payload[:have] = view[body:end]
                chan.start = chan.end = 0
                chan.receive_into(
                    memoryview(payload)[have:], _Arrived(tx, flags, cookie, offset, payload)
                )
                return False
        else:
            data = None
            pos += _REQUEST_SIZE
            # A plain page-aligned READ under OFFLOAD_BYTES joins the run of reads.
            if (
                cmd == P.NBD_CMD_READ
                and not flags
                and 0 < length < OFFLOAD_BYTES
                and length <= fast_max
                and not (offset | length) & _PAGE_MASK
                and offset + length <= size
            ):
                count = length >> 12
                if run_pages + count > BATCH_PAGES:
                    run = ([], [], [])
                    pending.append((READ_RUN, 0, 0, 0, 0, run))
                    run_pages = 0
                run[0].append(cookie)
                run[1].append(offset)
                run[2].append(length)
                run_pages += count
                tx.inflight += 1
                tx.inflight_bytes += length
                continue
        run_pages = BATCH_PAGES + 1  # anything else ends the run
        # The common case (a plain READ or WRITE inside the export) skips validate.
        if cmd <= P.NBD_CMD_WRITE and not flags and 0 < length <= fast_max:
            if offset + length <= size:
                tx.inflight += 1
                tx.inflight_bytes += length
                pending.append((cmd, flags, cookie, offset, length, data))
                continue
        tx.request(cmd, flags, cookie, offset, length, data)
        if not tx.transmitting:
            pos = end
            break
    if pos >= end:
        chan.start = chan.end = 0
    else:
        chan.start = pos
    return stopped


class _Refusal:
    """A refused WRITE's payload has been read past: send its error (EINVAL by default)."""

    __slots__ = ("tx", "cookie", "msg", "err")

    def __init__(self, tx: Transmission, cookie: int, msg: str, err: int = P.NBD_EINVAL) -> None:
        self.tx, self.cookie, self.msg, self.err = tx, cookie, msg, err

    def __call__(self) -> None:
        self.tx.send_error(self.cookie, self.err, self.msg)
        self.tx.process()


class _Arrived:
    """A WRITE payload received into its own buffer is whole: queue the request."""

    __slots__ = ("tx", "flags", "cookie", "offset", "payload")

    def __init__(
        self, tx: Transmission, flags: int, cookie: int, offset: int, payload: Any
    ) -> None:
        self.tx, self.flags, self.cookie = tx, flags, cookie
        self.offset, self.payload = offset, payload

    def __call__(self) -> None:
        tx = self.tx
        p = self.payload
        tx.request(P.NBD_CMD_WRITE, self.flags, self.cookie, self.offset, len(p), p)
        tx.process()


class WriteStream:
    """A WRITE over :data:`STREAM_BYTES`: its payload received and stored piece by piece.

    Pieces end on :data:`STREAM_CHUNK` boundaries of the device (the first
    may be shorter), so all but the edges are whole pages.  Each whole piece
    is stored on the pool while the next one is received; while
    :data:`MAX_STORING` pieces are being stored, reading the connection
    waits (``P_STREAM``).  So the connection holds at most two pieces, and
    receiving overlaps compression as a pipelined write would.
    """

    def __init__(self, tx: Transmission, cookie: int, offset: int, length: int) -> None:
        self.tx = tx
        self.cookie = cookie
        self.offset = offset
        self.length = length
        self.pos = offset  # where the next piece goes
        self.left = length  # payload bytes not yet taken
        self.storing = 0  # pieces on the pool
        self.receiving = False
        #: This stream holds the channel's P_STREAM pause (a later stream may take
        #: the bit once this one let it go; only the holder lets it go again).
        self.pausing = False
        self.error: BaseException | None = None

    def _piece(self) -> int:
        return min(self.left, STREAM_CHUNK - self.pos % STREAM_CHUNK)

    def feed(self) -> bool:
        """Take what the input holds; True once the whole payload is taken."""
        chan = self.tx.chan
        while self.left:
            if self.receiving or self.storing >= MAX_STORING:
                return False
            n = self._piece()
            have = chan.end - chan.start
            if have >= n:
                data = chan.view[chan.start : chan.start + n].tobytes()
                chan.start += n
                if chan.start == chan.end:
                    chan.start = chan.end = 0
                self._store(data)
                continue
            piece = bytearray(n)
            piece[:have] = chan.view[chan.start : chan.end]
            chan.start = chan.end = 0
            self.receiving = True
            chan.receive_into(memoryview(piece)[have:], functools.partial(self._received, piece))
            return False
        if self.tx.wstream is self:
            self.tx.wstream = None
        return True

    def _received(self, piece: bytearray) -> None:
        self.receiving = False
        self._store(piece)
        self.tx.process()

    def _store(self, data: bytes | bytearray) -> None:
        tx = self.tx
        pos = self.pos
        self.pos += len(data)
        self.left -= len(data)
        self.storing += 1
        if self.storing >= MAX_STORING and not self.pausing:
            self.pausing = True
            tx.chan.pause(P_STREAM)
        fut = tx.pool.submit(tx.export.write, pos, data)
        loop = tx.chan.loop

        def back(f: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the shard's loop is gone
                loop.call_soon_threadsafe(self._stored, f.exception())

        fut.add_done_callback(back)

    def _stored(self, error: BaseException | None) -> None:
        tx = self.tx
        self.storing -= 1
        if error is not None and self.error is None:
            self.error = error
        if self.pausing:  # below MAX_STORING now
            self.pausing = False
            tx.chan.unpause(P_STREAM)
        if self.storing:
            if self.left and tx.transmitting and not tx.chan.lost:
                tx.process()  # the next piece may be taken right here
            return  # the other piece's _stored decides
        if not self.left:  # every piece taken and stored: the reply
            tx.complete(self.cookie, P.NBD_CMD_WRITE, self.offset, STREAM_CHUNK, None, self.error)
        elif tx.chan.lost or not tx.transmitting:
            self.abandon()
        else:
            tx.process()

    def abandon(self) -> None:
        """The rest of the payload will never come (the client is gone or half-closed).

        The pieces stored stay stored; the request gets no reply (none can
        arrive, or the client broke the protocol by ending mid-payload).
        """
        tx = self.tx
        if tx.wstream is self:
            tx.wstream = None
        if self.storing:
            return  # the last _stored calls again
        log.debug(
            "streamed write abandoned after %d of %d bytes", self.length - self.left, self.length
        )
        self.left = 0
        tx.inflight -= 1
        tx.inflight_bytes -= STREAM_CHUNK
        tx.settle()
