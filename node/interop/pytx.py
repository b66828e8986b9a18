"""The python-threatexchange extension: HMA and the `threatexchange` CLI follow our logs.

    pip install "ncii-node[pytx]"                       # ncii-node beside threatexchange
    threatexchange config extensions add node.interop.pytx
    threatexchange config collab edit ncii_node NAME --create \\
        --url URL --vkey VKEY --request-key-file FILE   # the log, its pinned key, your reader key
    threatexchange fetch
    threatexchange match photo UPLOAD.jpg

Built against the unmodified `threatexchange` 1.2.17 from PyPI (its SignalExchangeAPI,
FetchDelta, checkpoint and collaboration config classes); spec/parts/interop.md says
what a platform sees, how HMA loads it, and the feedback mapping.

`fetch_iter` runs one round of node.interop.logreader (the follower's verification:
checkpoint signature, every tile, every leaf, consistency with the checkpoint it
stored, fork evidence) and yields, only once the whole round has verified, ONE
FetchDelta: every new submission keyed by (origin, index as decimal), a withdrawal as
`None` for each entry it withdraws, in log order, with the new checkpoint. A consumer
stores the delta and its checkpoint together (the CLI in one file, HMA in one
transaction), so the state is always that of a verified checkpoint, and an interrupted
fetch resumes from it. A fork, a bad tile or any other failure yields nothing.

Signals: PDQ (pytx `pdq`), MD5 (pytx `video_md5`) and vPDQ (pytx `vpdq`, from
threatexchange's vpdq extension). Every submission is kept as a record; a signal the
consumer has no type for is not indexed (a one-line note says so for vPDQ), and is
indexed once the type is installed, without fetching again (CLI; HMA drops records it
cannot index).

`report_opinion` publishes feedback through the platform's own node (it must follow the
same log): see `verdict_for` for the mapping.
"""

import dataclasses
import logging
import os
import sys
import time
import typing as t
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from threatexchange.cli.exceptions import CommandError
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigWithDefaults
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest
from threatexchange.signal_type.signal_base import SignalType

from node.follow.client import log_url_problem
from node.follow.sync import ForkDetected, SyncError
from node.interop.logreader import ReaderState, read_round
from protocol.entries import Submission, Withdrawal, day_to_json
from protocol.errors import ProtocolError, UsageError
from protocol.note import Verifier
from protocol.signals import SIGNALS

log = logging.getLogger(__name__)

NAME = "ncii_node"

#: Our signal name -> python-threatexchange's SignalType name.
PYTX_SIGNAL = {"pdq": "pdq", "md5": "video_md5", "vpdq": "vpdq"}
OUR_SIGNAL = {pytx: ours for ours, pytx in PYTX_SIGNAL.items()}

VPDQ_NOTE = ("{count} vPDQ submission(s) kept but not matched: threatexchange's vpdq extension is not "
             "installed (pip install vpdq; threatexchange config extensions add "
             "threatexchange.extensions.vpdq.manifest)")

ENV_ADMIN_URL = "NCII_NODE_ADMIN_URL"
ENV_ADMIN_TOKEN = "NCII_NODE_ADMIN_TOKEN"


# ---------------------------------------------------------------------- configuration

@dataclass
class _RequiredFields:
    url: str = field(metadata={"help": "the log's base URL, e.g. https://helpline.example (its /checkpoint is "
                                       "URL/checkpoint)"})
    vkey: str = field(metadata={"help": "the log's verifier key, pinned: `ncii-node key --dir DIR` on the "
                                        "helpline's node, or from the helpline itself", "metavar": "VKEY"})
    request_key_file: str = field(metadata={"help": "your request key (a node's DIR/keys/request.key): the "
                                                    "helpline registers its public half with `ncii-node readers "
                                                    "add`", "metavar": "FILE"})


@dataclass
class NCIINodeCollabConfig(CollaborationConfigWithDefaults, _RequiredFields):
    """A followed ncii-node log. Feedback needs the platform's own node, following the
    same log: its admin URL and a file holding its admin token (or the environment
    variables NCII_NODE_ADMIN_URL and NCII_NODE_ADMIN_TOKEN)."""

    node_admin_url: t.Optional[str] = field(default=None, metadata={
        "help": f"feedback: your own node's admin site, admin_url in its DIR/serve.json (or ${ENV_ADMIN_URL})",
        "metavar": "URL"})
    node_admin_token_file: t.Optional[str] = field(default=None, metadata={
        "help": f"feedback: a file holding your node's admin token, DIR/admin.token (or ${ENV_ADMIN_TOKEN})",
        "metavar": "FILE"})
    origin: t.Optional[str] = field(default=None, metadata={
        "help": "the log's origin line, when its key is not named like it (default: the key's name)",
        "metavar": "ORIGIN"})
    evidence_dir: t.Optional[str] = field(default=None, metadata={
        "help": "where fork evidence files go (default: ncii_node/evidence in the threatexchange state "
                "directory, $TX_STATEDIR or ~/.threatexchange)", "metavar": "DIR"})
    timeout: t.Optional[float] = field(default=None, metadata={
        "help": "seconds per request to the log (default 10)", "metavar": "SECONDS"})


@dataclass
class NCIINodeCheckpoint(state.FetchCheckpointBase):
    """The verified checkpoint the stored records are those of. Checkpoints never go
    stale: a log is append-only, so fetching resumes from here however old it is."""

    origin: str               # the log's origin line
    size: int
    root_hash: str            # hex
    checkpoint_note: str      # the signed note
    vkey: str                 # the key the next checkpoint must be signed by (the pinned one, or rotated to)
    pinned_vkey: str          # the collaboration's vkey when this state began
    verified_at: int          # unix time of the round that verified it

    def get_progress_timestamp(self) -> t.Optional[int]:
        return self.verified_at

    @classmethod
    def from_state(cls, reader: ReaderState, pinned_vkey: str) -> "NCIINodeCheckpoint":
        return cls(reader.origin, reader.size, (reader.root_hash or b"").hex(),
                   (reader.checkpoint_note or b"").decode("utf-8"), reader.vkey, pinned_vkey,
                   int(reader.verified_at or time.time()))

    def to_state(self) -> ReaderState:
        try:
            root = bytes.fromhex(self.root_hash)
            note = self.checkpoint_note.encode("utf-8")
            Verifier.from_vkey(self.vkey)
        except (ValueError, ProtocolError) as exc:
            raise FetchFailed(f"the stored checkpoint is damaged ({exc}); clear it and fetch again "
                              "(threatexchange fetch --clear)") from None
        if self.size < 0 or len(root) != 32:
            raise FetchFailed("the stored checkpoint is damaged; clear it and fetch again "
                              "(threatexchange fetch --clear)")
        return ReaderState(self.origin, self.vkey, self.size, root, note, float(self.verified_at))


@dataclass
class NCIINodeSubmission(state.FetchedSignalMetadata):
    """One submission of a followed log: the record of key (origin, index), and the
    metadata of its signal in an index. `same_fingerprint` lists the other entries
    ("origin#index") whose fingerprint is the same (filled in for the index only)."""

    origin: str
    index: int
    signal: str               # our name: pdq | md5 | vpdq
    fingerprint: str          # hex of the canonical bytes (protocol.signals)
    quality: t.Optional[int] = None
    labels: t.Tuple[str, ...] = ()
    day: t.Optional[str] = None
    same_fingerprint: t.Tuple[str, ...] = ()

    @property
    def entry(self) -> str:
        return f"{self.origin}#{self.index}"

    def get_as_opinions(self) -> t.Sequence[state.SignalOpinion]:
        # A person asked for this fingerprint to be matched; a platform's review decides
        # (StopNCII's records are likewise investigation seeds in python-threatexchange).
        return [state.SignalOpinion(False, state.SignalOpinionCategory.INVESTIGATION_SEED, set(self.labels))]

    def __str__(self) -> str:
        parts = [self.get_as_aggregate_opinion().category.name, self.entry]
        if self.labels:
            parts.append("labels=" + ",".join(self.labels))
        if self.quality is not None:
            parts.append(f"quality={self.quality}")
        if self.same_fingerprint:
            parts.append("also=" + ",".join(self.same_fingerprint))
        return " ".join(parts)


class FetchFailed(CommandError):
    """The fetch stopped; nothing was yielded, the stored state is as it was."""

    def __init__(self, message: str):
        super().__init__(message, 3)


class FeedbackUnavailable(CommandError, NotImplementedError):
    """Feedback cannot be sent (no node configured): NotImplementedError, as
    SignalExchangeAPI.report_opinion callers expect of an exchange without it."""

    def __init__(self, message: str):
        super().__init__(message, 2)


class FeedbackFailed(CommandError):
    def __init__(self, message: str):
        super().__init__(message, 3)


# ---------------------------------------------------------------------- the exchange

_Key = t.Tuple[str, str]
_Delta = state.FetchDelta[_Key, NCIINodeSubmission, NCIINodeCheckpoint]


class NCIINodeSignalExchangeAPI(
    SignalExchangeAPI[NCIINodeCollabConfig, NCIINodeCheckpoint, NCIINodeSubmission, _Key, NCIINodeSubmission]
):
    """The exchange `ncii_node`: one collaboration follows one ncii-node log."""

    def __init__(self, collab: NCIINodeCollabConfig):
        self.collab = collab

    @classmethod
    def get_name(cls) -> str:
        return NAME

    @classmethod
    def for_collab(cls, collab: NCIINodeCollabConfig) -> "NCIINodeSignalExchangeAPI":
        return cls(collab)

    @staticmethod
    def get_config_cls() -> t.Type[NCIINodeCollabConfig]:
        return NCIINodeCollabConfig

    @staticmethod
    def get_checkpoint_cls() -> t.Type[NCIINodeCheckpoint]:
        return NCIINodeCheckpoint

    @staticmethod
    def get_record_cls() -> t.Type[NCIINodeSubmission]:
        return NCIINodeSubmission

    # ------------------------------------------------------------------ fetch
    def fetch_iter(self, supported_signal_types: t.Sequence[t.Type[SignalType]],
                   checkpoint: t.Optional[NCIINodeCheckpoint]) -> t.Iterator[_Delta]:
        collab = self.collab
        try:
            pinned = Verifier.from_vkey(collab.vkey.strip())
        except ProtocolError as exc:
            raise FetchFailed(f"{NAME} {collab.name}: --vkey is not a verifier key: {exc}") from None
        problem = log_url_problem(collab.url)
        if problem:
            raise FetchFailed(f"{NAME} {collab.name}: --url: {problem}: {collab.url}")
        origin = _origin(collab)
        if checkpoint is None:
            start = ReaderState.first(pinned.vkey, origin)
        elif (checkpoint.pinned_vkey, checkpoint.origin) != (pinned.vkey, origin):
            raise FetchFailed(f"{NAME} {collab.name}: the collaboration's vkey or origin changed since the state "
                              "was fetched; to start over, clear it (threatexchange fetch --clear)")
        else:
            start = checkpoint.to_state()
        updates: dict[_Key, NCIINodeSubmission | None] = {}
        counts: Counter = Counter()
        shared: dict = {}

        def on_entry(index: int, entry) -> None:
            if type(entry) is Submission:
                updates[(origin, str(index))] = _record(origin, index, entry, shared)
                counts[entry.signal] += 1
            elif type(entry) is Withdrawal:
                for target in entry.targets:
                    if target < index:  # a withdrawal names earlier entries only (apply.py does the same)
                        updates[(origin, str(target))] = None
                counts["withdrawn"] += 1

        try:
            signer = _request_signer(collab.request_key_file)
            new_state, result, rotations = read_round(
                collab.url, start, on_entry, signer=signer, evidence_dir=_evidence_dir(collab),
                timeout=collab.timeout or 10.0)
        except (SyncError, UsageError) as exc:
            message = f"{NAME} {collab.name}: fetch stopped, nothing stored: {exc}"
            _say(logging.CRITICAL if isinstance(exc, ForkDetected) else logging.ERROR, message)
            raise FetchFailed(message) from None
        for rotation in rotations:
            _say(logging.WARNING, f"{NAME} {collab.name}: key rotation at entry {rotation.index} "
                                  f"{'honoured' if rotation.honoured else 'REFUSED'}: {rotation.reason}")
        if result.outcome == "in-sync":
            return
        if counts["vpdq"] and not any(st.get_name() == PYTX_SIGNAL["vpdq"] for st in supported_signal_types):
            _say(logging.WARNING, f"{NAME} {collab.name}: " + VPDQ_NOTE.format(count=counts["vpdq"]))
        log.info("%s %s: verified checkpoint %d (+%d entries: %d submissions, %d withdrawals)", NAME, collab.name,
                 result.new_size, result.new_size - result.old_size,
                 sum(counts[s] for s in PYTX_SIGNAL), counts["withdrawn"])
        yield state.FetchDelta(updates, NCIINodeCheckpoint.from_state(new_state, pinned.vkey))

    @classmethod
    def naive_convert_to_signal_type(
        cls, signal_types: t.Sequence[t.Type[SignalType]], collab: NCIINodeCollabConfig,
        fetched: t.Mapping[_Key, t.Optional[NCIINodeSubmission]],
    ) -> t.Dict[t.Type[SignalType], t.Dict[str, NCIINodeSubmission]]:
        by_name = {st.get_name(): st for st in signal_types}
        grouped: dict[t.Type[SignalType], dict[str, list[NCIINodeSubmission]]] = {}
        for record in fetched.values():
            if record is None:
                continue
            signal_type = by_name.get(PYTX_SIGNAL.get(record.signal, ""))
            if signal_type is None:
                continue
            try:
                signal_str = signal_type.validate_signal_str(pytx_signal_str(record))
            except (ValueError, ProtocolError) as exc:
                log.warning("%s: entry %s: %s fingerprint not accepted by %s: %s", NAME, record.entry,
                            record.signal, signal_type.get_name(), exc)
                continue
            grouped.setdefault(signal_type, {}).setdefault(signal_str, []).append(record)
        return {signal_type: {signal_str: _with_duplicates(records) for signal_str, records in signals.items()}
                for signal_type, signals in grouped.items()}

    # ------------------------------------------------------------------ feedback
    def report_opinion(self, s_type: t.Type[SignalType], signal: str, opinion: state.SignalOpinion) -> None:
        """Publish the verdict `verdict_for(opinion)` on every entry of this log that
        `signal` matches on the platform's own node (its POST /v1/match, which applies
        the node's thresholds), through its POST /v1/feedback."""
        from node.client import NodeClient, NodeError

        verdict = verdict_for(opinion)
        ours = OUR_SIGNAL.get(s_type.get_name())
        if ours is None:
            raise FeedbackUnavailable(f"{NAME}: no feedback for {s_type.get_name()} signals; an ncii-node log "
                                      f"holds {', '.join(PYTX_SIGNAL.values())}")
        url, token = _feedback_node(self.collab)
        try:
            origin = _origin(self.collab)
        except ProtocolError as exc:
            raise FeedbackFailed(f"{NAME}: the collaboration's vkey is not a verifier key: {exc}") from None
        try:
            fingerprint = SIGNALS[ours].to_json(SIGNALS[ours].parse_json(_our_fingerprint_json(ours, signal)))
        except (ProtocolError, ValueError) as exc:
            raise FeedbackFailed(f"{NAME}: not a {s_type.get_name()} fingerprint: {exc}") from None
        try:
            node = NodeClient(url, token)
        except ValueError as exc:
            raise FeedbackFailed(f"{NAME}: {exc}") from None
        try:
            with node:
                result = node.match(ours, fingerprint)
                entries = [m for m in result.matches if m.origin == origin]
                if not entries:
                    raise FeedbackFailed(f"{NAME}: no entry of {origin} matches this {s_type.get_name()} signal on "
                                         f"your node ({url}); it must follow that log to publish feedback")
                for match in entries:
                    receipt = node.feedback(origin, match.index, verdict)
                    _say(logging.INFO, f"{NAME}: published {verdict} on {origin}#{match.index} "
                                       f"(entry {receipt.index} of your node's log)")
        except NodeError as exc:
            raise FeedbackFailed(f"{NAME}: your node ({url}) refused: {exc}") from None


TX_MANIFEST = ThreatExchangeExtensionManifest(apis=(NCIINodeSignalExchangeAPI,))


# ---------------------------------------------------------------------- mapping

#: Opinion tags that choose among the verdicts of one category (documented in spec/parts/interop.md).
PENDING_TAGS = {"pending-review", "matched-pending-review"}
NOT_VIOLATING_TAGS = {"not-violating"}


def verdict_for(opinion: state.SignalOpinion) -> str:
    """The verdict a python-threatexchange / HMA opinion becomes:

    NEGATIVE_CLASS (a false positive)            -> disputed-false-match
        with tag not-violating                   -> not-violating
    POSITIVE_CLASS (fits the collaboration)      -> removed
        with tag pending-review                  -> matched-pending-review
    INVESTIGATION_SEED (needs a person to check) -> matched-pending-review

    Other tags are ignored; tags that contradict the category are refused."""
    tags = {str(tag).strip().lower() for tag in (opinion.tags or ())}
    category = opinion.category
    if category == state.SignalOpinionCategory.NEGATIVE_CLASS:
        if tags & PENDING_TAGS:
            raise FeedbackFailed(f"{NAME}: a negative opinion cannot be pending review")
        return "not-violating" if tags & NOT_VIOLATING_TAGS else "disputed-false-match"
    if tags & NOT_VIOLATING_TAGS:
        raise FeedbackFailed(f"{NAME}: a {category.name} opinion cannot be not-violating")
    if category == state.SignalOpinionCategory.POSITIVE_CLASS:
        return "matched-pending-review" if tags & PENDING_TAGS else "removed"
    if category == state.SignalOpinionCategory.INVESTIGATION_SEED:
        return "matched-pending-review"
    raise FeedbackFailed(f"{NAME}: unknown opinion category {category!r}")


def pytx_signal_str(record: NCIINodeSubmission) -> str:
    """The signal string python-threatexchange uses for a record's fingerprint: hex for
    pdq and video_md5; for vpdq, the JSON list that its vpdq extension writes."""
    data = bytes.fromhex(record.fingerprint)
    if record.signal != "vpdq":
        return SIGNALS[record.signal].to_json(data)
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, vpdq_to_json

    return vpdq_to_json([VpdqCompactFeature(f.pdq.hex(), f.quality, f.timestamp_ms / 1000)
                         for f in SIGNALS["vpdq"].frames(data)])


def _our_fingerprint_json(ours: str, signal: str):
    """A python-threatexchange signal string in our JSON form."""
    if ours != "vpdq":
        return signal.strip()
    from threatexchange.extensions.vpdq.vpdq_util import json_to_vpdq

    return [{"pdq": f.pdq_hex, "quality": f.quality, "timestamp": f.timestamp} for f in json_to_vpdq(signal)]


def _record(origin: str, index: int, entry: Submission, shared: dict) -> NCIINodeSubmission:
    # A million records are held at once: equal labels and days share one object.
    day = shared.setdefault(entry.day, day_to_json(entry.day))
    return NCIINodeSubmission(origin, index, entry.signal, entry.fingerprint.hex(), entry.quality,
                              shared.setdefault(entry.labels, entry.labels), day)


def _with_duplicates(records: list[NCIINodeSubmission]) -> NCIINodeSubmission:
    first = records[0]
    if len(records) == 1:
        return first
    return dataclasses.replace(first, same_fingerprint=tuple(r.entry for r in records[1:]))


# ---------------------------------------------------------------------- the environment

def _request_signer(path: str):
    from node.readaccess import load_request_signer

    return load_request_signer(os.path.expanduser(path))


def _origin(collab: NCIINodeCollabConfig) -> str:
    """The log's origin line: the collaboration's `origin`, or its key's name."""
    return collab.origin.strip() if collab.origin else Verifier.from_vkey(collab.vkey.strip()).name


def _evidence_dir(collab: NCIINodeCollabConfig) -> Path:
    if collab.evidence_dir:
        return Path(collab.evidence_dir).expanduser()
    return Path(os.getenv("TX_STATEDIR", "~/.threatexchange")).expanduser() / NAME / "evidence"


def _feedback_node(collab: NCIINodeCollabConfig) -> tuple[str, str]:
    """(admin URL, admin token) of the platform's own node, from the collaboration or
    the environment; FeedbackUnavailable when not configured."""
    url = collab.node_admin_url or os.environ.get(ENV_ADMIN_URL)
    token = os.environ.get(ENV_ADMIN_TOKEN)
    if collab.node_admin_token_file:
        try:
            token = Path(collab.node_admin_token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise FeedbackFailed(f"{NAME}: cannot read --node-admin-token-file "
                                 f"{collab.node_admin_token_file}: {exc.strerror or exc}") from None
    if not url or not token:
        raise FeedbackUnavailable(
            f"{NAME}: feedback is not available for {collab.name}: it is published by your own ncii-node (which "
            f"must follow the same log), and none is configured. Set --node-admin-url and "
            f"--node-admin-token-file on the collaboration (or ${ENV_ADMIN_URL} and ${ENV_ADMIN_TOKEN}).")
    return url, token


def _say(level: int, message: str) -> None:
    """Log `message`; where logging would drop it (the threatexchange CLI logs only
    CRITICAL unless -v), also write it to stderr, so a person running the CLI sees it."""
    log.log(level, "%s", message)
    if not log.isEnabledFor(level):
        print(message, file=sys.stderr)
