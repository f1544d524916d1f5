"""Runs pyzram._kcodec's C code under AddressSanitizer and UBSan.

Builds src/pyzram/_kcodec/kcodec.c with ``gcc -fsanitize=address,undefined``
into a temporary directory as a stand-alone extension module, then runs a
bounded fuzz / round-trip script in a child Python with libasan preloaded.
Any sanitizer report or a non-zero exit fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.asan

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "pyzram" / "_kcodec" / "kcodec.c"
LZ4HC_SOURCE = SOURCE.with_name("lz4hc.c")

FUZZ = textwrap.dedent(
    """
    import errno, random, sys, time
    import numpy as np
    import _kcodec as kc

    PAGE, STRIDE = 4096, 8192
    budget = float(sys.argv[1])
    r = random.Random(int(sys.argv[2]))
    end = time.monotonic() + budget

    def page():
        b = bytearray()
        while len(b) < PAGE:
            k = r.randrange(5)
            n = r.randint(1, 1200)
            if k == 0:
                b += bytes(n)
            elif k == 1:
                b += r.randbytes(n)
            elif k == 2:
                pat = r.randbytes(r.randint(1, 9))
                b += (pat * (n // len(pat) + 1))[:n]
            elif k == 3 and b:
                s = r.randrange(len(b))
                b += b[s:s + n]
            else:
                b += bytes([r.getrandbits(8)]) * n
        return bytes(b[:PAGE])

    def mutate(c):
        # a stream with 1 to 4 bytes changed, runs cut out or random runs put in
        m = bytearray(c)
        for _ in range(r.randint(1, 4)):
            i = r.randrange(len(m))
            op = r.randrange(3)
            if op == 0:
                m[i] = r.getrandbits(8)
            elif op == 1:
                del m[i:i + r.randint(1, 16)]
            else:
                m[i:i] = r.randbytes(r.randint(1, 16))
            if not m:
                break
        return bytes(m)

    def decode(algo, data, out_len):
        try:
            out = kc.decompress(algo, data, out_len)
        except OSError as e:
            assert e.errno == errno.EINVAL
            return None
        assert len(out) <= out_len
        return out

    rounds = 0
    while time.monotonic() < end:
        rounds += 1
        for algo in kc.ALGORITHMS:
            p = page()
            arg = 1
            if algo == "lz4":
                arg = r.choice([1, 1, 2, 17, 1000])
            elif algo == "lz4hc":
                arg = r.choice([1, 2, 4, 9, 12, 16, 17])
            c = kc.compress(algo, p, arg)
            assert kc.decompress(algo, c) == p
            # odd lengths, including the multi-block LZO path (> 48 KiB)
            n = r.choice([0, 1, 12, 13, 20, 21, r.randint(0, 65536)])
            data = (p * 17)[:n]
            assert kc.decompress(algo, kc.compress(algo, data), n) == data
            # mutated, truncated and random streams into tight buffers
            for _ in range(20):
                m = mutate(c)
                decode(algo, m, r.choice([PAGE, PAGE - 1, 0, 1, 7, 100, 5000]))
            decode(algo, r.randbytes(r.randint(0, 64)), r.choice([0, 1, 16, PAGE]))
            decode(algo, b"\\x11\\x01" + r.randbytes(r.randint(0, 64)), PAGE)
            decode(algo, c[: r.randrange(len(c))], PAGE)
        # short objects (periodic: the small-offset copies) into buffers of
        # exactly their size and a little more or less: the wide copies must
        # switch to exact ones before the end of the buffer
        for algo in kc.ALGORITHMS:
            n = r.randint(0, 300)
            base = r.randbytes(r.randint(1, 12))
            data = (base * (n // len(base) + 1))[:n]
            if n > 8 and r.random() < 0.5:
                data = data[:n // 2] + r.randbytes(n - n // 2)
            c = kc.compress(algo, data)
            assert kc.decompress(algo, c, n) == data
            for cap in (max(0, n - 1), n + r.randint(1, 40)):
                decode(algo, c, cap)
            for _ in range(4):
                m = bytearray(c)
                m[r.randrange(len(m))] = r.getrandbits(8)
                decode(algo, bytes(m), n)
                decode(algo, c[: r.randrange(len(c))], n)
        # batches over exact-size buffers
        for algo in kc.ALGORITHMS:
            k = r.randint(1, 8)
            src = np.frombuffer(b"".join(page() for _ in range(k)), np.uint8)
            dst = np.zeros(k * STRIDE, np.uint8)
            sizes = np.zeros(k, np.int32)
            kc.compress_batch(algo, src, k, dst, sizes)
            blobs = [dst[i * STRIDE:i * STRIDE + sizes[i]].tobytes() for i in range(k)]
            touched = set()
            for i in range(k):
                if r.random() < 0.5:
                    touched.add(i)
                    b = bytearray(blobs[i])
                    b[r.randrange(len(b))] ^= 1 << r.randrange(8)
                    blobs[i] = bytes(b[: r.randint(1, len(b))])
            packed = b"".join(blobs)
            offs = np.cumsum([0] + [len(b) for b in blobs[:-1]]).astype(np.int64)
            lens = np.array([len(b) for b in blobs], np.int32)
            out = np.zeros(k * PAGE, np.uint8)
            res = np.zeros(k, np.int32)
            fails = kc.decompress_batch(algo, packed, offs, lens, k, out, res)
            assert fails == int((res != 0).sum())
            bufs = [bytearray(PAGE) for _ in range(k)]  # the same into page buffers
            res2 = np.zeros(k, np.int32)
            assert kc.decompress_batch(algo, packed, offs, lens, k, bufs, res2) == fails
            assert (res2 == res).all() and b"".join(bufs) == out.tobytes()
            for i in range(k):
                if i not in touched:
                    assert res[i] == 0
                    got = out[i * PAGE:(i + 1) * PAGE].tobytes()
                    assert got == src[i * PAGE:(i + 1) * PAGE].tobytes()
                elif res[i] != 0:
                    assert not out[i * PAGE:(i + 1) * PAGE].any()
        # lz4 and lz4hc with dictionaries of every size class: round trips, and
        # mutated, truncated and random streams whose offsets reach into them
        for algo in ("lz4", "lz4hc"):
            size = r.choice([1, 3, 7, 8, 9, 100, 4096, 65535, 65536, 65537, 100000])
            d = (page() * (size // PAGE + 1))[:size]
            if r.random() < 0.5:
                d = r.randbytes(size)
            p = page()
            if r.random() < 0.3:  # the page shares the dictionary's content
                k = r.randint(1, min(size, PAGE))
                p = (d[-k:] * (PAGE // k + 1))[:PAGE]
            arg = r.choice([1, 2, 17]) if algo == "lz4" else r.choice([1, 4, 9, 16])
            c = kc.compress(algo, p, arg, dict=d)
            assert kc.decompress(algo, c, dict=d) == p
            n = r.choice([0, 1, 12, 13, 20, r.randint(0, 65536)])
            data = (p * 17)[:n]
            assert kc.decompress(algo, kc.compress(algo, data, dict=d), n, dict=d) == data
            buf, out = bytearray(STRIDE), bytearray(PAGE)
            k = kc.compress_into(algo, p, buf, arg, d)
            assert kc.decompress_into(algo, buf, 0, k, out, d) == 0 and out == p
            for _ in range(10):
                m = mutate(c)
                cap = r.choice([PAGE, PAGE - 1, 0, 1, 7, 100, 5000])
                try:
                    assert len(kc.decompress(algo, m, cap, dict=d)) <= cap
                except OSError as e:
                    assert e.errno == errno.EINVAL
                kc.decompress_into(algo, m, 0, len(m), out, d)
            off = min(65535, r.choice([1, 7, 8, size, size + 1, 65535]))
            s = bytes([r.getrandbits(4)]) + off.to_bytes(2, "little") + r.randbytes(30)
            try:
                kc.decompress(algo, s, r.choice([20, 40, PAGE]), dict=d)
            except OSError as e:
                assert e.errno == errno.EINVAL
    print("rounds", rounds)
    """
)


def _libasan() -> str | None:
    if shutil.which("gcc") is None:
        return None
    try:
        path = subprocess.run(
            ["gcc", "-print-file-name=libasan.so"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="module")
def asan_module(tmp_path_factory) -> tuple[Path, str]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    libasan = _libasan()
    if libasan is None:
        pytest.skip("libasan.so not found (gcc -print-file-name=libasan.so)")
    out_dir = tmp_path_factory.mktemp("kcodec_asan")
    target = out_dir / ("_kcodec" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [
        "gcc",
        "-shared",
        "-fPIC",
        "-std=c11",
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=undefined",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{sysconfig.get_paths()['include']}",
        str(SOURCE),
        str(LZ4HC_SOURCE),
        "-o",
        str(target),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        if "cannot find" in proc.stderr and "asan" in proc.stderr:
            pytest.skip(f"sanitizer runtime missing: {proc.stderr.strip()[:200]}")
        pytest.fail(f"sanitized build failed:\n{proc.stderr}")
    return out_dir, libasan


def test_fuzz_under_asan(asan_module):
    out_dir, libasan = asan_module
    script = out_dir / "fuzz.py"
    script.write_text(FUZZ)
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        PYTHONMALLOC="malloc",  # let ASan see the bytes objects the codecs write into
        PYTHONPATH=str(out_dir),
    )
    proc = subprocess.run(
        [sys.executable, str(script), "15", "7"],
        cwd=out_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = proc.stdout + proc.stderr
    assert "AddressSanitizer" not in report, report[-6000:]
    assert "runtime error" not in report, report[-6000:]
    assert proc.returncode == 0, report[-6000:]
    assert "rounds" in proc.stdout
