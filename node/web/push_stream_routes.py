"""GET /push/stream: one signed request, many checkpoints (spec/parts/following.md §4.3).

    GET /push/stream?wait=<seconds>[&have=<size>]      If-None-Match: "<etag>"

The answer is a 200 with `Content-Type: application/x-ncii-push-stream`, chunked, held
open for `wait` seconds (1 to [push] max_wait, the default): a frame at once if the
request names no ETag or another than the current checkpoint's, then a frame each time
the served note changes (a new checkpoint, or witness cosignatures added). A frame is
"frame <length>\\n" and a parts body (node/follow/push.py, §4.2): the note, and when
the follower's size is known (`have=` for the first frame; for every later one the size
of the frame before, which the follower has verified) and at most MAX_PART_ENTRIES
behind, the tiles and bundles of its round.
The bodies are those of /push/checkpoint (PartsAnswers), built once per (size,
checkpoint) and shared; the framed bytes are kept too, so a new checkpoint costs the
node one write per follower, not a signed request, a replay-cache entry and an answer.

Bounds, shared with /push/checkpoint (one WaitingRoom: a stream holds one place for
its whole life, a socket and a slot like a waiting request):

  * registered readers only (app[READERS_ONLY]), one signature per stream;
  * [push] max_waiting_per_reader places per reader: one more ends that reader's oldest
    stream at once; [push] max_waiting in all, beyond: 503 with Retry-After;
  * a reader that does not take a frame within WRITE_TIMEOUT seconds (its socket buffers
    full) loses the connection: the node never queues more than one frame for it;
  * a stream ends after `wait` seconds, at once on shutdown (on_shutdown ends every
    place), and within READER_CHECK_INTERVAL once its reader is removed from the
    registry (push_routes._check_readers; no frame is sent after that): a clean end of
    the chunked body, after a whole frame; a stream still writing a frame to a slow
    reader then loses its connection.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from aiohttp import web

from node.follow.push import STREAM_PATH, STREAM_TYPE, checkpoint_etag, encode_frame, encode_parts
from node.web.context import NODE, READERS_ONLY
from node.web.push_routes import PUSH_ROOM, RoomFull, push_request, room_full

STREAM_FRAMES = web.AppKey("push_stream_frames", object)
#: Seconds a frame may take to leave: a reader that reads nothing is cut off.
WRITE_TIMEOUT = 10.0


class Frames:
    """Framed bodies by (have, checkpoint note), shared by every stream at that size."""

    def __init__(self, parts, keep: int = 16):
        self.parts = parts  # push_routes.PartsAnswers
        self.keep = keep
        self._frames: OrderedDict[tuple[int | None, bytes], bytes] = OrderedDict()
        self._last_note: bytes | None = None
        self._last_etag = ""

    def etag(self, note: bytes) -> str:
        """checkpoint_etag(note), computed once per note rather than once per stream."""
        if note is not self._last_note:
            self._last_note, self._last_etag = note, checkpoint_etag(note)
        return self._last_etag

    def frame(self, published, have: int | None, tiles) -> bytes:
        key = (have, published.note)
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
            return frame
        body = self.parts.body(published, have, tiles) if have is not None else None
        frame = encode_frame(body if body is not None else encode_parts(published.note, []))
        self._frames[key] = frame
        while len(self._frames) > self.keep:
            self._frames.popitem(last=False)
        return frame


def setup(app: web.Application, parts) -> None:
    """Called by push_routes.setup when [push] stream is on."""
    app[READERS_ONLY].append(STREAM_PATH)
    app.router.add_get(STREAM_PATH, get_push_stream)
    app[STREAM_FRAMES] = Frames(parts)


async def get_push_stream(request: web.Request) -> web.StreamResponse:
    parsed = push_request(request, "push stream")
    if isinstance(parsed, web.Response):
        return parsed
    reader, wait, have, sent = parsed
    sent = sent or set()
    ctx = request.app[NODE]
    room, frames = request.app[PUSH_ROOM], request.app[STREAM_FRAMES]
    try:
        place = room.enter(reader, wait)
    except RoomFull as exc:
        return room_full(exc)
    response = web.StreamResponse(headers={"Content-Type": STREAM_TYPE, "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        while not place.revoked:
            published = ctx.sequencer.published
            etag = frames.etag(published.note)
            if etag not in sent:
                frame = frames.frame(published, have, ctx.sequencer.tiles)
                # A timer, not wait_for (a task per write): a reader that leaves the frame
                # in its buffers for WRITE_TIMEOUT s loses the connection, and the write
                # fails at once.
                guard = asyncio.get_running_loop().call_later(WRITE_TIMEOUT, _abort, request)
                place.on_close = lambda: _abort(request)  # nor may it hold up a shutdown or a revocation
                try:
                    await response.write(frame)
                finally:
                    guard.cancel()
                    place.on_close = None
                sent = {etag}
                # The follower verifies what it is sent: the next frame's round starts there.
                have = published.size if have is None else max(have, published.size)
            if place.ended or place.expired():
                break
            await place.wait()
        await response.write_eof()
    except ConnectionError:
        _abort(request)  # gone, or cut off for not reading: make sure the connection is closed
    finally:
        room.leave(place)
    return response


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
