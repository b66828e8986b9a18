"""What a follower knows about a followed log's push channel (spec/parts/following.md §4.1).

A publishing node advertises in /node.json

    "push": {"checkpoint": "push/checkpoint", "max_wait": 30}

(a path relative to the log's URL prefix, and the longest wait it grants). The
follower then holds one signed GET <prefix>/<path>?wait=<s> open per log, with
If-None-Match naming the checkpoint it last got, and runs a round as soon as the
answer brings another one (node/follow/scheduler.py). Everything the answer says is
verified like a polled checkpoint; the advertisement itself is believed only as far
as it says where to ask: a wrong one costs a 404 and a return to polling.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

#: The longest wait a follower asks for, whatever the node advertises (a reverse proxy
#: in between should keep a request open at least this long).
MAX_WAIT = 60
#: An advertised path: relative, a few safe characters, no "..".
_PATH = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*){0,3}")


@dataclass
class PushState:
    path: str | None = None       # where to wait; None: not offered, or not known yet
    wait: int = 30                # seconds asked per request
    etag: str | None = None       # ETag of the last checkpoint received and handled
    verified: bool = False        # that checkpoint was verified (a 304 then means in sync)
    failures: int = 0             # consecutive failed push requests
    retry_at: float = 0.0         # (monotonic) no push request before this: poll meanwhile
    checked_at: float | None = None  # (monotonic) last look at /node.json
    last_request: float = 0.0     # (monotonic) when the last push request was sent

    def usable(self, now: float) -> bool:
        return self.path is not None and now >= self.retry_at

    def forget(self) -> None:
        """The next request names no checkpoint: it is answered at once."""
        self.etag, self.verified = None, False


def parse_advertisement(body: bytes) -> tuple[str, int] | None:
    """(path, wait) from a /node.json document, or None if it offers no usable push
    channel (absent, null, or malformed: a follower then simply polls)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    push = doc.get("push") if isinstance(doc, dict) else None
    if not isinstance(push, dict):
        return None
    path, max_wait = push.get("checkpoint"), push.get("max_wait")
    if not isinstance(path, str) or len(path) > 64 or not _PATH.fullmatch(path) or ".." in path:
        return None
    if type(max_wait) is not int or not 1 <= max_wait <= 3600:
        return None
    return path, min(max_wait, MAX_WAIT)
