"""A helpline node and a platform node running in this process, each following the
other's log (registered readers of each other), for the acknowledgement and receipt
tests. Real HTTP on 127.0.0.1, real SQLite, real keys; short sequencing intervals."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import aiohttp

from node.web.server import RunningNode

from publish_support import make_datadir, wait_for

HELPLINE = "helpline.example/log"
PLATFORM = "platform.example/log"
YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}


def pdq_fingerprints(n: int, seed: int = 0) -> list[dict]:
    """n distinct, non-degenerate PDQ fingerprints (about half the bits set)."""
    out = []
    for i in range(n):
        value = bytes(((seed * 131 + i * 37 + j * 11) * 2654435761 >> 7) % 256 for j in range(32))
        out.append({"signal": "pdq", "fingerprint": value.hex(), "quality": 90})
    return out


@dataclass
class Pair:
    helpline: RunningNode
    platform: RunningNode
    session: aiohttp.ClientSession

    async def post(self, path: str, body: dict, node: RunningNode | None = None) -> tuple[int, dict]:
        async with self.session.post((node or self.helpline).public_url + path, json=body) as r:
            return r.status, await r.json()

    async def create_case(self, n: int = 3, seed: int = 0) -> dict:
        status, answer = await self.post("/v1/cases", {"eligibility": YES, "fingerprints": pdq_fingerprints(n, seed)})
        assert status == 201, answer
        return answer

    async def status(self, case: dict) -> dict:
        status, answer = await self.post("/v1/cases/status", {"case_number": case["case_number"], "pin": case["pin"]})
        assert status == 200, answer
        return answer

    async def withdraw(self, case: dict) -> dict:
        status, answer = await self.post("/v1/cases/withdraw",
                                         {"case_number": case["case_number"], "pin": case["pin"]})
        assert status == 200, answer
        return answer

    async def wait_applied(self, case: dict, what: str = "fingerprints", timeout: float = 20.0) -> dict:
        found: dict = {}

        async def applied() -> bool:
            answer = await self.status(case)
            found.update(answer)
            return bool(answer["platforms"]) and all((p[what] or {}).get("applied") for p in answer["platforms"])

        assert await wait_for(applied, timeout=timeout), found
        return found


@contextlib.asynccontextmanager
async def running_pair(tmp_path, start_node, session: aiohttp.ClientSession, *, interval: float = 0.05,
                       ack_interval: float | None = None, platform_name: str = "Platform A"):
    """The pair, started with the tests' `start_node` and sharing their `session`."""
    settings = {"cases": {"pin_scrypt_n": 2**10}}
    if ack_interval is not None:
        settings["acknowledgements"] = {"interval": ack_interval}
    helpline_dir = make_datadir(tmp_path, name="helpline", origin=HELPLINE, interval=interval, role="helpline",
                                settings=settings)
    platform_dir = make_datadir(tmp_path, name="platform", origin=PLATFORM, interval=interval, role="platform",
                                settings=settings)
    helpline = await start_node(helpline_dir)
    platform = await start_node(platform_dir)
    try:
        for follower, followed, name in ((platform, helpline, "helpline"), (helpline, platform, platform_name)):
            db = follower.node.db
            db.follow.add_log(followed.node.config.node.origin, followed.public_url,
                              followed.node.log_vkey, name=name, interval=0.05)
            await follower.node.follower.reload()  # at once, not at the next 5 s reload
        yield Pair(helpline, platform, session)
    finally:
        await platform.stop()
        await helpline.stop()


def entries_of(node: RunningNode) -> list[tuple[int, dict]]:
    from protocol.entries import decode_entry, entry_to_json

    return [(i, entry_to_json(decode_entry(data))) for i, data, _ in
            node.node.db.execute("SELECT idx, data, leaf_hash FROM log_entries ORDER BY idx").fetchall()]


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
