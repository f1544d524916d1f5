"""``pyzram serve``: pyzram devices over NBD."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pyzram.tools.common import ALGO_HELP, UsageError


def serve(
    socket: Annotated[
        Path | None, typer.Option("--socket", help="listen on this Unix socket")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="listen on TCP PORT of --bind (0: any free port)"),
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
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            help="with --port: the address to listen on; beyond loopback "
            "(127.0.0.0/8, ::1) it needs --tls require",
        ),
    ] = "127.0.0.1",
    tls: Annotated[
        str | None,
        typer.Option(
            "--tls",
            help="off, on (NBD_OPT_STARTTLS offered) or require (nothing but STARTTLS "
            "before TLS); default: require with --tls-certificates, else off",
        ),
    ] = None,
    tls_certificates: Annotated[
        Path | None,
        typer.Option(
            "--tls-certificates",
            help="X.509 directory: server-cert.pem, server-key.pem (and ca-cert.pem "
            "for --tls-verify-peer), as nbdkit and qemu's tls-creds-x509 use",
        ),
    ] = None,
    tls_verify_peer: Annotated[
        bool,
        typer.Option(
            "--tls-verify-peer", help="clients must present a certificate signed by ca-cert.pem"
        ),
    ] = False,
    max_connections: Annotated[
        int, typer.Option(help="connections served at once; more are closed at once")
    ] = 64,
    handshake_timeout: Annotated[
        float,
        typer.Option(help="seconds a client may take to choose an export (0: no limit)"),
    ] = 10.0,
    max_block_size: Annotated[
        str,
        typer.Option(
            help="largest request (NBD_INFO_BLOCK_SIZE maximum); a READ over it is "
            "EINVAL (EOVERFLOW with DF), a WRITE over it EINVAL"
        ),
    ] = "32M",
    max_inflight: Annotated[
        int, typer.Option(help="requests one connection may have in flight before it is not read")
    ] = 64,
    max_inflight_bytes: Annotated[
        str,
        typer.Option(
            help="bytes of READ/WRITE data (and BLOCK_STATUS replies) one connection may have "
            "in flight before it is not read"
        ),
    ] = "8M",
    send_buffer: Annotated[
        str,
        typer.Option(help="unsent reply bytes of one connection past which it is not read"),
    ] = "2M",
) -> None:
    """Serve pyzram devices over NBD (nbdcopy, qemu-img, fio ... can use them) until SIGINT.

    Every bound on what a client can make the server hold is an option: one
    connection holds at most about its 256 KiB input buffer,
    --max-inflight-bytes, --send-buffer and two 1 MiB pieces of a large
    request (READs and WRITEs over 1 MiB are streamed in pieces): about
    13 MiB at the defaults. TLS, once required, is required on every
    listener, the Unix socket included.
    """
    from pyzram.nbd.control import control_path
    from pyzram.nbd.export import ExportSpec, parse_export_spec
    from pyzram.nbd.limits import Limits, parse_size
    from pyzram.nbd.server import serve as run_server
    from pyzram.nbd.tls import TLS_MODES, TlsConfig, check_bind, server_context

    try:  # the bounds' own checks name their option: a usage error
        limits = Limits(
            max_block_size=parse_size(max_block_size, "--max-block-size"),
            max_connections=max_connections,
            handshake_timeout=handshake_timeout,
            max_inflight=max_inflight,
            max_inflight_bytes=parse_size(max_inflight_bytes, "--max-inflight-bytes"),
            send_buffer=parse_size(send_buffer, "--send-buffer"),
        )
    except ValueError as e:
        raise UsageError(None, str(e)) from None
    if port is None and bind != "127.0.0.1":
        raise UsageError(None, "--bind goes with --port (it is the TCP address)")
    mode = tls if tls is not None else ("require" if tls_certificates is not None else "off")
    if mode not in TLS_MODES:
        raise UsageError(None, f"--tls {mode!r}: expected one of {', '.join(TLS_MODES)}")
    tls_config = None
    if mode != "off":
        context = server_context(tls_certificates, verify_peer=tls_verify_peer)
        tls_config = TlsConfig(context, require=mode == "require")
    elif tls_certificates is not None or tls_verify_peer:
        raise UsageError(None, "--tls off: --tls-certificates and --tls-verify-peer need TLS on")
    if port is not None:
        try:
            check_bind(bind, tls_config)
        except ValueError as e:
            raise UsageError(None, str(e)) from None

    specs = []
    if size is not None:
        attrs = {"disksize": size}
        if algo is not None:
            attrs["comp_algorithm"] = algo
        if backing_dev is not None:
            attrs["backing_dev"] = str(backing_dev)
        specs.append(ExportSpec("", attrs))
    elif algo is not None or backing_dev is not None:
        raise UsageError(None, "--algorithm and --backing-dev go with --size (or use --export)")
    try:  # what the export specs and the server refuse before serving: usage errors
        specs += [parse_export_spec(text) for text in export or []]
        ctl_path = ctl_socket if ctl_socket is not None else socket and control_path(socket)
        run_server(
            specs,
            socket_path=str(socket) if socket is not None else None,
            port=port,
            ctl_path=str(ctl_path) if ctl_path is not None else None,
            threads=threads,
            loop=loop,
            host=bind,
            limits=limits,
            tls=tls_config,
        )
    except ValueError as e:
        raise UsageError(None, str(e)) from None


command = serve
