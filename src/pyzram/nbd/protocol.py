"""Constants and wire structures of the NBD protocol (NetworkBlockDevice ``doc/proto.md``).

Names are the protocol document's (and ``nbd.h`` / nbdkit's ``protocol.h``),
so that a reader can grep either side.  Every field is big-endian on the
wire.  Only what a fixed-newstyle server without TLS or extended headers
needs is here; options and commands it does not implement are still named
so that the server can answer them with the protocol's error replies.
The one metadata context is the protocol's own ``base:allocation``
(:data:`BASE_ALLOCATION`, statuses :data:`NBD_STATE_HOLE` and
:data:`NBD_STATE_ZERO`), reported by ``NBD_CMD_BLOCK_STATUS`` in one
``NBD_REPLY_TYPE_BLOCK_STATUS`` chunk (:func:`block_status_chunk`).
"""

from __future__ import annotations

import errno
import struct

# -- handshake ---------------------------------------------------------------------

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT" (also the newstyle "version")
NBD_REP_MAGIC = 0x0003E889045565A9

#: Handshake flags (server, 16 bits).
NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_NO_ZEROES = 1 << 1
#: Client flags (32 bits); any other bit makes the server drop the connection.
NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_C_NO_ZEROES = 1 << 1

#: Option types.
NBD_OPT_EXPORT_NAME = 1
NBD_OPT_ABORT = 2
NBD_OPT_LIST = 3
NBD_OPT_PEEK_EXPORT = 4
NBD_OPT_STARTTLS = 5
NBD_OPT_INFO = 6
NBD_OPT_GO = 7
NBD_OPT_STRUCTURED_REPLY = 8
NBD_OPT_LIST_META_CONTEXT = 9
NBD_OPT_SET_META_CONTEXT = 10
NBD_OPT_EXTENDED_HEADERS = 11

OPT_NAMES = {
    NBD_OPT_EXPORT_NAME: "NBD_OPT_EXPORT_NAME",
    NBD_OPT_ABORT: "NBD_OPT_ABORT",
    NBD_OPT_LIST: "NBD_OPT_LIST",
    NBD_OPT_PEEK_EXPORT: "NBD_OPT_PEEK_EXPORT",
    NBD_OPT_STARTTLS: "NBD_OPT_STARTTLS",
    NBD_OPT_INFO: "NBD_OPT_INFO",
    NBD_OPT_GO: "NBD_OPT_GO",
    NBD_OPT_STRUCTURED_REPLY: "NBD_OPT_STRUCTURED_REPLY",
    NBD_OPT_LIST_META_CONTEXT: "NBD_OPT_LIST_META_CONTEXT",
    NBD_OPT_SET_META_CONTEXT: "NBD_OPT_SET_META_CONTEXT",
    NBD_OPT_EXTENDED_HEADERS: "NBD_OPT_EXTENDED_HEADERS",
}

#: Option reply types; errors have bit 31 set.
NBD_REP_ACK = 1
NBD_REP_SERVER = 2
NBD_REP_INFO = 3
NBD_REP_META_CONTEXT = 4
NBD_REP_FLAG_ERROR = 1 << 31
NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR | 1
NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR | 2
NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR | 3
NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR | 4
NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR | 5
NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR | 6
NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR | 7
NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR | 8
NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR | 9
NBD_REP_ERR_EXT_HEADER_REQD = NBD_REP_FLAG_ERROR | 10

#: NBD_REP_INFO types.
NBD_INFO_EXPORT = 0
NBD_INFO_NAME = 1
NBD_INFO_DESCRIPTION = 2
NBD_INFO_BLOCK_SIZE = 3

#: Transmission flags (16 bits, per export).
NBD_FLAG_HAS_FLAGS = 1 << 0
NBD_FLAG_READ_ONLY = 1 << 1
NBD_FLAG_SEND_FLUSH = 1 << 2
NBD_FLAG_SEND_FUA = 1 << 3
NBD_FLAG_ROTATIONAL = 1 << 4
NBD_FLAG_SEND_TRIM = 1 << 5
NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
NBD_FLAG_SEND_DF = 1 << 7
NBD_FLAG_CAN_MULTI_CONN = 1 << 8
NBD_FLAG_SEND_RESIZE = 1 << 9
NBD_FLAG_SEND_CACHE = 1 << 10
NBD_FLAG_SEND_FAST_ZERO = 1 << 11
NBD_FLAG_BLOCK_STAT_PAYLOAD = 1 << 12

# -- transmission ------------------------------------------------------------------

NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_STRUCTURED_REPLY_MAGIC = 0x668E33EF

#: Command types.
NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
NBD_CMD_FLUSH = 3
NBD_CMD_TRIM = 4
NBD_CMD_CACHE = 5
NBD_CMD_WRITE_ZEROES = 6
NBD_CMD_BLOCK_STATUS = 7
NBD_CMD_RESIZE = 8

CMD_NAMES = {
    NBD_CMD_READ: "NBD_CMD_READ",
    NBD_CMD_WRITE: "NBD_CMD_WRITE",
    NBD_CMD_DISC: "NBD_CMD_DISC",
    NBD_CMD_FLUSH: "NBD_CMD_FLUSH",
    NBD_CMD_TRIM: "NBD_CMD_TRIM",
    NBD_CMD_CACHE: "NBD_CMD_CACHE",
    NBD_CMD_WRITE_ZEROES: "NBD_CMD_WRITE_ZEROES",
    NBD_CMD_BLOCK_STATUS: "NBD_CMD_BLOCK_STATUS",
    NBD_CMD_RESIZE: "NBD_CMD_RESIZE",
}

#: Command flags.
NBD_CMD_FLAG_FUA = 1 << 0
NBD_CMD_FLAG_NO_HOLE = 1 << 1
NBD_CMD_FLAG_DF = 1 << 2
NBD_CMD_FLAG_REQ_ONE = 1 << 3
NBD_CMD_FLAG_FAST_ZERO = 1 << 4
NBD_CMD_FLAG_PAYLOAD_LEN = 1 << 5

#: Structured reply flags and types.
NBD_REPLY_FLAG_DONE = 1 << 0
NBD_REPLY_TYPE_NONE = 0
NBD_REPLY_TYPE_OFFSET_DATA = 1
NBD_REPLY_TYPE_OFFSET_HOLE = 2
NBD_REPLY_TYPE_BLOCK_STATUS = 5
NBD_REPLY_TYPE_BLOCK_STATUS_EXT = 6
NBD_REPLY_TYPE_ERROR = (1 << 15) | 1
NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

#: The ``base:allocation`` metadata context and its status flags.
BASE_NAMESPACE = "base:"
BASE_ALLOCATION = "base:allocation"
#: Not allocated in the backend: a write there may need new storage (and may fail for want of it).
NBD_STATE_HOLE = 1 << 0
#: Reads as zeros.
NBD_STATE_ZERO = 1 << 1

#: Error values of the protocol (a restricted set of errno numbers).
NBD_SUCCESS = 0
NBD_EPERM = 1
NBD_EIO = 5
NBD_ENOMEM = 12
NBD_EINVAL = 22
NBD_ENOSPC = 28
NBD_EOVERFLOW = 75
NBD_ENOTSUP = 95
NBD_ESHUTDOWN = 108

#: Longest string (export name, description, error message) the protocol allows.
NBD_MAX_STRING = 4096

# -- structures --------------------------------------------------------------------

#: Server greeting: NBDMAGIC, IHAVEOPT, handshake flags.
GREETING = struct.Struct(">QQH")
CLIENT_FLAGS = struct.Struct(">I")
#: Option request header: IHAVEOPT, option, length (data follows).
OPTION = struct.Struct(">QII")
#: Option reply header: NBD_REP_MAGIC, option, reply type, length (data follows).
OPTION_REPLY = struct.Struct(">QIII")
#: Reply to NBD_OPT_EXPORT_NAME: size, transmission flags (then 124 zeros unless NO_ZEROES).
EXPORT_NAME_REPLY = struct.Struct(">QH")
EXPORT_NAME_ZEROES = bytes(124)
#: NBD_REP_INFO payloads.
INFO_EXPORT = struct.Struct(">HQH")
INFO_BLOCK_SIZE = struct.Struct(">HIII")
INFO_TYPE = struct.Struct(">H")
#: Request: magic, command flags, type, cookie, offset, length (28 bytes).
REQUEST = struct.Struct(">IHHQQI")
#: Simple reply: magic, error, cookie (16 bytes; read data follows on success).
SIMPLE_REPLY = struct.Struct(">IIQ")
#: Structured reply chunk header: magic, flags, type, cookie, payload length (20 bytes).
STRUCTURED_REPLY = struct.Struct(">IHHQI")
#: NBD_REPLY_TYPE_OFFSET_DATA header with its offset field (28 bytes, data follows).
OFFSET_DATA_REPLY = struct.Struct(">IHHQIQ")
#: NBD_REPLY_TYPE_BLOCK_STATUS header with its metadata context id (24 bytes; the
#: descriptors follow: 32-bit length, 32-bit status flags each).
BLOCK_STATUS_REPLY = struct.Struct(">IHHQII")
BLOCK_DESCRIPTOR = struct.Struct(">II")
#: NBD_REPLY_TYPE_ERROR payload head: error, message length (message follows).
REPLY_ERROR = struct.Struct(">IH")

U64 = struct.Struct(">Q")
U32 = struct.Struct(">I")
U16 = struct.Struct(">H")

#: errno -> NBD error, as nbdkit maps them (the protocol's list is short).
_NBD_ERRNO = {
    errno.EPERM: NBD_EPERM,
    errno.EROFS: NBD_EPERM,
    errno.EACCES: NBD_EPERM,
    errno.EIO: NBD_EIO,
    errno.ENOMEM: NBD_ENOMEM,
    errno.ENOSPC: NBD_ENOSPC,
    errno.EFBIG: NBD_ENOSPC,
    errno.EDQUOT: NBD_ENOSPC,
    errno.EINVAL: NBD_EINVAL,
    errno.EOVERFLOW: NBD_EOVERFLOW,
    errno.ENOTSUP: NBD_ENOTSUP,
    errno.ESHUTDOWN: NBD_ESHUTDOWN,
}


def nbd_errno(err: int | None) -> int:
    """The NBD error value for a system errno (unknown ones become ``NBD_EINVAL``).

    The protocol allows only a handful of values; like nbdkit, anything it
    has no word for is reported as ``EINVAL`` rather than leaked as a
    host-specific number.
    """
    if not err:
        return NBD_EIO
    return _NBD_ERRNO.get(err, NBD_EINVAL)


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    """One fixed-newstyle option reply message."""
    return OPTION_REPLY.pack(NBD_REP_MAGIC, option, reply, len(data)) + data


def simple_reply(cookie: int, error: int = 0) -> bytes:
    """A simple reply header (read data, if any, follows it)."""
    return SIMPLE_REPLY.pack(NBD_SIMPLE_REPLY_MAGIC, error, cookie)


def structured_error(cookie: int, error: int, message: str = "") -> bytes:
    """A final ``NBD_REPLY_TYPE_ERROR`` chunk carrying a human-readable message."""
    msg = message.encode("utf-8", "replace")[:NBD_MAX_STRING]
    payload = REPLY_ERROR.pack(error, len(msg)) + msg
    return (
        STRUCTURED_REPLY.pack(
            NBD_STRUCTURED_REPLY_MAGIC,
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_ERROR,
            cookie,
            len(payload),
        )
        + payload
    )


def structured_done(cookie: int) -> bytes:
    """A final ``NBD_REPLY_TYPE_NONE`` chunk (success without payload)."""
    return STRUCTURED_REPLY.pack(
        NBD_STRUCTURED_REPLY_MAGIC, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0
    )


def offset_data_header(cookie: int, offset: int, length: int) -> bytes:
    """The header of a final ``NBD_REPLY_TYPE_OFFSET_DATA`` chunk of ``length`` data bytes."""
    return OFFSET_DATA_REPLY.pack(
        NBD_STRUCTURED_REPLY_MAGIC,
        NBD_REPLY_FLAG_DONE,
        NBD_REPLY_TYPE_OFFSET_DATA,
        cookie,
        length + 8,
        offset,
    )


def block_status_chunk(cookie: int, context_id: int, descriptors: bytes | memoryview) -> bytes:
    """A final ``NBD_REPLY_TYPE_BLOCK_STATUS`` chunk for one metadata context.

    ``descriptors`` are already packed (big-endian 32-bit length, then
    32-bit status flags, each); they follow the 24-byte header.
    """
    return (
        BLOCK_STATUS_REPLY.pack(
            NBD_STRUCTURED_REPLY_MAGIC,
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_BLOCK_STATUS,
            cookie,
            4 + len(descriptors),
            context_id,
        )
        + descriptors
    )


def meta_context_request(name: str, queries: list[str] | tuple[str, ...]) -> bytes:
    """The data of NBD_OPT_LIST/SET_META_CONTEXT: the export name, then the queries."""
    raw = name.encode()
    out = [U32.pack(len(raw)), raw, U32.pack(len(queries))]
    for q in queries:
        b = q.encode()
        out += [U32.pack(len(b)), b]
    return b"".join(out)
