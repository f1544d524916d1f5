"""``pyzram serve`` under real NBD clients: nbdinfo, nbdcopy, qemu-img/qemu-io, fio, libnbd.

The clients are Debian packages (libnbd-bin, python3-libnbd, qemu-utils,
fio).  A session fixture installs the missing ones with apt-get when we are
root (as scripts/test does for liblzo2-dev), updating the package lists
only if a first try fails; otherwise each test skips, naming the package.
python3-libnbd is imported by the system ``/usr/bin/python3`` in a
subprocess, since the project's venv cannot see Debian's modules.

The server runs in this process (:class:`~pyzram.nbd.server.ServerThread`),
so every test checks the device's own counters against what zram does with
the same pages, not only the bytes the clients read back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import pyzram
from pyzram.nbd.control import control_path
from pyzram.nbd.export import ExportSpec
from pyzram.nbd.server import ServerThread, build_exports
from pyzram.zram.stat import parse_io_stat, parse_mm_stat

PAGE = 4096
MiB = 1 << 20
#: program -> Debian package
PROGRAMS = {
    "nbdinfo": "libnbd-bin",
    "nbdcopy": "libnbd-bin",
    "qemu-img": "qemu-utils",
    "qemu-io": "qemu-utils",
    "fio": "fio",
    "nbdkit": "nbdkit",  # the comparison server of `pyzram bench nbd`
}
SYSTEM_PYTHON = "/usr/bin/python3"


def _have_libnbd() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import nbd"], capture_output=True)
    return r.returncode == 0


def _missing() -> list[str]:
    pkgs = {pkg for prog, pkg in PROGRAMS.items() if shutil.which(prog) is None}
    if not _have_libnbd():
        pkgs.add("python3-libnbd")
    return sorted(pkgs)


@pytest.fixture(scope="session")
def tools() -> dict[str, str | None]:
    """Install what is missing (root + apt-get); map each package to why it is absent, or None."""
    missing = _missing()
    why = "not installed (needs root and apt-get to install)"
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", *missing]
        why = "not installed: apt-get install failed"
        try:
            if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode:
                subprocess.run(
                    ["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600
                )
                subprocess.run(cmd, env=env, capture_output=True, timeout=900)
        except subprocess.TimeoutExpired:
            why = "not installed: apt-get install timed out"
        missing = _missing()
    packages = set(PROGRAMS.values()) | {"python3-libnbd"}
    return {p: (f"{p}: {why}" if p in missing else None) for p in packages}


def need(tools: dict[str, str | None], *packages: str) -> None:
    for p in packages:
        if tools[p]:
            pytest.skip(tools[p])


class Served(ServerThread):
    def __init__(self, specs: list[ExportSpec]) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyzram-nbd-")
        self.sock = os.path.join(self.dir, "nbd.sock")
        super().__init__(
            build_exports(specs), socket_path=self.sock, ctl_path=control_path(self.sock)
        )

    def uri(self, name: str = "") -> str:
        return f"nbd+unix:///{name}?socket={self.sock}"

    @property
    def dev(self) -> pyzram.Zram:
        return self.exports[0].dev

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def served():
    s = Served([ExportSpec("", {"disksize": "64M"})])
    yield s
    s.stop()


def run(*cmd: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def mm(dev: pyzram.Zram):
    return parse_mm_stat(dev.sysfs["mm_stat"])


def test_nbdinfo_reports_size_flags_and_exports(tools):
    need(tools, "libnbd-bin")
    s = Served(
        [
            ExportSpec("", {"disksize": "64M"}),
            ExportSpec("cold", {"disksize": "16M", "comp_algorithm": "zstd"}, "cold pages"),
        ]
    )
    try:
        doc = json.loads(run("nbdinfo", "--json", s.uri()).stdout)
        assert doc["protocol"] == "newstyle-fixed" and doc["structured"] is True
        (e,) = doc["exports"]
        assert e["export-size"] == 64 * MiB
        for flag in (
            "can_trim",
            "can_zero",
            "can_flush",
            "can_fua",
            "can_multi_conn",
            "can_df",
            "can_fast_zero",
            "can_cache",
        ):
            assert e[flag] is True, flag
        assert e["is_read_only"] is False and e["is_rotational"] is False
        assert (e["block_size_minimum"], e["block_size_preferred"]) == (1, 4096)
        assert e["block_size_maximum"] == 32 * MiB
        listing = json.loads(run("nbdinfo", "--json", "--list", s.uri()).stdout)
        by_name = {x["export-name"]: x for x in listing["exports"]}
        assert by_name["cold"]["export-size"] == 16 * MiB
        assert by_name["cold"]["description"] == "cold pages"
        assert run("nbdinfo", "--size", s.uri("cold")).stdout.strip() == str(16 * MiB)
    finally:
        s.stop()


def test_nbdcopy_round_trips_a_live_process_snapshot(tools, served, tmp_path):
    """A real process's anonymous memory, in and out with nbdcopy (4 connections), exact.

    nbdcopy sends zero pages as NBD_CMD_WRITE_ZEROES, which zram frees like
    a discard; every other page is stored as pyzram.Zram stores it when
    written directly, so the pool's figures are equal to a direct write's.
    """
    need(tools, "libnbd-bin")
    from pyzram.workload.pages import capture, write_page_file

    pages = capture("python", scale=0.1, limit=4096)
    src, back = tmp_path / "snap.pages", tmp_path / "back.pages"
    write_page_file(src, pages)
    run("nbdcopy", "--flush", str(src), served.uri())
    run("nbdcopy", "--flush", served.uri(), str(back))
    raw = back.read_bytes()
    assert len(raw) == 64 * MiB
    assert raw[: src.stat().st_size] == src.read_bytes()
    assert raw[src.stat().st_size :].count(0) == 64 * MiB - src.stat().st_size

    ref = pyzram.Zram()
    ref.sysfs["disksize"] = "64M"
    ref.pwrite(pages.tobytes(), 0)
    want, got = mm(ref), mm(served.dev)
    zero = int((pages == 0).all(axis=1).sum())
    freed = parse_io_stat(served.dev.sysfs["io_stat"]).notify_free
    assert got.same_pages + freed >= zero  # each zero page: same-filled or discarded
    assert got.orig_data_size == (len(pages) - freed) * PAGE
    for f in ("compr_data_size", "mem_used_total", "huge_pages", "huge_pages_since"):
        assert getattr(got, f) == getattr(want, f), f
    served.dev.check()


def test_qemu_img_and_qemu_io(tools, served, tmp_path):
    need(tools, "qemu-utils")
    uri = served.uri()
    # A qcow2 image created directly on the export, written, checked.
    run("qemu-img", "create", "-f", "qcow2", uri, "16M")
    run("qemu-io", "-f", "qcow2", uri, "-c", "write -P 0x33 0 192k", "-c", "read -P 0x33 0 192k")
    assert "No errors were found" in run("qemu-img", "check", "-f", "qcow2", uri).stdout
    # A raw conversion onto it, compared, then patterns read back (aligned and not).
    img = tmp_path / "src.qcow2"
    run("qemu-img", "create", "-f", "qcow2", str(img), "8M")
    run("qemu-io", "-f", "qcow2", str(img), "-c", "write -P 0x5a 1M 2M", "-c", "write -P 7 5M 3")
    run("qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", str(img), uri)
    out = run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(img), uri).stdout
    assert "Images are identical" in out
    cmds = [
        "read -P 0 0 1M",
        "read -P 0x5a 1M 2M",
        "read -P 7 5M 3",
        "write -P 0x11 4000 5000",  # unaligned at both ends
        "read -P 0x11 4000 5000",
        "read -P 0 9000 1000",
        "aio_write -P 0x22 0 512",  # parallel requests in one page
        "aio_write -P 0x23 512 512",
        "aio_flush",
        "read -P 0x22 0 512",
        "read -P 0x23 512 512",
        "write -z 1M 64k",
        "read -P 0 1M 64k",
    ]
    r = run("qemu-io", "-f", "raw", uri, *[a for c in cmds for a in ("-c", c)])
    assert "Pattern verification failed" not in r.stdout + r.stderr
    served.dev.check()


@pytest.mark.parametrize("bs", ["4k", "3k"])
def test_fio_verify_finds_no_corruption(tools, served, bs):
    """fio's nbd engine, 16 requests in flight, every block checksummed and read back.

    3 KiB blocks put two requests into most pages at once: each is a
    read-modify-write, which must not lose the other's bytes.
    """
    need(tools, "fio")
    r = run(
        "fio",
        "--name=verify",
        "--ioengine=nbd",
        f"--uri={served.uri()}",
        "--rw=randwrite",
        f"--bs={bs}",
        "--iodepth=16",
        "--size=6M",
        "--runtime=3",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--buffer_compress_percentage=50",
        "--verify_state_save=0",  # no local-*-verify.state left in the working directory
        "--output-format=json",
        timeout=120,
    )
    job = json.loads(r.stdout[r.stdout.index("{") :])["jobs"][0]
    assert job["error"] == 0
    assert job["write"]["total_ios"] > 0 and job["read"]["total_ios"] > 0  # the verify pass
    served.dev.check()


@pytest.mark.parametrize("bs", ["8M", "1536k"])
def test_fio_large_requests_are_streamed_and_verified(tools, served, bs):
    """Requests over 1 MiB, 4 in flight, written then read back and checksummed:
    each WRITE stored and each READ sent in pieces while the next request's
    payload is already arriving (1.5 MiB blocks: pieces that start mid-way)."""
    need(tools, "fio")
    r = run(
        "fio",
        "--name=large",
        "--ioengine=nbd",
        f"--uri={served.uri()}",
        "--rw=write",
        f"--bs={bs}",
        "--iodepth=4",
        "--size=48M",
        "--loops=10",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--do_verify=1",
        "--buffer_compress_percentage=50",
        "--verify_state_save=0",
        "--output-format=json",
        timeout=120,
    )
    job = json.loads(r.stdout[r.stdout.index("{") :])["jobs"][0]
    assert job["error"] == 0
    assert job["write"]["total_ios"] > 0 and job["read"]["total_ios"] > 0
    served.dev.check()


LIBNBD_DRIVER = r"""
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print(h.get_size(), h.can_trim(), h.can_zero(), h.can_flush(), h.can_fast_zero(),
      h.get_block_size(nbd.SIZE_MINIMUM), flush=True)
pages = lambda a, b: b"".join((("p%05d" % i) * 700).encode()[:4096] for i in range(a, b))
for line in sys.stdin:
    op = line.split()
    if op[0] == "aio_write":  # 64 pages in flight at once
        cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(pages(i, i + 1))), i * 4096)
                   for i in range(64)]
        while h.aio_in_flight():
            h.poll(-1)
        assert all(h.aio_command_completed(c) for c in cookies)
    elif op[0] == "trim":
        h.trim(int(op[1]), int(op[2]))
    elif op[0] == "zero":
        h.zero(int(op[1]), int(op[2]))
    elif op[0] == "zero_nohole":
        h.zero(int(op[1]), int(op[2]), nbd.CMD_FLAG_NO_HOLE)
    elif op[0] == "flush":
        h.flush()
    elif op[0] == "read":
        print(h.pread(int(op[1]), int(op[2])).hex(), flush=True)
        continue
    print("ok", flush=True)
h.shutdown()
"""


def test_libnbd_trim_zero_flush_move_mm_stat_as_zram_would(tools, served):
    """python3-libnbd drives the device; after each step its mm_stat and io_stat equal
    those of a pyzram.Zram given the same operations directly (discard for trim and
    zero, same-filled pages for zero with NBD_CMD_FLAG_NO_HOLE)."""
    need(tools, "python3-libnbd")
    ref = pyzram.Zram()
    ref.sysfs["disksize"] = "64M"
    pages = b"".join(((f"p{i:05d}") * 700).encode()[:PAGE] for i in range(64))
    steps = [
        ("aio_write", lambda: ref.pwrite(pages, 0)),
        ("trim 65536 8192", lambda: ref.discard(8192, 65536)),
        ("zero 16384 131072", lambda: ref.write_zeroes(131072, 16384)),
        ("zero_nohole 16384 196608", lambda: ref.pwrite(bytes(16384), 196608)),
        ("trim 6000 77000", lambda: ref.discard(77824, 4096)),  # whole page 19 only
        ("flush", lambda: None),
    ]
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", LIBNBD_DRIVER, served.uri()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        head = proc.stdout.readline().split()
        assert head == [str(64 * MiB), "True", "True", "True", "True", "1"], proc.stderr.read()
        for cmd, apply in steps:
            proc.stdin.write(cmd + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ok", proc.stderr.read()
            apply()
            assert served.dev.sysfs["mm_stat"] == ref.sysfs["mm_stat"], cmd
            assert served.dev.sysfs["io_stat"] == ref.sysfs["io_stat"], cmd
        proc.stdin.write(f"read {64 * PAGE} 0\n")
        proc.stdin.flush()
        data = bytes.fromhex(proc.stdout.readline().strip())
        assert data == ref.pread(64 * PAGE, 0)
        st = mm(served.dev)
        assert st.same_pages == 4 and st.orig_data_size == (64 - 16 - 4 - 1) * PAGE
    finally:
        proc.stdin.close()
        assert proc.wait(30) == 0, proc.stderr.read()
    served.dev.check()


def test_nbdcopy_to_two_exports_at_once(tools, tmp_path):
    """Two devices, two nbdcopy processes (four connections each) at the same time."""
    need(tools, "libnbd-bin")
    s = Served(
        [
            ExportSpec("a", {"disksize": "16M", "comp_algorithm": "lz4"}),
            ExportSpec("b", {"disksize": "16M"}),
        ]
    )
    try:
        rng = np.random.default_rng(3)
        data = {}
        procs = []
        for name in "ab":
            raw = rng.integers(0, 4, size=16 * MiB, dtype=np.uint8).tobytes()  # compressible
            (tmp_path / name).write_bytes(raw)
            data[name] = raw
            procs.append(subprocess.Popen(["nbdcopy", str(tmp_path / name), s.uri(name)]))
        for p in procs:
            assert p.wait(120) == 0
        for name in "ab":
            run("nbdcopy", s.uri(name), str(tmp_path / f"{name}.out"))
            assert (tmp_path / f"{name}.out").read_bytes() == data[name]
        for e in s.exports:
            e.dev.check()
            assert mm(e.dev).orig_data_size == 16 * MiB
    finally:
        s.stop()


# -- base:allocation: holes, zeros and data as the tools see them ---------------------------

HOLE, ZERO = 1, 2


def _fill_known_content(s: Served) -> list[tuple[int, int, int]]:
    """Data, zeros and holes at known places; the (offset, length, status) map expected.

    Pages 0-15 data, 16-17 zeros written (same-filled, fill 0), 18 same-filled 0x5a
    (data), 32-63 data then 40-47 trimmed, 64-65 zeroed with NO_HOLE; the rest untouched.
    """
    from pyzram.nbd.client import NbdClient
    from pyzram.nbd.protocol import NBD_CMD_FLAG_NO_HOLE

    def text(n: int) -> bytes:
        return b"".join((f"page {i:05d} " * 400).encode()[:PAGE] for i in range(n))

    with NbdClient.open(s.sock) as c:
        c.pwrite(text(16), 0)
        c.pwrite(bytes(2 * PAGE), 16 * PAGE)
        c.pwrite(b"\x5a" * PAGE, 18 * PAGE)
        c.pwrite(text(32), 32 * PAGE)
        c.trim(8 * PAGE, 40 * PAGE)
        c.zero(2 * PAGE, 64 * PAGE, NBD_CMD_FLAG_NO_HOLE)
        c.disconnect()
    size = s.exports[0].size
    runs = [
        (0, 16, 0),
        (16, 2, ZERO),
        (18, 1, 0),
        (19, 13, HOLE | ZERO),
        (32, 8, 0),
        (40, 8, HOLE | ZERO),
        (48, 16, 0),
        (64, 2, ZERO),
    ]
    out = [(a * PAGE, n * PAGE, st) for a, n, st in runs]
    return out + [(66 * PAGE, size - 66 * PAGE, HOLE | ZERO)]


def test_nbdinfo_map_and_qemu_img_map_see_holes_zeros_and_data(tools, served):
    need(tools, "libnbd-bin", "qemu-utils")
    want = _fill_known_content(served)
    doc = json.loads(run("nbdinfo", "--map", "--json", served.uri()).stdout)
    assert [(e["offset"], e["length"], e["type"]) for e in doc] == want
    assert {e["type"]: e["description"] for e in doc} == {0: "data", 2: "zero", 3: "hole,zero"}
    totals = run("nbdinfo", "--map", "--totals", served.uri()).stdout.split("\n")
    assert totals[0].split()[0] == str((16 + 1 + 8 + 16) * PAGE)  # bytes of data first
    # qemu: data = not NBD_STATE_HOLE, zero = NBD_STATE_ZERO (the same extents).
    qmap = json.loads(run("qemu-img", "map", "--output=json", "-f", "raw", served.uri()).stdout)
    got = [(e["start"], e["length"], e["data"], e["zero"]) for e in qmap]
    assert got == [(o, n, not st & HOLE, bool(st & ZERO)) for o, n, st in want]
    served.dev.check()


def test_nbdcopy_reads_only_the_data(tools, served, tmp_path):
    """Copying the export out, nbdcopy reads the data extents only: holes and zero
    pages are written as zeros without being read."""
    need(tools, "libnbd-bin")
    want = _fill_known_content(served)
    export = served.exports[0]
    read = []
    for attr in ("read", "read_aligned"):
        orig = getattr(export, attr)

        def counted(offset, length, _orig=orig):
            read.append(length)
            return _orig(offset, length)

        setattr(export, attr, counted)
    orig_into = export.read_into

    def counted_into(pages, into):
        read.append(len(pages) * PAGE)
        return orig_into(pages, into)

    export.read_into = counted_into
    out = tmp_path / "out"
    run("nbdcopy", served.uri(), str(out))
    raw = out.read_bytes()
    assert len(raw) == 64 * MiB
    data = sum(n for _, n, st in want if not st & ZERO)
    for o, n, st in want:
        if st & ZERO:
            assert raw[o : o + n].count(0) == n
    assert raw[: 16 * PAGE] == served.dev.pread(16 * PAGE, 0)
    assert data <= sum(read) <= data + 2 * MiB, sum(read)  # not the 64 MiB


LIBNBD_STATUS = r"""
import json, sys, nbd
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(sys.argv[1])
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
out = []
def cb(meta, offset, entries, err):
    assert meta == nbd.CONTEXT_BASE_ALLOCATION, meta
    out.append([offset, list(entries)])
    return 0
size = h.get_size()
h.block_status(size, 0, cb)
h.block_status(3 * 4096, 4096 * 15 + 100, cb, nbd.CMD_FLAG_REQ_ONE)
h.block_status(100, 4096 * 17 + 7, cb)
print(json.dumps(out))
h.shutdown()
"""


def test_libnbd_block_status(tools, served):
    need(tools, "python3-libnbd")
    want = _fill_known_content(served)
    r = run(SYSTEM_PYTHON, "-c", LIBNBD_STATUS, served.uri())
    whole, one, inside = json.loads(r.stdout)
    assert whole[0] == 0
    pairs = whole[1]
    assert list(zip(pairs[::2], pairs[1::2], strict=True)) == [(n, st) for _, n, st in want]
    assert one == [15 * PAGE + 100, [PAGE - 100, 0]]  # REQ_ONE: one descriptor
    assert inside == [17 * PAGE + 7, [100, ZERO]]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_bench_nbd_json(tools, loop, capsys):
    """``pyzram bench nbd`` end to end, briefly: both servers (nbdkit where
    installed; the bench needs no more than fio), the four fio jobs each,
    measured figures (no row is empty or made up), the server's CPU per
    request, and pyzram's mm_stat read back through the control socket; on
    either event loop."""
    from pyzram.tools.cli import main

    need(tools, "fio")
    have_nbdkit = shutil.which("nbdkit") is not None
    argv = ["bench", "nbd", "--runtime", "0.5", "--size", "32M", "--region", "8M", "--json"]
    argv += ["--loop", loop]
    if not have_nbdkit:
        argv.append("--no-nbdkit")
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    targets = {r["target"] for r in doc["rows"]}
    assert "pyzram lzo-rle" in targets and len(targets) == (2 if have_nbdkit else 1)
    for target in targets:
        jobs = {r["job"]: r for r in doc["rows"] if r["target"] == target}
        assert set(jobs) == {"seqwrite", "seqread", "randwrite", "randread"}
        for r in jobs.values():
            assert r["iops"] > 0 and r["mb_s"] > 0 and r["runs"] == [r["iops"]]
            # /proc's CPU time ticks at 10 ms: a short job may read 0.
            assert r["server_cpu_us"] is None or r["server_cpu_us"] >= 0
        assert jobs["randread"]["bs"] == "4k" and jobs["seqread"]["bs"] == "1M"
    mm = parse_mm_stat(doc["pyzram_mm_stat"])
    assert mm.orig_data_size >= 8 << 20  # fio's sequential write filled the region


def test_bench_nbd_bad_loop_is_one_line(capsys):
    from pyzram.tools.cli import main

    assert main(["bench", "nbd", "--loop", "trio"]) == 2  # a usage error
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pyzram: error: --loop: must be one of asyncio, uvloop, not 'trio'"]
