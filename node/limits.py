"""The process's limit on open files, which bounds the sockets a node can hold.

Every follower of this node's log keeps a connection open (its push-channel wait,
spec/parts/following.md §4.1), and every log this node follows costs one or two
more; at 500 nodes a helpline holds about 800 sockets, above the soft limit of 1,024
open files that many systems give a process. `serve` therefore raises its soft limit
to the hard limit at start (no privilege needed; systemd's default hard limit is
524,288, Docker's 1,048,576), and sizes the push channel's waiting room to what is
left after RESERVED_FILES for everything else (database, logs, requests, followers).
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

#: Open files kept for everything but waiting push requests.
RESERVED_FILES = 512
#: The waiting room never shrinks below this (a tiny limit is the operator's to raise).
MIN_WAITING = 64


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the limit of open files from %d to %d: %s", soft, target, exc)
    return soft


def open_files_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 30 if soft == resource.RLIM_INFINITY else soft


def waiting_room_size(configured: int) -> int:
    """[push] max_waiting, lowered (with a warning) to fit the open-files limit."""
    room = max(MIN_WAITING, open_files_limit() - RESERVED_FILES)
    if configured <= room:
        return configured
    log.warning("[push] max_waiting = %d does not fit the limit of %d open files: at most %d followers wait "
                "at once (others poll); raise the hard limit (systemd: LimitNOFILE=, ulimit -Hn)",
                configured, open_files_limit(), room)
    return room
