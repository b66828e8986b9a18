"""A helpline node and a platform node running in this process, each following the
other's log (registered readers of each other), for the acknowledgement and receipt
tests. Real HTTP on 127.0.0.1, real SQLite, real keys; short sequencing intervals."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import aiohttp

from node.store import follow as follow_store
from node.web.app import RunningNode
from node.web.follow_routes import FOLLOW_SERVICE
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
async def running_pair(tmp_path, *, interval: float = 0.05, ack_interval: float | None = None,
                       platform_name: str = "Platform A"):
    helpline_dir = make_datadir(tmp_path, name="helpline", origin=HELPLINE, interval=interval)
    platform_dir = make_datadir(tmp_path, name="platform", origin=PLATFORM, interval=interval)
    for datadir, role in ((helpline_dir, "helpline"), (platform_dir, "platform")):
        config = datadir.config
        config.node.role = role
        config.cases.pin_scrypt_n = 2**10
        if ack_interval is not None:
            config.acknowledgements.interval = ack_interval
        datadir.save_config(config)
    helpline = await RunningNode(type(helpline_dir)(helpline_dir.root)).start("127.0.0.1", 0)
    platform = await RunningNode(type(platform_dir)(platform_dir.root)).start("127.0.0.1", 0)
    try:
        for follower, followed, name in ((platform, helpline, "helpline"), (helpline, platform, platform_name)):
            db = follower.context.db
            follow_store.add_log(db, followed.context.config.node.origin, followed.public_url,
                                 followed.context.log_vkey, name=name, interval=0.05)
            await follower.app[FOLLOW_SERVICE]["service"].reload()  # at once, not at the next 5 s reload
        async with aiohttp.ClientSession() as session:
            yield Pair(helpline, platform, session)
    finally:
        await platform.stop()
        await helpline.stop()


def entries_of(node: RunningNode) -> list[tuple[int, dict]]:
    from protocol.entries import decode_entry, entry_to_json

    return [(i, entry_to_json(decode_entry(data))) for i, data, _ in
            node.context.db.execute("SELECT idx, data, leaf_hash FROM log_entries ORDER BY idx").fetchall()]


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
