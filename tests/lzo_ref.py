"""Reference LZO1X decoder in pure Python, used only by the tests.

Written from the stream description in the kernel's
Documentation/staging/lzo.rst (not from any decoder's code), so that it can
check pyzram._kcodec's lzo and lzo-rle output independently.  It reads both
bitstream version 0 (plain LZO1X, "lzo") and version 1 ("lzo-rle": a leading
17, version byte, and zero runs coded as a 0001HLLL instruction whose
distance is 0xbfff followed by a fourth byte).

It is slow (a few milliseconds per 4 KiB page) and strict: anything that is
not a well-formed stream ending exactly with the end-of-stream instruction
raises LzoError.
"""

from __future__ import annotations

__all__ = ["LzoError", "decompress"]


class LzoError(ValueError):
    """The input is not a well-formed LZO1X stream."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise LzoError(f"input ends at offset {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def le16(self) -> int:
        lo = self.byte()
        return lo | (self.byte() << 8)

    def peek(self, k: int) -> int:
        if self.pos + k >= len(self.data):
            raise LzoError(f"input ends at offset {self.pos + k}")
        return self.data[self.pos + k]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise LzoError(f"{n} literals at offset {self.pos} run past the input")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def length(self, bits_value: int, bits_max: int) -> int:
        """Variable length: the operand, or bits_max + 255 * zeros + next byte."""
        if bits_value:
            return bits_value
        zeros = 0
        b = self.byte()
        while b == 0:
            zeros += 1
            b = self.byte()
        return bits_max + 255 * zeros + b


def _copy_match(out: bytearray, distance: int, length: int, limit: int) -> None:
    if distance <= 0 or distance > len(out):
        raise LzoError(f"distance {distance} reaches before the output start ({len(out)} bytes)")
    if len(out) + length > limit:
        raise LzoError("output larger than the limit")
    start = len(out) - distance
    if distance >= length:
        out += out[start : start + length]
    else:
        for i in range(length):  # overlapping copy repeats the pattern
            out.append(out[start + i])


def decompress(data: bytes, out_len: int | None = None) -> bytes:
    """Decode a raw LZO1X (or lzo-rle) stream; out_len, if given, caps the output."""
    limit = out_len if out_len is not None else 1 << 30
    rd = _Reader(bytes(data))
    out = bytearray()
    version = 0
    if len(rd.data) < 3:
        raise LzoError("stream shorter than the end-of-stream instruction")
    if len(rd.data) >= 5 and rd.data[0] == 17:
        version = rd.data[1]
        rd.pos = 2

    def literals(n: int) -> None:
        if len(out) + n > limit:
            raise LzoError("output larger than the limit")
        out.extend(rd.take(n))

    state = 0
    first = rd.peek(0)
    if first > 17:
        rd.pos += 1
        n = first - 17
        literals(n)
        state = n if n < 4 else 4

    while True:
        inst = rd.byte()
        follow = None  # literals after a copy: the S bits
        if inst < 16:
            if state == 0:
                # 0000LLLL: literal run of 3 + length bytes, no trailing literals
                literals(3 + rd.length(inst & 15, 15))
                state = 4
                continue
            h = rd.byte()
            d = (inst >> 2) & 3
            follow = inst & 3
            if state < 4:
                _copy_match(out, (h << 2) + d + 1, 2, limit)
            else:
                _copy_match(out, (h << 2) + d + 2049, 3, limit)
        elif inst >= 64:
            # 01LDDDSS / 1LLDDDSS HHHHHHHH
            h = rd.byte()
            d = (inst >> 2) & 7
            length = (3 + ((inst >> 5) & 1)) if inst < 128 else (5 + ((inst >> 5) & 3))
            follow = inst & 3
            _copy_match(out, (h << 3) + d + 1, length, limit)
        elif inst >= 32:
            # 001LLLLL [length bytes] DDDDDDDD DDDDDDSS
            length = 2 + rd.length(inst & 31, 31)
            v = rd.le16()
            follow = v & 3
            _copy_match(out, (v >> 2) + 1, length, limit)
        else:
            # 0001HLLL: far copy, end of stream, or (version 1) zero run
            high = (inst >> 3) & 1
            if version and high and rd.peek(0) & 0xFC == 0xFC and rd.peek(1) == 0xFF:
                v = rd.le16()
                x = rd.byte()
                run = ((x << 3) | (inst & 7)) + 4
                if len(out) + run > limit:
                    raise LzoError("output larger than the limit")
                out += bytes(run)
                follow = v & 3
            else:
                length = 2 + rd.length(inst & 7, 7)
                v = rd.le16()
                distance = 16384 + (high << 14) + (v >> 2)
                if distance == 16384:
                    # the S bits are not looked at; the length must be 3 (0x11 0 0)
                    if length != 3:
                        raise LzoError("malformed end-of-stream instruction")
                    if rd.pos != len(rd.data):
                        raise LzoError(f"{len(rd.data) - rd.pos} bytes after the end of stream")
                    return bytes(out)
                follow = v & 3
                _copy_match(out, distance, length, limit)
        literals(follow)
        state = follow
