"""TLS for ``pyzram serve``, as nbdkit and qemu-nbd offer it: X.509 through ``NBD_OPT_STARTTLS``.

Credentials are a directory laid out as nbdkit's ``--tls-certificates`` and
qemu's ``tls-creds-x509`` expect: ``server-cert.pem`` and ``server-key.pem``
(the server's certificate chain and key) and, to check clients
(``--tls-verify-peer``), ``ca-cert.pem`` (the authority whose certificates
clients must present).  The modes are nbdkit's ``--tls``: ``off``, ``on``
(``STARTTLS`` offered, plaintext allowed) and ``require`` (every option but
``STARTTLS`` and ``ABORT`` refused with ``NBD_REP_ERR_TLS_REQD`` until TLS
is up).  TLS 1.2 is the least version accepted.

Pre-shared keys (nbdkit's ``--tls-psk``) need ``SSLContext.set_psk_server_callback``,
which Python's ``ssl`` has from 3.13 on; :func:`server_context` says so
where it is missing.

A server reachable from other machines must not serve plaintext: binding a
TCP address that is not loopback (:func:`is_loopback`) needs ``--tls
require`` (:func:`check_bind`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass

__all__ = ["TLS_MODES", "TlsConfig", "check_bind", "is_loopback", "server_context"]

TLS_MODES = ("off", "on", "require")


@dataclass(frozen=True)
class TlsConfig:
    """A server's TLS: the context, whether it is required, the TLS handshake's limit."""

    context: ssl.SSLContext
    require: bool = True
    handshake_timeout: float | None = 10.0


def server_context(
    certificates: str | os.PathLike[str] | None = None,
    *,
    verify_peer: bool = False,
    psk_file: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """The server's :class:`ssl.SSLContext` from an X.509 directory (see the module).

    Errors: ``OSError`` naming the missing file, ``ssl.SSLError`` for a bad
    one, ``ValueError`` for PSK where ``ssl`` cannot do it.
    """
    if psk_file is not None:
        if not hasattr(ssl.SSLContext, "set_psk_server_callback"):
            raise ValueError(
                "--tls-psk: this Python's ssl module has no pre-shared keys"
                " (Python 3.13 or later has them); use --tls-certificates"
            )
        raise ValueError("--tls-psk is not supported; use --tls-certificates")
    if certificates is None:
        raise ValueError("TLS needs --tls-certificates DIR")
    d = os.fspath(certificates)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = os.path.join(d, "server-cert.pem"), os.path.join(d, "server-key.pem")
    for path in (cert, key):
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such file (--tls-certificates)", path)
    ctx.load_cert_chain(cert, key)
    if verify_peer:
        ca = os.path.join(d, "ca-cert.pem")
        if not os.path.isfile(ca):
            raise FileNotFoundError(2, "No such file (--tls-verify-peer needs it)", ca)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos
    )


def check_bind(host: str, tls: TlsConfig | None) -> None:
    """Refuse (``ValueError``) a non-loopback address without required TLS."""
    if not is_loopback(host) and (tls is None or not tls.require):
        raise ValueError(
            f"--bind {host}: an address beyond loopback needs TLS"
            " (--tls-certificates DIR, --tls require)"
        )
