"""``memparse``, ``next_arg`` and ``sysfs_streq``: models of lib/cmdline.c and lib/string.c.

zram's sysfs stores parse their input with these, and their quirks are part of
the user-visible interface: ``memparse`` stops at the first character it does
not understand (so ``"64M junk"`` is 64 MiB), a lone suffix parses as 0 but
*counts as parsed* (so ``mem_limit`` accepts ``"K"``), and values wrap modulo
2**64 like the C ``unsigned long long`` they are.
"""

from __future__ import annotations

from pyzram.lib.kstrtox import U64_MASK, parse_integer, parse_integer_fixup_radix

_SHIFTS = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
# isspace() of lib/ctype.c for the ASCII range sysfs writes use.
_SPACE = " \t\n\v\f\r"


def simple_strtoull(s: str, base: int = 0) -> tuple[int, int]:
    """``simple_strtoull``: the value (mod 2**64) and the number of characters used.

    No whitespace skipping and no sign, as in the kernel; overflow wraps silently.
    """
    start, base = parse_integer_fixup_radix(s, base)
    value, used, _ = parse_integer(s, start, base)
    return value & U64_MASK, start + used if used else start


def memparse(s: str) -> tuple[int, int]:
    """``memparse``: parse ``<number>[KMGTPE]`` into bytes.

    Returns ``(value, end)`` where ``end`` is the index of the first unparsed
    character; ``end == 0`` is how callers such as ``mem_limit_store`` detect
    "nothing parsed".  Suffixes are powers of 1024, either case; the shift
    wraps modulo 2**64 like the kernel's ``ret <<= 10``.
    """
    value, end = simple_strtoull(s, 0)
    if end < len(s) and s[end].lower() in _SHIFTS:
        value = (value << _SHIFTS[s[end].lower()]) & U64_MASK
        end += 1
    return value, end


def skip_spaces(s: str, i: int = 0) -> int:
    """``skip_spaces``: index of the first non-space character at or after ``i``."""
    while i < len(s) and s[i] in _SPACE:
        i += 1
    return i


def next_arg(s: str, i: int) -> tuple[str, str | None, int]:
    """``next_arg``: split one ``param[=value]`` token starting at ``s[i]``.

    Double quotes may surround the whole token or the value, and protect
    spaces.  Returns ``(param, value_or_None, index_of_next_token)``; the
    value is ``None`` when the token has no ``=`` (the kernel's ``*val = NULL``)
    and ``""`` for ``key=``.
    """
    quoted = in_quote = False
    if i < len(s) and s[i] == '"':
        i += 1
        quoted = in_quote = True
    start = i
    equals = -1
    while i < len(s):
        c = s[i]
        if c in _SPACE and not in_quote:
            break
        if equals < 0 and c == "=":
            equals = i
        if c == '"':
            in_quote = not in_quote
        i += 1
    token_end = i
    # A closing quote at the end of the token is dropped (for the value and
    # for a token that began with a quote), as the kernel overwrites it with NUL.
    if equals < 0:
        param, value = s[start:token_end], None
        if quoted and token_end > start and s[token_end - 1] == '"':
            param = param[:-1]
    else:
        param = s[start:equals]
        value = s[equals + 1 : token_end]
        if value.startswith('"'):
            value = value[1:]
            if token_end > start and s[token_end - 1] == '"' and value.endswith('"'):
                value = value[:-1]
        elif quoted and value.endswith('"'):
            value = value[:-1]
    if i < len(s):
        i += 1
    return param, value, skip_spaces(s, i)


def parse_args(s: str) -> list[tuple[str, str | None]]:
    """All ``next_arg`` tokens of a sysfs ``key=value`` write, after ``skip_spaces``."""
    out = []
    i = skip_spaces(s)
    while i < len(s):
        param, value, i = next_arg(s, i)
        out.append((param, value))
    return out


def sysfs_streq(s1: str, s2: str) -> bool:
    """``sysfs_streq``: equal, ignoring one trailing newline on either side."""
    return s1.removesuffix("\n") == s2.removesuffix("\n")
