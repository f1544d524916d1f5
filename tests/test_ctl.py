"""``pyzram.tools.commands.ctl``: zramctl's listing of model, saved and host devices."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess

import pytest

from pyzram import Zram
from pyzram.tools.commands import ctl
from pyzram.tools.commands.ctl import (
    ALL_COLUMNS,
    DEFAULT_COLUMNS,
    device_state,
    format_json,
    format_table,
    load_state,
    parse_columns,
    save_state,
    size_to_human,
)
from pyzram.zram.stat import MmStat

PAGE = 4096


def _state(name="zram1", disksize=64 << 20, algorithm="lz4", mountpoint="", **mm):
    fields = dict.fromkeys(MmStat._fields, 0)
    fields.update(mm)
    return {
        "name": name,
        "disksize": disksize,
        "comp_algorithm": f"lzo-rle [{algorithm}] zstd",
        "algorithm": algorithm,
        "mm_stat": fields,
        "io_stat": {"failed_reads": 0, "failed_writes": 0, "invalid_io": 0, "notify_free": 0},
        "max_comp_streams": None,
        "mountpoint": mountpoint,
    }


BUSY = _state(
    orig_data_size=1515520,
    compr_data_size=1228800,
    mem_used_total=1228800,
    mem_limit=0,
    mem_used_max=1232896,
    same_pages=70,
    pages_compacted=3,
    disksize=1536 << 20,
    mountpoint="[SWAP]",
)


@pytest.fixture
def dev():
    z = Zram()
    z.sysfs["comp_algorithm"] = "lz4"
    z.sysfs["disksize"] = "64M"
    z.pwrite(os.urandom(8 * PAGE) + bytes(4 * PAGE) + b"a" * (2 * PAGE), 0)
    return z


# -- size_to_human_string ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1023, "1023B"),
        (1024, "1K"),
        (4096, "4K"),
        (1536, "1.5K"),
        (1075, "1K"),  # .049 -> rounds down
        (1076, "1.1K"),  # .050 -> rounds up
        (1515520, "1.4M"),
        (1228800, "1.2M"),
        (64 << 20, "64M"),
        (1536 << 20, "1.5G"),
        ((1 << 20) - 1, "1024K"),  # rounding overflow bumps dec, never the unit
        (3 << 40, "3T"),
        (5 << 50, "5P"),
        (7 << 60, "7E"),
        (2**64 - 1, "16E"),
    ],
)
def test_size_to_human(n, text):
    assert size_to_human(n) == text


# -- states --------------------------------------------------------------------------------


def test_device_state_reads_sysfs(dev):
    st = device_state(dev)
    assert st["name"] == dev.disk_name
    assert st["disksize"] == 64 << 20
    assert st["algorithm"] == "lz4"
    assert "[lz4]" in st["comp_algorithm"]
    assert st["mm_stat"]["orig_data_size"] == 14 * PAGE
    assert st["mm_stat"]["same_pages"] == 6
    assert set(st["io_stat"]) == {"failed_reads", "failed_writes", "invalid_io", "notify_free"}
    assert st["max_comp_streams"] is None
    assert st["mountpoint"] == ""
    json.dumps(st)  # plain data
    assert device_state(dev, "zram7", "[SWAP]")["name"] == "zram7"
    assert device_state(dev, "zram7", "[SWAP]")["mountpoint"] == "[SWAP]"


def test_save_load_round_trip(tmp_path, dev):
    states = [device_state(dev), BUSY, _state("zram3", disksize=0)]
    p = tmp_path / "ctl.json"
    save_state(p, states)
    assert load_state(p) == states
    assert format_table(load_state(p)) == format_table(states)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"devices": []}',
        '{"pyzram-ctl": 1, "devices": {}}',
        '{"pyzram-ctl": 1, "devices": [1]}',
        '{"pyzram-ctl": 1, "devices": [{"name": "zram0"}]}',
        b"\xff\xfe",
    ],
)
def test_bad_state_file_is_einval(tmp_path, text):
    p = tmp_path / "bad.json"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    with pytest.raises(OSError) as e:
        load_state(p)
    assert e.value.errno == errno.EINVAL
    assert "not a pyzram ctl state file" in str(e.value)


def test_bad_state_entry_is_einval(tmp_path):
    bad = _state()
    bad["mm_stat"]["same_pages"] = -1
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"pyzram-ctl": 1, "devices": [bad]}))
    with pytest.raises(OSError) as e:
        load_state(p)
    assert e.value.errno == errno.EINVAL
    assert "same_pages" in str(e.value)


def test_missing_state_file_is_enoent(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "nope.json")


# -- columns -------------------------------------------------------------------------------


def test_parse_columns():
    assert parse_columns(None, False) == list(DEFAULT_COLUMNS)
    assert DEFAULT_COLUMNS == (
        "NAME",
        "ALGORITHM",
        "DISKSIZE",
        "DATA",
        "COMPR",
        "TOTAL",
        "STREAMS",
        "MOUNTPOINT",
    )
    assert parse_columns(None, True) == list(ALL_COLUMNS)
    assert parse_columns("name,zero-pages", False) == ["NAME", "ZERO-PAGES"]
    assert parse_columns("+MIGRATED,comp-ratio", False) == [
        *DEFAULT_COLUMNS,
        "MIGRATED",
        "COMP-RATIO",
    ]
    assert parse_columns("+NAME", True) == [*ALL_COLUMNS, "NAME"]
    assert parse_columns("DATA", True) == ["DATA"]


@pytest.mark.parametrize(("spec", "bad"), [("NAME,FOO", "FOO"), ("+bar", "bar"), ("NAME,", "")])
def test_unknown_column(spec, bad):
    with pytest.raises(ValueError, match=f"^unknown column: {bad}$"):
        parse_columns(spec, False)


def test_unknown_column_in_format():
    with pytest.raises(ValueError, match="unknown column: FOO"):
        format_table([BUSY], ["NAME", "FOO"])


def _one(col, state=BUSY, **kw):
    return format_table([state], [col], raw=True, noheadings=True, **kw).rstrip("\n")


@pytest.mark.parametrize(
    ("col", "human", "raw_bytes"),
    [
        ("NAME", "/dev/zram1", "/dev/zram1"),
        ("DISKSIZE", "1.5G", "1610612736"),
        ("DATA", "1.4M", "1515520"),
        ("COMPR", "1.2M", "1228800"),
        ("ALGORITHM", "lz4", "lz4"),
        ("STREAMS", "", ""),
        ("ZERO-PAGES", "70", "70"),
        ("TOTAL", "1.2M", "1228800"),
        ("MEM-LIMIT", "0B", "0"),
        ("MEM-USED", "1.2M", "1232896"),
        ("MIGRATED", "3B", "3"),
        ("COMP-RATIO", "1.2333", "1.2333"),
        ("MOUNTPOINT", "[SWAP]", "[SWAP]"),
    ],
)
def test_each_column(col, human, raw_bytes):
    assert _one(col) == human
    assert _one(col, bytes_=True) == raw_bytes


def test_columns_edge_values():
    assert _one("STREAMS", dict(BUSY, max_comp_streams="4")) == "4"
    assert _one("ALGORITHM", dict(BUSY, algorithm="zstd")) == "zstd"
    assert _one("NAME", dict(BUSY, name="/dev/zram9")) == "/dev/zram9"
    assert _one("COMP-RATIO", _state(orig_data_size=4096)) == "inf"
    assert _one("COMP-RATIO", _state()) == "-nan"


def test_comp_algorithm_bracket():
    assert ctl._bracketed("lzo-rle lzo [lz4] zstd \n") == "lz4"
    assert ctl._bracketed("lzo lz4") == ""


# -- table output --------------------------------------------------------------------------


def test_default_table_layout():
    out = format_table([BUSY])
    assert out == (
        "NAME       ALGORITHM DISKSIZE  DATA COMPR TOTAL STREAMS MOUNTPOINT\n"
        "/dev/zram1 lz4           1.5G  1.4M  1.2M  1.2M         [SWAP]\n"
    )


def test_table_bytes_and_alignment_over_rows():
    small = _state("zram0", disksize=4096, algorithm="zstd", orig_data_size=4096)
    out = format_table([small, BUSY], ["NAME", "ALGORITHM", "DISKSIZE", "DATA"], bytes_=True)
    assert out == (
        "NAME       ALGORITHM   DISKSIZE    DATA\n"
        "/dev/zram0 zstd            4096    4096\n"
        "/dev/zram1 lz4       1610612736 1515520\n"
    )


def test_all_columns_table_and_noheadings():
    out = format_table([BUSY], parse_columns(None, True))
    head, row = out.splitlines()
    assert head.split() == list(ALL_COLUMNS)
    # the last column (left-aligned MOUNTPOINT) is not padded
    assert len(row) == len(head) - len("MOUNTPOINT") + len("[SWAP]")
    assert format_table([BUSY], ALL_COLUMNS, noheadings=True) == row + "\n"


def test_raw_output():
    out = format_table([BUSY], raw=True)
    assert out == (
        "NAME ALGORITHM DISKSIZE DATA COMPR TOTAL STREAMS MOUNTPOINT\n"
        "/dev/zram1 lz4 1.5G 1.4M 1.2M 1.2M  [SWAP]\n"
    )
    assert format_table([BUSY], raw=True, noheadings=True) == out.splitlines(True)[1]
    spaced = dict(BUSY, mountpoint="/mnt/my dir\\x")
    assert _one("MOUNTPOINT", spaced) == "/mnt/my\\x20dir\\x5cx"


def test_zero_disksize_devices_omitted():
    idle = _state("zram0", disksize=0)
    assert format_table([idle, BUSY], raw=True, noheadings=True).startswith("/dev/zram1 ")
    assert format_table([idle], noheadings=True) == ""
    assert format_table([idle]) == ""  # zramctl prints no header for no device
    assert format_table([], raw=True) == ""
    assert json.loads(format_json([idle, BUSY]))["zram"][0]["name"] == "/dev/zram1"
    assert json.loads(format_json([idle])) == {"zram": []}


def test_model_device_table(dev):
    out = format_table([device_state(dev)], ["NAME", "DATA", "ZERO-PAGES"], raw=True)
    assert out == f"NAME DATA ZERO-PAGES\n/dev/{dev.disk_name} 56K 6\n"


# -- json ----------------------------------------------------------------------------------


def test_json():
    doc = json.loads(format_json([BUSY]))
    assert doc == {
        "zram": [
            {
                "name": "/dev/zram1",
                "algorithm": "lz4",
                "disksize": "1.5G",
                "data": "1.4M",
                "compr": "1.2M",
                "total": "1.2M",
                "streams": None,
                "mountpoint": "[SWAP]",
            }
        ]
    }
    doc = json.loads(format_json([BUSY], ALL_COLUMNS, bytes_=True))
    (row,) = doc["zram"]
    assert list(row) == [c.lower() for c in ALL_COLUMNS]
    assert row["disksize"] == 1536 << 20
    assert row["mem-used"] == 1232896
    assert row["migrated"] == 3
    assert row["zero-pages"] == 70
    assert row["comp-ratio"] == 1.2333
    assert json.loads(format_json([_state()], ["COMP-RATIO"]))["zram"][0]["comp-ratio"] is None


# -- the host's zramctl ----------------------------------------------------------------------


def _kernel_reason() -> str | None:
    from pyzram.host.kernel_zram import unavailable_reason

    if shutil.which("zramctl") is None:
        return "zramctl not installed (apt-get install util-linux)"
    return unavailable_reason()


@pytest.mark.kernel
def test_matches_host_zramctl():
    reason = _kernel_reason()
    if reason:
        pytest.skip(reason)
    from pyzram.host.kernel_zram import kernel_zram

    cols = ["NAME", "DISKSIZE", "DATA", "COMPR", "ALGORITHM", "ZERO-PAGES"]
    cols += ["TOTAL", "MEM-LIMIT", "MEM-USED", "MIGRATED"]
    with kernel_zram("lz4", "1536M") as k:
        data = os.urandom(300 * PAGE) + bytes(20 * PAGE) + b"a" * (50 * PAGE)
        k.pwrite(data, 0)
        dev = str(k.dev_path)
        states = [ctl.host_device_state(dev)]
        assert states[0]["mm_stat"] == k.mm_stat()._asdict()
        for opts, kw in [
            (["--bytes", "--raw"], dict(bytes_=True, raw=True)),
            ([], {}),
            (["--bytes"], dict(bytes_=True)),
            (["--raw", "--noheadings"], dict(raw=True, noheadings=True)),
        ]:
            for columns in (cols, None):
                args = ["zramctl", *opts, *(["--output", ",".join(columns)] if columns else [])]
                real = subprocess.run(
                    [*args, dev], capture_output=True, text=True, check=True
                ).stdout
                assert format_table(states, columns, **kw) == real, args
