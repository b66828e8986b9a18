"""A small typed client for a platform node's match API and feedback.

    from node.client import NodeClient

    node = NodeClient("http://127.0.0.1:8181", token)       # the admin site, and a token
    result = node.match_media(upload_bytes)                 # the node fingerprints the file
    for match in result.matches:                            # nearest first
        print(match.origin, match.index, match.distance, match.labels)
    node.feedback(match.origin, match.index, "removed")     # a reviewer's decision (admin token)

Routes (spec/parts/matching-api.md; the guide for an upload pipeline is its section
"For platform engineers"): `match` and `match_many` call POST /v1/match, `match_media`
POST /v1/match/media, `feedback` POST /v1/feedback, `suppress` POST
/v1/match/suppress, `status` GET /v1/match/status. They live on the node's **admin
site** (loopback by default; its address is `admin_url` in DIR/serve.json):
`NodeClient.from_datadir(DIR)` reads it there, with the match token
(`token="admin"` for the admin token, which feedback and suppression need).

Behaviour:
- synchronous (http.client), one keep-alive connection per client: give each thread
  its own client;
- a timeout per request (`timeout`; `media_timeout` for files, which the node hashes);
- retries with growing pauses (`retries`, default 3): reading requests (matching,
  status) after a failed connection or a 503 (the index is being built: the node's
  Retry-After is honoured, up to `max_retry_wait`); requests that write (feedback,
  suppression) only when they surely did not take effect: the connection was refused,
  or the node answered 503 (nothing was appended);
- every error is an exception, a NodeError: Unauthorized (401), NotFound (404),
  BadRequest (400, 413, 422), Unavailable (503 still after the retries, or 421/403 from
  the admin site's guards), Unreachable (no connection, or no answer in time), and
  NodeError itself for anything else. `status` and `detail` (the node's JSON answer)
  say more; the message is the node's "error".
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 10.0
MEDIA_TIMEOUT = 120.0
DEFAULT_RETRIES = 3
MAX_RETRY_WAIT = 10.0
MAX_BATCH = 1000          # fingerprints per POST /v1/match (node/web/match_routes.py)
MAX_ANSWER_BYTES = 64 * 1024 * 1024


# ---------------------------------------------------------------------- errors

class NodeError(Exception):
    """The node refused the request, or answered something unexpected. `status`: the
    HTTP status (None when there was no answer); `detail`: its JSON answer ({} if none)."""

    def __init__(self, message: str, status: int | None = None, detail: dict | None = None, body: bytes = b""):
        super().__init__(message)
        self.status = status
        self.detail = detail or {}
        self.body = body


class Unauthorized(NodeError):
    """401: missing or wrong token, or the match token on a route that needs the admin token."""


class NotFound(NodeError):
    """404: e.g. feedback on an entry the node does not hold, or a match route asked of
    the public site instead of the admin site."""


class BadRequest(NodeError):
    """400, 413 or 422: the request itself was wrong (a bad fingerprint, too large a
    batch, a file that cannot be fingerprinted)."""


class Unavailable(NodeError):
    """503 after the retries (index still being built, log unavailable), or the admin
    site's guards (403 not a loopback client, 421 not a loopback Host)."""


class Unreachable(NodeError):
    """No connection to the node, or no complete answer within the timeout."""


_ERRORS = {401: Unauthorized, 404: NotFound, 400: BadRequest, 413: BadRequest, 422: BadRequest,
           503: Unavailable, 403: Unavailable, 421: Unavailable}


# ---------------------------------------------------------------------- answers

@dataclass(frozen=True)
class Match:
    """An active entry of a followed log that the query matched."""
    origin: str
    index: int
    signal: str                      # pdq | md5 | vpdq
    distance: float                  # pdq: Hamming distance; md5: 0; vpdq: 100 - query_coverage
    labels: tuple[str, ...] = ()
    quality: int | None = None
    day: str | None = None           # "YYYY-MM-DD", coarse
    feedback: dict[str, int] = field(default_factory=dict)   # other platforms' verdicts so far
    variant: str | None = None       # match_media(dihedral=True): which rotation or flip matched
    query_coverage: float | None = None
    indexed_coverage: float | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Match:
        try:
            return cls(origin=obj["origin"], index=obj["index"], signal=obj["signal"], distance=obj["distance"],
                       labels=tuple(obj.get("labels") or ()), quality=obj.get("quality"), day=obj.get("day"),
                       feedback=dict(obj.get("feedback") or {}), variant=obj.get("variant"),
                       query_coverage=obj.get("query_coverage"), indexed_coverage=obj.get("indexed_coverage"))
        except (KeyError, TypeError, ValueError) as exc:
            raise NodeError(f"unexpected match in the node's answer: {exc!r}") from None


@dataclass(frozen=True)
class MatchResult:
    """The answer for one fingerprint: at most 100 matches, nearest first; `total`
    counts them all."""
    signal: str
    matches: tuple[Match, ...]
    total: int
    fingerprint: str | None = None   # match_media: the fingerprint computed (pdq, md5)
    quality: int | None = None       # match_media, pdq: the upload's PDQ quality
    low_quality: bool = False        # quality below 50: matches deserve a closer look
    frames: int | None = None        # match_media, vpdq: frames sampled

    @classmethod
    def from_json(cls, obj: Any) -> MatchResult:
        try:
            return cls(signal=obj["signal"], matches=tuple(Match.from_json(m) for m in obj["matches"]),
                       total=obj["total"], fingerprint=obj.get("fingerprint"), quality=obj.get("quality"),
                       low_quality=bool(obj.get("low_quality", False)), frames=obj.get("frames"))
        except (KeyError, TypeError) as exc:
            raise NodeError(f"unexpected result in the node's answer: {exc!r}") from None


@dataclass(frozen=True)
class MediaResult:
    """The answer for one file: a photo gives one `pdq` result, a video `md5` and `vpdq`."""
    kind: str                        # image | video
    matched: bool
    results: tuple[MatchResult, ...]

    @property
    def matches(self) -> list[Match]:
        """Every match of every result, nearest first."""
        return sorted((m for r in self.results for m in r.matches), key=lambda m: (m.distance, m.origin, m.index))


@dataclass(frozen=True)
class FeedbackReceipt:
    """Where the node published a verdict: entry `index` of its own log."""
    index: int
    leaf_hash: str
    checkpoint_size: int
    origin: str                      # the entry the verdict is about
    target_index: int
    verdict: str


# ---------------------------------------------------------------------- the client

class NodeClient:
    """A platform node's admin site (`admin_url`, e.g. http://127.0.0.1:8181) with a
    bearer `token`: the match token (matching only) or the admin token (everything)."""

    def __init__(self, admin_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT,
                 media_timeout: float = MEDIA_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 max_retry_wait: float = MAX_RETRY_WAIT):
        parts = urlsplit(admin_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the admin URL must be http://HOST:PORT or https://HOST:PORT, not {admin_url!r}")
        if not token or any(c.isspace() for c in token.strip()):
            raise ValueError("the token is empty or has spaces inside; give the contents of match.token or "
                             "admin.token")
        self.admin_url = admin_url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self.token = token.strip()
        self.timeout, self.media_timeout = timeout, media_timeout
        self.retries, self.max_retry_wait = retries, max_retry_wait
        self._conn: http.client.HTTPConnection | None = None

    @classmethod
    def from_datadir(cls, directory: str | Path, *, token: str = "match", **options) -> NodeClient:
        """The node serving the data directory `directory` on this machine: its
        admin_url from DIR/serve.json and its match token (`token="admin"`: the admin
        token). Raises Unreachable when no node serves it."""
        from node.datadir import DataDir

        datadir = DataDir(directory)
        info = datadir.serving_node()
        if info is None:
            raise Unreachable(f"no node is serving {directory} (start it: ncii-node serve --dir {directory})")
        secret = datadir.admin_token() if token == "admin" else datadir.match_token()
        return cls(info["admin_url"], secret, **options)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ routes
    def match(self, signal: str, fingerprint: Any) -> MatchResult:
        """One fingerprint, in the JSON form `ncii-node hash --json` prints: pdq and md5
        as hex strings, vpdq as a list of {"pdq", "quality", "timestamp"} frames."""
        answer = self._json("POST", "/v1/match", {"signal": signal, "fingerprint": fingerprint}, write=False)
        return MatchResult.from_json(answer)

    def match_many(self, fingerprints: Iterable[tuple[str, Any]]) -> list[MatchResult]:
        """(signal, fingerprint) pairs; sent in batches of 1,000; results in the same order."""
        items = [{"signal": s, "fingerprint": f} for s, f in fingerprints]
        results: list[MatchResult] = []
        for start in range(0, len(items), MAX_BATCH):
            answer = self._json("POST", "/v1/match", {"fingerprints": items[start:start + MAX_BATCH]}, write=False)
            try:
                results.extend(MatchResult.from_json(r) for r in answer["results"])
            except (KeyError, TypeError) as exc:
                raise NodeError(f"unexpected answer from the node: {exc!r}") from None
        return results

    def match_media(self, data: bytes, *, dihedral: bool = False) -> MediaResult:
        """An upload's bytes (photo or video); the node fingerprints them and matches.
        `dihedral`: a photo is also matched rotated and flipped (`Match.variant`)."""
        path = "/v1/match/media" + ("?dihedral=true" if dihedral else "")
        answer = self._decode(self.request("POST", path, data, "application/octet-stream",
                                           timeout=self.media_timeout, write=False))
        try:
            return MediaResult(kind=answer["kind"], matched=bool(answer["matched"]),
                               results=tuple(MatchResult.from_json(r) for r in answer["results"]))
        except (KeyError, TypeError) as exc:
            raise NodeError(f"unexpected answer from the node: {exc!r}") from None

    def feedback(self, origin: str, index: int, verdict: str) -> FeedbackReceipt:
        """Publish a verdict on entry `index` of the followed log `origin` (admin token):
        matched-pending-review, removed, not-violating or disputed-false-match."""
        from protocol.entries import VERDICTS  # (imported here: this module needs only the standard library)

        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        answer = self._json("POST", "/v1/feedback", {"origin": origin, "index": index, "verdict": verdict},
                            write=True)
        try:
            return FeedbackReceipt(index=answer["index"], leaf_hash=answer["leaf_hash"],
                                   checkpoint_size=answer["checkpoint_size"], origin=origin, target_index=index,
                                   verdict=answer["entry"]["verdict"])
        except (KeyError, TypeError) as exc:
            raise NodeError(f"unexpected answer from the node: {exc!r}") from None

    def suppress(self, origin: str, index: int, *, feedback: bool = True) -> dict:
        """Never match entry `index` of `origin` again on this node (a known false match);
        with `feedback`, the node also publishes disputed-false-match (admin token)."""
        return self._json("POST", "/v1/match/suppress", {"origin": origin, "index": index, "feedback": feedback},
                          write=True)

    def status(self) -> dict:
        """GET /v1/match/status: whether the index is built, and its counts."""
        return self._decode(self.request("GET", "/v1/match/status", None, None, timeout=self.timeout, write=False))

    # ------------------------------------------------------------------ transport
    def _json(self, method: str, path: str, body: Any, *, write: bool) -> Any:
        data = json.dumps(body).encode()
        return self._decode(self.request(method, path, data, "application/json", timeout=self.timeout, write=write))

    @staticmethod
    def _decode(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise NodeError("the node's answer is not JSON", body=raw[:200]) from None

    def request(self, method: str, path: str, body: bytes | None, content_type: str | None, *,
                timeout: float | None = None, write: bool = True, retries: int | None = None) -> bytes:
        """One request to the admin site, with the retries described above; the body of
        a 200 answer, or a NodeError."""
        retries = self.retries if retries is None else retries
        headers = {"Authorization": f"Bearer {self.token}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        pause = 0.2
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                status, answer, retry_after = self._send(method, self._base_path + path, body, headers,
                                                         timeout if timeout is not None else self.timeout)
            except _NotSent as exc:        # refused: nothing reached the node, any request may retry
                if last:
                    raise Unreachable(f"cannot reach the node at {self.admin_url}: {exc}") from None
            except _NoAnswer as exc:       # sent, no answer: only a reading request may retry
                if last or write:
                    raise Unreachable(f"no answer from the node at {self.admin_url}: {exc}") from None
            else:
                if status == 200:
                    return answer
                if status != 503 or last:
                    raise _error(status, answer)
                pause = max(pause, min(retry_after or 0.0, self.max_retry_wait))
            time.sleep(pause)
            pause = min(pause * 2, self.max_retry_wait)
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, body: bytes | None, headers: dict,
              timeout: float) -> tuple[int, bytes, float | None]:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout)
        conn = self._conn
        conn.timeout = timeout
        fresh = conn.sock is None
        try:
            if fresh:
                try:
                    conn.connect()
                except OSError as exc:
                    raise _NotSent(_reason(exc)) from None
            else:
                conn.sock.settimeout(timeout)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read(MAX_ANSWER_BYTES + 1)
        except _NotSent:
            self.close()
            raise
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            if not fresh:  # a kept-alive connection the node had closed meanwhile (its idle timeout)
                raise _NotSent(_reason(exc)) from None
            raise _NoAnswer(_reason(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _NoAnswer(_reason(exc)) from None
        if len(answer) > MAX_ANSWER_BYTES:
            self.close()
            raise NodeError(f"the node's answer is larger than {MAX_ANSWER_BYTES} bytes", response.status)
        if response.will_close:
            self.close()
        retry_after = response.getheader("Retry-After")
        try:
            wait = float(retry_after) if retry_after is not None else None
        except ValueError:
            wait = None
        return response.status, answer, wait


class _NotSent(Exception):
    pass


class _NoAnswer(Exception):
    pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _error(status: int, raw: bytes) -> NodeError:
    try:
        detail = json.loads(raw)
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    message = detail.get("error") or raw[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    return _ERRORS.get(status, NodeError)(str(message), status, detail, raw)
