"""``pyzram serve``: an asyncio NBD server whose exports are pyzram devices.

The connection is layered as asyncio keeps protocols and streams apart,
each layer one module with one job:

* :mod:`pyzram.nbd.channel`: bytes in and out, flow control (an
  ``asyncio.BufferedProtocol`` that receives in place, corks replies, and
  pauses reading while the layers above ask it to);
* :mod:`pyzram.nbd.handshake`: the fixed newstyle option haggling, TLS
  (``NBD_OPT_STARTTLS``), the export chosen;
* :mod:`pyzram.nbd.requests`: parsing requests where they lie, their
  validation, large WRITE payloads streamed in pieces;
* :mod:`pyzram.nbd.dispatch`: running requests against the export (device
  batches, the thread pool, large READs streamed) and their replies;

and this module: the listeners, the *shards* (threads with an event loop
each, over which connections are spread), the thread pool, the control
socket, and the bounds of :class:`pyzram.nbd.limits.Limits` that concern
the whole server (connections at once, the handshake's time limit).

Threads.  The main thread's event loop accepts connections, runs the
control socket and waits for SIGINT/SIGTERM.  Each accepted connection goes
to the least loaded of ``threads`` shards, which runs its handshake and
requests.  Requests to one device, from any connection or thread, run
concurrently under zram's own locks (``init_lock`` read side, slot locks)
and the export's stripe locks; there is no server-wide lock.  The loops are
uvloop's by default (``loop="asyncio"`` for the standard one).

Where it listens: a Unix socket (created owner-only, mode 0600, under a
umask so that no other user can connect even for a moment) and/or TCP on
``host`` (127.0.0.1 by default).  An address beyond loopback needs TLS
required (:func:`pyzram.nbd.tls.check_bind`).

Bad input ends in the protocol's error replies or a clean disconnect of
that one connection; a client that vanishes mid-request loses nothing it
was told was written.
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyzram.nbd.channel import Channel
from pyzram.nbd.dispatch import Transmission
from pyzram.nbd.export import Export, ExportSpec
from pyzram.nbd.handshake import Disconnect, negotiate
from pyzram.nbd.limits import Limits
from pyzram.nbd.requests import BATCH_PAGES
from pyzram.nbd.tls import TlsConfig, check_bind

__all__ = [
    "BATCH_PAGES",
    "DEFAULT_LOOP",
    "LOOPS",
    "MAX_INFLIGHT",
    "MAX_PAYLOAD",
    "Limits",
    "NbdServer",
    "ServerThread",
    "build_exports",
    "loop_factory",
    "serve",
]

log = logging.getLogger("pyzram.nbd")

#: The defaults of :class:`Limits`: the most one request may carry, requests in flight.
MAX_PAYLOAD = Limits().max_block_size
MAX_INFLIGHT = Limits().max_inflight
#: Socket send buffer asked for (the kernel caps it at net.core.wmem_max).
_SOCK_BUF = 4 << 20
#: Event loops the server can run on (``--loop``).
LOOPS = ("asyncio", "uvloop")
DEFAULT_LOOP = "uvloop"
#: How long shutdown waits for requests in flight before closing connections.
SHUTDOWN_GRACE_S = 10.0
#: umask while the Unix sockets are bound: they are created mode 0600.
_OWNER_ONLY = 0o177
_umask_lock = threading.Lock()


class Connection:
    """One client on one shard: its channel, the handshake, then its transmission.

    The handshake must end within ``Limits.handshake_timeout`` (qemu-nbd's
    ``handshake-max-seconds``), or the client is dropped.  When the client is
    gone and nothing of it is in flight, the device it held open is released
    and the shard told (:attr:`finished`).
    """

    def __init__(self, server: NbdServer, shard: Shard, sock: socket.socket) -> None:
        self.server = server
        self.shard = shard
        self.chan = Channel(shard.loop, sock, server.limits.send_buffer, self._made)
        self.tx: Transmission | None = None
        self._bdev: Any = None
        self._task: asyncio.Task[None] | None = None
        self._finished = False
        #: Set when the connection is gone and nothing of it is in flight.
        self.finished: asyncio.Future[None] = shard.loop.create_future()

    @property
    def export(self) -> Export | None:
        return self.tx.export if self.tx is not None else None

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.chan.transport

    def _made(self, chan: Channel) -> None:
        chan.on_lost = self.maybe_finish
        self._task = self.shard.loop.create_task(self._negotiate())

    async def _negotiate(self) -> None:
        """The handshake task; on success the transmission phase takes over."""
        chan = self.chan
        negotiated = None
        timeout = self.server.limits.handshake_timeout or None
        try:
            async with asyncio.timeout(timeout):
                negotiated = await negotiate(chan, self.server)
        except TimeoutError:
            log.debug("client dropped: no export chosen within %s s", timeout)
            chan.abort()
        except (asyncio.IncompleteReadError, ConnectionError, Disconnect) as e:
            log.debug("client gone: %s", e)
        except Exception:  # a bug must not take the shard down with it
            log.exception("connection failed")
        if negotiated is not None and chan.lost:
            negotiated.export.detach(negotiated.bdev)
            negotiated = None
        if negotiated is None:
            chan.close()  # what was written still leaves first
            self.maybe_finish()
            return
        self._bdev = negotiated.bdev
        self.tx = Transmission(
            chan, negotiated, self.server.limits, self.server.pool, self.maybe_finish
        )
        self.tx.start()

    async def wait_inflight(self, at_most: int) -> None:
        if self.tx is not None:
            await self.tx.wait_inflight(at_most)

    def maybe_finish(self) -> None:
        """Once the connection is gone, the handshake over and nothing in flight:
        release the device and tell the shard."""
        if self._finished or not self.chan.lost:
            return
        if self.tx is not None and self.tx.inflight:
            return
        if self._task is not None and not self._task.done() and self.tx is None:
            if asyncio.current_task(self.shard.loop) is not self._task:
                return  # _negotiate calls again when it ends
        self._finished = True
        if self.tx is not None:
            self.tx.export.detach(self._bdev)
        self.shard.conns.discard(self)
        self.shard.finished += 1
        if not self.finished.done():
            self.finished.set_result(None)


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

        def factory() -> Channel:
            made.append(self._connection(sock))
            return made[-1].chan

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
                conn.chan.abort()
        deadline = self.loop.time() + grace
        for conn in list(self.conns):
            remaining = max(0.0, deadline - self.loop.time())
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(conn.wait_inflight(0), remaining)
            conn.chan.abort()
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
    shards (:data:`LOOPS`).  ``limits`` bounds what clients can make the
    server hold (:class:`Limits`); ``tls`` offers or requires TLS
    (:class:`pyzram.nbd.tls.TlsConfig`), which a ``host`` beyond loopback
    needs (``ValueError`` otherwise, before anything is bound).
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
        limits: Limits | None = None,
        tls: TlsConfig | None = None,
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
        self.limits = limits or Limits()
        self.tls = tls
        if port is not None:
            check_bind(host, tls)
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
                with owner_only():
                    try:
                        lsock.bind(self.socket_path)
                    except OSError as e:  # say which socket: bind(2)'s errors name no path
                        raise OSError(e.errno, e.strerror, self.socket_path) from None
                self._created.append(self.socket_path)
            if self.port is not None:
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                lsock = socket.create_server((self.host, self.port), family=family, backlog=128)
                self._listeners.append(lsock)
                self.port = lsock.getsockname()[1]
            if self.ctl_path is not None:
                from pyzram.nbd.control import ControlServer

                _claim_socket_path(self.ctl_path)
                self._ctl = ControlServer(self, self.ctl_path)
                with owner_only():
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
            if self.connections >= self.limits.max_connections:
                # As nbdkit's limit filter: refused at once, not left waiting.
                log.debug("connection refused: %d connections at once", self.connections)
                sock.close()
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
        scheme = "nbds" if self.tls is not None and self.tls.require else "nbd"
        if self.socket_path is not None:
            out.append(f"{scheme}+unix:///{name}?socket={self.socket_path}")
        if self.port is not None:
            host = f"[{self.host}]" if ":" in self.host else self.host
            out.append(f"{scheme}://{host}:{self.port}/{name}")
        return out


@contextlib.contextmanager
def owner_only() -> Any:
    """Files made inside are created without group or other permissions (umask 0177).

    A socket is created by ``bind`` with the mode the umask leaves; setting
    it there (not ``chmod`` after) leaves no moment when another user could
    connect.  The umask is the process's: the lock keeps two servers of one
    process from restoring each other's.
    """
    with _umask_lock:
        old = os.umask(_OWNER_ONLY)
        try:
            yield
        finally:
            os.umask(old)


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
    limits: Limits | None = None,
    tls: TlsConfig | None = None,
    banner: bool = True,
) -> None:
    """``pyzram serve``: build the devices, serve until SIGINT/SIGTERM."""
    if port is not None:
        check_bind(host, tls)  # before building devices
    exports = build_exports(specs)
    server = NbdServer(
        exports,
        socket_path=socket_path,
        port=port,
        host=host,
        ctl_path=ctl_path,
        threads=threads,
        loop=loop,
        limits=limits,
        tls=tls,
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
