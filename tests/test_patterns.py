"""Tests for pyzram.workload.patterns: generators, the Accesses container, trace files."""

from __future__ import annotations

import errno
import random

import numpy as np
import pytest

from pyzram.workload import patterns as P
from pyzram.workload.patterns import (
    MAX_VPN,
    PATTERNS,
    TRACE_MAGIC,
    Accesses,
    make_pattern,
    phased,
    phased_working_sets,
    read_trace,
    sequential,
    uniform_random,
    write_sources,
    write_trace,
    zipfian,
)

GENERATORS = [sequential, uniform_random, zipfian, phased]


def acc(vpns: list[int], writes: list[bool] | None = None) -> Accesses:
    """Accesses from Python lists (all reads unless ``writes`` is given)."""
    return Accesses(
        np.array(vpns, dtype=np.int64),
        np.array(writes if writes is not None else [False] * len(vpns), dtype=np.bool_),
    )


# -- the container -----------------------------------------------------------------------


def test_accesses_basics():
    a = acc([3, 1, 4], [False, True, False])
    assert len(a) == 3
    assert list(a) == [(3, False), (1, True), (4, False)]
    assert all(type(v) is int and type(w) is bool for v, w in a)
    assert a.max_vpn == 4
    assert a.nr_writes == 1
    assert a.vpn.dtype == np.int64 and a.write.dtype == np.bool_
    assert a == acc([3, 1, 4], [False, True, False])
    assert a != acc([3, 1, 4])
    assert "n=3" in repr(a)


def test_accesses_empty():
    e = Accesses.empty()
    assert len(e) == 0 and list(e) == [] and e.max_vpn == -1 and e.nr_writes == 0
    assert e.concat(e) == e


def test_accesses_converts_dtypes():
    a = Accesses(np.array([1, 2], dtype=np.uint32), np.array([True, False]))
    assert a.vpn.dtype == np.int64
    assert Accesses([5, 6], [False, True]) == acc([5, 6], [False, True])


@pytest.mark.parametrize(
    "vpn, write",
    [
        ([1, 2], [True]),  # lengths differ
        ([[1]], [[True]]),  # not 1-D
        ([-1], [False]),  # negative page index
        ([1.5], [False]),  # not integers
        ([1], [1]),  # not booleans
        (np.array([1 << 63], dtype=np.uint64), [False]),  # does not fit in 63 bits
    ],
)
def test_accesses_rejects(vpn, write):
    with pytest.raises(ValueError):
        Accesses(np.asarray(vpn), np.asarray(write))


def test_concat():
    a = acc([1, 2], [True, False])
    b = acc([7])
    c = acc([0, 0], [True, True])
    abc = a.concat(b, c)
    assert list(abc) == [(1, True), (2, False), (7, False), (0, True), (0, True)]
    assert abc.max_vpn == 7
    assert a.concat() == a
    assert list(a) == [(1, True), (2, False)]  # unchanged


# -- all generators ----------------------------------------------------------------------


@pytest.mark.parametrize("gen", GENERATORS)
def test_deterministic(gen):
    a = gen(1000, 5000, seed=7, write_ratio=0.3)
    b = gen(1000, 5000, seed=7, write_ratio=0.3)
    assert a == b
    assert len(a) == 5000


@pytest.mark.parametrize("gen", [uniform_random, zipfian, phased])
def test_seed_matters(gen):
    assert gen(1000, 5000, seed=1) != gen(1000, 5000, seed=2)


@pytest.mark.parametrize("gen", GENERATORS)
@pytest.mark.parametrize("nr_pages", [1, 2, 7, 1000, 1 << 20])
def test_range(gen, nr_pages):
    a = gen(nr_pages, 20_000, seed=3)
    assert a.vpn.dtype == np.int64 and a.write.dtype == np.bool_
    assert a.vpn.min() >= 0
    assert a.vpn.max() < nr_pages


@pytest.mark.parametrize("gen", [sequential, uniform_random])
def test_range_huge(gen):
    # These two need no per-page state, so any 63-bit page count works.
    nr_pages = (1 << 62) + 3
    a = gen(nr_pages, 20_000, seed=3)
    assert a.vpn.dtype == np.int64 and a.write.dtype == np.bool_
    assert a.vpn.min() >= 0
    assert a.vpn.max() < nr_pages


@pytest.mark.parametrize("gen", GENERATORS)
def test_zero_accesses(gen):
    a = gen(100, 0)
    assert len(a) == 0 and a.max_vpn == -1


@pytest.mark.parametrize("gen", GENERATORS)
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_write_ratio(gen, ratio):
    n = 100_000
    a = gen(1000, n, seed=5, write_ratio=ratio)
    assert a.nr_writes / n == pytest.approx(ratio, abs=0.01)
    if ratio in (0.0, 1.0):
        assert a.nr_writes == ratio * n


@pytest.mark.parametrize("gen", GENERATORS)
def test_write_ratio_does_not_move_pages(gen):
    assert np.array_equal(
        gen(1000, 10_000, seed=9, write_ratio=0.0).vpn,
        gen(1000, 10_000, seed=9, write_ratio=0.7).vpn,
    )


@pytest.mark.parametrize("gen", GENERATORS)
@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((0, 10), {}),
        ((-5, 10), {}),
        ((10, -1), {}),
        ((10, 10), {"write_ratio": 1.5}),
        ((10, 10), {"write_ratio": -0.1}),
        ((10, 10), {"seed": -1}),
    ],
)
def test_bad_arguments(gen, args, kwargs):
    with pytest.raises(ValueError):
        gen(*args, **kwargs)


def test_bad_argument_types():
    with pytest.raises(TypeError):
        uniform_random(10.0, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        uniform_random(10, True)  # type: ignore[arg-type]


@pytest.mark.parametrize("gen", GENERATORS)
def test_vectorised_million(gen):
    # 1e6 accesses are generated by numpy in a fraction of a second; no timing
    # assertion (shared CI machines), but this would take many seconds if any
    # generator looped in Python.
    a = gen(1 << 20, 1_000_000, seed=1, write_ratio=0.25)
    assert len(a) == 1_000_000
    assert 0 <= a.vpn.min() and a.max_vpn < 1 << 20


# -- sequential --------------------------------------------------------------------------


def test_sequential_exact():
    a = sequential(5, 12)
    assert a.vpn.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert not a.write.any()
    assert sequential(5, 4, start=3).vpn.tolist() == [3, 4, 0, 1]
    assert sequential(1, 3).vpn.tolist() == [0, 0, 0]
    assert sequential(5, 3, start=-1).vpn.tolist() == [4, 0, 1]
    assert sequential(MAX_VPN, 3, start=MAX_VPN - 2).vpn.tolist() == [MAX_VPN - 2, MAX_VPN - 1, 0]
    big = sequential(1000, 2500)
    assert np.array_equal(big.vpn, np.arange(2500) % 1000)


def test_sequential_pages_ignore_seed():
    assert np.array_equal(sequential(10, 50, seed=1).vpn, sequential(10, 50, seed=2).vpn)
    w1 = sequential(10, 1000, seed=1, write_ratio=0.5).write
    w2 = sequential(10, 1000, seed=2, write_ratio=0.5).write
    assert not np.array_equal(w1, w2)


# -- uniform random ----------------------------------------------------------------------


def test_uniform_covers_evenly():
    nr_pages, n = 100, 200_000
    counts = np.bincount(uniform_random(nr_pages, n, seed=2).vpn, minlength=nr_pages)
    assert counts.min() > 0
    # expected 2000 each, sd ~45: all within 10%
    assert np.all(np.abs(counts - n / nr_pages) < 0.1 * n / nr_pages)


# -- zipf --------------------------------------------------------------------------------


def test_zipf_skew():
    nr_pages, n = 1000, 200_000
    counts = np.bincount(zipfian(nr_pages, n, seed=4, s=1.1).vpn, minlength=nr_pages)
    top = np.sort(counts)[::-1]
    assert top[: nr_pages // 10].sum() > 0.6 * n  # top 10% well over half
    assert top[0] > 10 * n / nr_pages  # the hottest page is far above average


def test_zipf_matches_law():
    nr_pages, n, s = 50, 500_000, 1.0
    counts = np.sort(np.bincount(zipfian(nr_pages, n, seed=8, s=s).vpn, minlength=nr_pages))
    weights = 1.0 / np.arange(1, nr_pages + 1) ** s
    expected = (weights / weights.sum() * n)[::-1]
    np.testing.assert_allclose(counts, np.sort(expected), rtol=0.1)


def test_zipf_hot_pages_scattered():
    nr_pages = 1000
    counts = np.bincount(zipfian(nr_pages, 100_000, seed=3, s=1.2).vpn, minlength=nr_pages)
    hottest = np.argsort(counts)[::-1][:10]
    assert set(hottest.tolist()) != set(range(10))  # not just the low indices
    assert hottest.max() >= nr_pages // 4


def test_zipf_bounded_and_full_support():
    nr_pages = 20
    a = zipfian(nr_pages, 100_000, seed=1, s=1.0)
    assert set(a.vpn.tolist()) == set(range(nr_pages))


def test_zipf_s_zero_is_uniform():
    counts = np.bincount(zipfian(10, 100_000, seed=1, s=0.0).vpn, minlength=10)
    assert np.all(np.abs(counts - 10_000) < 500)


def test_zipf_steep_s_stays_in_range():
    a = zipfian(1000, 10_000, seed=1, s=20.0)
    assert a.vpn.min() >= 0 and a.max_vpn < 1000
    assert np.bincount(a.vpn).max() > 9_990  # practically all on the top page


@pytest.mark.parametrize("s", [-0.5, float("nan")])
def test_zipf_bad_exponent(s):
    with pytest.raises(ValueError):
        zipfian(10, 10, s=s)


# -- phased ------------------------------------------------------------------------------


def test_phased_working_sets():
    nr_pages, n, phases = 1000, 100_000, 4
    a = phased(nr_pages, n, seed=6, phases=phases, working_set=0.25)
    sets = phased_working_sets(nr_pages, seed=6, phases=phases, working_set=0.25)
    assert len(sets) == phases
    assert all(len(ws) == 250 for ws in sets)
    union = np.concatenate(sets)
    assert len(np.unique(union)) == nr_pages  # disjoint and covering: 4 x 25%
    bounds = np.linspace(0, n, phases + 1).astype(int)
    for k in range(phases):
        chunk = a.vpn[bounds[k] : bounds[k + 1]]
        inside = np.isin(chunk, sets[k]).mean()
        # 90% to the set, plus a quarter of the uniform 10% that lands in it
        assert inside == pytest.approx(0.9 + 0.1 * 0.25, abs=0.01)
        for j in range(phases):
            if j != k:
                assert np.isin(chunk, sets[j]).mean() < 0.05


def test_phased_without_the_helper():
    # Independent of phased_working_sets: in each phase, 250 pages take most accesses.
    nr_pages, n = 1000, 80_000
    a = phased(nr_pages, n, seed=2, phases=4, working_set=0.25)
    hot_sets = []
    for chunk in np.array_split(a.vpn, 4):
        counts = np.sort(np.bincount(chunk, minlength=nr_pages))[::-1]
        assert counts[:250].sum() > 0.9 * len(chunk)
        hot_sets.append(set(np.argsort(np.bincount(chunk, minlength=nr_pages))[-250:].tolist()))
    assert len(hot_sets[0] & hot_sets[1]) < 50  # a different set each phase


def test_phased_sets_scattered_and_sizes():
    sets = phased_working_sets(1000, seed=1, phases=3, working_set=0.1)
    assert [len(s) for s in sets] == [100, 100, 100]
    assert sets[0].max() - sets[0].min() > 500  # not one contiguous block
    assert all(np.all(np.diff(s) > 0) for s in sets)  # sorted, distinct
    # more phases than fit: sets wrap around and overlap, sizes stay right
    many = phased_working_sets(10, seed=1, phases=5, working_set=0.5)
    assert [len(s) for s in many] == [5] * 5
    assert len(phased_working_sets(3, working_set=0.01)[0]) == 1  # at least one page


def test_phased_locality_extremes():
    sets = phased_working_sets(1000, seed=3, phases=2, working_set=0.1)
    a = phased(1000, 10_000, seed=3, phases=2, working_set=0.1, locality=1.0)
    assert np.isin(a.vpn[:5000], sets[0]).all() and np.isin(a.vpn[5000:], sets[1]).all()
    b = phased(1000, 100_000, seed=3, phases=2, working_set=0.1, locality=0.0)
    assert np.isin(b.vpn[:50_000], sets[0]).mean() == pytest.approx(0.1, abs=0.01)


def test_phased_one_phase_and_short_runs():
    a = phased(100, 3, phases=10)  # fewer accesses than phases
    assert len(a) == 3
    one = phased(100, 1000, phases=1, working_set=1.0)
    assert one.max_vpn < 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"phases": 0},
        {"working_set": 0.0},
        {"working_set": 1.5},
        {"locality": 1.1},
        {"locality": -0.1},
    ],
)
def test_phased_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        phased(100, 10, **kwargs)


# -- trace files -------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True])
def test_trace_round_trip(tmp_path, binary):
    a = uniform_random(1 << 40, 10_000, seed=1, write_ratio=0.4).concat(
        acc([0, MAX_VPN], [True, False])
    )
    path = tmp_path / "t.trace"
    write_trace(path, a, binary=binary)
    assert read_trace(path) == a
    assert read_trace(str(path)) == a
    head = path.read_bytes()[:8]
    assert (head == TRACE_MAGIC) == binary


@pytest.mark.parametrize("binary", [False, True])
def test_trace_round_trip_empty(tmp_path, binary):
    path = tmp_path / "empty.trace"
    write_trace(path, Accesses.empty(), binary=binary)
    assert len(read_trace(path)) == 0


def test_binary_layout(tmp_path):
    path = tmp_path / "b.trace"
    write_trace(path, acc([5, 1 << 40], [True, False]), binary=True)
    data = path.read_bytes()
    assert data[:8] == b"PYZTRC01"
    assert len(data) == 8 + 2 * 8
    assert int.from_bytes(data[8:16], "little") == (1 << 63) | 5
    assert int.from_bytes(data[16:24], "little") == 1 << 40


def test_binary_hand_made(tmp_path):
    # The recipe from docs/traces.md.
    vpn = np.array([3, 4, 3], dtype=np.uint64)
    write = np.array([False, True, False])
    records = vpn | (write.astype(np.uint64) << np.uint64(63))
    path = tmp_path / "run.trace"
    path.write_bytes(b"PYZTRC01" + records.astype("<u8").tobytes())
    assert list(read_trace(path)) == [(3, False), (4, True), (3, False)]


def test_text_layout(tmp_path):
    path = tmp_path / "t.trace"
    write_trace(path, acc([12, 0], [False, True]))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ["R 12", "W 0"]


def test_text_syntax(tmp_path):
    path = tmp_path / "t.trace"
    path.write_bytes(
        b"# header\n"
        b"\n"
        b"R 123\n"
        b"W 123\n"
        b"  r\t7   # trailing comment\n"
        b"w 0\r\n"
        b"   \n"
        b"#R 99\n"
        b"W 00042"  # no final newline, leading zeros
    )
    assert list(read_trace(path)) == [(123, False), (123, True), (7, False), (0, True), (42, True)]


def test_text_comments_only(tmp_path):
    path = tmp_path / "c.trace"
    path.write_text("# nothing here\n\n   # still nothing\n")
    assert len(read_trace(path)) == 0
    (tmp_path / "z.trace").write_bytes(b"")
    assert len(read_trace(tmp_path / "z.trace")) == 0


@pytest.mark.parametrize(
    "body, line, fragment",
    [
        (b"R 1\nX 2\n", 2, "R or W"),
        (b"R 1\nR\n", 2, "expected"),
        (b"# c\n\nR 1 2\n", 3, "expected"),
        (b"R 1 W\n2\n", 1, "expected"),
        (b"R12\n", 1, "expected"),
        (b"R 1\nW -3\n", 2, "decimal"),
        (b"W 0x10\n", 1, "decimal"),
        (b"W +5\n", 1, "decimal"),
        (b"W 1_000\n", 1, "decimal"),
        (b"R 1\nR 2\nR 3\nW 9223372036854775808\n", 4, "63 bits"),
        (b"R 99999999999999999999999\n", 1, "63 bits"),
        (b"R 1\nR 2\xff\n", 2, "decimal"),
        (b"R 1\n\x00\n", 2, "expected"),
        (b"READ 1\n", 1, "R or W"),
    ],
)
def test_text_errors(tmp_path, body, line, fragment):
    path = tmp_path / "bad.trace"
    path.write_bytes(body)
    with pytest.raises(OSError) as ei:
        read_trace(path)
    e = ei.value
    assert e.errno == errno.EINVAL
    assert e.strerror.startswith(f"{path}:{line}: ")
    assert fragment in e.strerror
    assert "\n" not in str(e)


def test_text_max_vpn_accepted(tmp_path):
    path = tmp_path / "max.trace"
    path.write_text(f"W {MAX_VPN}\nR 999999999999999999\n")
    assert list(read_trace(path)) == [(MAX_VPN, True), (999_999_999_999_999_999, False)]


@pytest.mark.parametrize("extra", [1, 3, 7])
def test_binary_truncated(tmp_path, extra):
    path = tmp_path / "trunc.trace"
    path.write_bytes(TRACE_MAGIC + bytes(16 + extra))
    with pytest.raises(OSError) as ei:
        read_trace(path)
    assert ei.value.errno == errno.EINVAL
    assert ei.value.strerror.startswith(f"{path}: truncated")


def test_binary_header_only(tmp_path):
    path = tmp_path / "h.trace"
    path.write_bytes(TRACE_MAGIC)
    assert len(read_trace(path)) == 0


def test_missing_trace(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_trace(tmp_path / "nope.trace")


def test_text_parsers_agree():
    # The numpy fast path and the line-by-line parser give the same result on
    # random well-formed and malformed traces (the fast one may only decline).
    rnd = random.Random(1)
    pieces = ["R", "W", "r", "w", "X", "1", "42", "007", "-1", "9" * 19, "9" * 18]
    pieces += [" ", "  ", "\t", "#", "# c", "\r", "\x00", "\xff", "RW", "R1"]
    accepted = 0
    for _ in range(3000):
        lines = []
        for _ in range(rnd.randint(0, 6)):
            if rnd.random() < 0.6:
                lines.append(f"{rnd.choice('RWrw')}{' ' * rnd.randint(1, 2)}{rnd.randint(0, 999)}")
            else:
                lines.append("".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 4))))
        data = "\n".join(lines).encode("latin-1")
        fast = P._parse_text_fast(data)
        try:
            slow: Accesses | OSError = P._parse_text_slow(data, "f")
        except OSError as e:
            slow = e
        if fast is not None:
            assert isinstance(slow, Accesses), data
            assert fast == slow, data
            accepted += 1
    assert accepted > 500  # the fast path was exercised


# -- make_pattern ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, gen",
    [("sequential", sequential), ("random", uniform_random), ("zipf", zipfian), ("phased", phased)],
)
def test_make_pattern_names(name, gen):
    assert name in PATTERNS
    a = make_pattern(name, 500, 3000, seed=4, write_ratio=0.2)
    assert a == gen(500, 3000, seed=4, write_ratio=0.2)


def test_make_pattern_params():
    assert make_pattern("zipf", 500, 1000, s=1.3) == zipfian(500, 1000, s=1.3)
    assert make_pattern("phased", 500, 1000, phases=2, locality=0.5) == phased(
        500, 1000, phases=2, locality=0.5
    )
    with pytest.raises(ValueError, match="takes no parameter"):
        make_pattern("random", 10, 10, s=1.0)


def test_make_pattern_unknown():
    with pytest.raises(ValueError) as ei:
        make_pattern("zipfy", 10, 10)
    msg = str(ei.value)
    for name in [*PATTERNS, "trace:PATH"]:
        assert name in msg


def test_make_pattern_trace(tmp_path):
    path = tmp_path / "t.trace"
    t = acc([0, 5, 2], [True, False, True])
    write_trace(path, t, binary=True)
    assert make_pattern(f"trace:{path}", 6, 3) == t
    assert make_pattern(f"trace:{path}", 6, 2) == acc([0, 5], [True, False])
    assert make_pattern(f"trace:{path}", 6, 7).vpn.tolist() == [0, 5, 2, 0, 5, 2, 0]
    # seed and write_ratio do not rewrite a trace's own reads and writes
    assert make_pattern(f"trace:{path}", 6, 3, seed=9, write_ratio=1.0) == t
    with pytest.raises(ValueError, match="needs at least 6"):
        make_pattern(f"trace:{path}", 5, 3)


def test_make_pattern_trace_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_pattern(f"trace:{tmp_path / 'nope'}", 10, 10)
    with pytest.raises(ValueError):
        make_pattern("trace:", 10, 10)
    empty = tmp_path / "e.trace"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no accesses"):
        make_pattern(f"trace:{empty}", 10, 10)
    assert len(make_pattern(f"trace:{empty}", 10, 0)) == 0
    bad = tmp_path / "bad.trace"
    bad.write_text("R 1\nQ 2\n")
    with pytest.raises(OSError) as ei:
        make_pattern(f"trace:{bad}", 10, 10)
    assert ei.value.errno == errno.EINVAL and ":2:" in ei.value.strerror
    with pytest.raises(ValueError, match="no parameters"):
        make_pattern(f"trace:{bad}", 10, 10, s=1.0)


# -- write sources -------------------------------------------------------------------------


def test_write_sources():
    a = make_pattern("zipf", 500, 4000, seed=3, write_ratio=0.3)
    src = write_sources(a, 500, seed=3)
    assert src.dtype == np.int64 and len(src) == len(a)
    assert np.array_equal(src >= 0, a.write)  # a source exactly for each write
    assert src.max() < 500 and len(np.unique(src[a.write])) > 400  # spread over the pages
    assert np.array_equal(src, write_sources(a, 500, seed=3))
    assert not np.array_equal(src, write_sources(a, 500, seed=4))
    reads = make_pattern("random", 10, 50, seed=0)
    assert (write_sources(reads, 10) == -1).all()
    assert len(write_sources(Accesses.empty(), 10)) == 0
    with pytest.raises(ValueError):
        write_sources(a, 0)
