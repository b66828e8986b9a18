"""GET /push/checkpoint: followers wait for the next checkpoint instead of polling.

    GET /push/checkpoint?wait=<seconds>[&have=<size>]      If-None-Match: "<etag>"

The answer is the log's checkpoint as GET /checkpoint serves it (with any
witness cosignatures), with its ETag (32 hex digits of SHA-256 of the note, quoted):

  * 200 at once when the request names no ETag, or names another than the current
    checkpoint's;
  * otherwise 200 as soon as the served note changes (a new checkpoint, or witness
    cosignatures added), or 304 Not Modified when nothing changed within `wait`
    seconds (1 to [push] max_wait, which is also the default).

With `have=<size>` (the size of the tree the follower verified), a 200 whose
checkpoint is at most MAX_PART_ENTRIES larger carries, in one body of type
PARTS_TYPE, the checkpoint and the tiles and entry bundles the follower's round
reads (node/follow/push.py: part_ids, encode_parts); built once per (size, checkpoint)
and shared by every follower answered with it. Otherwise, or when a tile is missing,
the plain note.

So a follower holds one request open per followed log and learns of a checkpoint
within a round trip of its publication, and a plain C2SP reader that polls
/checkpoint sees nothing different. /node.json advertises the channel (`push`:
node/follow/push.py writes the advertisement and reads it).

Who may wait, and what it costs (spec/parts/following.md section 4.1):

  * Registered readers only, with a signed request like a tile read (node/readaccess/),
    even on a `public_read` node: the path is in app[READERS_ONLY]. A checkpoint is
    public, but a waiting request holds a socket and a slot.
  * At most [push] max_waiting_per_reader requests of one reader wait at once: one
    more answers that reader's oldest wait at once (304 if nothing changed), so a
    follower that restarted is never refused because of its dead connections.
  * At most [push] max_waiting requests wait at once in all (lowered to fit the
    open-files limit, node/limits.py); beyond, 503 with Retry-After (the follower
    polls meanwhile).
  * A dead reader's wait ends after at most `wait` seconds (nothing is written to it
    before); a slow reader is sent one small note, which the socket buffers take.
  * On shutdown every wait is answered at once, so a stop is never delayed by them.
  * A reader removed from the registry (`ncii-node readers remove`, run in any process
    of the node: the command itself, or another `serve` process on PostgreSQL) loses its
    waits and streams within READER_CHECK_INTERVAL: while anything waits, each process
    compares the readers holding places with the readers table (_watch_readers). Its
    wait is answered as a request by an unknown key is (401), never with a checkpoint.

GET /push/stream (push_stream_routes.py, [push] stream) holds a place in the same room
for each open stream: waits and streams share these bounds.

Nothing here blocks or delays sequencing: the sequencer's on_change hook only wakes
the waiting requests (node/log/sequencer.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict, deque

from aiohttp import web

from node.follow.push import (MAX_PART_ENTRIES, MAX_PARTS_BYTES, PARTS_TYPE, PUSH_PATH, checkpoint_etag,  # noqa: F401
                              encode_parts, part_ids)
from node.limits import waiting_room_size
from node.errors import error_line
from node.readaccess import READER_KEY, unregistered_response
from node.web.context import NODE, READERS_ONLY

log = logging.getLogger(__name__)

PUSH_ROOM = web.AppKey("push_room", object)
PUSH_PARTS = web.AppKey("push_parts", object)
#: The longest `wait` value accepted as written (digits); larger values are capped.
_MAX_WAIT_DIGITS = 4
#: A `have` size: a tree size (< 2**63) in decimal, no leading zero.
_MAX_HAVE_DIGITS = 19


#: Waiting requests woken per turn of the event loop.
WAKE_BATCH = 64
#: Seconds between two looks at the readers table while requests wait or streams are
#: open: a removed reader keeps them at most this long (plus one query).
READER_CHECK_INTERVAL = 0.5


def _wake(places: list, start: int) -> None:
    for place in places[start:start + WAKE_BATCH]:
        place.wake()
    if start + WAKE_BATCH < len(places):
        asyncio.get_running_loop().call_soon(_wake, places, start + WAKE_BATCH)


class RoomFull(Exception):
    """Too many requests wait already."""


class Place:
    """One request's place in the room: a push request's single wait, or a stream's
    whole life (push_stream_routes.py), until `deadline` (loop time), when it is woken
    one last time. `changed` is set by every wake, also one that comes while the holder
    is busy writing, so no change is missed. One timer per place, not one per wait: a
    stream is woken by every checkpoint, and that path stays a future and a task step."""

    __slots__ = ("reader", "deadline", "changed", "ended", "revoked", "on_close", "_future", "_loop", "_timer")

    def __init__(self, reader: str, deadline: float):
        self.reader = reader
        self.deadline = deadline
        self.changed = False
        self.ended = False     # pushed out by a newer request of its reader, shutdown, or revoked
        self.revoked = False   # its reader is no longer registered: answer nothing more
        self.on_close = None   # called at shutdown or revocation (a stream stuck writing to a slow reader)
        self._future: asyncio.Future | None = None
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_at(deadline, self.wake)

    def wake(self) -> None:
        self.changed = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def end(self) -> None:
        self.ended = True
        self.wake()

    def end_now(self) -> None:
        """End it, and cut the connection of a stream that is writing a frame."""
        self.end()
        if self.on_close is not None:
            self.on_close()

    def expired(self) -> bool:
        return self._loop.time() >= self.deadline

    async def wait(self) -> None:
        """Until a wake (at once if one came since the last wait) or the deadline."""
        if not self.changed and not self.ended and not self.expired():
            self._future = self._loop.create_future()
            try:
                await self._future
            finally:
                self._future = None
        self.changed = False

    def cancel(self) -> None:
        self._timer.cancel()


class WaitingRoom:
    """The requests waiting for a change, bounded in all and per reader."""

    def __init__(self, max_waiting: int, max_per_reader: int):
        self.max_waiting = max_waiting
        self.max_per_reader = max_per_reader
        self._by_reader: dict[str, deque[Place]] = {}
        self._count = 0
        self.closed = False

    def __len__(self) -> int:
        return self._count

    def notify(self, _published=None) -> None:
        """The served note changed: wake every waiting request, WAKE_BATCH at a time,
        each batch a turn of the event loop after the last, so that with thousands
        waiting the loop still takes other work between batches (the next append, the
        next publication) instead of answering every follower first."""
        places = [place for waiting in self._by_reader.values() for place in waiting]
        if places:
            _wake(places, 0)

    def close(self) -> None:
        self.closed = True
        for waiting in list(self._by_reader.values()):
            for place in list(waiting):
                place.end_now()

    def readers(self) -> set[str]:
        """The readers holding a place."""
        return set(self._by_reader)

    def revoke(self, readers) -> int:
        """These readers are no longer registered: end their places at once (a wait is
        answered with a refusal, a stream ends). Returns how many places were ended."""
        ended = 0
        for reader in readers:
            for place in list(self._by_reader.get(reader, ())):
                place.revoked = True
                place.end_now()
                ended += 1
        return ended

    def enter(self, reader: str, seconds: float) -> Place:
        """A place for one more request of `reader`, for `seconds` at most; its oldest
        is ended if it holds max_per_reader already. Leave with `leave()`. Raises RoomFull."""
        if self.closed:
            raise RoomFull("the node is shutting down")
        waiting = self._by_reader.setdefault(reader, deque())
        if len(waiting) >= self.max_per_reader:
            waiting[0].end()  # its handler answers and leaves
        elif self._count >= self.max_waiting:
            if not waiting:
                del self._by_reader[reader]
            raise RoomFull(f"{self._count} requests are waiting already")
        place = Place(reader, asyncio.get_running_loop().time() + seconds)
        waiting.append(place)
        self._count += 1
        return place

    def leave(self, place: Place) -> None:
        place.cancel()
        waiting = self._by_reader.get(place.reader)
        if waiting is None or place not in waiting:
            return
        waiting.remove(place)
        self._count -= 1
        if not waiting:
            del self._by_reader[place.reader]

    async def wait(self, reader: str, seconds: float) -> Place:
        """Return (the place left) on a change, when this reader's wait is pushed out by
        a newer one, on shutdown, when the reader is revoked, or after `seconds`.
        Raises RoomFull."""
        place = self.enter(reader, seconds)
        try:
            await place.wait()
        finally:
            self.leave(place)
        return place


class PartsAnswers:
    """Parts bodies by (have, checkpoint note): every follower at the same size that a
    checkpoint wakes gets the same bytes, read from the tile store once."""

    def __init__(self, keep: int = 16):
        self.keep = keep
        self._bodies: OrderedDict[tuple[int, bytes], bytes | None] = OrderedDict()

    def body(self, published, have: int, tiles) -> bytes | None:
        """The parts body for a follower at `have`, or None (plain note instead).
        `tiles`: the log's tile store (the sequencer's)."""
        if not 0 <= have < published.size or published.size - have > MAX_PART_ENTRIES:
            return None
        key = (have, published.note)
        if key in self._bodies:
            self._bodies.move_to_end(key)
            return self._bodies[key]
        parts = []
        for ident in part_ids(have, published.size):
            data = tiles.read(ident.path())
            if data is None:  # not expected (tiles are written before the checkpoint): fetch instead
                parts = None
                break
            parts.append((ident.path(), data))
        body = encode_parts(published.note, parts) if parts is not None else None
        if body is not None and len(body) > MAX_PARTS_BYTES:
            body = None
        self._bodies[key] = body
        while len(self._bodies) > self.keep:
            self._bodies.popitem(last=False)
        return body


def setup(app: web.Application, node) -> None:
    push = node.config.push
    if not push.enabled:
        return
    app[READERS_ONLY].append(PUSH_PATH)
    app.router.add_get(PUSH_PATH, get_push_checkpoint)
    app[PUSH_ROOM] = WaitingRoom(waiting_room_size(push.max_waiting), push.max_waiting_per_reader)
    app[PUSH_PARTS] = PartsAnswers()
    if push.stream:
        from node.web import push_stream_routes  # it builds on this module

        push_stream_routes.setup(app, app[PUSH_PARTS])
    app.cleanup_ctx.append(_hook_sequencer)
    app.cleanup_ctx.append(_watch_readers)
    app.on_shutdown.append(_release_waiting)


async def _hook_sequencer(app: web.Application):
    """cleanup_ctx (after the node has started): wake the waiting requests on every change."""
    sequencer, room = app[NODE].sequencer, app[PUSH_ROOM]
    sequencer.on_change.append(room.notify)
    try:
        yield
    finally:
        if room.notify in sequencer.on_change:
            sequencer.on_change.remove(room.notify)


async def _watch_readers(app: web.Application):
    """cleanup_ctx (after the node has started): end the places of removed readers."""
    task = asyncio.create_task(_check_readers(app[NODE].db, app[PUSH_ROOM]), name="push-readers")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _check_readers(db, room: WaitingRoom) -> None:
    """Every READER_CHECK_INTERVAL while places are held: revoke the places of readers
    no longer in the readers table. The table, not a notification, so that a removal
    made by any process is seen (the CLI beside a SQLite node, another `serve` process
    on PostgreSQL); one query, a primary-key lookup per reader holding a place, only
    while requests wait (the middleware makes one per signed request)."""
    failing = False
    while True:
        await asyncio.sleep(READER_CHECK_INTERVAL)
        holding = room.readers()
        if not holding:
            continue
        try:
            registered = db.readers.registered(holding)
        except Exception as exc:  # noqa: BLE001 -- keep the places; the next look tries again
            if not failing:
                log.warning("push: cannot read the registered readers (%s); open waits and streams are kept until "
                            "it answers again", error_line(exc))
            failing = True
            continue
        if failing:
            log.info("push: reading the registered readers again")
            failing = False
        removed = holding - registered
        if removed:
            ended = room.revoke(removed)
            log.info("push: %d reader(s) no longer registered: %d waiting request(s) and stream(s) of theirs ended",
                     len(removed), ended)


async def _release_waiting(app: web.Application) -> None:
    app[PUSH_ROOM].close()


def bad_request(message: str) -> web.Response:
    return web.Response(status=400, text=message + "\n", content_type="text/plain")


def parse_wait(query, max_wait: int) -> int:
    """The `wait` parameter (digits only; default and cap `max_wait`). Raises ValueError."""
    unknown = set(query) - {"wait", "have"}
    if unknown:
        raise ValueError(f"unknown query parameter {sorted(unknown)[0][:40]!r}; only wait=<seconds> and "
                         "have=<size> are defined")
    values = query.getall("wait", [])
    if not values:
        return max_wait
    if len(values) > 1:
        raise ValueError("give wait=<seconds> once")
    text = values[0]
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_WAIT_DIGITS or int(text) < 1:
        raise ValueError(f"wait must be a whole number of seconds from 1 to {max_wait}")
    return min(int(text), max_wait)


def parse_have(query) -> int | None:
    """The `have` parameter (a tree size, digits only), or None. Raises ValueError."""
    values = query.getall("have", [])
    if not values:
        return None
    text = values[0]
    if (len(values) > 1 or not text.isascii() or not text.isdigit() or len(text) > _MAX_HAVE_DIGITS
            or (text != "0" and text.startswith("0")) or int(text) >= 2**63):
        raise ValueError("have must be given once, as the size of the tree the follower holds (digits)")
    return int(text)


def named_etags(header: str | None) -> set[str] | None:
    """The entity tags of an If-None-Match field (weak ones compare by their tag; "*"
    names no checkpoint, so it is answered at once); None if absent."""
    if header is None:
        return None
    tags = set()
    for item in header.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item:
            tags.add(item)
    return tags


def _note_answer(request: web.Request, published, have: int | None, status: int = 200) -> web.Response:
    note = published.note
    headers = {"ETag": checkpoint_etag(note), "Cache-Control": "no-store"}
    if status == 304:
        return web.Response(status=304, headers=headers)
    body = None
    if have is not None:
        body = request.app[PUSH_PARTS].body(published, have, request.app[NODE].sequencer.tiles)
    if body is not None:
        return web.Response(body=body, content_type=PARTS_TYPE, headers=headers)
    return web.Response(body=note, content_type="text/plain", charset="utf-8", headers=headers)


def push_request(request: web.Request, what: str):
    """(reader, wait, have, named ETags or None) of a push channel or stream request, or
    the refusal to answer it with (401 without a reader, 400 for bad parameters)."""
    reader = request.get(READER_KEY)
    if reader is None:  # the read-access middleware did not run: fail closed
        return web.Response(status=401, text=f"the {what} is for registered readers only\n",
                            content_type="text/plain")
    try:
        wait = parse_wait(request.query, request.app[NODE].config.push.max_wait)
        have = parse_have(request.query)
    except ValueError as exc:
        return bad_request(str(exc))
    return reader, wait, have, named_etags(request.headers.get("If-None-Match"))


def room_full(exc: RoomFull) -> web.Response:
    return web.Response(status=503, text=f"too many waiting requests ({exc}); poll /checkpoint meanwhile\n",
                        headers={"Retry-After": "5"}, content_type="text/plain")


async def get_push_checkpoint(request: web.Request) -> web.Response:
    parsed = push_request(request, "push channel")
    if isinstance(parsed, web.Response):
        return parsed
    reader, wait, have, known = parsed
    ctx = request.app[NODE]
    published = ctx.sequencer.published
    if not known or checkpoint_etag(published.note) not in known:
        return _note_answer(request, published, have)
    try:
        place = await request.app[PUSH_ROOM].wait(reader, wait)
    except RoomFull as exc:
        return room_full(exc)
    if place.revoked:  # removed from the readers while it waited
        return unregistered_response()
    published = ctx.sequencer.published
    if checkpoint_etag(published.note) in known:
        return _note_answer(request, published, have, 304)
    return _note_answer(request, published, have)
