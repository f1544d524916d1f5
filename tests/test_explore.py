"""The interleaving explorer (pyzram.tools.commands.explore): its scheduler, and each finding.

Findings (docs/findings.md): the pre-series read ordering (zram_bio_read: read,
unlock, lock, mark) lets idle writeback and idle recompression take a slot that was
just read, with a minimal schedule of two context switches; the seed's single
read+mark section closes both; but with a backing device the seed's swap read falls
back to the block path, so the race against idle writeback remains, and without one
writeback is ENODEV; the as-posted batch read with a backing device reads neighbour
slots.  A test here fails if any of that changes.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from contextlib import contextmanager

import pytest

from pyzram.mm.swap_ops import registered_block_ops
from pyzram.tools.commands import explore as ex
from pyzram.tools.commands.explore import (
    SCENARIOS,
    DeadlockError,
    ExploreError,
    Instance,
    LivelockError,
    Scheduler,
    explore,
    explore_instance,
    replay_chooser,
    run_schedule,
)
from pyzram.zram import table as T
from pyzram.zram.table import ZramTable


def compress(schedule: list[str]) -> list[str]:
    """Runs of one actor collapsed: ["R", "R", "W"] -> ["R", "W"]."""
    return [a for i, a in enumerate(schedule) if i == 0 or schedule[i - 1] != a]


def actor_points(trace: list[str], actor: str) -> list[str]:
    return [t.split(":", 1)[1] for t in trace if t.startswith(f"{actor}:")]


def no_wrong_data(f) -> bool:
    return not any("wrong data" in label for label in f.outcomes)


# -- scheduler unit tests ------------------------------------------------------------------------


class Hooks:
    """A stand-in object with a ``yield_point`` for named steps of synthetic actors."""

    yield_point = None

    def step(self, name: str, index: int = 0) -> None:
        if self.yield_point is not None:
            self.yield_point(name, index)


def scheduler_on(table: ZramTable, actors, **kw) -> Scheduler:
    s = Scheduler(actors, **kw)
    table.yield_point = s.hook_for(table)
    return s


def test_abba_deadlock_is_detected_and_names_the_waits():
    tbl = ZramTable(2, False)

    def a():
        tbl.slot_lock(0)
        tbl.slot_lock(1)
        tbl.slot_unlock(1)
        tbl.slot_unlock(0)

    def b():
        tbl.slot_lock(1)
        tbl.slot_lock(0)
        tbl.slot_unlock(0)
        tbl.slot_unlock(1)

    # A takes slot 0 and stops before slot 1; B takes slot 1 and stops before slot 0.
    s = scheduler_on(tbl, {"A": a, "B": b}, stall_timeout=5)
    with pytest.raises(DeadlockError) as e:
        s.run(replay_chooser(["A", "A", "B", "B"]))
    msg = str(e.value)
    assert "A waits at lock(1)" in msg and "B waits at lock(0)" in msg
    assert e.value.schedule == ["A", "A", "B", "B"]
    # the abandoned actor threads unwound
    assert not [t for t in threading.enumerate() if t.name.startswith("explore-")]


def test_abba_exploration_finds_the_deadlock():
    @contextmanager
    def make():
        tbl = ZramTable(2, False)

        def take(first, second):
            def act():
                tbl.slot_lock(first)
                tbl.slot_lock(second)
                tbl.slot_unlock(second)
                tbl.slot_unlock(first)

            return act

        yield Instance(
            {"A": take(0, 1), "B": take(1, 0)},
            judge=lambda run: (False, "ok"),
            hooked=[(tbl, tbl)],
        )

    with pytest.raises(DeadlockError):
        explore_instance(make, preemption_bound=1)
    # with no preemption at all every schedule runs one actor to its end first
    assert explore_instance(make, preemption_bound=0).outcomes == Counter({"ok": 2})


def test_an_actor_waiting_for_a_held_slot_lock_is_not_scheduled():
    tbl = ZramTable(1, False)
    hooks = Hooks()

    def holder():
        tbl.slot_lock(0)
        hooks.step("holding")
        tbl.slot_unlock(0)

    def waiter():
        tbl.slot_lock(0)
        tbl.slot_unlock(0)

    s = Scheduler({"H": holder, "W": waiter})
    tbl.yield_point = s.hook_for(tbl)
    hooks.yield_point = s.hook_for(tbl)
    # H: start -> lock(0) -> takes it, stops at holding; W: start -> stops before lock(0)
    run = s.run(replay_chooser(["H", "H", "W"]))
    assert run.runnable[3] == ("H",)  # W waits for the LOCK bit H holds
    assert run.trace[:4] == ["H:start", "H:lock(0)", "W:start", "H:holding(0)"]
    assert not tbl.flags[0] & T.LOCK and not run.errors

    s2 = Scheduler({"H": holder, "W": waiter})
    tbl.yield_point = s2.hook_for(tbl)
    hooks.yield_point = s2.hook_for(tbl)
    with pytest.raises(ExploreError, match="'W' is not runnable"):
        s2.run(replay_chooser(["H", "H", "W", "W"]))


def test_livelock_of_a_trylock_spinner_is_reported():
    tbl = ZramTable(1, False)
    hooks = Hooks()

    def holder():
        tbl.slot_lock(0)
        hooks.step("holding")
        tbl.slot_unlock(0)

    def spinner():
        while not tbl.slot_trylock(0):  # trylock never waits: always runnable
            pass
        tbl.slot_unlock(0)

    s = Scheduler({"H": holder, "S": spinner}, max_steps=50)
    tbl.yield_point = s.hook_for(tbl)
    hooks.yield_point = s.hook_for(tbl)
    with pytest.raises(LivelockError, match="S passed 50 yield points"):
        s.run(replay_chooser(["H", "H", "S"]))  # then the default policy keeps S going


def lost_update_factory(results: Counter):
    """Two actors increment a shared counter with a yield between read and write."""

    @contextmanager
    def make():
        hooks = Hooks()
        box = {"x": 0}

        def inc():
            v = box["x"]
            hooks.step("between")
            box["x"] = v + 1

        def judge(run):
            results[box["x"]] += 1
            return box["x"] != 2, f"x={box['x']}"

        yield Instance({"A": inc, "B": inc}, judge=judge, hooked=[(hooks, None)])

    return make


def test_exhaustive_enumeration_finds_the_lost_update_with_two_switches():
    results: Counter = Counter()
    e = explore_instance(lost_update_factory(results), preemption_bound=2)
    assert e.exhaustive
    # decisions: start and "between" of each actor; 6 orders of 4 steps keep each
    # actor's own order: AABB, ABAB, ABBA, BAAB, BABA, BBAA
    assert e.schedules == 6 and e.outcomes == Counter({"x=2": 2, "x=1": 4})
    assert e.minimal is not None and e.minimal.context_switches == 2
    assert e.minimal.schedule == ["A", "B", "B", "A"]
    assert explore_instance(lost_update_factory(Counter()), preemption_bound=0).races == 0


def test_sampling_is_deterministic_for_a_seed():
    a = explore_instance(lost_update_factory(Counter()), seed=7, max_schedules=40)
    b = explore_instance(lost_update_factory(Counter()), seed=7, max_schedules=40)
    assert a.outcomes == b.outcomes and a.schedules == b.schedules == 40
    assert a.minimal.schedule == b.minimal.schedule
    f1 = explore("read_vs_idle_writeback", "legacy", seed=3, max_schedules=25)
    f2 = explore("read_vs_idle_writeback", "legacy", seed=3, max_schedules=25)
    assert [f.as_dict() for f in f1] == [f.as_dict() for f in f2]
    assert f1[0].seed == 3 and f1[0].schedules_explored == 25 and f1[0].race_found


def test_non_actor_threads_pass_through_and_the_cap_stops_enumeration():
    tbl = ZramTable(1, False)
    s = Scheduler({"A": lambda: tbl.slot_lock(0)})
    tbl.yield_point = s.hook_for(tbl)
    tbl.slot_lock(0)  # the test thread is no actor: no stop
    tbl.slot_unlock(0)
    e = explore_instance(lost_update_factory(Counter()), max_schedules=3)
    assert e.schedules == 3 and not e.exhaustive


# -- the findings --------------------------------------------------------------------------------


def test_legacy_read_vs_idle_writeback_race_minimal_two_switches():
    (f,) = explore("read_vs_idle_writeback", "legacy")
    assert f.race_found and f.exhaustive and no_wrong_data(f)
    assert f.context_switches == 2 and f.preemptions == 1
    # R's read section, then the whole writeback, then R's mark section
    assert compress(f.minimal_schedule) == ["R", "W", "R"]
    assert actor_points(f.trace, "R") == [
        "start",
        "lock(1)",
        "unlock(1)",
        "read_unlocked(1)",
        "lock(1)",
        "unlock(1)",
    ]
    assert "writeback_read_done(1)" in actor_points(f.trace, "W")
    race, label, run = run_schedule("read_vs_idle_writeback", "legacy", f.minimal_schedule)
    assert race and label == "written back after being read (hot page evicted)"
    assert run.schedule == f.minimal_schedule


def test_one_section_read_vs_idle_writeback_no_race_in_bounded_space():
    (f,) = explore("read_vs_idle_writeback", "one_section")
    assert not f.race_found and f.minimal_schedule is None
    assert f.exhaustive and f.preemption_bound == 2 and f.schedules_explored > 20
    assert set(f.outcomes) == {
        "stays in the zspool",
        "written back before the read (read from the backing device)",
    }
    # the schedule that breaks legacy is harmless here
    (legacy,) = explore("read_vs_idle_writeback", "legacy")
    race, label, _ = run_schedule(
        "read_vs_idle_writeback", "one_section", legacy.minimal_schedule[:4] + ["W"]
    )
    assert not race and label == "stays in the zspool"


@pytest.mark.parametrize(
    "scenario", ["read_vs_idle_writeback", "read_vs_idle_recompress"], ids=["wb", "recomp"]
)
def test_one_section_has_no_race_in_the_whole_schedule_space(scenario):
    # a bound no schedule reaches: every interleaving of the yield points
    (f,) = explore(scenario, "one_section", preemption_bound=30, max_schedules=5000)
    assert f.exhaustive and not f.race_found and f.schedules_explored > 200


def test_seed_swap_read_with_backing_dev_keeps_the_writeback_race():
    (f,) = explore("seed_swap_read_vs_idle_writeback", "backing_dev")
    assert f.race_found and f.exhaustive and no_wrong_data(f)
    assert f.context_switches == 2 and compress(f.minimal_schedule) == ["R", "W", "R"]
    # the swap read went through zram_bio_read: two lock sections for one slot
    assert actor_points(f.trace, "R").count("lock(1)") == 2
    assert "the old read-unlock-lock-mark ordering" in f.description
    assert "whenever writeback is possible" in f.description


def test_seed_swap_read_without_backing_dev_writeback_is_enodev():
    (f,) = explore("seed_swap_read_vs_idle_writeback", "no_backing_dev")
    assert not f.race_found and f.exhaustive
    assert set(f.outcomes) == {"writeback failed: ENODEV"}
    assert "ENODEV" in f.description and "recompress" in f.description
    # the seed's own read path: one lock section per slot
    _, _, run = run_schedule("seed_swap_read_vs_idle_writeback", "no_backing_dev", [])
    assert actor_points(run.trace, "R") == ["start", "lock(1)", "unlock(1)", "read_unlocked(1)"]


def test_read_vs_idle_recompress_legacy_race_one_section_and_seed_none():
    legacy, one, seed = explore("read_vs_idle_recompress")
    assert (legacy.variant, one.variant, seed.variant) == ("legacy", "one_section", "seed_swap")
    assert legacy.race_found and legacy.context_switches == 2 and no_wrong_data(legacy)
    assert compress(legacy.minimal_schedule) == ["R", "W", "R"]
    assert "recompressed after being read (priority 1)" in legacy.outcomes
    for f in (one, seed):
        assert not f.race_found and f.exhaustive and no_wrong_data(f)
        assert set(f.outcomes) <= {"not recompressed", "recompressed before the read"}


def test_backing_batch_read_as_posted_reads_neighbours_adjacent_is_right():
    as_posted, adjacent = explore("backing_batch_read")
    assert as_posted.race_found and as_posted.minimal_schedule == ["R"]
    (label,) = as_posted.outcomes
    assert "slot 3 got slot 2's data, slot 5 got slot 3's data, slot 7 got slot 4's data" in label
    assert "batches submitted: 1" in as_posted.description
    assert not adjacent.race_found and adjacent.minimal_schedule is None
    assert "batches submitted: 4" in adjacent.description


# -- API and global state ------------------------------------------------------------------------


def test_api_catalogue_errors_and_json():
    assert SCENARIOS == {
        "read_vs_idle_writeback": ("legacy", "one_section"),
        "seed_swap_read_vs_idle_writeback": ("backing_dev", "no_backing_dev"),
        "read_vs_idle_recompress": ("legacy", "one_section", "seed_swap"),
        "batch_read_vs_idle_writeback": ("legacy", "one_section"),
        "batch_read_vs_idle_recompress": ("legacy", "one_section"),
        "backing_batch_read": ("as_posted", "adjacent"),
    }
    with pytest.raises(ValueError, match="unknown scenario"):
        explore("nope")
    with pytest.raises(ValueError, match="no variant"):
        explore("read_vs_idle_writeback", "as_posted")
    with pytest.raises(ValueError, match="unknown variant"):
        run_schedule("read_vs_idle_writeback", "nope", [])
    (f,) = explore("backing_batch_read", "adjacent")
    d = json.loads(json.dumps(f.as_dict()))
    assert {"scenario", "variant", "race_found", "minimal_schedule", "schedules_explored"} <= set(d)
    assert d["description"] == f.description


def test_the_explorer_runs_on_machines_of_its_own():
    from pyzram.mm.machine import Machine
    from pyzram.zram.swap import zram_init, zram_swap_ops_as_posted
    from pyzram.zram.zram_drv import zram_devops

    mine = Machine()
    zram_init(mine, zram_swap_ops_as_posted)
    explore("backing_batch_read", "adjacent")  # boots machines with zram_swap_ops
    explore("seed_swap_read_vs_idle_writeback", "backing_dev", max_schedules=5)
    assert registered_block_ops(mine) == (zram_devops, zram_swap_ops_as_posted)
    assert not mine.active_areas() and not mine.vm_events.counts
    assert mine.sio_pool.outstanding == 0


def test_failed_run_cleans_up(monkeypatch):
    import pyzram.mm.machine as machine_mod

    closed: list[machine_mod.Machine] = []

    class Spy(machine_mod.Machine):
        def close(self):
            super().close()
            closed.append(self)

    def boom(*a, **k):
        raise RuntimeError("judge failed")

    monkeypatch.setattr(machine_mod, "Machine", Spy)
    monkeypatch.setattr(ex, "_judge_writeback", lambda *a: boom)
    with pytest.raises(RuntimeError, match="judge failed"):
        explore("seed_swap_read_vs_idle_writeback", "backing_dev")
    assert closed, "the scenario's machine was not powered off"
    for m in closed:
        assert not m.active_areas() and registered_block_ops(m) == (None, None)
        assert m.sio_pool.outstanding == 0


def _runs(schedule: list[str]) -> str:
    """``['R', 'R', 'W']`` as the findings doc writes it: ``R×2 → W×1``."""
    from itertools import groupby

    return " → ".join(f"{k}×{len(list(g))}" for k, g in groupby(schedule))


def test_the_findings_doc_table_is_what_the_explorer_finds():
    """Every row of docs/findings.md's summary (race, minimal schedule, context
    switches, schedule count) against a fresh default exploration."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "findings.md").read_text()
    row = re.compile(r"^\| `(\w+)` \| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \| (\d+) \(")
    rows = {(m[1], m[2]): m for line in doc.splitlines() if (m := row.match(line))}
    found = {(f.scenario, f.variant): f for f in explore()}
    assert set(rows) == set(found), "the table lists every scenario and variant"
    for key, m in rows.items():
        f = found[key]
        assert f.race_found == m[3].startswith("**found**"), key
        assert f.schedules_explored == int(m[6]), key
        if key[0] == "backing_batch_read" or not f.race_found:
            continue
        assert m[4].strip() == f"`{_runs(f.minimal_schedule)}`", key
        assert int(m[5]) == f.context_switches, key


@pytest.mark.parametrize(
    "scenario", ["batch_read_vs_idle_writeback", "batch_read_vs_idle_recompress"]
)
def test_a_read_batch_races_between_its_slots_only_in_the_legacy_ordering(scenario):
    """The seed's per-slot loop over three slots: with the legacy ordering the
    writer can take any slot of the batch in the gap after its read (the race
    shows on slots before the last too); in one section per slot, never."""
    legacy, one = explore(scenario)
    assert legacy.variant == "legacy" and legacy.race_found and legacy.exhaustive
    assert legacy.context_switches == 2
    raced = {
        label.split(":")[0]
        for outcome in legacy.outcomes
        for label in outcome.split("; ")
        if "after being read" in label
    }
    assert raced == {"slot 1", "slot 2", "slot 3"}
    assert one.variant == "one_section" and not one.race_found and one.exhaustive
    assert one.schedules_explored > 200
