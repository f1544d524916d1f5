"""``kstrto*``: models of lib/kstrtox.c, the strict number parsers of sysfs stores.

The whole string must be a number in the given base, optionally followed by
exactly one ``"\\n"``; anything else is ``-EINVAL``, and a value that does not
fit the destination type is ``-ERANGE``.  Base 0 picks 16 for ``0x``, 8 for a
leading ``0`` and 10 otherwise, as ``_parse_integer_fixup_radix`` does.
"""

from __future__ import annotations

import errno

U64_MASK = (1 << 64) - 1


def parse_integer_fixup_radix(s: str, base: int, start: int = 0) -> tuple[int, int]:
    """``_parse_integer_fixup_radix``: resolve base 0 and skip a ``0x`` prefix."""
    if base == 0:
        if s[start : start + 1] == "0":
            if s[start + 1 : start + 2].lower() == "x" and _isxdigit(s[start + 2 : start + 3]):
                base = 16
            else:
                base = 8
        else:
            base = 10
    if base == 16 and s[start : start + 1] == "0" and s[start + 1 : start + 2].lower() == "x":
        start += 2
    return start, base


def _isxdigit(c: str) -> bool:
    return len(c) == 1 and c in "0123456789abcdefABCDEF"


def parse_integer(s: str, start: int, base: int) -> tuple[int, int, bool]:
    """``_parse_integer``: ``(value mod 2**64, digits used, overflowed)``."""
    value = 0
    used = 0
    overflow = False
    for c in s[start:]:
        lc = c.lower()
        if "0" <= c <= "9":
            digit = ord(c) - 48
        elif "a" <= lc <= "f":
            digit = ord(lc) - 87
        else:
            break
        if digit >= base:
            break
        value = value * base + digit
        if value > U64_MASK:
            overflow = True
        used += 1
    return value & U64_MASK, used, overflow


def _kstrtoull(s: str, base: int) -> int:
    start, base = parse_integer_fixup_radix(s, base)
    value, used, overflow = parse_integer(s, start, base)
    if overflow:
        raise OSError(errno.ERANGE, "Numerical result out of range")
    if used == 0:
        raise OSError(errno.EINVAL, "Invalid argument")
    rest = s[start + used :]
    if rest not in ("", "\n"):
        raise OSError(errno.EINVAL, "Invalid argument")
    return value


def kstrtoull(s: str, base: int = 10) -> int:
    """``kstrtoull``: unsigned 64-bit; a leading ``+`` is allowed."""
    if s.startswith("+"):
        s = s[1:]
    return _kstrtoull(s, base)


def kstrtoll(s: str, base: int = 10) -> int:
    """``kstrtoll``: signed 64-bit; a leading ``-`` or ``+`` is allowed."""
    if s.startswith("-"):
        value = _kstrtoull(s[1:], base)
        if value > 1 << 63:
            raise OSError(errno.ERANGE, "Numerical result out of range")
        return -value
    value = kstrtoull(s, base)
    if value >= 1 << 63:
        raise OSError(errno.ERANGE, "Numerical result out of range")
    return value


def _unsigned(bits: int):
    def parse(s: str, base: int = 10) -> int:
        value = kstrtoull(s, base)
        if value >= 1 << bits:
            raise OSError(errno.ERANGE, "Numerical result out of range")
        return value

    parse.__doc__ = f"``kstrtou{bits}``-style parser: unsigned, at most {bits} bits."
    return parse


def _signed(bits: int):
    def parse(s: str, base: int = 10) -> int:
        value = kstrtoll(s, base)
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise OSError(errno.ERANGE, "Numerical result out of range")
        return value

    parse.__doc__ = f"``kstrtos{bits}``-style parser: signed, {bits} bits."
    return parse


kstrtoul = kstrtoull  # unsigned long is 64 bits on x86_64
kstrtouint = _unsigned(32)
kstrtou16 = _unsigned(16)
kstrtoint = _signed(32)
