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

A node that advertises `"stream": "push/stream"` also answers one signed request with a
stream of checkpoints (§4.3, node/web/push_stream_routes.py): a chunked body of frames,
`"frame" SP <length> LF` and a parts body each (`encode_frame`; the follower reads them
with `FrameReader`, which never holds more than one frame), one per new checkpoint,
until `wait` seconds have passed. A new checkpoint then costs the node one write per
follower instead of a signed request.
"""

from __future__ import annotations

import hashlib
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
#: Where a node serves its stream of checkpoints (§4.3).
STREAM_PATH = "/push/stream"
#: Media type of a push answer that carries its round's tiles and bundles.
PARTS_TYPE = "application/x-ncii-push-parts"
#: Media type of a stream of frames, each a parts body.
STREAM_TYPE = "application/x-ncii-push-stream"
#: Largest growth whose tiles and bundles ride along with the checkpoint; a follower
#: further behind fetches them (a round's reads then number in the hundreds anyway).
MAX_PART_ENTRIES = 256
#: Bounds of a parts body: at most this many parts (a growth of 256 entries touches at
#: most two tiles per level and two bundles), and this many bytes in all.
MAX_PARTS = 48
MAX_PARTS_BYTES = 1024 * 1024
_PART_HEADER = re.compile(rb"([a-z0-9./]{1,64}) (0|[1-9][0-9]{0,7})\n")
#: A frame's header line: "frame <length>\n", the length at most MAX_PARTS_BYTES.
_FRAME_HEADER = re.compile(rb"frame (0|[1-9][0-9]{0,6})\n")
_MAX_FRAME_HEADER = len(b"frame 1234567\n")
#: An advertised path: relative, a few safe characters, no "..".
_PATH = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*){0,3}")


@dataclass
class PushState:
    path: str | None = None       # where to wait; None: not offered, or not known yet
    stream: str | None = None     # where to hold a stream of checkpoints (§4.3), if offered
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


def checkpoint_etag(note: bytes) -> str:
    """The strong ETag of a checkpoint note as served (also what a follower names after
    a streamed frame, which carries no header of its own)."""
    return '"' + hashlib.sha256(note).hexdigest()[:32] + '"'


def advertisement(config) -> dict | None:
    """What /node.json says about this node's push channel (None when it is off)."""
    if not config.push.enabled:
        return None
    offered = {"checkpoint": PUSH_PATH.lstrip("/"), "max_wait": config.push.max_wait, "parts": True}
    if config.push.stream:
        offered["stream"] = STREAM_PATH.lstrip("/")
    return offered


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
    if not _valid_path(path):
        return None
    if type(max_wait) is not int or not 1 <= max_wait <= 3600:
        return None
    return path, min(max_wait, MAX_WAIT)


def _valid_path(path) -> bool:
    return isinstance(path, str) and len(path) <= 64 and bool(_PATH.fullmatch(path)) and ".." not in path


def _offered(body: bytes, key: str):
    try:
        return json.loads(body.decode("utf-8"))["push"].get(key)
    except (UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None


def offers_parts(body: bytes) -> bool:
    """Whether a /node.json document (whose push channel parse_advertisement accepted)
    says the channel sends a round's tiles and bundles with its checkpoint."""
    return _offered(body, "parts") is True


def offered_stream(body: bytes) -> str | None:
    """The stream path a /node.json document (whose push channel parse_advertisement
    accepted) offers (§4.3), or None (absent or malformed: the follower then uses the
    push channel's single answers)."""
    path = _offered(body, "stream")
    return path if _valid_path(path) else None


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


def encode_frame(parts_body: bytes) -> bytes:
    """One frame of a stream (§4.3): "frame <length>\n" and a parts body."""
    return b"frame %d\n" % len(parts_body) + parts_body


class FrameReader:
    """Splits a stream of frames, strictly and bounded: a header "frame <length>\n"
    (decimal, no leading zero, at most MAX_PARTS_BYTES), then exactly that many bytes.
    Read at most `wanted()` bytes at a time and `feed` them; `next_frame()` returns
    each complete frame's body. The buffer never holds more than the frame being read
    and a header's worth of bytes. Raises ValueError on anything else. Pure: no I/O."""

    def __init__(self):
        self._buffer = bytearray()
        self._length: int | None = None   # of the frame being read, once its header is

    @property
    def between_frames(self) -> bool:
        """Nothing of a next frame read yet (where a stream may end cleanly)."""
        return not self._buffer and self._length is None

    def wanted(self) -> int:
        if self._length is None:
            return _MAX_FRAME_HEADER
        return max(1, self._length - len(self._buffer))

    def feed(self, data: bytes) -> None:
        if len(data) > self.wanted():
            raise ValueError("more bytes than asked for")  # the caller's bug, not the node's
        self._buffer += data

    def next_frame(self) -> bytes | None:
        if self._length is None:
            end = self._buffer.find(b"\n", 0, _MAX_FRAME_HEADER)
            if end < 0:
                if len(self._buffer) >= _MAX_FRAME_HEADER:
                    raise ValueError("malformed frame header")
                return None
            header = _FRAME_HEADER.fullmatch(bytes(self._buffer[:end + 1]))
            if header is None:
                raise ValueError(f"malformed frame header {bytes(self._buffer[:end + 1])[:40]!r}")
            length = int(header.group(1))
            if length > MAX_PARTS_BYTES:
                raise ValueError(f"frame of {length} bytes, more than the {MAX_PARTS_BYTES} allowed")
            self._length = length
            del self._buffer[:end + 1]
        if len(self._buffer) < self._length:
            return None
        frame = bytes(self._buffer[:self._length])
        del self._buffer[:self._length]
        self._length = None
        return frame
