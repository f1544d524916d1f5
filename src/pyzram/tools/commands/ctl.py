"""``pyzram ctl``: zramctl's status table, for model devices and saved snapshots.

Follows util-linux ``sys-utils/zramctl.c`` (status mode) and its libsmartcols
output:

* ``NAME`` is ``/dev/zramN``; sizes (``DISKSIZE DATA COMPR TOTAL MEM-LIMIT
  MEM-USED MIGRATED``) are printed with :func:`size_to_human` unless
  ``--bytes``, in which case the sysfs number is printed as is.  ``MIGRATED``
  (``pages_compacted``, a page count) goes through the same size formatting, as
  zramctl's ``get_mm_stat(z, MM_NUM_MIGRATED, inbytes)`` does; ``ZERO-PAGES``
  (``same_pages``) is always the raw number.
* ``ALGORITHM`` is the bracketed entry of ``comp_algorithm``; ``STREAMS`` is
  ``max_comp_streams`` and so empty on 6.18, which no longer has that file.
* ``COMP-RATIO`` is ``DATA / TOTAL`` printed ``"%.4f"``; glibc prints the
  C division's ``inf`` (TOTAL 0, DATA > 0) and ``-nan`` (both 0) as such.
* Table output: one space between columns, every cell padded to the column's
  width (at least the header's, even with ``noheadings``, and zramctl's width
  hint, so ``DATA`` is at least 5 wide), size columns right-aligned, the last
  column not padded when left-aligned.  Raw output:
  cells joined by one space, blanks, backslashes and control characters
  escaped ``\\xNN`` (libsmartcols' ``fputs_nonblank``).
* Devices with ``disksize`` 0 are not listed.

A *state* is a plain JSON-able dict (see :func:`device_state`), so listings can
be saved with :func:`save_state` and printed later with :func:`load_state`.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pyzram.tools.common import JsonOpt, UsageError
from pyzram.zram.stat import IoStat, MmStat, parse_io_stat, parse_mm_stat
from pyzram.zram.zram_drv import Zram

__all__ = [
    "ALL_COLUMNS",
    "DEFAULT_COLUMNS",
    "device_state",
    "format_json",
    "format_table",
    "host_device_state",
    "load_state",
    "parse_columns",
    "save_state",
    "size_to_human",
]

#: zramctl's column order (``infos[]``), which ``--output-all`` uses.
ALL_COLUMNS: tuple[str, ...] = (
    "NAME",
    "DISKSIZE",
    "DATA",
    "COMPR",
    "ALGORITHM",
    "STREAMS",
    "ZERO-PAGES",
    "TOTAL",
    "MEM-LIMIT",
    "MEM-USED",
    "MIGRATED",
    "COMP-RATIO",
    "MOUNTPOINT",
)

DEFAULT_COLUMNS: tuple[str, ...] = (
    "NAME",
    "ALGORITHM",
    "DISKSIZE",
    "DATA",
    "COMPR",
    "TOTAL",
    "STREAMS",
    "MOUNTPOINT",
)

#: Columns printed as sizes, and the state field each one shows.
_SIZE_COLUMNS: dict[str, str] = {
    "DATA": "orig_data_size",
    "COMPR": "compr_data_size",
    "TOTAL": "mem_used_total",
    "MEM-LIMIT": "mem_limit",
    "MEM-USED": "mem_used_max",
    "MIGRATED": "pages_compacted",
}

#: Columns that libsmartcols left-aligns (zramctl gives the rest SCOLS_FL_RIGHT).
_LEFT_COLUMNS = frozenset({"NAME", "ALGORITHM", "MOUNTPOINT"})

#: zramctl's whole-number width hints (``infos[].whint``): libsmartcols never
#: makes such a column narrower (only ``DATA``'s 5 exceeds its header's length).
_WIDTH_HINTS: dict[str, int] = {
    "DISKSIZE": 5,
    "DATA": 5,
    "COMPR": 5,
    "ALGORITHM": 3,
    "STREAMS": 3,
    "ZERO-PAGES": 3,
    "TOTAL": 5,
    "MEM-LIMIT": 5,
    "MEM-USED": 5,
    "MIGRATED": 5,
    "COMP-RATIO": 5,
}

STATE_VERSION = 1
SYS_BLOCK = Path("/sys/block")


# -- sizes --------------------------------------------------------------------------


def size_to_human(nbytes: int) -> str:
    """util-linux ``size_to_human_string(SIZE_SUFFIX_1LETTER, bytes)`` (lib/strutils.c).

    The unit is the largest power of 1024 (B K M G T P E) not above the value;
    the remainder is taken to three decimals (truncated), rounded half-up to one
    decimal, and printed only if non-zero: ``0B``, ``4K``, ``1.5G``, ``1.4M``.
    Rounding may give ``1024K`` (``dec`` is incremented, never re-scaled), as
    in C.
    """
    if nbytes < 0:
        raise ValueError(f"negative size: {nbytes}")
    exp = 0
    for shift in range(10, 70, 10):  # get_exp(): KiB..EiB
        if nbytes < 1 << shift:
            break
        exp = shift
    suffix = "BKMGTPE"[exp // 10]
    dec, frac = divmod(nbytes, 1 << exp) if exp else (nbytes, 0)
    if frac:
        if frac >= (2**64 - 1) // 1000:  # the C code's overflow-avoiding branch
            frac = ((frac // 1024) * 1000) // (1 << (exp - 10))
        else:
            frac = (frac * 1000) // (1 << exp)
        frac = ((frac + 50) // 100) * 10
        if frac == 100:
            dec += 1
            frac = 0
    if frac:
        return f"{dec}.{frac // 10}{suffix}"
    return f"{dec}{suffix}"


# -- states -------------------------------------------------------------------------


def _bracketed(comp_algorithm: str) -> str:
    """The selected algorithm: text between the last ``[`` and ``]`` (zramctl's strrchr)."""
    lbr, rbr = comp_algorithm.rfind("["), comp_algorithm.rfind("]")
    if lbr < 0 or rbr - lbr <= 1:
        return ""
    return comp_algorithm[lbr + 1 : rbr]


def _make_state(
    name: str,
    disksize: int,
    comp_algorithm: str,
    mm: MmStat,
    io: IoStat,
    streams: str | None,
    mountpoint: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "disksize": disksize,
        "comp_algorithm": comp_algorithm.strip(),
        "algorithm": _bracketed(comp_algorithm),
        "mm_stat": mm._asdict(),
        "io_stat": io._asdict(),
        "max_comp_streams": streams,
        "mountpoint": mountpoint,
    }


def device_state(zram: Zram, name: str | None = None, mountpoint: str = "") -> dict[str, Any]:
    """A JSON-able snapshot of a model device, read from its sysfs text.

    Keys: ``name`` (default ``zram.disk_name``), ``disksize`` (int),
    ``comp_algorithm`` (the file's text, stripped), ``algorithm`` (its bracketed
    entry), ``mm_stat`` and ``io_stat`` (dicts of
    :class:`~pyzram.zram.stat.MmStat` / :class:`~pyzram.zram.stat.IoStat`
    fields), ``max_comp_streams`` (``None``: gone on 6.18) and ``mountpoint``
    (``"[SWAP]"`` for a swap area, as zramctl prints it).
    """
    sysfs = zram.sysfs
    streams = sysfs["max_comp_streams"] if "max_comp_streams" in sysfs else None
    return _make_state(
        name if name is not None else zram.disk_name,
        int(sysfs["disksize"]),
        sysfs["comp_algorithm"],
        parse_mm_stat(sysfs["mm_stat"]),
        parse_io_stat(sysfs["io_stat"]),
        streams.strip() if streams is not None else None,
        mountpoint,
    )


def _host_mountpoint(dev: str) -> str:
    """``[SWAP]`` if ``dev`` is an active swap area, else its mount point, else ``""``."""
    real = os.path.realpath(dev)
    try:
        with open("/proc/swaps", encoding="utf-8") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields and os.path.realpath(fields[0]) == real:
                    return "[SWAP]"
    except OSError:
        pass
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and os.path.realpath(fields[0]) == real:
                    return fields[1].encode().decode("unicode_escape")
    except OSError:
        pass
    return ""


def host_device_state(name: str) -> dict[str, Any]:
    """The state of the host kernel's ``/sys/block/zramN`` (``name``: ``zramN`` or ``/dev/zramN``).

    Read-only: nothing is written to the device or its attributes.
    """
    base = os.path.basename(name)
    d = SYS_BLOCK / base

    def read(attr: str) -> str:
        return (d / attr).read_text()

    try:
        streams: str | None = read("max_comp_streams").strip()
    except FileNotFoundError:
        streams = None
    return _make_state(
        base,
        int(read("disksize")),
        read("comp_algorithm"),
        parse_mm_stat(read("mm_stat")),
        parse_io_stat(read("io_stat")),
        streams,
        _host_mountpoint(f"/dev/{base}"),
    )


def _invalid(path: str | os.PathLike[str], why: str) -> OSError:
    return OSError(errno.EINVAL, f"{os.fspath(path)}: not a pyzram ctl state file: {why}")


def _check_state(state: Any, where: str) -> str | None:
    """Why ``state`` is not a valid state, or ``None``."""
    if not isinstance(state, dict):
        return f"{where} is not an object"
    want: dict[str, tuple[type, ...]] = {
        "name": (str,),
        "disksize": (int,),
        "algorithm": (str,),
        "mm_stat": (dict,),
        "mountpoint": (str,),
        "max_comp_streams": (str, type(None)),
    }
    for key, types in want.items():
        if key not in state:
            return f"{where} has no {key!r}"
        if not isinstance(state[key], types) or isinstance(state[key], bool):
            return f"{where}: {key!r} has the wrong type"
    if state["disksize"] < 0:
        return f"{where}: negative disksize"
    mm = state["mm_stat"]
    for field in MmStat._fields:
        v = mm.get(field)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return f"{where}: mm_stat.{field} is missing or not a non-negative integer"
    return None


def save_state(path: str | os.PathLike[str], states: list[dict[str, Any]]) -> None:
    """Write ``states`` to ``path`` as JSON (``{"pyzram-ctl": 1, "devices": [...]}``)."""
    for i, state in enumerate(states):
        why = _check_state(state, f"device {i}")
        if why:
            raise ValueError(why)
    doc = {"pyzram-ctl": STATE_VERSION, "devices": states}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def load_state(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read states written by :func:`save_state`.

    A missing file raises the ``open`` error; a file that is not such a
    document raises ``OSError(EINVAL)`` saying why.
    """
    text = Path(path).read_bytes()
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise _invalid(path, f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("pyzram-ctl") != STATE_VERSION:
        raise _invalid(path, f'expected an object with "pyzram-ctl": {STATE_VERSION}')
    devices = doc.get("devices")
    if not isinstance(devices, list):
        raise _invalid(path, '"devices" is not a list')
    for i, state in enumerate(devices):
        why = _check_state(state, f"device {i}")
        if why:
            raise _invalid(path, why)
    return devices


# -- columns and cells --------------------------------------------------------------


def parse_columns(spec: str | None, output_all: bool = False) -> list[str]:
    """The columns for ``-o/--output spec`` and ``--output-all``, as zramctl picks them.

    The base list is :data:`ALL_COLUMNS` with ``output_all``, else
    :data:`DEFAULT_COLUMNS`; ``spec`` (comma separated, case-insensitive)
    replaces it, or is appended to it when it starts with ``+``.  An unknown or
    empty name raises ``ValueError("unknown column: NAME")``.
    """
    base = list(ALL_COLUMNS if output_all else DEFAULT_COLUMNS)
    if spec is None:
        return base
    append = spec.startswith("+")
    names = spec[1:] if append else spec
    wanted = []
    for item in names.split(","):
        col = item.upper()
        if col not in ALL_COLUMNS:
            raise ValueError(f"unknown column: {item}")
        wanted.append(col)
    return base + wanted if append else wanted


def _comp_ratio(data: int, total: int) -> str:
    if total == 0:
        return "inf" if data else "-nan"  # glibc's "%.4f" of the C double division
    return f"{data / total:.4f}"


def _cell(state: dict[str, Any], col: str, bytes_: bool) -> str:
    mm = state["mm_stat"]
    if col == "NAME":
        name = state["name"]
        return name if name.startswith("/") else f"/dev/{name}"
    if col == "DISKSIZE":
        n = state["disksize"]
        return str(n) if bytes_ else size_to_human(n)
    if col in _SIZE_COLUMNS:
        n = mm[_SIZE_COLUMNS[col]]
        return str(n) if bytes_ else size_to_human(n)
    if col == "ALGORITHM":
        return state["algorithm"]
    if col == "STREAMS":
        return state["max_comp_streams"] or ""
    if col == "ZERO-PAGES":
        return str(mm["same_pages"])
    if col == "COMP-RATIO":
        return _comp_ratio(mm["orig_data_size"], mm["mem_used_total"])
    if col == "MOUNTPOINT":
        return state["mountpoint"]
    raise ValueError(f"unknown column: {col}")


def _listed(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, state in enumerate(states):
        why = _check_state(state, f"device {i}")
        if why:
            raise ValueError(why)
    return [s for s in states if s["disksize"] > 0]


def _raw_escape(text: str) -> str:
    return "".join(
        f"\\x{ord(c):02x}" if c in " \t\\" or (ord(c) < 0x80 and not c.isprintable()) else c
        for c in text
    )


def _columns(columns: list[str] | tuple[str, ...] | None) -> list[str]:
    cols = list(DEFAULT_COLUMNS if columns is None else columns)
    for c in cols:
        if c not in ALL_COLUMNS:
            raise ValueError(f"unknown column: {c}")
    return cols


def format_table(
    states: list[dict[str, Any]],
    columns: list[str] | tuple[str, ...] | None = None,
    *,
    bytes_: bool = False,
    raw: bool = False,
    noheadings: bool = False,
) -> str:
    """zramctl's status output for ``states`` (each line ends in ``\\n``; ``""`` if none listed).

    Like zramctl (libsmartcols prints nothing for an empty table), the header
    is left out too when no device is listed.
    """
    cols = _columns(columns)
    rows = [[_cell(s, c, bytes_) for c in cols] for s in _listed(states)]
    if not rows:
        return ""
    if raw:
        lines = [] if noheadings else [" ".join(cols)]
        lines += [" ".join(_raw_escape(v) for v in row) for row in rows]
        return "".join(line + "\n" for line in lines)
    widths = [
        max([len(c), _WIDTH_HINTS.get(c, 0)] + [len(row[i]) for row in rows])
        for i, c in enumerate(cols)
    ]
    last = len(cols) - 1

    def line(cells: list[str]) -> str:
        out = []
        for i, (v, w, c) in enumerate(zip(cells, widths, cols, strict=True)):
            if c not in _LEFT_COLUMNS:
                out.append(v.rjust(w))
            else:
                out.append(v if i == last else v.ljust(w))
        return " ".join(out) + "\n"

    return ("" if noheadings else line(cols)) + "".join(line(row) for row in rows)


def _json_value(state: dict[str, Any], col: str, bytes_: bool) -> Any:
    mm = state["mm_stat"]
    if col == "ZERO-PAGES":
        return mm["same_pages"]
    if col == "COMP-RATIO":
        total = mm["mem_used_total"]
        return round(mm["orig_data_size"] / total, 4) if total else None
    if bytes_ and col == "DISKSIZE":
        return state["disksize"]
    if bytes_ and col in _SIZE_COLUMNS:
        return mm[_SIZE_COLUMNS[col]]
    return _cell(state, col, bytes_) or None


def format_json(
    states: list[dict[str, Any]],
    columns: list[str] | tuple[str, ...] | None = None,
    *,
    bytes_: bool = False,
) -> str:
    """``{"zram": [{column-name-lowercased: value, ...}, ...]}``, like libsmartcols ``--json``.

    Empty cells are ``null``; ``ZERO-PAGES`` is a number, ``COMP-RATIO`` a number
    rounded to 4 places (``null`` when TOTAL is 0), sizes are numbers with
    ``bytes_`` and human-readable strings without.
    """
    cols = _columns(columns)
    doc = {"zram": [{c.lower(): _json_value(s, c, bytes_) for c in cols} for s in _listed(states)]}
    return json.dumps(doc, indent=3) + "\n"


# -- the command ------------------------------------------------------------------------------


def command(
    state: Annotated[
        Path | None,
        typer.Argument(help="a state file from `pyzram run --save-state`; default: host devices"),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="columns, e.g. NAME,DATA (+LIST appends); COMP-RATIO is the memory ratio "
            "DATA / TOTAL (orig_data_size / mem_used_total), not the codec's "
            "orig_data_size / compr_data_size",
        ),
    ] = None,
    output_all: Annotated[bool, typer.Option("--output-all", help="all columns")] = False,
    bytes_: Annotated[bool, typer.Option("--bytes", "-b", help="sizes in bytes")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="raw output, no alignment")] = False,
    noheadings: Annotated[bool, typer.Option("--noheadings", "-n", help="no header")] = False,
    as_json: JsonOpt = False,
    socket: Annotated[
        Path | None,
        typer.Option("--socket", help="a running `pyzram serve` (its NBD or .ctl socket)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="with --socket: export or zramN to read/write")
    ] = None,
    read: Annotated[
        list[str] | None, typer.Option("--read", help="with --socket: print sysfs attribute ATTR")
    ] = None,
    write: Annotated[
        list[str] | None,
        typer.Option("--write", help="with --socket: write ATTR=VALUE (before any --read)"),
    ] = None,
) -> None:
    """zramctl's listing (same columns and options) for saved, served or host devices."""
    import glob
    import os

    try:
        parse_columns(output, output_all)
    except ValueError as e:
        raise UsageError("--output", str(e)) from None
    if socket is not None:
        from pyzram.nbd.control import ctl_socket

        text = ctl_socket(
            socket,
            device=device,
            reads=read or [],
            writes=write or [],
            columns=parse_columns(output, output_all),
            bytes_=bytes_,
            raw=raw,
            noheadings=noheadings,
            as_json=as_json,
        )
        if text:
            print(text, end="" if text.endswith("\n") else "\n")
        return
    if device is not None or read or write:
        raise UsageError(None, "--device, --read and --write need --socket")
    if state is not None:
        states = load_state(state)
    else:  # the host's zram devices, read-only
        names = sorted(os.path.basename(p) for p in glob.glob("/sys/block/zram*"))
        states = [host_device_state(n) for n in names]
    cols = parse_columns(output, output_all)
    if as_json:
        print(format_json(states, cols, bytes_=bytes_))
    else:
        text = format_table(states, cols, bytes_=bytes_, raw=raw, noheadings=noheadings)
        if text:
            print(text, end="" if text.endswith("\n") else "\n")
