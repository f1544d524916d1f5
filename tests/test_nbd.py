"""``pyzram serve``: the NBD protocol, zram semantics behind it, concurrency, control, bad input.

The server runs in this process (its own threads), so each test can look at
the device it serves; the client is :class:`pyzram.nbd.client.NbdClient`,
which sends exactly the bytes a test wants, malformed ones included.  The
real tools (nbdinfo, nbdcopy, qemu, fio, libnbd) are in test_nbd_tools.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import corrupt
from pyzram.nbd import export as export_mod
from pyzram.nbd import protocol as P
from pyzram.nbd.client import NbdClient, NbdOptionError
from pyzram.nbd.control import ControlClient, control_path
from pyzram.nbd.export import Export, ExportSpec, parse_export_spec
from pyzram.nbd.server import (
    BATCH_PAGES,
    DEFAULT_LOOP,
    LOOPS,
    MAX_INFLIGHT,
    MAX_PAYLOAD,
    NbdServer,
    ServerThread,
    build_exports,
    loop_factory,
)
from pyzram.tools.cli import main
from pyzram.zram import table as T
from pyzram.zram.stat import parse_io_stat, parse_mm_stat

PAGE = 4096
MiB = 1 << 20


class Served(ServerThread):
    """The server on a Unix socket (and its control socket) in a short temporary directory."""

    def __init__(
        self,
        specs: list[ExportSpec],
        threads: int = 2,
        port: int | None = None,
        loop: str = DEFAULT_LOOP,
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyzram-nbd-")  # short: sun_path is 108 bytes
        self.sock = os.path.join(self.dir, "nbd.sock")
        try:
            super().__init__(
                build_exports(specs),
                socket_path=self.sock,
                ctl_path=control_path(self.sock),
                threads=threads,
                port=port,
                loop=loop,
            )
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def dev(self):
        return self.exports[0].dev

    def client(self, name: str = "", structured: bool = True) -> NbdClient:
        return NbdClient.open(self.sock, name, structured)

    def raw(self) -> NbdClient:
        return NbdClient(self.sock)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def spec(name: str = "", size: str = "16M", **attrs: str) -> ExportSpec:
    return ExportSpec(name, {"disksize": size, **attrs})


@pytest.fixture(params=LOOPS)
def served(request):
    """One 16 MiB device, served on each event loop (uvloop, asyncio)."""
    s = Served([spec()], loop=request.param)
    yield s
    s.stop()


def mm(dev):
    return parse_mm_stat(dev.sysfs["mm_stat"])


def text_page(seed: int) -> bytes:
    """A compressible, not same-filled page."""
    return (f"page {seed:05d} " * 400).encode()[:PAGE]  # 11-byte period: never same-filled


# -- handshake ----------------------------------------------------------------------------


def test_greeting_and_go_report_size_flags_and_block_sizes(served):
    c = served.raw()
    assert c.greet() == P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES
    info = c.go(
        "",
        (P.NBD_INFO_NAME, P.NBD_INFO_DESCRIPTION, P.NBD_INFO_BLOCK_SIZE),
    )
    assert info.size == 16 * MiB
    want = (
        P.NBD_FLAG_HAS_FLAGS
        | P.NBD_FLAG_SEND_FLUSH
        | P.NBD_FLAG_SEND_FUA
        | P.NBD_FLAG_SEND_TRIM
        | P.NBD_FLAG_SEND_WRITE_ZEROES
        | P.NBD_FLAG_CAN_MULTI_CONN
        | P.NBD_FLAG_SEND_CACHE
        | P.NBD_FLAG_SEND_FAST_ZERO
    )
    assert info.flags == want  # no DF without structured replies, never READ_ONLY
    assert info.name == ""
    assert info.description == "pyzram zram0"
    assert info.block_size == (1, 4096, MAX_PAYLOAD)
    c.close()
    d = served.client()  # structured replies: DF too
    assert d.export_info.flags == want | P.NBD_FLAG_SEND_DF
    d.close()


def test_list_info_and_named_exports():
    s = Served(
        [
            spec("fast", "8M", comp_algorithm="lz4"),
            ExportSpec("big", {"disksize": "32M", "comp_algorithm": "zstd"}, "bulk data"),
        ]
    )
    try:
        c = s.raw()
        c.greet()
        assert c.list_exports() == ["fast", "big"]
        assert c.info("big", (P.NBD_INFO_DESCRIPTION,)).description == "bulk data"
        assert c.info("fast").size == 8 * MiB
        with pytest.raises(NbdOptionError) as e:
            c.info("")  # no default export here
        assert e.value.reply == P.NBD_REP_ERR_UNKNOWN
        info = c.go("big")
        assert info.size == 32 * MiB and info.name == "big"
        c.pwrite(b"x" * PAGE, 0)
        assert s.exports[1].dev.sysfs["comp_algorithm"].count("[zstd]") == 1
        assert mm(s.exports[1].dev).orig_data_size == PAGE
        assert mm(s.exports[0].dev).orig_data_size == 0
        c.close()
    finally:
        s.stop()


def test_unknown_and_unsupported_options_get_err_unsup(served):
    c = served.raw()
    c.greet()
    for opt in (P.NBD_OPT_STARTTLS, P.NBD_OPT_EXTENDED_HEADERS, 99):
        with pytest.raises(NbdOptionError) as e:
            c.option(opt, b"\0" * 8)
        assert e.value.reply == P.NBD_REP_ERR_UNSUP
    with pytest.raises(NbdOptionError) as e:
        c.option(P.NBD_OPT_LIST, b"junk")
    assert e.value.reply == P.NBD_REP_ERR_INVALID
    with pytest.raises(NbdOptionError) as e:
        c.option(P.NBD_OPT_STRUCTURED_REPLY, b"x")
    assert e.value.reply == P.NBD_REP_ERR_INVALID
    # Malformed INFO/GO data: too short, name past the end, count mismatch.
    for data in (
        b"\0\0",
        struct.pack(">I", 50) + b"ab\0\0",
        NbdClient.info_request("", (1,)) + b"x",
    ):
        with pytest.raises(NbdOptionError) as e:
            c.option(P.NBD_OPT_GO, data)
        assert e.value.reply == P.NBD_REP_ERR_INVALID
    # Option data over 64 KiB is skipped and refused; the session goes on.
    c.send_option(P.NBD_OPT_INFO, b"\0" * (70 << 10))
    r = c.recv_option_reply()
    assert r.reply == P.NBD_REP_ERR_TOO_BIG
    assert c.go("").size == 16 * MiB
    c.pwrite(b"still fine".ljust(PAGE, b"\0"), 0)
    c.close()


def test_abort_acks_then_closes(served):
    c = served.raw()
    c.greet()
    r = c.abort()
    assert (r.option, r.reply) == (P.NBD_OPT_ABORT, P.NBD_REP_ACK)
    assert c.closed_by_server()


def test_export_name_enters_transmission_with_or_without_zeroes(served):
    for cflags, tail in ((P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES, 0), (1, 124)):
        c = served.raw()
        c.greet(cflags)
        c.send_option(P.NBD_OPT_EXPORT_NAME, b"")
        raw = c.recv_exact(10 + tail)
        size, flags = P.EXPORT_NAME_REPLY.unpack(raw[:10])
        assert size == 16 * MiB and flags & P.NBD_FLAG_SEND_TRIM
        assert raw[10:] == bytes(tail)
        c.pwrite(text_page(1), PAGE)
        assert c.pread(PAGE, PAGE) == text_page(1)
        c.disconnect()


@pytest.mark.parametrize(
    "what",
    ["client flags", "option magic", "export name", "export name utf8", "request magic"],
)
def test_protocol_violations_are_hard_disconnects(served, what):
    c = served.raw()
    if what == "client flags":
        c.recv_exact(P.GREETING.size)
        c.send(P.CLIENT_FLAGS.pack(1 | 4))
    elif what == "option magic":
        c.greet()
        c.send(struct.pack(">QII", 0x1234, P.NBD_OPT_LIST, 0))
    elif what == "export name":
        c.greet()
        c.send_option(P.NBD_OPT_EXPORT_NAME, b"nope")  # cannot be refused politely
    elif what == "export name utf8":
        c.greet()
        c.send_option(P.NBD_OPT_EXPORT_NAME, b"\xff\xfe")
    else:
        c.greet()
        c.go()
        c.send(struct.pack(">IHHQQI", 0xDEADBEEF, 0, P.NBD_CMD_READ, 1, 0, PAGE))
    assert c.closed_by_server()
    c.close()
    with served.client() as d:  # and the server serves on
        d.pwrite(text_page(2), 0)
        assert d.pread(PAGE, 0) == text_page(2)


# -- transmission: requests and their errors ----------------------------------------------


@pytest.mark.parametrize("structured", [False, True])
def test_request_errors(served, structured):
    c = served.client(structured=structured)
    size = 16 * MiB

    def err(cmd, offset, length, flags=0, data=None):
        cookie = c.send_request(cmd, offset, length, flags, data)
        r = c.recv_reply()
        assert r.cookie == cookie
        if structured and cmd == P.NBD_CMD_READ:
            assert r.structured  # never a simple reply to READ once negotiated
        return r.error

    assert err(P.NBD_CMD_READ, size - PAGE, 2 * PAGE) == P.NBD_EINVAL
    assert err(P.NBD_CMD_READ, 2**63, 1) == P.NBD_EINVAL
    assert err(P.NBD_CMD_WRITE, size, PAGE, data=bytes(PAGE)) == P.NBD_ENOSPC
    assert err(P.NBD_CMD_WRITE_ZEROES, size - 1, 2) == P.NBD_ENOSPC
    assert err(P.NBD_CMD_TRIM, size, PAGE) == P.NBD_EINVAL
    assert err(P.NBD_CMD_READ, 0, 0) == P.NBD_EINVAL
    assert err(P.NBD_CMD_FLUSH, 0, 1) == P.NBD_EINVAL
    assert err(17, 0, PAGE) == P.NBD_EINVAL  # unknown command
    assert err(P.NBD_CMD_BLOCK_STATUS, 0, PAGE) == P.NBD_EINVAL  # no meta context
    assert err(P.NBD_CMD_READ, 0, PAGE, flags=1 << 9) == P.NBD_EINVAL  # unknown flag
    assert err(P.NBD_CMD_READ, 0, PAGE, flags=P.NBD_CMD_FLAG_NO_HOLE) == P.NBD_EINVAL
    assert err(P.NBD_CMD_TRIM, 0, PAGE, flags=P.NBD_CMD_FLAG_FAST_ZERO) == P.NBD_EINVAL
    assert err(P.NBD_CMD_READ, 0, MAX_PAYLOAD + PAGE) == P.NBD_EINVAL
    if structured:
        big = MAX_PAYLOAD + PAGE
        assert err(P.NBD_CMD_READ, 0, big, flags=P.NBD_CMD_FLAG_DF) == P.NBD_EOVERFLOW
        assert err(P.NBD_CMD_READ, 0, PAGE, flags=P.NBD_CMD_FLAG_DF) == 0
    else:
        assert err(P.NBD_CMD_READ, 0, PAGE, flags=P.NBD_CMD_FLAG_DF) == P.NBD_EINVAL
    # An oversized WRITE is read past and refused; the stream stays in step.
    assert err(P.NBD_CMD_WRITE, 0, MAX_PAYLOAD + 1, data=bytes(MAX_PAYLOAD + 1)) == P.NBD_EINVAL
    assert err(P.NBD_CMD_CACHE, 0, PAGE) == 0
    assert err(P.NBD_CMD_FLUSH, 0, 0) == 0
    assert err(P.NBD_CMD_WRITE, 0, PAGE, flags=P.NBD_CMD_FLAG_FUA, data=text_page(3)) == 0
    assert c.pread(PAGE, 0) == text_page(3)
    assert parse_io_stat(served.dev.sysfs["io_stat"]).failed_writes == 0
    c.disconnect()


def test_structured_read_reply_is_one_offset_data_chunk(served):
    c = served.client()
    c.pwrite(b"abc" * 2000, 100)
    cookie = c.send_request(P.NBD_CMD_READ, 100, 6000)
    r = c.recv_reply()
    assert r.cookie == cookie and r.error == 0
    assert r.chunks == [(P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_OFFSET_DATA)]
    assert r.data == b"abc" * 2000
    cookie = c.send_request(P.NBD_CMD_READ, 16 * MiB, PAGE)
    r = c.recv_reply()
    assert r.chunks == [(P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_ERROR)]
    assert r.error == P.NBD_EINVAL and "beyond" in r.message


# -- metadata contexts and NBD_CMD_BLOCK_STATUS ---------------------------------------------

HOLE, ZERO = P.NBD_STATE_HOLE, P.NBD_STATE_ZERO
ALLOC = (P.BASE_ALLOCATION,)


def test_meta_context_list_and_set_replies():
    s = Served([spec("a", "8M"), spec("b", "4M")])
    try:
        c = s.raw()
        c.greet()
        # Both need structured replies first.
        for fn in (c.list_meta_context, c.set_meta_context):
            with pytest.raises(NbdOptionError) as e:
                fn("a", ALLOC)
            assert e.value.reply == P.NBD_REP_ERR_INVALID
        c.structured_reply()
        # LIST: no query lists every context; "base:" every one of its namespace;
        # the id is reserved (0); other namespaces and leaf names find nothing.
        only = [(0, "base:allocation")]
        assert c.list_meta_context("a") == only
        assert c.list_meta_context("a", ("base:",)) == only
        assert c.list_meta_context("b", ("x-other:foo", "base:allocation", "base:")) == only
        assert c.list_meta_context("a", ("qemu:dirty-bitmap:x", "base:other", "nocolon")) == []
        # SET: base:allocation only (no query, or "base:", selects nothing); its id.
        assert c.set_meta_context("a", ("x-other:", "base:allocation")) == [(1, "base:allocation")]
        assert c.set_meta_context("a", ()) == []
        assert c.set_meta_context("a", ("base:",)) == []
        # Malformed data; an unknown export.
        good = P.meta_context_request("a", ALLOC)
        for data in (
            b"\0" * 7,  # too short
            struct.pack(">I", 9) + b"a\0\0\0\0",  # name past the end
            struct.pack(">II", 0, 2) + struct.pack(">I", 1) + b"x",  # fewer queries than said
            struct.pack(">II", 0, 1) + struct.pack(">I", 5) + b"x",  # query past the end
            good + b"!",  # trailing bytes
            struct.pack(">II", 0, 1) + struct.pack(">I", 2) + b"\xff\xfe",  # not UTF-8
        ):
            for opt in (P.NBD_OPT_LIST_META_CONTEXT, P.NBD_OPT_SET_META_CONTEXT):
                with pytest.raises(NbdOptionError) as e:
                    c.option(opt, data)
                assert e.value.reply == P.NBD_REP_ERR_INVALID, data
        for fn in (c.list_meta_context, c.set_meta_context):
            with pytest.raises(NbdOptionError) as e:
                fn("nope", ALLOC)
            assert e.value.reply == P.NBD_REP_ERR_UNKNOWN
        # The transmission flags say nothing new.
        assert (
            c.info("a").flags
            & ~(
                P.NBD_FLAG_HAS_FLAGS
                | P.NBD_FLAG_SEND_FLUSH
                | P.NBD_FLAG_SEND_FUA
                | P.NBD_FLAG_SEND_TRIM
                | P.NBD_FLAG_SEND_WRITE_ZEROES
                | P.NBD_FLAG_SEND_DF
                | P.NBD_FLAG_CAN_MULTI_CONN
                | P.NBD_FLAG_SEND_CACHE
                | P.NBD_FLAG_SEND_FAST_ZERO
            )
            == 0
        )
        c.close()
    finally:
        s.stop()


def _status_after(s, steps, go="a", export_name=False):
    """Run option ``steps`` (callables on a client), enter ``go``; BLOCK_STATUS's error."""
    c = s.raw()
    c.greet()
    c.structured_reply()
    for step in steps:
        try:
            step(c)
        except NbdOptionError:
            pass
    if export_name:
        c.export_name(go)
    else:
        c.go(go)
    cookie = c.send_request(P.NBD_CMD_BLOCK_STATUS, 0, PAGE)
    r = c.recv_reply()
    assert r.cookie == cookie
    c.disconnect()
    return r.error


def test_block_status_needs_the_contexts_of_the_export_it_goes_to():
    s = Served([spec("a", "8M"), spec("b", "4M")])
    try:
        sel_a = lambda c: c.set_meta_context("a", ALLOC)  # noqa: E731
        sel_b = lambda c: c.set_meta_context("b", ALLOC)  # noqa: E731
        assert _status_after(s, [sel_a]) == 0
        assert _status_after(s, [sel_a], export_name=True) == 0
        assert _status_after(s, [sel_b, lambda c: c.info("a"), sel_a]) == 0
        assert _status_after(s, []) == P.NBD_EINVAL  # nothing selected
        assert _status_after(s, [sel_a], go="b") == P.NBD_EINVAL  # selected for another export
        assert _status_after(s, [sel_a], go="b", export_name=True) == P.NBD_EINVAL
        assert _status_after(s, [sel_a, sel_b]) == P.NBD_EINVAL  # SET replaces
        assert _status_after(s, [sel_a, lambda c: c.set_meta_context("a")]) == P.NBD_EINVAL
        # A SET that fails replaces the selection too.
        bad = lambda c: c.option(P.NBD_OPT_SET_META_CONTEXT, b"\0")  # noqa: E731
        assert _status_after(s, [sel_a, bad]) == P.NBD_EINVAL
        assert _status_after(s, [sel_b], go="b") == 0
    finally:
        s.stop()


def test_block_status_reports_holes_zeros_and_data(served):
    """Pages 0-2 text, 3 zeros written (SAME, fill 0), 4 same-filled 0xab, 5-6 zeroed with
    NO_HOLE (SAME), 8-11 written then 9-10 trimmed, 12-13 WRITE_ZEROES (freed), the rest
    untouched."""
    c = NbdClient.open(served.sock, meta=ALLOC)
    assert c.meta_contexts == {1: "base:allocation"}
    c.pwrite(b"".join(text_page(i) for i in range(3)), 0)
    c.pwrite(bytes(PAGE), 3 * PAGE)
    c.pwrite(b"\xab" * PAGE, 4 * PAGE)
    c.zero(2 * PAGE, 5 * PAGE, P.NBD_CMD_FLAG_NO_HOLE)
    c.pwrite(b"".join(text_page(i) for i in range(4)), 8 * PAGE)
    c.trim(2 * PAGE, 9 * PAGE)
    c.pwrite(b"".join(text_page(i) for i in range(2)), 12 * PAGE)
    c.zero(2 * PAGE, 12 * PAGE)
    st = mm(served.dev)
    assert st.same_pages == 4
    size = 16 * MiB
    want = [
        (3 * PAGE, 0),
        (PAGE, ZERO),
        (PAGE, 0),
        (2 * PAGE, ZERO),
        (PAGE, HOLE | ZERO),
        (PAGE, 0),
        (2 * PAGE, HOLE | ZERO),
        (PAGE, 0),
        (size - 12 * PAGE, HOLE | ZERO),
    ]
    # One NBD_REPLY_TYPE_BLOCK_STATUS chunk, final, for context 1.
    cookie = c.send_request(P.NBD_CMD_BLOCK_STATUS, 0, size)
    r = c.recv_reply()
    assert r.cookie == cookie and r.error == 0
    assert r.chunks == [(P.NBD_REPLY_FLAG_DONE, P.NBD_REPLY_TYPE_BLOCK_STATUS)]
    assert r.extents == {1: want}
    # Sub-page edges: whole pages reported, the first and last cut to the request.
    # (block_status takes length, then offset, as pread does.)
    assert c.block_status(7 * PAGE, 1000) == [
        (3 * PAGE - 1000, 0),
        (PAGE, ZERO),
        (PAGE, 0),
        (2 * PAGE, ZERO),
        (1000, HOLE | ZERO),
    ]
    assert c.block_status(3 * PAGE + 10, 5) == [(3 * PAGE - 5, 0), (15, ZERO)]
    assert c.block_status(1, 5 * PAGE + 1) == [(1, ZERO)]
    assert c.block_status(100, size - 100) == [(100, HOLE | ZERO)]
    hz = HOLE | ZERO
    assert c.block_status(PAGE + 2, 11 * PAGE - 1) == [(1, hz), (PAGE, 0), (1, hz)]
    # The untouched range alone; a range inside one run.
    assert c.block_status(64 * PAGE, 20 * PAGE) == [(64 * PAGE, HOLE | ZERO)]
    assert c.block_status(PAGE, 100) == [(PAGE, 0)]
    # REQ_ONE: the first descriptor only, never past the request.
    one = P.NBD_CMD_FLAG_REQ_ONE
    assert c.block_status(size, 0, one) == [(3 * PAGE, 0)]
    assert c.block_status(10 * PAGE, 5, one) == [(3 * PAGE - 5, 0)]
    assert c.block_status(PAGE, 5, one) == [(PAGE, 0)]
    assert c.block_status(8 * PAGE, 7 * PAGE, one) == [(PAGE, HOLE | ZERO)]
    assert c.block_status(50, 12 * PAGE + 1, one | P.NBD_CMD_FLAG_FUA) == [(50, HOLE | ZERO)]
    # What the statuses promise: ZERO pages read as zeros, HOLE pages hold nothing.
    data = c.pread(16 * PAGE, 0)
    tbl = served.dev.table
    pos = 0
    for length, flags in want[:-1]:
        if flags & ZERO:
            assert data[pos : pos + length] == bytes(length)
        else:
            assert data[pos : pos + length] != bytes(length)
        for i in range(pos // PAGE, (pos + length) // PAGE):
            assert tbl.allocated(i) == (not flags & HOLE)
        pos += length
    c.disconnect()
    served.dev.check()


def test_block_status_errors(served):
    c = NbdClient.open(served.sock, meta=ALLOC)
    size = 16 * MiB

    def err(offset, length, flags=0):
        cookie = c.send_request(P.NBD_CMD_BLOCK_STATUS, offset, length, flags)
        r = c.recv_reply()
        assert r.cookie == cookie and r.structured
        return r.error

    assert err(0, 0) == P.NBD_EINVAL  # zero length
    assert err(size - PAGE, PAGE + 1) == P.NBD_EINVAL  # past the end
    assert err(size, 1) == P.NBD_EINVAL
    assert err(2**63, 1) == P.NBD_EINVAL
    assert err(0, PAGE, P.NBD_CMD_FLAG_DF) == P.NBD_EINVAL  # DF is READ's
    assert err(0, PAGE, P.NBD_CMD_FLAG_NO_HOLE) == P.NBD_EINVAL
    assert err(0, PAGE, 1 << 9) == P.NBD_EINVAL
    assert err(0, PAGE, P.NBD_CMD_FLAG_REQ_ONE) == 0
    assert err(0, 0xFFFFFFFF) == P.NBD_EINVAL  # 4 GiB past a 16 MiB export
    c.disconnect()
    # Without structured replies no context can be selected: EINVAL, as a simple reply.
    c = served.client(structured=False)
    cookie = c.send_request(P.NBD_CMD_BLOCK_STATUS, 0, PAGE)
    r = c.recv_reply()
    assert (r.cookie, r.error, r.structured) == (cookie, P.NBD_EINVAL, False)
    c.disconnect()


def test_block_status_of_a_large_export_runs_on_the_pool():
    """A 4 GiB export (its table is calloc'ed: no memory until touched); requests of
    256 MiB and more are scanned on the thread pool, the rest in the shard."""
    s = Served([spec(size="4G")])
    try:
        with NbdClient.open(s.sock, meta=ALLOC) as c:
            size = 4 << 30
            c.pwrite(text_page(1), size - 2 * PAGE)
            c.pwrite(text_page(2), 100 * PAGE)
            hz = HOLE | ZERO
            # The most one request can ask (4 GiB - 1 page, from page 1 to the end).
            assert c.block_status(0xFFFFF000, PAGE) == [
                (99 * PAGE, hz),
                (PAGE, 0),
                (size - 103 * PAGE, hz),
                (PAGE, 0),
                (PAGE, hz),
            ]
            assert c.block_status(2 * PAGE, size - 2 * PAGE) == [(PAGE, 0), (PAGE, hz)]
            assert c.block_status(512 * MiB, 0, P.NBD_CMD_FLAG_REQ_ONE) == [(100 * PAGE, hz)]
            assert c.block_status(5, size - 2 * PAGE + 1) == [(5, 0)]
    finally:
        s.stop()


def test_block_status_of_written_back_pages_is_data(tmp_path):
    bd = tmp_path / "backing"
    bd.write_bytes(bytes(4 * MiB))
    s = Served([spec(size="4M", backing_dev=str(bd))])
    try:
        with NbdClient.open(s.sock, meta=ALLOC) as c:
            c.pwrite(b"".join(text_page(i) for i in range(8)), 0)
            c.pwrite(bytes(PAGE), 8 * PAGE)
            s.dev.sysfs["idle"] = "all"
            s.dev.sysfs["writeback"] = "idle"
            assert int(s.dev.sysfs["bd_stat"].split()[0]) == 8
            assert c.block_status(16 * PAGE, 0) == [
                (8 * PAGE, 0),
                (PAGE, ZERO),
                (7 * PAGE, HOLE | ZERO),
            ]
    finally:
        s.stop()


def _reference_status(dev, offset, length, req_one):
    """Per page, in plain Python from the slot table; merged and clipped."""
    tbl = dev.table
    runs: list[list[int]] = []
    for i in range(offset // PAGE, (offset + length + PAGE - 1) // PAGE):
        flags, handle = tbl.flags[i], tbl.handle[i]
        if not flags & (T.ZRAM_SIZE_MASK | T.SAME | T.WB) and not handle:
            st = HOLE | ZERO
        elif flags & T.SAME and not flags & T.WB and not handle:
            st = ZERO
        else:
            st = 0
        lo, hi = max(offset, i * PAGE), min(offset + length, (i + 1) * PAGE)
        if runs and runs[-1][1] == st:
            runs[-1][0] += hi - lo
        else:
            runs.append([hi - lo, st])
    return [tuple(r) for r in runs[: 1 if req_one else None]]


def test_block_status_scan_matches_a_per_page_reference(monkeypatch):
    """Random device contents and ranges, on the numpy path and the slot-by-slot one;
    small scan steps, so runs cross step boundaries, and a small descriptor cap, so
    long answers stop early (complete runs only)."""
    ex = Export(spec(size="1M"), dev_id=0)
    dev = ex.dev
    rng = random.Random(7)
    n = 256
    for _ in range(300):
        i = rng.randrange(n)
        k = rng.randrange(1, 6)
        k = min(k, n - i)
        what = rng.random()
        if what < 0.35:
            dev.pwrite(b"".join(text_page(rng.randrange(99)) for _ in range(k)), i * PAGE)
        elif what < 0.5:
            dev.pwrite(bytes(k * PAGE), i * PAGE)
        elif what < 0.6:
            dev.pwrite(bytes([rng.randrange(1, 256)]) * (k * PAGE), i * PAGE)
        else:
            dev.discard(i * PAGE, k * PAGE)
    monkeypatch.setattr(export_mod, "_STATUS_STEP", 7)
    for cap, scalar in ((3, 0), (10**6, 0), (3, n), (10**6, n)):  # numpy, then plain Python
        monkeypatch.setattr(export_mod, "MAX_EXTENTS", cap)
        monkeypatch.setattr(export_mod, "_STATUS_SCALAR", scalar)
        for _ in range(200):
            offset = rng.randrange(n * PAGE)
            length = rng.randrange(1, n * PAGE - offset + 1)
            req_one = rng.random() < 0.2
            raw = ex.block_status(offset, length, req_one)
            got = [P.BLOCK_DESCRIPTOR.unpack_from(raw, p) for p in range(0, len(raw), 8)]
            want = _reference_status(dev, offset, length, req_one)
            assert got == want[:cap], (offset, length, req_one)
            assert all(length > 0 for length, _ in got)
    with pytest.raises(OSError) as e:
        ex.block_status(n * PAGE - 1, 2)
    assert e.value.errno == errno.EINVAL
    dev.check()


def test_a_huge_write_length_is_a_hard_disconnect(served):
    c = served.client()
    c.send(struct.pack(">IHHQQI", P.NBD_REQUEST_MAGIC, 0, P.NBD_CMD_WRITE, 1, 0, 0xFFFFFFFF))
    assert c.closed_by_server()


# -- zram semantics behind the commands ---------------------------------------------------


def test_sub_page_requests_are_read_modify_writes(served):
    """Random unaligned writes, zeroes and reads against a bytearray of the same size."""
    rng = random.Random(5)
    size = 256 * 1024
    model = bytearray(size)
    c = served.client()
    for i in range(300):
        off = rng.randrange(size - 1)
        n = rng.randrange(1, min(3 * PAGE, size - off) + 1)
        op = rng.random()
        if op < 0.55:
            data = rng.randbytes(n) if i % 3 else (text_page(i) * 3)[:n]
            c.pwrite(data, off)
            model[off : off + n] = data
        elif op < 0.7:
            flags = P.NBD_CMD_FLAG_NO_HOLE if i % 2 else 0
            c.zero(n, off, flags)
            model[off : off + n] = bytes(n)
        else:
            assert c.pread(n, off) == model[off : off + n], f"op {i}"
    assert c.pread(size, 0) == model
    served.dev.check()
    st = mm(served.dev)
    # zram stores whole pages only: what it holds is a whole number of pages.
    assert st.orig_data_size % PAGE == 0 and st.orig_data_size <= size


def test_trim_is_zram_discard(served):
    dev = served.dev
    c = served.client()
    pages = b"".join(text_page(i) for i in range(8))
    c.pwrite(pages, 0)
    before, io0 = mm(dev), parse_io_stat(dev.sysfs["io_stat"])
    assert before.orig_data_size == 8 * PAGE
    c.trim(4 * PAGE, 2 * PAGE)  # whole pages 2..5
    after, io1 = mm(dev), parse_io_stat(dev.sysfs["io_stat"])
    assert after.orig_data_size == 4 * PAGE
    assert after.compr_data_size < before.compr_data_size
    assert io1.notify_free - io0.notify_free == 4  # zram_bio_discard counts freed pages
    assert c.pread(4 * PAGE, 2 * PAGE) == bytes(4 * PAGE)
    # An unaligned trim frees only the whole pages inside it; the edges keep data.
    c.trim(PAGE + 2, 7 * PAGE - 1)  # covers whole page 7 only
    assert mm(dev).orig_data_size == 3 * PAGE
    assert c.pread(PAGE, 6 * PAGE) == text_page(6)
    assert c.pread(PAGE, 0) == text_page(0)
    dev.check()


def test_write_zeroes_frees_pages_or_stores_same_filled_ones(served):
    dev = served.dev
    c = served.client()
    c.pwrite(b"".join(text_page(i) for i in range(6)), 0)
    io0 = parse_io_stat(dev.sysfs["io_stat"])
    c.zero(3 * PAGE, 0)  # may punch holes: zram's write-zeroes path = discard
    st = mm(dev)
    assert st.orig_data_size == 3 * PAGE and st.same_pages == 0
    assert parse_io_stat(dev.sysfs["io_stat"]).notify_free - io0.notify_free == 3
    c.zero(3 * PAGE, 3 * PAGE, P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_FAST_ZERO)
    st = mm(dev)
    assert st.orig_data_size == 3 * PAGE and st.same_pages == 3  # zero pages kept as SAME
    assert c.pread(6 * PAGE, 0) == bytes(6 * PAGE)
    # A partial page is read, zeroed in part and written back whole.
    c.pwrite(text_page(9), 8 * PAGE)
    c.zero(100, 8 * PAGE + 50)
    assert c.pread(PAGE, 8 * PAGE) == text_page(9)[:50] + bytes(100) + text_page(9)[150:]
    dev.check()


def test_mem_limit_failure_is_eio_and_counted_like_a_failed_bio():
    s = Served([spec(size="8M", mem_limit="64K")])
    try:
        c = s.client()
        rnd = random.Random(1)
        failed = 0
        for i in range(64):
            try:
                c.pwrite(rnd.randbytes(PAGE), i * PAGE)
            except OSError as e:
                assert e.errno == P.NBD_EIO
                failed += 1
        assert failed > 0
        assert parse_io_stat(s.dev.sysfs["io_stat"]).failed_writes == failed
        st = mm(s.dev)
        assert st.mem_used_total <= 64 << 10
        s.dev.check()
    finally:
        s.stop()


# -- concurrency --------------------------------------------------------------------------


def test_many_requests_in_flight_on_one_connection(served):
    c = served.client()
    n = 3 * MAX_INFLIGHT  # more than the server reads ahead: it must push back, not drop
    pages = {i: text_page(i) for i in range(n)}
    cookies = {c.send_request(P.NBD_CMD_WRITE, i * PAGE, PAGE, data=p): i for i, p in pages.items()}
    for _ in range(n):
        r = c.recv_reply()
        assert r.error == 0 and r.cookie in cookies
    reads = {c.send_request(P.NBD_CMD_READ, i * PAGE, PAGE): i for i in range(n)}
    for _ in range(n):
        r = c.recv_reply()
        assert r.data == pages[reads.pop(r.cookie)]
    assert not reads
    assert mm(served.dev).orig_data_size == n * PAGE


@pytest.mark.parametrize("structured", [False, True])
def test_a_burst_is_answered_as_requests_one_by_one(served, structured):
    """Requests that arrive in one send are parsed together, and consecutive
    small aligned READs become runs, each one device batch answered in one
    buffer; anything else ends a run.  The replies must be what the requests
    sent one at a time would get: a read behind a write to its page sees the
    write, runs longer than BATCH_PAGES split, multi-page and sub-page reads
    in between, and a page that does not decompress fails only the read that
    covers it (EIO, one failed_reads), not the rest of its run."""
    c = served.client(structured=structured)
    dev = served.dev
    n = 64
    disk = bytearray(b"".join(text_page(i) for i in range(n)))
    c.pwrite(bytes(disk), 0)
    bad = 20
    corrupt(dev, bad)
    R, W = P.NBD_CMD_READ, P.NBD_CMD_WRITE
    reqs = [(R, i * PAGE, PAGE) for i in range(10)] + [(R, 10 * PAGE, 4 * PAGE)]
    reqs += [(W, 3 * PAGE, text_page(999)), (R, 3 * PAGE, PAGE), (R, 100, 200)]
    reqs += [(R, p * PAGE, 4 * PAGE) for p in range(14, 62, 4)]  # page 20 in one of them
    reqs += [(R, p * PAGE, PAGE) for p in range(30, 50)]
    reqs += [(P.NBD_CMD_FLUSH, 0, 0), (R, 0, 2 * PAGE)]
    assert sum(r[2] for r in reqs[14:-2]) // PAGE > BATCH_PAGES  # a run that splits
    assert len(reqs) <= MAX_INFLIGHT
    want = {}
    out = []
    for cookie, (cmd, offset, what) in enumerate(reqs, 1):
        length = len(what) if cmd == W else what
        c._requests[cookie] = (cmd, length)
        out.append(P.REQUEST.pack(P.NBD_REQUEST_MAGIC, 0, cmd, cookie, offset, length))
        if cmd == W:
            out.append(what)
            disk[offset : offset + length] = what
            want[cookie] = (0, b"")
        elif cmd == R:
            covers_bad = offset // PAGE <= bad < (offset + length + PAGE - 1) // PAGE
            data = bytes(disk[offset : offset + length])
            want[cookie] = (P.NBD_EIO, b"") if covers_bad else (0, data)
        else:
            want[cookie] = (0, b"")
    failed = parse_io_stat(dev.sysfs["io_stat"]).failed_reads
    c.send(b"".join(out))
    got = {}
    for _ in reqs:
        r = c.recv_reply()
        got[r.cookie] = (r.error, r.data)
        assert r.structured == (structured and reqs[r.cookie - 1][0] == R)
    assert got == want
    assert parse_io_stat(dev.sysfs["io_stat"]).failed_reads == failed + 1
    assert sum(e == P.NBD_EIO for e, _ in got.values()) == 1
    c.disconnect()


def test_pipelined_large_and_half_closed(served):
    """Requests sent right behind the option, in one burst with large payloads, then
    a half-close: each is parsed where it lies (a 1 MiB WRITE payload straight into
    a buffer of its own), runs, and its reply still arrives after the client's EOF.
    (Requests in flight together may run in any order, as NBD allows, so the
    reads go after the writes' replies.)"""
    c = served.raw()
    c.greet()
    c.send_option(P.NBD_OPT_EXPORT_NAME, b"")
    big = bytes(range(256)) * (MiB // 256)  # not same-filled
    requests = {
        1: (P.NBD_CMD_WRITE, 0, big),
        2: (P.NBD_CMD_WRITE, 3 * MiB, text_page(9)),
        3: (P.NBD_CMD_READ, 0, MiB),
        4: (P.NBD_CMD_READ, MiB - 100, 2 * MiB),
        5: (P.NBD_CMD_READ, 3 * MiB, PAGE),
    }

    def burst(cookies):
        out = []
        for cookie in cookies:
            cmd, offset, what = requests[cookie]
            length = what if cmd == P.NBD_CMD_READ else len(what)
            c._requests[cookie] = (cmd, length)
            out.append(P.REQUEST.pack(P.NBD_REQUEST_MAGIC, 0, cmd, cookie, offset, length))
            if cmd == P.NBD_CMD_WRITE:
                out.append(what)
        c.send(b"".join(out))

    def replies(n):
        got = {}
        for _ in range(n):
            r = c.recv_reply()
            assert r.error == 0, r
            got[r.cookie] = r
        return got

    burst([1, 2])
    size, _flags = P.EXPORT_NAME_REPLY.unpack(c.recv_exact(P.EXPORT_NAME_REPLY.size))
    assert size == 16 * MiB
    assert set(replies(2)) == {1, 2}
    burst([3, 4, 5])
    c.sock.shutdown(socket.SHUT_WR)
    got = replies(3)
    assert got[3].data == big
    assert got[4].data == big[MiB - 100 :] + bytes(2 * MiB - 100)
    assert got[5].data == text_page(9)
    assert c.closed_by_server()
    c.close()


def test_loop_factory_names():
    assert set(LOOPS) == {"asyncio", "uvloop"} and DEFAULT_LOOP in LOOPS
    assert loop_factory("asyncio") is asyncio.new_event_loop
    with pytest.raises(ValueError, match="expected one of"):
        loop_factory("trio")


def test_many_clients_share_pages_without_losing_updates():
    """Eight clients write interleaved 512-byte pieces of the same pages at once.

    Every piece is a read-modify-write of its page; without per-page
    serialisation one client's update would overwrite another's.
    """
    s = Served([spec(size="4M")], threads=4)
    try:
        pages, clients, rounds = 16, 8, 6
        piece = PAGE // clients
        errors: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                with s.client() as c:
                    for rnd in range(rounds):  # a round: one piece of every page, pipelined
                        data = bytes([k * 16 + rnd + 1]) * piece
                        for p in range(pages):
                            c.send_request(P.NBD_CMD_WRITE, p * PAGE + k * piece, data=data)
                        for _ in range(pages):
                            assert c.recv_reply().error == 0
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        with s.client() as c:
            data = c.pread(pages * PAGE, 0)
        want = b"".join(bytes([k * 16 + rounds]) * piece for k in range(clients)) * pages
        assert data == want
        s.dev.check()
    finally:
        s.stop()


def test_two_devices_are_served_side_by_side():
    s = Served([spec("a", "8M"), spec("b", "8M", comp_algorithm="lz4")], threads=2)
    try:
        errors: list[BaseException] = []

        def worker(name: str, seed: int) -> None:
            try:
                with s.client(name) as c:
                    rng = random.Random(seed)
                    model = {}
                    for _ in range(200):
                        i = seed * 512 + rng.randrange(512)  # each worker its own pages
                        model[i] = text_page(seed * 1000 + i)
                        c.pwrite(model[i], i * PAGE)
                    for i, page in model.items():
                        assert c.pread(PAGE, i * PAGE) == page
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n, k)) for k, n in enumerate("abab")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        for e in s.exports:
            e.dev.check()
    finally:
        s.stop()


def test_a_client_vanishing_mid_write_loses_nothing_acknowledged(served):
    c = served.client()
    c.pwrite(text_page(1) * 4, 0)  # acknowledged
    before = mm(served.dev)
    half = struct.pack(">IHHQQI", P.NBD_REQUEST_MAGIC, 0, P.NBD_CMD_WRITE, 9, 0, 4 * PAGE)
    c.send(half + b"\xee" * (2 * PAGE))  # header and half the payload, then gone
    c.close()
    with served.client() as d:
        assert d.pread(4 * PAGE, 0) == text_page(1) * 4
    assert mm(served.dev) == before
    served.dev.check()
    deadline = time.monotonic() + 5
    while served.exports[0].clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.exports[0].clients == 0  # the device was released: reset works
    served.dev.sysfs["reset"] = "1"


# -- control socket -----------------------------------------------------------------------


def test_control_lists_reads_and_writes_sysfs(served):
    with served.client() as c:
        c.pwrite(b"".join(text_page(i) for i in range(16)), 0)
        with ControlClient(served.sock) as ctl:
            (state,) = ctl.states()
            assert state["name"] == "zram0" and state["export"] == ""
            assert state["mountpoint"] == "[NBD]" and state["clients"] == 1
            assert state["mm_stat"]["orig_data_size"] == 16 * PAGE
            assert ctl.read("zram0", "mm_stat") == served.dev.sysfs["mm_stat"]
            assert ctl.read("", "disksize") == f"{16 * MiB}\n"
            assert ctl.write("zram0", "compact", "1") == 1
            assert ctl.write("zram0", "idle", "all") == 3
            assert ctl.write("zram0", "mem_used_max", "0") == 1
            with pytest.raises(OSError) as e:
                ctl.write("zram0", "reset", "1")  # a client has it open
            assert e.value.errno == errno.EBUSY
            with pytest.raises(OSError) as e:
                ctl.read("zram0", "compact")  # write-only, as in sysfs
            assert e.value.errno == errno.EACCES
            with pytest.raises(OSError) as e:
                ctl.read("zram0", "nope")
            assert e.value.errno == errno.ENOENT
            with pytest.raises(OSError) as e:
                ctl.read("zram7", "mm_stat")
            assert e.value.errno == errno.ENOENT
            with pytest.raises(OSError) as e:
                ctl.write("zram0", "idle", "soon")
            assert e.value.errno == errno.EINVAL
            with pytest.raises(OSError) as e:
                ctl.request(op="explode")
            assert e.value.errno == errno.EINVAL
    with socket.socket(socket.AF_UNIX) as raw:  # not JSON: an error reply, not a hang-up
        raw.connect(control_path(served.sock))
        raw.sendall(b"{oops\n")
        assert json.loads(raw.makefile().readline())["errno"] == errno.EINVAL


def test_control_writeback_and_recompress(tmp_path):
    bd = tmp_path / "backing"
    bd.write_bytes(bytes(4 * MiB))
    s = Served([spec(size="4M", backing_dev=str(bd), recomp_algorithm="algo=zstd")])
    try:
        with s.client() as c:
            c.pwrite(b"".join(text_page(i) for i in range(32)), 0)
        with ControlClient(s.sock) as ctl:
            ctl.write("zram0", "idle", "all")
            ctl.write("zram0", "recompress", "type=idle")
            ctl.write("zram0", "idle", "all")
            ctl.write("zram0", "writeback", "idle")
            bd_count, _, bd_writes = map(int, ctl.read("zram0", "bd_stat").split())
            assert bd_count == 32 and bd_writes == 32
        with s.client() as c:  # written-back pages read back through the backing device
            assert c.pread(32 * PAGE, 0) == b"".join(text_page(i) for i in range(32))
        s.dev.check()
    finally:
        s.stop()


def test_reset_then_reinit_through_control(served):
    with ControlClient(served.sock) as ctl:
        ctl.write("zram0", "reset", "1")
        assert ctl.read("zram0", "disksize") == "0\n"
        ctl.write("zram0", "comp_algorithm", "lz4")
        ctl.write("zram0", "disksize", "8M")
    with served.client() as c:
        assert c.export_info.size == 8 * MiB
        c.pwrite(text_page(4), 0)
    assert "[lz4]" in served.dev.sysfs["comp_algorithm"]


# -- command line -------------------------------------------------------------------------


def test_cli_ctl_socket_listing_and_attributes(served, capsys):
    with served.client() as c:
        c.pwrite(b"".join(text_page(i) for i in range(4)), 0)
    assert main(["ctl", "--socket", served.sock]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == "NAME ALGORITHM DISKSIZE DATA COMPR TOTAL STREAMS MOUNTPOINT".split()
    assert out[1].split()[:4] == ["/dev/zram0", "lzo-rle", "16M", "16K"]
    assert out[1].endswith("[NBD]")
    assert main(["ctl", "--socket", served.sock, "--bytes", "-o", "NAME,DATA", "--raw", "-n"]) == 0
    assert capsys.readouterr().out == f"/dev/zram0 {4 * PAGE}\n"
    assert main(["ctl", "--socket", served.sock, "--write", "compact=1", "--read", "mm_stat"]) == 0
    assert capsys.readouterr().out == served.dev.sysfs["mm_stat"]
    assert main(["ctl", "--socket", served.sock + ".ctl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["zram"][0]["name"] == "/dev/zram0"
    assert main(["ctl", "--socket", served.sock, "--read", "bogus"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyzram: error: ") and "(ENOENT)" in err and err.count("\n") == 1
    assert main(["ctl", "--read", "mm_stat"]) == 2  # a usage error
    assert "need --socket" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    sock = str(tmp_path / "s")
    cases = [  # usage errors exit 2, failures (the device's EINVAL, a missing socket) 1
        (["serve", "--socket", sock], "nothing to serve", 2),
        (["serve", "--size", "1M"], "--socket", 2),
        (["serve", "--socket", sock, "--export", "x"], "NAME:size", 2),
        (["serve", "--socket", sock, "--export", "x:colour=red"], "unknown option", 2),
        (["serve", "--socket", sock, "--export", "x:algorithm=lz4"], "size= is required", 2),
        (["serve", "--socket", sock, "--size", "8M", "-a", "nope"], "(EINVAL)", 1),
        (["serve", "--socket", sock, "--algorithm", "lz4"], "go with --size", 2),
        (["serve", "--socket", sock, "--export", "a:size=1M", "--export", "a:size=1M"], "twice", 2),
        (["ctl", "--socket", str(tmp_path / "none")], "No such file", 1),
        (["serve", "--socket", sock, "--size", "1M", "--loop", "trio"], "--loop 'trio'", 2),
    ]
    for argv, needle, code in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("pyzram: error: ") and needle in err, (argv, err)
        assert err.count("\n") == 1
    Path(sock).write_text("not a socket")
    assert main(["serve", "--socket", sock, "--size", "1M"]) == 1
    assert "not a socket" in capsys.readouterr().err


def test_parse_export_spec():
    s = parse_export_spec("db:size=64M,algorithm=lz4,backing_dev=/x,mem_limit=8M,description=a b")
    assert s.name == "db" and s.description == "a b"
    assert s.ordered_attrs() == [
        ("comp_algorithm", "lz4"),
        ("backing_dev", "/x"),
        ("disksize", "64M"),
        ("mem_limit", "8M"),
    ]
    assert parse_export_spec(":size=1M").name == ""


def test_a_second_server_on_a_live_socket_is_refused(served):
    other = NbdServer(build_exports([spec()]), socket_path=served.sock)
    with pytest.raises(OSError) as e:
        asyncio.run(other.start())
    assert e.value.errno == errno.EADDRINUSE
    with served.client() as c:  # the first one still owns its socket
        c.flush()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_process_stops_cleanly_on_signals(sig):
    d = tempfile.mkdtemp(prefix="pyzram-nbd-")
    sock = os.path.join(d, "s.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyzram", "serve", "--socket", sock, "--size", "8M", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)  # a hung server must not hang the suite
    watchdog.start()
    try:
        banner = [proc.stdout.readline() for _ in range(4)]
        assert "zram0 (8 MiB, lzo-rle)" in banner[0]
        assert banner[1].strip() == f"pyzram: serving nbd+unix:///?socket={sock}"
        port = int(banner[2].rsplit(":", 1)[1].strip("/\n"))
        with NbdClient(host="127.0.0.1", port=port) as c:  # TCP too
            c.greet()
            c.go()
            c.pwrite(text_page(1), 0)
            assert c.pread(PAGE, 0) == text_page(1)
        assert os.path.exists(sock) and os.path.exists(sock + ".ctl")
        proc.send_signal(sig)
        assert proc.wait(30) == 0
        assert not os.path.exists(sock) and not os.path.exists(sock + ".ctl")
        assert "server stopped" in proc.stderr.read()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


# -- fuzz ---------------------------------------------------------------------------------


def _fuzz_handshake(sock: str, rng: random.Random) -> None:
    c = NbdClient(sock, timeout=5)
    try:
        c.recv_exact(P.GREETING.size)
        if rng.random() < 0.1:
            c.send(rng.randbytes(rng.randrange(1, 4)))  # truncated client flags
            return
        c.send(P.CLIENT_FLAGS.pack(rng.choice([0, 1, 3, 3, 3, rng.getrandbits(32)])))
        for _ in range(rng.randrange(1, 6)):
            kind = rng.random()
            if kind < 0.3:  # a known option with random data
                opt = rng.choice(list(P.OPT_NAMES) + [0, 12, 2**31])
                if opt in (P.NBD_OPT_EXPORT_NAME, P.NBD_OPT_ABORT):
                    opt = P.NBD_OPT_INFO
                c.send_option(opt, rng.randbytes(rng.randrange(0, 40)))
            elif kind < 0.5:  # INFO/GO with plausible but wrong fields
                name = rng.choice(["", "x", "\u00e9"]).encode()
                body = struct.pack(">I", max(0, len(name) + rng.randrange(-1, 3))) + name
                body += struct.pack(">H", rng.randrange(0, 5)) + rng.randbytes(rng.randrange(6))
                c.send_option(rng.choice([P.NBD_OPT_INFO, P.NBD_OPT_GO]), body)
            elif kind < 0.7:  # a header promising more than is sent
                c.send(struct.pack(">QII", P.IHAVEOPT, rng.randrange(12), rng.randrange(1, 99)))
                c.send(rng.randbytes(rng.randrange(0, 5)))
                return
            else:  # pure noise
                c.send(rng.randbytes(rng.randrange(1, 64)))
                return
            try:  # read whatever comes back, briefly
                c.sock.settimeout(0.05)
                c.sock.recv(65536)
            except (TimeoutError, OSError):
                pass
    except OSError:
        pass
    finally:
        c.close()


def _fuzz_transmission(sock: str, rng: random.Random) -> None:
    try:
        structured = rng.random() < 0.5
        meta = ALLOC if structured and rng.random() < 0.5 else ()
        c = NbdClient.open(sock, structured=structured, meta=meta)
    except OSError:
        return
    try:
        for _ in range(rng.randrange(1, 12)):
            cmd = rng.choice([0, 0, 1, 1, 3, 4, 5, 6, 7, rng.randrange(9, 2**16)])
            flags = rng.choice([0, 0, 1, 2, 4, 8, 16, rng.getrandbits(16)])
            # In-range writes stay below 4 MiB: the keeper's data at 8 MiB must survive.
            offset = rng.choice([0, rng.randrange(4 * MiB), 16 * MiB - 1, rng.getrandbits(64)])
            length = rng.choice([0, 1, rng.randrange(1, 3 * PAGE), PAGE, rng.getrandbits(32)])
            magic = P.NBD_REQUEST_MAGIC if rng.random() < 0.95 else rng.getrandbits(32)
            hdr = struct.pack(">IHHQQI", magic, flags, cmd, rng.getrandbits(64), offset, length)
            if rng.random() < 0.1:
                c.send(hdr[: rng.randrange(1, len(hdr))])  # truncated header, then gone
                return
            c.send(hdr)
            if cmd == P.NBD_CMD_WRITE:
                n = length if length <= 4 * PAGE else rng.randrange(0, 4 * PAGE)
                c.send(rng.randbytes(n))
                if n < length:
                    return  # payload never completes: vanish
            if cmd == P.NBD_CMD_DISC:
                return
        c.sock.settimeout(0.05)
        while c.sock.recv(65536):  # replies, until the server closes or goes quiet
            pass
    except OSError:
        pass
    finally:
        c.close()


def test_fuzz_random_and_truncated_messages():
    s = Served([spec(size="16M")], threads=2)
    try:
        rng = random.Random(20261126)
        with s.client() as keeper:
            keeper.pwrite(text_page(42) * 4, 8 * MiB)  # acknowledged before the storm
            for i in range(120):
                (_fuzz_handshake if i % 2 else _fuzz_transmission)(s.sock, rng)
            # The server still serves, the first client included, and nothing
            # acknowledged was lost.
            assert keeper.pread(4 * PAGE, 8 * MiB) == text_page(42) * 4
        with s.client() as c:
            c.pwrite(text_page(7), 0)
            assert c.pread(PAGE, 0) == text_page(7)
        s.dev.check()
    finally:
        s.stop()
