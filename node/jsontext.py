"""Reading JSON that someone sent: the one strict parser every request body goes through.

    parse_json(raw, what="the body", hint=None) -> the JSON value, or BadRequest

Refuses bytes that are not UTF-8, text that is not JSON, and JSON nested deeper than
Python's parser can take (RecursionError, which would otherwise escape as a crash),
each with a message "<what>: <problem>[; <hint>]" that says which.
"""

from __future__ import annotations

import json
from typing import Any

from node.errors import BadRequest


def parse_json(raw: bytes | str, *, what: str = "the body", hint: str | None = None) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        problem = "not valid UTF-8"
    else:
        try:
            return json.loads(text)
        except RecursionError:
            problem = "JSON nested too deeply to be read (a few hundred levels at most)"
        except ValueError as exc:
            problem = f"not valid JSON ({exc})"
    raise BadRequest(f"{what}: {problem}" + (f"; {hint}" if hint else ""))
