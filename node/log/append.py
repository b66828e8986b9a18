"""What an operator appends to the node's own log: JSON lines, checked all or nothing.

    parse_append_lines(body, log_size) -> [entry bytes]

One JSON object per line, in the JSON view of an entry (protocol/entries.py), e.g.
{"kind": "submission", "signal": "pdq", "fingerprint": "<64 hex>"}; blank lines are
skipped. Every line is checked before anything is appended: the first bad line raises
BadRequest naming it (`line`, counted from 1), and nothing is appended. A withdrawal
may name only entries the log has published (`log_size`). POST /admin/append and
`ncii-node append` both read their input here.
"""

from __future__ import annotations

from node.errors import BadRequest
from node.jsontext import parse_json
from protocol.entries import Withdrawal, entry_and_bytes_from_json
from protocol.errors import ProtocolError

EXAMPLE = '{"kind": "submission", "signal": "pdq", "fingerprint": "<64 hex>"}'


def parse_append_lines(body: bytes, log_size: int) -> list[bytes]:
    """The encoded entries of every line; BadRequest(line=N) on the first bad one."""
    entries: list[bytes] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue  # blank lines (and the final newline) are allowed
        try:
            obj = parse_json(raw, what=f"line {number}")
        except BadRequest as exc:
            raise BadRequest(str(exc), line=number) from None
        if not isinstance(obj, dict):
            raise BadRequest(f"line {number}: expected a JSON object like {EXAMPLE}", line=number)
        try:
            entry, data = entry_and_bytes_from_json(obj)  # refuses entries over MAX_ENTRY_SIZE too
        except ProtocolError as exc:
            raise BadRequest(f"line {number}: {exc}", line=number) from None
        if isinstance(entry, Withdrawal):
            beyond = [t for t in entry.targets if t >= log_size]
            if beyond:
                raise BadRequest(f"line {number}: withdrawal target {beyond[0]} is not a published entry "
                                 f"of this log (it has {log_size} entries)", line=number)
        entries.append(data)
    if not entries:
        raise BadRequest("no entries in the body: send one JSON object per line")
    return entries
