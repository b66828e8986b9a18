"""Following a federation membership list: fetch a version, accept it or refuse it,
apply what needs no trust decision, and let the operator approve or reject the rest
(spec/parts/joining.md §3).

A version is accepted only if it verifies (k of the subscription's list keys), names
the same federation as the versions before it, and has a higher serial than the
newest accepted one. The same serial with the same bytes is "unchanged"; with other
bytes it is refused as equivocation (two lists of one serial: a list key is misused
or stolen). When the list has its append-only log (node/federation/logfollow.py), the
version must also be the last entry of a checkpoint consistent with the one accepted
before: a rollback or a version not in the log is refused; a fork is kept with its
evidence (`record_fork`) and from then on nothing is accepted from the list. Anything
refused leaves every table as it was; the error is recorded for `status`.

What changed (node/federation/members.py `changes`) between the members this node set
up from the list and the newest version:
- a new URL for a member: applied at once (its keys stay pinned; nothing is trusted
  more);
- a member removed: unlinked (reader revoked, log no longer followed, gossip stopped)
  once approved, or at once when the subscription says `auto_remove`;
- a new member, a changed key or role, a new name (people are shown it): pending
  until the operator approves or rejects it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from node.federation import links
from node.federation.logfollow import Fetched, FetchRefused, ListForked, Trust, fetch_list
from node.federation.members import Change, ListError, MemberList, changes, open_list, parse_text
from node.follow import forks
from node.invitation import Invitation
from protocol import evidence as evidence_mod
from protocol.checkpoint import Checkpoint
from protocol.note import parse_note

log = logging.getLogger(__name__)


class SubscriptionError(ValueError):
    """The list was refused, or there is no subscription; the message says why."""


@dataclass(frozen=True)
class Own:
    """This node, as the list's changes concern it."""

    role: str
    origin: str


@dataclass
class Outcome:
    """What one fetched version did: "unchanged" or "accepted" (with the serial),
    the lines of what was applied at once, and the changes now pending."""

    result: str
    serial: int
    applied: list[str]
    pending: list[Change]


def trust_of(subscription) -> Trust:
    return Trust(tuple(subscription.list_vkeys), subscription.quorum, subscription.federation,
                 subscription.checkpoint, subscription.witnesses, subscription.witness_quorum,
                 subscription.note if subscription.checkpoint else None)


async def fetch(url: str, trust: Trust) -> Fetched:
    """The list at `url`, through its log when it has one (node/federation/logfollow.py);
    raises SubscriptionError, or ListForked (to be recorded with `record_fork`)."""
    try:
        return await fetch_list(url, trust)
    except ListForked:
        raise
    except FetchRefused as exc:
        raise SubscriptionError(str(exc)) from None


async def update(call, url: str, trust: Trust, own: Own, evidence_dir: Path | None) -> Outcome:
    """Fetch the list and accept it; `call(fn)` awaits fn(db) in the database's thread.
    Raises SubscriptionError, recorded for `status` (a fork recorded as such)."""
    try:
        fetched = await fetch(url, trust)
    except (ListForked, SubscriptionError) as exc:
        if isinstance(exc, ListForked):
            raise SubscriptionError(await call(lambda db: record_fork(db, exc, evidence_dir))) from None
        await call(lambda db: db.federation.record_check(str(exc)) if db.federation.subscription() else None)
        raise
    return await call(lambda db: accept(db, fetched, own))


def record_fork(db, forked: ListForked, evidence_dir: Path | None) -> str:
    """Keep a split view of the list's log as a followed log's fork is kept
    (node/follow/forks.py: evidence document, file, GET /witness/evidence); from now
    on nothing is accepted from the list. Returns the message recorded."""
    subscription = db.federation.subscription()
    if subscription is None:  # unfollowed meanwhile
        return str(forked)
    sizes = [Checkpoint.parse(parse_note(n).text).size for n in (forked.earlier, forked.later)]
    doc = path = problem = None
    for vkey in subscription.list_vkeys:  # the evidence names one key that signed both checkpoints
        doc, path, problem = forks.evidence_for_fork(sizes[0], forked.earlier, sizes[1], forked.later, vkey=vkey,
                                                     larger_tree=forked.tree, evidence_dir=evidence_dir,
                                                     sources=["federation list " + subscription.url],
                                                     no_dir="the evidence is kept in the database only",
                                                     doc=forked.doc)
        if doc is not None:
            break
    message = (f"{forked}; evidence {'written to ' + path if path else 'not written: ' + str(problem)}; nothing "
               "is accepted from this list any more (ask the federation; `federation unfollow` then `follow` "
               "again to start afresh)")
    db.federation.record_fork({"reason": forked.reason, "checkpoints": [forked.earlier.decode(), forked.later.decode()],
                               "evidence_path": path, "evidence_problem": problem}, message)
    if doc is not None:
        db.witness.store_evidence(Checkpoint.parse(parse_note(forked.later).text).origin, evidence_mod.dumps(doc))
    log.critical("federation: %s", message)
    return message


def newest(db) -> MemberList | None:
    """The newest accepted version (verified when it was accepted)."""
    subscription = db.federation.subscription()
    if subscription is None or subscription.note is None:
        return None
    return parse_text(parse_note(subscription.note).text)


def accept(db, fetched: Fetched | bytes, own: Own) -> Outcome:
    """Accept the fetched list (bytes: a plain signed list, without a log) as the newest
    version and apply what needs no decision, in one transaction; raises
    SubscriptionError (and records why) if it is refused."""
    if isinstance(fetched, bytes):
        fetched = Fetched(fetched, None)
    data = fetched.data
    try:
        with db.atomic():
            subscription = db.federation.subscription()
            if subscription is None:
                raise SubscriptionError("this node follows no federation list (`ncii-node federation follow`)")
            check_log(subscription, fetched)
            try:
                member_list = open_list(data, list(subscription.list_vkeys), subscription.quorum)
            except ListError as exc:
                raise SubscriptionError(str(exc)) from None
            check_version(subscription, member_list, data)
            if subscription.serial == member_list.serial:
                db.federation.record_check(None)
                if fetched.checkpoint is not None and fetched.checkpoint != subscription.checkpoint:
                    db.federation.set_checkpoint(fetched.checkpoint)  # a plain list now published as a log
                return Outcome("unchanged", member_list.serial, [], pending(db, own))
            db.federation.accept(member_list.federation, member_list.serial, data, checkpoint=fetched.checkpoint)
            applied = apply_automatic(db, member_list, own, subscription.auto_remove)
    except SubscriptionError as exc:
        if db.federation.subscription() is not None:
            db.federation.record_check(str(exc))
        raise
    return Outcome("accepted", member_list.serial, applied, pending(db, own))


def check_log(subscription, fetched: Fetched) -> None:
    """Refuse anything from a forked list log, a plain list once its log was followed,
    and a checkpoint compared with another than the one kept (another process accepted
    one meanwhile: the next fetch compares with it)."""
    if subscription.fork is not None:
        raise SubscriptionError(f"the federation list's log is FORKED ({subscription.fork['reason']}): nothing is "
                                "accepted from it any more (evidence: "
                                f"{subscription.fork['evidence_path'] or subscription.fork['evidence_problem']})")
    if fetched.checkpoint is None and subscription.checkpoint is not None:
        raise SubscriptionError("a list without its log is refused: this node follows the list's log")
    if fetched.compared_with != subscription.checkpoint:
        raise SubscriptionError("the list's log moved on while this list was fetched; fetch it again")


def check_version(subscription, member_list: MemberList, data: bytes) -> None:
    """Refuse another federation's list, a rollback, and two lists of one serial."""
    if subscription.federation is not None and member_list.federation != subscription.federation:
        raise SubscriptionError(f"the list is of the federation {member_list.federation!r}, not "
                                f"{subscription.federation!r}")
    if subscription.serial is None:
        return
    if member_list.serial < subscription.serial:
        raise SubscriptionError(f"rollback refused: the list has serial {member_list.serial}, older than the "
                                f"serial {subscription.serial} already accepted")
    if member_list.serial == subscription.serial and data != subscription.note:
        raise SubscriptionError(f"refused: another list with the serial {member_list.serial} was accepted "
                                "before (two different lists of one serial: the list key is misused)")


def _applied(db) -> dict[str, Invitation]:
    return {origin: Invitation(**{k: v for k, v in row.items()}) for origin, row in db.federation.applied().items()}


def automatic(change: Change, auto_remove: bool) -> bool:
    """Whether a change is applied without the operator."""
    if change.kind == "remove":
        return auto_remove
    return change.kind == "update" and change.old.name == change.new.name


def apply_automatic(db, member_list: MemberList, own: Own, auto_remove: bool) -> list[str]:
    done = []
    for change in changes(_applied(db), member_list, own.role, own.origin):
        if automatic(change, auto_remove):
            try:
                done += apply(db, change, own)
            except links.LinkError as exc:
                log.warning("federation: %s not applied: %s", change.describe(), exc)
    return done


def pending(db, own: Own) -> list[Change]:
    """The changes waiting for the operator (rejected ones are not shown again)."""
    member_list = newest(db)
    if member_list is None:
        return []
    rejected = db.federation.rejected()
    return [c for c in changes(_applied(db), member_list, own.role, own.origin) if c.id not in rejected]


def apply(db, change: Change, own: Own) -> list[str]:
    """Carry out one change in one transaction; raises links.LinkError (nothing written)."""
    with db.atomic():
        if change.kind == "add":
            done = links.link(db, change.new, change.new.name, own.role)
        elif change.kind == "remove":
            done = links.unlink(db, change.old, own.role)
        else:
            done = links.relink(db, change.old, change.new, change.new.name, own.role)
        if change.new is None:
            db.federation.remove_applied(change.origin)
        else:
            db.federation.set_applied({"origin": change.origin, **{k: getattr(change.new, k) for k in (
                "role", "url", "name", "log_vkey", "request_vkey")}})
    log.info("federation: applied: %s", change.describe())
    return done or [f"{change.describe()}: nothing to change here"]


def decide(db, own: Own, ids: list[str] | None, approve: bool) -> list[str]:
    """Approve (carry out) or reject the pending changes named by `ids` (all if None).
    Returns what was done; raises SubscriptionError for an unknown id."""
    waiting = {c.id: c for c in pending(db, own)}
    chosen = list(waiting) if ids is None else ids
    unknown = [i for i in chosen if i not in waiting]
    if unknown:
        raise SubscriptionError(f"no pending change {', '.join(unknown)} (see `ncii-node federation pending`)")
    done = []
    for change_id in chosen:
        change = waiting[change_id]
        if not approve:
            db.federation.reject(change_id)
            done.append(f"rejected {change_id}: {change.describe()}")
            continue
        try:
            done += [f"approved {change_id}: {change.describe()}"] + ["  " + line for line in apply(db, change, own)]
        except links.LinkError as exc:
            done.append(f"NOT applied {change_id}: {exc}; nothing changed (`ncii-node follow remove` the log "
                        "first if the list is right, or reject the change)")
    return done


def report(db, own: Own) -> dict | None:
    """The list followed, for `ncii-node status` (None: no subscription)."""
    from node.follow.status import iso_time

    subscription = db.federation.subscription()
    if subscription is None:
        return None
    return {"url": subscription.url, "federation": subscription.federation, "serial": subscription.serial,
            "accepted_at": iso_time(subscription.accepted_at), "checked_at": iso_time(subscription.checked_at),
            "last_error": subscription.last_error, "last_error_at": iso_time(subscription.last_error_at),
            "log_size": (Checkpoint.parse(parse_note(subscription.checkpoint).text).size
                         if subscription.checkpoint else None),
            "fork": subscription.fork,
            "witnesses": f"{subscription.witness_quorum} of {len(subscription.witnesses)}"
            if subscription.witness_quorum else None,
            "pending": [{"id": c.id, "change": c.describe()} for c in pending(db, own)]}


def format_report(federation: dict) -> str:
    lines = [f"federation list {federation['federation']} at {federation['url']}: serial {federation['serial']}, "
             f"last checked {federation['checked_at'] or 'never'}"]
    if federation["log_size"] is None:
        lines.append("  a plain signed list, without a log: a split view would not be detected")
    else:
        lines.append(f"  through its append-only log: {federation['log_size']} version(s), each checkpoint verified "
                     "consistent with the one before" + (f", cosigned by {federation['witnesses']} of the "
                                                         "federation's witnesses" if federation["witnesses"] else ""))
    if federation["fork"]:
        fork = federation["fork"]
        lines.append(f"  FORKED: {fork['reason']}; evidence: {fork['evidence_path'] or fork['evidence_problem']}")
    if federation["last_error"]:
        lines.append(f"  REFUSED {federation['last_error_at']}: {federation['last_error']}")
    if federation["pending"]:
        lines.append(f"  {len(federation['pending'])} change(s) WAIT FOR YOUR APPROVAL "
                     "(ncii-node federation approve --dir DIR ID, or reject):")
        lines += [f"    {p['id']}  {p['change']}" for p in federation["pending"]]
    return "\n".join(lines)
