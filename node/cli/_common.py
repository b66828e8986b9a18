"""What the subcommands share: the --dir argument, error lines, and requests to the
node that serves a data directory.

Not a command itself: the dispatcher (node/cli/__init__.py) skips modules whose
name starts with "_". Only the standard library is imported at the top, so that
`ncii-node --help` stays fast.
"""

from __future__ import annotations

import functools
import sys

from node.client import NodeError as NodeRequestError  # noqa: F401  (the commands' name for it)

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


def post_to_node(info: dict, token: str, path: str, body: bytes, *, timeout: float,
                 content_type: str = "application/json") -> bytes:
    """POST `body` to `path` on the admin site of the running node described by
    `info` (its serve.json) with `token`; returns the answer's body. Raises
    NodeRequestError: the node refused (`status`, `detail`: its JSON answer) or could
    not be reached (`status` None). No retry: the commands say what happened."""
    from node.client import NodeClient

    with NodeClient(info["admin_url"], token, timeout=timeout, retries=0) as client:
        return client.request("POST", path, body, content_type)
