"""What the match API does, without HTTP (routes: node/web/match_routes.py; prose:
spec/parts/matching-api.md).

    parse_match_body(body, max_batch)        -> (queries, is_batch); BadRequest / TooLarge
    await match_answer(matcher, metrics, queries, limit, is_batch)
                                             -> the answer's JSON text (POST /v1/match)
    await match_and_describe(matcher, metrics, queries, limit)
                                             -> [(QueryResult, [described hit, ...])] per query
    upload_fingerprints(data, dihedral)      -> the fingerprints of an uploaded file (Unprocessable)
    merge_variants(answers, fingerprints)    -> one answer from a photo's 8 rotations and flips
    result_json(result, described, query)    -> {"signal", "matches", "total"}
    media_answer(fingerprints, queries, answers) -> {"kind", "matched", "results"} of an uploaded file
    set_threshold(db, matcher, origin, threshold) -> the threshold now in force
    await set_budget(db, matcher, body)      -> a followed log's budgets now in force (Budget)
    await release_cluster(matcher, body)     -> what releasing a held cluster indexed (NotFound)

Limits (MatchSettings): a batch holds at most MAX_BATCH fingerprints; each query lists
at most MAX_MATCHES matches, nearest first ("total" says how many matched in all);
JSON bodies are bounded by [admin] max_body_bytes, media by MEDIA_LIMIT.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass
from typing import Any

from node.errors import BadRequest, NotFound, TooLarge, Unprocessable
from node.hashing import (
    DIHEDRAL_VARIANTS,
    HashingError,
    decode_image,
    hash_media_bytes,
    pdq_dihedral_from_rgb,
    pdq_fingerprint,
    sniff,
)
from node.matcher.holds import Budget
from node.matcher.answers import answer_json
from node.matcher.service import Query, QueryResult
from node.matcher.signal_indexes import index_class
from node.store.matching import BUDGET_FIELDS
from protocol.errors import ProtocolError

MAX_BATCH = 1000
MAX_MATCHES = 100          # per query, nearest first; "total" says how many matched in all
MEDIA_LIMIT = 256 * 1024 * 1024
MAX_THRESHOLD = 256


@dataclass
class MatchSettings:
    json_limit: int
    media_limit: int = MEDIA_LIMIT
    max_batch: int = MAX_BATCH
    max_matches: int = MAX_MATCHES


def parse_match_body(body: Any, max_batch: int = MAX_BATCH) -> tuple[list[Query], bool]:
    """(queries, is_batch) from a JSON body: one fingerprint object, a list of them,
    or {"fingerprints": [...]}. Raises BadRequest naming the bad item (`item`), or
    TooLarge for a batch over `max_batch`."""
    if isinstance(body, dict) and "signal" in body:
        items, batch = [body], False
    elif isinstance(body, dict) and set(body) == {"fingerprints"}:
        items, batch = body["fingerprints"], True
    elif isinstance(body, list):
        items, batch = body, True
    else:
        raise BadRequest('send a fingerprint {"signal": "pdq", "fingerprint": "<64 hex>"} or a batch '
                         '{"fingerprints": [...]}')
    if not isinstance(items, list) or not items:
        raise BadRequest("a batch is a non-empty list of fingerprints")
    if len(items) > max_batch:
        raise TooLarge(f"a batch holds at most {max_batch} fingerprints, not {len(items)}; split it")
    queries = []
    for number, item in enumerate(items):
        try:
            queries.append(Query.from_json(item))
        except ProtocolError as exc:
            where = f"fingerprint {number}: " if batch else ""
            raise BadRequest(f"{where}{exc}", item=number) from None
    return queries, batch


def result_json(result: QueryResult, described: list[dict], query: Query | None = None) -> dict:
    out: dict[str, Any] = {}
    if query is not None:
        out["signal"] = query.signal
    out["matches"] = described
    out["total"] = result.total
    return out


def media_answer(fingerprints: list[dict], queries: list[Query], answers: list[tuple]) -> dict:
    """The answer to an uploaded file: its kind ("video" when any of its signals is a
    video's), whether anything matched, and per fingerprint its result with what the
    signal's index repeats of the query (a photo's fingerprint; a video's frame count,
    node/matcher/signal_indexes.py) and the quality the hashing reported."""
    results = []
    kinds = [index_class(query.signal) for query in queries]
    for fp, query, kind, (result, described) in zip(fingerprints, queries, kinds, answers):
        item = result_json(result, described, query)
        item.update(kind.echo(fp["fingerprint"]))
        for key in ("quality", "low_quality"):
            if key in fp:
                item[key] = fp[key]
        results.append(item)
    media = "video" if any(kind.media == "video" for kind in kinds) else "image"
    return {"kind": media, "matched": any(r["total"] for r in results), "results": results}


def _answer(matcher, queries, limit: int, is_batch: bool) -> tuple[str, object]:
    """Search, describe, write the JSON (node/matcher/answers.py): runs on a worker thread."""
    found = matcher.search(queries, limit=limit)
    return answer_json(found, queries, matcher.descriptions_of(found), is_batch), found


async def match_answer(matcher, metrics, queries: list[Query], limit: int, is_batch: bool) -> str:
    """The answer to POST /v1/match as JSON text, the bytes `json.dumps` made of
    {"results": [result_json(...), ...]} (or of the one result), without building
    those objects: a batch at near-duplicates has ~100,000 hits. Matched off the
    event loop (raises MatcherLoading while the index is built); the time taken and
    the logs matched go to the node's metrics (node/metrics.py)."""
    started = time.perf_counter()
    text, found = await asyncio.to_thread(_answer, matcher, queries, limit, is_batch)
    metrics.observe_match(time.perf_counter() - started, len(queries), found.origins())
    return text


def _run_matches(matcher, queries, limit: int) -> list[tuple]:
    """Search, then describe the hits from the database: runs on a worker thread."""
    results = matcher.match_many(queries, limit=limit)
    return list(zip(results, matcher.describe_many([result.hits for result in results])))


async def match_and_describe(matcher, metrics, queries: list[Query], limit: int) -> list[tuple]:
    """Match off the event loop (raises MatcherLoading while the index is built); the
    time taken and the logs matched go to the node's metrics (node/metrics.py)."""
    started = time.perf_counter()
    answers = await asyncio.to_thread(_run_matches, matcher, queries, limit)
    metrics.observe_match(time.perf_counter() - started, len(queries),
                          (hit.origin for result, _ in answers for hit in result.hits))
    return answers


def _image_dihedral(data: bytes) -> list[dict]:
    """The PDQ fingerprints of a photo and of its 7 rotations and flips, each
    naming its `variant`."""
    hashes, quality = pdq_dihedral_from_rgb(decode_image(io.BytesIO(data)))
    return [{**pdq_fingerprint(hex_hash, quality), "variant": variant}
            for variant, hex_hash in zip(DIHEDRAL_VARIANTS, hashes)]


def _hash_upload(data: bytes, dihedral: bool) -> list[dict]:
    if dihedral and sniff(data[:16]) == "image":
        return _image_dihedral(data)
    return hash_media_bytes(data)


async def upload_fingerprints(data: bytes, dihedral: bool) -> list[dict]:
    """The fingerprints of an uploaded photo or video, computed off the event loop
    (with `dihedral`, a photo's 8 variants); Unprocessable when it cannot be hashed."""
    try:
        return await asyncio.to_thread(_hash_upload, data, dihedral)
    except HashingError as exc:
        raise Unprocessable(f"cannot fingerprint this file: {exc}") from None


def merge_variants(answers: list[tuple], fingerprints: list[dict]) -> list[tuple]:
    """One answer from the 8 variants' answers: each entry once, at its nearest variant."""
    best: dict[tuple[str, int], dict] = {}
    for fp, (_result, described) in zip(fingerprints, answers):
        for match in described:
            key = (match["origin"], match["index"])
            if key not in best or match["distance"] < best[key]["distance"]:
                best[key] = {**match, "variant": fp["variant"]}
    merged = sorted(best.values(), key=lambda m: (m["distance"], m["origin"], m["index"]))
    total = max([len(merged)] + [result.total for result, _ in answers])
    return [(QueryResult([], total), merged)]


def set_threshold(db, matcher, origin: str, threshold: int | None) -> int:
    """Store a followed log's PDQ distance (None: the default) and put it in force for
    the next search; returns the threshold now in force."""
    if threshold is not None and (type(threshold) is not int or not 0 <= threshold <= MAX_THRESHOLD):
        raise BadRequest(f"threshold must be an integer from 0 to {MAX_THRESHOLD}, or null for the default (31)")
    db.matching.set_threshold(origin, threshold)
    matcher.set_threshold(origin, threshold)
    return matcher.threshold_for(origin)


BUDGET_HINT = ('send {"origin": "<log origin>", "max_fingerprints": N, "max_per_hour": N, "max_per_day": N} '
               '(any of the three; null = the default)')
RELEASE_HINT = 'send {"cluster": <id of a held cluster, as ncii-node status shows it>}'


async def set_budget(db, matcher, body: Any) -> Budget:
    """{"origin": O, "max_fingerprints"?, "max_per_hour"?, "max_per_day"?} (each a whole
    number, or null for the [match] default): stored, and in force at once; the
    fingerprints the new budgets allow go in the index."""
    fields = set(BUDGET_FIELDS)
    if not isinstance(body, dict) or "origin" not in body or not isinstance(body["origin"], str) \
            or not body["origin"] or set(body) - fields - {"origin"}:
        raise BadRequest(BUDGET_HINT)
    values = {key: body[key] for key in fields & set(body)}
    for key, value in values.items():
        if value is not None and (type(value) is not int or not 0 <= value <= 2**40):
            raise BadRequest(f"{key} must be a whole number from 0 up, or null for the default")
    db.matching.set_budget(body["origin"], values)
    return await asyncio.to_thread(matcher.set_budget, body["origin"], values)


async def release_cluster(matcher, body: Any) -> dict:
    """{"cluster": id}: the held cluster's fingerprints go in the index (within budgets)."""
    if not isinstance(body, dict) or set(body) != {"cluster"} or type(body["cluster"]) is not int \
            or not 0 < body["cluster"] < 2**63:
        raise BadRequest(RELEASE_HINT)
    outcome = await asyncio.to_thread(matcher.release_cluster, body["cluster"])
    if outcome is None:
        raise NotFound(f"no held cluster has the id {body['cluster']} (ncii-node status lists them)")
    return outcome
