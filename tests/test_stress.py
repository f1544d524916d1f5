"""Real threads on one zram device: I/O, frees, idle marking, writeback, recompression.

Bounded and seeded: every thread runs a fixed number of operations drawn from its
own ``random.Random(seed + k)``; the interleaving is whatever the interpreter's
thread switches make of it (the switch interval is shortened so that they are
many).  ``PYZRAM_STRESS_OPS`` scales the number of operations (default 1000 per
I/O thread), ``PYZRAM_STRESS_SEED`` picks the seed.

The model is exact because slots have owners: each writer thread owns a range
of slots and is the only one that writes, discards or frees them; it holds its
owner lock while it changes a slot and records the slot's new content only after
the operation returned.  Readers take the owner's lock for the slots they read,
so they compare against a settled model while writeback, recompression, idle
marking and compaction run underneath without any lock of ours.

End checks: every slot reads back what was last written (or zeros), the
counters equal what the table and the pool hold (``Zram.check``: no slot lock
held, no zspage leaked), no PP_SLOT left behind, ``bd_count`` equals the WB
slots and the bitmap, ``miss_free`` and ``notify_free`` equal what the threads
counted, and after discarding everything nothing is left allocated in the pool
or on the backing device.
"""

from __future__ import annotations

import errno
import faulthandler
import os
import random
import sys
import threading
import time
import traceback

import numpy as np
import pytest

from conftest import SizedBackend, sized_page
from pyzram import Zram
from pyzram.lib.atomic import atomic64_read
from pyzram.mm.zsmalloc import ZsPool
from pyzram.workload.pages import synthetic_mix
from pyzram.zram import table as T

P = 4096
OPS = int(os.environ.get("PYZRAM_STRESS_OPS", "1000"))
SEED = int(os.environ.get("PYZRAM_STRESS_SEED", "1"))
JOIN_TIMEOUT = 30 + OPS // 20

PP_ERRNOS = {errno.EAGAIN, errno.EIO, errno.ENOSPC}
#: Secondary algorithms (priorities 1, 2).  zstd needs a stream per thread (see
#: test_codec_thread_safety).
SECONDARY = ("zstd", "deflate")
#: Run ``compact`` concurrently (set PYZRAM_STRESS_COMPACT=0 to leave it out): it moves
#: objects under readers, writers and post-processing (see test_zs_free_racing_compaction).
COMPACT = os.environ.get("PYZRAM_STRESS_COMPACT", "1") not in ("", "0")


@pytest.fixture(autouse=True)
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def page_pool(seed: int) -> np.ndarray:
    """Huge, compressible, text, same-filled and zero pages."""
    mix = synthetic_mix(48, seed)
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 3, size=(8, P), dtype=np.uint8)  # compress well
    zero = np.zeros((2, P), dtype=np.uint8)
    return np.concatenate([mix, small, zero])


class Harness:
    """Runs named thread bodies, collects their exceptions, detects hangs."""

    def __init__(self, zram: Zram | None = None) -> None:
        self.zram = zram
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.start = threading.Barrier(1)

    def add(self, name: str, fn, *args) -> None:
        def body():
            try:
                self.start.wait()
                fn(*args)
            except BaseException:  # noqa: BLE001 - reported by run()
                self.errors.append(f"{name}:\n{traceback.format_exc()}")

        self.threads.append(threading.Thread(target=body, name=name, daemon=True))

    def run(self) -> float:
        self.start = threading.Barrier(len(self.threads))
        t0 = time.monotonic()
        for t in self.threads:
            t.start()
        deadline = t0 + JOIN_TIMEOUT
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            faulthandler.dump_traceback(all_threads=True)
            held = []
            if self.zram is not None and self.zram.table is not None:
                f = self.zram.table.flags_np
                held = np.flatnonzero(f & np.uint64(T.LOCK)).tolist()
            pytest.fail(
                f"threads still running after {JOIN_TIMEOUT} s (deadlock?): {alive}; "
                f"slot locks held: {held}; thread errors:\n" + "\n".join(self.errors)
            )
        assert not self.errors, "\n".join(self.errors)
        return time.monotonic() - t0


def post_processing_invariants(z: Zram) -> None:
    """What must hold whenever no post-processing runs."""
    z.check()
    f = z.table.flags_np
    assert not (f & np.uint64(T.PP_SLOT)).any(), "PP_SLOT left behind"
    wb = np.flatnonzero(f & np.uint64(T.WB))
    assert not (f[wb] & np.uint64(T.SAME | T.ZRAM_SIZE_MASK)).any()
    if z.backing_dev is not None:
        bitmap = z.backing_dev.bitmap
        assert not bitmap[0]
        assert sorted(int(z.table.handle_np[i]) for i in wb) == np.flatnonzero(bitmap).tolist()
        assert atomic64_read(z.stats.bd_count) == len(wb), (
            atomic64_read(z.stats.bd_count),
            len(wb),
        )
        assert atomic64_read(z.stats.bd_writes) >= atomic64_read(z.stats.bd_count)
    else:
        assert not wb.size


def summary(logs: dict[str, list]) -> str:
    out = []
    for k, v in logs.items():
        errs = sorted({e for *_, e in v if e})
        names = "".join(f" {errno.errorcode[e]} {sum(x == e for *_, x in v)}" for e in errs)
        out.append(f"{k} {sum(e == 0 for *_, e in v)}/{len(v)} ok{names}")
    return ", ".join(out)


# -- the block-device stress -------------------------------------------------------------------


class Owner:
    """A writer's slots, its lock, and the model of what each slot holds."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.lock = threading.Lock()
        self.model: dict[int, bytes] = {}  # absent: freed or never written (zeros)
        self.notifies = 0
        self.misses = 0
        self.empty_notifies = 0
        self.discarded = 0

    def expect(self, index: int) -> bytes:
        return self.model.get(index, bytes(P))


def writer(z: Zram, own: Owner, pool: np.ndarray, rng: random.Random, ops: int) -> None:
    span = own.hi - own.lo
    for _ in range(ops):
        r = rng.random()
        n = rng.randint(1, 4)
        start = own.lo + rng.randrange(span)
        n = min(n, own.hi - start)
        with own.lock:
            if r < 0.55:
                picks = [rng.randrange(len(pool)) for _ in range(n)]
                data = pool[picks]
                assert z.pwrite(data.tobytes(), start * P) == n * P
                for k in range(n):
                    own.model[start + k] = data[k].tobytes()
            elif r < 0.65:
                z.discard(start * P, n * P)
                for k in range(n):
                    own.model.pop(start + k, None)
                own.discarded += n
            elif r < 0.80:
                held = start in own.model
                z.zram_slot_free_notify(start)
                own.notifies += 1
                # Only we free or write our slots, so "still allocated" means the trylock
                # failed (a reader, the idle marker or a post-processor held the slot).
                # On an empty slot a miss cannot be told from a free.
                if not held:
                    own.empty_notifies += 1
                elif z.table.allocated(start):
                    own.misses += 1
                else:
                    del own.model[start]
            else:
                if r < 0.90:  # every slot of the range
                    start, n = own.lo, span
                got = z.pread(n * P, start * P)
                want = b"".join(own.expect(start + k) for k in range(n))
                assert got == want, f"owner read of slots {start}..{start + n - 1}"


def reader(z: Zram, owners: list[Owner], rng: random.Random, ops: int) -> None:
    for _ in range(ops):
        own = rng.choice(owners)
        n = rng.randint(1, 4)
        start = own.lo + rng.randrange(own.hi - own.lo)
        n = min(n, own.hi - start)
        with own.lock:
            got = z.pread(n * P, start * P)
            want = b"".join(own.expect(start + k) for k in range(n))
        if got != want:
            bad = [
                start + k for k in range(n) if got[k * P : (k + 1) * P] != want[k * P : (k + 1) * P]
            ]
            raise AssertionError(f"reader: slots {bad} differ from the model")


def post_processor(z: Zram, rng: random.Random, ops: int, cmds: list[tuple[str, str]], log):
    """``ops`` sysfs writes; EAGAIN (the other post-processor runs) is retried a few times."""
    for _ in range(ops):
        attr, cmd = rng.choice(cmds)
        for attempt in range(50):
            try:
                z.sysfs[attr] = cmd
                log.append((attr, cmd, 0))
                break
            except OSError as e:
                if e.errno not in PP_ERRNOS:
                    raise
                if e.errno != errno.EAGAIN or attempt == 49:
                    log.append((attr, cmd, e.errno))
                    break
                time.sleep(0.001)
        time.sleep(0)


def test_stress_block_io_with_post_processing(tmp_path):
    nr_pages, writers, per_owner = 128, 4, 24
    img = tmp_path / "backing.img"
    with open(img, "wb") as f:
        f.truncate(64 * P)  # smaller than the data: ENOSPC happens
    z = Zram()
    z.sysfs["backing_dev"] = str(img)
    z.sysfs["recomp_algorithm"] = f"algo={SECONDARY[0]}"
    z.sysfs["recomp_algorithm"] = f"algo={SECONDARY[1]} priority=2"
    z.sysfs["disksize"] = str(nr_pages * P)
    pool = page_pool(SEED)
    owners = [Owner(w * per_owner, (w + 1) * per_owner) for w in range(writers)]
    h = Harness(z)
    for w, own in enumerate(owners):
        h.add(f"writer{w}", writer, z, own, pool, random.Random(SEED * 100 + w), OPS)
    for r in range(2):
        h.add(f"reader{r}", reader, z, owners, random.Random(SEED * 100 + 10 + r), OPS)
    lo, hi = owners[0].lo, owners[-1].hi - 1
    logs: dict[str, list] = {"idle": [], "writeback": [], "recompress": [], "compact": []}
    pp_ops = max(4, OPS // 6)
    h.add(
        "idle",
        post_processor,
        z,
        random.Random(SEED * 100 + 20),
        pp_ops * 2,
        [("idle", "all"), ("idle", "all"), ("idle", "0"), ("idle", "3600")],
        logs["idle"],
    )
    h.add(
        "writeback",
        post_processor,
        z,
        random.Random(SEED * 100 + 21),
        pp_ops,
        [
            ("writeback", "idle"),
            ("writeback", "type=huge_idle"),
            ("writeback", "huge"),
            ("writeback", f"page_indexes={lo}-{hi}"),
            ("writeback", "type=incompressible"),
            ("writeback_limit", "4"),
            ("writeback_limit_enable", "1"),
            ("writeback_limit_enable", "0"),
        ],
        logs["writeback"],
    )
    h.add(
        "recompress",
        post_processor,
        z,
        random.Random(SEED * 100 + 22),
        pp_ops,
        [
            ("recompress", "type=idle"),
            ("recompress", "type=huge"),
            ("recompress", "max_pages=8"),
            ("recompress", "type=idle threshold=1000"),
            ("recompress", f"algo={SECONDARY[1]}"),
        ],
        logs["recompress"],
    )
    if COMPACT:
        h.add(
            "compact",
            post_processor,
            z,
            random.Random(SEED * 100 + 23),
            max(2, pp_ops // 4),
            [("compact", "1")],
            logs["compact"],
        )
    elapsed = h.run()

    # Post-processing really ran (and sometimes collided).
    assert any(e == 0 for _, _, e in logs["writeback"]), logs["writeback"]
    assert any(e == 0 for _, _, e in logs["recompress"]), logs["recompress"]
    post_processing_invariants(z)
    # Every slot reads back what was last written.
    data = z.pread(nr_pages * P, 0)
    for own in owners:
        for i in range(own.lo, own.hi):
            assert data[i * P : (i + 1) * P] == own.expect(i), f"slot {i}"
    assert data[owners[-1].hi * P :] == bytes((nr_pages - owners[-1].hi) * P)
    stored = sum(len(own.model) for own in owners)
    assert atomic64_read(z.stats.pages_stored) == stored
    misses = sum(own.misses for own in owners)
    assert (
        misses
        <= atomic64_read(z.stats.miss_free)
        <= misses + sum(own.empty_notifies for own in owners)
    )
    assert atomic64_read(z.stats.notify_free) == sum(own.notifies + own.discarded for own in owners)
    assert atomic64_read(z.stats.failed_reads) == atomic64_read(z.stats.failed_writes) == 0
    # Nothing leaks once everything is freed.
    z.discard(0, nr_pages * P)
    post_processing_invariants(z)
    assert tuple(z.mm_stat())[:3] == (0, 0, 0) and z.mem_pool.pages_allocated == 0
    assert atomic64_read(z.stats.bd_count) == 0 and not z.backing_dev.bitmap.any()
    assert atomic64_read(z.stats.same_pages) == atomic64_read(z.stats.huge_pages) == 0
    print(
        f"\nstress: {OPS} ops/io thread, {elapsed:.2f} s, bd_stat {z.sysfs['bd_stat'].split()}, "
        f"miss_free {atomic64_read(z.stats.miss_free)}, " + summary(logs)
    )


# -- the swap-path stress ----------------------------------------------------------------------


def swapper(
    m, z: Zram, pool: np.ndarray, rng: random.Random, ops: int, stats: dict, resident: list
) -> None:
    """One 'process': its own folios, swapped out in batches and faulted back in."""
    from pyzram.mm.folio import Folio, PG_reclaim, PG_uptodate
    from pyzram.mm.page_io import (
        swap_read_folio,
        swap_read_submit,
        swap_write_submit,
        swap_writeout,
    )
    from pyzram.mm.swap import SwapIoCtx
    from pyzram.mm.swapfile import (
        folio_alloc_swap,
        folio_free_swap,
        swap_cache_alloc_folio,
        swap_cache_del_folio,
        swap_duplicate,
        swap_free,
    )

    swapped: list[tuple[object, bytes]] = []  # (entry, data)
    for _ in range(ops):
        if resident and (not swapped or rng.random() < 0.5):
            # reclaim: swap out up to 8 resident folios in one batch
            batch = [
                resident.pop(rng.randrange(len(resident))) for _ in range(min(8, len(resident)))
            ]
            ctx = SwapIoCtx(m)
            for f in batch:
                f.lock()
                f.mark_uptodate()
                f.mark_dirty()
                e = folio_alloc_swap(m, f)
                swap_duplicate(m, e)
                f.set(PG_reclaim)
                swap_writeout(ctx, f)
            swap_write_submit(ctx)
            for f in batch:
                e, data = f.swap, bytes(f.data)
                f.lock()
                swap_cache_del_folio(m, f)
                f.unlock()
                swapped.append((e, data))
            stats["out"] += len(batch)
        else:
            # faults: swap in up to 8, check, and free their swap slots
            k = min(len(swapped), rng.randint(1, 8))
            picks = [swapped.pop(rng.randrange(len(swapped))) for _ in range(k)]
            ctx = SwapIoCtx(m)
            folios = []
            for e, _ in picks:
                g = swap_cache_alloc_folio(m, e)
                swap_read_folio(ctx, g)
                folios.append(g)
            swap_read_submit(ctx)
            for g, (e, data) in zip(folios, picks, strict=True):
                g.lock()  # wait for the read
                g.unlock()
                assert g.test(PG_uptodate), f"swap-in of slot {e.offset} failed"
                assert bytes(g.data) == data, f"swap-in of slot {e.offset}: wrong data"
                swap_free(m, e)
                g.lock()
                assert folio_free_swap(m, g)
                g.unlock()
                # the process keeps the page (a new anonymous folio), maybe dirtied
                if rng.random() < 0.5:
                    data = pool[rng.randrange(len(pool))].tobytes()
                resident.append(Folio(0, data))
            stats["in"] += k
    # the process exits: whatever is still swapped out is faulted in and checked
    while swapped:
        picks, swapped = swapped[:8], swapped[8:]
        ctx = SwapIoCtx(m)
        folios = []
        for e, _ in picks:
            g = swap_cache_alloc_folio(m, e)
            swap_read_folio(ctx, g)
            folios.append(g)
        swap_read_submit(ctx)
        for g, (e, data) in zip(folios, picks, strict=True):
            g.lock()
            g.unlock()
            assert g.test(PG_uptodate) and bytes(g.data) == data, f"final swap-in of {e.offset}"
            swap_free(m, e)
            g.lock()
            assert folio_free_swap(m, g)
            g.unlock()
        stats["in"] += len(picks)


@pytest.mark.parametrize("backing", [False, True], ids=["no_backing_dev", "backing_dev"])
def test_stress_swap_path_with_post_processing(m, tmp_path, backing):
    from pyzram.mm.folio import Folio
    from pyzram.mm.swapfile import mkswap, swapoff, swapon
    from pyzram.zram.swap import zram_init, zram_swap_ops

    zram_init(m)
    z = Zram()
    if backing:
        img = tmp_path / "backing.img"
        with open(img, "wb") as f:
            f.truncate(256 * P)
        z.sysfs["backing_dev"] = str(img)
    z.sysfs["recomp_algorithm"] = f"algo={SECONDARY[1]}"
    z.sysfs["disksize"] = str(1024 * P)
    mkswap(z.disk)
    si = swapon(m, z.disk)
    assert si.ops is zram_swap_ops
    pool = page_pool(SEED + 1)
    h = Harness(z)
    nproc = 3
    stats = [{"out": 0, "in": 0} for _ in range(nproc)]
    for k in range(nproc):
        rng = random.Random(SEED * 1000 + k)
        resident = [Folio(0, pool[rng.randrange(len(pool))].tobytes()) for _ in range(24)]
        h.add(f"swapper{k}", swapper, m, z, pool, rng, max(10, OPS // 6), stats[k], resident)
    pp_ops = max(4, OPS // 10)
    logs: dict[str, list] = {"idle": [], "writeback": [], "recompress": []}
    h.add(
        "idle",
        post_processor,
        z,
        random.Random(SEED * 1000 + 20),
        pp_ops * 2,
        [("idle", "all")],
        logs["idle"],
    )
    if backing:
        h.add(
            "writeback",
            post_processor,
            z,
            random.Random(SEED * 1000 + 21),
            pp_ops,
            [("writeback", "idle"), ("writeback", "huge"), ("writeback", "type=huge_idle")],
            logs["writeback"],
        )
    h.add(
        "recompress",
        post_processor,
        z,
        random.Random(SEED * 1000 + 22),
        pp_ops,
        [("recompress", "type=idle"), ("recompress", "type=huge"), ("recompress", "max_pages=4")],
        logs["recompress"],
    )
    if COMPACT:
        logs["compact"] = []
        h.add(
            "compact",
            post_processor,
            z,
            random.Random(SEED * 1000 + 23),
            max(2, pp_ops // 4),
            [("compact", "1")],
            logs["compact"],
        )
    elapsed = h.run()
    assert all(s["in"] == s["out"] for s in stats), stats
    post_processing_invariants(z)
    # every swap slot was freed: only the header (slot 0) is left in zram
    # (a slot whose free notification missed its trylock stays allocated until reused)
    assert z.table.allocated(0)
    assert 1 <= atomic64_read(z.stats.pages_stored) <= 1 + atomic64_read(z.stats.miss_free)
    swapoff(si)
    post_processing_invariants(z)
    print(
        f"\nswap stress ({'with' if backing else 'no'} backing_dev): {elapsed:.2f} s, "
        f"{sum(s['out'] for s in stats)} pages out/in, bd_stat {z.sysfs['bd_stat'].split()}, "
        + summary(logs)
    )


# -- minimised reproductions of what the stress found --------------------------------------------


class HookedPool(ZsPool):
    """A pool whose handle lookups call ``on_lookup(handle)`` after resolving."""

    on_lookup = None

    def _handle_to_obj(self, handle):
        found = super()._handle_to_obj(handle)
        if self.on_lookup is not None:
            self.on_lookup(handle)
        return found


def test_zs_free_racing_compaction():
    """Minimised from the stress (it hung: a KeyError in zs_free leaked slot 10's lock).

    Interleaving: thread A (discard of slot 3) -> zram_free_page -> zs_free: handle lookup
    gives zspage X; thread B (compact) migrates slot 3's object from X into zspage Y and frees
    X; thread A takes the class lock and frees "its" object in X.  The kernel holds
    pool->migrate_lock (read) from the lookup until the class lock is taken, and compaction
    takes it for writing, so B must wait until A is done.
    """
    z = Zram()
    z.sysfs["disksize"] = str(16 * P)
    fresh = z.mem_pool  # nothing stored yet: the device can take a hooked pool instead
    z.mem_pool = HookedPool(fresh.name, fresh.chain_size, max_bytes=fresh._arena_size)
    fresh.zs_destroy_pool()
    z.comps[0].backend = SizedBackend(z.params[0])
    for i in range(8):  # class 1024: 4 objects in a 1-page zspage -> X = slots 0-3, Y = 4-7
        z.pwrite(sized_page(1000, seed=i), i * P)
    for i in (0, 1, 2, 4):  # X keeps slot 3 (25 %), Y keeps 5, 6, 7 (75 %)
        z.discard(i * P, P)
    pool = z.mem_pool
    assert pool.live_zspages() == 2
    target = z.table.handle[3]
    compactions: list[int] = []
    threads: list[threading.Thread] = []

    def lookup(handle):
        if handle == target and not threads:
            b = threading.Thread(target=lambda: compactions.append(pool.zs_compact()))
            threads.append(b)
            b.start()
            b.join(0.5)  # thread B runs in A's window, unless the locking makes it wait

    pool.on_lookup = lookup
    raised = None
    try:
        z.discard(3 * P, P)
    except Exception as e:  # noqa: BLE001 - what the race does is the finding
        raised = e
    finally:
        pool.on_lookup = None
        for b in threads:
            b.join(10)
    assert threads and not threads[0].is_alive() and len(compactions) == 1
    assert not z.table.flags[3] & T.LOCK, f"slot 3's lock leaked ({raised!r})"
    assert raised is None, f"discard failed: {raised!r}"
    z.check()
    assert pool.live_zspages() == 1
    assert z.pread(8 * P, 0) == b"".join(
        sized_page(1000, seed=i) if i in (5, 6, 7) else bytes(P) for i in range(8)
    )


_CODEC_THREADS = """
import sys, threading
from pyzram import Zram
from pyzram.workload.pages import synthetic_mix
from pyzram.zram import table as T
sys.setswitchinterval(1e-5)
P = 4096
z = Zram()
z.sysfs["recomp_algorithm"] = "algo=" + sys.argv[1]
z.sysfs["disksize"] = str(128 * P)
pages = synthetic_mix(128, 7)
z.pwrite(pages.tobytes(), 0)
z.sysfs["recompress"] = "\\n"
rec = [i for i in range(128) if (z.table.flags[i] >> T.ZRAM_COMP_PRIORITY_BIT1) & 3]
assert len(rec) > 10, len(rec)
bad = []
def reader(k):
    for it in range(1500):
        i = rec[(it * 7 + k * 13) % len(rec)]
        try:
            if z.pread(P, i * P) != pages[i].tobytes():
                bad.append(("wrong data", i))
        except OSError as e:
            bad.append(("read error", i, e.errno))
ts = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(len(rec), "recompressed slots;", len(bad), "bad reads", bad[:3])
sys.exit(1 if bad else 0)
"""


@pytest.mark.parametrize(
    "algo",
    [
        "zstd",
        "deflate",
        "lz4hc",
    ],
)
def test_codec_thread_safety(algo):
    """Four threads pread slots recompressed with ``algo`` (in a subprocess: it may crash).

    Found by the swap stress: backend_zstd shared one ZstdDecompressor between threads,
    which python-zstandard does not allow (failed reads, wrong data, SIGSEGV); the kernel
    has a stream per CPU (zcomp_strm).
    """
    import subprocess
    import sys

    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", _CODEC_THREADS, algo],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-500:], proc.stderr[-1500:])
