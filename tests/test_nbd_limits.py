"""``pyzram serve`` under stalled and greedy clients: what a client can make it hold.

The bounds (:class:`pyzram.nbd.limits.Limits`): the advertised maximum block
size and its errors, connections at once, the handshake's time limit, the
per-connection in-flight budget and send buffer, and large READs and WRITEs
streamed in pieces.  The memory test runs ``pyzram serve`` as its own
process and reads its RSS from ``/proc``; the others use the in-process
server.  Every wait is bounded.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from pyzram.nbd import protocol as P
from pyzram.nbd.client import NbdClient, NbdOptionError
from pyzram.nbd.control import control_path
from pyzram.nbd.export import ExportSpec
from pyzram.nbd.limits import STREAM_CHUNK, Limits
from pyzram.nbd.server import LOOPS, ServerThread, build_exports
from pyzram.zram.stat import parse_io_stat

PAGE = 4096
MiB = 1 << 20


class Served(ServerThread):
    def __init__(self, size: str = "64M", limits: Limits | None = None, **attrs: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyzram-nbd-")
        self.sock = os.path.join(self.dir, "nbd.sock")
        try:
            super().__init__(
                build_exports([ExportSpec("", {"disksize": size, **attrs})]),
                socket_path=self.sock,
                ctl_path=control_path(self.sock),
                threads=2,
                limits=limits,
            )
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def dev(self):
        return self.exports[0].dev

    def client(self, structured: bool = True) -> NbdClient:
        return NbdClient.open(self.sock, "", structured)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` compressible bytes that differ from page to page (none same-filled)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += (f"{seed}:{i:08d} " * 400).encode()[:PAGE]
        i += 1
    return bytes(out[:n])


def request(cmd: int, cookie: int, offset: int, length: int, flags: int = 0) -> bytes:
    return P.REQUEST.pack(P.NBD_REQUEST_MAGIC, flags, cmd, cookie, offset, length)


def closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes ``sock`` within ``timeout`` (what it sends is read past)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 16):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


# -- maximum block size ------------------------------------------------------------------


@pytest.mark.parametrize("structured", [False, True])
@pytest.mark.parametrize("max_block", [64 << 10, MiB])
def test_max_block_size_is_advertised_and_enforced(structured, max_block):
    s = Served(limits=Limits(max_block_size=max_block))
    try:
        c = NbdClient(s.sock)
        c.greet()
        if structured:
            c.structured_reply()
        info = c.go("")
        assert info.block_size == (1, PAGE, max_block)

        def err(cmd, length, flags=0, data=None):
            cookie = c.send_request(cmd, 0, length, flags, data)
            r = c.recv_reply()
            assert r.cookie == cookie
            return r.error

        assert err(P.NBD_CMD_READ, max_block) == 0
        assert err(P.NBD_CMD_READ, max_block + PAGE) == P.NBD_EINVAL
        if structured:
            df = P.NBD_CMD_FLAG_DF
            assert err(P.NBD_CMD_READ, max_block + PAGE, flags=df) == P.NBD_EOVERFLOW
        # A WRITE over the maximum: its payload is read past, then EINVAL; in step after.
        assert err(P.NBD_CMD_WRITE, max_block + 1, data=bytes(max_block + 1)) == P.NBD_EINVAL
        assert err(P.NBD_CMD_WRITE, max_block, data=pattern(max_block)) == 0
        assert c.pread(max_block, 0) == pattern(max_block)
        # Over twice the maximum: a hard disconnect (nbdkit's answer).
        c.send(request(P.NBD_CMD_WRITE, 99, 0, 2 * max_block + PAGE))
        assert c.closed_by_server()
        c.close()
        assert parse_io_stat(s.dev.sysfs["io_stat"]).failed_writes == 0
    finally:
        s.stop()


# -- streamed requests ----------------------------------------------------------------


@pytest.mark.parametrize("structured", [False, True])
def test_large_reads_and_writes_are_streamed_whole_and_in_order(structured):
    """32 MiB at an unaligned offset, written and read back in pieces, with small
    requests pipelined around them: each reply whole, no reply inside another."""
    s = Served()
    try:
        with s.client(structured) as c:
            big = pattern(32 * MiB - 3 * PAGE, seed=1)
            off = 5 * PAGE + 123
            c.pwrite(big, off)
            small = pattern(PAGE, seed=2)
            c.pwrite(small, 40 * MiB)
            cookies = [
                c.send_request(P.NBD_CMD_READ, 40 * MiB, PAGE),
                c.send_request(P.NBD_CMD_READ, off, len(big)),
                c.send_request(P.NBD_CMD_READ, 40 * MiB, PAGE),
                c.send_request(P.NBD_CMD_READ, off + 7, 3 * MiB),
                c.send_request(P.NBD_CMD_WRITE, 41 * MiB, PAGE, 0, small),
            ]
            got = {}
            for _ in cookies:
                r = c.recv_reply()
                assert r.error == 0, r
                got[r.cookie] = r.data
            assert got[cookies[0]] == got[cookies[2]] == small
            assert got[cookies[1]] == big
            assert got[cookies[3]] == big[7 : 7 + 3 * MiB]
            assert c.pread(PAGE, 41 * MiB) == small
    finally:
        s.stop()


def test_a_streamed_write_past_mem_limit_fails_once_and_serves_on():
    s = Served(size="64M", mem_limit="2M")
    try:
        with s.client() as c:
            data = os.urandom(8 * MiB)  # incompressible: past mem_limit after ~2 MiB
            with pytest.raises(OSError) as e:
                c.pwrite(data, 0)
            assert e.value.errno == P.NBD_EIO
            assert c.pread(PAGE, 60 * MiB) == bytes(PAGE)  # the connection is in step
        assert parse_io_stat(s.dev.sysfs["io_stat"]).failed_writes >= 1
    finally:
        s.stop()


def test_a_client_vanishing_mid_stream_loses_nothing_acknowledged():
    s = Served()
    try:
        with s.client() as c:
            acked = pattern(4 * MiB, seed=3)
            c.pwrite(acked, 16 * MiB)
            c.send(request(P.NBD_CMD_WRITE, 7, 0, 8 * MiB) + b"\xee" * (2 * MiB + 5))
        deadline = time.monotonic() + 10
        while s.exports[0].clients and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.exports[0].clients == 0  # released: nothing is left in flight
        with s.client() as d:
            assert d.pread(4 * MiB, 16 * MiB) == acked
        s.dev.check()
    finally:
        s.stop()


# -- connections and the handshake -----------------------------------------------------


def test_connections_over_the_limit_are_closed_at_once():
    s = Served(limits=Limits(max_connections=3))
    try:
        held = [s.client() for _ in range(2)]
        stalled = socket.socket(socket.AF_UNIX)
        stalled.connect(s.sock)  # a handshake counts too
        assert stalled.recv(18)[:8] == b"NBDMAGIC"
        extra = socket.socket(socket.AF_UNIX)
        extra.connect(s.sock)
        assert closed(extra, 5)  # refused: no greeting, EOF
        extra.close()
        held[0].close()
        deadline = time.monotonic() + 5
        while True:  # a slot frees once the server has seen the close
            try:
                with s.client() as c:
                    c.pwrite(pattern(PAGE), 0)
                    assert c.pread(PAGE, 0) == pattern(PAGE)
                break
            except (OSError, EOFError):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        held[1].close()
        stalled.close()
    finally:
        s.stop()


def test_a_client_stalled_in_the_handshake_is_dropped():
    s = Served(limits=Limits(handshake_timeout=0.5))
    try:
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(s.sock)
        halfway = NbdClient(s.sock)
        halfway.greet()  # flags sent, then no option
        with s.client() as c:  # in transmission before the limit: stays
            t0 = time.monotonic()
            assert closed(silent, 5)
            assert halfway.closed_by_server(5)
            assert 0.4 < time.monotonic() - t0 < 4
            time.sleep(0.3)
            c.pwrite(pattern(PAGE), 0)
            assert c.pread(PAGE, 0) == pattern(PAGE)
        silent.close()
        halfway.close()
    finally:
        s.stop()


def test_the_handshake_buffer_grows_for_long_options_and_bursts():
    """A negotiating connection starts with a 4 KiB buffer: a 64 KiB option (the
    most the server reads) and 1,000 options sent in one burst still get their
    replies, in order, and the session goes on to transmission."""
    s = Served()
    try:
        c = NbdClient(s.sock)
        c.greet()
        name = "n" * ((64 << 10) - 6)
        with pytest.raises(NbdOptionError) as e:
            c.option(P.NBD_OPT_INFO, NbdClient.info_request(name, ()))
        assert e.value.reply == P.NBD_REP_ERR_UNKNOWN
        burst = P.OPTION.pack(P.IHAVEOPT, P.NBD_OPT_LIST, 0) * 1000
        c.send(burst)
        for _ in range(1000):
            assert c.recv_option_reply().reply == P.NBD_REP_SERVER
            assert c.recv_option_reply().reply == P.NBD_REP_ACK
        assert c.go("").size == 64 * MiB
        c.pwrite(pattern(PAGE), 0)
        assert c.pread(PAGE, 0) == pattern(PAGE)
        c.close()
    finally:
        s.stop()


# -- a server process under stalled and greedy clients -------------------------------


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _latencies(c: NbdClient, n: int, base: int) -> list[float]:
    out = []
    for i in range(n):
        page = pattern(PAGE, seed=base + i)
        t0 = time.perf_counter()
        c.pwrite(page, 32 * MiB + (i % 256) * PAGE)
        assert c.pread(PAGE, 32 * MiB + (i % 256) * PAGE) == page
        out.append(time.perf_counter() - t0)
    return sorted(out)


@pytest.mark.parametrize("loop", LOOPS)
def test_stalled_and_greedy_clients_cannot_exhaust_the_server(loop):
    """20 clients announce a 32 MiB WRITE and send one byte; 10 pipeline 8 READs of
    32 MiB and never read; 200 connect and say nothing.  The server's RSS grows by
    less than 160 MiB (~1 GB if large requests are held whole), a well-behaved client
    keeps its latency, the silent ones are dropped after the handshake timeout, and
    everything acknowledged reads back."""
    d = tempfile.mkdtemp(prefix="pyzram-nbd-")
    sock = os.path.join(d, "s.sock")
    cmd = [sys.executable, "-m", "pyzram", "serve", "--socket", sock, "--size", "64M"]
    cmd += ["--threads", "2", "--max-connections", "256", "--handshake-timeout", "4"]
    cmd += ["--loop", loop]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(90, proc.kill)  # a hung server must not hang the suite
    watchdog.start()
    opened: list[socket.socket] = []
    try:
        for _ in range(3):
            assert proc.stdout.readline()
        good = NbdClient.open(sock)
        data = pattern(16 * MiB, seed=4)
        good.pwrite(data, 0)
        assert good.pread(16 * MiB, 0) == data
        before = _latencies(good, 200, 1000)
        base = _rss(proc.pid)

        def transmitting() -> socket.socket:
            s = socket.socket(socket.AF_UNIX)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(sock)
            s.settimeout(10)
            opened.append(s)
            c = NbdClient.__new__(NbdClient)
            c.sock = s
            c.structured, c._requests = False, {}
            c.greet()
            c.send_option(P.NBD_OPT_EXPORT_NAME, b"")
            c.recv_exact(P.EXPORT_NAME_REPLY.size)
            return s

        for i in range(20):
            transmitting().sendall(request(P.NBD_CMD_WRITE, i, 0, 32 * MiB) + b"x")
        for _ in range(10):
            transmitting().sendall(
                b"".join(request(P.NBD_CMD_READ, j, 0, 32 * MiB) for j in range(8))
            )
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            opened.append(s)
        silent = opened[-200:]
        peak = 0
        during: list[float] = []
        t_end = time.monotonic() + 2.5
        k = 0
        while time.monotonic() < t_end:
            during += _latencies(good, 20, 2000 + 20 * k)
            k += 1
            peak = max(peak, _rss(proc.pid))
        during.sort()
        grown = peak - base
        print(
            f"RSS {base >> 20} MiB -> peak {peak >> 20} MiB (+{grown >> 20} MiB); "
            f"write+read median {before[len(before) // 2] * 1e3:.2f} ms before, "
            f"{during[len(during) // 2] * 1e3:.2f} ms during; p99 during "
            f"{during[int(len(during) * 0.99)] * 1e3:.2f} ms"
        )
        assert grown < 160 * MiB
        assert during[len(during) // 2] < max(10 * before[len(before) // 2], 0.005)
        assert during[int(len(during) * 0.99)] < 0.25
        # The silent clients are dropped once the handshake timeout has passed.
        for s in silent:
            assert closed(s, 6)
        for s in opened:
            s.close()
        good.close()
        with NbdClient.open(sock) as c:  # nothing acknowledged is lost
            assert c.pread(16 * MiB, 0) == data
            last = 2000 + 20 * k - 1
            assert c.pread(PAGE, 32 * MiB + (19 % 256) * PAGE) == pattern(PAGE, seed=last)
    finally:
        watchdog.cancel()
        for s in opened:
            s.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def test_limits_reject_nonsense():
    with pytest.raises(ValueError, match="max-block-size"):
        Limits(max_block_size=1000)
    with pytest.raises(ValueError, match="max-connections"):
        Limits(max_connections=0)
    assert Limits().connection_bound() < 16 * MiB
    assert STREAM_CHUNK == MiB


def test_a_streamed_write_completes_however_tight_the_budget():
    """A streamed WRITE counts in its connection's budget; its payload must still be
    read when that alone fills the budget (else it waits for itself forever)."""
    for limits in (Limits(max_inflight=1), Limits(max_inflight_bytes=4096, send_buffer=4096)):
        s = Served(limits=limits)
        try:
            with s.client() as c:
                c.sock.settimeout(5)
                data = pattern(3 * MiB + 5, seed=6)
                c.pwrite(data, 7)
                assert c.pread(len(data), 7) == data
        finally:
            s.stop()


@pytest.mark.parametrize(
    "limits",
    [
        Limits(),
        Limits(max_block_size=2 * MiB, max_inflight=1, max_inflight_bytes=MiB),
        Limits(max_block_size=64 << 10, max_inflight_bytes=4096, send_buffer=4096),
    ],
    ids=["defaults", "one-in-flight", "tiny-buffers"],
)
def test_fuzz_large_and_cut_off_requests_under_limits(limits):
    """Random READs, WRITEs (up to 5 MiB, some cut off, some half-closed), trims and
    zeroes on many short connections: afterwards nothing acknowledged is lost, every
    connection has ended (none waits on input it will never read), the device is
    released and consistent, and the server serves."""
    rng = random.Random(20261205)
    s = Served(size="32M", limits=limits)
    try:
        keeper = s.client()
        keep = pattern(64 << 10, seed=9)
        keeper.pwrite(keep, 24 * MiB)
        for _ in range(40):
            try:
                c = NbdClient.open(s.sock, "", rng.random() < 0.5)
            except OSError:
                continue
            c.sock.settimeout(2)
            try:
                for _ in range(rng.randrange(1, 6)):
                    cmd = rng.choice([0, 0, 1, 1, 1, 3, 4, 6, 2])
                    length = rng.choice(
                        [PAGE, rng.randrange(1, 3 * MiB), rng.randrange(MiB, 5 * MiB), 70 << 10]
                    )
                    offset = rng.randrange(0, 24 * MiB - length)  # the keeper's data stays
                    flags = rng.choice([0, 0, 0, P.NBD_CMD_FLAG_FUA])
                    c.send(request(cmd, rng.getrandbits(64), offset, length, flags))
                    if cmd == P.NBD_CMD_WRITE:
                        k = length if rng.random() < 0.85 else rng.randrange(0, length)
                        c.send(bytes(k))
                        if k < length:
                            if rng.random() < 0.5:
                                c.sock.shutdown(socket.SHUT_WR)
                            break
                    if cmd == P.NBD_CMD_DISC:
                        break
                if rng.random() < 0.5:
                    c.sock.settimeout(0.05)
                    while c.sock.recv(1 << 20):
                        pass
            except OSError:
                pass
            finally:
                c.close()
        assert keeper.pread(len(keep), 24 * MiB) == keep
        keeper.close()
        deadline = time.monotonic() + 20
        while (s.exports[0].clients or s.server.connections) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.exports[0].clients == 0 and s.server.connections == 0
        with s.client() as c:
            c.pwrite(pattern(PAGE), 0)
            assert c.pread(PAGE, 0) == pattern(PAGE)
        s.dev.check()
    finally:
        s.stop()
