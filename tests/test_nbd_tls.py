"""``pyzram serve`` over TLS and on other addresses: NBD_OPT_STARTTLS with X.509.

Certificates are made for each test run with ``openssl`` (an authority, a
server certificate for 127.0.0.1 and ::1, a client certificate).  Real
clients: ``nbdinfo`` (libnbd, GnuTLS) and ``qemu-img`` (``tls-creds-x509``);
a client without the credentials must learn nothing, not even the export
list.  Only loopback addresses are ever bound or contacted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pyzram.nbd import protocol as P
from pyzram.nbd.client import NbdClient, NbdOptionError
from pyzram.nbd.control import control_path
from pyzram.nbd.export import ExportSpec
from pyzram.nbd.limits import Limits
from pyzram.nbd.server import DEFAULT_LOOP, LOOPS, NbdServer, ServerThread, build_exports
from pyzram.nbd.tls import TlsConfig, check_bind, is_loopback, server_context
from pyzram.tools.cli import main
from test_nbd_tools import need, tools  # noqa: F401  (the fixture)

PAGE = 4096
MiB = 1 << 20

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _issue(d: Path, name: str, cn: str, ext: str) -> None:
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}-key.pem",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={cn}",
        cwd=d,
    )
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca-cert.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        f"{name}-cert.pem",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=d,
    )


@pytest.fixture(scope="module")
def pki() -> dict[str, Path]:
    """``server`` (server-cert/key, ca-cert), ``client`` (ca-cert, client-cert/key),
    ``anon`` (ca-cert only) and ``stranger`` (a client certificate of another CA)."""
    root = Path(tempfile.mkdtemp(prefix="pyzram-pki-"))
    ca, other = root / "ca", root / "other"
    for d, cn in ((ca, "pyzram test CA"), (other, "another CA")):
        d.mkdir()
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca-cert.pem",
            "-days",
            "2",
            "-subj",
            f"/CN={cn}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d,
        )
    _issue(
        ca,
        "server",
        "127.0.0.1",
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    client_ext = (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,"
        "keyEncipherment\nextendedKeyUsage=clientAuth\n"
    )
    _issue(ca, "client", "pyzram client", client_ext)
    _issue(other, "client", "stranger", client_ext)
    out = {k: root / k for k in ("server", "client", "anon", "stranger")}
    for d in out.values():
        d.mkdir()
        shutil.copy(ca / "ca-cert.pem", d / "ca-cert.pem")
    for f in ("server-cert.pem", "server-key.pem"):
        shutil.copy(ca / f, out["server"] / f)
    for f in ("client-cert.pem", "client-key.pem"):
        shutil.copy(ca / f, out["client"] / f)
        shutil.copy(other / f, out["stranger"] / f)
    yield out
    shutil.rmtree(root, ignore_errors=True)


class Served(ServerThread):
    def __init__(
        self,
        pki_dir: Path | None,
        *,
        require: bool = True,
        verify_peer: bool = False,
        host: str = "127.0.0.1",
        loop: str = DEFAULT_LOOP,
        limits: Limits | None = None,
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyzram-nbd-")
        self.sock = os.path.join(self.dir, "nbd.sock")
        tls = None
        if pki_dir is not None:
            tls = TlsConfig(server_context(pki_dir, verify_peer=verify_peer), require=require)
        try:
            super().__init__(
                build_exports([ExportSpec("", {"disksize": "16M"})]),
                socket_path=self.sock,
                ctl_path=control_path(self.sock),
                port=0,
                host=host,
                threads=2,
                tls=tls,
                loop=loop,
                limits=limits,
            )
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def dev(self):
        return self.exports[0].dev

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def text(n: int, seed: int = 0) -> bytes:
    return ((f"tls {seed} " * 1000).encode() * (n // 4000 + 1))[:n]


def tls_client(port: int, cafile: Path, certdir: Path | None = None) -> NbdClient:
    """A client that negotiates STARTTLS, then goes on inside TLS."""
    c = NbdClient(host="127.0.0.1", port=port)
    c.greet()
    (reply,) = c.option(P.NBD_OPT_STARTTLS)
    assert reply.reply == P.NBD_REP_ACK
    ctx = ssl.create_default_context(cafile=str(cafile))
    if certdir is not None:
        ctx.load_cert_chain(certdir / "client-cert.pem", certdir / "client-key.pem")
    c.sock = ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
    return c


@pytest.mark.parametrize("loop", LOOPS)
def test_starttls_then_io_inside_tls(pki, loop):
    s = Served(pki["server"], loop=loop)
    try:
        c = tls_client(s.port, pki["anon"] / "ca-cert.pem")
        assert c.list_exports() == [""]
        c.structured_reply()
        info = c.go("")
        assert info.size == 16 * MiB
        assert info.block_size == (1, PAGE, 32 * MiB)
        c.pwrite(text(3 * MiB, 1), 5)  # a streamed write through TLS
        assert c.pread(3 * MiB, 5) == text(3 * MiB, 1)
        # STARTTLS again: NBD_REP_ERR_INVALID (TLS is on already).
        c.close()
        c = tls_client(s.port, pki["anon"] / "ca-cert.pem")
        with pytest.raises(NbdOptionError) as e:
            c.option(P.NBD_OPT_STARTTLS)
        assert e.value.reply == P.NBD_REP_ERR_INVALID
        c.close()
        assert s.dev.pread(PAGE, 0)[5:] == text(PAGE - 5, 1)
    finally:
        s.stop()


def test_a_client_without_tls_gets_nothing(pki):
    s = Served(pki["server"])
    try:
        c = NbdClient(host="127.0.0.1", port=s.port)
        c.greet()
        for option, data in (
            (P.NBD_OPT_LIST, b""),
            (P.NBD_OPT_INFO, NbdClient.info_request("", ())),
            (P.NBD_OPT_GO, NbdClient.info_request("", ())),
            (P.NBD_OPT_STRUCTURED_REPLY, b""),
        ):
            with pytest.raises(NbdOptionError) as e:
                c.option(option, data)
            assert e.value.reply == P.NBD_REP_ERR_TLS_REQD
        c.send_option(P.NBD_OPT_EXPORT_NAME, b"")  # no error reply exists: disconnected
        assert c.closed_by_server()
        c.close()
        # Plaintext sent right behind STARTTLS is not taken as TLS data: disconnected.
        c = NbdClient(host="127.0.0.1", port=s.port)
        c.greet()
        c.send(
            P.OPTION.pack(P.IHAVEOPT, P.NBD_OPT_STARTTLS, 0)
            + P.OPTION.pack(P.IHAVEOPT, P.NBD_OPT_LIST, 0)
        )
        assert c.closed_by_server()
        c.close()
        assert s.exports[0].clients == 0
    finally:
        s.stop()


def test_a_client_stalled_in_the_tls_handshake_is_dropped(pki):
    s = Served(pki["server"], limits=Limits(handshake_timeout=0.5))
    try:
        c = NbdClient(host="127.0.0.1", port=s.port)
        c.greet()
        (reply,) = c.option(P.NBD_OPT_STARTTLS)
        assert reply.reply == P.NBD_REP_ACK  # and then no ClientHello
        assert c.closed_by_server(5)
        c.close()
    finally:
        s.stop()


def test_tls_on_serves_plaintext_and_tls(pki):
    """``--tls on`` offers STARTTLS and lets plaintext clients in too (nbdkit's --tls=on)."""
    s = Served(pki["server"], require=False)
    try:
        with NbdClient(host="127.0.0.1", port=s.port) as c:
            c.greet()
            c.go("")
            c.pwrite(text(PAGE, 5), 0)
        c = tls_client(s.port, pki["anon"] / "ca-cert.pem")
        c.go("")
        assert c.pread(PAGE, 0) == text(PAGE, 5)
        c.close()
    finally:
        s.stop()


def test_verify_peer_refuses_clients_without_a_certificate_of_the_ca(pki):
    s = Served(pki["server"], verify_peer=True)
    try:
        for certdir in (None, pki["stranger"]):
            with pytest.raises((ssl.SSLError, OSError)):
                c = tls_client(s.port, pki["anon"] / "ca-cert.pem", certdir)
                c.list_exports()  # TLS 1.3: the server's refusal comes with the first read
        c = tls_client(s.port, pki["client"] / "ca-cert.pem", pki["client"])
        c.go("")
        c.pwrite(text(PAGE, 2), 0)
        assert c.pread(PAGE, 0) == text(PAGE, 2)
        c.close()
    finally:
        s.stop()


def test_nbdinfo_and_qemu_img_over_tls(tools, pki, tmp_path):  # noqa: F811
    need(tools, "libnbd-bin", "qemu-utils")
    s = Served(pki["server"], verify_peer=True)
    try:
        uri = f"nbds://127.0.0.1:{s.port}/?tls-certificates={pki['client']}"
        r = subprocess.run(["nbdinfo", "--json", uri], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["exports"][0]["export-size"] == 16 * MiB
        assert info["TLS"] is True
        src = tmp_path / "img.raw"
        src.write_bytes(text(2 * MiB, 3))
        opts = f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={s.port}"
        creds = f"tls-creds-x509,id=tls0,dir={pki['client']},endpoint=client"
        r = subprocess.run(
            [
                "qemu-img",
                "convert",
                "-n",
                "-f",
                "raw",
                str(src),
                "--object",
                creds,
                "--target-image-opts",
                f"{opts},tls-creds=tls0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert s.dev.pread(2 * MiB, 0) == text(2 * MiB, 3)
        r = subprocess.run(
            [
                "qemu-img",
                "info",
                "--output=json",
                "--object",
                creds,
                "--image-opts",
                f"{opts},tls-creds=tls0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["virtual-size"] == 16 * MiB
        # Without the credentials: nothing.
        for cmd in (
            ["nbdinfo", "--json", f"nbd://127.0.0.1:{s.port}/"],
            ["nbdinfo", "--list", f"nbd://127.0.0.1:{s.port}/"],
            ["nbdinfo", "--json", f"nbds://127.0.0.1:{s.port}/?tls-certificates={pki['anon']}"],
            ["qemu-img", "info", f"nbd://127.0.0.1:{s.port}/"],
        ):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            assert r.returncode != 0, cmd
            assert str(16 * MiB) not in r.stdout and "16 MiB" not in r.stdout
    finally:
        s.stop()


# -- addresses and sockets --------------------------------------------------------------


def test_binding_beyond_loopback_needs_tls(pki):
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert not is_loopback("::")
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        with pytest.raises(ValueError, match="needs TLS"):
            check_bind(host, None)
        with pytest.raises(ValueError, match="needs TLS"):  # refused before any bind
            NbdServer(build_exports([ExportSpec("", {"disksize": "1M"})]), port=0, host=host)
    on = TlsConfig(server_context(pki["server"]), require=False)
    with pytest.raises(ValueError, match="needs TLS"):
        check_bind("0.0.0.0", on)
    check_bind("0.0.0.0", TlsConfig(on.context, require=True))  # allowed (not bound here)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyzram",
            "serve",
            "--size",
            "1M",
            "--port",
            "0",
            "--bind",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "needs TLS" in r.stderr


@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
def test_bind_other_loopback_addresses(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = socket.socket(family)
        probe.bind((host, 0))
        probe.close()
    except OSError:
        pytest.skip(f"{host} cannot be bound here")
    s = Served(None, host=host)
    try:
        c = NbdClient(host=host, port=s.port)
        c.greet()
        c.go("")
        c.pwrite(text(PAGE, 4), 0)
        assert c.pread(PAGE, 0) == text(PAGE, 4)
        c.close()
        assert any(host in u for u in s.server.where())
    finally:
        s.stop()


def test_sockets_are_created_owner_only():
    old = os.umask(0)  # even under a permissive umask
    try:
        s = Served(None)
    finally:
        os.umask(old)
    try:
        for path in (s.sock, control_path(s.sock)):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert os.umask(old) == old  # the server restored the process's umask
    finally:
        s.stop()


def test_serve_command_with_tls(tools, pki):  # noqa: F811
    """``pyzram serve --tls-certificates``: the banner's nbds URIs, nbdinfo over TLS."""
    need(tools, "libnbd-bin")
    d = tempfile.mkdtemp(prefix="pyzram-nbd-")
    sock = os.path.join(d, "s.sock")
    cmd = [sys.executable, "-m", "pyzram", "serve", "--socket", sock, "--size", "8M"]
    cmd += ["--port", "0", "--tls-certificates", str(pki["server"]), "--tls-verify-peer"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = [proc.stdout.readline() for _ in range(4)]
        assert banner[1].strip() == f"pyzram: serving nbds+unix:///?socket={sock}"
        uri = banner[2].split()[-1]
        assert uri.startswith("nbds://127.0.0.1:")
        for u in (uri, f"nbds+unix:///?socket={sock}"):
            sep = "&" if "?" in u else "?"
            r = subprocess.run(
                ["nbdinfo", "--size", f"{u}{sep}tls-certificates={pki['client']}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == str(8 * MiB)
        r = subprocess.run(
            ["nbdinfo", "--size", f"nbd+unix:///?socket={sock}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode != 0 and not r.stdout.strip()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def test_serve_command_option_errors_are_one_line(tmp_path, pki, capsys):
    sock = str(tmp_path / "s")
    for args, words, code in (  # usage errors exit 2, failures (a missing file) 1
        (("--max-block-size", "1000"), "--max-block-size must be a multiple of 4096", 2),
        (("--max-inflight-bytes", "lots"), "--max-inflight-bytes 'lots'", 2),
        (("--max-connections", "0"), "--max-connections must be at least 1", 2),
        (("--tls", "maybe"), "--tls 'maybe'", 2),
        (("--tls", "off", "--tls-certificates", str(pki["server"])), "--tls off", 2),
        (("--tls-certificates", str(tmp_path)), "server-cert.pem", 1),
        (("--bind", "::1"), "--bind goes with --port", 2),
        (("--port", "0", "--bind", "0.0.0.0"), "needs TLS", 2),
    ):
        assert main(["serve", "--socket", sock, "--size", "1M", *args]) == code, args
        err = capsys.readouterr().err
        assert err.startswith("pyzram: error: ") and words in err, (args, err)
        assert err.count("\n") == 1
        assert not os.path.exists(sock)  # refused before anything was bound
