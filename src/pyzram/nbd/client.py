"""A small blocking NBD client: fixed newstyle, simple or structured replies, block status.

Real tools (libnbd, qemu, fio) are the clients that matter; this one exists
so that Python code without libnbd (the venv cannot import Debian's
python3-libnbd) can drive an NBD server message by message: the tests use
it to send exactly the malformed, truncated or out-of-order messages a
library would refuse to produce.  Every method maps to one protocol step.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
from dataclasses import dataclass, field

from pyzram.nbd import protocol as P

__all__ = ["ExportInfo", "NbdClient", "NbdOptionError", "OptionReply", "Reply"]


class NbdOptionError(OSError):
    """An option answered with an ``NBD_REP_ERR_*`` reply (``reply`` holds which)."""

    def __init__(self, option: int, reply: int, message: str) -> None:
        super().__init__(errno.EPROTO, f"{P.OPT_NAMES.get(option, option)}: {reply:#x} {message}")
        self.option = option
        self.reply = reply
        self.message = message


@dataclass
class OptionReply:
    option: int
    reply: int
    data: bytes


@dataclass
class ExportInfo:
    """What NBD_OPT_INFO/GO (or EXPORT_NAME) said about an export."""

    size: int = 0
    flags: int = 0
    name: str | None = None
    description: str | None = None
    block_size: tuple[int, int, int] | None = None
    infos: list[int] = field(default_factory=list)


@dataclass
class Reply:
    """One reply: ``error`` is the NBD error (0 = success); ``data`` for reads."""

    cookie: int
    error: int
    data: bytes = b""
    message: str = ""
    structured: bool = False
    chunks: list[tuple[int, int]] = field(default_factory=list)  # (flags, type) per chunk
    #: NBD_REPLY_TYPE_BLOCK_STATUS: context id -> [(length, status flags), ...]
    extents: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


class NbdClient:
    """One connection.  ``NbdClient.open(path)`` greets and enters transmission."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = 10.0,
    ) -> None:
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(os.fspath(path))
            except OSError:
                self.sock.close()
                raise
        else:  # TCP, IPv4 or IPv6
            self.sock = socket.create_connection((host or "127.0.0.1", port), timeout=timeout)
        self.structured = False
        self.meta_contexts: dict[int, str] = {}
        self.export_info: ExportInfo | None = None
        self._cookies = itertools.count(1)
        self._requests: dict[int, tuple[int, int]] = {}  # cookie -> (cmd, length)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        name: str = "",
        structured: bool = True,
        meta: tuple[str, ...] = (),
    ) -> NbdClient:
        """Connect, negotiate (structured replies if asked, then the metadata
        contexts ``meta`` with NBD_OPT_SET_META_CONTEXT) and NBD_OPT_GO ``name``."""
        c = cls(path)
        try:
            c.greet()
            if structured:
                c.structured_reply()
            if meta:
                c.set_meta_context(name, meta)
            c.go(name)
        except BaseException:
            c.close()
            raise
        return c

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- bytes ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        """``n`` bytes, or ``ConnectionError`` if the server closes first."""
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, f"closed after {len(buf)} of {n}")
            buf += chunk
        return bytes(buf)

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Whether the server has closed the connection (EOF or reset within ``timeout``)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    # -- handshake --------------------------------------------------------------------

    def greet(self, cflags: int = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES) -> int:
        """Read the server's greeting, send client flags; the handshake flags."""
        magic, version, hflags = P.GREETING.unpack(self.recv_exact(P.GREETING.size))
        if magic != P.NBDMAGIC or version != P.IHAVEOPT:
            raise OSError(errno.EPROTO, f"not a newstyle NBD server ({magic:#x} {version:#x})")
        self.send(P.CLIENT_FLAGS.pack(cflags))
        self._no_zeroes = bool(cflags & P.NBD_FLAG_C_NO_ZEROES)
        return hflags

    def send_option(self, option: int, data: bytes = b"", length: int | None = None) -> None:
        n = len(data) if length is None else length
        self.send(P.OPTION.pack(P.IHAVEOPT, option, n) + data)

    def recv_option_reply(self) -> OptionReply:
        magic, option, reply, length = P.OPTION_REPLY.unpack(self.recv_exact(P.OPTION_REPLY.size))
        if magic != P.NBD_REP_MAGIC:
            raise OSError(errno.EPROTO, f"bad option reply magic {magic:#x}")
        return OptionReply(option, reply, self.recv_exact(length) if length else b"")

    def option(self, option: int, data: bytes = b"") -> list[OptionReply]:
        """Send an option; its replies up to the final ACK (``NbdOptionError`` on an error)."""
        self.send_option(option, data)
        replies = []
        while True:
            r = self.recv_option_reply()
            if r.option != option:
                raise OSError(errno.EPROTO, f"reply to option {r.option}, sent {option}")
            if r.reply & P.NBD_REP_FLAG_ERROR:
                raise NbdOptionError(option, r.reply, r.data.decode("utf-8", "replace"))
            replies.append(r)
            if r.reply == P.NBD_REP_ACK:
                return replies

    def structured_reply(self) -> None:
        self.option(P.NBD_OPT_STRUCTURED_REPLY)
        self.structured = True

    def list_exports(self) -> list[str]:
        out = []
        for r in self.option(P.NBD_OPT_LIST):
            if r.reply == P.NBD_REP_SERVER:
                (n,) = P.U32.unpack_from(r.data)
                out.append(r.data[4 : 4 + n].decode())
        return out

    def _meta(self, option: int, name: str, queries: tuple[str, ...]) -> list[tuple[int, str]]:
        out = []
        for r in self.option(option, P.meta_context_request(name, queries)):
            if r.reply == P.NBD_REP_META_CONTEXT:
                (ctx_id,) = P.U32.unpack_from(r.data)
                out.append((ctx_id, r.data[4:].decode()))
        return out

    def list_meta_context(
        self, name: str = "", queries: tuple[str, ...] = ()
    ) -> list[tuple[int, str]]:
        """NBD_OPT_LIST_META_CONTEXT: the (id, name) of each context the queries find."""
        return self._meta(P.NBD_OPT_LIST_META_CONTEXT, name, queries)

    def set_meta_context(
        self, name: str = "", queries: tuple[str, ...] = ()
    ) -> list[tuple[int, str]]:
        """NBD_OPT_SET_META_CONTEXT: the (id, name) of each context selected."""
        self.meta_contexts = dict(self._meta(P.NBD_OPT_SET_META_CONTEXT, name, queries))
        return list(self.meta_contexts.items())

    @staticmethod
    def info_request(name: str, requests: tuple[int, ...]) -> bytes:
        raw = name.encode()
        body = P.U32.pack(len(raw)) + raw + P.U16.pack(len(requests))
        return body + b"".join(P.U16.pack(r) for r in requests)

    def _info(self, option: int, name: str, requests: tuple[int, ...]) -> ExportInfo:
        info = ExportInfo()
        for r in self.option(option, self.info_request(name, requests)):
            if r.reply != P.NBD_REP_INFO:
                continue
            (kind,) = P.U16.unpack_from(r.data)
            info.infos.append(kind)
            if kind == P.NBD_INFO_EXPORT:
                _, info.size, info.flags = P.INFO_EXPORT.unpack(r.data)
            elif kind == P.NBD_INFO_NAME:
                info.name = r.data[2:].decode()
            elif kind == P.NBD_INFO_DESCRIPTION:
                info.description = r.data[2:].decode()
            elif kind == P.NBD_INFO_BLOCK_SIZE:
                _, lo, pref, hi = P.INFO_BLOCK_SIZE.unpack(r.data)
                info.block_size = (lo, pref, hi)
        return info

    def info(
        self, name: str = "", requests: tuple[int, ...] = (P.NBD_INFO_NAME, P.NBD_INFO_BLOCK_SIZE)
    ) -> ExportInfo:
        return self._info(P.NBD_OPT_INFO, name, requests)

    def go(
        self, name: str = "", requests: tuple[int, ...] = (P.NBD_INFO_NAME, P.NBD_INFO_BLOCK_SIZE)
    ) -> ExportInfo:
        self.export_info = self._info(P.NBD_OPT_GO, name, requests)
        return self.export_info

    def export_name(self, name: str = "") -> ExportInfo:
        """NBD_OPT_EXPORT_NAME (the old way into transmission: no error reply possible)."""
        self.send_option(P.NBD_OPT_EXPORT_NAME, name.encode())
        size, flags = P.EXPORT_NAME_REPLY.unpack(self.recv_exact(P.EXPORT_NAME_REPLY.size))
        if not self._no_zeroes:
            self.recv_exact(len(P.EXPORT_NAME_ZEROES))
        self.export_info = ExportInfo(size=size, flags=flags)
        return self.export_info

    def abort(self) -> OptionReply:
        self.send_option(P.NBD_OPT_ABORT)
        return self.recv_option_reply()

    # -- transmission -----------------------------------------------------------------

    def send_request(
        self,
        cmd: int,
        offset: int = 0,
        length: int = 0,
        flags: int = 0,
        data: bytes | None = None,
        cookie: int | None = None,
    ) -> int:
        """Send one request (with ``data`` for WRITE); its cookie."""
        if cookie is None:
            cookie = next(self._cookies)
        if data is not None and cmd == P.NBD_CMD_WRITE and length == 0:
            length = len(data)
        self._requests[cookie] = (cmd, length)
        hdr = P.REQUEST.pack(P.NBD_REQUEST_MAGIC, flags, cmd, cookie, offset, length)
        self.send(hdr + (data or b""))
        return cookie

    def recv_reply(self) -> Reply:
        """The next reply (all chunks of a structured one), whichever request it answers."""
        (magic,) = P.U32.unpack(self.recv_exact(4))
        if magic == P.NBD_SIMPLE_REPLY_MAGIC:
            error, cookie = P.SIMPLE_REPLY.unpack(P.U32.pack(magic) + self.recv_exact(12))[1:]
            cmd, length = self._requests.pop(cookie, (None, 0))
            data = self.recv_exact(length) if cmd == P.NBD_CMD_READ and not error else b""
            return Reply(cookie, error, data)
        if magic != P.NBD_STRUCTURED_REPLY_MAGIC:
            raise OSError(errno.EPROTO, f"bad reply magic {magic:#x}")
        reply: Reply | None = None
        buf = bytearray()
        base: int | None = None
        while True:
            if reply is not None:
                (magic,) = P.U32.unpack(self.recv_exact(4))
                if magic != P.NBD_STRUCTURED_REPLY_MAGIC:
                    raise OSError(errno.EPROTO, f"bad chunk magic {magic:#x}")
            flags, kind, cookie, length = P.STRUCTURED_REPLY.unpack(
                P.U32.pack(magic) + self.recv_exact(16)
            )[1:]
            payload = self.recv_exact(length) if length else b""
            if reply is None:
                reply = Reply(cookie, 0, structured=True)
            elif cookie != reply.cookie:
                raise OSError(errno.EPROTO, "chunks of two replies interleaved")
            reply.chunks.append((flags, kind))
            if kind == P.NBD_REPLY_TYPE_OFFSET_DATA:
                (off,) = P.U64.unpack_from(payload)
                base = off if base is None else base
                buf[off - base : off - base + len(payload) - 8] = payload[8:]
            elif kind == P.NBD_REPLY_TYPE_BLOCK_STATUS:
                (ctx_id,) = P.U32.unpack_from(payload)
                reply.extents[ctx_id] = [
                    P.BLOCK_DESCRIPTOR.unpack_from(payload, pos)
                    for pos in range(4, len(payload), P.BLOCK_DESCRIPTOR.size)
                ]
            elif kind in (P.NBD_REPLY_TYPE_ERROR, P.NBD_REPLY_TYPE_ERROR_OFFSET):
                err, mlen = P.REPLY_ERROR.unpack_from(payload)
                reply.error = err
                reply.message = payload[6 : 6 + mlen].decode("utf-8", "replace")
            if flags & P.NBD_REPLY_FLAG_DONE:
                self._requests.pop(reply.cookie, None)
                reply.data = bytes(buf)
                return reply

    def _call(self, cmd: int, offset: int, length: int, flags: int, data: bytes | None) -> Reply:
        cookie = self.send_request(cmd, offset, length, flags, data)
        reply = self.recv_reply()
        if reply.cookie != cookie:
            raise OSError(errno.EPROTO, f"reply for cookie {reply.cookie}, expected {cookie}")
        if reply.error:
            raise OSError(reply.error, reply.message or os.strerror(reply.error))
        return reply

    def pread(self, length: int, offset: int, flags: int = 0) -> bytes:
        return self._call(P.NBD_CMD_READ, offset, length, flags, None).data

    def pwrite(self, data: bytes, offset: int, flags: int = 0) -> None:
        self._call(P.NBD_CMD_WRITE, offset, len(data), flags, data)

    def trim(self, length: int, offset: int, flags: int = 0) -> None:
        self._call(P.NBD_CMD_TRIM, offset, length, flags, None)

    def zero(self, length: int, offset: int, flags: int = 0) -> None:
        self._call(P.NBD_CMD_WRITE_ZEROES, offset, length, flags, None)

    def flush(self) -> None:
        self._call(P.NBD_CMD_FLUSH, 0, 0, 0, None)

    def cache(self, length: int, offset: int) -> None:
        self._call(P.NBD_CMD_CACHE, offset, length, 0, None)

    def block_status(self, length: int, offset: int, flags: int = 0) -> list[tuple[int, int]]:
        """NBD_CMD_BLOCK_STATUS: the (length, status flags) descriptors of the one context."""
        reply = self._call(P.NBD_CMD_BLOCK_STATUS, offset, length, flags, None)
        (extents,) = reply.extents.values()
        return extents

    def disconnect(self) -> None:
        """NBD_CMD_DISC, then close."""
        self.send(P.REQUEST.pack(P.NBD_REQUEST_MAGIC, 0, P.NBD_CMD_DISC, 0, 0, 0))
        self.close()
