"""The push channel's advertisement, and what a follower knows about a followed log's
push channel (spec/parts/following.md §4.1).

A publishing node advertises in /node.json (`advertisement(config)`; the channel
itself is node/web/push_routes.py)

    "push": {"checkpoint": "push/checkpoint", "max_wait": 30}

(a path relative to the log's URL prefix, and the longest wait it grants). The
follower then holds one signed GET <prefix>/<path>?wait=<s> open per log, with
If-None-Match naming the checkpoint it last got, and runs a round as soon as the
answer brings another one (node/follow/scheduler.py). Everything the answer says is
verified like a polled checkpoint; the advertisement itself is believed only as far
as it says where to ask: a wrong one costs a 404 and a return to polling.

A node that advertises `"parts": true` also carries, when the follower names the size
it holds (`have=<size>`) and the log grew by at most MAX_PART_ENTRIES, the tiles and
entry bundles of the round the answer starts, in one body (`encode_parts` /
`parse_parts`): a follower at the head then makes one request per checkpoint instead of
three. Those bytes stand in for the GETs the round would make and are checked exactly
like fetched ones (node/follow/client.py, node/follow/sync.py): nothing in them is
believed before it verifies against the signed checkpoint.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from protocol.errors import TileError
from protocol.tiles import BundleId, TileId, new_bundles, parse_tile_path, tiles_for_update

#: Where a node serves its push channel.
PUSH_PATH = "/push/checkpoint"
#: The longest wait a follower asks for, whatever the node advertises (a reverse proxy
#: in between should keep a request open at least this long).
MAX_WAIT = 60
#: Media type of a push answer that carries its round's tiles and bundles.
PARTS_TYPE = "application/x-ncii-push-parts"
#: Largest growth whose tiles and bundles ride along with the checkpoint; a follower
#: further behind fetches them (a round's reads then number in the hundreds anyway).
MAX_PART_ENTRIES = 256
#: Bounds of a parts body: at most this many parts (a growth of 256 entries touches at
#: most two tiles per level and two bundles), and this many bytes in all.
MAX_PARTS = 48
MAX_PARTS_BYTES = 1024 * 1024
_PART_HEADER = re.compile(rb"([a-z0-9./]{1,64}) (0|[1-9][0-9]{0,7})\n")
#: An advertised path: relative, a few safe characters, no "..".
_PATH = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*){0,3}")


@dataclass
class PushState:
    path: str | None = None       # where to wait; None: not offered, or not known yet
    parts: bool = False           # the node sends a round's tiles with its checkpoint on `have=`
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


def advertisement(config) -> dict | None:
    """What /node.json says about this node's push channel (None when it is off)."""
    if not config.push.enabled:
        return None
    return {"checkpoint": PUSH_PATH.lstrip("/"), "max_wait": config.push.max_wait, "parts": True}


def parse_advertisement(body: bytes) -> tuple[str, int] | None:
    """(path, wait) from a /node.json document, or None if it offers no usable push
    channel (absent, null, or malformed: a follower then simply polls). Whether it
    sends parts: `offers_parts`."""
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


def offers_parts(body: bytes) -> bool:
    """Whether a /node.json document (whose push channel parse_advertisement accepted)
    says the channel sends a round's tiles and bundles with its checkpoint."""
    try:
        return json.loads(body.decode("utf-8"))["push"].get("parts") is True
    except (UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return False


def part_ids(have: int, size: int) -> list[TileId | BundleId]:
    """What a follower holding `have` entries reads to verify a checkpoint of `size`
    (node/follow/sync.py's round): the tiles new or wider in `size`, its unchanged
    partial tiles, and the new or wider entry bundles."""
    return [*tiles_for_update(have, size), *new_bundles(have, size)]


def encode_parts(note: bytes, parts: list[tuple[str, bytes]]) -> bytes:
    """A parts body: "checkpoint <length>\n" and the note, then "<path> <length>\n" and
    the bytes of each tile or bundle (path as in the log's URL, without leading "/")."""
    out = [b"checkpoint %d\n" % len(note), note]
    for path, data in parts:
        out += [b"%s %d\n" % (path.encode("ascii"), len(data)), data]
    return b"".join(out)


def parse_parts(body: bytes) -> tuple[bytes, dict[str, bytes]]:
    """(note, {canonical tile or bundle path: bytes}) of a parts body, parsed strictly:
    the checkpoint first, then canonical tile paths, none twice, lengths exact, nothing
    after the last part, within MAX_PARTS and MAX_PARTS_BYTES. Raises ValueError.
    The bytes are NOT verified here: they only stand in for the fetches of a round."""
    if len(body) > MAX_PARTS_BYTES:
        raise ValueError(f"push answer of {len(body)} bytes, more than the {MAX_PARTS_BYTES} allowed")
    at, note, parts = 0, None, {}
    while at < len(body):
        header = _PART_HEADER.match(body, at, at + 75)
        if header is None:
            raise ValueError(f"malformed part header at byte {at}")
        name, length = header.group(1).decode("ascii"), int(header.group(2))
        start, at = header.end(), header.end() + length
        if at > len(body):
            raise ValueError(f"part {name!r} is cut short")
        if note is None:
            if name != "checkpoint":
                raise ValueError("the first part must be the checkpoint")
            note = body[start:at]
            continue
        try:
            canonical = parse_tile_path(name).path()
        except TileError as exc:
            raise ValueError(f"part {name!r}: {exc}") from None
        if canonical != name or name in parts:
            raise ValueError(f"part {name!r} is not a canonical tile path, or comes twice")
        if len(parts) == MAX_PARTS:
            raise ValueError(f"more than {MAX_PARTS} parts")
        parts[name] = body[start:at]
    if note is None:
        raise ValueError("empty push answer")
    return note, parts
