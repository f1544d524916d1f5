"""``pyzram serve``: pyzram devices over NBD."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pyzram.tools.common import ALGO_HELP


def serve(
    socket: Annotated[
        Path | None, typer.Option("--socket", help="listen on this Unix socket")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="listen on 127.0.0.1:PORT (0: any free port)")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option("--size", help="serve one device of this disksize as the default export"),
    ] = None,
    algo: Annotated[
        str | None, typer.Option("--algorithm", "-a", help="with --size: " + ALGO_HELP)
    ] = None,
    backing_dev: Annotated[
        Path | None, typer.Option("--backing-dev", help="with --size: a file as zram's backing_dev")
    ] = None,
    export: Annotated[
        list[str] | None,
        typer.Option(
            "--export",
            help="NAME:size=SIZE[,key=value...], repeatable, one device each; keys: "
            "algorithm, backing_dev, mem_limit, description, other sysfs attributes",
        ),
    ] = None,
    ctl_socket: Annotated[
        Path | None, typer.Option("--ctl", help="control socket (default: SOCKET.ctl)")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="threads serving connections, and for large requests (min(4, CPUs))"),
    ] = None,
    loop: Annotated[
        str, typer.Option(help="event loop: uvloop (libuv, the default) or asyncio (stdlib)")
    ] = "uvloop",
) -> None:
    """Serve pyzram devices over NBD (nbdcopy, qemu-img, fio ... can use them) until SIGINT."""
    from pyzram.nbd.control import control_path
    from pyzram.nbd.export import ExportSpec, parse_export_spec
    from pyzram.nbd.server import serve as run_server

    specs = []
    if size is not None:
        attrs = {"disksize": size}
        if algo is not None:
            attrs["comp_algorithm"] = algo
        if backing_dev is not None:
            attrs["backing_dev"] = str(backing_dev)
        specs.append(ExportSpec("", attrs))
    elif algo is not None or backing_dev is not None:
        raise ValueError("--algorithm and --backing-dev go with --size (or use --export)")
    specs += [parse_export_spec(text) for text in export or []]
    ctl_path = ctl_socket if ctl_socket is not None else socket and control_path(socket)
    run_server(
        specs,
        socket_path=str(socket) if socket is not None else None,
        port=port,
        ctl_path=str(ctl_path) if ctl_path is not None else None,
        threads=threads,
        loop=loop,
    )


command = serve
