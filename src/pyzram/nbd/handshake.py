"""The NBD handshake: fixed newstyle option haggling, TLS, export selection.

Protocol (NetworkBlockDevice ``doc/proto.md``): the greeting, the client's
flags, then options until ``NBD_OPT_EXPORT_NAME`` or a successful
``NBD_OPT_GO`` picks an export (or ``NBD_OPT_ABORT`` ends it).  Options
served: ``EXPORT_NAME``, ``GO`` / ``INFO`` (``NBD_INFO_EXPORT``, ``NAME``,
``DESCRIPTION``, ``BLOCK_SIZE``), ``LIST``, ``ABORT``, ``STRUCTURED_REPLY``,
``LIST_META_CONTEXT`` / ``SET_META_CONTEXT`` (the one context
``base:allocation``) and, when the server has TLS credentials, ``STARTTLS``;
every other option is ``NBD_REP_ERR_UNSUP``.

TLS as nbdkit and qemu-nbd do it: ``STARTTLS`` (no data) is acknowledged,
then the TLS handshake runs on the same connection and the haggling starts
over inside it (structured replies and metadata contexts chosen before are
forgotten, as the protocol requires).  With TLS required, every option but
``STARTTLS`` and ``ABORT`` is refused with ``NBD_REP_ERR_TLS_REQD`` before
it, and ``NBD_OPT_EXPORT_NAME`` (which has no error reply) is a hard
disconnect, so a client without the credentials learns no export name, size
or byte.  Bytes a client sends after ``STARTTLS`` before the TLS handshake
are a hard disconnect too (they would otherwise be taken as sent under TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyzram.nbd import protocol as P
from pyzram.nbd.channel import Channel
from pyzram.nbd.export import Export

if TYPE_CHECKING:
    from pyzram.nbd.server import NbdServer

__all__ = ["BASE_ALLOCATION_ID", "Disconnect", "Negotiated", "negotiate", "transmission_flags"]

#: NBD_INFO_BLOCK_SIZE minimum and preferred sizes: any byte range, 4 KiB preferred.
MIN_BLOCK_SIZE = 1
PREFERRED_BLOCK_SIZE = 4096
#: Option data the server reads; longer options are skipped and refused with
#: NBD_REP_ERR_TOO_BIG, and beyond MAX_OPTION_SKIP the client is disconnected.
MAX_OPTION_LENGTH = 64 << 10
MAX_OPTION_SKIP = 16 << 20
#: The metadata context id of ``base:allocation`` in NBD_OPT_SET_META_CONTEXT's
#: reply and in NBD_REPLY_TYPE_BLOCK_STATUS chunks (any value would do; nbdkit's).
BASE_ALLOCATION_ID = 1

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


class Disconnect(Exception):
    """The peer broke a MUST of the protocol: drop its connection."""


@dataclass
class Negotiated:
    """What the handshake settled: the export (held open) and the reply style."""

    export: Export
    bdev: Any
    structured: bool
    meta_allocation: bool


def transmission_flags(structured: bool) -> int:
    """The export's transmission flags (``SEND_DF`` only with structured replies)."""
    flags = _BASE_TRANSMISSION_FLAGS
    if structured:
        flags |= P.NBD_FLAG_SEND_DF
    return flags


async def negotiate(chan: Channel, server: NbdServer) -> Negotiated | None:
    """Run the handshake on ``chan``; what it settled, or None after NBD_OPT_ABORT."""
    return await _Haggle(chan, server).run()


class _Haggle:
    """The state of one handshake (reset by STARTTLS, as the protocol says)."""

    def __init__(self, chan: Channel, server: NbdServer) -> None:
        self.chan = chan
        self.server = server
        self.tls = server.tls
        self.structured = False
        self.no_zeroes = False
        #: ``base:allocation`` selected by the last NBD_OPT_SET_META_CONTEXT, and for
        #: which export name (a GO or EXPORT_NAME of another export drops it).
        self.meta_allocation = False
        self.meta_export: str | None = None
        self.bdev: Any = None

    def reply(self, option: int, reply: int, data: bytes = b"") -> None:
        self.chan.write(P.option_reply(option, reply, data))

    def error(self, option: int, reply: int, message: str) -> None:
        self.reply(option, reply, message.encode()[: P.NBD_MAX_STRING])

    async def run(self) -> Negotiated | None:
        chan = self.chan
        chan.write(
            P.GREETING.pack(
                P.NBDMAGIC, P.IHAVEOPT, P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES
            )
        )
        (cflags,) = P.CLIENT_FLAGS.unpack(await chan.readexactly(4))
        if cflags & ~(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES):
            raise Disconnect(f"unknown client flags {cflags:#x}")
        self.no_zeroes = bool(cflags & P.NBD_FLAG_C_NO_ZEROES)
        while True:
            magic, option, length = P.OPTION.unpack(await chan.readexactly(P.OPTION.size))
            if magic != P.IHAVEOPT:
                raise Disconnect(f"bad option magic {magic:#x}")
            if length > MAX_OPTION_LENGTH:
                if length > MAX_OPTION_SKIP:
                    raise Disconnect(f"option data of {length} bytes")
                await _skip(chan, length)
                self.error(option, P.NBD_REP_ERR_TOO_BIG, "option data too long")
                await chan.drain()
                continue
            data = await chan.readexactly(length) if length else b""
            done = await self.option(option, data)
            if done is not None:
                return done or None
            await chan.drain()

    async def option(self, option: int, data: bytes) -> Negotiated | bool | None:
        """Answer one option: a Negotiated to enter transmission, False after
        ABORT, None to go on haggling."""
        chan = self.chan
        tls_missing = self.tls is not None and self.tls.require and not chan.tls
        if self.server.stopping and option != P.NBD_OPT_ABORT:
            self.error(option, P.NBD_REP_ERR_SHUTDOWN, "server is shutting down")
        elif option == P.NBD_OPT_ABORT:
            self.reply(option, P.NBD_REP_ACK)
            with contextlib.suppress(ConnectionError):
                await chan.drain()
            return False
        elif option == P.NBD_OPT_STARTTLS:
            await self.starttls(data)
        elif tls_missing:
            if option == P.NBD_OPT_EXPORT_NAME:  # no error reply exists: hard disconnect
                raise Disconnect("NBD_OPT_EXPORT_NAME before the required STARTTLS")
            name = P.OPT_NAMES.get(option, f"option {option}")
            self.error(option, P.NBD_REP_ERR_TLS_REQD, f"{name}: TLS is required")
        elif option == P.NBD_OPT_EXPORT_NAME:
            export = self.lookup(data)
            if export is None:  # this option cannot fail politely: hard disconnect
                raise Disconnect(f"NBD_OPT_EXPORT_NAME of unknown export {data[:64]!r}")
            self.meta_for(export)
            try:
                self.bdev = export.attach()
            except OSError as e:
                raise Disconnect(f"export unavailable: {e}") from None
            reply = P.EXPORT_NAME_REPLY.pack(export.size, transmission_flags(self.structured))
            chan.write(reply if self.no_zeroes else reply + P.EXPORT_NAME_ZEROES)
            return self.settled(export)
        elif option in (P.NBD_OPT_GO, P.NBD_OPT_INFO):
            export = self.info(option, data)
            if export is not None and option == P.NBD_OPT_GO:
                return self.settled(export)
        elif option == P.NBD_OPT_LIST:
            if data:
                self.error(option, P.NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data")
            else:
                for e in self.server.exports:  # the name, then its description
                    name = e.name.encode()
                    desc = e.description.encode()[: P.NBD_MAX_STRING]
                    self.reply(option, P.NBD_REP_SERVER, P.U32.pack(len(name)) + name + desc)
                self.reply(option, P.NBD_REP_ACK)
        elif option == P.NBD_OPT_STRUCTURED_REPLY:
            if data:
                self.error(option, P.NBD_REP_ERR_INVALID, "option takes no data")
            else:
                self.structured = True
                self.reply(option, P.NBD_REP_ACK)
        elif option in (P.NBD_OPT_LIST_META_CONTEXT, P.NBD_OPT_SET_META_CONTEXT):
            self.meta_context(option, data)
        else:  # extended headers, and anything unknown
            name = P.OPT_NAMES.get(option, f"option {option}")
            self.error(option, P.NBD_REP_ERR_UNSUP, f"{name} is not supported")
        return None

    def settled(self, export: Export) -> Negotiated:
        return Negotiated(export, self.bdev, self.structured, self.meta_allocation)

    async def starttls(self, data: bytes) -> None:
        """NBD_OPT_STARTTLS: ACK, the TLS handshake, then haggling starts over."""
        option = P.NBD_OPT_STARTTLS
        chan = self.chan
        if self.tls is None:
            self.error(option, P.NBD_REP_ERR_UNSUP, "NBD_OPT_STARTTLS: this server has no TLS")
            return
        if chan.tls:
            self.error(option, P.NBD_REP_ERR_INVALID, "TLS is already on")
            return
        if data:
            self.error(option, P.NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data")
            return
        if chan.end > chan.start:  # plaintext that would be taken as sent under TLS
            raise Disconnect("data after NBD_OPT_STARTTLS before the TLS handshake")
        self.reply(option, P.NBD_REP_ACK)
        await chan.drain()
        try:
            await chan.start_tls(self.tls.context, self.tls.handshake_timeout)
        except (TimeoutError, ssl.SSLError, OSError) as e:
            raise Disconnect(f"TLS handshake failed: {e}") from None
        # The protocol: what was negotiated before STARTTLS does not carry over.
        self.structured = False
        self.meta_allocation = False
        self.meta_export = None

    def lookup(self, raw: bytes) -> Export | None:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return self.server.export_map.get(name)

    def meta_context(self, option: int, data: bytes) -> None:
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
            self.meta_export = None
        name = P.OPT_NAMES[option]
        if not self.structured:
            self.error(
                option, P.NBD_REP_ERR_INVALID, f"{name} needs NBD_OPT_STRUCTURED_REPLY first"
            )
            return
        parsed = parse_meta_request(data)
        if isinstance(parsed, str):
            self.error(option, P.NBD_REP_ERR_INVALID, f"{name}: {parsed}")
            return
        raw, queries = parsed
        export = self.lookup(raw)
        if export is None:
            shown = raw[:256].decode("utf-8", "replace")
            self.error(option, P.NBD_REP_ERR_UNKNOWN, f"no export named {shown!r}")
            return
        if is_set:
            found = P.BASE_ALLOCATION in queries
        else:
            found = not queries or any(q in (P.BASE_NAMESPACE, P.BASE_ALLOCATION) for q in queries)
        if found:
            ctx_id = BASE_ALLOCATION_ID if is_set else 0
            body = P.U32.pack(ctx_id) + P.BASE_ALLOCATION.encode()
            self.reply(option, P.NBD_REP_META_CONTEXT, body)
        if is_set:
            self.meta_allocation = found
            self.meta_export = export.name
        self.reply(option, P.NBD_REP_ACK)

    def meta_for(self, export: Export) -> None:
        """Entering transmission on ``export``: keep the contexts only if they were set for it.

        The protocol lets a client use ``NBD_CMD_BLOCK_STATUS`` only if its
        last NBD_OPT_SET_META_CONTEXT named the export it finally selects;
        a selection made for another export does not carry over (as nbdkit
        and qemu-nbd drop it).
        """
        if self.meta_export != export.name:
            self.meta_allocation = False

    def info(self, option: int, data: bytes) -> Export | None:
        """NBD_OPT_INFO / NBD_OPT_GO: replies, and the export if it may be used."""
        if len(data) < 6:
            self.error(option, P.NBD_REP_ERR_INVALID, "option data too short")
            return None
        (nlen,) = P.U32.unpack_from(data)
        if nlen > len(data) - 6:
            self.error(option, P.NBD_REP_ERR_INVALID, "name length runs past the data")
            return None
        (nreq,) = P.U16.unpack_from(data, 4 + nlen)
        if len(data) != 4 + nlen + 2 + 2 * nreq:
            self.error(option, P.NBD_REP_ERR_INVALID, "information request count mismatch")
            return None
        requests = {P.U16.unpack_from(data, 6 + nlen + 2 * i)[0] for i in range(nreq)}
        raw = data[4 : 4 + nlen]
        export = self.lookup(raw)
        if export is None:
            shown = raw[:256].decode("utf-8", "replace")
            self.error(option, P.NBD_REP_ERR_UNKNOWN, f"no export named {shown!r}")
            return None
        if option == P.NBD_OPT_GO:
            self.meta_for(export)
            try:
                self.bdev = export.attach()
            except OSError as e:  # the device is being reset
                self.error(option, P.NBD_REP_ERR_UNKNOWN, f"export unavailable: {e}")
                return None
        rep = P.NBD_REP_INFO
        flags = transmission_flags(self.structured)
        self.reply(option, rep, P.INFO_EXPORT.pack(P.NBD_INFO_EXPORT, export.size, flags))
        if P.NBD_INFO_NAME in requests:
            self.reply(option, rep, P.INFO_TYPE.pack(P.NBD_INFO_NAME) + export.name.encode())
        if P.NBD_INFO_DESCRIPTION in requests:
            desc = export.description or f"pyzram {export.dev.disk_name}"
            raw_desc = desc.encode()[: P.NBD_MAX_STRING]
            self.reply(option, rep, P.INFO_TYPE.pack(P.NBD_INFO_DESCRIPTION) + raw_desc)
        # Block sizes are sent whether asked for or not (the protocol allows it).
        sizes = (MIN_BLOCK_SIZE, PREFERRED_BLOCK_SIZE, self.server.limits.max_block_size)
        self.reply(option, rep, P.INFO_BLOCK_SIZE.pack(P.NBD_INFO_BLOCK_SIZE, *sizes))
        self.reply(option, P.NBD_REP_ACK)
        return export


def parse_meta_request(data: bytes) -> tuple[bytes, list[str]] | str:
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


async def _skip(chan: Channel, n: int) -> None:
    """Read and drop ``n`` bytes without holding them all."""
    while n:
        chunk = await chan.read(min(n, 1 << 16))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(chunk)
