"""The control socket of ``pyzram serve``: zramctl's view and the sysfs of served devices.

A running server's devices live in its process, so ``pyzram ctl --socket``
reaches them through a second Unix socket beside the NBD one (``PATH.ctl``
for ``--socket PATH``, mode 0600 like the NBD socket; ``--ctl`` picks another
path).  NBD has no option for this, and a private option number could
collide with a future one, hence the side channel.

The protocol is one JSON object per line, each way:

* ``{"op": "list"}`` -> ``{"ok": true, "devices": [STATE, ...]}``, each
  ``STATE`` a :func:`pyzram.tools.commands.ctl.device_state` dict (so
  :func:`pyzram.tools.commands.ctl.format_table` prints it as zramctl would) with its
  ``mountpoint`` set to the export (``[NBD]`` for the default one, ``[NBD:NAME]``),
  plus ``export`` (the name) and ``clients`` (connections using it);
* ``{"op": "read", "device": D, "attr": A}`` -> ``{"ok": true, "value": TEXT}``;
* ``{"op": "write", "device": D, "attr": A, "value": TEXT}`` -> ``{"ok": true,
  "written": N}``.

``D`` is an export name or a device name (``zram0``).  ``A`` and ``TEXT`` are
sysfs's own words: ``mm_stat``, ``compact``, ``idle``, ``writeback``,
``recompress``, ``reset`` ... with the kernel's formats and errnos.  A failure
is ``{"ok": false, "errno": N, "error": MESSAGE}``, which the client raises as
``OSError(N, MESSAGE)``; so ``reset`` of a device a client is using is
``EBUSY``, as for an open ``/dev/zramN``.  Attribute work runs on its own
threads, so a long ``writeback`` does not stall NBD traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pyzram.nbd.export import Export, find_export

if TYPE_CHECKING:
    from pyzram.nbd.server import NbdServer

__all__ = ["ControlClient", "ControlServer", "control_path", "device_states", "handle_request"]

#: Longest request line the server accepts.
MAX_LINE = 1 << 20


def control_path(path: str | os.PathLike[str]) -> str:
    """The control socket for ``path``: ``path`` if it ends in ``.ctl``, else ``path.ctl``."""
    p = os.fspath(path)
    return p if p.endswith(".ctl") else p + ".ctl"


def device_states(exports: list[Export]) -> list[dict[str, Any]]:
    """zramctl states of the exports' devices, in device order."""
    from pyzram.tools.commands.ctl import device_state

    out = []
    for e in exports:
        state = device_state(e.dev, mountpoint=e.label)
        state["export"] = e.name
        state["clients"] = e.clients
        out.append(state)
    return out


def handle_request(exports: list[Export], req: Any) -> dict[str, Any]:
    """Answer one control request (runs on a control thread)."""
    try:
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            raise OSError(errno.EINVAL, 'a request is a JSON object with an "op"')
        op = req["op"]
        if op == "list":
            return {"ok": True, "devices": device_states(exports)}
        if op not in ("read", "write"):
            raise OSError(errno.EINVAL, f"unknown op {op!r} (list, read, write)")
        device, attr = req.get("device"), req.get("attr")
        if not isinstance(device, str) or not isinstance(attr, str):
            raise OSError(errno.EINVAL, f'"{op}" needs "device" and "attr" strings')
        export = find_export(exports, device)
        if op == "read":
            return {"ok": True, "value": export.dev.sysfs[attr]}
        value = req.get("value")
        if not isinstance(value, str):
            raise OSError(errno.EINVAL, '"write" needs a "value" string')
        return {"ok": True, "written": export.dev.sysfs.write(attr, value)}
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EIO
        return {"ok": False, "errno": code, "error": e.strerror or str(e)}


class ControlServer:
    """The listening side, inside ``pyzram serve``."""

    def __init__(self, server: NbdServer, path: str) -> None:
        self.server = server
        self.path = path
        self._srv: asyncio.AbstractServer | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pyzram-ctl")
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._srv = await asyncio.start_unix_server(self._client, self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: answer, then hang up
                    writer.write(_encode(_error(errno.E2BIG, "request line too long")))
                    break
                if not line:
                    break
                try:
                    req = json.loads(line)
                except ValueError as e:
                    resp = _error(errno.EINVAL, f"not JSON: {e}")
                else:
                    exports = self.server.exports
                    resp = await loop.run_in_executor(self._pool, handle_request, exports, req)
                writer.write(_encode(resp))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._srv is not None:
            self._srv.close()
            for w in list(self._writers):
                w.transport.abort()
            with contextlib.suppress(Exception):
                await self._srv.wait_closed()
            self._srv = None
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"ok": False, "errno": code, "error": message}


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


class ControlClient:
    """The calling side: ``pyzram ctl --socket`` and tests.

    Errors are ``OSError`` with the server's errno (``ENOENT`` for a device or
    attribute that is not there, ``EBUSY``, ``EINVAL`` ...), or the
    connection's own (a path with no server behind it).
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = 60.0) -> None:
        self.path = control_path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as e:
            self._sock.close()
            raise OSError(e.errno, e.strerror, self.path) from None
        self._file = self._sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, **req: Any) -> dict[str, Any]:
        self._sock.sendall(_encode(req))
        line = self._file.readline()
        if not line:
            raise OSError(errno.ECONNRESET, "the server closed the control connection", self.path)
        resp = json.loads(line)
        if not resp.get("ok"):
            raise OSError(resp.get("errno", errno.EIO), resp.get("error", "control request failed"))
        return resp

    def states(self) -> list[dict[str, Any]]:
        """zramctl states of the served devices (see :func:`device_states`)."""
        return self.request(op="list")["devices"]

    def read(self, device: str, attr: str) -> str:
        """The text of ``/sys/block/DEVICE/ATTR`` of a served device."""
        return self.request(op="read", device=device, attr=attr)["value"]

    def write(self, device: str, attr: str, value: str) -> int:
        """Write ``value`` to the attribute, as ``echo VALUE > .../ATTR`` would."""
        return self.request(op="write", device=device, attr=attr, value=value)["written"]


def ctl_socket(
    path: str | os.PathLike[str],
    *,
    device: str | None,
    reads: list[str],
    writes: list[str],
    columns: list[str],
    bytes_: bool,
    raw: bool,
    noheadings: bool,
    as_json: bool,
) -> str:
    """``pyzram ctl --socket``: writes (in order), then reads, else the listing; the text to print.

    ``writes`` are ``ATTR=VALUE``; without ``device`` they go to the only
    device, and more than one device is an error (``EINVAL``) naming them.
    """
    from pyzram.tools.commands import ctl as c

    with ControlClient(path) as client:
        if not reads and not writes:
            states = client.states()
            if as_json:
                return c.format_json(states, columns, bytes_=bytes_)
            return c.format_table(states, columns, bytes_=bytes_, raw=raw, noheadings=noheadings)
        if device is None:
            states = client.states()
            if len(states) != 1:
                names = ", ".join(s["name"] for s in states)
                raise OSError(errno.EINVAL, f"several devices ({names}): choose one with --device")
            device = states[0]["name"]
        for item in writes:
            attr, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"--write {item!r}: expected ATTR=VALUE")
            client.write(device, attr, value)
        return "".join(client.read(device, attr) for attr in reads)
