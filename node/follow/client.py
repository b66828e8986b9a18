"""Bounded HTTP reads from one followed log.

A peer may be slow, broken or hostile, so every read here is bounded three ways:
a total time limit per request (connect included), a maximum body size checked
against Content-Length before reading and again while reading, and -- for tiles,
whose size is known in advance -- an exact length. Nothing is followed blindly:
redirects are refused (a signed read request must not be replayed to another host).

Every request carries an RFC 9421 signature made with this node's request key when a
`RequestSigner` is given (node/readaccess/client.py): restricted logs serve tiles and entry
bundles only to registered readers, and every node its push channel
(`next_checkpoint`, a long-poll whose time limit is its wait plus the usual limit;
`stream_checkpoints`, one request answered with a frame per checkpoint, read one
bounded frame at a time).
"""

from __future__ import annotations

import asyncio
import re

import aiohttp

from node.follow.push import MAX_PARTS_BYTES, PARTS_TYPE, STREAM_TYPE, FrameReader, checkpoint_etag, parse_parts
from protocol.tiles import MAX_ENTRY_SIZE, TILE_WIDTH

#: Bounds. A checkpoint note is a few hundred bytes (with witness cosignatures a few KB).
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_NODE_JSON_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10.0
_CHUNK = 64 * 1024
#: A strong entity tag (RFC 9110 section 8.8.3), short: the push channel's are 32 hex digits.
_ETAG = re.compile(r'"[\x21\x23-\x7e]{1,64}"')


def log_url_problem(url: str) -> str | None:
    """Why `url` cannot be a log's URL prefix (following.md §1), or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"cannot parse the URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the URL must start with https:// (or http://) and name a host"
    if parts.query or parts.fragment:
        return "the URL is a prefix: no ?query or #fragment"
    return None


def max_bundle_bytes(width: int) -> int:
    """The largest possible entry bundle of `width` entries (uint16 length + entry)."""
    return width * (2 + MAX_ENTRY_SIZE)


class FetchError(Exception):
    """A read that failed for a reason on the network or HTTP level (timeout,
    refused connection, non-200 status, body too large). `url` names what was read;
    `status` is the HTTP status when the node answered with an unexpected one;
    `unreachable` is "down" when the node could not be reached at all (connection
    refused, reset or closed before an answer; a gateway's 502 or 504), "timeout" when
    it did not answer in time, else None (node/follow/recovery.py probes the first two)."""

    def __init__(self, message: str, url: str = "", status: int | None = None, unreachable: str | None = None):
        super().__init__(f"{message} ({url})" if url else message)
        self.url = url
        self.status = status
        self.unreachable = unreachable if unreachable is not None else ("down" if status in (502, 504) else None)


class PeerClient:
    """Reads one log's /checkpoint, /node.json, tiles and entry bundles.

    `base_url` is the log's URL prefix (C2SP tlog-tiles: the paths are appended to it).
    Use as `async with PeerClient(url) as client:` or call `close()`."""

    def __init__(self, base_url: str, *, signer=None, timeout: float = DEFAULT_TIMEOUT,
                 max_connections: int = 8, accept_gzip: bool = True):
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.timeout = timeout
        self._headers = {} if accept_gzip else {"Accept-Encoding": "identity"}
        #: Tiles and bundles the last push answer carried (path -> bytes), each used at
        #: most once in place of its GET, with the same checks (node/follow/push.py).
        self._pushed: dict[str, bytes] = {}
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=60),
            headers=self._headers,
            raise_for_status=False,
            # Each attempt is signed, not the request once: aiohttp sends a GET again when
            # a reused connection turns out closed, and the node may have kept the first
            # copy's nonce (a replay, 401). tests/test_signed_retry.py
            middlewares=(signer.client_middleware(self.base_url),) if signer is not None else (),
        )

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    def url_for(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def get(self, path: str, *, max_bytes: int, exact: int | None = None) -> bytes:
        """The body of GET <base>/<path>, at most `max_bytes` long (exactly `exact`
        bytes when given). Raises FetchError on anything else."""
        _, body, _ = await self._get(path, max_bytes=max_bytes, exact=exact)
        return body

    async def _get(self, path: str, *, max_bytes: int, exact: int | None = None, headers: dict | None = None,
                   timeout: float | None = None, accept: tuple[int, ...] = (200,)):
        """(status, body, response headers) of GET <base>/<path>; any status not in
        `accept` is a FetchError. `timeout` replaces the client's for this request."""
        url = self.url_for(path)
        headers = dict(headers or {})  # signed by the session's middleware
        limit = self.timeout if timeout is None else timeout
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False,
                                         timeout=aiohttp.ClientTimeout(total=limit)) as response:
                await _check_status(response, accept, url)
                declared = response.content_length
                # A declared length is checked before a byte is read (identity encoding only:
                # with gzip it is the compressed length).
                if declared is not None and not response.headers.get("Content-Encoding"):
                    if declared > max_bytes:
                        raise FetchError(f"body of {declared} bytes is larger than the {max_bytes} allowed", url)
                    if exact is not None and declared != exact and response.status == 200:
                        raise FetchError(f"body is {declared} bytes, expected exactly {exact}", url)
                chunks, total = [], 0
                while True:
                    chunk = await response.content.read(_CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > max_bytes:
                        raise FetchError(f"body is larger than the {max_bytes} bytes allowed; stopped reading", url)
                    chunks.append(chunk)
                status, response_headers = response.status, response.headers
        except FetchError:
            raise
        except asyncio.TimeoutError:
            raise FetchError(f"no complete answer within {limit:g} s", url, unreachable="timeout") from None
        except aiohttp.ClientError as exc:
            raise _client_error(exc, url) from None
        body = b"".join(chunks)
        if exact is not None and status == 200 and len(body) != exact:
            raise FetchError(f"body is {len(body)} bytes, expected exactly {exact}", url)
        return status, body, response_headers

    async def next_checkpoint(self, path: str, etag: str | None, wait: int,
                              have: int | None = None) -> tuple[bytes | None, str | None]:
        """The push channel (spec/parts/following.md section 4.1): GET <base>/<path>?wait=<wait>
        with If-None-Match: <etag>. Returns (note, its ETag) once the log's checkpoint is
        another than the one `etag` names, or (None, etag) when the node answered 304
        (nothing new within `wait` seconds). Raises FetchError.
        `have`: the size of the tree this node verified, for a node that offers parts
        (§4.2); the tiles and bundles an answer carries are kept for the next round's
        `tile()` and `bundle()`, until the next call or `drop_pushed()`."""
        self._pushed = {}
        headers = {"If-None-Match": etag} if etag else {}
        query = f"?wait={wait}" if have is None else f"?wait={wait}&have={have}"
        status, body, response_headers = await self._get(
            f"{path}{query}", max_bytes=MAX_CHECKPOINT_BYTES if have is None else MAX_PARTS_BYTES,
            headers=headers, timeout=wait + self.timeout, accept=(200, 304))
        new_etag = response_headers.get("ETag")
        if new_etag is not None and not _ETAG.fullmatch(new_etag):
            raise FetchError(f"malformed ETag {new_etag[:80]!r}", self.url_for(path))
        if status == 304:
            if etag is None or new_etag != etag:
                raise FetchError("304 Not Modified for another checkpoint than the one named", self.url_for(path))
            return None, etag
        if have is not None and response_headers.get("Content-Type", "").split(";")[0].strip() == PARTS_TYPE:
            try:
                body, self._pushed = parse_parts(body)
            except ValueError as exc:
                raise FetchError(f"malformed push answer: {exc}", self.url_for(path)) from None
        if len(body) > MAX_CHECKPOINT_BYTES:
            raise FetchError(f"checkpoint of {len(body)} bytes is larger than the {MAX_CHECKPOINT_BYTES} allowed",
                             self.url_for(path))
        return body, new_etag

    async def stream_checkpoints(self, path: str, etag: str | None, wait: int, have: int | None = None):
        """The push stream (spec/parts/following.md §4.3): GET <base>/<path>?wait=<wait>
        [&have=<have>] with If-None-Match: <etag>; an async generator of (note, its ETag),
        one per frame, the tiles and bundles each frame carries kept for that round's
        `tile()` and `bundle()` (as after next_checkpoint) until the next frame. Close it
        (contextlib.aclosing) to end the stream. Ends when the node ends the stream after
        a whole frame, or `wait` + the time limit after it began (a node that holds it
        longer is left). Raises FetchError for any other status or content type, a
        connection lost, no byte for `wait` + the time limit, and a frame that is
        malformed, too large, or names the checkpoint the last one (or the request)
        named: nothing of such a frame is given out. At most one frame is held."""
        url = self.url_for(f"{path}?wait={wait}" if have is None else f"{path}?wait={wait}&have={have}")
        headers = {"If-None-Match": etag} if etag else {}  # signed by the session's middleware
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait + self.timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=wait + self.timeout)
        self._pushed = {}
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False, timeout=timeout) as response:
                await _check_status(response, (200,), url)
                if response.content_type != STREAM_TYPE:
                    raise FetchError(f"the push stream answered {response.content_type!r}, not {STREAM_TYPE}", url)
                frames = FrameReader()
                while True:
                    try:
                        frame = frames.next_frame()
                        if frame is not None:
                            note, parts = parse_parts(frame)
                    except ValueError as exc:
                        raise FetchError(f"malformed push stream: {exc}", url) from None
                    if frame is None:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            return  # held beyond its wait: leave it, ask again
                        try:
                            data = await asyncio.wait_for(response.content.read(frames.wanted()), remaining)
                        except asyncio.TimeoutError:
                            return
                        if not data:
                            if frames.between_frames:
                                return  # the node ended the stream
                            raise FetchError("the push stream ended inside a frame", url)
                        frames.feed(data)
                        continue
                    if len(note) > MAX_CHECKPOINT_BYTES:
                        raise FetchError(f"streamed checkpoint of {len(note)} bytes is larger than the "
                                         f"{MAX_CHECKPOINT_BYTES} allowed", url)
                    new_etag = checkpoint_etag(note)
                    if new_etag == etag:
                        raise FetchError("the push stream sent the very checkpoint it sent last, or the "
                                         "request named", url)
                    etag = new_etag
                    self._pushed = parts
                    try:
                        yield note, etag
                    finally:
                        self._pushed = {}
        except FetchError:
            raise
        except asyncio.TimeoutError:
            raise FetchError(f"nothing from the push stream within {wait + self.timeout:g} s", url,
                             unreachable="timeout") from None
        except aiohttp.ClientError as exc:
            raise _client_error(exc, url) from None

    def drop_pushed(self) -> None:
        """Forget what the last push answer carried (its round is over)."""
        self._pushed = {}

    def _take_pushed(self, path: str, max_bytes: int, exact: int | None = None) -> bytes | None:
        """A tile or bundle the last push answer carried, bounded like a fetched one."""
        data = self._pushed.pop(path, None)
        if data is None:
            return None
        if len(data) > max_bytes or (exact is not None and len(data) != exact):
            raise FetchError(f"the push answer carried {len(data)} bytes, expected "
                             f"{exact if exact is not None else f'at most {max_bytes}'}", self.url_for(path))
        return data

    async def probe(self, timeout: float) -> bool:
        """Whether the node answers GET <base>/checkpoint with 200 within `timeout`
        seconds: the cheap look a follower takes, while it backs off, at a node that
        was down (node/follow/recovery.py). Unsigned: the checkpoint is public, and a
        probe takes no place in the node's replay cache."""
        url = self.url_for("checkpoint")
        try:
            async with self._session.get(url, allow_redirects=False, middlewares=(),  # unsigned
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                if response.status != 200:
                    return False
                await response.content.read(MAX_CHECKPOINT_BYTES)
                return True
        except Exception:  # noqa: BLE001 - whatever went wrong, the node is not back (yet)
            return False

    async def checkpoint(self) -> bytes:
        return await self.get("checkpoint", max_bytes=MAX_CHECKPOINT_BYTES)

    async def node_json(self) -> bytes:
        return await self.get("node.json", max_bytes=MAX_NODE_JSON_BYTES)

    async def tile(self, tile) -> bytes:
        """A hash tile (protocol.tiles.TileId): exactly 32 bytes per hash."""
        path, exact = tile.path(), 32 * tile.width
        pushed = self._take_pushed(path, 32 * TILE_WIDTH, exact)
        return pushed if pushed is not None else await self.get(path, max_bytes=32 * TILE_WIDTH, exact=exact)

    async def bundle(self, bundle) -> bytes:
        """An entry bundle (protocol.tiles.BundleId), bounded by its width."""
        path, limit = bundle.path(), max_bundle_bytes(bundle.width)
        pushed = self._take_pushed(path, limit)
        return pushed if pushed is not None else await self.get(path, max_bytes=limit)


async def _check_status(response: aiohttp.ClientResponse, accept: tuple[int, ...], url: str) -> None:
    if response.status not in accept:
        reason = await _short_text(response)
        raise FetchError(f"HTTP {response.status}{': ' + reason if reason else ''}", url, status=response.status)


def _client_error(exc: aiohttp.ClientError, url: str) -> FetchError:
    down = "down" if isinstance(exc, aiohttp.ClientConnectionError) else None
    return FetchError(f"{type(exc).__name__}: {exc}", url, unreachable=down)


async def _short_text(response: aiohttp.ClientResponse) -> str:
    """The start of an error body, for the error message (never more than 200 bytes read)."""
    try:
        data = await asyncio.wait_for(response.content.read(200), 1.0)
    except (asyncio.TimeoutError, aiohttp.ClientError):
        return ""
    text = data.decode("utf-8", "replace").strip().splitlines()
    return text[0][:160] if text else ""
