"""Proof of work for opening a case, asked only when cases are being opened faster than
usual (node/cases/creation.py decides when; spec/parts/cases.md §11 is normative).

Hashcash with SHA-256. The node hands out a *challenge*, 38 bytes written in
base64url without padding:

    0x01 || expires (u32, Unix seconds) || bits (u8) || 16 random bytes || tag (16 bytes)
    tag = HMAC-SHA256(key, the 22 bytes before it)[:16]

and the client finds an 8-byte `nonce` such that SHA-256(challenge bytes || nonce)
begins with `bits` zero bits (2^bits tries on average; the page does it in a Web
Worker, node/web/static/pow-worker.js). It sends back {"challenge": ..., "nonce": "<16
hex digits>"} with the case. The node checks the tag (so it keeps no list of challenges
it gave), the expiry, the work, and that the challenge was not used before (a used
challenge is remembered until it expires: one case per proof).

The key is random per process: challenges given before a restart are refused after
it, and the client simply gets a new one.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import secrets
import struct

VERSION = 1
CHALLENGE_LIFETIME = 600  # seconds to find and send the proof
_HEAD = struct.Struct(">BIB")  # version, expires, bits
_RANDOM = 16
_TAG = 16
CHALLENGE_SIZE = _HEAD.size + _RANDOM + _TAG  # 38
NONCE_SIZE = 8
MAX_REMEMBERED = 200_000  # used challenges kept until they expire (about 20 MB at worst)
ALGORITHM = "sha256-leading-zero-bits"


class ProofOfWorkError(ValueError):
    """The proof sent is missing, malformed, expired, reused or too weak."""


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def _b64decode(text: str) -> bytes | None:
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == text else None


def solve(challenge: str, bits: int) -> str:
    """The nonce (16 hex digits) that proves the work for `challenge`: for tests and
    scripts (a client in Python); the page has its own in JavaScript."""
    raw = _b64decode(challenge)
    assert raw is not None
    for n in range(2**64):
        nonce = n.to_bytes(NONCE_SIZE, "big")
        if leading_zero_bits(hashlib.sha256(raw + nonce).digest()) >= bits:
            return nonce.hex()
    raise AssertionError("unreachable")


class ProofOfWork:
    def __init__(self, bits: int, *, lifetime: int = CHALLENGE_LIFETIME, key: bytes | None = None):
        if not 0 <= bits <= 40:
            raise ValueError("proof-of-work bits must be between 0 and 40")
        self.bits = bits
        self.lifetime = lifetime
        self._key = key if key is not None else secrets.token_bytes(32)
        self._used: set[bytes] = set()  # random parts of used challenges not yet expired
        self._expiry: collections.deque[tuple[int, bytes]] = collections.deque()  # in the order used

    def _tag(self, head: bytes) -> bytes:
        return hmac.new(self._key, head, hashlib.sha256).digest()[:_TAG]

    def challenge(self, now: float) -> dict:
        """What the node sends with its 428 answer."""
        head = _HEAD.pack(VERSION, int(now) + self.lifetime, self.bits) + secrets.token_bytes(_RANDOM)
        text = base64.urlsafe_b64encode(head + self._tag(head)).rstrip(b"=").decode()
        return {"algorithm": ALGORITHM, "challenge": text, "bits": self.bits, "expires_in": self.lifetime}

    def check(self, answer: object, now: float) -> None:
        """Accept the proof (and remember its challenge as used), or raise ProofOfWorkError."""
        if not isinstance(answer, dict) or set(answer) != {"challenge", "nonce"}:
            raise ProofOfWorkError('proof_of_work must be {"challenge": "...", "nonce": "<16 hex digits>"}')
        raw = _b64decode(answer["challenge"])
        nonce = answer["nonce"]
        if raw is None or len(raw) != CHALLENGE_SIZE or not hmac.compare_digest(
                raw[-_TAG:], self._tag(raw[:-_TAG])):
            raise ProofOfWorkError("this proof-of-work challenge was not given by this node (or it restarted "
                                   "since): ask for a new one")
        version, expires, bits = _HEAD.unpack_from(raw)
        if version != VERSION or expires < now:
            raise ProofOfWorkError("this proof-of-work challenge has expired: ask for a new one")
        if not (isinstance(nonce, str) and len(nonce) == 2 * NONCE_SIZE
                and all(c in "0123456789abcdef" for c in nonce)):
            raise ProofOfWorkError("the proof-of-work nonce must be 16 lowercase hex digits")
        if leading_zero_bits(hashlib.sha256(raw + bytes.fromhex(nonce)).digest()) < bits:
            raise ProofOfWorkError("the proof of work is not done: SHA-256(challenge || nonce) must begin "
                                   f"with {bits} zero bits")
        # Forget used challenges that expired: in the order they were used, which is
        # their expiry order give or take one lifetime (one is kept that long at most).
        while self._expiry and self._expiry[0][0] < now:
            self._used.discard(self._expiry.popleft()[1])
        key = raw[_HEAD.size:_HEAD.size + _RANDOM]
        if key in self._used:
            raise ProofOfWorkError("this proof of work was used for another case already: ask for a new one")
        if len(self._used) >= MAX_REMEMBERED:
            raise ProofOfWorkError("too many cases are being opened right now: please try again in a few minutes")
        self._used.add(key)
        self._expiry.append((expires, key))
