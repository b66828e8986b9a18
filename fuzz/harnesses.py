"""One harness per parser that takes bytes from outside, and what each must hold.

A harness takes the bytes of one input and feeds them to a parser exactly as the node
receives them (from a peer, a request, a file). Bad input must end in one of OUR error
types (`expected`): that is the clear error the node answers with. Anything else that
escapes -- a KeyError, a UnicodeEncodeError, a RecursionError, an AssertionError of the
properties checked here -- is a crash: in the node it would be a 500, a dead follower
round or a traceback instead of a message.

Beyond "no crash", harnesses check what the parsers promise: one encoding per value
(what parses re-encodes to the same bytes), and, for tiles, that whatever verifies is
the real tree. Every harness is a plain function; fuzz/run_one.py drives it with
atheris, tests/test_fuzz_regressions.py replays the crashes found and every seed.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace

from fuzz import fixtures as fx


@dataclass(frozen=True)
class Harness:
    name: str
    run: Callable[[bytes], None]
    about: str                     # which parser, and where its bytes come from
    max_len: int = 4096            # libFuzzer's -max_len: the longest input it makes
    timeout: int = 10              # seconds one input may take before it counts as a hang
    seeds: Callable[[], Iterable[bytes]] = field(default=lambda: ())
    tokens: tuple[bytes, ...] = ()  # libFuzzer dictionary: words worth splicing in
    instrument: tuple[str, ...] = ()  # libraries whose parsing code coverage should guide too


HARNESSES: dict[str, Harness] = {}


def harness(about: str, **options):
    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        name = fn.__name__
        HARNESSES[name] = Harness(name, fn, about, **options)
        return fn
    return register


def _text(data: bytes) -> str:
    """Bytes as the str a parser gets: UTF-8, bytes that are not as lone surrogates
    (what JSON "\\udcxx" escapes and some decoders hand on)."""
    return data.decode("utf-8", "surrogateescape")


def _json_body(data: bytes):
    """The JSON value of a request body as node/jsontext.parse_json reads it, or None
    when the route answers 400 before any parser of ours runs."""
    from node.errors import BadRequest
    from node.jsontext import parse_json

    try:
        return parse_json(data)
    except BadRequest:
        return None


_JSON_WORDS = (b'{"', b'"}', b'": ', b", ", b"[]", b"{}", b"null", b"true", b"false", b"-0", b"1e999",
               b'"\\ud800"', b'"\\u0000"')


# --------------------------------------------------------------------------- notes, keys

@harness("protocol.note.parse_note / open_note: signed notes from peers (/checkpoint, gossip, "
         "witness answers, evidence files)", tokens=(b"\xe2\x80\x94 ", b"\n\n", b"=\n"))
def note(data: bytes) -> None:
    from protocol.errors import NoteError
    from protocol.note import open_note, parse_note

    try:
        parsed = parse_note(data)
    except NoteError:
        return
    assert parsed.to_bytes() == data, "a note parsed but does not re-encode to the same bytes"
    try:
        opened = open_note(data, fx.NOTE_VERIFIERS)
    except NoteError:
        return
    assert opened.text == parsed.text and opened.verified_by


@harness("verifier keys, Go signer keys, request keys and private-key files "
         "(protocol.note, node.readaccess.parse_request_vkey): --vkey, node.json, evidence, "
         "announcements, `readers add`, DIR/keys/*", tokens=(b"+", b"PRIVATE+KEY+", b"AQ", b"AT"))
def keys(data: bytes) -> None:
    from node.readaccess import parse_request_vkey, request_vkey
    from protocol.cosignature import CosignatureSigner, CosignatureVerifier
    from protocol.errors import KeyFormatError
    from protocol.note import Signer, Verifier

    text = _text(data)
    for verifier_class in (Verifier, CosignatureVerifier):
        try:
            key = verifier_class.from_vkey(text)
        except KeyFormatError:
            continue
        assert key.vkey == text, "a verifier key parsed but is not spelled canonically"
    try:
        signer = Signer.from_go_private_key(text)
    except KeyFormatError:
        pass
    else:
        assert signer.to_go_private_key() == text.removesuffix("\n")
    try:
        public = parse_request_vkey(text)
    except KeyFormatError:
        pass
    else:
        assert request_vkey(text.split("+", 1)[0], public) == text, "a request key has two spellings"
    for signer_class in (Signer, CosignatureSigner):
        try:
            loaded = signer_class.from_key_file(data)
        except KeyFormatError:
            continue
        assert loaded.to_key_file() == data


# --------------------------------------------------------------------------- checkpoints

@harness("protocol.checkpoint: Checkpoint.parse and open_checkpoint on a signed note "
         "(a followed log's /checkpoint, /add-checkpoint, gossip)",
         tokens=(b"fuzz.example/log\n", b"\n\n", b"\xe2\x80\x94 "))
def checkpoint(data: bytes) -> None:
    from protocol.checkpoint import Checkpoint, open_checkpoint
    from protocol.errors import CheckpointError, NoteError

    try:
        cp = Checkpoint.parse(_text(data))
    except CheckpointError:
        pass
    else:
        assert cp.to_text() == _text(data)
    try:
        cp, note = open_checkpoint(data, fx.NOTE_VERIFIERS)
    except (NoteError, CheckpointError):
        return
    assert cp.to_text() == note.text and cp.origin == fx.LOG_ORIGIN


@harness("protocol.cosignature: witness cosignature lines (a witness's answer, cosigned "
         "checkpoints from a log)", tokens=(b"\xe2\x80\x94 fuzz.example/witness ", b"\n"))
def cosignature(data: bytes) -> None:
    from protocol.checkpoint import Checkpoint
    from protocol.cosignature import cosignature_timestamp
    from protocol.errors import CheckpointError, CosignatureError, NoteError
    from protocol.note import add_signatures, parse_note, parse_signature_text

    try:
        parse_signature_text(_text(data))  # one line, as a witness answers it
    except NoteError:
        pass
    try:
        note = parse_note(data)
    except NoteError:
        return
    for sig in note.signatures:
        try:
            cosignature_timestamp(sig)
        except CosignatureError:
            pass
        try:
            fx.WITNESS_VERIFIER.verify_line(note.text, sig.to_line())
        except CosignatureError:
            pass
    try:
        fx.WITNESS_VERIFIER.verify(note)
    except CosignatureError:
        pass
    try:
        Checkpoint.parse(note.text)
    except CheckpointError:
        return
    line = fx.WITNESS_SIGNER.cosign(note.text, fx.COSIGNED_AT + 1)
    try:
        cosigned = add_signatures(data, [line])
    except NoteError:
        return  # a 17th signature
    assert fx.WITNESS_VERIFIER.verify(parse_note(cosigned)) == fx.COSIGNED_AT + 1


# --------------------------------------------------------------------------- tiles

@harness("protocol.tiles.parse_tile_path: GET /tile/... request paths",
         max_len=128, tokens=(b"tile/", b"entries/", b".p/", b"x", b"/"))
def tile_path(data: bytes) -> None:
    from protocol.errors import TileError
    from protocol.tiles import parse_tile_path

    path = _text(data)
    try:
        ident = parse_tile_path(path)
    except TileError:
        return
    assert ident.path() == path.removeprefix("/"), "a tile path parsed but is not the canonical spelling"


def _split_tiles(data: bytes):
    """(old size, new size, {tile: bytes}) from an input: 3 bytes each pick the sizes,
    the rest is cut into the tiles a follower fetches for that update (the last one
    takes whatever remains, so lengths go wrong too)."""
    from protocol.tiles import tiles_for_update

    size = int.from_bytes(data[0:3], "big") % (fx.TREE_SIZE + 1)
    old = int.from_bytes(data[3:6], "big") % (size + 1)
    rest = data[6:]
    wanted = tiles_for_update(old, size)
    tiles, pos = {}, 0
    for i, tile in enumerate(wanted):
        end = pos + 32 * tile.width if i < len(wanted) - 1 else len(rest)
        tiles[tile] = rest[pos:end]
        pos = end
    return old, size, tiles


@harness("protocol.tiles.verify_extension / verify_tiles: hash tiles a followed log serves "
         "for an update", max_len=64 * 1024)
def tiles(data: bytes) -> None:
    from protocol.errors import ProofError, TileError
    from protocol.tiles import verify_extension

    if len(data) < 6:
        return
    old, size, given = _split_tiles(data)
    tree = fx.tree()
    try:
        verify_extension(old, tree.root(old), size, tree.root(size), given)
    except (TileError, ProofError):
        return
    for tile, got in given.items():
        assert got == tree.tile(tile), f"tile {tile.path()} verified but is not the log's"


@harness("protocol.tiles.decode_bundle / verify_bundle and each entry: entry bundles a "
         "followed log serves", max_len=64 * 1024, tokens=(b"\x00\x2c\x01\x01", b"\x00\x05\x01\x02"))
def bundle(data: bytes) -> None:
    from protocol.entries import decode_entry
    from protocol.errors import EntryError, TileError
    from protocol.merkle import leaf_hash
    from protocol.tiles import decode_bundle, encode_bundle, verify_bundle

    try:
        entries = decode_bundle(data)
    except TileError:
        return
    assert encode_bundle(entries) == data
    assert decode_bundle(data, len(entries)) == entries
    verify_bundle(entries, b"".join(leaf_hash(e) for e in entries))
    for entry in entries:
        try:
            decode_entry(entry)
        except EntryError:
            pass


# --------------------------------------------------------------------------- entries

@harness("protocol.entries.decode_entry: every leaf of a followed log, in binary",
         max_len=70_000, tokens=(b"\x01\x01", b"\x01\x02", b"\x01\x03", b"\x01\x04", b"https://", b"\xff"))
def entry(data: bytes) -> None:
    from protocol.entries import decode_entry, encode_entry, entry_and_bytes_from_json, entry_summary_key, entry_to_json
    from protocol.errors import EntryError

    entry_summary_key(data[:3])  # counted without decoding (node statistics): must never raise
    try:
        value = decode_entry(data)
    except EntryError:
        return
    assert encode_entry(value) == data, "an entry decoded but does not re-encode to the same bytes"
    again, raw = entry_and_bytes_from_json(json.loads(json.dumps(entry_to_json(value))))
    assert again == value and raw == data, "the JSON view of an entry does not give it back"


@harness("protocol.entries.entry_and_bytes_from_json: one entry in its JSON view (a line of "
         "POST /admin/append, `ncii-node append`)", tokens=_JSON_WORDS + (
             b'"kind"', b'"submission"', b'"withdrawal"', b'"feedback"', b'"announcement"', b'"signal"',
             b'"pdq"', b'"md5"', b'"vpdq"', b'"fingerprint"', b'"targets"', b'"labels"', b'"day"',
             b'"quality"', b'"timestamp"', b'"new_vkey"', b'"rotation_signature"', b'"leaf_hash"'))
def entry_json(data: bytes) -> None:
    from protocol.entries import decode_entry, entry_and_bytes_from_json, entry_from_json, entry_to_json
    from protocol.errors import EntryError

    obj = _json_body(data)
    try:
        value, raw = entry_and_bytes_from_json(obj)
    except EntryError:
        return
    assert decode_entry(raw) == value
    assert entry_from_json(entry_to_json(value)) == value


@harness("node.log.append.parse_append_lines: the body of POST /admin/append (JSON lines)",
         max_len=16 * 1024, tokens=_JSON_WORDS + (b"\n", b'{"kind": "submission", "signal": "pdq", '
                                                              b'"fingerprint": "', b'{"kind": "withdrawal", '
                                                              b'"targets": ['))
def append(data: bytes) -> None:
    from node.errors import BadRequest
    from node.log.append import parse_append_lines
    from protocol.entries import decode_entry

    try:
        entries = parse_append_lines(data, log_size=1000)
    except BadRequest:
        return
    for raw in entries:
        decode_entry(raw)


# --------------------------------------------------------------------------- fingerprints

@harness("protocol.signals: PDQ, MD5 and vPDQ in binary (the fingerprint bytes of a "
         "submission entry); first byte picks the signal", max_len=70_000)
def signal_bytes(data: bytes) -> None:
    from protocol.errors import SignalError
    from protocol.signals import SIGNALS_BY_CODE

    if not data:
        return
    signal = SIGNALS_BY_CODE[1 + data[0] % 3]
    try:
        value = signal.parse_bytes(data[1:])
    except SignalError:
        return
    assert signal.parse_json(json.loads(json.dumps(signal.to_json(value)))) == value
    signal.is_degenerate(value)
    for example in signal.examples():
        signal.distance(value, example)
        signal.matches(value, example)
        signal.matches(example, value)


@harness("a fingerprint object {signal, fingerprint, quality}: POST /v1/match (Query.from_json, "
         "parse_match_body), POST /v1/cases (parse_fingerprints), `ncii-node hash --json`",
         max_len=16 * 1024, tokens=_JSON_WORDS + (
             b'"signal"', b'"pdq"', b'"md5"', b'"vpdq"', b'"fingerprint"', b'"quality"', b'"low_quality"',
             b'"timestamp"', b'"fingerprints"', b'"path"'))
def signal_json(data: bytes) -> None:
    from node.cases.fingerprints import FingerprintError, parse_fingerprints
    from node.config import CasesSection
    from node.errors import BadRequest, TooLarge
    from node.matcher.api import parse_match_body
    from node.matcher.service import Query
    from protocol.errors import SignalError
    from protocol.signals import SIGNALS

    obj = _json_body(data)
    try:
        parse_match_body(obj)
    except (BadRequest, TooLarge):
        pass
    try:
        query = Query.from_json(obj)
    except SignalError:
        pass
    else:
        signal = SIGNALS[query.signal]
        assert signal.parse_json(signal.to_json(query.fingerprint)) == query.fingerprint
    try:
        parse_fingerprints([obj], caps=CasesSection(), day=20_000)
    except FingerprintError:
        pass


@harness("PDQ and MD5 as hex text: `ncii-node match --pdq HEX --md5 HEX`", max_len=256)
def signal_text(data: bytes) -> None:
    from node.cli.match import _items

    text = _text(data)
    for option in ("pdq", "md5"):
        args = SimpleNamespace(paths=[], pdq=[], md5=[])
        getattr(args, option).append(text)
        try:
            (item,) = _items(args)
        except ValueError:  # what the command turns into its usage error
            continue
        assert item.fingerprints[0]["fingerprint"] == text.strip().lower()


# --------------------------------------------------------------------------- requests

@harness("node.cases.service.read_new_case / read_case_codes: the bodies of POST /v1/cases, "
         "/v1/cases/status and /v1/cases/withdraw", max_len=16 * 1024, tokens=_JSON_WORDS + (
             b'"eligibility"', b'"in_image"', b'"adult"', b'"adult_in_image"', b'"has_image"', b'"intimate"',
             b'"country"', b'"FR"', b'"lang"', b'"fr"',
             b'"en"', b'"fingerprints"', b'"signal"', b'"pdq"', b'"fingerprint"', b'"case_number"', b'"pin"'))
def case_body(data: bytes) -> None:
    from node.cases.service import read_case_codes, read_new_case
    from node.config import CasesSection
    from node.errors import Refused
    from node.web.errors import status_of
    from protocol.entries import decode_entry

    try:  # as node/web/case_routes.py reads a body
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return
    try:
        refusal, fingerprints = read_new_case(body, caps=CasesSection(), day=20_000, directory=_help())
    except Refused as exc:
        assert status_of(exc) == 400
        json.dumps({"error": exc.message, **exc.details})  # the answer must be writable as JSON
    else:
        json.dumps(refusal.to_json() if refusal else None)
        for fp in fingerprints:
            decode_entry(fp.entry)
    try:
        read_case_codes(body)
    except Refused as exc:
        assert status_of(exc) == 400
        json.dumps({"error": exc.message, **exc.details})


@functools.cache
def _help():
    """Where a refusal points to, as a helpline with the default [page] section has it."""
    from node.cases.resources import HelpDirectory
    from node.config import Config

    return HelpDirectory.from_config(Config().page)


@functools.cache
def _witness():
    """A witness of fx.LOG_ORIGIN over a real SQLite database (in /dev/shm when there
    is one: the harness must not wear a disk), with a cosigned checkpoint of size 5."""
    from node.store import open_db
    from node.witness.addcheckpoint import Witness

    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    db = open_db(os.path.join(tempfile.mkdtemp(prefix="ncii-fuzz-", dir=where), "witness.db"))
    db.execute("PRAGMA synchronous=OFF")
    db.witness.add_known_log(fx.LOG_ORIGIN, fx.LOG_SIGNER.verifier_key())
    witness = Witness(fx.WITNESS_SIGNER, db, clock=lambda: fx.COSIGNED_AT)
    return witness, db


WITNESS_STORED_SIZE = 5


def _reset_witness(db) -> None:

    tree = fx.tree()
    row = (WITNESS_STORED_SIZE, tree.root(WITNESS_STORED_SIZE), fx.cosigned(tree.checkpoint(WITNESS_STORED_SIZE)),
           float(fx.COSIGNED_AT))
    db.witness.witness_update(fx.LOG_ORIGIN, lambda stored: (None, row))


@harness("node.witness.addcheckpoint: the body of POST /add-checkpoint (C2SP tlog-witness), "
         "judged by a witness over SQLite", max_len=64 * 1024 + 16, tokens=(b"old ", b"\n\n", b"\xe2\x80\x94 "))
def add_checkpoint(data: bytes) -> None:
    witness, db = _witness()
    _reset_witness(db)
    reply = witness.add_checkpoint(data)
    assert reply.status in (200, 400, 403, 404, 409, 422), reply
    assert isinstance(reply.body, bytes)


@harness("node.witness.submit.cosignature_lines: a witness's 200 answer to our own "
         "/add-checkpoint (cosignature lines for our checkpoint)", max_len=8192,
         tokens=(b"\xe2\x80\x94 fuzz.example/witness ", b"\n"))
def witness_reply(data: bytes) -> None:
    from node.witness.submit import WitnessFailure, cosignature_lines

    try:
        lines = cosignature_lines(data, WITNESS_REPLY_TEXT, fx.WITNESS_VERIFIER)
    except WitnessFailure:
        return
    for line in lines:
        fx.WITNESS_VERIFIER.verify_line(WITNESS_REPLY_TEXT, line)


WITNESS_REPLY_TEXT = f"{fx.LOG_ORIGIN}\n8\n{'7Hv6zRcPR38GtJm3nlWdkKqF4SlAQBl2ZCt0CCnBvcY='}\n"


@harness("node.readaccess.verify_request: RFC 9421 Signature-Input and Signature headers of a "
         "read request (input: Signature-Input, a newline, Signature)", max_len=2048,
         tokens=(b'ncii=("@method" "@authority" "@path" "@query")', b";created=", b";expires=", b";keyid=",
                 b";nonce=", b';alg="ed25519"', b';tag="ncii-node-read"', b"ncii=:", b"\n"),
         instrument=("http_message_signatures", "http_sf"))
def request_signature(data: bytes) -> None:
    from aiohttp.test_utils import make_mocked_request

    from node.readaccess import ReadAccessError, ReplayCache, verify_request

    first, _, second = data.partition(b"\n")
    # A header value as aiohttp hands it on: Latin-1, without the bytes HTTP forbids in it.
    values = [v.decode("latin-1").translate({0: None, 10: None, 13: None}) for v in (first, second)]
    headers = {"Host": _SIGNED_HOST}
    for name, value in zip(("Signature-Input", "Signature"), values):
        if value:
            headers[name] = value
    request = make_mocked_request("GET", _SIGNED_PATH, headers=headers)
    try:
        reader = verify_request(request, _readers(), now=_SIGNED_AT, authorities={_SIGNED_HOST},
                                replay_cache=ReplayCache(16))
    except ReadAccessError:
        return
    assert reader == _readers.vkey


_SIGNED_HOST = "node.example:8080"
_SIGNED_PATH = "/tile/0/000.p/5"
_SIGNED_AT = 1_700_000_000


@functools.cache
def _readers():
    from node.readaccess import ReaderRegistry, RequestSigner

    signer = RequestSigner.from_seed(fx.READER_NAME, fx.READER_SEED)
    _readers.vkey = signer.keyid
    return ReaderRegistry([signer.keyid])


def signed_request_headers(nonce: str = "fuzz-nonce-0123456789") -> bytes:
    """A valid input for request_signature: the headers a registered reader sends."""
    from node.readaccess import RequestSigner

    signer = RequestSigner.from_seed(fx.READER_NAME, fx.READER_SEED)
    headers = signer.sign_headers("GET", f"http://{_SIGNED_HOST}{_SIGNED_PATH}", now=_SIGNED_AT, nonce=nonce)
    return f"{headers['Signature-Input']}\n{headers['Signature']}".encode("latin-1")


@harness("node.cases.proxies: X-Forwarded-For headers behind trusted proxies "
         "(input: the peer address, then one header per line)", max_len=512,
         tokens=(b"127.0.0.1", b"10.0.0.1", b"::1", b"[", b"]:", b",", b"::ffff:", b"%"))
def forwarded_for(data: bytes) -> None:
    from node.cases.proxies import ClientAddresses, parse_address

    peer, *headers = data.decode("latin-1").split("\n")
    client = _proxies().client(peer, headers)
    assert client == peer or parse_address(client) is not None


@functools.cache
def _proxies():
    from node.cases.proxies import ClientAddresses

    return ClientAddresses(["127.0.0.0/8", "10.0.0.0/8", "::1"])


# --------------------------------------------------------------------------- files and peers' documents

@harness("node.config.parse_config: DIR/config.toml", max_len=4096, tokens=(
    b"[node]\n", b"[http]\n", b"[admin]\n", b"[log]\n", b"[paths]\n", b"[cases]\n", b"origin = ", b"role = ",
    b"port = ", b"trusted_proxies = [", b"body_timeout = ", b"pin_scrypt_n = ", b'"', b"\n", b"inf", b"nan"),
    instrument=("tomllib", "tomli_w"))
def config(data: bytes) -> None:
    from node.config import ConfigError, dump_config, parse_config

    try:
        parsed = parse_config(data)
    except ConfigError:
        return
    assert parse_config(dump_config(parsed).encode("utf-8")) == parsed, "a config does not survive being written"


@harness("protocol.evidence.verify_evidence: split-view evidence from peers "
         "(GET /witness/evidence) and `ncii-node audit verify-evidence FILE`", max_len=16 * 1024,
         tokens=_JSON_WORDS + (b'"type"', b'"ncii-node/split-view-evidence/v1"', b'"origin"', b'"vkey"',
                               b'"checkpoints"', b'"proof"', b'"kind"', b'"same-size"', b'"consistency"',
                               b'"old_size"', b'"new_size"', b'"old_root_in_new_tree"', b'"hashes"'))
def evidence(data: bytes) -> None:
    from protocol.evidence import EvidenceError, verify_evidence

    try:
        proven = verify_evidence(data)
    except EvidenceError:
        return
    assert proven.origin == proven.smaller.origin == proven.larger.origin


@harness("node.follow.gossip.parse_seen and node.witness.seen.notes_for_origin: a peer's "
         "GET /witness/seen, each note opened with our pinned key", max_len=16 * 1024,
         tokens=_JSON_WORDS + (b'"checkpoints"', b'"origin"', b'"note"', b'"fuzz.example/log"'))
def gossip_seen(data: bytes) -> None:
    from node.follow.gossip import GossipError, parse_seen
    from node.witness.seen import notes_for_origin
    from protocol.checkpoint import open_checkpoint
    from protocol.errors import ProtocolError

    try:
        seen = parse_seen(data)
    except GossipError:
        return
    for note in notes_for_origin(seen, fx.LOG_ORIGIN):
        try:
            open_checkpoint(note, [fx.LOG_VERIFIER], origin=fx.LOG_ORIGIN)
        except ProtocolError:
            pass


@harness("node.cli.follow.parse_node_json: a peer's GET /node.json (`follow add --tofu`)",
         max_len=4096, tokens=_JSON_WORDS + (b'"verifier_key"',))
def node_json(data: bytes) -> None:
    from node.cli.follow import NodeJsonError, parse_node_json
    from protocol.errors import KeyFormatError
    from protocol.note import Verifier

    try:
        info = parse_node_json(data)
    except NodeJsonError:
        return
    try:
        Verifier.from_vkey(info["verifier_key"])
    except KeyFormatError:
        pass


@harness("protocol.merkle.verify_inclusion / verify_consistency on arbitrary sizes and hashes "
         "(proofs in /add-checkpoint bodies and evidence files): 3 big-endian uint64 (size1, "
         "size2, index), 2 roots, then proof hashes", max_len=24 + 64 + 70 * 32)
def merkle(data: bytes) -> None:
    from protocol.errors import ProofError
    from protocol.merkle import verify_consistency, verify_inclusion

    if len(data) < 88:
        return
    size1, size2, index = (int.from_bytes(data[i:i + 8], "big") for i in (0, 8, 16))
    root1, root2 = data[24:56], data[56:88]
    proof = [data[i:i + 32] for i in range(88, len(data), 32)]
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except ProofError:
        pass
    try:
        verify_inclusion(root1, index, size2, proof, root2)
    except ProofError:
        pass


@functools.cache
def _vector(name: str) -> dict:
    from fuzz.seeds import VECTORS

    return json.loads((VECTORS / name).read_text())


@harness("protocol.policy.parse_policy and verify_checkpoint: a C2SP tlog-policy file "
         "(`witness require --policy FILE`, `audit verify-proof --policy FILE`), then a cosigned "
         "checkpoint judged by it", max_len=16 * 1024,
         tokens=(b"log ", b"witness ", b"group ", b"quorum ", b"none", b"all", b"any", b"\n", b"#", b"\t"))
def policy(data: bytes) -> None:
    from protocol.errors import ProtocolError
    from protocol.policy import PolicyError, parse_policy, verify_checkpoint

    try:
        parsed = parse_policy(data)
    except PolicyError:
        return
    assert parse_policy(parsed.to_bytes()) == parsed, "a policy does not survive being written"
    for vector in _vector("tlog-policy.json")["quorum"]:
        try:
            verify_checkpoint(parsed, vector["note"].encode("utf-8"))
        except ProtocolError:
            pass


@harness("protocol.tlogproof.parse_proofs / verify_proofs: a C2SP tlog-proof or our bundle of "
         "them (`audit verify-proof FILE`), verified against the vectors' policy", max_len=64 * 1024,
         tokens=(b"c2sp.org/tlog-proof@v1\n", b"ncii-node/tlog-proofs@v1\n", b"extra ", b"index ", b"\n\n",
                 b"\xe2\x80\x94 "))
def tlog_proof(data: bytes) -> None:
    from protocol.errors import ProtocolError
    from protocol.policy import parse_policy
    from protocol.tlogproof import ProofFormatError, parse_proofs, verify_proofs

    try:
        proofs = parse_proofs(data)
    except ProofFormatError:
        return
    assert proofs.to_bytes() == data, "a proof parsed but does not re-encode to the same bytes"
    try:
        verify_proofs(proofs, parse_policy(_vector("tlog-proof.json")["policy"].encode()))
    except ProtocolError:
        pass


@harness("node.hashing.hash_media_bytes: a platform's upload to POST /v1/match/media "
         "(image and video decoders behind our sniffing)", max_len=64 * 1024, timeout=20)
def media(data: bytes) -> None:
    from node.hashing import HashingError, hash_media_bytes
    from protocol.signals import SIGNALS

    try:
        fingerprints = hash_media_bytes(data)
    except HashingError:
        return
    for fp in fingerprints:
        SIGNALS[fp["signal"]].parse_json(fp["fingerprint"])


# --------------------------------------------------------------------------- push, federation, acknowledgements

@harness("node.follow.push.parse_parts: a followed node's GET /push/checkpoint answer in parts "
         "(checkpoint, tiles, bundles) and each frame of GET /push/stream", max_len=16 * 1024,
         tokens=(b"checkpoint ", b"tile/0/000 ", b"tile/1/000.p/3 ", b"tile/entries/x001/002 ", b"\n", b" 0\n",
                 b" 32\n", b"/", b".p/"))
def push_parts(data: bytes) -> None:
    from node.follow.push import MAX_PARTS, encode_parts, parse_parts

    try:
        note, parts = parse_parts(data)
    except ValueError:
        return
    assert len(parts) <= MAX_PARTS
    assert encode_parts(note, list(parts.items())) == data, "a parts body with two encodings"


@harness("node.follow.push.FrameReader: the bytes of a followed node's GET /push/stream, read in "
         "chunks of the sizes the first byte picks, each frame then parsed as parts",
         max_len=16 * 1024, tokens=(b"frame ", b"frame 0\n", b"checkpoint ", b"\n"))
def push_stream(data: bytes) -> None:
    from node.follow.push import FrameReader, encode_frame, parse_parts

    if not data:
        return
    step, stream = data[0] % 17 + 1, data[1:]
    reader, frames, at = FrameReader(), [], 0
    try:
        while at < len(stream):
            chunk = stream[at:at + min(step, reader.wanted())]
            reader.feed(chunk)
            at += len(chunk)
            while (frame := reader.next_frame()) is not None:
                frames.append(frame)
                assert len(reader._buffer) <= reader.wanted() + 32, "the reader holds more than a frame"
    except ValueError:
        return
    consumed = b"".join(encode_frame(f) for f in frames)
    assert stream.startswith(consumed), "frames that are not the stream's bytes"
    assert reader.between_frames == (len(consumed) == len(stream))
    for frame in frames:
        try:
            parse_parts(frame)
        except ValueError:
            pass


@harness("node.federation.members.parse_text / open_list: a federation's signed membership list "
         "(GET .../federation/list, `federation status`), signed by the fixed list keys",
         max_len=16 * 1024, tokens=(b"ncii-node/federation-list/v1\n", b"federation ", b"serial ", b"member ",
                                    b"helpline ", b"platform ", b"https://", b"\n\n", b"\xe2\x80\x94 "))
def member_list(data: bytes) -> None:
    from node.federation.members import ListError, open_list, parse_text

    try:
        listed = parse_text(_text(data))
    except ListError:
        pass
    else:
        assert listed.text() == _text(data), "a membership list with two encodings"
    try:
        open_list(data, fx.LIST_VKEYS, 1)
    except ListError:
        pass


@harness("node.federation.listlog.parse_entry / open_list_checkpoint: the entries and the "
         "checkpoint of a federation's list log (GET .../federation/checkpoint, version tiles)",
         max_len=8 * 1024, tokens=(b"ncii-node/federation-list-version/v1\n", b"federation ", b"serial ",
                                   b"sha256 ", b"\n\n", b"\xe2\x80\x94 ", b"fuzz.example/federation\n"))
def list_log(data: bytes) -> None:
    from node.federation.listlog import open_list_checkpoint, parse_entry
    from node.federation.members import ListError

    try:
        version = parse_entry(data, 0)
    except ListError:
        pass
    else:
        assert version.to_bytes() == data, "a list version entry with two encodings"
    for federation in (fx.LIST_FEDERATION, None):
        for witnesses in ((), (fx.WITNESS_VERIFIER_KEY,)):
            try:
                open_list_checkpoint(data, fx.LIST_VKEYS, 1, federation, witnesses, len(witnesses))
            except ListError:
                pass


@harness("protocol.ack_evidence.load / verify_ack_evidence: acknowledgement evidence from an "
         "auditor (`ncii-node audit verify-evidence FILE`)", max_len=32 * 1024,
         tokens=_JSON_WORDS + (b'"type"', b'"ncii-node/acknowledgement-evidence/v1"', b'"origin"', b'"vkey"',
                               b'"checkpoint"', b'"acknowledger"', b'"proof"', b'"kind"', b'"same-size"',
                               b'"consistency"', b'"size"', b'"new_size"', b'"root_in_new_tree"', b'"hashes"'))
def ack_evidence(data: bytes) -> None:
    from protocol.ack_evidence import load, verify_ack_evidence
    from protocol.evidence import EvidenceError

    doc = load(data)
    if doc is None:
        return
    try:
        verify_ack_evidence(doc)
    except EvidenceError:
        pass


@harness("node.invitation.parse: an invitation bundle pasted into `ncii-node join` (and each "
         "member of a federation list)", max_len=8 * 1024,
         tokens=(b"ncii-invite-1.", b"eyJ1cmwiOi", b"=", b"-", b"_"))
def invitation(data: bytes) -> None:
    from node.invitation import InvitationError, parse

    try:
        invited = parse(_text(data))
    except InvitationError:
        return
    assert parse(invited.encode()) == invited, "an invitation that does not survive being written"
