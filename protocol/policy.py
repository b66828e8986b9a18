"""C2SP tlog-policy: which logs and witnesses to trust, and which cosignatures a
checkpoint needs before it is believed (c2sp.org/tlog-policy).

A policy file is line based:

    log <vkey> [<url>]                     a log key (type 0x01); its name is the origin
    witness <name> <vkey> [<url>]          a witness key (type 0x04, tlog-cosignature/v1)
    group <name> all|any|<k> <name>...     k of the n members have witnessed
    quorum <name>                          the witness or group that must witness; `none`

Items are separated by spaces and tabs; empty lines and lines starting with "#" are
ignored. A group or the quorum names only witnesses and groups defined on lines
above. Exactly one quorum line.

Invariants kept here:
- `parse_policy` accepts only what the C2SP text allows (plus our bounds, below) and
  raises PolicyError naming the line otherwise; a `Policy` value always holds a
  valid policy, and `parse_policy(p.to_bytes()) == p`.
- Quorum evaluation (`check_quorum`) counts a witness only for a cosignature line that
  verifies under its key, each witness once per group; a line that carries a policy
  witness's name and key ID but does not verify rejects the note (signed-note: such a
  note is malformed). Timestamps are returned, never judged: that is the caller's
  business (tlog-proof: "the timestamp value is ignored").

The normative text, with our choices marked, is spec/parts/policy-and-proofs.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from protocol.checkpoint import Checkpoint, open_checkpoint
from protocol.cosignature import CosignatureVerifier
from protocol.errors import CheckpointError, CosignatureError, KeyFormatError, NoteError, ProtocolError, UsageError
from protocol.note import Note, Verifier, parse_note

#: Bounds (our choice). C2SP recommends supporting at least 32 logs, 32 witnesses and
#: 32 groups; we accept eight times that, and no more, so a policy cannot make a
#: verifier do unbounded work.
MAX_POLICY_BYTES = 256 * 1024
MAX_LOGS = 256
MAX_WITNESSES = 256
MAX_GROUPS = 256
MAX_LINE_BYTES = 4096

NONE = "none"
_ALLOWED_BYTES = re.compile(rb"[^\t\n\x20-\x7e\x80-\xff]")
_SEPARATOR = re.compile(r"[ \t]+")
_DECIMAL = re.compile(r"[0-9]{1,6}")


class PolicyError(ProtocolError):
    """A policy file that does not follow C2SP tlog-policy (or exceeds our bounds)."""


class QuorumNotMet(CosignatureError):
    """A checkpoint's valid cosignatures do not satisfy the policy's quorum."""


@dataclass(frozen=True)
class PolicyLog:
    verifier: Verifier
    url: str | None = None


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    verifier: CosignatureVerifier
    url: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    k: int
    members: tuple[str, ...]
    spelled: str = ""          # "all", "any" or "" (numeric): how to print k back

    def threshold_text(self) -> str:
        return self.spelled or str(self.k)


@dataclass(frozen=True)
class Policy:
    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[Group, ...]
    quorum: str

    @property
    def witness_by_name(self) -> dict[str, PolicyWitness]:
        return {w.name: w for w in self.witnesses}

    @property
    def group_by_name(self) -> dict[str, Group]:
        return {g.name: g for g in self.groups}

    def to_bytes(self) -> bytes:
        """The policy as a file: logs, witnesses, groups in definition order, quorum
        (names and URLs byte for byte as they were parsed)."""
        lines = [" ".join(["log", log.verifier.vkey] + ([log.url] if log.url else [])) for log in self.logs]
        lines += [" ".join(["witness", w.name, w.verifier.vkey] + ([w.url] if w.url else []))
                  for w in self.witnesses]
        lines += [" ".join(["group", g.name, g.threshold_text(), *g.members]) for g in self.groups]
        lines.append(f"quorum {self.quorum}")
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")

    def describe(self) -> str:
        """The quorum in words, for people ("2 of w1, w2, w3")."""
        return _describe(self, self.quorum)

    @classmethod
    def k_of_n(cls, witness_vkeys: Iterable[str], k: int, log_vkeys: Iterable[str] = ()) -> "Policy":
        """The policy that `--witness VKEY ... -k K` flags mean: any K of the listed
        witnesses (each counted once), K = 0 meaning no cosignature is needed. Raises
        PolicyError for a bad key or K outside 0..n."""
        text = [f"log {v}" for v in log_vkeys]
        unique = list(dict.fromkeys(witness_vkeys))
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(unique):
            raise PolicyError(f"k must be between 0 and the number of witnesses ({len(unique)}), not {k!r}")
        # Each witness is named by its key's name (people read these), or w1..wn when
        # two share one or a name cannot be a policy name.
        names = [v.split("+", 1)[0] for v in unique]
        if len(set(names)) != len(names) or any(n in (NONE, "witnesses") or not n for n in names):
            names = [f"w{i}" for i in range(1, len(unique) + 1)]
        text += [f"witness {name} {v}" for name, v in zip(names, unique)]
        if k == 0:
            text.append(f"quorum {NONE}")
        elif len(unique) == 1:
            text.append(f"quorum {names[0]}")
        else:
            text.append(f"group witnesses {k} " + " ".join(names))
            text.append("quorum witnesses")
        return parse_policy(("\n".join(text) + "\n").encode("utf-8"))


def _describe(policy: Policy, name: str) -> str:
    if name == NONE:
        return "no cosignature"
    group = policy.group_by_name.get(name)
    if group is None:
        return f"witness {name}"
    members = ", ".join(m if m in policy.witness_by_name else f"({_describe(policy, m)})" for m in group.members)
    return f"{group.k} of {members}"


def _fail(number: int, message: str) -> PolicyError:
    return PolicyError(f"policy line {number}: {message}")


def parse_policy(data: bytes) -> Policy:
    """Parse a C2SP tlog-policy file strictly; raises PolicyError naming the line."""
    if not isinstance(data, (bytes, bytearray)):
        raise UsageError(f"a policy must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy is {len(data)} bytes; at most {MAX_POLICY_BYTES} are accepted")
    bad = _ALLOWED_BYTES.search(data)
    if bad:
        hint = " (Windows line ends are not allowed)" if bad.group() == b"\r" else ""
        raise PolicyError(f"policy contains the control byte 0x{bad.group()[0]:02x}{hint}", offset=bad.start())
    if data and not data.endswith(b"\n"):
        raise PolicyError("policy must end with a newline (every line ends in one)")
    logs: list[PolicyLog] = []
    witnesses: dict[str, PolicyWitness] = {}
    groups: dict[str, Group] = {}
    quorum: str | None = None
    # Octets with the high bit set are opaque (C2SP): surrogateescape keeps each one
    # distinct, so names compare as byte strings, whatever the Unicode version.
    for number, raw in enumerate(data.split(b"\n")[:-1] if data else [], start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise _fail(number, f"line is longer than {MAX_LINE_BYTES} bytes")
        line = raw.decode("utf-8", "surrogateescape").strip(" \t")
        if not line or line.startswith("#"):
            continue
        keyword, *items = _SEPARATOR.split(line)
        if keyword == "log":
            if not 1 <= len(items) <= 2:
                raise _fail(number, "a log line is `log <vkey> [<url>]`")
            verifier = _key(number, items[0], Verifier, "log")
            if any(log.verifier.public_key == verifier.public_key for log in logs):
                raise _fail(number, "the same log key is listed twice")
            if len(logs) >= MAX_LOGS:
                raise _fail(number, f"more than {MAX_LOGS} logs")
            logs.append(PolicyLog(verifier, items[1] if len(items) == 2 else None))
        elif keyword == "witness":
            if not 2 <= len(items) <= 3:
                raise _fail(number, "a witness line is `witness <name> <vkey> [<url>]`")
            name = _new_name(number, items[0], witnesses, groups)
            verifier = _key(number, items[1], CosignatureVerifier, "witness")
            if any(w.verifier.public_key == verifier.public_key for w in witnesses.values()):
                raise _fail(number, "the same witness key is listed twice")
            if len(witnesses) >= MAX_WITNESSES:
                raise _fail(number, f"more than {MAX_WITNESSES} witnesses")
            witnesses[name] = PolicyWitness(name, verifier, items[2] if len(items) == 3 else None)
        elif keyword == "group":
            if len(items) < 3:
                raise _fail(number, "a group line is `group <name> all|any|<k> <name>...` with at least one member")
            name = _new_name(number, items[0], witnesses, groups)
            threshold, members = items[1], tuple(items[2:])
            for member in members:
                if member == NONE:
                    raise _fail(number, "`none` cannot be a group member")
                if member not in witnesses and member not in groups:
                    raise _fail(number, f"group member {_show(member)} is not a witness or group defined above")
            if len(set(members)) != len(members):
                raise _fail(number, "a group lists the same member twice")
            if threshold == "all":
                k, spelled = len(members), "all"
            elif threshold == "any":
                k, spelled = 1, "any"
            elif _DECIMAL.fullmatch(threshold):
                k, spelled = int(threshold), ""
                if not 1 <= k <= len(members):
                    raise _fail(number, f"threshold {k} is not between 1 and the {len(members)} member(s)")
            else:
                raise _fail(number, f"threshold {_show(threshold)} is not all, any or a decimal number")
            if len(groups) >= MAX_GROUPS:
                raise _fail(number, f"more than {MAX_GROUPS} groups")
            groups[name] = Group(name, k, members, spelled)
        elif keyword == "quorum":
            if len(items) != 1:
                raise _fail(number, "a quorum line is `quorum <name>`")
            if quorum is not None:
                raise _fail(number, "a second quorum line (a policy has exactly one)")
            if items[0] != NONE and items[0] not in witnesses and items[0] not in groups:
                raise _fail(number, f"quorum {_show(items[0])} is not none, nor a witness or group defined above")
            quorum = items[0]
        else:
            raise _fail(number, f"unknown line type {_show(keyword)} (expected log, witness, group or quorum)")
    if quorum is None:
        raise PolicyError("policy has no quorum line (write `quorum none` to need no cosignature)")
    return Policy(tuple(logs), tuple(witnesses.values()), tuple(groups.values()), quorum)


def _show(text: str) -> str:
    return repr(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:60])


def _new_name(number: int, name: str, witnesses: dict, groups: dict) -> str:
    if name == NONE:
        raise _fail(number, "`none` is predefined and cannot be redefined")
    if name in witnesses or name in groups:
        raise _fail(number, f"the name {_show(name)} is already defined")
    return name


def _key(number: int, vkey: str, kind: type, what: str):
    try:
        return kind.from_vkey(vkey)
    except KeyFormatError as exc:
        raise _fail(number, f"not a {what} key: {exc}") from None


# --------------------------------------------------------------------------
# Checking checkpoints against a policy


@dataclass
class QuorumResult:
    """Which policy witnesses validly cosigned a note, and whether the quorum holds."""

    met: bool
    cosigned: dict[str, int] = field(default_factory=dict)   # witness name -> timestamp
    explanation: str = ""


def check_quorum(policy: Policy, note: bytes | Note) -> QuorumResult:
    """Verify every cosignature line of a policy witness on `note` (bytes, or a parsed
    Note whose text is the checkpoint) and evaluate the quorum. Raises
    CosignatureError if a line naming a policy witness (name and key ID) does not
    verify; lines of other keys are ignored. The result says whether the quorum is met."""
    parsed = parse_note(note) if isinstance(note, (bytes, bytearray)) else note
    cosigned: dict[str, int] = {}
    for witness in policy.witnesses:
        v = witness.verifier
        if any(s.name == v.name and s.key_id == v.key_id for s in parsed.signatures):
            cosigned[witness.name] = v.verify(parsed)   # raises CosignatureError if a line fails
    met = _witnessed(policy, policy.quorum, cosigned, {})
    names = ", ".join(sorted(cosigned)) or "no policy witness"
    explanation = (f"quorum {'met' if met else 'NOT met'}: it needs {policy.describe()}; "
                   f"valid cosignatures from {names}")
    return QuorumResult(met, cosigned, explanation)


def _witnessed(policy: Policy, name: str, cosigned: dict, memo: dict) -> bool:
    if name == NONE:
        return True
    if name in cosigned:
        return True
    group = policy.group_by_name.get(name)
    if group is None:
        return False          # a witness without a valid cosignature
    if name not in memo:      # groups only name earlier definitions: no cycle
        memo[name] = sum(_witnessed(policy, m, cosigned, memo) for m in group.members) >= group.k
    return memo[name]


@dataclass
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    note: Note
    log_key: str                # vkey of the log key that verified
    quorum: QuorumResult


def verify_checkpoint(policy: Policy, data: bytes, *, origin: str | None = None,
                      log_keys: Iterable[Verifier] = ()) -> VerifiedCheckpoint:
    """A checkpoint is valid under a policy (C2SP tlog-policy) if it is signed by one of
    the policy's logs (whose key name is the origin) and cosigned according to its
    quorum. `log_keys` adds log keys known from other context (C2SP: "the appropriate
    log(s) are known from other context"); with them, `origin` must be given and their
    names need not equal it. Raises NoteError or CheckpointError (not signed by an
    acceptable log), CosignatureError (a bad cosignature) or QuorumNotMet."""
    context_keys = list(log_keys)
    opened = None
    if policy.logs:
        try:
            cp, opened = open_checkpoint(data, [log.verifier for log in policy.logs], origin=origin)
        except (NoteError, CheckpointError):
            if not context_keys:
                raise
    if opened is None:
        if not context_keys:
            raise CheckpointError("the policy lists no log and no log key was given: nothing can vouch for "
                                  "the checkpoint")
        if origin is None:
            raise UsageError("verify_checkpoint: log keys from context need the origin they are trusted for")
        cp, opened = open_checkpoint(data, context_keys, origin=origin, key_name_is_origin=False)
    quorum = check_quorum(policy, opened)
    if not quorum.met:
        raise QuorumNotMet(f"checkpoint {cp.origin} size {cp.size}: {quorum.explanation}")
    log_key = next(v for v in opened.verified_by if isinstance(v, Verifier))
    return VerifiedCheckpoint(cp, opened, log_key.vkey, quorum)
