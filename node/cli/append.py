"""`ncii-node append`: hand entries (JSON lines) to the running node; print where each landed.

The running node is the only writer of the log: this command never touches the
database, it POSTs the lines to the node's admin endpoint (address from
DIR/serve.json, token from DIR/admin.token) and prints, for every entry, once a
published checkpoint includes it:

    {"index": 41, "leaf_hash": "<64 hex>", "checkpoint_size": 42}

All lines are validated before any is sent, so a malformed line appends nothing.
Large inputs are sent in several requests (at most CHUNK_LINES lines each).
"""

from __future__ import annotations

import sys

from node.cli._common import NodeRequestError, add_dir_argument, fail, post_to_node, reports_datadir_errors

CHUNK_LINES = 10_000


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "append",
        help="append entries (JSON lines) to the running node's log",
        description="Reads one entry per line in the JSON view, e.g. "
        '{"kind": "submission", "signal": "pdq", "fingerprint": "<64 hex>"} or '
        '{"kind": "withdrawal", "targets": [3]}, sends them to the node serving DIR and prints '
        "one JSON line per entry once it is published.",
    )
    add_dir_argument(p, help="data directory of the running node")
    p.add_argument("file", nargs="?", default="-", help="file of JSON lines, or - for standard input (default)")
    p.set_defaults(func=run)


@reports_datadir_errors
def run(args) -> int:
    from node.datadir import DataDir
    from node.errors import BadRequest
    from node.log.append import parse_append_lines

    datadir = DataDir(args.dir)
    token = datadir.admin_token()
    limit = datadir.config.admin.max_body_bytes
    info = datadir.serving_node()
    if not info:
        return fail(f"no node is serving {datadir.root}; start it with `ncii-node serve --dir {args.dir}`")

    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    except OSError as exc:
        return fail(f"cannot read {args.file}: {exc.strerror}")
    lines = raw.split(b"\n")
    # Validate everything first (withdrawal targets are checked by the node).
    try:
        parse_append_lines(raw, log_size=2**64)
    except BadRequest as exc:
        return fail(str(exc))

    # Group the lines into requests, remembering each request's first line number.
    chunks: list[tuple[int, list[bytes]]] = []
    current: list[bytes] = []
    size, first_line = 0, 1
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if current and (len(current) >= CHUNK_LINES or size + len(line) + 1 > limit // 2):
            chunks.append((first_line, current))
            current, size = [], 0
        if not current:
            first_line = number
        current.append(line)
        size += len(line) + 1

    if current:
        chunks.append((first_line, current))

    sent = 0
    for first_line, chunk in chunks:
        try:
            out = post_to_node(info, token, "/admin/append", b"\n".join(chunk) + b"\n", timeout=300,
                               content_type="application/x-ndjson").decode()
        except NodeRequestError as exc:
            message = str(exc)
            if "line" in exc.detail:
                # The node numbers the lines of its request; say which line of the input.
                node_prefix = f"line {exc.detail['line']}: "
                reason = message[len(node_prefix):] if message.startswith(node_prefix) else message
                message = f"line {_input_line(lines, first_line, exc.detail['line'])}: {reason}"
            if exc.status is not None and sent:
                message += f"; the {sent} entries before it were appended (printed above)"
            return fail(message)
        sys.stdout.write(out)
        sys.stdout.flush()
        sent += len(chunk)
    return 0


def _input_line(lines: list[bytes], first_line: int, request_line: int) -> int:
    """Map a line number within a request (blank lines removed) to the input's."""
    seen = 0
    for number in range(first_line, len(lines) + 1):
        if lines[number - 1].strip():
            seen += 1
            if seen == request_line:
                return number
    return first_line
