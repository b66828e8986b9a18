"""spec/openapi.yaml against live nodes, with schemathesis: every documented operation,
on a helpline and a platform (real `ncii-node serve` processes reading each other's
logs, the platform witnessing the helpline), public and admin sites, called with
requests that schemathesis generates from the spec -- valid ones and invalid ones.

Every answer must be documented for its operation (status code, content type,
headers) and match its schema, and none may be a 5xx. Requests carry what a real
client has: the admin token on the admin site (the match token would do for matching),
and on routes for registered readers an RFC 9421 signature by the other node's
request key. Examples per operation are bounded (NCII_SCHEMATHESIS_EXAMPLES, default
25) and derandomized, so the test takes about a minute and fails the same way twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    ignored_auth,
    negative_data_rejection,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from test_cases_cycle import YES, Node, ncii, post_json, wait_for  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "spec" / "openapi.yaml"
HELPLINE = "helpline.openapi.example/log"
PLATFORM = "platform.openapi.example/feedback"
EXAMPLES = int(os.environ.get("NCII_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection,
          ignored_auth]
# Routes only one role has; every other route is called on both nodes.
ONLY_ON = {"/v1/cases": "helpline", "/v1/match": "platform", "/": "helpline", "/{file}": "helpline",
           "/helpline.json": "helpline", "/admin/cases": "helpline"}

# Operations called with the explicit requests only: a generated valid request to the
# push stream holds it open for its `wait` (up to 30 s) by design; the explicit ones
# ask for 1 s, and test_push_stream.py covers its parameters and framing.
EXPLICIT_ONLY = {"/push/stream"}

pytestmark = pytest.mark.timeout(600)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value):
    """POST /admin/append: the body is the lines themselves (a string in the spec)."""
    return value.encode("utf-8") if isinstance(value, str) else json.dumps(value).encode("utf-8")


class SignedReads(requests.auth.AuthBase):
    """Signs each request as a registered reader does (node/readaccess/)."""

    def __init__(self, datadir_root: Path):
        from node.datadir import DataDir
        from node.readaccess import RequestSigner

        key = DataDir(datadir_root).load_request_signer()
        self.signer = RequestSigner.from_seed(key.name, key.seed)

    def __call__(self, request):
        from yarl import URL

        # The signer covers the URL as yarl spells it (our readers send with aiohttp);
        # send that spelling ("?origin=a/b", where requests would write "a%2Fb").
        request.url = str(URL(request.url))
        request.headers.update(self.signer.sign_headers(request.method, request.url))
        return request


class LiveNode:
    def __init__(self, node: Node, role: str, reader_of_it: Path):
        from node.datadir import DataDir

        self.node, self.role = node, role
        self.admin_token = DataDir(node.root).admin_token()
        self.match_token = DataDir(node.root).match_token() if role == "platform" else None
        self.reads = SignedReads(reader_of_it)
        self.session = requests.Session()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    helpline = Node(root / "helpline", HELPLINE, "helpline")
    platform = Node(root / "platform", PLATFORM, "platform")
    helpline_vkey = ncii("key", "--dir", str(helpline.root)).stdout.strip()
    ncii("readers", "add", "--dir", str(helpline.root), ncii("key", "--dir", str(platform.root), "--request").stdout.strip())
    ncii("readers", "add", "--dir", str(platform.root), ncii("key", "--dir", str(helpline.root), "--request").stdout.strip())
    ncii("witness", "logs", "add", "--dir", str(platform.root), HELPLINE, helpline_vkey)
    helpline.start()
    platform.start()
    try:
        ncii("follow", "add", "--dir", str(platform.root), helpline.url, "--vkey", helpline_vkey, "--interval", "0.2")
        ncii("follow", "add", "--dir", str(helpline.root), platform.url, "--vkey",
             ncii("key", "--dir", str(platform.root)).stdout.strip(), "--interval", "0.2")
        # Something to find: two cases at the helpline, verified and indexed by the platform.
        cases = []
        for fingerprint in FINGERPRINTS:
            status, body = post_json(helpline.url + "/v1/cases", {"eligibility": YES, "fingerprints": [fingerprint]})
            assert status == 201, body
            cases.append((body["case_number"], body["pin"]))
        wait_for("the platform to verify the helpline's log",
                 lambda: (platform.followed(HELPLINE) or {}).get("size", 0) >= len(cases))
        yield {"helpline": LiveNode(helpline, "helpline", platform.root),
               "platform": LiveNode(platform, "platform", helpline.root), "cases": cases}
    finally:
        helpline.stop()
        platform.stop()


UNSIGNED, MATCH_TOKEN = "unsigned", "match token"  # explicit requests: no signature; the match token
FINGERPRINTS = [
    {"signal": "pdq", "fingerprint": "50be04453306004d11924d7f21450f55eaba55d5255d8dfd13a2f5550755ffff", "quality": 90},
    {"signal": "md5", "fingerprint": "9e107d9d372bb6826bd81d3542a419d6"},
]


def _explicit(live) -> dict[tuple[str, str], list[tuple[str, dict, set[int]]]]:
    """Requests a real client makes, which random generation seldom hits, with the
    statuses they must get: per operation, (node, Case arguments, statuses)."""
    import io

    from PIL import Image

    from node.witness.addcheckpoint import encode_request

    (number, pin), (other_number, other_pin) = live["cases"]
    note = live["helpline"].session.get(live["helpline"].node.url + "/checkpoint", timeout=30).content
    picture = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").save(picture, "JPEG")
    line = json.dumps({"kind": "submission", "signal": "md5", "fingerprint": "0123456789abcdef0123456789abcdef"})
    return {
        ("GET", "/tile/{path}"): [("helpline", {"path_parameters": {"path": p}}, {200})
                                  for p in ("0/000.p/1", "entries/000.p/1")]
                                 + [("helpline", {"path_parameters": {"path": "0/000.p/1"}, UNSIGNED: True}, {401})],
        ("GET", "/status"): [("helpline", {UNSIGNED: True}, {401})],
        ("POST", "/v1/cases"): [("helpline", {"body": {"eligibility": YES, "fingerprints": [
            {"signal": "pdq", "fingerprint": "229fffe0001f7fe0881fffe0a01fffe0001fffe0001fffe0001f001fffe0001f"}]}},
            {201})],
        ("POST", "/v1/cases/status"): [("helpline", {"body": {"case_number": number, "pin": pin}}, {200}),
                                       ("helpline", {"body": {"case_number": number, "pin": "00000000"}}, {401})],
        ("POST", "/v1/cases/withdraw"): [("helpline", {"body": {"case_number": other_number, "pin": other_pin}},
                                          {200})],
        ("POST", "/add-checkpoint"): [("platform", {"body": encode_request(0, [], note).decode(),
                                                    "media_type": "text/plain"}, {200, 409})],
        ("GET", "/witness/checkpoint"): [("platform", {"query": {"origin": HELPLINE}}, {200})],
        ("GET", "/push/stream"): [request for role in ("helpline", "platform") for request in (
            (role, {"query": {"wait": 1, "have": 0}}, {200}), (role, {"query": {"wait": 1}, UNSIGNED: True}, {401}),
            (role, {"query": {"wait": 0}}, {400}), (role, {"query": {"since": 1}}, {400}))],
        ("GET", "/{origin_hash}/checkpoint"): [("platform", {"path_parameters": {
            "origin_hash": hashlib.sha256(HELPLINE.encode()).hexdigest()}}, {200})],
        ("GET", "/witness/evidence"): [("platform", {"query": {"origin": HELPLINE}}, {200})],
        ("POST", "/admin/append"): [(role, {"body": line + "\n", "media_type": "application/x-ndjson"}, {200})
                                    for role in ("helpline", "platform")],
        ("POST", "/v1/feedback"): [("platform", {"body": {"origin": HELPLINE, "index": 0, "verdict": "removed"}},
                                    {200}),
                                   # was a 500: an index beyond what SQLite holds (found by this test)
                                   ("platform", {"body": {"origin": HELPLINE, "index": 2**68, "verdict": "removed"}},
                                    {400})],
        ("POST", "/v1/match"): [("platform", {"body": FINGERPRINTS[0], MATCH_TOKEN: True}, {200}),
                                ("platform", {"body": {"fingerprints": FINGERPRINTS}}, {200})],
        ("POST", "/v1/match/media"): [("platform", {"body": picture.getvalue(),
                                                    "media_type": "application/octet-stream"}, {200})],
        ("POST", "/v1/match/threshold"): [("platform", {"body": {"origin": HELPLINE, "threshold": 20}}, {200})],
        ("POST", "/v1/match/suppress"): [("platform", {"body": {"origin": HELPLINE, "index": 0}, MATCH_TOKEN: True},
                                          {401}),
                                         ("platform", {"body": {"origin": HELPLINE, "index": 277642173769004482560}},
                                          {400}),  # was a 500 (found by this test)
                                         ("platform", {"body": {"origin": HELPLINE, "index": 0, "feedback": True}},
                                          {200})],
    }


def _operations():
    schema = schemathesis.openapi.from_path(str(SPEC))
    for result in schema.get_all_operations():
        yield result.ok()


def _nodes_for(path: str) -> list[str]:
    for prefix, role in ONLY_ON.items():
        if path == prefix or (prefix != "/" and path.startswith(prefix + "/")):
            return [role]
    return ["helpline", "platform"]


def _on_admin_site(operation) -> bool:
    return any("admin site" in s.get("description", "") for s in operation.definition.raw.get("servers", []))


def _check_operation(operation, target: LiveNode, examples: int, explicit: list[tuple[dict, set[int]]]) -> Counter:
    """Call one operation with the explicit requests, then with generated ones; how
    many answers of each status. Raises the first failed check (no shrinking: the
    failing request is printed)."""
    admin = _on_admin_site(operation)
    base_url = target.node.admin_url if admin else target.node.url
    headers = {"Authorization": f"Bearer {target.admin_token}"} if admin else {}
    auth = None if admin else target.reads
    statuses: Counter = Counter()
    for arguments, wanted in explicit:
        arguments = dict(arguments)
        unsigned, match_token = arguments.pop(UNSIGNED, False), arguments.pop(MATCH_TOKEN, False)
        case = operation.Case(**arguments)
        response = case.call(base_url=base_url, session=target.session, timeout=30,
                             headers={"Authorization": f"Bearer {target.match_token}"} if match_token else headers,
                             auth=None if unsigned else auth)
        statuses[response.status_code] += 1
        assert response.status_code in wanted, (arguments, response.status_code, response.text[:500])
        case.validate_response(response, checks=CHECKS)

    @settings(max_examples=max(examples, 1), deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
           | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def run(case):
        response = case.call(base_url=base_url, session=target.session, headers=headers, auth=auth, timeout=30)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    if examples:
        run()
    return statuses


def test_every_answer_of_live_nodes_matches_the_spec(live):
    started = time.monotonic()
    failures, counts = [], {}
    explicit = _explicit(live)
    for operation in _operations():
        for role in _nodes_for(operation.path):
            mine = [(arguments, wanted) for node, arguments, wanted in
                    explicit.get((operation.method.upper(), operation.path), []) if node == role]
            try:
                counts[f"{operation.method.upper()} {operation.path} @{role}"] = _check_operation(
                    operation, live[role], 0 if operation.path in EXPLICIT_ONLY else EXAMPLES, mine)
            except Exception as exc:  # one operation's failure must not hide the others'
                failures.append(f"{operation.method.upper()} {operation.path} on the {role}: {exc}")
    elapsed = time.monotonic() - started
    print(f"schemathesis: {sum(sum(c.values()) for c in counts.values())} requests over {len(counts)} "
          f"operation/node pairs in {elapsed:.0f} s")
    for name, statuses in sorted(counts.items()):
        print(f"  {sum(statuses.values()):4d}  {name:<36} " + " ".join(f"{s}x{n}" for s, n in sorted(statuses.items())))
    assert not failures, "\n\n".join(failures)
    assert all(counts.values()), counts
