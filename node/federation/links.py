"""What linking this node to another one writes, and what unlinking removes: the
other's request key as a reader, its log followed with its key pinned, or a gossip
peer, as the roles require (node/invitation.py `plan`). `ncii-node join` and the
federation list's approved changes both go through here.

Each call runs inside the caller's transaction (`with db.atomic()`), checks before it
writes, and returns the lines that tell the operator what was done.
"""

from __future__ import annotations

from node.follow.gossip import DEFAULT_GOSSIP_INTERVAL as GOSSIP_INTERVAL
from node.invitation import Invitation, plan
from node.readaccess import request_key_id


class LinkError(ValueError):
    """The link would contradict what the operator set up; nothing was written."""


def conflict(db, member: Invitation, own_role: str) -> str | None:
    """Why linking `member` would contradict this node's setup, or None."""
    followed = db.follow.get_log(member.origin)
    if "follow" in plan(own_role, member.role) and followed is not None and \
            (followed.vkey != member.log_vkey or followed.url.rstrip("/") != member.url):
        return (f"{member.origin} is already followed with another "
                f"{'key' if followed.vkey != member.log_vkey else 'URL'} ({followed.url}, {followed.vkey})")
    return None


def link(db, member: Invitation, name: str, own_role: str) -> list[str]:
    """Register, follow or peer with `member` (idempotent); raises LinkError."""
    problem = conflict(db, member, own_role)
    if problem:
        raise LinkError(problem)
    steps, done = plan(own_role, member.role), []
    if "reader" in steps:
        added = db.readers.add_reader(member.request_vkey, name, request_key_id(member.request_vkey))
        done.append(("registered" if added else "already registered") +
                    f" {member.origin} as a reader of this log ({member.request_vkey})")
    if "follow" in steps:
        if db.follow.get_log(member.origin) is None:
            db.follow.add_log(member.origin, member.url, member.log_vkey, name)
            done.append(f"following {member.origin} at {member.url} as {name!r}, its key pinned ({member.log_vkey})")
        else:
            done.append(f"already following {member.origin} at {member.url} with that key")
    if "peer" in steps:
        added = db.follow.add_gossip_peer(member.url, GOSSIP_INTERVAL)
        done.append(f"{'comparing' if added else 'already comparing'} views with {member.url} "
                    f"every {GOSSIP_INTERVAL:g} s")
    return done


def unlink(db, member: Invitation, own_role: str, *, keep_log: bool = False) -> list[str]:
    """Undo `link(member)`: revoke its reader, stop following its log (forgetting its
    fingerprints) unless `keep_log`, stop comparing views. A log followed with another
    key than the member's is the operator's own choice and is left alone."""
    steps, done = plan(own_role, member.role), []
    if "reader" in steps and db.readers.remove_reader(member.request_vkey):
        done.append(f"revoked the reader {member.origin} ({member.request_vkey})")
    followed = db.follow.get_log(member.origin)
    if "follow" in steps and not keep_log and followed is not None and followed.vkey == member.log_vkey:
        db.follow.remove_log(member.origin)
        done.append(f"no longer following {member.origin}; its fingerprints were removed")
    if "peer" in steps and db.follow.remove_gossip_peer(member.url):
        done.append(f"no longer comparing views with {member.url}")
    return done


def relink(db, old: Invitation, new: Invitation, name: str, own_role: str) -> list[str]:
    """Move the link from `old` to `new` (same origin): a changed role or log key is
    linked afresh (the log is verified again from its start under the new key); a
    changed request key only swaps the reader; a changed URL or name is followed there."""
    if (old.role, old.log_vkey) != (new.role, new.log_vkey):
        return unlink(db, old, own_role) + link(db, new, name, own_role)
    done = []
    if old.request_vkey != new.request_vkey and db.readers.remove_reader(old.request_vkey):
        done.append(f"revoked the former request key of {old.origin} ({old.request_vkey})")
    if old.url != new.url and "peer" in plan(own_role, old.role) and db.follow.remove_gossip_peer(old.url):
        done.append(f"no longer comparing views with {old.url}")
    followed = db.follow.get_log(new.origin)
    if followed is not None and followed.vkey == new.log_vkey:
        if followed.url.rstrip("/") != new.url:
            db.follow.set_url(new.origin, new.url)
            done.append(f"following {new.origin} at {new.url} now")
        if followed.name == old.name and old.name != name:
            db.follow.set_name(new.origin, name)
            done.append(f"{new.origin} is now named {name!r}")
    return done + [line for line in link(db, new, name, own_role) if not line.startswith("already")]
