"""The federation membership list: which logs a federation has, their keys and roles
(spec/parts/joining.md §3), in the spirit of C2SP tlog-policy: a line-based text,
here the text of a C2SP signed note signed by the federation's list key(s).

    ncii-node/federation-list/v1
    federation example.org/federation
    serial 7
    member helpline https://h1.example/log <log vkey> <request vkey> Helpline One
    member platform https://p.example/log <log vkey> <request vkey> Platform P

Rules (a parser accepts exactly what `MemberList.text()` writes, so a list has one
encoding):
- lines end in "\\n", items are separated by one space, no empty or comment line;
- `federation` is a key-name-like identifier (no space, no "+"), `serial` a decimal
  without leading zeros, at most 18 digits;
- each `member` line carries, in order: role (helpline|platform), the node's URL
  prefix, its log's verifier key (whose name is the log's origin, as in tlog-policy's
  `log` lines), its request key, and the rest of the line is the name people are
  shown; each is checked as an invitation bundle's member is (node/invitation.py);
- members are sorted by origin, strictly (no origin twice), no request key twice;
- at most MAX_MEMBERS members, MAX_LINE bytes per line, MAX_LIST_BYTES in all.

The list is believed only if at least `quorum` distinct keys of the subscription's
list keys signed it (k of n: a coordinator holds one key, or several members each
hold one), and a signature line by a known key that does not verify refuses it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from node.invitation import ROLES, Invitation, InvitationError, check, plan
from protocol.errors import KeyFormatError, NoteError, ProtocolError
from protocol.note import Signer, Verifier, add_signatures, check_key_name, open_note, parse_note, sign_note

HEADER = "ncii-node/federation-list/v1"
#: Bounds (our choice): a federation of 500 nodes fits twice; one member line is about 300 bytes.
MAX_MEMBERS = 1024
MAX_LINE = 2048
MAX_LIST_BYTES = 512 * 1024
_SERIAL = re.compile(r"0|[1-9][0-9]{0,17}")


class ListError(ProtocolError):
    """A membership list that is refused; the message says why, in plain words."""


@dataclass(frozen=True)
class MemberList:
    federation: str
    serial: int
    members: tuple[Invitation, ...]

    def text(self) -> str:
        lines = [HEADER, f"federation {self.federation}", f"serial {self.serial}"]
        lines += [f"member {m.role} {m.url} {m.log_vkey} {m.request_vkey} {m.name}" for m in self.members]
        return "\n".join(lines) + "\n"

    def by_origin(self) -> dict[str, Invitation]:
        return {m.origin: m for m in self.members}


def make_list(federation: str, serial: int, members) -> MemberList:
    """A MemberList from members in any order (sorted here); raises ListError."""
    member_list = MemberList(federation, serial, tuple(sorted(members, key=lambda m: m.origin)))
    return parse_text(member_list.text())  # every rule checked once, in one place


def parse_text(text: str) -> MemberList:
    """The list in a (verified) note text; raises ListError naming the line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_LIST_BYTES:
        raise ListError(f"the list is larger than {MAX_LIST_BYTES} bytes")
    if not text.endswith("\n"):
        raise ListError("the list must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] != HEADER:
        raise ListError(f"not a membership list: its first line must be {HEADER!r}")
    if len(lines) - 3 > MAX_MEMBERS:
        raise ListError(f"the list has {len(lines) - 3} members; at most {MAX_MEMBERS} are accepted")
    for number, line in enumerate(lines, 1):
        if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE:
            raise ListError(f"line {number} is longer than {MAX_LINE} bytes")
    federation = _field(lines[1], "federation", 2)
    try:
        check_key_name(federation, "federation name")
    except KeyFormatError as exc:
        raise ListError(f"line 2: {exc}") from None
    serial = _field(lines[2], "serial", 3)
    if not _SERIAL.fullmatch(serial):
        raise ListError("line 3: the serial must be a decimal number (no leading zero, at most 18 digits)")
    members: list[Invitation] = []
    for number, line in enumerate(lines[3:], 4):
        member = _member(line, number)
        if members and member.origin <= members[-1].origin:
            raise ListError(f"line {number}: members must be sorted by origin, each once "
                            f"({member.origin!r} after {members[-1].origin!r})")
        members.append(member)
    if len({m.request_vkey for m in members}) != len(members):
        raise ListError("two members have the same request key")
    return MemberList(federation, int(serial), tuple(members))


def _field(line: str, keyword: str, number: int) -> str:
    word, space, value = line.partition(" ")
    if word != keyword or not space or not value or " " in value:
        raise ListError(f"line {number} must be {keyword!r}, one space and one value")
    return value


def _member(line: str, number: int) -> Invitation:
    parts = line.split(" ", 5)
    if len(parts) != 6 or parts[0] != "member" or any(not p for p in parts):
        raise ListError(f"line {number}: a member line is 'member ROLE URL LOG_VKEY REQUEST_VKEY NAME', "
                        "items separated by one space")
    _, role, url, log_vkey, request_vkey, name = parts
    if role not in ROLES:
        raise ListError(f"line {number}: the role {role[:40]!r} is not one of {', '.join(ROLES)}")
    if name != name.strip():
        raise ListError(f"line {number}: the name must not start or end with white space")
    try:
        origin = Verifier.from_vkey(log_vkey).name
    except KeyFormatError as exc:
        raise ListError(f"line {number}: the log key is not a log verifier key: {exc}") from None
    member = Invitation(url=url, origin=origin, role=role, name=name, log_vkey=log_vkey, request_vkey=request_vkey)
    try:
        check(member)
    except InvitationError as exc:
        raise ListError(f"line {number} ({origin}): {str(exc).replace('the bundle', 'the member')}") from None
    return member


# ---------------------------------------------------------------------- signatures

def sign_list(member_list: MemberList, signers: list[Signer]) -> bytes:
    """The signed note of the list, one signature per list key given."""
    return sign_note(member_list.text(), signers)


def cosign_list(data: bytes, signer: Signer) -> bytes:
    """`data` (a signed list) with one more signature: another holder's, for k of n."""
    note = parse_note(data)
    parse_text(note.text)
    line = parse_note(sign_note(note.text, [signer])).signatures[0].to_line()
    return add_signatures(data, [line])


def open_list(data: bytes, list_vkeys: list[str], quorum: int) -> MemberList:
    """The list in `data` if at least `quorum` distinct list keys signed it; raises ListError."""
    if len(data) > MAX_LIST_BYTES + 16 * 1024:  # the text's bound plus 16 signature lines
        raise ListError(f"the list is {len(data)} bytes; at most {MAX_LIST_BYTES} are accepted")
    verifiers = [Verifier.from_vkey(vkey) for vkey in list_vkeys]
    try:
        note = open_note(data, verifiers)
    except NoteError as exc:
        raise ListError(f"the list's signature is refused: {exc}") from None
    if len(note.verified_by) < quorum:
        raise ListError(f"the list is signed by {len(note.verified_by)} of the federation's list keys; "
                        f"{quorum} are required")
    return parse_text(note.text)


# ---------------------------------------------------------------------- changes

@dataclass(frozen=True)
class Change:
    """One difference between what this node set up from the list (`old`) and the
    list (`new`). kind: "add", "remove", "key" (role or a key changed), "update" (URL
    or name only)."""

    kind: str
    origin: str
    old: Invitation | None
    new: Invitation | None

    @property
    def id(self) -> str:
        """Stable while the change is the same: approve/reject name it."""
        line = "|".join([self.kind, self.origin] + [_line(m) for m in (self.old, self.new)])
        return hashlib.sha256(line.encode()).hexdigest()[:10]

    def adds_trust(self) -> bool:
        """Whether the operator decides (follow a new log, register a reader, a key change)."""
        return self.kind in ("add", "key")

    def describe(self) -> str:
        new, old = self.new, self.old
        if self.kind == "add":
            return f"add {new.role} {new.origin} ({new.name!r}) at {new.url}, log key {new.log_vkey}"
        if self.kind == "remove":
            return f"remove {old.role} {old.origin} ({old.name!r}): stop following it, revoke its reader"
        if self.kind == "key":
            what = [w for w, a, b in (("role", old.role, new.role), ("log key", old.log_vkey, new.log_vkey),
                                      ("request key", old.request_vkey, new.request_vkey)) if a != b]
            return f"{' and '.join(what)} of {new.origin} changed: " + "; ".join(
                f"{a} -> {b}" for _, a, b in (("role", old.role, new.role), ("log", old.log_vkey, new.log_vkey),
                                              ("request", old.request_vkey, new.request_vkey)) if a != b)
        what = [f"{w} {a!r} -> {b!r}" for w, a, b in (("URL", old.url, new.url), ("name", old.name, new.name))
                if a != b]
        return f"{new.origin}: " + ", ".join(what)


def _line(member: Invitation | None) -> str:
    return "" if member is None else " ".join([member.role, member.url, member.log_vkey, member.request_vkey,
                                               member.name])


def relevant(member: Invitation, own_role: str, own_origin: str) -> bool:
    """Whether this node has anything to set up with the member (node/invitation.py plan)."""
    if member.origin == own_origin:
        return False
    try:
        plan(own_role, member.role)
    except InvitationError:
        return False
    return True


def changes(applied: dict[str, Invitation], listed: MemberList, own_role: str, own_origin: str) -> list[Change]:
    """What differs between the members set up from the list and the list itself."""
    wanted = {origin: m for origin, m in listed.by_origin().items() if relevant(m, own_role, own_origin)}
    found = []
    for origin in sorted(set(applied) | set(wanted)):
        old, new = applied.get(origin), wanted.get(origin)
        if old == new:
            continue
        if old is None:
            found.append(Change("add", origin, None, new))
        elif new is None:
            found.append(Change("remove", origin, old, None))
        elif (old.role, old.log_vkey, old.request_vkey) != (new.role, new.log_vkey, new.request_vkey):
            found.append(Change("key", origin, old, new))
        else:
            found.append(Change("update", origin, old, new))
    return found
