"""``pyzram bench nbd``: fio over NBD against ``pyzram serve`` and ``nbdkit memory allocator=zstd``.

Both servers run on this machine in the same run, one after the other, on a
Unix socket each, and fio's ``nbd`` engine (libnbd) drives the same four
jobs against each:

* ``seqwrite`` / ``seqread``: sequential ``bs`` (1 MiB) requests, ``iodepth`` 4;
* ``randwrite`` / ``randread``: random 4 KiB requests, ``iodepth`` (16).

Each job runs ``runtime`` seconds (time based) over the first ``region``
bytes of the export; the sequential write runs first, so every read finds
data.  Written buffers are ``buffer_compress_percentage`` compressible (fio
mixes random bytes and zeros, and refills every buffer), so neither server
stores one block over and over.  With ``repeat`` > 1 the targets alternate
and each figure is the best of its runs, which tames a noisy shared VM.

Each row also has the server's CPU time per request (user + system of the
server process, all threads, from ``/proc/PID/stat``), which a busy shared
machine disturbs less than IOPS.  pyzram's ``mm_stat`` after its runs is
read through the control socket, to show what the device made of fio's data.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["JOBS", "NbdBenchRow", "bench_nbd", "unavailable_reason"]

#: (name, fio rw, block size or None for the sequential ``bs``, iodepth or None for the default)
JOBS: tuple[tuple[str, str, str | None, int | None], ...] = (
    ("seqwrite", "write", None, 4),
    ("seqread", "read", None, 4),
    ("randwrite", "randwrite", "4k", None),
    ("randread", "randread", "4k", None),
)

_READY_TIMEOUT_S = 30.0


@dataclass
class NbdBenchRow:
    """One job against one server: best IOPS and MB/s over the repeats."""

    target: str
    job: str
    bs: str
    iodepth: int
    iops: float
    mb_s: float
    #: Server CPU time (user + system, all its threads) per request, best run;
    #: steadier than IOPS on a shared machine.  None where /proc is not readable.
    server_cpu_us: float | None = None
    runs: list[float] = field(default_factory=list)  # IOPS of every repeat

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unavailable_reason(nbdkit: bool = True) -> str | None:
    """Why the benchmark cannot run here (a missing program), or None."""
    need = ["fio"] + (["nbdkit"] if nbdkit else [])
    missing = [p for p in need if shutil.which(p) is None]
    if missing:
        return f"{' and '.join(missing)} not found (Debian: apt-get install {' '.join(missing)})"
    return None


def _wait_for_socket(path: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until a server accepts on ``path`` (or the process dies: OSError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OSError(errno.ECHILD, f"server exited with status {proc.returncode}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.05)
    raise OSError(errno.ETIMEDOUT, f"no server on {path} after {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (all threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _fio(
    uri: str, rw: str, bs: str, iodepth: int, runtime: float, region: str, compress: int
) -> tuple[float, float, int]:
    """Run one fio job; IOPS, MB/s and the number of requests of its direction."""
    cmd = [
        "fio",
        "--name=job",
        "--ioengine=nbd",
        f"--uri={uri}",
        f"--rw={rw}",
        f"--bs={bs}",
        f"--iodepth={iodepth}",
        f"--size={region}",
        f"--runtime={runtime}",
        "--time_based=1",
        f"--buffer_compress_percentage={compress}",
        "--output-format=json",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=runtime + 120)
    if res.returncode != 0:
        msg = (res.stderr or res.stdout).strip().splitlines()
        raise OSError(errno.EIO, f"fio {rw} failed: {msg[-1] if msg else res.returncode}")
    text = res.stdout
    job = json.loads(text[text.index("{") :])["jobs"][0]
    side = job["read" if "read" in rw else "write"]
    return float(side["iops"]), float(side["bw_bytes"]) / 1e6, int(side["total_ios"])


def _start_pyzram(
    sock: str, size: str, algorithm: str, threads: int | None, loop: str
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "pyzram", "serve", "--socket", sock, "--size", size]
    cmd += ["--algorithm", algorithm, "--loop", loop]
    if threads:
        cmd += ["--threads", str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _start_nbdkit(sock: str, size: str) -> subprocess.Popen[bytes]:
    cmd = ["nbdkit", "-f", "-U", sock, "memory", size, "allocator=zstd"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def bench_nbd(
    *,
    size: str = "256M",
    region: str = "128M",
    runtime: float = 5.0,
    iodepth: int = 16,
    seq_bs: str = "1M",
    algorithm: str = "lzo-rle",
    compress: int = 50,
    repeat: int = 1,
    threads: int | None = None,
    nbdkit: bool = True,
    loop: str = "uvloop",
    progress: Any = None,
) -> tuple[list[NbdBenchRow], dict[str, Any]]:
    """Run the jobs against pyzram (and nbdkit); the rows and pyzram's last ``mm_stat``.

    ``loop`` is ``pyzram serve --loop``.  ``progress(text)`` is told what
    runs.  A missing fio (or nbdkit, when asked for) is ``OSError(ENOENT)``
    with the package to install.
    """
    why = unavailable_reason(nbdkit)
    if why:
        raise OSError(errno.ENOENT, why)
    targets = [f"pyzram {algorithm}"] + (["nbdkit zstd"] if nbdkit else [])
    runs: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pyzram-bench-nbd-") as tmp:
        for rep in range(repeat):
            for target in targets:
                sock = os.path.join(tmp, "nbd.sock")
                if target.startswith("pyzram"):
                    proc = _start_pyzram(sock, size, algorithm, threads, loop)
                else:
                    proc = _start_nbdkit(sock, size)
                try:
                    _wait_for_socket(sock, proc, _READY_TIMEOUT_S)
                    uri = f"nbd+unix:///?socket={sock}"
                    for name, rw, bs, depth in JOBS:
                        if progress:
                            progress(f"{target}: {name} (run {rep + 1} of {repeat})")
                        cpu0 = _cpu_seconds(proc.pid)
                        iops, mb_s, ios = _fio(
                            uri, rw, bs or seq_bs, depth or iodepth, runtime, region, compress
                        )
                        cpu1 = _cpu_seconds(proc.pid)
                        cpu_us = (
                            (cpu1 - cpu0) / ios * 1e6
                            if cpu0 is not None and cpu1 is not None and ios
                            else None
                        )
                        runs.setdefault((target, name), []).append((iops, mb_s, cpu_us))
                    if target.startswith("pyzram"):
                        from pyzram.nbd.control import ControlClient

                        with ControlClient(sock) as ctl:
                            extra["pyzram_mm_stat"] = ctl.read("zram0", "mm_stat")
                finally:
                    _stop(proc)
    rows = []
    for target in targets:
        for name, _rw, bs, depth in JOBS:
            got = runs[(target, name)]
            best = max(got, key=lambda g: g[0])
            cpus = [g[2] for g in got if g[2] is not None]
            rows.append(
                NbdBenchRow(
                    target=target,
                    job=name,
                    bs=bs or seq_bs,
                    iodepth=depth or iodepth,
                    iops=best[0],
                    mb_s=best[1],
                    server_cpu_us=min(cpus) if cpus else None,
                    runs=[g[0] for g in got],
                )
            )
    return rows, extra
