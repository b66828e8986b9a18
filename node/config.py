"""The node's configuration file, DIR/config.toml.

One dataclass per TOML table; every field has a documented default, so a file may
leave out anything but `[node] origin`. Unknown tables or keys are refused (a typo
in a config file should fail loudly, not be silently ignored). Relative paths in
`[paths]` are relative to the data directory.

Example (what `ncii-node init --origin example.org/helpline` writes)::

    [node]
    origin = "example.org/helpline"   # checkpoint origin line; SHOULD be the log's URL prefix without scheme
    role = "helpline"                 # helpline | platform | witness
    display_name = ""                 # shown in /node.json
    contact = ""                      # a URL or address where the operator can be reached

    [http]
    host = "127.0.0.1"                # public site: /checkpoint, /tile/..., /node.json
    port = 8080
    public_read = false               # true: anyone may fetch tiles and entry bundles
    body_timeout = 30.0               # seconds to receive a whole request body (else 408); both sites
    idle_timeout = 15.0               # seconds to receive a request head after connecting or after
                                      # the previous answer (else the connection is closed); both sites
    stop_grace = 20.0                 # seconds requests in flight get to finish when the node stops;
                                      # then they are cut and the node stops its own parts
    max_concurrent_bodies = 64        # public site: case creations (and other routes' bodies) read at
                                      # once, each pool; beyond: 503 at once. Status/withdrawal and
                                      # /add-checkpoint have pools of their own (publishing.md §1.1)
    bodies_per_address = 2            # bodies one client address (IPv6: /64) may have in flight, per pool
    bodies_per_network = 4            # bodies one IPv4 /24 or IPv6 /56 may have in flight, per pool
    min_body_rate = 4096              # bytes/s a body must average after its first 2 s, else 408
    trusted_proxies = []              # reverse proxies (addresses or CIDR networks) whose
                                      # X-Forwarded-For gives the client address (case API limits)
    public_names = ["example.org"]    # host[:port] names readers reach this node by; a signed read
                                      # sent to any other name is refused (init: the origin's host;
                                      # serve adds its listening address, and localhost on loopback)

    [admin]
    host = "127.0.0.1"                # admin site (POST /admin/append); must be loopback unless
    port = 0                          # allow_remote; port 0 = any free port, announced in DIR/serve.json
    allow_remote = false
    max_body_bytes = 16777216         # larger append bodies are refused before they are read
    max_concurrent_bodies = 8         # admin site: bodies read at once; beyond: 503 at once

    [log]
    sequencing_interval = 0.025       # least seconds between two checkpoints: an append to an idle
                                      # log is published at once; under load appends gather this long
    max_batch_entries = 200000        # a larger pool is sequenced over several batches

    [push]                            # GET /push/checkpoint: followers wait for the next checkpoint
    enabled = true                    # (registered readers only, signed like tile reads)
    max_wait = 30                     # seconds a request may wait before 304 Not Modified
    max_waiting = 4096                # requests waiting at once (each a socket: serve raises its
                                      # open-files limit to the hard limit and lowers this to fit);
                                      # beyond: 503
    max_waiting_per_reader = 4        # per reader; beyond, its oldest wait is answered at once
    stream = true                     # also GET /push/stream: one signed request, many checkpoints
                                      # (a chunked answer; a reverse proxy must not buffer it)

    [witness]                         # this log's witnesses (spec/parts/witness.md §3)
    add_checkpoint_interval = 1.0     # at most one add-checkpoint round per this many seconds,
                                      # declared in /node.json (the witness network asks logs to)

    [acknowledgements]                # what this node applied, published in its own log
    enabled = true                    # (spec/parts/acknowledgements.md; key: DIR/keys/ack.key)
    interval = 2.0                    # at most one acknowledgement per followed log per this many
                                      # seconds, except at once after a withdrawal was applied

    [paths]                           # relative to the data directory
    db = "node.db"
    tiles = "tiles"
    log_key = "keys/log.key"
    request_key = "keys/request.key"
    admin_token = "admin.token"
    case_key = "keys/case.key"        # HMAC key of case numbers (helpline; created on first start)

    [database]                        # where the node keeps everything (spec/parts/storage.md)
    url = ""                          # "" = SQLite at [paths] db; or "postgresql://user@host:port/dbname"
                                      # (entries, cases, tiles, ... all in PostgreSQL; no password here)
    password_file = ""                # the database password: a file holding it (relative to the data
    password_env = ""                 # directory, mode 0600), or an environment variable's name

    [cases]                           # helpline case service (node/cases, spec/parts/cases.md)
    pin_scrypt_n = 32768              # scrypt cost of PIN hashes (2**15); tests may lower it
    pin_scrypt_r = 8
    pin_scrypt_p = 1
    max_fingerprints = 70             # per case, in all (cases.md §5: caps sized for real people)
    max_photos = 50                   # PDQ fingerprints per case
    max_videos = 10                   # videos per case (an MD5 and a vPDQ each)
    max_video_frames = 3600           # vPDQ frames per case in all (an hour of video at 1 frame/s)
    max_body_bytes = 524288           # POST /v1/cases body limit (a case at every cap, ~404 KB, fits)
    per_address_per_hour = 3          # cases opened from one client address (IPv6: /64), sliding windows
    per_address_per_day = 10
    per_network_per_hour = 10         # ... from one IPv4 /24 or IPv6 /56
    per_network_per_day = 30
    per_hour = 100                    # the node's budget, all clients together
    per_day = 500
    proof_of_work_above_per_hour = 20 # above this many cases in the last hour, ask a proof of work
    proof_of_work_bits = 17           # its difficulty: 2**17 SHA-256 on average (cases.md §11)

    [page]                            # the victim web page (helpline; spec/parts/webapp.md)
    countries = ["FR", "BE", "CH", "CA", "GB", "US"]  # the person picks one; its help is shown
    default_country = "FR"            # unless the browser's language names an offered country
    default_resources = true          # the shipped help services and emergency numbers
                                      # (node/cases/resources.py), after your own
    default_faq = true                # the shipped questions and answers, after your own
    quick_exit_url = ""               # where "Quick exit" goes; "" = Wikipedia in the page's language
    # [[page.resources]]  country = "FR" ("*": all), kind = "ncii_support", name = "...",
    #                     url = "https://...", phone = "...", text = { fr = "...", en = "..." }
    # [[page.emergency]]  country = "FR", number = "17", kind = "police"
    # [[page.faq]]        question = { fr = "...", en = "..." }, answer = { fr = "...", en = "..." }
    # [[page.platforms]]  name = "..." (as given to `readers add --name` or `follow add --name`),
    #                     url = "https://..." (optional)

    [match]                           # platform matching (spec/parts/matching-api.md, "Budgets")
    max_fingerprints_per_log = 20000000   # default budgets of each followed log:
    max_per_hour_per_log = 2000000        #   fingerprints in the index, and put into it
    max_per_day_per_log = 10000000        #   per clock hour / per 24 clock hours
    cluster_size = 1000               # a log's fingerprints within 8 bits of one centre, this many: held
    cluster_keep = 16                 # of a held cluster, the log's earliest stay matched
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from node.cases import resources as help_resources

ROLES = ("helpline", "platform", "witness")
#: A public name: a DNS name, an IPv4 address or a bracketed IPv6 address, and an optional port.
_PUBLIC_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
                          r"|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def is_public_name(name: object) -> bool:
    """Whether `name` can be one of [http] public_names: host[:port]."""
    return isinstance(name, str) and _PUBLIC_NAME.fullmatch(name.lower()) is not None


#: The most memory one PIN hash may take (scrypt needs 128 x n x r bytes).
MAX_PIN_SCRYPT_MEMORY = 1 << 30

class ConfigError(ValueError):
    """The configuration file is missing, unreadable or holds a bad value."""


@dataclass
class NodeSection:
    origin: str = ""
    role: str = "helpline"
    display_name: str = ""
    contact: str = ""


@dataclass
class HttpSection:
    host: str = "127.0.0.1"
    port: int = 8080
    public_read: bool = False
    body_timeout: float = 30.0
    idle_timeout: float = 15.0
    stop_grace: float = 20.0
    max_concurrent_bodies: int = 64
    bodies_per_address: int = 2
    bodies_per_network: int = 4
    min_body_rate: float = 4096.0
    trusted_proxies: list = field(default_factory=list)
    public_names: list = field(default_factory=list)


@dataclass
class AdminSection:
    host: str = "127.0.0.1"
    port: int = 0
    allow_remote: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    max_concurrent_bodies: int = 8


@dataclass
class LogSection:
    sequencing_interval: float = 0.025
    max_batch_entries: int = 200_000


@dataclass
class PushSection:
    enabled: bool = True
    max_wait: int = 30
    max_waiting: int = 4096
    max_waiting_per_reader: int = 4
    stream: bool = True


@dataclass
class WitnessSection:
    add_checkpoint_interval: float = 1.0


@dataclass
class AcknowledgementsSection:
    enabled: bool = True
    interval: float = 2.0


@dataclass
class PathsSection:
    db: str = "node.db"
    tiles: str = "tiles"
    log_key: str = "keys/log.key"
    request_key: str = "keys/request.key"
    admin_token: str = "admin.token"
    case_key: str = "keys/case.key"


@dataclass
class DatabaseSection:
    url: str = ""
    password_file: str = ""
    password_env: str = ""

    def validate(self) -> None:
        if not self.url:
            if self.password_file or self.password_env:
                raise ConfigError("[database] password_file and password_env need a [database] url")
            return
        if not _is_line(self.url, 500) or " " in self.url:
            raise ConfigError("[database] url must be one line without spaces, at most 500 characters")
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise ConfigError("[database] url must start with postgresql:// (or be \"\" for SQLite)")
        try:
            port = parsed.port
        except ValueError:
            raise ConfigError("[database] url has a port that is not a number 0..65535") from None
        if parsed.password is not None:
            raise ConfigError("[database] url must not hold a password (it is shown in logs and status): "
                              "put it in password_file or password_env")
        if not parsed.path.strip("/") or "/" in parsed.path.strip("/") or parsed.fragment or port == 0:
            raise ConfigError("[database] url must name one database: postgresql://user@host:port/dbname")
        if self.password_file and self.password_env:
            raise ConfigError("[database] give password_file or password_env, not both")
        if self.password_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", self.password_env):
            raise ConfigError("[database] password_env must be an environment variable's name")
        if self.password_file and not _is_line(self.password_file, 500):
            raise ConfigError("[database] password_file must be a path on one line")


@dataclass
class CasesSection:
    pin_scrypt_n: int = 2**15
    pin_scrypt_r: int = 8
    pin_scrypt_p: int = 1
    max_fingerprints: int = 70
    max_photos: int = 50
    max_videos: int = 10
    max_video_frames: int = 3600
    max_body_bytes: int = 512 * 1024
    per_address_per_hour: int = 3
    per_address_per_day: int = 10
    per_network_per_hour: int = 10
    per_network_per_day: int = 30
    per_hour: int = 100
    per_day: int = 500
    proof_of_work_above_per_hour: int = 20
    proof_of_work_bits: int = 17


@dataclass
class PageSection:
    countries: list = field(default_factory=lambda: list(help_resources.DEFAULT_COUNTRIES))
    default_country: str = "FR"
    default_resources: bool = True
    default_faq: bool = True
    quick_exit_url: str = ""
    resources: list = field(default_factory=list)
    emergency: list = field(default_factory=list)
    faq: list = field(default_factory=list)
    platforms: list = field(default_factory=list)


@dataclass
class MatchSection:
    max_fingerprints_per_log: int = 20_000_000
    max_per_hour_per_log: int = 2_000_000
    max_per_day_per_log: int = 10_000_000
    cluster_size: int = 1000
    cluster_keep: int = 16


@dataclass
class Config:
    node: NodeSection = field(default_factory=NodeSection)
    http: HttpSection = field(default_factory=HttpSection)
    admin: AdminSection = field(default_factory=AdminSection)
    log: LogSection = field(default_factory=LogSection)
    push: PushSection = field(default_factory=PushSection)
    witness: WitnessSection = field(default_factory=WitnessSection)
    acknowledgements: AcknowledgementsSection = field(default_factory=AcknowledgementsSection)
    paths: PathsSection = field(default_factory=PathsSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    cases: CasesSection = field(default_factory=CasesSection)
    page: PageSection = field(default_factory=PageSection)
    match: MatchSection = field(default_factory=MatchSection)

    def validate(self) -> None:
        """Raise ConfigError if a value cannot work."""
        if not self.node.origin or any(c in self.node.origin for c in "\n\r") \
                or self.node.origin != self.node.origin.strip():
            raise ConfigError("[node] origin must be a non-empty single line without surrounding spaces "
                              "(for example \"example.org/helpline\")")
        if self.node.role not in ROLES:
            raise ConfigError(f"[node] role must be one of {', '.join(ROLES)}, not {self.node.role!r}")
        for name, port in (("[http] port", self.http.port), ("[admin] port", self.admin.port)):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be between 0 and 65535, not {port}")
        for proxy in self.http.trusted_proxies:
            try:
                ipaddress.ip_network(proxy if isinstance(proxy, str) else None, strict=False)
            except (TypeError, ValueError):
                raise ConfigError(f"[http] trusted_proxies: {proxy!r:.60} is not an address or a CIDR network "
                                  "(for example \"10.0.0.0/8\" or \"::1\")") from None
        for name in self.http.public_names:
            if not is_public_name(name):
                raise ConfigError(f"[http] public_names: {name!r:.80} is not a host name or address with an "
                                  "optional port (for example \"helpline.example\" or \"192.0.2.7:8443\")")
        for name, seconds in (("body_timeout", self.http.body_timeout), ("idle_timeout", self.http.idle_timeout)):
            if not 0.01 <= seconds <= 3600:
                raise ConfigError(f"[http] {name} must be between 0.01 and 3600 seconds")
        if not 0 <= self.http.stop_grace <= 3600:
            raise ConfigError("[http] stop_grace must be between 0 and 3600 seconds")
        for table, section, key in (("http", self.http, "max_concurrent_bodies"),
                                    ("admin", self.admin, "max_concurrent_bodies"),
                                    ("http", self.http, "bodies_per_address"), ("http", self.http, "bodies_per_network")):
            if not 1 <= getattr(section, key) <= 100_000:
                raise ConfigError(f"[{table}] {key} must be between 1 and 100000")
        if not 1 <= self.http.min_body_rate <= 1e9:
            raise ConfigError("[http] min_body_rate must be between 1 and 1e9 bytes per second")
        if not 0 <= self.log.sequencing_interval <= 3600:
            raise ConfigError("[log] sequencing_interval must be between 0 and 3600 seconds")
        if not 1 <= self.push.max_wait <= 300:
            raise ConfigError("[push] max_wait must be between 1 and 300 seconds")
        if not 1 <= self.push.max_waiting <= 1_000_000 or not 1 <= self.push.max_waiting_per_reader <= 1000:
            raise ConfigError("[push] max_waiting must be 1..1000000 and max_waiting_per_reader 1..1000")
        if not 0.1 <= self.witness.add_checkpoint_interval <= 86400:
            raise ConfigError("[witness] add_checkpoint_interval must be between 0.1 and 86400 seconds")
        if not 0.0 <= self.acknowledgements.interval <= 3600:
            raise ConfigError("[acknowledgements] interval must be between 0 and 3600 seconds")
        if self.log.max_batch_entries < 1:
            raise ConfigError("[log] max_batch_entries must be at least 1")
        if self.admin.max_body_bytes < 1024:
            raise ConfigError("[admin] max_body_bytes must be at least 1024")
        n, r, p = self.cases.pin_scrypt_n, self.cases.pin_scrypt_r, self.cases.pin_scrypt_p
        if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
            raise ConfigError("[cases] pin_scrypt_n must be a power of two >= 2, pin_scrypt_r 1..64 "
                              "and pin_scrypt_p 1..16")
        # Every case creation and PIN check pays this memory: a typo must not let one
        # request ask the node for gigabytes (production: 32 MiB).
        if 128 * r * (n + 2) + 128 * r * p > MAX_PIN_SCRYPT_MEMORY:
            raise ConfigError("[cases] pin_scrypt_n x pin_scrypt_r needs more than 1 GiB of memory per PIN hash "
                              "(128 x n x r bytes; production uses 2**15 x 8 = 32 MiB)")
        if not 1 <= self.cases.max_fingerprints <= 1000 or self.cases.max_body_bytes < 1024:
            raise ConfigError("[cases] max_fingerprints must be 1..1000 and max_body_bytes at least 1024")
        for key in ("max_photos", "max_videos"):
            if not 0 <= getattr(self.cases, key) <= 1000:
                raise ConfigError(f"[cases] {key} must be 0..1000")
        if not 0 <= self.cases.max_video_frames <= 1_000_000:
            raise ConfigError("[cases] max_video_frames must be 0..1000000")
        for key in ("per_address_per_hour", "per_address_per_day", "per_network_per_hour", "per_network_per_day",
                    "per_hour", "per_day", "proof_of_work_above_per_hour"):
            if not 0 <= getattr(self.cases, key) <= 10_000_000:
                raise ConfigError(f"[cases] {key} must be 0..10000000")
        if not 0 <= self.cases.proof_of_work_bits <= 40:
            raise ConfigError("[cases] proof_of_work_bits must be 0..40")
        if self.node.contact and not _is_line(self.node.contact, 200):
            raise ConfigError("[node] contact must be one line of at most 200 characters")
        _validate_page(self.page)
        self.database.validate()
        m = self.match
        if min(m.max_fingerprints_per_log, m.max_per_hour_per_log, m.max_per_day_per_log) < 0:
            raise ConfigError("[match] budgets must not be negative")
        if m.cluster_size < 16 or not 0 <= m.cluster_keep < m.cluster_size:
            raise ConfigError("[match] cluster_size must be at least 16 (the fewest fingerprints the index groups) "
                              "and cluster_keep between 0 and cluster_size - 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        sections = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for table, content in data.items():
            if table not in sections:
                raise ConfigError(f"unknown table [{table}] (known: {', '.join(sections)})")
            if not isinstance(content, dict):
                raise ConfigError(f"[{table}] must be a table")
            section_type = sections[table].default_factory  # type: ignore[misc]
            known = {f.name: f for f in dataclasses.fields(section_type)}
            kwargs = {}
            for key, value in content.items():
                if key not in known:
                    raise ConfigError(f"unknown key {key!r} in [{table}] (known: {', '.join(known)})")
                kwargs[key] = _check_type(table, key, value, type(getattr(section_type(), key)))
            values[table] = section_type(**kwargs)
        config = cls(**values)
        config.validate()
        return config


# -- [page]: what a person reads, so every value is checked as strictly as a request body

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{0,24}$")
_ENTRY_KEYS = {
    "resources": ({"country", "kind", "name"}, {"url", "phone", "text"}),
    "emergency": ({"country", "number", "kind"}, set()),
    "faq": ({"question", "answer"}, set()),
    "platforms": ({"name"}, {"url"}),
}


def _is_line(value: Any, longest: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= longest and value == value.strip() \
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)


def _is_https(value: Any) -> bool:
    return _is_line(value, 500) and value.startswith("https://") and len(value) > 8 and " " not in value


def _check_text(where: str, value: Any, longest: int) -> None:
    """A text per language: {fr = "...", en = "..."}; line breaks allowed, nothing else below 32."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where} must be a table of texts per language, e.g. {{ fr = \"...\", en = \"...\" }}")
    for lang, text in value.items():
        if lang not in help_resources.LANGUAGES:
            raise ConfigError(f"{where}: unknown language {lang!r} (known: {', '.join(help_resources.LANGUAGES)})")
        if not isinstance(text, str) or not text.strip() or len(text) > longest \
                or any(ord(c) < 32 and c != "\n" for c in text):
            raise ConfigError(f"{where}.{lang} must be a text of 1 to {longest} characters")


def _validate_page(page: "PageSection") -> None:
    countries = page.countries
    if not countries or len(countries) > 60 or len(set(countries)) != len(countries) \
            or not all(isinstance(c, str) and _COUNTRY.match(c) for c in countries):
        raise ConfigError("[page] countries must be a list of distinct ISO 3166 codes in capitals, e.g. [\"FR\", \"BE\"]")
    if page.default_country not in countries:
        raise ConfigError(f"[page] default_country must be one of [page] countries ({', '.join(countries)})")
    if page.quick_exit_url and not _is_https(page.quick_exit_url):
        raise ConfigError("[page] quick_exit_url must be an https:// address (or \"\" for Wikipedia)")
    for table, (required, optional) in _ENTRY_KEYS.items():
        entries = getattr(page, table)
        if len(entries) > 200:
            raise ConfigError(f"[[page.{table}]]: at most 200 entries")
        for number, entry in enumerate(entries, 1):
            where = f"[[page.{table}]] number {number}"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} must be a table")
            if required - set(entry) or set(entry) - required - optional:
                raise ConfigError(f"{where} must have {', '.join(sorted(required))}"
                                  + (f" and may have {', '.join(sorted(optional))}" if optional else "")
                                  + f", not {', '.join(sorted(entry))}")
            _validate_page_entry(table, where, entry, countries)


def _validate_page_entry(table: str, where: str, entry: dict, countries: list) -> None:
    if table == "emergency" and entry["country"] not in countries:
        raise ConfigError(f"{where}: country must be one of [page] countries")
    if table == "resources":
        if entry["country"] not in (*countries, help_resources.EVERYWHERE):
            raise ConfigError(f'{where}: country must be one of [page] countries, or "*" (every country)')
        if entry["kind"] not in help_resources.KINDS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(help_resources.KINDS)}")
        if not entry.get("url") and not entry.get("phone"):
            raise ConfigError(f"{where} needs a url or a phone number")
        if "text" in entry:
            _check_text(f"{where} text", entry["text"], 500)
    if table == "emergency" and entry["kind"] not in help_resources.EMERGENCY_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(help_resources.EMERGENCY_KINDS)}")
    if table == "faq":
        _check_text(f"{where} question", entry["question"], 300)
        _check_text(f"{where} answer", entry["answer"], 3000)
    if "name" in entry and not _is_line(entry["name"], 120):
        raise ConfigError(f"{where}: name must be one line of 1 to 120 characters")
    if "url" in entry and not _is_https(entry["url"]):
        raise ConfigError(f"{where}: url must be an https:// address")
    for key in ("phone", "number"):
        if key in entry and not (isinstance(entry[key], str) and _PHONE.match(entry[key])):
            raise ConfigError(f"{where}: {key} must be digits, spaces, ( ) . - and an optional leading +")


def _check_type(table: str, key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"[{table}] {key} must be an integer")
    if not isinstance(value, expected):
        raise ConfigError(f"[{table}] {key} must be of type {expected.__name__}, not {type(value).__name__}")
    return value


HEADER = """\
# ncii-node configuration. Every key is optional except [node] origin; the defaults and
# the meaning of each key are documented in node/config.py and spec/parts/publishing.md.
# Relative paths in [paths] are relative to this file's directory.

"""


def load_config(path: Path) -> Config:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path}; create the data directory with "
                          "`ncii-node init --dir DIR --origin ORIGIN`") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_config(raw, str(path))


def parse_config(raw: bytes, where: str = "the configuration") -> Config:
    """The configuration in the bytes of a config.toml (`where` names it in messages).
    Raises ConfigError, and nothing else, whatever the bytes."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    return Config.from_dict(data)


def dump_config(config: Config) -> str:
    return HEADER + tomli_w.dumps(config.to_dict())
