"""How a case number and a PIN are kept: never as such, only as hashes.

Case number -> `case_lookup(key, number)` = HMAC-SHA256(case key, the 16 canonical
symbols as ASCII). The case key is 32 random bytes in DIR/keys/case.key (mode 0600),
outside the database, so a stolen database alone cannot be searched for a case
number; and with the key, recovering a number still means trying 2^75 of them.

PIN -> scrypt(password = canonical case number + ":" + PIN, salt = 16 random bytes,
n, r, p, dklen = 32). Production parameters n = 2^15, r = 8, p = 1 (32 MiB of memory
and about 0.1 s of one core per check); tests lower n through [cases] in the
config. The parameters are stored with each hash, so a change of configuration
never locks anyone out. Putting the case number in the password means the PIN hash
cannot be attacked on its own: without the case number, all 10^8 PINs fail.

`check_pin` compares in constant time (hmac.compare_digest).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

CASE_KEY_SIZE = 32
SALT_SIZE = 16
DIGEST_SIZE = 32


@dataclass(frozen=True)
class ScryptParams:
    n: int = 2**15
    r: int = 8
    p: int = 1

    def to_text(self) -> str:
        return f"scrypt:n={self.n},r={self.r},p={self.p}"

    @classmethod
    def from_text(cls, text: str) -> "ScryptParams":
        name, _, rest = text.partition(":")
        if name != "scrypt":
            raise ValueError(f"unknown PIN hash {name!r}")
        values = dict(part.split("=", 1) for part in rest.split(","))
        return cls(int(values["n"]), int(values["r"]), int(values["p"]))

    @property
    def memory(self) -> int:
        """Bytes of memory one hash needs (as OpenSSL counts: 128 r p + 128 r (n + 2))."""
        return 128 * self.r * self.p + 128 * self.r * (self.n + 2)


PRODUCTION = ScryptParams()


def case_lookup(key: bytes, canonical_number: str) -> bytes:
    return hmac.new(key, canonical_number.encode("ascii"), hashlib.sha256).digest()


def _scrypt(canonical_number: str, pin: str, salt: bytes, params: ScryptParams) -> bytes:
    password = f"{canonical_number}:{pin}".encode("ascii")
    return hashlib.scrypt(password, salt=salt, n=params.n, r=params.r, p=params.p,
                          maxmem=params.memory + 1024 * 1024, dklen=DIGEST_SIZE)


def hash_pin(canonical_number: str, pin: str, params: ScryptParams) -> tuple[bytes, bytes]:
    """(salt, hash) of a new PIN."""
    salt = secrets.token_bytes(SALT_SIZE)
    return salt, _scrypt(canonical_number, pin, salt, params)


def check_pin(canonical_number: str, pin: str, salt: bytes, expected: bytes, params: ScryptParams) -> bool:
    return hmac.compare_digest(_scrypt(canonical_number, pin, salt, params), expected)


def waste_pin_check(params: ScryptParams) -> None:
    """Spend what a real check costs, so that an unknown case number takes as long
    to refuse as a wrong PIN (the answer time tells nothing)."""
    _scrypt("0" * 16, "00000000", b"\0" * SALT_SIZE, params)


def load_or_create_case_key(datadir, path) -> bytes:
    """The case key; created (mode 0600 from the start) on the first start of a helpline."""
    if not path.exists():
        datadir.write_secret(path, os.urandom(CASE_KEY_SIZE))
    key = datadir.read_secret(path)
    if len(key) != CASE_KEY_SIZE:
        raise ValueError(f"{path} must hold exactly {CASE_KEY_SIZE} bytes; it holds {len(key)}")
    return key
