"""Invitation bundles: what one node's operator sends another so that one command
(`ncii-node join`) sets up both directions of a link (spec/parts/joining.md).

A bundle is one line of text, safe to paste into a mail or chat:

    ncii-invite-1.<base64url, unpadded, of a JSON object>

with exactly these members, all strings:

    url           the node's public URL prefix (https://..., no query or fragment)
    origin        its log's origin line
    role          "helpline" or "platform"
    name          a display name for people (the operator's; at most 100 characters)
    log_vkey      its log's verifier key (C2SP signed-note Ed25519), named like the origin
    request_vkey  its request key (node/readaccess.py), a different key type

The parser is strict and bounded: at most MAX_BUNDLE characters, no unknown or missing
member, each value checked for its kind (a request key where a log key belongs, or the
reverse, is refused with a message saying so). A bundle carries no secret, but it is a
trust anchor: whoever can change it in transit chooses the key the joining node pins,
so it must come over a channel the operators trust (or be confirmed by its key IDs).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass

from node.follow.client import log_url_problem
from node.readaccess import parse_request_vkey
from protocol.checkpoint import Checkpoint
from protocol.errors import CheckpointError, KeyFormatError
from protocol.note import Verifier

PREFIX = "ncii-invite-1."
MAX_BUNDLE = 4096
MAX_NAME = 100
ROLES = ("helpline", "platform")
_FIELDS = ("url", "origin", "role", "name", "log_vkey", "request_vkey")


class InvitationError(ValueError):
    """A bundle that cannot be accepted; the message says why, in plain words."""


@dataclass(frozen=True)
class Invitation:
    url: str
    origin: str
    role: str
    name: str
    log_vkey: str
    request_vkey: str

    def encode(self) -> str:
        data = json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False).encode()
        text = PREFIX + base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
        if len(text) > MAX_BUNDLE:
            raise InvitationError(f"the bundle would be {len(text)} characters, more than {MAX_BUNDLE}")
        return text


def parse(text: str) -> Invitation:
    """The invitation in `text` (surrounding white space ignored); raises InvitationError."""
    text = text.strip()
    if len(text) > MAX_BUNDLE:
        raise InvitationError(f"the bundle is {len(text)} characters long; a bundle has at most {MAX_BUNDLE}")
    if not text.startswith(PREFIX):
        raise InvitationError(f"not an invitation bundle: it must start with {PREFIX!r} "
                              "(as `ncii-node invite` prints it)")
    body = text[len(PREFIX):]
    if not body or any(c not in _BASE64URL for c in body):
        raise InvitationError("the bundle is damaged: only base64url characters may follow the prefix "
                              "(was it cut or re-wrapped when copied?)")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise InvitationError("the bundle is damaged (it does not decode); copy it again in full") from None
    if not isinstance(doc, dict):
        raise InvitationError("the bundle is damaged: not an object")
    if set(doc) != set(_FIELDS):
        missing, extra = sorted(set(_FIELDS) - set(doc)), sorted(set(doc) - set(_FIELDS))
        raise InvitationError("the bundle is not a version-1 invitation"
                              + (f"; missing: {', '.join(missing)}" if missing else "")
                              + (f"; unknown: {', '.join(str(e)[:40] for e in extra[:5])}" if extra else ""))
    for key in _FIELDS:
        if not isinstance(doc[key], str):
            raise InvitationError(f"the bundle's {key} is not text")
    invitation = Invitation(**{key: doc[key] for key in _FIELDS})
    check(invitation)
    return invitation


def check(invitation: Invitation) -> None:
    """Every member of the right kind; raises InvitationError."""
    problem = log_url_problem(invitation.url) if len(invitation.url) <= 512 else "longer than 512 characters"
    if problem:
        raise InvitationError(f"the bundle's URL is not usable: {problem}")
    try:
        Checkpoint(invitation.origin, 0, bytes(32))
    except CheckpointError as exc:
        raise InvitationError(f"the bundle's origin is not an origin line: {exc}") from None
    if invitation.role not in ROLES:
        raise InvitationError(f"the bundle's role {invitation.role[:40]!r} is not one of {', '.join(ROLES)}")
    if len(invitation.name) > MAX_NAME or not invitation.name.isprintable():
        raise InvitationError(f"the bundle's name must be printable text of at most {MAX_NAME} characters")
    try:
        verifier = Verifier.from_vkey(invitation.log_vkey)
    except KeyFormatError as exc:
        raise InvitationError(f"the bundle's log_vkey is not a log verifier key: {exc}") from None
    if verifier.name != invitation.origin:
        raise InvitationError(f"the bundle's log_vkey is named {verifier.name!r}, not like its origin "
                              f"{invitation.origin!r}")
    try:
        parse_request_vkey(invitation.request_vkey)
    except KeyFormatError as exc:
        raise InvitationError(f"the bundle's request_vkey is not a request key: {exc}") from None


def plan(own_role: str, their_role: str) -> list[str]:
    """What joining does, by roles (spec/parts/joining.md §2): a subset of
    "reader" (register their request key: they read our log or our /witness/seen),
    "follow" (follow their log, its key pinned), "peer" (compare views with them).
    Raises InvitationError for a pair of roles that has nothing to exchange."""
    if {own_role, their_role} == {"helpline", "platform"}:
        # A platform follows the helpline's submissions and withdrawals; the helpline
        # follows the platform's feedback and acknowledgements. Both logs are read-restricted.
        return ["reader", "follow"]
    if own_role == their_role == "platform":
        # Platforms compare their views of the helplines' logs (gossip), each reading
        # the other's /witness/seen as a registered reader.
        return ["reader", "peer"]
    raise InvitationError(f"a {own_role} and a {their_role} have nothing to exchange: an invitation links a "
                          "helpline with a platform, or two platforms")


_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
