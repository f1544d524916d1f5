"""A deterministic interleaving explorer for zram's slot-lock protocol.

zram serialises everything that touches one slot with the slot's bit lock
(``ZRAM_ENTRY_LOCK`` in ``zram->table[index].attr.flags``, taken with
``zram_slot_lock`` / ``zram_slot_trylock``, released with
``zram_slot_unlock``).  Races in that protocol are about *which critical
sections of two tasks come first*, so they show when the tasks are stopped at
the lock operations and resumed in every order.  This module does that with
real threads and a small scheduler of its own:

* **Actors** are functions run in threads (a swap-in, ``writeback``,
  ``recompress``, ...).  Only one runs at a time.  An actor stops at each
  *yield point*: before a slot lock attempt (``"lock"``, ``"trylock"``), after
  a slot unlock (``"unlock"``) — hooks of :class:`~pyzram.zram.table.ZramTable`
  — and at the named steps of the driver model: ``"read_unlocked"`` (after
  each slot's read section is unlocked, :meth:`~pyzram.zram.zram_drv.Zram.read_slot_unlocked`) and
  ``"writeback_read_done"`` (after ``zram_writeback_slots`` copied a slot and
  dropped its lock).  At every stop the scheduler picks who goes on.
* An actor stopped before ``"lock"`` of a slot whose LOCK bit is set
  (:data:`pyzram.zram.table.LOCK`) is **not runnable** — it would sleep in
  ``wait_on_bit_lock``.  No runnable actor while some are unfinished is a
  **deadlock** (:class:`DeadlockError`, naming who waits for which slot); an
  actor that passes too many yield points, or blocks somewhere that is not a
  yield point, is reported too (:class:`LivelockError`, :class:`DeadlockError`).
* A **schedule** is the list of actor names chosen at each decision point.
  Schedules are enumerated exhaustively with a *preemption bound* (at most
  ``preemption_bound`` switches away from an actor that could have gone on;
  the classic CHESS bound, 2 by default), fewest preemptions first, or
  sampled at random with a seed.  Replaying a schedule gives the same run.
  The **minimal** schedule of an outcome is the one with the fewest context
  switches (then the shortest, then the first in order).
* Yield points on slots a scenario does not *watch* are not decision points:
  only one actor touches those slots, so their order against the other
  actors' steps cannot change the outcome (a partial-order reduction that
  keeps the 256-slot scans of ``writeback``/``recompress`` cheap).

Scenarios (:data:`SCENARIOS`), each with variants and an oracle:

``read_vs_idle_writeback``
    A read of an IDLE slot against ``writeback`` = ``idle``; ``legacy``
    ordering (``zram_bio_read``: read, unlock, *then* lock and
    ``mark_slot_accessed``) against ``one_section`` (the seed's
    ``zram_swap_submit_read``: read and mark in one section).  Race: the slot
    ends ``ZRAM_WB`` although its read was served from the zspool — a page
    that was just read is evicted to the backing device.
``seed_swap_read_vs_idle_writeback``
    The same through the real seed path (``zram_init``, ``mkswap``,
    ``swapon``, a swapped-out page read back by ``swap_read_folio``).  With a
    backing device ``zram_swap_submit_read`` falls back to
    ``swap_bdev_submit_read`` -> ``zram_bio_read`` (legacy ordering): the race
    remains.  Without one, ``writeback_store`` fails with ``ENODEV``: the
    seed's single section never meets writeback.
``read_vs_idle_recompress``
    The read against ``recompress`` = ``type=idle`` (no backing device).  Race:
    the slot is recompressed with a secondary algorithm (priority bits set)
    after it was read.
``backing_batch_read``
    Not an interleaving but a replay of the swap-core batch defect: a batch of
    non-adjacent swap slots read through the backing-device fallback.

``explore()`` returns one :class:`Finding` per scenario and variant.
"""

from __future__ import annotations

import errno
import heapq
import json
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pyzram.tools.common import JsonOpt, UsageError, check_count, console
from pyzram.zram import table as T
from pyzram.zram.swap import zram_swap_read_page
from pyzram.zram.table import ZramTable

__all__ = [
    "SCENARIOS",
    "DeadlockError",
    "ExploreError",
    "Exploration",
    "Finding",
    "Instance",
    "LivelockError",
    "RunResult",
    "Scheduler",
    "explore",
    "explore_instance",
    "run_schedule",
]

PAGE_SIZE = 4096
#: Yield points where the actor may have to wait for a slot lock.
BLOCKING_POINTS = frozenset({"lock"})
#: Default bound on preemptions per schedule (exhaustive mode).
DEFAULT_PREEMPTION_BOUND = 2
#: Default cap on schedules run per scenario and variant.
DEFAULT_MAX_SCHEDULES = 2000


# -- errors -------------------------------------------------------------------------------------


class ExploreError(RuntimeError):
    """The exploration itself went wrong (an unexpected actor error, a bad schedule)."""

    def __init__(self, msg: str, schedule: Sequence[str] | None = None) -> None:
        super().__init__(msg if schedule is None else f"{msg} (schedule: {list(schedule)})")
        self.schedule = list(schedule) if schedule is not None else None


class DeadlockError(ExploreError):
    """No actor can go on, but some have not finished (they all wait for held slot locks),
    or the running actor blocked somewhere that is not a yield point."""


class LivelockError(ExploreError):
    """An actor passed more yield points than the bound without finishing."""


class _Abort(BaseException):
    """Raised inside actor threads to unwind them when a run is abandoned."""


# -- the scheduler --------------------------------------------------------------------------


@dataclass
class _Actor:
    name: str
    fn: Callable[[], object]
    pending: tuple[str, int | None, ZramTable | None] = ("start", None, None)
    steps: int = 0
    done: bool = False
    result: object = None
    error: BaseException | None = None
    thread: threading.Thread | None = None


#: ``choose(decision, runnable, previous) -> actor``: the policy of one run.
Chooser = Callable[[int, tuple[str, ...], str | None], str]


@dataclass
class RunResult:
    """One run under the scheduler.

    ``schedule[i]`` is the actor chosen at decision ``i``, ``runnable[i]`` the
    actors that could have been chosen, and ``trace[i]`` where the chosen one
    resumed (``"R:lock(3)"``: R, stopped before locking slot 3).
    """

    schedule: list[str]
    runnable: list[tuple[str, ...]]
    trace: list[str]
    results: dict[str, object]
    errors: dict[str, BaseException]

    @property
    def context_switches(self) -> int:
        """Decisions that changed the running actor."""
        return _switches(self.schedule)

    @property
    def preemptions(self) -> int:
        """Context switches away from an actor that could have gone on."""
        return _preemptions(self.schedule, self.runnable)


def _switches(schedule: Sequence[str]) -> int:
    return sum(1 for a, b in zip(schedule, schedule[1:], strict=False) if a != b)


def _preemptions(schedule: Sequence[str], runnable: Sequence[tuple[str, ...]]) -> int:
    return sum(
        1
        for i in range(1, len(schedule))
        if schedule[i] != schedule[i - 1] and schedule[i - 1] in runnable[i]
    )


def _fmt_point(point: str, index: int | None) -> str:
    return point if index is None else f"{point}({index})"


class Scheduler:
    """Runs ``actors`` in threads, one at a time, switching only at yield points.

    Install :meth:`hook_for` as the ``yield_point`` of a :class:`ZramTable`
    (its slot lock operations) and of a :class:`~pyzram.zram.zram_drv.Zram`
    (the named steps).  Calls from threads that are not actors (setup code)
    pass straight through.  ``watch``: only yield points on these slot
    indices are decision points (``None``: all).
    """

    def __init__(
        self,
        actors: Mapping[str, Callable[[], object]],
        *,
        watch: Collection[int] | None = None,
        observe: Callable[[str, str, int | None], None] | None = None,
        max_steps: int = 10_000,
        stall_timeout: float = 20.0,
    ) -> None:
        if not actors:
            raise ValueError("a scheduler needs at least one actor")
        self._actors = {name: _Actor(name, fn) for name, fn in actors.items()}
        self._order = list(self._actors)
        self._watch = frozenset(watch) if watch is not None else None
        self._observe = observe
        self._max_steps = max_steps
        self._stall_timeout = stall_timeout
        self._cv = threading.Condition()
        self._running: str | None = None
        self._aborted = False
        self._tls = threading.local()
        self._used = False

    # -- the hook, in actor threads ---------------------------------------------------------

    def hook_for(self, table: ZramTable | None) -> Callable[[str, int], None]:
        """The ``yield_point`` callable for objects whose ``"lock"`` points are on ``table``."""

        def hook(point: str, index: int) -> None:
            self._yield(point, index, table)

        return hook

    def _yield(self, point: str, index: int | None, table: ZramTable | None) -> None:
        name = getattr(self._tls, "actor", None)
        if name is None:
            return  # not an actor: setup or teardown code
        if self._aborted:
            raise _Abort
        if self._watch is not None and index is not None and index not in self._watch:
            return
        if self._observe is not None:
            self._observe(name, point, index)
        actor = self._actors[name]
        with self._cv:
            actor.pending = (point, index, table)
            actor.steps += 1
            self._running = None
            self._cv.notify_all()
            while self._running != name and not self._aborted:
                self._cv.wait()
            if self._aborted:
                raise _Abort

    def _body(self, actor: _Actor) -> None:
        self._tls.actor = actor.name
        try:
            with self._cv:
                while self._running != actor.name and not self._aborted:
                    self._cv.wait()
                if self._aborted:
                    return
            actor.result = actor.fn()
        except _Abort:
            pass
        except BaseException as e:  # reported to the caller through RunResult.errors
            actor.error = e
        finally:
            with self._cv:
                actor.done = True
                actor.pending = ("end", None, None)
                if self._running == actor.name:
                    self._running = None
                self._cv.notify_all()

    # -- the decisions, in the caller's thread ------------------------------------------------

    def _blocked(self, actor: _Actor) -> bool:
        """Stopped before ``slot_lock`` of a slot whose ZRAM_ENTRY_LOCK bit is set."""
        point, index, table = actor.pending
        return (
            point in BLOCKING_POINTS
            and table is not None
            and index is not None
            and bool(table.flags[index] & T.LOCK)
        )

    def _describe_waits(self) -> str:
        waits = []
        for a in self._actors.values():
            if not a.done:
                point, index, _ = a.pending
                waits.append(f"{a.name} waits at {_fmt_point(point, index)}")
        return "; ".join(waits)

    def run(self, choose: Chooser) -> RunResult:
        """Run every actor to the end, asking ``choose`` at each decision point."""
        if self._used:
            raise RuntimeError("a Scheduler runs once")
        self._used = True
        schedule: list[str] = []
        runnable_log: list[tuple[str, ...]] = []
        trace: list[str] = []
        for a in self._actors.values():
            a.thread = threading.Thread(
                target=self._body, args=(a,), name=f"explore-{a.name}", daemon=True
            )
            a.thread.start()
        prev: str | None = None
        ok = False
        try:
            with self._cv:
                while True:
                    live = [self._actors[n] for n in self._order if not self._actors[n].done]
                    if not live:
                        break
                    runnable = tuple(a.name for a in live if not self._blocked(a))
                    if not runnable:
                        raise DeadlockError(
                            f"deadlock: every unfinished actor waits for a held slot lock "
                            f"({self._describe_waits()})",
                            schedule,
                        )
                    choice = choose(len(schedule), runnable, prev)
                    if choice not in runnable:
                        raise ExploreError(
                            f"decision {len(schedule)}: {choice!r} is not runnable "
                            f"(runnable: {list(runnable)})",
                            schedule,
                        )
                    actor = self._actors[choice]
                    if actor.steps >= self._max_steps:
                        raise LivelockError(
                            f"livelock: {choice} passed {actor.steps} yield points "
                            f"without finishing",
                            schedule,
                        )
                    schedule.append(choice)
                    runnable_log.append(runnable)
                    point, index, _ = actor.pending
                    trace.append(f"{choice}:{_fmt_point(point, index)}")
                    prev = choice
                    self._running = choice
                    self._cv.notify_all()
                    while self._running is not None:
                        if not self._cv.wait(timeout=self._stall_timeout):
                            raise DeadlockError(
                                f"{choice} blocked outside a yield point for "
                                f"{self._stall_timeout:.0f} s (a lock the explorer does "
                                f"not model?)",
                                schedule,
                            )
            ok = True
        finally:
            if not ok:
                with self._cv:
                    self._aborted = True
                    self._cv.notify_all()
            for a in self._actors.values():
                if a.thread is not None:
                    a.thread.join(timeout=None if ok else 2.0)
        return RunResult(
            schedule=schedule,
            runnable=runnable_log,
            trace=trace,
            results={a.name: a.result for a in self._actors.values()},
            errors={a.name: a.error for a in self._actors.values() if a.error is not None},
        )


def default_chooser(decision: int, runnable: tuple[str, ...], prev: str | None) -> str:
    """Go on with the previous actor while it can, else the first runnable one."""
    return prev if prev in runnable else runnable[0]


def replay_chooser(schedule: Sequence[str]) -> Chooser:
    """Follow ``schedule``, then :func:`default_chooser` past its end."""

    def choose(decision: int, runnable: tuple[str, ...], prev: str | None) -> str:
        if decision < len(schedule):
            return schedule[decision]
        return default_chooser(decision, runnable, prev)

    return choose


def random_chooser(rng: random.Random) -> Chooser:
    """Uniformly random among the runnable actors at every decision."""

    def choose(decision: int, runnable: tuple[str, ...], prev: str | None) -> str:
        return runnable[rng.randrange(len(runnable))]

    return choose


# -- instances and the exploration loop ----------------------------------------------------------


@dataclass
class Instance:
    """One freshly set-up run of a scenario.

    ``hooked``: (object, table) pairs — each object's ``yield_point`` is set to
    the scheduler's hook whose ``"lock"`` points refer to ``table``.
    ``judge(run)`` returns (race happened?, outcome label).
    """

    actors: dict[str, Callable[[], object]]
    judge: Callable[[RunResult], tuple[bool, str]]
    hooked: list[tuple[Any, ZramTable | None]] = field(default_factory=list)
    watch: Collection[int] | None = None
    observe: Callable[[str, str, int | None], None] | None = None


#: A factory of instances: a context manager that sets up and always tears down.
InstanceFactory = Callable[[], AbstractContextManager[Instance]]


@dataclass
class Exploration:
    """What exploring one instance factory gave."""

    schedules: int = 0
    exhaustive: bool = False
    races: int = 0
    outcomes: Counter = field(default_factory=Counter)
    minimal: RunResult | None = None


def _run_instance(make: InstanceFactory, choose: Chooser) -> tuple[RunResult, bool, str]:
    with make() as inst:
        sched = Scheduler(inst.actors, watch=inst.watch, observe=inst.observe)
        for obj, table in inst.hooked:
            obj.yield_point = sched.hook_for(table)
        try:
            run = sched.run(choose)
        finally:
            for obj, _ in inst.hooked:
                obj.yield_point = None
        race, label = inst.judge(run)
    return run, race, label


def _better(run: RunResult, best: RunResult | None) -> bool:
    if best is None:
        return True
    key = (run.context_switches, len(run.schedule), run.schedule)
    return key < (best.context_switches, len(best.schedule), best.schedule)


def explore_instance(
    make: InstanceFactory,
    *,
    max_schedules: int = DEFAULT_MAX_SCHEDULES,
    seed: int | None = None,
    preemption_bound: int = DEFAULT_PREEMPTION_BOUND,
) -> Exploration:
    """Run ``make``'s instances under many schedules and collect the outcomes.

    ``seed is None``: every schedule with at most ``preemption_bound``
    preemptions, fewest preemptions first, up to ``max_schedules`` runs
    (``exhaustive`` says whether the bounded space was used up).  Each
    schedule is reached once: a run follows a prefix, then goes on with
    :func:`default_chooser`, and new prefixes branch off only after the
    prefix.  With a seed: ``max_schedules`` random schedules.
    """
    if max_schedules < 1:
        raise ValueError("max_schedules must be at least 1")
    ex = Exploration()

    def record(run: RunResult, race: bool, label: str) -> None:
        ex.schedules += 1
        ex.outcomes[label] += 1
        if race:
            ex.races += 1
            if _better(run, ex.minimal):
                ex.minimal = run

    if seed is not None:
        rng = random.Random(seed)
        for _ in range(max_schedules):
            record(*_run_instance(make, random_chooser(rng)))
        return ex

    counter = 0
    work: list[tuple[int, int, list[str]]] = [(0, 0, [])]
    while work:
        if ex.schedules >= max_schedules:
            return ex
        pre, _, prefix = heapq.heappop(work)
        run, race, label = _run_instance(make, replay_chooser(prefix))
        record(run, race, label)
        sched, runnable = run.schedule, run.runnable
        for i in range(len(prefix), len(sched)):
            base = _preemptions(sched[:i], runnable[:i])
            for alt in runnable[i]:
                if alt == sched[i]:
                    continue
                extra = 1 if i > 0 and sched[i - 1] in runnable[i] and alt != sched[i - 1] else 0
                if base + extra <= preemption_bound:
                    counter += 1
                    heapq.heappush(work, (base + extra, counter, [*sched[:i], alt]))
    ex.exhaustive = True
    return ex


# -- scenario helpers ------------------------------------------------------------------------------


def _page(seed: int) -> bytes:
    """A text-like page: lzo-rle stores it in a mid-size class, zstd in a smaller one."""
    rng = random.Random(seed)
    words = [b"swap", b"zram", b"slot", b"idle", b"page", b"lock", b"read", b"mark"]
    out = b" ".join(words[rng.randrange(8)] + str(j).encode() for j in range(900))
    return out[:PAGE_SIZE].ljust(PAGE_SIZE, b".")


def _backing_file(tmp: Path, mib: int = 1) -> str:
    path = tmp / "backing.img"
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    return str(path)


def _new_zram(tmp: Path, *, backing: bool, recompress: bool = False, size: str = "1M"):
    from pyzram import Zram

    z = Zram()
    if backing:
        z.sysfs["backing_dev"] = _backing_file(tmp)
    if recompress:
        z.sysfs["recomp_algorithm"] = "algo=zstd"
    z.sysfs["disksize"] = size
    return z


def _close_zram(z) -> None:
    """Drop the device without ``reset`` (an abandoned actor may still hold ``init_lock``)."""
    bd = z.backing_dev
    if bd is not None:
        bd.close()
        z.backing_dev = None
    if z.table is not None:
        z.table.yield_point = None
    z.yield_point = None


class _Watch:
    """Slot state seen by the reader right after its read section (``"read_unlocked"``)."""

    def __init__(self, z, slot: int) -> None:
        self.z, self.slot = z, slot
        self.read_flags: int | None = None

    def __call__(self, actor: str, point: str, index: int | None) -> None:
        if actor == "R" and point == "read_unlocked" and index == self.slot:
            if self.read_flags is None:
                self.read_flags = self.z.table.flags[self.slot]


def _store_actor(z, attr: str, value: str) -> Callable[[], object]:
    def act() -> object:
        try:
            z.sysfs[attr] = value
        except OSError as e:
            return e.errno
        return 0

    return act


def _judge_writeback(z, slot: int, watch: _Watch, page: bytes, data: list[bytes]):
    def judge(run: RunResult) -> tuple[bool, str]:
        _raise_errors(run)
        wrong = "; wrong data read" if data and data[0] != page else ""
        err = run.results.get("W")
        if err:
            return False, f"writeback failed: {errno.errorcode.get(err, err)}{wrong}"
        final = z.table.flags[slot]
        if watch.read_flags is None:
            raise ExploreError("the reader never reached read_unlocked", run.schedule)
        if final & T.WB and not watch.read_flags & T.WB:
            return True, f"written back after being read (hot page evicted){wrong}"
        if final & T.WB:
            return False, f"written back before the read (read from the backing device){wrong}"
        return False, f"stays in the zspool{wrong}"

    return judge


def _judge_recompress(z, slot: int, watch: _Watch, page: bytes, data: list[bytes]):
    def judge(run: RunResult) -> tuple[bool, str]:
        _raise_errors(run)
        wrong = "; wrong data read" if data and data[0] != page else ""
        if run.results.get("W"):
            return False, f"recompress failed: {run.results['W']}{wrong}"
        if watch.read_flags is None:
            raise ExploreError("the reader never reached read_unlocked", run.schedule)
        final = z.table.get_priority(slot)
        at_read = (watch.read_flags >> T.ZRAM_COMP_PRIORITY_BIT1) & T.ZRAM_COMP_PRIORITY_MASK
        if final and not at_read:
            return True, f"recompressed after being read (priority {final}){wrong}"
        if final:
            return False, f"recompressed before the read{wrong}"
        return False, f"not recompressed{wrong}"

    return judge


def _raise_errors(run: RunResult) -> None:
    if run.errors:
        name, e = next(iter(run.errors.items()))
        raise ExploreError(f"actor {name} raised {e!r}", run.schedule) from e


# -- scenarios 1 and 3: a swap read against post-processing ------------------------------------

SLOT = 1
#: The slots of a read batch: the seed's loop reads them one after another.
READ_BATCH = (1, 2, 3)


@contextmanager
def _read_vs_post_processing(
    variant: str, *, recompress: bool, slots: Sequence[int] = (SLOT,)
) -> Iterator[Instance]:
    """R: ``zram_swap_submit_read``'s per-slot loop over ``slots`` in ``variant``
    ordering (:func:`~pyzram.zram.swap.zram_swap_read_page` for each, in
    order, stopping at a failure); W: ``writeback=idle`` or
    ``recompress=type=idle``; every slot written, then ``idle=all``.  With
    several slots, the writer's steps can fall between the reader's slots
    as well as inside one slot's read: a race on any slot is a race."""
    with tempfile.TemporaryDirectory(prefix="pyzram-explore-") as d:
        z = _new_zram(Path(d), backing=not recompress, recompress=recompress)
        try:
            pages = {slot: _page(slot) for slot in slots}
            for slot, page in pages.items():
                z.pwrite(page, slot * PAGE_SIZE)
            z.sysfs["idle"] = "all"
            assert all(z.table.flags[slot] & T.IDLE for slot in slots)
            data: dict[int, list[bytes]] = {slot: [] for slot in slots}

            def reader() -> None:
                z.swap_read_ordering = variant
                for slot in slots:
                    out = bytearray(PAGE_SIZE)
                    err = zram_swap_read_page(z, out, slot)
                    if err:
                        raise OSError(-err, f"read of slot {slot} failed")
                    data[slot].append(bytes(out))

            watches = {slot: _Watch(z, slot) for slot in slots}
            judge_of = _judge_recompress if recompress else _judge_writeback
            judges = {s: judge_of(z, s, watches[s], pages[s], data[s]) for s in slots}

            def observe(actor: str, point: str, index: int | None) -> None:
                for watch in watches.values():
                    watch(actor, point, index)

            def judge(run: RunResult) -> tuple[bool, str]:
                verdicts = {s: j(run) for s, j in judges.items()}
                race = any(r for r, _ in verdicts.values())
                if len(slots) == 1:
                    return race, verdicts[slots[0]][1]
                return race, "; ".join(f"slot {s}: {label}" for s, (_, label) in verdicts.items())

            yield Instance(
                actors={
                    "R": reader,
                    "W": _store_actor(
                        z, *(("recompress", "type=idle") if recompress else ("writeback", "idle"))
                    ),
                },
                judge=judge,
                hooked=[(z, z.table), (z.table, z.table)],
                watch=set(slots),
                observe=observe,
            )
        finally:
            _close_zram(z)


# -- the swap-core sandbox and the seed path ------------------------------------------------------


def _swap_in(mm, vpns: Sequence[int]) -> tuple[list, int]:
    """Read the pages ``vpns`` of ``mm`` into the swap cache in one plug, as
    ``madvise(MADV_WILLNEED)`` over their range does; the folios, and the
    read batches that plug made.

    Pages of the range outside ``vpns`` are read into the swap cache first,
    one ``madvise`` each, so that the one plug over the range holds exactly
    the folios of ``vpns``.
    """
    from pyzram.mm.swapfile import swap_cache_get_folio

    lo, hi = min(vpns), max(vpns) + 1
    for vpn in range(lo, hi):
        if vpn not in vpns:
            mm.madvise_willneed(vpn, vpn + 1)
    entries = [mm.pte_to_swp_entry(vpn) for vpn in vpns]
    before = mm.machine.vm_events["nrswpin"]
    mm.madvise_willneed(lo, hi)
    batches = mm.machine.vm_events["nrswpin"] - before
    return [swap_cache_get_folio(mm.machine, e) for e in entries], batches


@contextmanager
def _seed_area(ops, *, backing: bool, nr_pages: int, recompress: bool = False) -> Iterator[tuple]:
    """A machine booted with zram's ``ops`` registered (``zram_init``), a zram swap area
    (``mkswap``, ``swapon``) and a process whose ``nr_pages`` pages were reclaimed
    in one batch (``shrink_inactive_list``).

    Yields (zram, the process, the swap entries of its pages, their bytes, a
    list for the folios read back).  The machine is powered off afterwards.
    """
    from pyzram.mm.machine import Machine
    from pyzram.mm.swapfile import mkswap, swapon
    from pyzram.mm.vmscan import AddressSpace, MemCgroup, shrink_inactive_list
    from pyzram.zram.swap import zram_init

    with tempfile.TemporaryDirectory(prefix="pyzram-explore-") as d, Machine() as m:
        zram_init(m, ops)
        z = _new_zram(Path(d), backing=backing, recompress=recompress)
        folios: list = []
        try:
            mkswap(z.disk)
            si = swapon(m, z.disk)
            if si.ops is not ops:
                raise ExploreError(f"swapon picked {si.ops.name}, not {ops.name}")
            pages = [_page(100 + k) for k in range(nr_pages)]
            mm = AddressSpace(nr_pages, MemCgroup(m, 64), lambda vpn: pages[vpn])
            for vpn in range(nr_pages):
                mm.do_anonymous_page(vpn)
            if shrink_inactive_list(mm.memcg, nr_pages) != nr_pages:
                raise ExploreError("reclaim did not swap every page out")
            entries = [mm.pte_to_swp_entry(vpn) for vpn in range(nr_pages)]
            yield z, mm, entries, pages, folios
        finally:
            m.close()
            _close_zram(z)


@contextmanager
def _seed_swap_read_vs_post_processing(*, backing: bool, recompress: bool) -> Iterator[Instance]:
    """R: swap-in of one swapped-out page through the seed's ``zram_swap_ops``;
    W: ``writeback=idle`` or ``recompress=type=idle``."""
    from pyzram.mm.folio import PG_uptodate
    from pyzram.zram.swap import zram_swap_ops

    area = _seed_area(zram_swap_ops, backing=backing, recompress=recompress, nr_pages=1)
    with area as (z, mm, entries, pages, folios):
        slot = entries[0].offset
        z.sysfs["idle"] = "all"
        assert z.table.flags[slot] & T.IDLE
        data: list[bytes] = []

        def reader() -> None:
            (g,), _ = _swap_in(mm, [0])
            folios.append(g)
            g.lock()  # folio_lock: wait for the read to end
            g.unlock()
            if not g.test(PG_uptodate):
                raise OSError(errno.EIO, "swap-in left the folio !uptodate")
            data.append(bytes(g.data))

        watch = _Watch(z, slot)
        if recompress:
            writer = _store_actor(z, "recompress", "type=idle")
            judge = _judge_recompress(z, slot, watch, pages[0], data)
        else:
            writer = _store_actor(z, "writeback", "idle")
            judge = _judge_writeback(z, slot, watch, pages[0], data)
        yield Instance(
            actors={"R": reader, "W": writer},
            judge=judge,
            hooked=[(z, z.table), (z.table, z.table)],
            watch={slot},
            observe=watch,
        )


# -- scenario 4: the backing-device batch read (a replay) ----------------------------------------

BATCH_SLOTS = (1, 3, 5, 7)


def _backing_batch_read(variant: str) -> tuple[bool, str, dict[str, Any]]:
    """Swap out slots 1..9, read 1, 3, 5, 7 back in one ctx with a backing device set."""
    from pyzram.zram.swap import zram_swap_ops, zram_swap_ops_as_posted

    ops = zram_swap_ops_as_posted if variant == "as_posted" else zram_swap_ops
    with _seed_area(ops, backing=True, nr_pages=9) as (z, mm, entries, pages, folios):
        z.backing_read_fallback = "as_posted" if variant == "as_posted" else "adjacent"
        by_slot = {e.offset: p for e, p in zip(entries, pages, strict=True)}
        if sorted(by_slot) != list(range(1, 10)):
            raise ExploreError(f"swapped out to slots {sorted(by_slot)}, expected 1..9")
        vpns = [vpn for vpn, e in enumerate(entries) if e.offset in BATCH_SLOTS]
        want = [entries[vpn] for vpn in vpns]
        back, batches = _swap_in(mm, vpns)
        folios.extend(back)
        got = []
        for e, g in zip(want, back, strict=True):
            src = next((s for s, p in by_slot.items() if p == bytes(g.data)), None)
            got.append((e.offset, src))
        wrong = [(s, src) for s, src in got if s != src]
        info = {"batches": batches, "read_as": {s: src for s, src in got}}
        if wrong:
            pairs = ", ".join(f"slot {s} got slot {src}'s data" for s, src in wrong)
            return True, f"wrong data in {len(wrong)} of {len(want)} folios ({pairs})", info
        return False, f"each folio got its own slot's data ({batches} read batches)", info


# -- the catalogue -------------------------------------------------------------------------------

#: Scenario names and their variants.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "read_vs_idle_writeback": ("legacy", "one_section"),
    "seed_swap_read_vs_idle_writeback": ("backing_dev", "no_backing_dev"),
    "read_vs_idle_recompress": ("legacy", "one_section", "seed_swap"),
    "batch_read_vs_idle_writeback": ("legacy", "one_section"),
    "batch_read_vs_idle_recompress": ("legacy", "one_section"),
    "backing_batch_read": ("as_posted", "adjacent"),
}


def _factory(scenario: str, variant: str) -> InstanceFactory:
    if scenario == "read_vs_idle_writeback":
        return lambda: _read_vs_post_processing(variant, recompress=False)
    if scenario == "read_vs_idle_recompress" and variant == "seed_swap":
        return lambda: _seed_swap_read_vs_post_processing(backing=False, recompress=True)
    if scenario == "read_vs_idle_recompress":
        return lambda: _read_vs_post_processing(variant, recompress=True)
    if scenario.startswith("batch_read_vs_idle_"):
        rec = scenario.endswith("recompress")
        return lambda: _read_vs_post_processing(variant, recompress=rec, slots=READ_BATCH)
    if scenario == "seed_swap_read_vs_idle_writeback":
        backing = variant == "backing_dev"
        return lambda: _seed_swap_read_vs_post_processing(backing=backing, recompress=False)
    raise ValueError(f"{scenario} is a replay, not an interleaving scenario")


def _check(scenario: str, variant: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    if variant not in SCENARIOS[scenario]:
        raise ValueError(
            f"unknown variant {variant!r} of {scenario}; known: {', '.join(SCENARIOS[scenario])}"
        )


def run_schedule(
    scenario: str, variant: str, schedule: Sequence[str]
) -> tuple[bool, str, RunResult]:
    """Replay one schedule of an interleaving scenario: (race?, outcome, the run)."""
    _check(scenario, variant)
    run, race, label = _run_instance(_factory(scenario, variant), replay_chooser(schedule))
    return race, label, run


@dataclass
class Finding:
    """What the explorer found for one scenario and variant (JSON: :meth:`as_dict`).

    ``minimal_schedule``: the actor chosen at each decision point of the
    schedule with the fewest context switches that shows the race (``None``
    when no schedule did; ``["R"]`` for the replay scenario, one actor
    straight through).  ``trace`` says where each chosen actor resumed.
    """

    scenario: str
    variant: str
    race_found: bool
    minimal_schedule: list[str] | None
    schedules_explored: int
    description: str
    context_switches: int | None = None
    preemptions: int | None = None
    trace: list[str] | None = None
    exhaustive: bool = False
    preemption_bound: int | None = None
    seed: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _outcome_text(ex: Exploration) -> str:
    return "; ".join(f"{label}: {n}" for label, n in sorted(ex.outcomes.items()))


def _space_text(ex: Exploration, bound: int, seed: int | None) -> str:
    if seed is not None:
        return f"{ex.schedules} random schedules (seed {seed})"
    if ex.exhaustive:
        return f"all {ex.schedules} schedules with <= {bound} preemptions"
    return f"the first {ex.schedules} schedules with <= {bound} preemptions (space not exhausted)"


_TEXT = {
    ("read_vs_idle_writeback", "legacy"): (
        "zram_bio_read ordering: the slot is read under its lock, unlocked, and only "
        "then locked again for mark_slot_accessed. Idle writeback (scan_slots_for_writeback "
        "-> zram_writeback_slots -> completion) can run whole in that gap: the slot is still "
        "IDLE and PP_SLOT survives, so the page just read is evicted to the backing device "
        "(ZRAM_WB; data stays correct, a later read costs a bd_read)."
    ),
    ("read_vs_idle_writeback", "one_section"): (
        "zram_swap_submit_read ordering (the seed): read and mark_slot_accessed under one "
        "slot lock, so a later scan no longer sees IDLE and an in-flight selection loses "
        "PP_SLOT and is dropped (zram_writeback_slots re-checks PP_SLOT under the lock)."
    ),
    ("read_vs_idle_recompress", "legacy"): (
        "zram_bio_read ordering against recompress type=idle: in the gap between the read "
        "section and the mark section, scan_slots_for_recompress still sees IDLE and "
        "recompress_slot re-encodes the just-read slot with the secondary algorithm."
    ),
    ("read_vs_idle_recompress", "one_section"): (
        "The seed's single read+mark section closes the race for recompress type=idle: the "
        "slot is either not IDLE when scanned or loses PP_SLOT before recompress_slot."
    ),
    ("batch_read_vs_idle_writeback", "legacy"): (
        "A read batch of three slots in the pre-series ordering, each slot read then marked in "
        "a second section, against writeback=idle: the gap after any slot's read section lets "
        "writeback evict that slot, also while the batch has later slots still to read."
    ),
    ("batch_read_vs_idle_writeback", "one_section"): (
        "The seed's per-slot loop (read and mark in one section per slot) over a batch of "
        "three: writeback's steps may fall between any two slots of the batch, but each slot "
        "is either written back before its read or marked accessed in the read's own section."
    ),
    ("batch_read_vs_idle_recompress", "legacy"): (
        "A three-slot read batch in the pre-series ordering against recompress type=idle: "
        "any slot can be recompressed in the gap between its read and its mark."
    ),
    ("batch_read_vs_idle_recompress", "one_section"): (
        "The seed's per-slot loop over three slots against recompress type=idle: closed for "
        "every slot, wherever in the batch the recompression's steps fall."
    ),
    ("read_vs_idle_recompress", "seed_swap"): (
        "The real seed path without a backing device (zram_init, mkswap, swapon, swap-in "
        "through zram_swap_submit_read with its single read+mark section) against recompress "
        "type=idle: closed, as for one_section. This is the race the patch does fix."
    ),
}


def _seed_text(variant: str, ex: Exploration) -> str:
    if variant == "backing_dev":
        return (
            "Does the patch's fix cover idle writeback? No. With a backing device set, "
            "zram_swap_submit_read hands the whole batch to swap_bdev_submit_read, whose bio "
            "goes through zram_submit_bio -> zram_bio_read: the old read-unlock-lock-mark "
            "ordering, race included. Writeback needs a backing device, so whenever writeback "
            "is possible the seed's single critical section is not used."
        )
    enodev = ex.outcomes.get("writeback failed: ENODEV", 0)
    return (
        f"Without a backing device writeback_store returns ENODEV ({enodev} of {ex.schedules} "
        "schedules), so the seed's single section (zram_swap_submit_read, used only without "
        "a backing device) never meets writeback; what it protects is recompress type=idle "
        "(read_vs_idle_recompress/one_section)."
    )


def _explore_one(
    scenario: str, variant: str, *, max_schedules: int, seed: int | None, preemption_bound: int
) -> Finding:
    if scenario == "backing_batch_read":
        found, outcome, info = _backing_batch_read(variant)
        why = (
            "As posted (no can_merge), one read batch holds non-adjacent slots; with a backing "
            "device zram_swap_submit_read falls back to swap_bdev_submit_read, which builds one "
            "bio at the first folio's sector for sio->len bytes, so later folios are filled "
            "from the slots next to the first."
            if variant == "as_posted"
            else "zram_swap_can_merge keeps batches slot-adjacent while a backing device is "
            "set, so the block-path fallback reads every folio's own slot."
        )
        return Finding(
            scenario,
            variant,
            found,
            ["R"] if found else None,
            1,
            f"{'Wrong data' if found else 'Correct'}: {outcome}. {why} Replay, no interleaving "
            f"(batches submitted: {info['batches']}).",
            context_switches=0 if found else None,
            preemptions=0 if found else None,
            exhaustive=True,
            outcomes={outcome: 1},
        )
    ex = explore_instance(
        _factory(scenario, variant),
        max_schedules=max_schedules,
        seed=seed,
        preemption_bound=preemption_bound,
    )
    found = ex.minimal is not None
    head = (
        f"Race found in {ex.races} of {ex.schedules} schedules; the minimal one has "
        f"{ex.minimal.context_switches} context switches."
        if ex.minimal is not None
        else "No race."
    )
    body = (
        _seed_text(variant, ex)
        if scenario == "seed_swap_read_vs_idle_writeback"
        else _TEXT[(scenario, variant)]
    )
    return Finding(
        scenario,
        variant,
        found,
        list(ex.minimal.schedule) if ex.minimal is not None else None,
        ex.schedules,
        f"{head} {body} Explored {_space_text(ex, preemption_bound, seed)}; outcomes: "
        f"{_outcome_text(ex)}.",
        context_switches=ex.minimal.context_switches if ex.minimal is not None else None,
        preemptions=ex.minimal.preemptions if ex.minimal is not None else None,
        trace=list(ex.minimal.trace) if ex.minimal is not None else None,
        exhaustive=ex.exhaustive,
        preemption_bound=preemption_bound if seed is None else None,
        seed=seed,
        outcomes=dict(sorted(ex.outcomes.items())),
    )


def explore(
    scenario: str | None = None,
    variant: str | None = None,
    *,
    max_schedules: int = DEFAULT_MAX_SCHEDULES,
    seed: int | None = None,
    preemption_bound: int = DEFAULT_PREEMPTION_BOUND,
) -> list[Finding]:
    """Explore the scenarios (all, or one) and their variants (all, or one).

    ``seed=None`` enumerates every schedule within ``preemption_bound``
    (capped at ``max_schedules`` runs per variant); a seed samples
    ``max_schedules`` random schedules instead.  The same arguments give the
    same findings.
    """
    if scenario is not None and scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    todo: list[tuple[str, str]] = []
    for name, variants in SCENARIOS.items():
        if scenario is not None and name != scenario:
            continue
        for v in variants:
            if variant is None or v == variant:
                todo.append((name, v))
    if not todo:
        where = scenario or "any scenario"
        raise ValueError(f"no variant {variant!r} in {where}")
    return [
        _explore_one(
            s, v, max_schedules=max_schedules, seed=seed, preemption_bound=preemption_bound
        )
        for s, v in todo
    ]


# -- the command ------------------------------------------------------------------------------


def _runs(schedule: list[str]) -> str:
    """``["R","R","W"]`` -> ``"R×2 → W"``."""
    out: list[str] = []
    for name in schedule:
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + 1)
        else:
            out.append((name, 1))
    return " → ".join(n if c == 1 else f"{n}×{c}" for n, c in out)


def command(
    scenario: Annotated[
        str | None, typer.Option(help="one scenario (default: all); see --list")
    ] = None,
    variant: Annotated[str | None, typer.Option(help="one variant of it (default: all)")] = None,
    seed: Annotated[
        int | None, typer.Option(help="sample schedules with this seed (default: enumerate)")
    ] = None,
    max_schedules: Annotated[int, typer.Option(help="bound on schedules per scenario")] = 2000,
    preemption_bound: Annotated[
        int, typer.Option(help="most preemptions a schedule may contain (enumeration)")
    ] = 2,
    list_: Annotated[bool, typer.Option("--list", help="list scenarios and variants")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Explore interleavings of zram's locking: which variants let a race through."""
    if scenario is not None and scenario not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        raise UsageError("--scenario", f"unknown scenario {scenario!r} ({known}; see --list)")
    if variant is not None and all(
        variant not in v for s, v in SCENARIOS.items() if scenario in (None, s)
    ):
        raise UsageError("--variant", f"no variant {variant!r} in {scenario or 'any scenario'}")
    check_count("--max-schedules", max_schedules, 1)
    check_count("--preemption-bound", preemption_bound)
    if list_:
        for name, variants in SCENARIOS.items():
            console.print(f"{name}: {', '.join(variants)}")
        return
    findings = explore(
        scenario,
        variant,
        max_schedules=max_schedules,
        seed=seed,
        preemption_bound=preemption_bound,
    )
    if as_json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
        return
    t = Table(title="zram interleaving explorer")
    for c in ("scenario", "variant", "race", "minimal schedule", "schedules"):
        t.add_column(c)
    for f in findings:
        sched = _runs(f.minimal_schedule) if f.minimal_schedule else "-"
        t.add_row(
            f.scenario,
            f.variant,
            "[red]found[/red]" if f.race_found else "none",
            sched,
            str(f.schedules_explored),
        )
    console.print(t)
    for f in findings:
        console.print(f"[bold]{f.scenario}/{f.variant}[/bold]: {f.description}")
