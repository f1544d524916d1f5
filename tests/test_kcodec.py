"""Tests for pyzram._kcodec, the kernel-identical zram page codecs.

The kernel comparison (marked ``kernel``) writes pages to a freshly hot-added
zram device of the host and checks that our compressed size equals the
kernel's for every page the kernel stored compressed.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
import subprocess
import sys
import textwrap
import threading
from array import array
from pathlib import Path

import lz4.block
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyzram import _kcodec as kc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lzo_ref  # noqa: E402

try:  # optional cross-check against liblzo2
    import lzo as python_lzo
except ImportError:  # pragma: no cover - depends on the machine
    python_lzo = None

PAGE = 4096
STRIDE = 8192
ALGOS = ("lz4", "lzo", "lzo-rle")
HUGE_THRESHOLD = 3625  # kernel 6.18 x86-64: comp_len >= this is stored as a huge page


# --------------------------------------------------------------------------- page corpora


def synthetic_pages(seed: int, n_each: int = 6) -> list[bytes]:
    """Deterministic pages of many shapes (text, zero gaps, records, random tails...)."""
    r = random.Random(seed)
    words = [
        bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(1, 9)))
        for _ in range(400)
    ]

    def text(n: int) -> bytes:
        b = bytearray()
        while len(b) < n:
            b += r.choice(words) + b" "
        return bytes(b[:n])

    out: list[bytes] = []
    # k random bytes then zeros: sizes sweep through the huge threshold
    for k in list(range(3480, 4097, 41)) + [r.randint(0, PAGE) for _ in range(n_each)]:
        out.append(r.randbytes(k) + bytes(PAGE - k))
    for _ in range(n_each):
        k = r.randint(1, PAGE)
        out.append(bytes(PAGE - k) + r.randbytes(k))
        out.append(text(PAGE))
        k = r.randint(0, PAGE)
        out.append(text(k) + bytes(PAGE - k))
        b = bytearray(text(PAGE))
        for _ in range(r.randint(1, 12)):
            a = r.randrange(PAGE)
            ln = r.choice([1, 3, 4, 5, 8, 16, 17, 20, 21, 64, 300, 2047, 2051, 2052, 2100, 3000])
            b[a : a + ln] = bytes(min(ln, PAGE - a))
        out.append(bytes(b))
        rec = r.choice([8, 16, 24, 32, 40, 48, 56, 64])
        base = r.getrandbits(40) << 4
        b = bytearray()
        i = 0
        while len(b) < PAGE:
            f = (base + i * rec).to_bytes(8, "little") + i.to_bytes(4, "little")
            b += (f + r.getrandbits(16).to_bytes(4, "little"))[:rec].ljust(rec, b"\0")
            i += 1
        out.append(bytes(b[:PAGE]))
        out.append(bytes(r.getrandbits(r.randint(1, 7)) for _ in range(PAGE)))
        per = r.randint(1, 300)
        b = bytearray((r.randbytes(per) * (PAGE // per + 1))[:PAGE])
        for _ in range(r.randint(0, 20)):
            b[r.randrange(PAGE)] = r.getrandbits(8)
        out.append(bytes(b))
        b = bytearray([r.getrandbits(8)]) * PAGE
        b[r.randrange(PAGE)] ^= 1 + r.getrandbits(7)
        out.append(bytes(b))
        tail = r.randint(0, 64)
        out.append(r.randbytes(PAGE - tail) + bytes(tail))
        m = r.randint(100, 1900)
        chunk = r.randbytes(m)
        b = r.randbytes(PAGE - 2 * m - r.randint(0, 30)) + chunk + chunk
        out.append((b + r.randbytes(PAGE))[:PAGE])
    assert all(len(p) == PAGE for p in out)
    return out


def process_pages(pid: int | str, limit: int) -> list[bytes]:
    """Present pages of a process's private writable anonymous mappings."""
    pages: list[bytes] = []
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    with open(f"/proc/{pid}/pagemap", "rb") as pm, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            parts = line.split()
            perms = parts[1]
            path = parts[5] if len(parts) > 5 else ""
            if perms[1] != "w" or perms[3] != "p" or path not in ("", "[heap]", "[stack]"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            npg = (hi - lo) // PAGE
            pm.seek(lo // PAGE * 8)
            ents = np.frombuffer(pm.read(npg * 8), dtype=np.uint64)
            for j in np.nonzero(ents >> np.uint64(63))[0]:
                try:
                    mem.seek(lo + int(j) * PAGE)
                    p = mem.read(PAGE)
                except OSError:
                    continue
                if len(p) == PAGE:
                    pages.append(p)
                    if len(pages) >= limit:
                        return pages
    return pages


_CHILD = textwrap.dedent(
    """
    import sys, random, json
    import numpy as np
    r = random.Random(int(sys.argv[1]))
    words = [''.join(r.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(r.randint(2, 10)))
             for _ in range(2000)]
    d = {w + str(i): (i, w * 3, [i, i * 2.5]) for i, w in enumerate(words * 4)}
    s = [' '.join(r.choice(words) for _ in range(40)) for _ in range(2000)]
    js = json.dumps({k: str(v) for k, v in list(d.items())[:3000]})
    a = np.arange(200000, dtype=np.int64) * 3
    b = np.random.default_rng(1).normal(size=50000)
    c = np.random.default_rng(2).integers(0, 16, size=200000).astype(np.uint8)
    tup = [(i, str(i), float(i)) for i in range(40000)]
    sys.stdout.write('ready\\n'); sys.stdout.flush()
    sys.stdin.readline()
    """
)


def live_child_pages(seed: int, limit: int) -> list[bytes]:
    """Pages of a Python child process that built dicts, strings and arrays."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(seed)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout.readline().strip() == b"ready"
        pages = process_pages(proc.pid, 100000)
    finally:
        proc.stdin.close()
        proc.wait(30)
    r = random.Random(seed)
    return r.sample(pages, min(limit, len(pages)))


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    pages = synthetic_pages(1)
    try:
        own = process_pages("self", 3000)
    except OSError:  # pragma: no cover - /proc not readable
        own = []
    pages += random.Random(2).sample(own, min(250, len(own)))
    return pages


def same_filled(p: bytes) -> bool:
    return p == p[:8] * 512


# --------------------------------------------------------------------------- hypothesis pages


@st.composite
def pages(draw) -> bytes:
    """4 KiB pages built from zero runs, random bytes, short patterns and repeats."""
    b = bytearray()
    for _ in range(draw(st.integers(0, 24))):
        kind = draw(st.integers(0, 4))
        n = draw(st.integers(1, 1500))
        if kind == 0:
            b += bytes(n)
        elif kind == 1:
            b += draw(st.binary(min_size=1, max_size=300))
        elif kind == 2:
            pat = draw(st.binary(min_size=1, max_size=12))
            b += (pat * (n // len(pat) + 1))[:n]
        elif kind == 3 and b:
            start = draw(st.integers(0, len(b) - 1))
            b += b[start : start + n]
        else:
            b += bytes([draw(st.integers(0, 255))]) * n
        if len(b) >= PAGE:
            break
    if len(b) < PAGE:
        fill = draw(st.integers(0, 2))
        if fill == 0 or not b:
            b += bytes(PAGE - len(b))
        elif fill == 1:
            b = b * (PAGE // len(b) + 1)
        else:
            b += draw(st.randoms(use_true_random=False)).randbytes(PAGE - len(b))
    return bytes(b[:PAGE])


HSET = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


# --------------------------------------------------------------------------- basics


def test_module_surface():
    assert kc.ALGORITHMS == (*ALGOS, "lz4hc")
    assert kc.PAGE_SIZE == PAGE and kc.DST_STRIDE == STRIDE
    for name in ("compress", "decompress", "compress_batch", "decompress_batch"):
        assert getattr(kc, name).__doc__
    assert "LZ4_compress_fast" in kc.__doc__ and "lzo1x_decompress_safe" in kc.__doc__
    assert "LZ4_loadDict" in kc.__doc__ and "dict=None" in kc.compress.__doc__


@pytest.mark.parametrize(
    ("algo", "data", "expected"),
    [
        ("lz4", b"", b"\x00"),
        ("lz4", b"abc", b"\x30abc"),
        ("lzo", b"", b"\x11\x00\x00"),
        ("lzo-rle", b"", b"\x11\x01\x11\x00\x00"),
        ("lzo", b"abc", b"\x14abc\x11\x00\x00"),
        ("lzo-rle", b"abc", b"\x11\x01\x14abc\x11\x00\x00"),
    ],
)
def test_known_small_streams(algo, data, expected):
    assert kc.compress(algo, data) == expected
    assert kc.decompress(algo, expected, len(data)) == data


@pytest.mark.parametrize(
    ("algo", "n", "expected"),
    [
        # lzogeneric1x_1_compress() does not search blocks with t + ll < 32 (its
        # pointer-overflow guard), so 21..31-byte inputs are stored as literals
        ("lzo", 28, "2d" + "00020003" + "00" * 24 + "110000"),
        ("lzo-rle", 28, "11012d" + "00020003" + "00" * 24 + "110000"),
        ("lzo", 32, "030002000300002a00000b0000000000000000000000000000110000"),
        (
            "lzo-rle",
            32,
            "11010200020003001bfcff0000020000000000000000000000000000000000000000110000",
        ),
    ],
)
def test_lzo_short_inputs(algo, n, expected):
    data = b"\x00\x02\x00\x03" + bytes(n - 4)
    assert kc.compress(algo, data).hex() == expected
    assert kc.decompress(algo, bytes.fromhex(expected), n) == data


def test_zero_page_streams():
    z = bytes(PAGE)
    # lz4: 1 literal, then one long offset-1 match, 5 trailing literals
    c = kc.compress("lz4", z)
    assert c[0] == 0x1F and c[1] == 0 and c[2:4] == b"\x01\x00"
    assert kc.decompress("lz4", c) == z
    # lzo-rle: version marker, then zero runs coded as M4 instructions (0x18 | run & 7)
    c = kc.compress("lzo-rle", z)
    assert c[:2] == b"\x11\x01" and c[-3:] == b"\x11\x00\x00"
    assert len(c) < len(kc.compress("lzo", z))
    assert kc.decompress("lzo-rle", c) == z == lzo_ref.decompress(c)


# Digest of the outputs for the deterministic synthetic corpus; the per-page
# sizes of this corpus were checked against Linux 6.18 zram (x86-64).
GOLDEN = {
    "lz4": "6a8447f55a01266fa29fdb0fc2349b7181fbaf7c2b2494dfe50a7916f7756d38",
    "lzo": "36e9d700137b594193c905b973149828d113fca1b4ec1b540a58e063f28cf6ce",
    "lzo-rle": "432e7b3e356c0dfd61c286473be4ea50c997b84d76a18349cc5692fdb48595af",
}


@pytest.mark.parametrize("algo", ALGOS)
def test_golden_digest(algo):
    h = hashlib.sha256()
    for p in synthetic_pages(1234):
        h.update(kc.compress(algo, p))
    assert h.hexdigest() == GOLDEN[algo]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("algo", ALGOS)
def test_roundtrip_corpus(algo, corpus):
    for p in corpus:
        c = kc.compress(algo, p)
        assert len(c) <= PAGE + PAGE // 16 + 64 + 3 + 2
        assert kc.decompress(algo, c) == p
        assert kc.decompress(algo, bytearray(c)) == p
        assert kc.decompress(algo, memoryview(c)) == p


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(
    "n", [0, 1, 3, 4, 12, 13, 20, 21, 25, 100, 4095, 5000, 49151, 49152, 49153, 65536]
)
def test_roundtrip_lengths(algo, n):
    r = random.Random(n)
    data = bytes(r.getrandbits(2) for _ in range(n))
    c = kc.compress(algo, data)
    assert kc.decompress(algo, c, n) == data
    if algo != "lz4":
        assert lzo_ref.decompress(c) == data
    else:
        assert lz4.block.decompress(c, uncompressed_size=n) == data


@pytest.mark.parametrize("algo", ALGOS)
@given(page=pages())
@HSET
def test_roundtrip_hypothesis(algo, page):
    c = kc.compress(algo, page)
    assert kc.decompress(algo, c) == page


@given(page=pages(), accel=st.integers(-3, 100000))
@HSET
def test_lz4_acceleration_roundtrip(page, accel):
    c = kc.compress("lz4", page, accel)
    assert kc.decompress("lz4", c) == page
    if accel <= 1:
        assert c == kc.compress("lz4", page)


def test_lzo_ignores_acceleration(corpus):
    for p in corpus[:20]:
        assert kc.compress("lzo", p, 9) == kc.compress("lzo", p)
        assert kc.compress("lzo-rle", p, acceleration=3) == kc.compress("lzo-rle", p)


# --------------------------------------------------------------------------- cross checks


def test_lz4_cross_python_lz4(corpus):
    for p in corpus:
        ours = kc.compress("lz4", p)
        assert lz4.block.decompress(ours, uncompressed_size=PAGE) == p
        for kw in ({}, {"mode": "fast", "acceleration": 3}, {"mode": "high_compression"}):
            theirs = lz4.block.compress(p, store_size=False, **kw)
            assert kc.decompress("lz4", theirs) == p


@given(page=pages())
@HSET
def test_lz4_cross_python_lz4_hypothesis(page):
    assert lz4.block.decompress(kc.compress("lz4", page), uncompressed_size=PAGE) == page
    assert kc.decompress("lz4", lz4.block.compress(page, store_size=False)) == page


@pytest.mark.parametrize("algo", ["lzo", "lzo-rle"])
def test_lzo_reference_decoder(algo, corpus):
    for p in corpus:
        assert lzo_ref.decompress(kc.compress(algo, p)) == p


@pytest.mark.parametrize("algo", ["lzo", "lzo-rle"])
@given(page=pages())
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_lzo_reference_decoder_hypothesis(algo, page):
    assert lzo_ref.decompress(kc.compress(algo, page)) == page


@pytest.mark.skipif(python_lzo is None, reason="python-lzo (liblzo2) not installed")
def test_python_lzo_cross(corpus):
    for p in corpus:
        ours = kc.compress("lzo", p)
        assert python_lzo.decompress(ours, False, PAGE) == p
        for level in (1, 9):
            theirs = python_lzo.compress(p, level, False)
            assert kc.decompress("lzo", theirs) == p
            assert kc.decompress("lzo-rle", theirs) == p  # same decoder in the kernel
            assert lzo_ref.decompress(theirs) == p


# --------------------------------------------------------------------------- corrupt input


def _check_decode(algo: str, data: bytes, out_len: int = PAGE) -> bytes | None:
    try:
        out = kc.decompress(algo, data, out_len)
    except OSError as e:
        assert e.errno == errno.EINVAL
        return None
    assert len(out) <= out_len
    return out


def _ref_decode(data: bytes, out_len: int) -> bytes | None:
    try:
        return lzo_ref.decompress(data, out_len)
    except lzo_ref.LzoError:
        return None


@pytest.mark.parametrize("algo", ALGOS)
def test_truncated_and_extended(algo, corpus):
    for p in corpus[::7]:
        c = kc.compress(algo, p)
        for cut in range(0, len(c), max(1, len(c) // 40)):
            _check_decode(algo, c[:cut])
        with pytest.raises(OSError) as ei:
            kc.decompress(algo, c[:-1])
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(OSError):
            kc.decompress(algo, c + b"\0")
        with pytest.raises(OSError):
            kc.decompress(algo, c, PAGE - 1)  # output would not fit
        assert kc.decompress(algo, c, PAGE + 100) == p  # a larger buffer is fine


@pytest.mark.parametrize("algo", ALGOS)
@given(data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_mutated_streams(algo, data):
    page = data.draw(pages())
    c = bytearray(kc.compress(algo, page))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.integers(0, 3))
        i = data.draw(st.integers(0, len(c) - 1))
        if op == 0:
            c[i] = data.draw(st.integers(0, 255))
        elif op == 1:
            del c[i : i + data.draw(st.integers(1, 20))]
        elif op == 2:
            c[i:i] = data.draw(st.binary(min_size=1, max_size=20))
        else:
            c[i] ^= 1 << data.draw(st.integers(0, 7))
        if not c:
            break
    out_len = data.draw(st.sampled_from([PAGE, 0, 1, 100, PAGE - 1, PAGE + 1, 2 * PAGE]))
    got = _check_decode(algo, bytes(c), out_len)
    if algo != "lz4":
        # our decoder and the reference accept exactly the same streams
        assert got == _ref_decode(bytes(c), out_len)


@pytest.mark.parametrize("algo", ALGOS)
@given(blob=st.binary(max_size=600), out_len=st.integers(0, 5000))
@settings(max_examples=300, deadline=None)
def test_random_input(algo, blob, out_len):
    for prefix in (b"", b"\x11\x01"):
        got = _check_decode(algo, prefix + blob, out_len)
        if algo != "lz4":
            assert got == _ref_decode(prefix + blob, out_len)


def test_lz4_decoder_kernel_quirks():
    # LZ4_decompress_safe() of the kernel expands offset 0 into zero bytes
    stream = bytes([0x10, ord("A"), 0, 0, 0x50]) + b"hello"
    assert kc.decompress("lz4", stream, 100) == b"A" + bytes(4) + b"hello"
    # zero output capacity: only the single 0 token is valid
    assert kc.decompress("lz4", b"\x00", 0) == b""
    for bad in (b"", b"\x00\x00", b"\x10"):
        with pytest.raises(OSError):
            kc.decompress("lz4", bad, 0)
    # a match must end at least 5 bytes before the end of the output buffer
    stream = bytes([0x84]) + b"abcdefgh" + b"\x01\x00" + bytes([0xA0]) + b"0123456789"
    assert kc.decompress("lz4", stream, 26) == b"abcdefgh" + b"h" * 8 + b"0123456789"
    with pytest.raises(OSError):
        kc.decompress("lz4", stream, 20)


def test_lzo_decoder_kernel_rules():
    # the end-of-stream instruction must be exactly 0x11 (length 3)
    assert kc.decompress("lzo", b"\x14abc\x11\x00\x00", 10) == b"abc"
    with pytest.raises(OSError):
        kc.decompress("lzo", b"\x14abc\x12\x00\x00", 10)
    # the zero-run instruction only exists in versioned streams
    rle = b"\x11\x01\x14abc" + bytes([0x18 | 4, 0xFC, 0xFF, 0]) + b"\x11\x00\x00"
    assert kc.decompress("lzo-rle", rle, 100) == b"abc" + bytes(8)
    assert kc.decompress("lzo", rle, 100) == b"abc" + bytes(8)  # same kernel decoder
    with pytest.raises(OSError):
        kc.decompress("lzo", rle[2:], 100)  # v0: a far copy before the output start


# --------------------------------------------------------------------------- wide-copy fast paths
# The decoders copy literals and matches in whole 8/16/32-byte steps while the
# buffers have room and fall back to exact copies near their ends; matches with
# offsets below 8 repeat a pattern.  These tests drive each of those paths with
# hand-built streams and compare against plain byte-by-byte decoding.


def _lz4_ext(n: int) -> bytes:
    """LZ4 length extension bytes for a length field value n >= 15."""
    n -= 15
    return b"\xff" * (n // 255) + bytes([n % 255])


def lz4_stream(seqs: list[tuple[bytes, int, int]], last: bytes) -> tuple[bytes, bytes]:
    """An LZ4 block from (literals, offset, match length) sequences and final
    literals, with its byte-by-byte decoding."""
    out, s = bytearray(), bytearray()
    for lit, off, ml in seqs:
        assert ml >= 4 and 1 <= off <= len(out) + len(lit)
        ln, mf = len(lit), ml - 4
        s.append((min(ln, 15) << 4) | min(mf, 15))
        if ln >= 15:
            s += _lz4_ext(ln)
        s += lit + off.to_bytes(2, "little")
        if mf >= 15:
            s += _lz4_ext(mf)
        out += lit
        for _ in range(ml):
            out.append(out[-off])
    s.append(min(len(last), 15) << 4)
    if len(last) >= 15:
        s += _lz4_ext(len(last))
    s += last
    return bytes(s), bytes(out + last)


MATCH_LENS = list(range(4, 41)) + [47, 48, 49, 63, 64, 65, 100, 270, 271, 1000]


@pytest.mark.parametrize("off", range(1, 17))
def test_lz4_overlapping_matches_every_offset(off):
    r = random.Random(off)
    for ml in MATCH_LENS:
        for lit_len in (0, 1, 3, 14, 15, 16, 40):
            head = r.randbytes(max(off, 8))
            seqs = [(head, off, ml)]
            if lit_len:
                seqs.append((r.randbytes(lit_len), off, ml))
            # a short match after it, then the last literals
            seqs.append((r.randbytes(r.randint(0, 3)), r.randint(1, 8), r.randint(4, 18)))
            stream, want = lz4_stream(seqs, r.randbytes(r.choice([12, 13, 16, 20, 40])))
            n = len(want)
            assert lz4.block.decompress(stream, uncompressed_size=n) == want
            for extra in (0, 1, 5, 11, 12, 13, 17, 18, 19, 31, 32, 33, 64):
                assert kc.decompress("lz4", stream, n + extra) == want
            with pytest.raises(OSError):
                kc.decompress("lz4", stream, n - 1)


def test_lz4_shortcut_match_end_rule():
    """The kernel's shortcut copies a match with offset >= 8 without checking
    that it ends 5 bytes before the output end; offsets below 8 leave the
    shortcut and get that check.  Our fast path for small offsets keeps it."""
    lit = bytes(range(1, 15))
    for off in range(1, 15):
        stream = bytes([0xEE]) + lit + off.to_bytes(2, "little") + b"\x00"
        want = bytearray(lit)
        for _ in range(18):
            want.append(want[-off])
        if off >= 8:
            assert kc.decompress("lz4", stream, 32) == bytes(want)
        else:
            with pytest.raises(OSError):
                kc.decompress("lz4", stream, 32)
        assert kc.decompress("lz4", stream, 37) == bytes(want)  # room for 5 more


@pytest.mark.parametrize("ml", [4, 5, 8, 12, 16, 17, 18, 19, 24, 32, 33, 40, 100])
def test_lz4_matches_near_the_end(ml):
    """Matches that end 12..40 bytes before the end of the output: the copies
    there must switch from wide to exact steps."""
    r = random.Random(ml)
    for off in list(range(1, 20)) + [24, 31, 32, 33, 64, 500]:
        for tail in range(12, 41):
            head = r.randbytes(max(off, 20))
            stream, want = lz4_stream([(head, off, ml)], r.randbytes(tail))
            assert kc.decompress("lz4", stream, len(want)) == want
            assert lz4.block.decompress(stream, uncompressed_size=len(want)) == want
            # and in the middle of a long output, after many short sequences
            seqs = [
                (r.randbytes(r.randint(0, 4)), r.randint(1, 16), r.randint(4, 18))
                for _ in range(30)
            ]
            seqs[0] = (r.randbytes(20), 3, 7)
            stream, want = lz4_stream(seqs + [(head, off, ml)], r.randbytes(tail))
            assert kc.decompress("lz4", stream, len(want)) == want


def test_lz4_literal_runs_near_the_end():
    r = random.Random(5)
    for lit_len in list(range(0, 70)) + [254, 255, 256, 269, 270, 271, 1000]:
        for tail in (12, 13, 15, 16, 17, 31, 32, 33):
            seqs = [(r.randbytes(20), 20, 8), (r.randbytes(lit_len), 9, 4)]
            stream, want = lz4_stream(seqs, r.randbytes(tail))
            for extra in (0, 1, 15, 16, 17, 40):
                assert kc.decompress("lz4", stream, len(want) + extra) == want
            # the whole output as the last literal run
            stream, want = lz4_stream([], r.randbytes(lit_len + tail))
            assert kc.decompress("lz4", stream, len(want)) == want
            with pytest.raises(OSError):
                kc.decompress("lz4", stream, len(want) - 1)


@pytest.mark.parametrize("algo", ALGOS)
def test_periodic_data_every_offset(algo):
    """Data with period 1..16 (the short-offset match copies) at many lengths,
    decoded into exactly-sized and larger buffers, and by the other decoders."""
    r = random.Random(7)
    for period in range(1, 17):
        for n in (13, 21, 31, 32, 33, 47, 64, 65, 100, 257, 1000, PAGE):
            pat = r.randbytes(period)
            data = r.randbytes(r.randint(0, 9)) + (pat * (n // period + 1))
            data = (data[: n - 7] + r.randbytes(7))[:n]
            c = kc.compress(algo, data)
            for extra in (0, 1, 8, 15, 16, 17, 33):
                assert kc.decompress(algo, c, n + extra) == data
            if n > 0:
                with pytest.raises(OSError):
                    kc.decompress(algo, c, n - 1)
            if algo == "lz4":
                assert lz4.block.decompress(c, uncompressed_size=n) == data
            else:
                assert lzo_ref.decompress(c, n) == data
                if python_lzo is not None and algo == "lzo":
                    assert python_lzo.decompress(c, False, n) == data


@pytest.mark.parametrize("algo", ALGOS)
def test_short_inputs_every_buffer_size(algo):
    """Objects of 0..300 bytes decoded into buffers of n-2 .. n+40 bytes: only
    buffers of at least n bytes accept them, and nothing is written past the
    buffer (the ASan test runs the same decoders with exact-size buffers)."""
    r = random.Random(11)
    for n in range(0, 301):
        base = r.randbytes(r.randint(1, 12))
        data = (base * (n // len(base) + 1))[:n]
        if n > 8 and r.random() < 0.5:
            data = data[: n // 2] + r.randbytes(n - n // 2)
        c = kc.compress(algo, data)
        for cap in range(max(0, n - 2), n + 41):
            got = _check_decode(algo, c, cap)
            if cap >= n:
                assert got == data
            else:
                assert got is None


@pytest.mark.parametrize("algo", ALGOS)
def test_every_cut_point(algo, corpus):
    """Every prefix of real and synthetic objects: an error or (when the cut
    leaves a stream that ends properly) a prefix of the page, never anything else."""
    picks = corpus[5::37]
    for j, p in enumerate(picks):
        c = kc.compress(algo, p)
        for cut in range(len(c)):
            got = _check_decode(algo, c[:cut])
            assert got is None or p.startswith(got)
            if algo != "lz4" and (cut < 8 or cut % 97 == 0) and j < 4:
                assert got == _ref_decode(c[:cut], PAGE)


@pytest.mark.parametrize("algo", ALGOS)
def test_live_process_pages_batch_roundtrip(algo):
    """Pages of a live Python process through the batch calls, and (where the
    library is there) through python-lz4 / python-lzo."""
    pages_ = live_child_pages(21, 600)
    n = len(pages_)
    assert n > 50
    src = np.frombuffer(b"".join(pages_), np.uint8)
    dst = np.zeros(n * STRIDE, np.uint8)
    sizes = np.zeros(n, np.int32)
    kc.compress_batch(algo, src, n, dst, sizes)
    offs = np.arange(n, dtype=np.int64) * STRIDE
    out = np.zeros(n * PAGE, np.uint8)
    res = np.ones(n, np.int32)
    assert kc.decompress_batch(algo, dst.tobytes(), offs, sizes, n, out, res) == 0
    assert out.tobytes() == src.tobytes()
    for i in range(0, n, 5):
        c = dst[i * STRIDE : i * STRIDE + sizes[i]].tobytes()
        if algo == "lz4":
            assert lz4.block.decompress(c, uncompressed_size=PAGE) == pages_[i]
            assert kc.decompress(algo, lz4.block.compress(pages_[i], store_size=False)) == pages_[i]
        elif python_lzo is not None:
            if algo == "lzo":
                assert python_lzo.decompress(c, False, PAGE) == pages_[i]
            theirs = python_lzo.compress(pages_[i], 1, False)
            assert kc.decompress(algo, theirs) == pages_[i]


# --------------------------------------------------------------------------- argument checks


def test_argument_validation():
    p = bytes(PAGE)
    with pytest.raises(ValueError):
        kc.compress("zstd", p)
    with pytest.raises(ValueError):
        kc.decompress("LZ4", b"\x00")
    with pytest.raises(TypeError):
        kc.compress(b"lz4", p)
    with pytest.raises(TypeError):
        kc.compress("lz4", "text")
    with pytest.raises(ValueError):
        kc.compress("lz4", bytes(65537))
    with pytest.raises(TypeError):
        kc.compress("lz4", p, 1.5)
    with pytest.raises(ValueError):
        kc.decompress("lz4", b"\x00", -1)
    src = np.zeros((2, PAGE), np.uint8)
    dst = np.zeros(2 * STRIDE, np.uint8)
    sizes = np.zeros(2, np.int32)
    kc.compress_batch("lz4", src, 2, dst, sizes)
    assert list(sizes) == [len(kc.compress("lz4", p))] * 2
    kc.compress_batch("lz4", src, 0, dst, sizes)
    kc.compress_batch("lzo", src, 2, dst, array("i", [0, 0]))
    bad_calls = [
        (src, 3, dst, sizes),  # src too small
        (src, 2, dst[:-1], sizes),  # dst too small
        (src, 2, dst, sizes[:1]),  # sizes too small
        (src, 2, dst, np.zeros(2, np.int64)),  # wrong item size
        (src, 2, dst, np.zeros(2, np.float32)),  # not integers
        (src, -1, dst, sizes),
        (src, 1, src.reshape(-1)[:STRIDE], sizes),  # dst overlaps src
    ]
    for args in bad_calls:
        with pytest.raises(ValueError):
            kc.compress_batch("lz4", *args)
    with pytest.raises(ValueError):
        kc.compress_batch("lz5", src, 2, dst, sizes)
    with pytest.raises((TypeError, BufferError)):
        kc.compress_batch("lz4", src, 2, bytes(2 * STRIDE), sizes)  # not writable
    with pytest.raises((TypeError, BufferError)):
        kc.compress_batch("lz4", src, 2, dst, bytes(8))


@pytest.mark.parametrize("algo", ALGOS)
def test_compress_batch_of_separate_pages_is_each_page_compressed(algo, corpus, dict_source):
    """The batch zram's swap_ops write path makes: a list of the folios' pages (each
    its own buffer), with the device's acceleration or level and dictionary,
    gives exactly what compress() gives page by page."""
    pages_ = [bytearray(corpus[i]) for i in range(0, 320, 10)]
    n = len(pages_)
    kw = [{}, {"acceleration": 3}]
    if algo in ("lz4", "lz4hc"):
        kw.append({"acceleration": 2, "dict": _dict(dict_source, 4096)})
    for k in kw:
        dst = bytearray(n * STRIDE)
        sizes = array("i", [0]) * n
        kc.compress_batch(algo, pages_, n, dst, sizes, k.get("acceleration", 1), k.get("dict"))
        for i, p in enumerate(pages_):
            want = kc.compress(algo, p, k.get("acceleration", 1), k.get("dict"))
            assert bytes(dst[i * STRIDE : i * STRIDE + sizes[i]]) == want, (k, i)
    dst, sizes = bytearray(2 * STRIDE), array("i", [0, 0])
    for bad in (pages_[:1], [pages_[0], bytes(PAGE - 1)], (pages_[0], memoryview(dst)[:PAGE])):
        with pytest.raises(ValueError):  # a buffer short, one not a page, one on dst
            kc.compress_batch(algo, bad, 2, dst, sizes)
    if algo.startswith("lzo"):
        with pytest.raises(ValueError, match="dictionary"):
            kc.compress_batch(algo, pages_[:2], 2, dst, sizes, 1, b"x" * 64)


def test_decompress_batch_validation():
    c = kc.compress("lzo", bytes(range(256)) * 16)
    src = np.frombuffer(c * 2, np.uint8)
    offs = np.array([0, len(c)], np.int64)
    lens = np.array([len(c), len(c)], np.int32)
    dst = np.zeros(2 * PAGE, np.uint8)
    res = np.ones(2, np.int32)
    assert kc.decompress_batch("lzo", src, offs, lens, 2, dst, res) == 0
    assert list(res) == [0, 0]
    bad = [
        (src, np.array([0, len(c) + 1], np.int64), lens, 2, dst, res),  # past the end
        (src, np.array([-1, 0], np.int64), lens, 2, dst, res),
        (src, offs, np.array([len(c), -5], np.int32), 2, dst, res),
        (src, offs.astype(np.int32), lens, 2, dst, res),  # offsets must be 8-byte
        (src, offs, lens.astype(np.int64), 2, dst, res),  # lengths must be 4-byte
        (src, offs, lens, 3, dst, res),  # n larger than the arrays
        (src, offs, lens, 2, dst[:-1], res),  # dst too small
        (src, offs, lens, 2, dst, res[:1]),
        (src, offs, lens, -1, dst, res),
    ]
    for args in bad:
        res[:] = 7
        with pytest.raises(ValueError):
            kc.decompress_batch("lzo", *args)
        assert list(res) == [7, 7]  # nothing was decoded
    with pytest.raises(ValueError):
        kc.decompress_batch("nope", src, offs, lens, 2, dst, res)


def test_decompress_batch_into_page_buffers():
    """``dst`` may be n page buffers (a batch of folios' pages): each object is
    decoded into its own buffer, exactly as into the pages of one buffer;
    failures zero their page; bad lists are refused before anything is
    decoded."""
    pages_ = [bytes(range(256)) * 16, bytes(PAGE), b"ab" * 2048, os.urandom(PAGE)]
    comp = [kc.compress("lz4", p) for p in pages_]
    comp[2] = comp[2][:-3]  # this one fails
    src = b"".join(comp)
    offs = np.cumsum([0] + [len(c) for c in comp[:-1]]).astype(np.int64)
    lens = np.array([len(c) for c in comp], np.int32)
    folio = bytearray(2 * PAGE)  # two pages of a large folio, as views
    bufs = [bytearray(b"\x55" * PAGE), memoryview(folio)[:PAGE], memoryview(folio)[PAGE:]]
    bufs.append(np.full(PAGE, 0x55, np.uint8))
    res = np.ones(4, np.int32)
    assert kc.decompress_batch("lz4", src, offs, lens, 4, bufs, res) == 1
    assert list(res) == [0, 0, -errno.EINVAL, 0]
    assert bytes(bufs[0]) == pages_[0] and folio[:PAGE] == pages_[1]
    assert folio[PAGE:] == bytes(PAGE)  # the failed page is zero-filled
    assert bufs[3].tobytes() == pages_[3]
    assert kc.decompress_batch("lz4", src, offs, lens, 4, tuple(bufs), res) == 1  # a tuple too
    bad = [
        bufs[:3],  # one buffer short
        [*bufs[:3], bytearray(PAGE - 1)],  # not a page
        [*bufs[:3], bytes(PAGE)],  # read-only
        [*bufs[:3], memoryview(bytearray(2 * PAGE))[::2]],  # not contiguous
        [*bufs[:3], 42],  # not a buffer
    ]
    for dst in bad:
        res[:] = 7
        with pytest.raises((ValueError, TypeError, BufferError)):
            kc.decompress_batch("lz4", src, offs, lens, 4, dst, res)
        assert list(res) == [7] * 4
    arena = bytearray(src) + bytearray(PAGE)  # a page buffer inside the source
    with pytest.raises(ValueError):
        kc.decompress_batch(
            "lz4", arena, offs, lens, 4, [*bufs[:3], memoryview(arena)[-PAGE:]], res
        )


# --------------------------------------------------------------------------- batches and threads


@pytest.mark.parametrize("algo", ALGOS)
def test_batch_matches_single(algo, corpus):
    n = len(corpus)
    src = np.frombuffer(b"".join(corpus), np.uint8)
    dst = np.full(n * STRIDE, 0xAA, np.uint8)
    sizes = np.zeros(n, np.int32)
    assert kc.compress_batch(algo, src, n, dst, sizes) is None
    packed, offs = bytearray(), []
    for i, p in enumerate(corpus):
        c = kc.compress(algo, p)
        assert sizes[i] == len(c)
        assert dst[i * STRIDE : i * STRIDE + len(c)].tobytes() == c
        offs.append(len(packed))
        packed += c
    out = np.zeros(n * PAGE, np.uint8)
    res = np.ones(n, np.int32)
    fails = kc.decompress_batch(algo, bytes(packed), np.array(offs, np.int64), sizes, n, out, res)
    assert fails == 0 and not res.any()
    assert out.tobytes() == src.tobytes()


@pytest.mark.parametrize("algo", ALGOS)
def test_decompress_batch_reports_failures(algo, corpus):
    pages_ = corpus[:6]
    comp = [kc.compress(algo, p) for p in pages_]
    comp[1] = comp[1][:-2]  # truncated
    comp[3] = kc.compress(algo, pages_[3][:1000])  # valid, but decodes to 1000 bytes
    comp[4] = b"\xff" * 30  # garbage
    packed = b"".join(comp)
    offs = np.cumsum([0] + [len(c) for c in comp[:-1]]).astype(np.int64)
    lens = np.array([len(c) for c in comp], np.int32)
    out = np.full(6 * PAGE, 0x55, np.uint8)
    res = np.zeros(6, np.int32)
    assert kc.decompress_batch(algo, packed, offs, lens, 6, out, res) == 3
    assert list(res) == [0, -errno.EINVAL, 0, -errno.EINVAL, -errno.EINVAL, 0]
    for i in (0, 2, 5):
        assert out[i * PAGE : (i + 1) * PAGE].tobytes() == pages_[i]
    for i in (1, 3, 4):
        assert not out[i * PAGE : (i + 1) * PAGE].any()  # failed slots are zero-filled


@pytest.mark.parametrize("algo", ALGOS)
def test_two_threads(algo, corpus):
    n = len(corpus)
    base = np.frombuffer(b"".join(corpus), np.uint8).reshape(n, PAGE)
    srcs = [
        np.ascontiguousarray(np.tile(base, (4, 1))),
        np.ascontiguousarray(np.tile(base[::-1], (4, 1))),
    ]
    m = 4 * n
    expect = []
    for s in srcs:
        d, z = np.zeros(m * STRIDE, np.uint8), np.zeros(m, np.int32)
        kc.compress_batch(algo, s, m, d, z)
        expect.append((d, z))
    results: list = [None, None]
    errors: list = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                d, z = np.zeros(m * STRIDE, np.uint8), np.zeros(m, np.int32)
                kc.compress_batch(algo, srcs[i], m, d, z)
                out, res = np.zeros(m * PAGE, np.uint8), np.ones(m, np.int32)
                offs = np.arange(m, dtype=np.int64) * STRIDE
                assert kc.decompress_batch(algo, d, offs, z, m, out, res) == 0
                assert out.tobytes() == srcs[i].tobytes()
                results[i] = (d, z)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (d, z), (ed, ez) in zip(results, expect, strict=True):
        assert (z == ez).all()
        for i in range(m):
            assert (d[i * STRIDE : i * STRIDE + z[i]] == ed[i * STRIDE : i * STRIDE + z[i]]).all()


def test_batch_releases_gil():
    n = 12000
    src = np.frombuffer(random.Random(5).randbytes(PAGE) * n, np.uint8)
    dst, sizes = np.zeros(n * STRIDE, np.uint8), np.zeros(n, np.int32)
    started = threading.Event()

    def work() -> None:
        started.set()
        for _ in range(3):
            kc.compress_batch("lzo", src, n, dst, sizes)

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    spins = 0
    while t.is_alive():
        spins += 1
    t.join()
    assert spins > 1000  # this thread kept running while the batch ran


# --------------------------------------------------------------------------- host kernel


def _kernel_skip_reason() -> str | None:
    if not Path("/sys/class/zram-control/hot_add").exists():
        return "no /sys/class/zram-control (zram module not loaded)"
    if os.geteuid() != 0:
        return "needs root to hot-add a zram device"
    return None


class ZramDevice:
    """A hot-added zram device (never zram0) that is reset and removed on close."""

    def __init__(self, algo: str, disksize: str = "64M") -> None:
        self.id = int(Path("/sys/class/zram-control/hot_add").read_text().strip())
        self.sys = Path(f"/sys/block/zram{self.id}")
        self.fd: int | None = None
        try:
            assert self.id != 0
            (self.sys / "comp_algorithm").write_text(algo)
            (self.sys / "disksize").write_text(disksize)
            self.fd = os.open(f"/dev/zram{self.id}", os.O_RDWR | os.O_DIRECT)
        except BaseException:
            self.close()
            raise
        self.buf = mmap.mmap(-1, PAGE)  # page-aligned, as O_DIRECT needs

    def mm_stat(self) -> list[int]:
        return [int(x) for x in (self.sys / "mm_stat").read_text().split()]

    def page_sizes(self, pages_: list[bytes]) -> list[tuple[int, int, int]]:
        """(compr_data_size delta, huge_pages delta, same_pages delta) per page."""
        out = []
        prev = self.mm_stat()
        for i, p in enumerate(pages_):
            self.buf[:] = p
            os.pwrite(self.fd, self.buf, i * PAGE)
            cur = self.mm_stat()
            out.append((cur[1] - prev[1], cur[7] - prev[7], cur[5] - prev[5]))
            prev = cur
        return out

    def close(self) -> None:
        try:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            (self.sys / "reset").write_text("1")
        finally:
            Path("/sys/class/zram-control/hot_remove").write_text(str(self.id))

    def __enter__(self) -> ZramDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture(scope="module")
def kernel_pages() -> list[bytes]:
    reason = _kernel_skip_reason()
    if reason:
        pytest.skip(reason)
    # Fixed by default so a failure reproduces; PYZRAM_KCODEC_SEED=N explores other pages.
    seed = int(os.environ.get("PYZRAM_KCODEC_SEED", "20261125"))
    return seed, synthetic_pages(seed, n_each=30) + live_child_pages(seed, 1500)


@pytest.mark.kernel
@pytest.mark.parametrize("algo", ALGOS)
def test_sizes_match_host_kernel(algo, kernel_pages):
    seed, kernel_pages = kernel_pages
    with ZramDevice(algo) as dev:
        got = dev.page_sizes(kernel_pages)
    checked = 0
    mismatches = []
    for i, (p, (comp, huge, same)) in enumerate(zip(kernel_pages, got, strict=True)):
        assert bool(same) == same_filled(p)
        if same:
            assert comp == 0
            continue
        ours = len(kc.compress(algo, p))
        if huge:
            assert comp == PAGE
            if ours < HUGE_THRESHOLD:
                mismatches.append((i, "huge", ours))
            continue
        checked += 1
        if ours != comp:
            mismatches.append((i, comp, ours))
    assert checked > 1000
    assert not mismatches, (
        f"seed {seed}: {len(mismatches)} of {checked} pages differ: {mismatches[:10]}"
    )


@pytest.mark.parametrize("algo", (*ALGOS, "lz4hc"))
def test_per_page_calls_into_buffers(algo):
    """``compress_into`` (a page into a stream buffer) and ``decompress_into`` (an
    object read in place out of a larger buffer, into a page) give what
    ``compress`` and ``decompress`` give; a malformed object is -EINVAL and
    leaves the page zeroed; bad buffers are a ValueError."""
    idx = kc.ALGORITHMS.index(algo)
    page = (b"per-page calls " * 300)[:PAGE]
    dst = bytearray(STRIDE)
    n = kc.compress_into(algo, page, dst)
    assert kc.compress_into(idx, page, dst) == n
    assert bytes(dst[:n]) == kc.compress(algo, page)
    arena = bytearray(100) + dst[:n] + bytearray(50)
    out = bytearray(PAGE)
    assert kc.decompress_into(idx, arena, 100, n, out) == 0 and out == page
    assert kc.decompress_into(algo, arena, 100, n - 7, out) == -errno.EINVAL
    assert out == bytes(PAGE)
    with pytest.raises(ValueError):
        kc.decompress_into(idx, arena, len(arena) - 3, n, out)  # runs past the source
    with pytest.raises(ValueError):
        kc.decompress_into(idx, arena, 100, n, bytearray(PAGE - 1))
    with pytest.raises(ValueError):
        kc.compress_into(idx, page, bytearray(100))
    with pytest.raises(ValueError):
        kc.compress_into(idx, page[:100], dst)


@pytest.mark.parametrize("algo", (*ALGOS, "lz4hc"))
def test_zram_backends_reach_the_per_page_calls_with_their_answers(algo):
    """zram's backends on these codecs call ``compress_into``/``decompress_into``
    through the module's C entry points when compiled (the ``_C_API`` capsule,
    kcodec_capi.h) and through the Python functions when not: the same bytes,
    the same -EINVAL and the same errors, for a bytearray page (whose bytes
    the entry points take without the buffer protocol) and any other buffer."""
    from pyzram.zram.zcomp import Zcomp, ZcompParams

    assert type(kc._C_API).__name__ == "PyCapsule"
    backend = Zcomp(algo, ZcompParams()).backend
    idx = kc.ALGORITHMS.index(algo)
    page = (b"through zram's backend " * 200)[:PAGE]
    for src in (page, bytearray(page), memoryview(bytearray(page))):
        dst = bytearray(STRIDE)
        n = backend.compress_into(src, dst)
        assert n == kc.compress_into(idx, page, bytearray(STRIDE))
        assert bytes(dst[:n]) == kc.compress(algo, page)
    arena = memoryview(bytearray(100) + dst[:n] + bytearray(50))
    for out in (bytearray(PAGE), memoryview(bytearray(PAGE))):
        assert backend.decompress_into(arena, 100, n, out) == 0 and out == page
        assert backend.decompress_into(arena, 100, n - 7, out) == -errno.EINVAL
        assert out == bytes(PAGE)
    with pytest.raises(ValueError):
        backend.decompress_into(arena, len(arena) - 3, n, bytearray(PAGE))
    with pytest.raises(ValueError):
        backend.decompress_into(arena, -1, n, bytearray(PAGE))
    with pytest.raises(ValueError):
        backend.decompress_into(arena, 100, n, bytearray(PAGE + 1))
    with pytest.raises((TypeError, BufferError)):
        backend.decompress_into(arena, 100, n, bytes(PAGE))
    with pytest.raises(ValueError):
        backend.compress_into(page, bytearray(100))
    with pytest.raises(ValueError):
        backend.compress_into(bytearray(page[:100]), bytearray(STRIDE))
    with pytest.raises((TypeError, BufferError)):
        backend.compress_into(page, bytes(STRIDE))
    # A memoryview is read where it lies when it can be; a released, strided or
    # (for what the call writes) read-only one is refused as the buffer protocol
    # refuses it.
    out = bytearray(PAGE)
    assert backend.decompress_into(memoryview(bytes(arena)), 100, n, out) == 0 and out == page
    with pytest.raises((TypeError, BufferError)):
        backend.decompress_into(arena, 100, n, memoryview(bytes(PAGE)))
    with pytest.raises((ValueError, BufferError)):
        backend.decompress_into(arena, 100, n, memoryview(bytearray(2 * PAGE))[::2])
    base = memoryview(bytearray(arena))
    for gone in (base[:], base):  # released while another view lives, then the last
        gone.release()
        with pytest.raises(ValueError):
            backend.decompress_into(gone, 100, n, bytearray(PAGE))
    with pytest.raises((TypeError, BufferError)):
        backend.compress_into(page, memoryview(bytes(STRIDE)))


# --------------------------------------------------------------------------- dictionaries

DICT_ALGOS = ("lz4", "lz4hc")


@pytest.fixture(scope="module")
def dict_source() -> bytes:
    """About 300 KiB of corpus-like content to cut dictionaries from."""
    return b"".join(synthetic_pages(77))


#: Dictionary sizes: below lz4's 8-byte load unit, small, a page, about 30 KiB,
#: just below, at and above the 64 KiB that LZ4_loadDict and LZ4_loadDictHC load.
DICT_SIZES = (1, 3, 7, 8, 100, 4096, 30000, 65535, 65536, 70000, 200000)


def _dict(source: bytes, size: int) -> bytes:
    return source[len(source) - size :]


@pytest.mark.parametrize("size", DICT_SIZES)
@pytest.mark.parametrize("algo", DICT_ALGOS)
def test_dictionary_round_trip(algo, size, dict_source, corpus):
    """Every page back with the same dictionary, through the bytes calls and the
    per-page buffer calls; the dictionary is a plain buffer (bytes, bytearray,
    memoryview)."""
    d = _dict(dict_source, size)
    arg = 3 if algo == "lz4hc" else 1
    dst, out = bytearray(STRIDE), bytearray(PAGE)
    for p in corpus[::3]:
        c = kc.compress(algo, p, arg, dict=d)
        assert kc.decompress(algo, c, dict=d) == p
        assert kc.decompress(algo, c, PAGE, bytearray(d)) == p
        n = kc.compress_into(algo, p, dst, arg, memoryview(d))
        assert bytes(dst[:n]) == c
        assert kc.decompress_into(algo, dst, 0, n, out, d) == 0 and out == p


@pytest.mark.parametrize("algo", DICT_ALGOS)
def test_dictionary_shared_with_the_page(algo):
    """Matches into the dictionary: a page that is the dictionary, and one whose
    matches run from the dictionary's last bytes on into the page's first ones
    (LZ4_count on against the source, past the dictionary's end)."""
    r = random.Random(5)
    d = r.randbytes(8192)
    c = kc.compress(algo, d[:PAGE], dict=d)
    assert len(c) < 40 and kc.decompress(algo, c, dict=d) == d[:PAGE]
    tail = d[-1000:]
    page = (tail * 5)[:3000] + r.randbytes(PAGE - 3000)
    c = kc.compress(algo, page, dict=d)
    assert len(c) < PAGE - 3000 + 60, len(c)
    assert kc.decompress(algo, c, dict=d) == page
    # the first sequence copies from the dictionary: without it, or with another, the
    # stream is refused or decodes to something else
    with pytest.raises(OSError) as e:
        kc.decompress(algo, c)
    assert e.value.errno == errno.EINVAL
    assert kc.decompress(algo, c, dict=r.randbytes(8192)) != page


@pytest.mark.parametrize("algo", DICT_ALGOS)
def test_dictionary_loads_its_last_64k(algo, dict_source, corpus):
    """LZ4_loadDict and LZ4_loadDictHC load the last 64 KiB of a larger dictionary;
    a dictionary lz4 cannot load (under 8 bytes) or lz4hc cannot link (under 4)
    compresses as if there were none loaded."""
    big = _dict(dict_source, 200000)
    for p in corpus[::7]:
        assert kc.compress(algo, p, dict=big) == kc.compress(algo, p, dict=big[-65536:])
    if algo == "lz4hc":
        for p in corpus[::7]:
            assert kc.compress(algo, p, dict=b"abc") == kc.compress(algo, p)
    else:  # an empty stream: LZ4_compress_fast_continue's byU32 table, no dictionary
        for p in corpus[::7]:
            c = kc.compress(algo, p, dict=b"abcdefg")
            assert kc.decompress(algo, c) == p == kc.decompress(algo, c, dict=b"abcdefg")


@pytest.mark.parametrize("algo", DICT_ALGOS)
def test_dictionary_format_is_lz4s(algo, dict_source, corpus):
    """python-lz4 (liblz4's LZ4_decompress_safe_usingDict) decodes our output with
    the same dictionary, and our decoder liblz4's dictionary output."""
    mode = {"lz4": "default", "lz4hc": "high_compression"}[algo]
    for size in (100, 30000, 65536, 200000):
        d = _dict(dict_source, size)
        for p in corpus[::5]:
            ours = kc.compress(algo, p, dict=d)
            assert lz4.block.decompress(ours, uncompressed_size=PAGE, dict=d) == p
            theirs = lz4.block.compress(p, mode=mode, store_size=False, dict=d)
            assert kc.decompress("lz4", theirs, dict=d) == p


def test_dictionary_decoder_offsets():
    """LZ4_decompress_safe_continue with a dictionary: an offset may reach back into
    the dictionary as far as its start, no further below 64 KiB of dictionary (an
    offset of 16 bits reaches no further in a larger one); a match that starts in the
    dictionary continues into the output at the same distance."""
    lits = b"0123456789abcdef"

    def stream(off: int, ml_code: int = 0) -> bytes:
        # one match (4 + ml_code bytes) at output position 0, then 16 literals
        return bytes([ml_code]) + off.to_bytes(2, "little") + bytes([0xF0, 1]) + lits

    d = bytes(range(100))
    assert kc.decompress("lz4", stream(100), 20, dict=d) == d[:4] + lits
    # 3 bytes from the dictionary, the 4th at distance 3: the output's first byte
    assert kc.decompress("lz4", stream(3), 20, dict=d) == d[97:] + d[97:98] + lits
    # 2 bytes from the dictionary, then 4 more at distance 2: the copy repeats them
    assert kc.decompress("lz4", stream(2, 2), 22, dict=d) == d[98:] * 3 + lits
    for bad in (101, 65535):
        with pytest.raises(OSError) as e:
            kc.decompress("lz4", stream(bad), 20, dict=d)
        assert e.value.errno == errno.EINVAL
    # no dictionary: any offset at output position 0 is refused
    with pytest.raises(OSError):
        kc.decompress("lz4", stream(1), 20)
    big = bytes(range(256)) * 300  # 76800 bytes: the whole of it is the dictionary
    assert kc.decompress("lz4", stream(65535), 20, dict=big) == big[-65535:][:4] + lits


@pytest.mark.parametrize("algo", DICT_ALGOS)
def test_dictionary_corrupt_input_is_einval(algo, dict_source, corpus):
    """Truncated and mutated objects with a dictionary: OSError(EINVAL) from
    decompress (or less than a page), -EINVAL and a zeroed page from
    decompress_into (not one page: zram's failed read), never a crash."""
    r = random.Random(11)
    d = _dict(dict_source, 8192)
    out = bytearray(PAGE)
    refused = 0
    for p in corpus[::4]:
        c = kc.compress(algo, p, dict=d)
        for cut in (0, 1, len(c) // 2, len(c) - 1):
            try:  # refused, or a shorter output (the kernel's decoder allows that)
                assert len(kc.decompress(algo, c[:cut], dict=d)) < PAGE
            except OSError as e:
                assert e.errno == errno.EINVAL
                refused += 1
            out[:] = b"\xff" * PAGE
            assert kc.decompress_into(algo, c, 0, cut, out, d) == -errno.EINVAL
            assert out == bytes(PAGE)
        for _ in range(5):
            m = bytearray(c)
            m[r.randrange(len(m))] = r.getrandbits(8)
            try:
                kc.decompress(algo, bytes(m), dict=d)
            except OSError as e:
                assert e.errno == errno.EINVAL
                refused += 1
    assert refused > 0


def test_dictionary_arguments():
    """None and an empty buffer are no dictionary (zram: dict_sz 0); lzo and lzo-rle
    take none; a dictionary may not be the buffer written into."""
    p = (b"dictionary arguments " * 200)[:PAGE]
    for algo in DICT_ALGOS:
        c = kc.compress(algo, p)
        assert kc.compress(algo, p, dict=None) == kc.compress(algo, p, dict=b"") == c
        assert kc.decompress(algo, c, dict=b"") == p
    for algo in ("lzo", "lzo-rle"):
        assert kc.compress(algo, p, dict=b"") == kc.compress(algo, p)
        with pytest.raises(ValueError):
            kc.compress(algo, p, dict=b"abcdefgh")
        with pytest.raises(ValueError):
            kc.decompress(algo, kc.compress(algo, p), dict=b"abcdefgh")
        with pytest.raises(ValueError):
            kc.compress_into(algo, p, bytearray(STRIDE), 1, b"abcdefgh")
    with pytest.raises(TypeError):
        kc.compress("lz4", p, dict="text")
    dst = bytearray(STRIDE)
    with pytest.raises(ValueError):
        kc.compress_into("lz4", p, dst, 1, memoryview(dst)[:100])
    n = kc.compress_into("lz4", p, dst, 1, b"x" * 100)
    page = bytearray(PAGE)
    with pytest.raises(ValueError):
        kc.decompress_into("lz4", dst, 0, n, page, memoryview(page)[:100])
    with pytest.raises(TypeError):
        kc.decompress_into("lz4", dst, 0, n, page, b"", 1)


# Digest of the outputs with dictionaries (content of 8192, 30000, 65535, 65536 and
# 200000 bytes) for the synthetic corpus; the bytes equal those of Linux 6.18's
# lib/lz4 called as backend_lz4.c and backend_lz4hc.c call it (LZ4_loadDict(HC) on
# a zeroed stream, then the *_continue call), built apart from pyzram for the check.
DICT_GOLDEN = {
    "lz4": "9e499112158df134f9f2bef3e4f06edd9665880235101743cbc3ba9ee9c646e9",
    "lz4hc": "7f4ac0ac14dcfe6a528a5a35d83aba1f446821e692bcd57c67cc152f012482a4",
}


@pytest.mark.parametrize("algo", DICT_ALGOS)
def test_dictionary_golden_digest(algo, dict_source):
    h = hashlib.sha256()
    pages_ = synthetic_pages(1234)
    for size in (8192, 30000, 65535, 65536, 200000):
        d = _dict(dict_source, size)
        for arg in (1, 4, 16) if algo == "lz4hc" else (1, 3):
            for p in pages_:
                h.update(kc.compress(algo, p, arg, dict=d))
    assert h.hexdigest() == DICT_GOLDEN[algo]
