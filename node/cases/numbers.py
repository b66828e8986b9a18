"""Case numbers and PINs: how they are made and how what a person types is read back.

A case number is 16 symbols of Crockford's base32 alphabet (digits and capital letters
without I, L, O, U, so that nothing reads as something else), shown in four groups
of four for reading aloud: ``7K2Q-M9XD-4TPA-RW3E``. The first 15 symbols are random
(15 x 5 = 75 bits from `secrets`); the 16th is a check symbol, so that a typo is
caught before it costs the person one of their limited PIN attempts.

Check symbol: the alphabet value of (sum over i of (i + 1) * value(symbol i)) mod 31,
for i = 0..14. As 31 is prime and the weights 1..15 are non-zero modulo 31, it
catches every change of one symbol and every swap of two neighbouring symbols
among the first fifteen,
except between symbols whose values differ by exactly 31 ('0' and 'Z').

Reading back is lenient as Crockford intends: case and separators (spaces, hyphens,
dots) are ignored, O reads as 0 and I or L as 1. U is not a symbol.

A PIN is 8 decimal digits from `secrets` (10^8 values); it is only ever checked
together with the case number, with attempts limited (limits.py).
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = re.compile(r"[\s\-.]+")

RANDOM_SYMBOLS = 15
CASE_NUMBER_SYMBOLS = RANDOM_SYMBOLS + 1
RANDOM_BITS = RANDOM_SYMBOLS * 5
GROUP = 4
PIN_DIGITS = 8


class CaseNumberError(ValueError):
    """What was typed is not a case number; the message says why, for the person."""


def check_symbol(symbols: str) -> str:
    total = sum((i + 1) * _VALUE[s] for i, s in enumerate(symbols))
    return ALPHABET[total % 31]


def new_case_number() -> str:
    """A fresh case number, grouped for display: XXXX-XXXX-XXXX-XXXX."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_SYMBOLS))
    return group(body + check_symbol(body))


def group(compact: str) -> str:
    return "-".join(compact[i:i + GROUP] for i in range(0, len(compact), GROUP))


def canonical_case_number(text: object) -> str:
    """The 16 symbols of a typed case number, upper case without separators.
    Raises CaseNumberError if it cannot be one."""
    if not isinstance(text, str):
        raise CaseNumberError("the case number must be a string like XXXX-XXXX-XXXX-XXXX")
    compact = _SEPARATORS.sub("", text).upper().translate(_ALIASES)
    if len(compact) != CASE_NUMBER_SYMBOLS:
        raise CaseNumberError(f"a case number has {CASE_NUMBER_SYMBOLS} letters and digits "
                              "(XXXX-XXXX-XXXX-XXXX); please check it")
    bad = sorted({c for c in compact if c not in _VALUE})
    if bad:
        raise CaseNumberError("a case number never contains " + ", ".join(repr(c) for c in bad)
                              + "; please check it")
    if check_symbol(compact[:RANDOM_SYMBOLS]) != compact[RANDOM_SYMBOLS]:
        raise CaseNumberError("this case number has a typing mistake (its last symbol does not "
                              "fit the others); please check it")
    return compact


def new_pin() -> str:
    return f"{secrets.randbelow(10 ** PIN_DIGITS):0{PIN_DIGITS}d}"


def canonical_pin(text: object) -> str:
    """The digits of a typed PIN (spaces and hyphens ignored). Raises CaseNumberError."""
    if not isinstance(text, str):
        raise CaseNumberError(f"the PIN must be a string of {PIN_DIGITS} digits")
    compact = _SEPARATORS.sub("", text)
    if len(compact) != PIN_DIGITS or not compact.isascii() or not compact.isdigit():
        raise CaseNumberError(f"a PIN is {PIN_DIGITS} digits; please check it")
    return compact
