"""lib/cmdline.c and lib/kstrtox.c models (the parsers behind every sysfs store) and
lib/string.c's memcpy, memset_l and memcmp and highmem.h's memcpy_to_page (every copy
into and out of a pool, every same-filled page's test and fill)."""

import errno

import pytest

from pyzram.lib.cmdline import memparse, next_arg, parse_args, sysfs_streq
from pyzram.lib.kstrtox import kstrtoint, kstrtou16, kstrtoul, kstrtoull
from pyzram.lib.string import memcmp, memcpy, memcpy_to_page, memset_l


@pytest.mark.parametrize(
    "text,value,end",
    [
        ("64M", 64 << 20, 3),
        ("64m\n", 64 << 20, 3),
        ("1G", 1 << 30, 2),
        ("0x10k", 16 << 10, 5),
        ("010", 8, 3),  # leading 0 is octal
        ("4096 junk", 4096, 4),
        ("K", 0, 1),  # a lone suffix counts as parsed
        ("abc", 0, 0),
        ("", 0, 0),
        ("16E", (16 << 60) & ((1 << 64) - 1), 3),  # wraps like u64
    ],
)
def test_memparse(text, value, end):
    assert memparse(text) == (value, end)


@pytest.mark.parametrize(
    "text,value",
    [("0", 0), ("1\n", 1), ("+7", 7), ("0x1f", 0x1F), ("18446744073709551615", 2**64 - 1)],
)
def test_kstrtoull_ok(text, value):
    assert kstrtoull(text, 0 if text.startswith("0x") else 10) == value


@pytest.mark.parametrize(
    "text,err",
    [
        ("", errno.EINVAL),
        ("1\n\n", errno.EINVAL),
        ("1 ", errno.EINVAL),
        ("-1", errno.EINVAL),
        ("abc", errno.EINVAL),
        ("18446744073709551616", errno.ERANGE),
    ],
)
def test_kstrtoull_errors(text, err):
    with pytest.raises(OSError) as e:
        kstrtoull(text, 10)
    assert e.value.errno == err


def test_narrow_parsers():
    assert kstrtou16("65535") == 65535
    with pytest.raises(OSError) as e:
        kstrtou16("65536")
    assert e.value.errno == errno.ERANGE
    assert kstrtoint("-5") == -5
    with pytest.raises(OSError) as e:
        kstrtoint("2147483648")
    assert e.value.errno == errno.ERANGE
    assert kstrtoul("0\n") == 0


def test_next_arg_and_quotes():
    assert parse_args('  algo=lz4   level="3" dict="/a b" bare') == [
        ("algo", "lz4"),
        ("level", "3"),
        ("dict", "/a b"),
        ("bare", None),
    ]
    assert parse_args("key=") == [("key", "")]
    assert next_arg('"quoted token" rest', 0)[:2] == ("quoted token", None)


def test_sysfs_streq():
    assert sysfs_streq("all\n", "all")
    assert not sysfs_streq("all\n\n", "all")
    assert not sysfs_streq("al", "all")


def test_memcpy_copies_inside_both_buffers_and_refuses_spans_past_them():
    src = bytes(range(200))
    dst = bytearray(100)
    memcpy(dst, 10, src, 150, 50)  # up to the source's last byte
    assert dst[10:60] == src[150:200] and dst[:10] == bytes(10) and dst[60:] == bytes(40)
    memcpy(dst, 100, src, 200, 0)  # nothing, at both ends
    memcpy(dst, 0, memoryview(src), 0, 100)  # to the destination's last byte
    assert dst == src[:100]
    memcpy(dst, 0, memoryview(src)[100:], 60, 40)  # from a view (a large folio's page)
    assert dst[:40] == src[160:200] and dst[40:] == src[40:100]
    before = bytes(dst)
    for args in (
        (dst, 51, src, 0, 50),  # one byte past the destination
        (dst, 0, src, 151, 50),  # one byte past the source
        (dst, -1, src, 0, 1),
        (dst, 0, src, -1, 1),
        (dst, 0, src, 0, -1),
    ):
        with pytest.raises(ValueError, match="memcpy of"):
            memcpy(*args)
    assert dst == before  # a refused copy writes nothing


def test_memcpy_to_page_copies_into_a_page_object_and_refuses_bad_spans():
    src = bytes(range(256)) * 2
    page = bytearray(64)
    memcpy_to_page(page, 8, src, 300, 40)
    assert page[8:48] == src[300:340] and page[:8] == bytes(8) and page[48:] == bytes(16)
    folio = bytearray(192)  # a large folio's memory: its second page is a view of it
    memcpy_to_page(memoryview(folio)[64:128], 0, src, 0, 64)
    assert folio[64:128] == src[:64] and folio[:64] == bytes(64) and folio[128:] == bytes(64)
    memcpy_to_page(page, 64, src, 512, 0)  # nothing, at both ends
    before = bytes(page)
    for args in ((page, 25, src, 0, 40), (page, 0, src, 473, 40), (page, -1, src, 0, 1)):
        with pytest.raises(ValueError, match="memcpy_to_page of"):
            memcpy_to_page(*args)
    with pytest.raises((TypeError, BufferError)):  # a read-only page
        memcpy_to_page(bytes(64), 0, src, 0, 8)
    assert page == before


@pytest.mark.parametrize("n", [0, 1, 3, 512])
def test_memset_l_fills_whole_words_little_endian(n):
    fill = 0x0807060504030201
    page = bytearray(b"\xee" * 4096)
    memset_l(page, fill, n)
    assert page[: 8 * n] == bytes(range(1, 9)) * n and page[8 * n :] == b"\xee" * (4096 - 8 * n)
    folio = bytearray(3 * 4096)  # a page of a large folio: a view of its memory
    memset_l(memoryview(folio)[4096:8192], fill, n)
    assert folio[4096 : 4096 + 8 * n] == bytes(range(1, 9)) * n
    assert folio[:4096] == bytes(4096) and folio[4096 + 8 * n :] == bytes(8192 - 8 * n)


def test_memset_l_refuses_words_past_the_page_and_bad_fills():
    page = bytearray(64)
    with pytest.raises(ValueError, match="memset_l of 72 bytes"):
        memset_l(page, 1, 9)
    for fill in (-1, 1 << 64):
        with pytest.raises(OverflowError):
            memset_l(page, fill, 1)
    with pytest.raises((TypeError, BufferError)):  # a read-only page
        memset_l(bytes(64), 1, 1)
    assert page == bytes(64)


def test_memcmp_orders_by_the_first_differing_byte_and_checks_spans():
    a = bytearray(b"abcdefgh" * 4)
    assert memcmp(a, 0, a, 8, 24) == 0  # a buffer against itself one word on
    assert memcmp(a, 0, memoryview(b"abcdefgh"), 0, 8) == 0
    assert memcmp(a, 0, b"abcdefgz", 0, 8) == -1 and memcmp(b"abcdefgz", 0, a, 0, 8) == 1
    assert memcmp(b"\x00\xff", 0, b"\x01\x00", 0, 2) == -1  # bytes compare unsigned
    folio = bytearray(3 * 64)
    assert memcmp(memoryview(folio)[64:128], 0, bytes(64), 0, 64) == 0
    assert memcmp(a, 32, a, 0, 0) == 0  # nothing, at the end
    for args in ((a, 1, a, 0, 32), (a, 0, a, -1, 1), (a, 0, b"ab", 0, 3)):
        with pytest.raises(ValueError, match="memcmp of"):
            memcmp(*args)
