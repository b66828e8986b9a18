"""What the subcommands share: the --dir argument, error lines, and requests to the
node that serves a data directory.

Not a command itself: the dispatcher (node/cli/__init__.py) skips modules whose
name starts with "_". Only the standard library is imported at the top, so that
`ncii-node --help` stays fast.
"""

from __future__ import annotations

import functools
import sys

EXIT_FAILED = 1


def add_dir_argument(parser, help: str = "data directory") -> None:
    """The --dir DIR option every command that works on a node has."""
    parser.add_argument("--dir", required=True, help=help)


def fail(message: str, status: int = EXIT_FAILED) -> int:
    """Print `error: <message>` on stderr; return the exit status to give."""
    print(f"error: {message}", file=sys.stderr)
    return status


def reports_datadir_errors(run):
    """Decorate a command's `run(args)`: a DataDirError (no data directory, a bad
    config, a missing or unreadable key or token) is printed as `error: <why>` and
    exits 1, wherever in the command it comes from."""

    @functools.wraps(run)
    def wrapped(args) -> int:
        from node.datadir import DataDirError

        try:
            return run(args)
        except DataDirError as exc:
            return fail(str(exc))

    return wrapped


class NodeRequestError(Exception):
    """The node refused a request (`status`: its HTTP status; `detail`: its JSON
    answer, {} if it was not JSON; `body`: the raw answer) or could not be
    reached (`status` None). The message is the node's "error", or why it could
    not be reached."""

    def __init__(self, message: str, status: int | None = None, detail: dict | None = None, body: bytes = b""):
        super().__init__(message)
        self.status = status
        self.detail = detail or {}
        self.body = body


def post_to_node(info: dict, token: str, path: str, body: bytes, *, timeout: float,
                 content_type: str = "application/json") -> bytes:
    """POST `body` to `path` on the admin site of the running node described by
    `info` (its serve.json) with `token`; returns the answer's body. Raises
    NodeRequestError."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(info["admin_url"] + path, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:  # before URLError, its base class
        raw = exc.read()
        try:
            detail = json.loads(raw.decode())
        except ValueError:
            detail = {}
        if not isinstance(detail, dict):
            detail = {}
        raise NodeRequestError(detail.get("error", exc.reason), exc.code, detail, raw) from None
    except (urllib.error.URLError, OSError) as exc:
        raise NodeRequestError(f"cannot reach the node at {info['admin_url']}: "
                               f"{getattr(exc, 'reason', exc)}") from None
