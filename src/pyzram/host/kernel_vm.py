"""A second oracle: Debian's Linux 6.18 kernel with the full zram config, booted under qemu.

The host kernel has zram with lzo, lzo-rle and lz4 only, no writeback, no
access-time tracking.  Debian's ``linux-image-6.18.*+deb13-amd64`` from
trixie-backports has zram as a module with ``CONFIG_ZRAM_WRITEBACK``,
``CONFIG_ZRAM_TRACK_ENTRY_ACTIME``, ``CONFIG_ZRAM_MEMORY_TRACKING`` and the
backends lz4, lz4hc, zstd and deflate (no lzo, no ``CONFIG_ZRAM_MULTI_COMP``).
This module boots that kernel and lets a caller run a script of zram
operations in it, and of zswap ones (:class:`VmZswap`: the crypto API's lz4,
lz4hc, zstd and deflate modules loaded, lzo and lzo-rle built in; zswap
enabled at run time in front of a zram swap area, pages pushed out with
``MADV_PAGEOUT``, its debugfs and vmstat counters read back):

* **fetch** (:func:`ensure_kernel`): ``apt-get download`` through a private
  apt state directory under the cache (``-o Dir::State=… -o
  Dir::Etc::SourceList=… -o Dir::Cache=…``; the machine's own sources and
  lists are never read or written), then ``dpkg-deb -x`` into
  ``$PYZRAM_CACHE`` (default ``$XDG_CACHE_HOME/pyzram`` or
  ``~/.cache/pyzram``).  Once unpacked it is reused without the network;
  ``PYZRAM_VM_KERNEL`` names a version to use instead of the newest cached.
* **initramfs** (:func:`build_initramfs`): a newc cpio written here, holding
  the static busybox (``busybox-static``), an ``/init`` script, the zram
  module and the modules it depends on (read from each module's
  ``.modinfo depends=``, decompressed from ``.ko.xz``), ``virtio_blk``, the
  crypto compressor modules the kernel has (:data:`CRYPTO_MODULES`), and
  ``zvm``, the guest side (``vm_guest.c``, compiled ``gcc -static``).
* **boot** (:meth:`VmOracle.run`): ``qemu-system-x86_64 -accel tcg`` (KVM
  only where ``PYZRAM_VM_ACCEL=kvm`` says it works), the page data as a
  read-only virtio disk (``/dev/vda``), a backing device (``/dev/vdb``) and
  an output disk for read-back data (``/dev/vdc``); the script is a second
  cpio archive appended to the initramfs.  ``zvm`` runs each command as a
  user-space tool would (one ``write(2)`` per sysfs write, O_DIRECT I/O,
  ``BLKDISCARD``) and prints one framed line per command on the serial
  console, which is parsed back into exact sysfs texts and errnos.

A script is built with :class:`VmScript` / :class:`VmZram`, whose methods
return :class:`Pending` results that hold their value once the script ran.
"""

from __future__ import annotations

import errno
import hashlib
import io
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyzram.zram.stat import parse_io_stat, parse_mm_stat

__all__ = [
    "KernelImage",
    "Pending",
    "VmOracle",
    "VmScript",
    "VmZram",
    "VmZswap",
    "cache_dir",
    "ensure_kernel",
    "kconfig_crypto_compressors",
    "unavailable_reason",
]

PAGE_SIZE = 4096
ARCHIVE = "http://deb.debian.org/debian"
SUITE = "trixie-backports"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PACKAGE_RE = re.compile(r"^linux-image-(6\.18\.\d+)\+deb13-amd64$")
#: Modules the guest loads, in order (their ``depends=`` are added first).
GUEST_MODULES = ("virtio_blk", "zram")
#: The crypto API's compressors that zswap can use, loaded where the kernel has them
#: as modules (``crypto/lz4.ko`` ...; built-in ones, lzo and lzo-rle here, need nothing).
CRYPTO_MODULES = ("lz4", "lz4hc", "zstd", "deflate")
BUSYBOX = Path("/bin/busybox")
GUEST_SOURCE = Path(__file__).with_name("vm_guest.c")
#: Guest RAM: room for a few devices of some thousand pages each.
GUEST_MEM_MB = 1024


def cache_dir() -> Path:
    """``$PYZRAM_CACHE``, else ``$XDG_CACHE_HOME/pyzram``, else ``~/.cache/pyzram``."""
    if os.environ.get("PYZRAM_CACHE"):
        return Path(os.environ["PYZRAM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pyzram"


# -- fetching the kernel ----------------------------------------------------------------


def _apt_options(root: Path) -> list[str]:
    """apt options that confine apt to ``root`` (state, cache, sources): nothing global."""
    return [
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", f"Dir::Etc::SourceList={root / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={root / 'sources.list.d'}",
        "-o", f"Dir::Etc::Preferences={root / 'preferences'}",
        "-o", f"Dir::Etc::PreferencesParts={root / 'preferences.d'}",
        "-o", "Acquire::Languages=none",
        "-o", "Acquire::http::Timeout=30",
        "-o", "Acquire::Retries=1",
    ] + (["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else [])  # fmt: skip


def _apt_root() -> Path:
    root = cache_dir() / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    src = (
        f"deb [signed-by={KEYRING}] {ARCHIVE} {SUITE} main\n"
        f"deb-src [signed-by={KEYRING}] {ARCHIVE} {SUITE} main\n"
    )
    (root / "sources.list").write_text(src)
    return root


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise OSError(errno.EIO, f"{' '.join(cmd[:2])} failed: {' / '.join(tail)}")
    return r.stdout


def apt_update() -> Path:
    """``apt-get update`` of the private trixie-backports state; returns its root."""
    root = _apt_root()
    _run(["apt-get", *_apt_options(root), "update", "-q"])
    return root


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("-")[0]))


def newest_package() -> str:
    """The newest ``linux-image-6.18.N+deb13-amd64`` in trixie-backports (network)."""
    root = apt_update()
    out = _run(["apt-cache", *_apt_options(root), "pkgnames", "linux-image-6.18."])
    names = [n for n in out.split() if PACKAGE_RE.match(n)]
    if not names:
        raise OSError(errno.ENOENT, f"no linux-image-6.18.*+deb13-amd64 in {SUITE}")
    return max(names, key=lambda n: _version_key(PACKAGE_RE.match(n).group(1)))  # type: ignore[union-attr]


@dataclass(frozen=True)
class KernelImage:
    """An unpacked kernel package: ``vmlinuz``, its ``config`` and its module tree.

    ``version`` is the cache directory's name: ``6.18.15`` for Debian's
    package, ``6.18.15-multicomp`` for ``scripts/build-vm-kernel``'s build.
    """

    version: str
    root: Path

    @property
    def release(self) -> str:
        """The kernel release (``uname -r``), from ``boot/vmlinuz-RELEASE``."""
        found = sorted((self.root / "boot").glob("vmlinuz-*"))
        if found:
            return found[0].name[len("vmlinuz-") :]
        return f"{self.version}+deb13-amd64"

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def config_path(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"

    @property
    def modules(self) -> Path:
        for base in ("usr/lib/modules", "lib/modules"):
            p = self.root / base / self.release
            if p.is_dir():
                return p
        raise FileNotFoundError(f"no module tree for {self.release} under {self.root}")

    def config_text(self) -> str:
        return self.config_path.read_text()


def cached_kernels() -> list[KernelImage]:
    """Kernels already unpacked in the cache, oldest first."""
    base = cache_dir() / "kernels"
    found = []
    if base.is_dir():
        for d in base.iterdir():
            k = KernelImage(d.name, d)
            if (d / ".complete").exists() and k.vmlinuz.exists():
                found.append(k)
    return sorted(found, key=lambda k: _version_key(k.version))


def ensure_kernel(version: str | None = None) -> KernelImage:
    """The kernel image to boot: from the cache, else downloaded and unpacked into it.

    ``version`` (or ``$PYZRAM_VM_KERNEL``), e.g. ``"6.18.15"``; without it the
    newest cached kernel, or, with an empty cache, the newest in the archive.
    """
    version = version or os.environ.get("PYZRAM_VM_KERNEL") or None
    cached = {k.version: k for k in cached_kernels()}
    if version and version in cached:
        return cached[version]
    debian = [v for v in cached if re.fullmatch(r"[\d.]+", v)]
    if not version and debian:
        return cached[max(debian, key=_version_key)]
    if version:
        package = f"linux-image-{version}+deb13-amd64"
        root = apt_update()
    else:
        package = newest_package()
        root = _apt_root()
        version = PACKAGE_RE.match(package).group(1)  # type: ignore[union-attr]
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", *_apt_options(root), "download", "-q", package], cwd=debs, timeout=1800)
    deb = max(debs.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    dest = cache_dir() / "kernels" / version
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(tmp)])
    (tmp / ".complete").write_text(deb.name + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return KernelImage(version, dest)


# -- the initramfs ----------------------------------------------------------------------


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc (``070701``) cpio archive of ``(path, mode, data)``, with its trailer."""
    out = io.BytesIO()

    def put(name: str, mode: int, data: bytes, ino: int) -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        )
        out.write(hdr.encode() + nb)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))

    for i, (name, mode, data) in enumerate(entries, start=1):
        put(name, mode, data, i)
    put("TRAILER!!!", 0, b"", 0)
    return out.getvalue()


def _module_files(k: KernelImage) -> dict[str, Path]:
    """Module name (``-`` as ``_``) -> its file, for the whole tree."""
    files = {}
    for p in k.modules.rglob("*.ko*"):
        files[p.name.split(".ko")[0].replace("-", "_")] = p
    return files


def _read_module(p: Path) -> bytes:
    data = p.read_bytes()
    return lzma.decompress(data) if p.name.endswith(".xz") else data


def _depends(ko: bytes) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)", ko)
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d] if m else []


def module_load_order(
    k: KernelImage,
    wanted: tuple[str, ...] = GUEST_MODULES,
    optional: tuple[str, ...] = CRYPTO_MODULES,
) -> list[tuple[str, bytes]]:
    """The modules to ``insmod``, dependencies first, as ``(name, decompressed .ko)``.

    ``optional`` ones are loaded where the tree has them and skipped where it
    does not (built in, or not configured).
    """
    files = _module_files(k)
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    builtin_file = k.modules / "modules.builtin"
    builtin = set()
    if builtin_file.exists():
        builtin = {
            Path(line).name.split(".ko")[0].replace("-", "_")
            for line in builtin_file.read_text().split()
        }

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in files:
            if name in builtin:
                return  # built into this kernel
            raise FileNotFoundError(f"module {name} not in {k.modules}")
        ko = _read_module(files[name])
        for dep in _depends(ko):
            visit(dep)
        order.append((name, ko))

    for name in wanted:
        visit(name)
    for name in optional:
        if name in files:
            visit(name)
    return order


INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo 1 > /proc/sys/kernel/printk
{insmods}
/zvm /script /dev/vda /dev/vdc
sync
poweroff -f
"""


def _busybox() -> bytes:
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} missing (install busybox-static)")
    data = BUSYBOX.read_bytes()
    # A static ELF has no PT_INTERP program header ("/lib64/ld-linux" string).
    if b"/lib64/ld-linux" in data[:4096] or b"ld-linux-x86-64.so" in data[:8192]:
        raise FileNotFoundError(f"{BUSYBOX} is dynamically linked (install busybox-static)")
    return data


def guest_helper() -> bytes:
    """``zvm`` compiled from ``vm_guest.c`` with ``gcc -static`` (cached by source hash)."""
    src = GUEST_SOURCE.read_bytes()
    tag = hashlib.sha256(src).hexdigest()[:16]
    out = cache_dir() / "zvm" / f"zvm-{tag}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC", "gcc")
        tmp = out.with_suffix(".tmp")
        _run([cc, "-static", "-O2", "-Wall", "-o", str(tmp), str(GUEST_SOURCE)])
        tmp.rename(out)
    return out.read_bytes()


def build_initramfs(k: KernelImage) -> Path:
    """The base initramfs (busybox, ``/init``, modules, ``zvm``), cached per kernel."""
    helper = guest_helper()
    bb = _busybox()
    mods = module_load_order(k)
    names = " ".join(name for name, _ in mods)
    tag = hashlib.sha256(
        helper + hashlib.sha256(bb).digest() + INIT.encode() + k.release.encode() + names.encode()
    ).hexdigest()[:16]
    out = cache_dir() / "initramfs" / f"{k.release}-{tag}.cpio"
    if out.exists():
        return out
    insmods = "\n".join(f"insmod /lib/modules/{name}.ko" for name, _ in mods)
    d, f, x = 0o040755, 0o100644, 0o100755
    entries: list[tuple[str, int, bytes]] = [
        (p, d, b"") for p in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules")
    ]
    entries += [
        ("bin/busybox", x, bb),
        ("init", x, INIT.format(insmods=insmods).encode()),
        ("zvm", x, helper),
    ]
    entries += [(f"lib/modules/{name}.ko", f, ko) for name, ko in mods]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(_newc(entries))
    tmp.rename(out)
    return out


# -- availability ------------------------------------------------------------------------


def _qemu() -> str | None:
    return shutil.which("qemu-system-x86_64")


def unavailable_reason(fetch: bool = True) -> str | None:
    """Why the VM oracle cannot run here, or ``None`` when it can.

    Checks qemu, the static busybox and gcc, then that a kernel is cached or
    (with ``fetch``) can be downloaded.  The one-line answer is a pytest skip
    reason.
    """
    if _qemu() is None:
        return "qemu-system-x86_64 not installed (Debian: qemu-system-x86)"
    try:
        _busybox()
    except FileNotFoundError as e:
        return str(e)
    if shutil.which(os.environ.get("CC", "gcc")) is None:
        return "gcc not found (needed to build the guest helper)"
    if os.environ.get("PYZRAM_VM_KERNEL"):
        want = os.environ["PYZRAM_VM_KERNEL"]
        if any(k.version == want for k in cached_kernels()):
            return None
        if not re.fullmatch(r"[\d.]+", want):
            return f"kernel {want} is not in the cache (scripts/build-vm-kernel builds it)"
    elif any(re.fullmatch(r"[\d.]+", k.version) for k in cached_kernels()):
        return None
    if not fetch:
        return "no kernel in the cache"
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} not found (needed to fetch the kernel package)"
    try:
        ensure_kernel()
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot fetch the kernel from {SUITE}: {e}"
    return None


# -- scripts and their results ----------------------------------------------------------


class Pending:
    """The result of one guest command, known once the script has run.

    ``raw`` is ``("ok", n)``, ``("err", errno)`` or ``("hex", bytes)``.
    """

    __slots__ = ("script", "seq", "raw", "convert")

    def __init__(self, script: VmScript, seq: int, convert=None) -> None:
        self.script, self.seq, self.convert = script, seq, convert
        self.raw: tuple[str, object] | None = None

    @property
    def done(self) -> bool:
        return self.raw is not None

    @property
    def value(self):
        """The converted result; raises the guest's errno as :class:`OSError`."""
        if self.raw is None:
            raise RuntimeError("the script has not run (or stopped before this command)")
        kind, v = self.raw
        if kind == "err":
            raise OSError(int(v), os.strerror(int(v)))  # type: ignore[arg-type]
        return self.convert(v) if self.convert else v

    @property
    def outcome(self) -> str:
        """``"ok"`` or the errno's name (``"EINVAL"``), as the tests compare outcomes."""
        if self.raw is None:
            return "not run"
        kind, v = self.raw
        return errno.errorcode.get(int(v), str(v)) if kind == "err" else "ok"  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Pending(#{self.seq} {self.raw!r})"


@dataclass
class VmScript:
    """Commands for the guest, the page data they read and where read-backs land."""

    lines: list[str] = field(default_factory=list)
    pendings: list[Pending] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    out_size: int = 0
    backing_size: int = 64 << 20
    files: dict[str, bytes] = field(default_factory=dict)
    _blobs: dict[bytes, int] = field(default_factory=dict)

    def op(self, line: str, convert=None) -> Pending:
        """Append one command; its result will be the returned :class:`Pending`."""
        self.lines.append(line)
        p = Pending(self, len(self.lines), convert)
        self.pendings.append(p)
        return p

    def blob(self, data: bytes | bytearray | memoryview | np.ndarray) -> tuple[int, int]:
        """Put ``data`` on the page disk (once per distinct content); ``(offset, length)``."""
        b = (
            bytes(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
            if isinstance(data, np.ndarray)
            else bytes(data)
        )
        key = hashlib.blake2b(b, digest_size=20).digest()
        off = self._blobs.get(key)
        if off is None:
            off = len(self.data)
            self.data += b
            self.data += b"\0" * (-len(self.data) % PAGE_SIZE)
            self._blobs[key] = off
        return off, len(b)

    def out_area(self, length: int) -> int:
        """Reserve ``length`` bytes of the output disk; returns their offset."""
        off = self.out_size
        self.out_size += length + (-length % PAGE_SIZE)
        return off

    def add_file(self, path: str, data: bytes) -> str:
        """A file the guest will have at ``path`` (e.g. a zstd dictionary)."""
        self.files[path.lstrip("/")] = bytes(data)
        return "/" + path.lstrip("/")

    def sleep(self, seconds: float) -> Pending:
        return self.op(f"sleep {int(seconds * 1000)}")

    def clock(self) -> Pending:
        """The guest's ``ktime_get_boottime`` (CLOCK_BOOTTIME) in ns."""
        return self.op("clock")

    def read_file(self, path: str) -> Pending:
        return self.op(f"R {path.encode().hex()}", lambda b: b.decode())

    def write_file(self, path: str, value: str | bytes) -> Pending:
        """One ``write(2)`` of ``value`` to ``path`` (a module parameter, say)."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        return self.op(f"W {path.encode().hex()} {data.hex()}")

    def swapon(self, path: str, flags: int = 0) -> Pending:
        """``swapon(2)``; ``path`` ``"-"`` is the current zram device (``/dev/zramN``)."""
        return self.op(f"swapon {_path_arg(path)} {flags}")

    def swapoff(self, path: str) -> Pending:
        return self.op(f"swapoff {_path_arg(path)}")

    def map_pages(self, pages: np.ndarray) -> tuple[Pending, int]:
        """An anonymous private mapping of ``pages`` (order-0 folios, each faulted in
        and filled); ``(result, offset of the pages on the page disk)``."""
        src, n = self.blob(pages)
        return self.op(f"map {src} {n // PAGE_SIZE}"), src

    def madvise(self, advice: int) -> Pending:
        """``madvise(2)`` over the whole mapping."""
        return self.op(f"madv {advice}")

    def compare(self, src: int) -> Pending:
        """Fault every mapped page back and compare it with the page disk at ``src``;
        the value is the number of pages that differ."""
        return self.op(f"cmp {src}")

    def unmap(self) -> Pending:
        return self.op("unmap")


def _text(b: bytes) -> str:
    return b.decode()


def _path_arg(path: str) -> str:
    return "-" if path == "-" else path.encode().hex()


class VmZram:
    """One guest zram device (``hot_add``-ed in the guest), with KernelZram's methods.

    Each method appends a command to ``script`` and returns a :class:`Pending`.
    """

    def __init__(self, script: VmScript) -> None:
        self.script = script
        self.id = script.op("add")

    def write_attr(self, name: str, value: str | bytes) -> Pending:
        data = value.encode() if isinstance(value, str) else bytes(value)
        return self.script.op(f"w {name} {data.hex()}")

    def read_attr(self, name: str) -> Pending:
        return self.script.op(f"r {name}", _text)

    def mm_stat(self) -> Pending:
        return self.script.op("r mm_stat", lambda b: parse_mm_stat(b.decode()))

    def io_stat(self) -> Pending:
        return self.script.op("r io_stat", lambda b: parse_io_stat(b.decode()))

    def setup(self, comp_algorithm: str | None, disksize: str | int) -> None:
        if comp_algorithm is not None:
            self.write_attr("comp_algorithm", comp_algorithm)
        self.write_attr("disksize", str(disksize))

    def pwrite(self, data, offset: int) -> Pending:
        """O_DIRECT ``pwrite`` of ``data`` at ``offset`` (1 MiB per syscall)."""
        src, n = self.script.blob(data)
        return self.script.op(f"pw {src} {n} {offset}")

    def pread(self, length: int, offset: int) -> Pending:
        """O_DIRECT ``pread``; the value is the bytes read."""
        dst = self.script.out_area(length)
        script = self.script
        return script.op(
            f"pr {offset} {length} {dst}",
            lambda n: bytes(script.output[dst : dst + int(n)]),  # type: ignore[attr-defined]
        )

    def discard(self, offset: int, length: int) -> Pending:
        return self.script.op(f"disc {offset} {length}")

    def page_sizes(self, pages: np.ndarray, start: int = 0) -> Pending:
        """Each page's stored size, one page at a time (as ``KernelZram.page_sizes``)."""
        src, n = self.script.blob(pages)
        return self.script.op(
            f"sizes {src} {n // PAGE_SIZE} {start}",
            lambda b: np.frombuffer(b, dtype="<i2").astype(np.int16),
        )

    def close_dev(self) -> Pending:
        return self.script.op("close")

    def remove(self) -> Pending:
        """Close, ``reset`` and ``hot_remove`` (the guest's state ends with the VM anyway)."""
        return self.script.op("rm")


#: zswap's module parameters and debugfs directory (the guest's /init mounts debugfs).
ZSWAP_PARAMS_DIR = "/sys/module/zswap/parameters"
ZSWAP_DEBUGFS_DIR = "/sys/kernel/debug/zswap"
#: The crypto API's compressors by the Kconfig option that builds them (crypto/Makefile:
#: ``CONFIG_CRYPTO_LZO`` builds lzo.o and lzo-rle.o).
CRYPTO_KCONFIG = (
    ("lzo", "CONFIG_CRYPTO_LZO"),
    ("lzo-rle", "CONFIG_CRYPTO_LZO"),
    ("lz4", "CONFIG_CRYPTO_LZ4"),
    ("lz4hc", "CONFIG_CRYPTO_LZ4HC"),
    ("zstd", "CONFIG_CRYPTO_ZSTD"),
    ("deflate", "CONFIG_CRYPTO_DEFLATE"),
)


def kconfig_crypto_compressors(config_text: str) -> tuple[str, ...]:
    """The compressors a kernel's crypto API will have, from its Kconfig (``=y`` or
    ``=m``; the guest loads every such module).  Empty without ``CONFIG_ZSWAP``."""
    opts = dict(
        line.split("=", 1) for line in config_text.splitlines() if line.startswith("CONFIG_")
    )
    if opts.get("CONFIG_ZSWAP") != "y":
        return ()
    return tuple(name for name, opt in CRYPTO_KCONFIG if opts.get(opt) in ("y", "m"))


def swap_header(pages: int) -> bytes:
    """The first page ``mkswap`` writes for an area of ``pages`` pages (a fixed UUID)."""
    from pyzram.mm.swapfile import mkswap

    with tempfile.NamedTemporaryFile(prefix="pyzram-swaphdr-") as f:
        f.truncate(PAGE_SIZE)
        mkswap(f.name, pages=pages, uuid=bytes(range(16)))
        return Path(f.name).read_bytes()[:PAGE_SIZE]


class VmZswapPageout:
    """What :meth:`VmZswap.pageout` recorded; :attr:`value` is the dict
    :meth:`pyzram.host.kernel_zswap.KernelZswap.pageout` returns, once the script ran."""

    def __init__(self, zswap: VmZswap, n: int, parts: dict[str, Any]) -> None:
        self.zswap, self.n, self.parts = zswap, n, parts

    def _debugfs(self, reads: dict[str, Pending]) -> dict[str, int]:
        """The debugfs files' values (all there: ``enabled`` set zswap up before)."""
        for name, p in reads.items():
            self._check(f"read {ZSWAP_DEBUGFS_DIR}/{name}", p)
        return {name: int(p.value) for name, p in reads.items()}

    def _check(self, what: str, p: Pending) -> None:
        if p.raw is None or p.raw[0] == "err":
            e = int(p.raw[1]) if p.raw else errno.EIO  # type: ignore[arg-type]
            done = os.strerror(e) if p.raw else "the script stopped before it"
            raise OSError(e, f"zswap {self.zswap.compressor} in the guest: {what}: {done}")

    @property
    def value(self) -> dict:
        """The counters' deltas; :class:`OSError` naming the step the guest refused."""
        from pyzram.host.kernel_zswap import parse_meminfo, parse_vmstat

        z, parts = self.zswap, self.parts
        for what, p in (("swapon", z.swapon_result), *z.writes.items()):
            self._check("swapon" if what == "swapon" else f"write {what}", p)
        for what in ("map", "madvise", "compare", "unmap"):
            if what in parts:
                self._check(what, parts[what])
        before_dbg = self._debugfs(parts["debugfs_before"])
        after_dbg = self._debugfs(parts["debugfs_after"])
        before_vm = parse_vmstat(parts["vmstat_before"].value)
        after_vm = parse_vmstat(parts["vmstat_after"].value)
        out = {
            "pages": self.n,
            "compressor": parts["compressor"].value.strip(),
            "debugfs": {k: after_dbg[k] - before_dbg.get(k, 0) for k in after_dbg},
            "debugfs_after": after_dbg,
            "vmstat": {k: after_vm[k] - before_vm[k] for k in after_vm},
            "meminfo": parse_meminfo(parts["meminfo"].value),
        }
        if "compare" in parts:
            differ = int(parts["compare"].value)
            vm2 = parse_vmstat(parts["vmstat_read_back"].value)
            out["read_back_equal"] = differ == 0
            out["read_back_differing"] = differ
            out["vmstat_read_back"] = {k: vm2[k] - after_vm[k] for k in vm2}
            out["debugfs_read_back"] = self._debugfs(parts["debugfs_read_back"])
        return out


class VmZswap:
    """The guest's zswap in front of a zram swap area of its own: ``KernelZswap`` in the guest.

    Recorded into ``script``: a ``hot_add``-ed zram device (``backing_algorithm``,
    ``disksize``), a swap header written to it and ``swapon(2)`` at the highest
    priority; then ``compressor``, the other ``params`` and ``enabled`` are
    written to /sys/module/zswap/parameters (one ``write(2)`` each), as
    :class:`~pyzram.host.kernel_zswap.KernelZswap` sets the host up.  The
    first ``enabled`` write sets zswap up (``zswap_setup``); later ones with
    another compressor make a new pool current.  :meth:`pageout` maps the
    pages, pushes them out with ``MADV_PAGEOUT`` and records the counters;
    :meth:`remove` writes ``enabled`` N, swaps off and removes the device.
    """

    def __init__(
        self,
        script: VmScript,
        *,
        compressor: str,
        params: dict[str, str] | None = None,
        disksize: int = 64 << 20,
        backing_algorithm: str = "lz4",
    ) -> None:
        from pyzram.host.kernel_zswap import SWAP_FLAG_PREFER, SWAP_PRIO

        self.script = script
        self.compressor = compressor
        params = dict(params or {})
        self.zram = VmZram(script)
        self.zram.setup(backing_algorithm, disksize)
        self.zram.pwrite(swap_header(disksize // PAGE_SIZE), 0)
        self.zram.close_dev()
        self.swapon_result = script.swapon("-", SWAP_FLAG_PREFER | SWAP_PRIO)
        self.writes: dict[str, Pending] = {"compressor": self.param_write("compressor", compressor)}
        for name, value in params.items():
            if name != "enabled":
                self.writes[name] = self.param_write(name, value)
        self.writes["enabled"] = self.param_write("enabled", params.get("enabled", "Y"))

    def param_write(self, name: str, value: str) -> Pending:
        return self.script.write_file(f"{ZSWAP_PARAMS_DIR}/{name}", value)

    def _counters(self) -> tuple[dict[str, Pending], Pending]:
        from pyzram.mm.zswap import DEBUGFS_FILES

        s = self.script
        dbg = {n: s.read_file(f"{ZSWAP_DEBUGFS_DIR}/{n}") for n in DEBUGFS_FILES}
        return dbg, s.read_file("/proc/vmstat")

    def pageout(self, pages: np.ndarray, *, read_back: bool = False) -> VmZswapPageout:
        """Map ``pages``, ``MADV_PAGEOUT`` them, read the counters (and, with
        ``read_back``, fault every page back and compare); the mapping is unmapped
        at the end (its slots freed, their zswap entries invalidated)."""
        from pyzram.host.kernel_zswap import MADV_PAGEOUT

        s = self.script
        parts: dict[str, Any] = {}
        parts["map"], src = s.map_pages(pages)
        parts["debugfs_before"], parts["vmstat_before"] = self._counters()
        parts["madvise"] = s.madvise(MADV_PAGEOUT)
        parts["debugfs_after"], parts["vmstat_after"] = self._counters()
        parts["meminfo"] = s.read_file("/proc/meminfo")
        parts["compressor"] = s.read_file(f"{ZSWAP_PARAMS_DIR}/compressor")
        if read_back:
            parts["compare"] = s.compare(src)
            parts["debugfs_read_back"], parts["vmstat_read_back"] = self._counters()
        parts["unmap"] = s.unmap()
        return VmZswapPageout(self, len(pages), parts)

    def remove(self) -> None:
        """``enabled`` N, ``swapoff(2)``, and the device reset and removed."""
        self.param_write("enabled", "N")
        self.script.swapoff("-")
        self.zram.remove()


@dataclass
class VmRun:
    """What one boot gave: seconds, the console log, whether the script ran to its end."""

    seconds: float
    console: str
    completed: bool
    accel: str


class VmOracle:
    """Boots the cached kernel under qemu and runs :class:`VmScript` s in it."""

    def __init__(self, kernel: KernelImage | None = None, accel: str | None = None) -> None:
        self.kernel = kernel or ensure_kernel()
        self.accel = accel or os.environ.get("PYZRAM_VM_ACCEL", "tcg")
        self.initramfs = build_initramfs(self.kernel)
        self.last: VmRun | None = None

    def config_text(self) -> str:
        """The guest kernel's Kconfig (``boot/config-*``), for ``ZramConfig``."""
        return self.kernel.config_text()

    def run(self, script: VmScript, timeout: float = 600) -> VmRun:
        """Boot once, run every command of ``script``, fill its :class:`Pending` s.

        Raises :class:`OSError` if qemu fails or the guest never starts the
        script (the console's tail says why).
        """
        with tempfile.TemporaryDirectory(prefix="pyzram-vm-") as tmp:
            t = Path(tmp)
            body = "".join(line + "\n" for line in script.lines)
            extra = [("script", 0o100644, body.encode())]
            dirs = set()
            for path in script.files:
                parts = path.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    dirs.add("/".join(parts[:i]))
            extra += [(d, 0o040755, b"") for d in sorted(dirs)]
            extra += [(p, 0o100644, data) for p, data in script.files.items()]
            initrd = t / "initrd"
            with open(initrd, "wb") as f:
                f.write(self.initramfs.read_bytes())
                f.write(_newc(extra))
            disks = []
            for name, size, content in (
                ("pages", max(len(script.data), PAGE_SIZE), bytes(script.data)),
                ("backing", script.backing_size, b""),
                ("out", max(script.out_size, PAGE_SIZE), b""),
            ):
                p = t / name
                with open(p, "wb") as f:
                    f.write(content)
                    f.truncate(size)
                disks.append(p)
            cmd = [
                _qemu() or "qemu-system-x86_64",
                "-accel", self.accel,
                "-cpu", "max" if self.accel == "tcg" else "host",
                "-m", str(GUEST_MEM_MB),
                "-smp", "1",
                "-nographic", "-no-reboot", "-nodefaults",
                "-serial", "stdio",
                "-kernel", str(self.kernel.vmlinuz),
                "-initrd", str(initrd),
                "-append", "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
                "-drive", f"file={disks[0]},if=virtio,format=raw,readonly=on",
                "-drive", f"file={disks[1]},if=virtio,format=raw",
                "-drive", f"file={disks[2]},if=virtio,format=raw",
            ]  # fmt: skip
            t0 = time.monotonic()
            try:
                r = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
                )
            except subprocess.TimeoutExpired as e:
                raise OSError(errno.ETIMEDOUT, f"qemu ran past {timeout} s") from e
            seconds = time.monotonic() - t0
            log = r.stdout.decode(errors="replace")
            script.output = disks[2].read_bytes()  # type: ignore[attr-defined]
        completed = _parse_results(script, log)
        if not any(p.done for p in script.pendings) and script.pendings:
            tail = " / ".join((log + r.stderr.decode(errors="replace")).strip().splitlines()[-5:])
            raise OSError(errno.EIO, f"the guest ran no command (qemu rc {r.returncode}): {tail}")
        self.last = VmRun(seconds, log, completed, self.accel)
        return self.last


_LINE = re.compile(r"@@ (\d+) (ok|err|hex) ?([0-9a-f-]*)")


def _parse_results(script: VmScript, log: str) -> bool:
    completed = False
    for line in log.replace("\r", "").splitlines():
        if line.startswith("@@ end"):
            completed = True
            continue
        m = _LINE.search(line)
        if not m:
            continue
        seq, kind, v = int(m.group(1)), m.group(2), m.group(3)
        if not 1 <= seq <= len(script.pendings):
            continue
        value: object = bytes.fromhex(v) if kind == "hex" else int(v)
        script.pendings[seq - 1].raw = (kind, value)
    return completed
