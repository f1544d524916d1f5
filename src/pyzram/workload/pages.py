"""Page sources: real process memory, real files, and synthetic mixes.

A *page array* is a C-contiguous ``numpy.ndarray`` of shape ``(N, 4096)`` and
dtype ``uint8``: the unit everything in pyzram writes to zram.  Page files
(``*.pages``) are the same bytes concatenated, with no header.

Kernel interfaces used, and why:

* ``/proc/PID/maps`` -- the VMAs of a process; we keep the private writable
  anonymous ones (no path, ``[heap]``, ``[stack]``, ``[anon:NAME]``), which
  are exactly the memory the kernel would swap out to zram (file-backed pages
  are written back to their files or dropped instead).
* ``/proc/PID/pagemap`` -- one little-endian u64 per virtual page; bit 63 is
  "present in RAM".  Only resident pages are taken: an untouched anonymous
  page has no page frame, so reclaim would never write it to swap.  (As root
  the PFN bits are filled in too; we only need bit 63.)
* ``/proc/PID/mem`` -- the process's memory at the page's virtual address
  (``mem_rw`` via ``access_remote_vm``); reads that fail with EIO (e.g. a
  page that is not accessible) are skipped.

Both ``pagemap`` and ``mem`` need ptrace-read access to the process
(``PTRACE_MODE_READ`` / ``PTRACE_MODE_ATTACH``): root, or our own child.
"""

from __future__ import annotations

import array
import errno
import functools
import glob
import operator
import os
import selectors
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "MIX_KINDS",
    "PAGE_SIZE",
    "PageSource",
    "SYNTHETIC_KINDS",
    "WORKLOAD_KINDS",
    "Mapping",
    "anonymous_mappings",
    "capture",
    "default_corpus",
    "file_pages",
    "parse_mix",
    "read_page_file",
    "snapshot_process",
    "spawn_workload",
    "stdlib_source_files",
    "MixPages",
    "mix_pages",
    "synthetic_mix",
    "synthetic_mix_with_kinds",
    "write_page_file",
]

PAGE_SIZE = 4096
PAGE_SHIFT = 12
PageArray = npt.NDArray[np.uint8]

_PM_PRESENT = np.uint64(1 << 63)
#: Pagemap entries read per ``pread`` (8 bytes each; 1 Mi entries = 4 GiB of VA).
_PAGEMAP_CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------
# page files


def _empty_pages(n: int = 0) -> PageArray:
    return np.zeros((n, PAGE_SIZE), dtype=np.uint8)


def read_page_file(path: str | os.PathLike[str]) -> PageArray:
    """Memory-map a page file read-only as an ``(N, 4096)`` uint8 array.

    Raises ``OSError(EINVAL)`` when the file size is not a multiple of 4096
    (the file is not a page file, or it was truncated).
    """
    size = os.stat(path).st_size
    if size % PAGE_SIZE:
        raise OSError(
            errno.EINVAL,
            f"page file size {size} is not a multiple of {PAGE_SIZE} bytes",
            os.fspath(path),
        )
    if size == 0:
        return _empty_pages()
    arr = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // PAGE_SIZE, PAGE_SIZE))
    return arr


def _check_pages(pages: npt.ArrayLike) -> PageArray:
    arr = np.asarray(pages)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != PAGE_SIZE:
        raise ValueError(
            f"expected a (N, {PAGE_SIZE}) uint8 page array, got {arr.shape} {arr.dtype}"
        )
    return np.ascontiguousarray(arr)


def write_page_file(path: str | os.PathLike[str], pages: npt.ArrayLike) -> None:
    """Write pages as a raw page file (the concatenated 4096-byte pages, no header)."""
    arr = _check_pages(pages)
    with open(path, "wb") as f:
        f.write(arr.reshape(-1).data)


# ----------------------------------------------------------------------------------------
# live processes


class Mapping(NamedTuple):
    """One line of ``/proc/PID/maps`` that :func:`snapshot_process` keeps."""

    start: int
    end: int
    perms: str
    path: str


_SKIP_SPECIAL = ("[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]", "[uprobes]")


def _is_anonymous(path: str, inode: str) -> bool:
    if path in _SKIP_SPECIAL:
        return False
    if path == "":
        return inode == "0"
    return path == "[heap]" or path.startswith("[stack") or path.startswith("[anon:")


def _proc_error(e: OSError, pid: int, what: str) -> OSError:
    err = e.errno or errno.EIO
    reason = {
        errno.ENOENT: "no such process",
        errno.ESRCH: "no such process",
        errno.EACCES: "permission denied (need root or ptrace access)",
        errno.EPERM: "permission denied (need root or ptrace access)",
    }.get(err, e.strerror or "error")
    # OSError(errno, ...) returns the matching subclass (FileNotFoundError, ...).
    return OSError(err, f"cannot read {what} of pid {pid}: {reason}", f"/proc/{pid}/{what}")


def _check_alive(pid: int) -> None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError as e:
        raise _proc_error(e, pid, "stat") from e
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    if state in (b"Z", b"X", b"x"):
        raise ProcessLookupError(
            errno.ESRCH, f"pid {pid} has exited (zombie): no memory", f"/proc/{pid}"
        )


def anonymous_mappings(pid: int) -> list[Mapping]:
    """The private writable anonymous mappings of ``/proc/PID/maps``, in address order.

    Kept: permissions ``rw?p`` and no backing file (empty path with inode 0,
    ``[heap]``, ``[stack]``, ``[anon:NAME]``).  Skipped: file-backed and shared
    mappings, and the special ``[vvar]``, ``[vdso]``, ``[vsyscall]`` ones.
    """
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise _proc_error(e, pid, "maps") from e
    out = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        addr, perms, _offset, _dev, inode = fields[:5]
        path = fields[5].strip() if len(fields) == 6 else ""
        if perms[1] != "w" or perms[3] != "p" or not _is_anonymous(path, inode):
            continue
        lo, hi = addr.split("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), perms, path))
    return out


def _present_pages(pagemap_fd: int, m: Mapping) -> npt.NDArray[np.uint64]:
    """Virtual page numbers of ``m`` whose pagemap entry has bit 63 (present) set."""
    first = m.start >> PAGE_SHIFT
    npages = (m.end - m.start) >> PAGE_SHIFT
    found = []
    for lo in range(0, npages, _PAGEMAP_CHUNK):
        count = min(_PAGEMAP_CHUNK, npages - lo)
        want = count * 8
        raw = bytearray()
        while len(raw) < want:
            chunk = os.pread(pagemap_fd, want - len(raw), (first + lo) * 8 + len(raw))
            if not chunk:
                break
            raw += chunk
        entries = np.frombuffer(raw[: len(raw) - len(raw) % 8], dtype="<u8")
        idx = np.flatnonzero(entries & _PM_PRESENT)
        found.append(idx.astype(np.uint64) + np.uint64(first + lo))
    if not found:
        return np.empty(0, dtype=np.uint64)
    return np.concatenate(found)


def _read_run(mem_fd: int, out: PageArray, pos: int, vpn: int, count: int) -> int:
    """Read ``count`` pages from virtual page ``vpn`` into ``out[pos:]``; return pages kept.

    One ``preadv`` for the whole run; after a short read (``mem_rw`` stops at
    the first page it cannot access) the failing page is retried alone and
    skipped if it fails with EIO (or reads short), then the rest continues.
    """
    kept = 0
    done = 0
    while done < count:
        want = count - done
        dst = out[pos + kept : pos + kept + want]
        try:
            got = os.preadv(mem_fd, [memoryview(dst).cast("B")], (vpn + done) << PAGE_SHIFT)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            got = 0
        whole = got // PAGE_SIZE
        kept += whole
        done += whole
        if whole == want:
            break
        # Page `done` failed (or the read was short): try it alone, else skip it.
        one = out[pos + kept]
        try:
            n = os.preadv(mem_fd, [memoryview(one).cast("B")], (vpn + done) << PAGE_SHIFT)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            n = 0
        if n == PAGE_SIZE:
            kept += 1
        done += 1
    return kept


def snapshot_process(
    pid: int, limit: int | None = None, progress: Callable[[int, int], None] | None = None
) -> PageArray:
    """The resident private writable anonymous pages of a live process, in address order.

    Parses ``/proc/PID/maps`` (:func:`anonymous_mappings`), reads each
    mapping's ``/proc/PID/pagemap`` entries with one ``pread`` (numpy picks the
    present ones), then reads each run of consecutive present pages from
    ``/proc/PID/mem`` with one ``preadv``; pages that fail with EIO are
    skipped.  ``limit`` caps the number of pages (the first ones by address).
    ``progress(done, total)`` is called as the pages are read.

    Raises :class:`OSError` with ESRCH/ENOENT when the process is gone (or a
    zombie), EACCES/EPERM when we may not read it.
    """
    _check_alive(pid)
    maps = anonymous_mappings(pid)
    try:
        pagemap_fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _proc_error(e, pid, "pagemap") from e
    try:
        vpns = [_present_pages(pagemap_fd, m) for m in maps]
    except OSError as e:
        raise _proc_error(e, pid, "pagemap") from e
    finally:
        os.close(pagemap_fd)
    all_vpns = np.concatenate(vpns) if vpns else np.empty(0, dtype=np.uint64)
    if limit is not None:
        all_vpns = all_vpns[: max(limit, 0)]
    total = len(all_vpns)
    out = np.empty((total, PAGE_SIZE), dtype=np.uint8)
    if total == 0:
        return out
    # Runs of consecutive virtual pages: one read each.
    breaks = np.flatnonzero(np.diff(all_vpns) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [total]))
    try:
        mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _proc_error(e, pid, "mem") from e
    pos = 0
    try:
        for s, e_ in zip(starts.tolist(), ends.tolist(), strict=True):
            pos += _read_run(mem_fd, out, pos, int(all_vpns[s]), e_ - s)
            if progress is not None:
                progress(e_, total)
    except OSError as e:
        raise _proc_error(e, pid, "mem") from e
    finally:
        os.close(mem_fd)
    if pos == 0 and total:
        # mem_rw reads nothing once the mm is gone: the process exited meanwhile.
        _check_alive(pid)
    return out if pos == total else out[:pos].copy()


# ----------------------------------------------------------------------------------------
# workload children

_PYTHON_CHILD = r"""
import json, random, sys, datetime, collections
import numpy as np

scale = float(sys.argv[1]); seed = int(sys.argv[2])
random.seed(seed)
rng = np.random.default_rng(seed)
S = lambda n: max(1, int(n * scale))

FIRST = ["Ada", "Alan", "Barbara", "Brian", "Claude", "Dennis", "Donald", "Edsger", "Frances",
         "Grace", "Guido", "Ken", "Linus", "Margaret", "Niklaus", "Radia", "Tim", "Yukihiro"]
LAST = ["Lovelace", "Turing", "Liskov", "Kernighan", "Shannon", "Ritchie", "Knuth", "Dijkstra",
        "Allen", "Hopper", "van Rossum", "Thompson", "Torvalds", "Hamilton", "Wirth", "Perlman"]
WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her all she there would their we him been has when who "
         "will more no if out so said what up its about into than them can only other new some "
         "could time these two may then do first any my now such like our over man me even most "
         "made after also did many before must through back years where much your way well down "
         "should because each just those people how too little state good very make world still "
         "own see men work long get here between both life being under never day same another "
         "know while last might us great old year off come since against go came right used take "
         "memory page swap kernel device compress slot zram pool class object block write "
         "read").split()
TAGS = ["alpha", "beta", "gamma", "delta", "prod", "dev", "staging", "eu", "us", "asia", "vip"]
base = datetime.date(2020, 1, 1)

records = []
for i in range(S(12000)):
    f, l = random.choice(FIRST), random.choice(LAST)
    records.append({
        "id": i,
        "name": f"{f} {l}",
        "email": f"{f.lower()}.{l.lower().replace(' ', '')}{i}@example.org",
        "score": random.random() * 100,
        "balance": round(random.gauss(1000, 250), 2),
        "tags": random.sample(TAGS, random.randint(1, 4)),
        "joined": (base + datetime.timedelta(days=random.randint(0, 1500))).isoformat(),
        "address": {"city": random.choice(["Oslo", "Lima", "Pune", "Kyiv", "Perth"]),
                    "zip": f"{random.randint(10000, 99999)}",
                    "geo": [random.uniform(-90, 90), random.uniform(-180, 180)]},
        "active": random.random() < 0.7,
    })
text = json.dumps(records[: S(3000)])
parsed = json.loads(text)

sentences = [" ".join(random.choice(WORDS) for _ in range(random.randint(6, 24))).capitalize()
             + "." for _ in range(S(10000))]
counter = collections.Counter(random.choice(WORDS) for _ in range(S(80000)))

walk = np.cumsum(rng.standard_normal(S(600_000)))
ints = np.arange(S(400_000), dtype=np.int64)
sparse = np.empty(S(1_000_000), dtype=np.float32)
sparse[:] = 0.0
nz = rng.choice(sparse.size, size=max(1, sparse.size // 500), replace=False)
sparse[nz] = rng.standard_normal(nz.size).astype(np.float32)
noise = rng.integers(0, 256, size=S(512 * 1024), dtype=np.uint8)
sine = ((np.sin(np.arange(S(512 * 1024)) / 50.0) + 1.0) * 127.5).astype(np.uint8)
lowent = rng.integers(0, 8, size=S(400_000), dtype=np.int32)

sys.stdout.write("READY\n")
sys.stdout.flush()
sys.stdin.buffer.read()
"""

_SQLITE_CHILD = r"""
import random, sqlite3, sys, datetime

scale = float(sys.argv[1]); seed = int(sys.argv[2])
random.seed(seed)
S = lambda n: max(1, int(n * scale))
WORDS = ("login logout view click buy sell search share like comment upload download "
         "open close save delete rename move copy print sync").split()
NAMES = ["ada", "alan", "grace", "linus", "ken", "dennis", "barbara", "edsger", "tim", "radia"]
base = datetime.datetime(2021, 1, 1)

db = sqlite3.connect(":memory:")
db.execute("PRAGMA cache_size = -400000")
db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, score REAL, "
           "created TEXT, avatar BLOB)")
db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER, kind TEXT, ts TEXT, "
           "value REAL, note TEXT)")
nusers = S(60_000)
db.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", (
    (i, f"{random.choice(NAMES)}_{i}", f"{random.choice(NAMES)}{i}@example.com",
     random.random() * 5, (base + datetime.timedelta(seconds=random.randint(0, 10**8))).isoformat(),
     random.randbytes(random.randint(0, 64)) if random.random() < 0.2 else None)
    for i in range(nusers)))
db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", (
    (i, random.randrange(nusers), random.choice(WORDS),
     (base + datetime.timedelta(seconds=random.randint(0, 10**8))).isoformat(),
     random.expovariate(0.1), " ".join(random.choices(WORDS, k=random.randint(0, 6))))
    for i in range(S(160_000))))
db.execute("CREATE INDEX users_email ON users(email)")
db.execute("CREATE INDEX events_user ON events(user_id)")
db.execute("CREATE INDEX events_ts ON events(ts)")
db.commit()
db.execute("SELECT kind, count(*), avg(value) FROM events GROUP BY kind").fetchall()

sys.stdout.write("READY\n")
sys.stdout.flush()
sys.stdin.buffer.read()
"""


def _sqlite_available() -> bool:
    try:
        import sqlite3  # noqa: F401
    except ImportError:
        return False
    return True


_CHILDREN = {"python": _PYTHON_CHILD, "sqlite": _SQLITE_CHILD}
#: The workload kinds :func:`spawn_workload` can start on this interpreter.
WORKLOAD_KINDS: tuple[str, ...] = ("python", "sqlite") if _sqlite_available() else ("python",)

#: Environment of workload children: fixed and minimal, because the stack pages
#: hold envp and a snapshot should not depend on the caller's environment.
CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def wait_ready(proc: subprocess.Popen[bytes], timeout: float, marker: bytes = b"READY\n") -> bytes:
    """Read the child's stdout pipe until ``marker`` arrives, at most ``timeout`` s.

    Returns what was read (the child writes nothing after the marker until
    told to).  ``TimeoutError`` when the marker does not come,
    ``RuntimeError`` when the child exits first.
    """
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    got = b""
    what = marker.strip().decode() or "its reply"
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while marker not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"workload pid {proc.pid} not {what} after {timeout:.0f} s")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"workload pid {proc.pid} exited before {what}")
            got += chunk
    return got


@contextmanager
def spawn_workload(
    kind: str = "python", scale: float = 1.0, seed: int = 7, timeout: float = 120.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a workload child, wait until it has built its data, yield it; kill it on exit.

    Kinds (see :data:`WORKLOAD_KINDS`):

    * ``"python"``: this interpreter with numpy builds 12k dict records
      (names, e-mails, floats, tags, ISO dates, nested dicts), ``json.dumps``
      of 3k of them and ``json.loads`` of that text, 10k sentence strings and
      a Counter over 80k words, and numpy arrays: a float64 random walk, an
      int64 arange, a float32 array with 0.2% non-zeros (the zeros are
      written, so resident; some pages are all zero), 0.5 MiB of random
      bytes, a uint8 sine wave, low-entropy int32 values.  About 50 MiB of
      anonymous memory at ``scale=1`` (14 MiB of it the interpreter and
      numpy themselves, not scaled).
    * ``"sqlite"`` (when the ``sqlite3`` module exists): an in-memory database
      with a users table (60k rows, some random blobs) and an events table
      (160k rows), three indexes and a 400 MB page cache, so the whole
      database lives in malloc'd anonymous memory (about 35 MiB at scale 1).

    The child gets a minimal fixed environment (:data:`CHILD_ENV`), fixed
    seeds and ``PYTHONHASHSEED=0``; it prints ``READY`` and then blocks on
    stdin (so it also exits if we die).  Its stderr is kept for the error
    message when it fails to become ready within ``timeout`` seconds.
    """
    if kind not in _CHILDREN:
        raise ValueError(f"unknown workload kind {kind!r}; expected one of {sorted(_CHILDREN)}")
    if kind not in WORKLOAD_KINDS:
        raise RuntimeError(f"workload {kind!r} is not available on this interpreter")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-s", "-c", _CHILDREN[kind], repr(float(scale)), str(int(seed))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=dict(CHILD_ENV),
            cwd="/",
            close_fds=True,
        )
        try:
            try:
                wait_ready(proc, timeout)
            except (TimeoutError, RuntimeError) as e:
                err.seek(0)
                tail = err.read()[-2000:].decode(errors="replace").strip()
                raise type(e)(f"{e}{': ' + tail if tail else ''}") from None
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


def capture(kind: str = "python", scale: float = 1.0, limit: int | None = None) -> PageArray:
    """Spawn a workload (:func:`spawn_workload`), snapshot it, kill it; return its pages.

    The result includes the interpreter's own heap and stack, like a real
    process's anonymous memory would.  Not bit-reproducible (ASLR addresses
    in pointers), but the mix is stable.
    """
    with spawn_workload(kind, scale) as proc:
        return snapshot_process(proc.pid, limit=limit)


# ----------------------------------------------------------------------------------------
# files


def _iter_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from (q for q in sorted(path.rglob("*")) if q.is_file())
        else:
            yield path


def file_pages(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], limit: int | None = None
) -> PageArray:
    """The pages of real files, in the order given (directories: their files, sorted).

    Each file is split into 4096-byte pages and its last page is zero-padded,
    as in the page cache.  Empty files give no pages.  ``limit`` caps the
    number of pages.
    """
    chunks: list[PageArray] = []
    total = 0
    for path in _iter_files(paths):
        if limit is not None and total >= limit:
            break
        data = path.read_bytes()
        if not data:
            continue
        n = -(-len(data) // PAGE_SIZE)
        if limit is not None:
            n = min(n, limit - total)
            data = data[: n * PAGE_SIZE]
        pages = _empty_pages(n)
        pages.reshape(-1)[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        chunks.append(pages)
        total += n
    if not chunks:
        return _empty_pages()
    return np.concatenate(chunks)


@functools.cache
def stdlib_source_files() -> tuple[Path, ...]:
    """The running interpreter's top-level stdlib ``*.py`` files, sorted by name."""
    stdlib = sysconfig.get_paths()["stdlib"]
    return tuple(Path(p) for p in sorted(glob.glob(os.path.join(stdlib, "*.py"))))


_FALLBACK_WORDS = (
    b"def return self None import from class if else elif for while in not and or is "
    b"try except finally with as yield lambda pass raise assert global True False value "
    b"name data result index length buffer page slot size offset count error args kwargs"
).split()


@functools.cache
def _text_blob(max_bytes: int = 4 << 20) -> npt.NDArray[np.uint8]:
    """Real source text: the stdlib ``*.py`` files concatenated (up to ``max_bytes``).

    Falls back to deterministic pseudo-code from a word list when the
    interpreter ships no ``.py`` sources.
    """
    parts: list[bytes] = []
    size = 0
    for path in stdlib_source_files():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data)
        size += len(data)
        if size >= max_bytes:
            break
    if size < 4 * PAGE_SIZE:
        rng = np.random.default_rng(0)
        words = [_FALLBACK_WORDS[i] for i in rng.integers(0, len(_FALLBACK_WORDS), 200_000)]
        lines = [b" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
        parts = [b"\n    ".join(lines)]
    blob = np.frombuffer(b"".join(parts)[:max_bytes], dtype=np.uint8)
    blob.flags.writeable = False
    return blob


# ----------------------------------------------------------------------------------------
# synthetic pages

#: The categories of :func:`synthetic_mix_with_kinds` and their shares.
SYNTHETIC_KINDS: dict[str, float] = {
    "zero": 0.25,
    "same": 0.10,  # same-filled, non-zero
    "text": 0.25,
    "text_tail": 0.10,  # text followed by zeros
    "struct": 0.10,  # includes "near_same" pages, about 1% of all
    "random": 0.10,
    "near_huge": 0.10,
}


class _Block:
    """One kind's pages of a mix, kept as what makes them (a window of a blob, a
    row of a table) rather than as copies: ``page(j)`` is the j-th page, read-only;
    ``fill(out, at, js)`` writes pages ``js`` to ``out[at]``."""

    def page(self, j: int) -> PageArray:
        raise NotImplementedError

    def fill(self, out: PageArray, at: npt.NDArray[np.int64], js: npt.NDArray[np.int64]) -> None:
        raise NotImplementedError


_ZERO_PAGE = np.zeros(PAGE_SIZE, dtype=np.uint8)
_ZERO_PAGE.flags.writeable = False


class _Zero(_Block):
    """Zero pages: one shared zero page; the rows of a new array stay untouched."""

    def page(self, j: int) -> PageArray:
        return _ZERO_PAGE

    def fill(self, out: PageArray, at: npt.NDArray[np.int64], js: npt.NDArray[np.int64]) -> None:
        pass  # rows of _empty_pages are zero already, and untouched they take no memory


class _Stored(_Block):
    """Pages that exist only as themselves (random bytes, struct words, patterns)."""

    def __init__(self, pages: PageArray) -> None:
        pages.flags.writeable = False
        self.pages = pages

    def page(self, j: int) -> PageArray:
        return self.pages[j]

    def fill(self, out: PageArray, at: npt.NDArray[np.int64], js: npt.NDArray[np.int64]) -> None:
        out[at] = self.pages[js]


class _Windows(_Block):
    """Pages that are 4 KiB windows of a text blob, each with its tail from
    ``lengths[j]`` on zeroed when ``lengths`` is given."""

    def __init__(self, blob: PageArray, offs: npt.NDArray[np.int64], lengths=None) -> None:
        self.blob = blob
        self.offs, self.lengths = offs, lengths
        #: The same as lists: ``page(j)`` reads one item of each.
        self._offs = offs.tolist()
        self._lengths = None if lengths is None else lengths.tolist()

    def page(self, j: int) -> PageArray:
        off = self._offs[j]
        page = self.blob[off : off + PAGE_SIZE]
        if self._lengths is not None:
            page = page.copy()
            page[self._lengths[j] :] = 0
            page.flags.writeable = False
        return page

    def fill(self, out: PageArray, at: npt.NDArray[np.int64], js: npt.NDArray[np.int64]) -> None:
        # Rows of a strided view: the pages are copied once, with no index array.
        pages = np.lib.stride_tricks.sliding_window_view(self.blob, PAGE_SIZE)[self.offs[js]]
        if self.lengths is not None:
            pages[np.arange(PAGE_SIZE)[None, :] >= self.lengths[js][:, None]] = 0
        out[at] = pages


class _Rows(_Block):
    """Pages that are whole rows of a table (the pages of the binary blob)."""

    def __init__(self, table: PageArray, idx: npt.NDArray[np.int64]) -> None:
        self.table = table
        self.idx = idx
        self._idx = idx.tolist()

    def page(self, j: int) -> PageArray:
        return self.table[self._idx[j]]

    def fill(self, out: PageArray, at: npt.NDArray[np.int64], js: npt.NDArray[np.int64]) -> None:
        out[at] = self.table[self.idx[js]]


class MixPages:
    """``n`` pages of a synthetic mix, made on demand: the sequence of pages that
    :func:`synthetic_mix` returns as one array, without the array.

    Text and binary pages are windows and rows of their blobs (a few MiB), zero
    pages one shared page; only the kinds that exist as nothing but themselves
    (random bytes, struct words, same-filled patterns) are stored.  So a run of
    a million pages holds its source in a fraction of the pages' 4 GiB, as a
    process holds the program that makes its memory rather than a copy of it.

    ``mix[i]`` (``i`` an int) is page ``i``, a read-only ``(4096,)`` uint8 array;
    ``mix[a:b]`` and ``numpy.asarray(mix)`` make those pages as one array;
    ``kinds`` names each page's kind.
    """

    #: Pages made per step by ``_make``: what it copies at once besides its result.
    _STEP = 4096

    def __init__(self, n: int, blocks: dict[str, tuple[_Block, int]], perm) -> None:
        """``blocks``: each kind's block and page count, in the order they were made;
        ``perm``: the shuffle (block row j of the kinds in order is page ``where[j]``,
        ``where`` the inverse of ``perm``)."""
        self._n = n
        self._names = list(blocks)
        self._blocks = [b for b, _ in blocks.values()]
        where = np.empty(n, dtype=np.int64)
        where[perm] = np.arange(n)
        kind = np.zeros(n, dtype=np.uint8)
        row = np.zeros(n, dtype=np.int64)
        first = 0
        for k, (_, count) in enumerate(blocks.values()):
            rows = where[first : first + count]
            kind[rows] = k
            row[rows] = np.arange(count)
            first += count
        #: Page i is row ``row[i]`` of block ``kind[i]``; as arrays for ``_make``,
        #: and as ``array.array``\ s for ``mix[i]`` (an item is then an int).
        self._kind_np, self._row_np = kind, row
        self._kind = array.array("B", kind.tobytes())
        self._row = array.array("q", row.tobytes())

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._make(np.arange(self._n)[i])
        i = operator.index(i)
        if not -self._n <= i < self._n:
            raise IndexError(f"page {i} out of range for {self._n} pages")
        return self._blocks[self._kind[i]].page(self._row[i])

    def __array__(self, dtype=None, copy=None) -> PageArray:
        out = self._make(np.arange(self._n))
        return out if dtype is None else out.astype(dtype, copy=False)

    def _make(self, idx: npt.NDArray[np.int64]) -> PageArray:
        """The pages ``idx`` as one new array, each block's pages a step at a time."""
        out = _empty_pages(len(idx))
        for lo in range(0, len(idx), self._STEP):
            part = idx[lo : lo + self._STEP]
            kinds, rows = self._kind_np[part], self._row_np[part]
            for k, block in enumerate(self._blocks):
                at = np.flatnonzero(kinds == k)
                if len(at):
                    block.fill(out, lo + at, rows[at])
        return out

    @property
    def kinds(self) -> npt.NDArray[np.str_]:
        """The name of each page's kind."""
        names = np.array(self._names, dtype="<U10")
        return names[self._kind_np]


def _same_pages(count: int, rng: np.random.Generator) -> PageArray:
    """Same-filled non-zero pages: 0xff.., 0x01.., 0xdeadbeef, 1.0f, an 8-byte pattern."""
    out = _empty_pages(count)
    words = out.view("<u8")
    patterns = [
        0xFFFFFFFFFFFFFFFF,
        0x0101010101010101,
        0xDEADBEEFDEADBEEF,
        0x3F8000003F800000,  # float32 1.0, twice
    ]
    for i in range(count):
        kind = i % 5
        if kind < 4:
            words[i] = patterns[kind]
        else:
            # A random 8-byte period that is not a shorter one.
            words[i] = int(rng.integers(1 << 32, 1 << 63)) | 0x0102
    return out


def _near_same_pages(count: int, rng: np.random.Generator) -> PageArray:
    """Pages that look same-filled but are not: a 16-byte period; last / middle word differs."""
    out = _empty_pages(count)
    words = out.view("<u8")
    for i in range(count):
        a = int(rng.integers(1, 1 << 63))
        b = a ^ (1 << int(rng.integers(0, 63)))
        words[i] = a
        kind = i % 3
        if kind == 0:
            words[i, 1::2] = b  # periodic with period 16 bytes, not 8
        elif kind == 1:
            words[i, 511] = b  # zram_same_page compares word 0 with word 511 first
        else:
            words[i, 256] = b
    return out


def _text_offsets(count: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Where ``count`` text pages start in :func:`_text_blob`."""
    return rng.integers(0, len(_text_blob()) - PAGE_SIZE + 1, size=count)


def _text_pages(count: int, rng: np.random.Generator) -> _Block:
    return _Windows(_text_blob(), _text_offsets(count, rng))


def _text_tail_pages(count: int, rng: np.random.Generator) -> _Block:
    offs = _text_offsets(count, rng)
    return _Windows(_text_blob(), offs, rng.integers(256, PAGE_SIZE - 256 + 1, size=count))


def _struct_pages(count: int, rng: np.random.Generator) -> PageArray:
    """u64 words as in a heap of C structs: pointer-like values, small ints and zeros."""
    bases = np.array([0x0000_5555_5555_0000, 0x0000_7F3A_1C00_0000, 0x0000_7FFC_8000_0000], "<u8")
    kind = rng.choice(3, size=(count, 512), p=[0.35, 0.30, 0.35])
    base = bases[rng.integers(0, len(bases), size=(count, 1))]
    ptr = base + rng.integers(0, 1 << 16, size=(count, 512)).astype("<u8") * np.uint64(16)
    small = rng.integers(0, 256, size=(count, 512)).astype("<u8")
    words = np.where(kind == 0, ptr, np.where(kind == 1, small, np.uint64(0))).astype("<u8")
    words[:, 0] = ptr[:, 0]  # never all-zero
    return words.view(np.uint8).reshape(count, PAGE_SIZE)


def _random_pages(count: int, rng: np.random.Generator) -> PageArray:
    return rng.integers(0, 256, size=(count, PAGE_SIZE), dtype=np.uint8)


def _near_huge_pages(count: int, rng: np.random.Generator) -> PageArray:
    """k random bytes then zeros, k in 3550..3700: lz4/lzo sizes straddle huge_class_size."""
    out = _random_pages(count, rng)
    ks = rng.integers(3550, 3701, size=count)
    out[np.arange(PAGE_SIZE)[None, :] >= ks[:, None]] = 0
    return out


def _binary_files() -> list[Path]:
    """Machine code and binary data: this interpreter's executable and numpy's and
    pyzram's shared objects (``*.so``), sorted."""
    files = [Path(sys.executable).resolve()]
    for mod in ("numpy", "pyzram"):
        try:
            spec = __import__(mod).__file__
        except ImportError:
            continue
        if spec:
            files += sorted(Path(spec).parent.rglob("*.so"))
    return files


@functools.cache
def _binary_blob(max_bytes: int = 8 << 20) -> npt.NDArray[np.uint8]:
    """The bytes of :func:`_binary_files` concatenated (up to ``max_bytes``)."""
    parts: list[bytes] = []
    size = 0
    for path in _binary_files():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data[: max_bytes - size])
        size += len(parts[-1])
        if size >= max_bytes:
            break
    blob = np.frombuffer(b"".join(parts), dtype=np.uint8)
    blob.flags.writeable = False
    return blob


def _binary_pages(count: int, rng: np.random.Generator) -> _Block:
    """Whole pages of real binaries (ELF code, symbol tables, data) at page-aligned
    offsets; struct-like pages if no binary can be read."""
    blob = _binary_blob()
    npages = len(blob) // PAGE_SIZE
    if npages < 4:
        return _Stored(_struct_pages(count, rng))
    pages = blob[: npages * PAGE_SIZE].reshape(npages, PAGE_SIZE)
    return _Rows(pages, rng.integers(0, npages, size=count))


def _stored(make: Callable[[int, np.random.Generator], PageArray]):
    return lambda c, r: _Stored(make(c, r))


#: Each kind's maker: ``(count, rng) -> _Block``, drawing from ``rng`` in this order.
_MAKERS: dict[str, Callable[[int, np.random.Generator], _Block]] = {
    "zero": lambda c, r: _Zero(),
    "same": _stored(_same_pages),
    "text": _text_pages,
    "text_tail": _text_tail_pages,
    "struct": _stored(_struct_pages),
    "near_same": _stored(_near_same_pages),
    "random": _stored(_random_pages),
    "near_huge": _stored(_near_huge_pages),
    "binary": _binary_pages,
}

#: The page kinds a mix may name (``synthetic_mix(mix=...)``, ``--mix``).
MIX_KINDS: tuple[str, ...] = tuple(_MAKERS)


def parse_mix(text: str) -> dict[str, float]:
    """Parse a mix such as ``zero=0.1,same=0.05,text=0.3,random=0.1,binary=0.45``.

    Each item is ``KIND=SHARE`` with a kind of :data:`MIX_KINDS` named once
    and a share between 0 and 1; the shares must add up to 1 (within
    1e-6).  Raises :class:`ValueError` naming the offending item.
    """
    mix: dict[str, float] = {}
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ValueError("empty page mix; e.g. zero=0.25,text=0.5,random=0.25")
    for item in items:
        kind, eq, share_text = item.partition("=")
        kind = kind.strip()
        if not eq or not kind:
            raise ValueError(f"bad page mix item {item!r}: want KIND=SHARE")
        if kind not in _MAKERS:
            raise ValueError(f"unknown page kind {kind!r} in mix; kinds: {', '.join(MIX_KINDS)}")
        if kind in mix:
            raise ValueError(f"page kind {kind!r} is named twice in the mix")
        try:
            share = float(share_text)
        except ValueError:
            share = -1.0
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share of {kind!r} must be a number from 0 to 1, not {share_text!r}")
        mix[kind] = share
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"page mix shares add up to {total:g}, not 1")
    return mix


def _mix_counts(n: int, mix: dict[str, float]) -> dict[str, int]:
    """``floor(n * share)`` per kind, the remainder to the largest fractional parts
    (ties: the kind named first)."""
    exact = {k: n * share for k, share in mix.items()}
    counts = {k: int(v) for k, v in exact.items()}
    order = sorted(mix, key=lambda k: -(exact[k] - counts[k]))
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def mix_pages(n: int, seed: int = 7, mix: dict[str, float] | None = None) -> MixPages:
    """:func:`synthetic_mix`'s pages as a :class:`MixPages`, made on demand.

    Without ``mix`` the categories are :data:`SYNTHETIC_KINDS` plus
    ``"near_same"`` (taken out of the ``struct`` share); counts are
    ``floor(n * share)`` and the remainder goes to ``text``.  With ``mix``
    (kind -> share, see :func:`parse_mix`) each kind gets
    ``floor(n * share)`` pages and the remainder goes one page each to the
    kinds with the largest fractional parts.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    if mix is None:
        counts = {k: int(n * share) for k, share in SYNTHETIC_KINDS.items()}
        counts["text"] += n - sum(counts.values())
        near_same = min(counts["struct"], n // 100 if n >= 100 else int(n >= 10))
        counts["struct"] -= near_same
        counts["near_same"] = near_same
    else:
        unknown = sorted(set(mix) - set(_MAKERS))
        if unknown:
            raise ValueError(f"unknown page kind(s) {', '.join(unknown)}")
        if abs(sum(mix.values()) - 1.0) > 1e-6 or min(mix.values(), default=0) < 0:
            raise ValueError("page mix shares must be >= 0 and add up to 1")
        counts = _mix_counts(n, mix)
    # The shuffle is drawn from a generator of its own; the kinds then draw from
    # ``rng`` one after another, in the order of _MAKERS.
    perm = np.random.default_rng([seed, 1]).permutation(n)
    blocks = {k: (_MAKERS[k](counts[k], rng), counts[k]) for k in _MAKERS if counts.get(k)}
    return MixPages(n, blocks, perm)


#: What a run takes its pages from: an array (a page file's mapping, the corpus)
#: or a mix made on demand; ``len(src)`` pages, ``src[i]`` page i.
PageSource = PageArray | MixPages


def synthetic_mix_with_kinds(
    n: int, seed: int = 7, mix: dict[str, float] | None = None
) -> tuple[PageArray, npt.NDArray[np.str_]]:
    """:func:`synthetic_mix` and, for each page, the name of its category."""
    pages = mix_pages(n, seed, mix)
    return np.asarray(pages), pages.kinds


def synthetic_mix(n: int, seed: int = 7, mix: dict[str, float] | None = None) -> PageArray:
    """``n`` synthetic pages in a shuffled, seed-deterministic mix.

    The default mix: about 25% zero pages, 10% same-filled non-zero (0xff..,
    0x01.., 0xdeadbeef, 1.0f, an 8-byte pattern), 25% real source text (stdlib
    ``.py`` files at random offsets), 10% text with a zero tail, 10% struct-like
    u64 words (of which ~1% of all pages are "near-same": a 16-byte period, or
    one differing word, to exercise zram's same-filled test), 10% random bytes
    (incompressible, huge) and 10% near-huge pages (k random bytes then zeros,
    k in 3550..3700, compressing to about 3570-3730 bytes around the 3625
    huge threshold).

    ``mix`` (kind -> share, e.g. ``parse_mix("zero=0.1,text=0.5,binary=0.4")``)
    chooses other shares of :data:`MIX_KINDS`, which add ``binary``: whole
    pages of this interpreter's executable and of numpy's and pyzram's shared
    objects (machine code and binary data; identical on machines with the
    same installation).
    """
    return synthetic_mix_with_kinds(n, seed, mix)[0]


def default_corpus(n: int = 4096) -> PageArray:
    """The embedded default corpus used when no page file is given.

    Three quarters :func:`synthetic_mix` (seed 7), one quarter whole stdlib
    source files cut into pages (:func:`stdlib_source_files`, zero-padded last
    pages, as in a page cache), shuffled with seed 4096.  No live process is
    involved, so the corpus is identical on every machine with the same Python
    version (its stdlib sources); if no ``.py`` sources are installed it is
    all synthetic, with generated text.
    """
    n_files = n // 4
    files = file_pages(stdlib_source_files(), limit=n_files) if n_files else _empty_pages()
    syn = synthetic_mix(n - len(files), seed=7)
    pages = np.concatenate([syn, files])
    perm = np.random.default_rng(4096).permutation(len(pages))
    return np.ascontiguousarray(pages[perm])
