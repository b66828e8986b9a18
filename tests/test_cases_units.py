"""Case numbers, PINs, their hashes, eligibility, fingerprints and the failed-PIN
policy, without a server."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.cases import eligibility
from node.cases.resources import (
    ADULT_KINDS,
    DEFAULT_COUNTRIES,
    DEFAULT_EMERGENCY,
    DEFAULT_RESOURCES,
    EMERGENCY_KINDS,
    KINDS,
    LANGUAGES,
    MINOR_KINDS,
    HelpDirectory,
)
from node.config import PageSection
from node.cases.fingerprints import FingerprintError, parse_fingerprints
from node.config import CasesSection
from node.cases.hashes import PRODUCTION, ScryptParams, case_lookup, check_pin, hash_pin
from node.cases.limits import ADDRESS_POLICY, CASE_POLICY, AddressLimiter, UnknownCaseCounters
from node.cases.numbers import (
    ALPHABET,
    RANDOM_BITS,
    CaseNumberError,
    canonical_case_number,
    canonical_pin,
    check_symbol,
    new_case_number,
    new_pin,
)
from protocol.entries import Submission, decode_entry

FAST = ScryptParams(n=2**10, r=8, p=1)


# ---------------------------------------------------------------- case numbers and PINs

def test_case_number_shape_and_randomness():
    numbers = {new_case_number() for _ in range(2000)}
    assert len(numbers) == 2000
    assert RANDOM_BITS >= 60
    for number in numbers:
        groups = number.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert set(number.replace("-", "")) <= set(ALPHABET)
        assert not set(number) & set("ILOU")
        assert canonical_case_number(number) == number.replace("-", "")
    # Every symbol appears in every random position over 2000 draws (75 random bits, not fewer).
    for position in (0, 7, 14):
        assert {n.replace("-", "")[position] for n in numbers} == set(ALPHABET)


def test_case_number_read_back_leniently():
    number = new_case_number()
    compact = number.replace("-", "")
    assert canonical_case_number(compact.lower()) == compact
    assert canonical_case_number(" ".join(number.split("-"))) == compact
    assert canonical_case_number("  " + number + "\n") == compact
    with_aliases = compact.replace("0", "o").replace("1", "l")
    assert canonical_case_number(with_aliases) == compact


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_check_symbol_catches_single_typos_and_swaps(data):
    compact = canonical_case_number(new_case_number())
    position = data.draw(st.integers(0, 15))
    replacement = data.draw(st.sampled_from(ALPHABET))
    typo = compact[:position] + replacement + compact[position + 1:]
    values = {c: i for i, c in enumerate(ALPHABET)}
    if typo != compact and abs(values[replacement] - values[compact[position]]) != 31:
        with pytest.raises(CaseNumberError):
            canonical_case_number(typo)
    i = data.draw(st.integers(0, 13))
    swapped = compact[:i] + compact[i + 1] + compact[i] + compact[i + 2:]
    if swapped != compact and abs(values[compact[i]] - values[compact[i + 1]]) != 31:
        with pytest.raises(CaseNumberError):
            canonical_case_number(swapped)


@pytest.mark.parametrize("bad", ["", "ABCD-EFGH", "ABCD-EFGH-JKMN-PQRSTV", "ABCD-EFGH-JKMN-PQRU", None, 12345, ["x"]])
def test_not_case_numbers(bad):
    with pytest.raises(CaseNumberError):
        canonical_case_number(bad)


def test_check_symbol_is_the_documented_sum():
    body = "0123456789ABCDE"
    total = sum((i + 1) * ALPHABET.index(c) for i, c in enumerate(body))
    assert check_symbol(body) == ALPHABET[total % 31]


def test_pins():
    pins = [new_pin() for _ in range(1000)]
    assert all(len(p) == 8 and p.isdigit() for p in pins)
    assert len(set(pins)) > 990
    assert canonical_pin("1234 5678") == "12345678"
    for bad in ("1234567", "123456789", "1234567a", "١٢٣٤٥٦٧٨", 12345678, None):
        with pytest.raises(CaseNumberError):
            canonical_pin(bad)


# ---------------------------------------------------------------- hashes

def test_pin_hash_is_salted_slow_and_bound_to_the_case_number():
    number = canonical_case_number(new_case_number())
    other = canonical_case_number(new_case_number())
    salt, digest = hash_pin(number, "12345678", FAST)
    salt2, digest2 = hash_pin(number, "12345678", FAST)
    assert salt != salt2 and digest != digest2          # salted
    assert check_pin(number, "12345678", salt, digest, FAST)
    assert not check_pin(number, "12345679", salt, digest, FAST)
    assert not check_pin(other, "12345678", salt, digest, FAST)  # the PIN alone is not enough
    assert b"12345678" not in digest + salt
    assert PRODUCTION == ScryptParams(2**15, 8, 1)
    assert ScryptParams.from_text(PRODUCTION.to_text()) == PRODUCTION
    assert PRODUCTION.to_text() == "scrypt:n=32768,r=8,p=1"


def test_case_lookup_is_keyed():
    number = canonical_case_number(new_case_number())
    a, b = case_lookup(b"k" * 32, number), case_lookup(b"j" * 32, number)
    assert a != b and len(a) == 32
    assert number.encode() not in a


# ---------------------------------------------------------------- eligibility

YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}
HELP = HelpDirectory.from_config(PageSection())
MINOR_SERVICES = {r.name for r in DEFAULT_RESOURCES if r.kind in MINOR_KINDS}
ADULT_SERVICES = {r.name for r in DEFAULT_RESOURCES if r.kind in ADULT_KINDS}


def test_eligible():
    assert eligibility.check(YES, "fr", "FR", HELP) is None


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("age", ["adult", "adult_in_image"])
def test_images_of_minors_go_to_take_it_down_and_child_protection_whatever_else(lang, age):
    """Under 18 today, or 18 now but not in the image: Take It Down first, then the
    country's child-protection services; never an adults' service."""
    for other in ({}, {"in_image": False}, {"has_image": False, "intimate": False}, {"adult": False}):
        for where, expected in (("FR", "119 – Allô Enfance en Danger"), ("GB", "Childline"),
                                ("CA", "Kids Help Phone"), ("CH", "147 – Pro Juventute")):
            refusal = eligibility.check({**YES, age: False, **other}, lang, where, HELP)
            assert refusal.help[0] == {"name": "Take It Down (NCMEC)", "url": "https://takeitdown.ncmec.org/"}
            names = [h["name"] for h in refusal.help]
            assert expected in names, (where, names)
            assert not set(names) & ADULT_SERVICES
            assert "18" in refusal.reason and "Take It Down" in refusal.reason


def test_age_in_image_has_its_own_reason():
    today = eligibility.check({**YES, "adult": False}, "en", "FR", HELP)
    then = eligibility.check({**YES, "adult_in_image": False}, "en", "FR", HELP)
    assert then.not_met == ("adult_in_image",) and "before you were 18" in then.reason
    assert today.reason != then.reason and today.help == then.help


@pytest.mark.parametrize("question", ["in_image", "has_image", "intimate"])
def test_adults_not_eligible_get_other_help(question):
    fr = eligibility.check({**YES, question: False}, "fr", "FR", HELP)
    en = eligibility.check({**YES, question: False}, "en", "GB", HELP)
    assert fr.not_met == (question,) and en.not_met == (question,)
    assert any(h["name"] == "Pharos" for h in fr.help)
    assert any(h["name"] == "Revenge Porn Helpline" for h in en.help)
    assert not set(h["name"] for h in fr.help + en.help) & MINOR_SERVICES
    assert fr.reason != en.reason
    json.dumps(fr.to_json())


def test_every_reason_in_every_language_and_french_spacing():
    for question, reasons in eligibility.RULES:
        assert set(reasons) == set(LANGUAGES)
        assert len(set(reasons.values())) == len(LANGUAGES), question  # none left in another language
        assert not re.search(r" [?:;!»]|« |\b18 ans", reasons["fr"]), question


def test_operator_help_comes_first_and_defaults_can_go():
    mine = {"country": "FR", "kind": "ncii_support", "name": "Ma permanence", "phone": "01 23 45 67 89"}
    page = PageSection(resources=[mine], default_resources=False)
    refusal = eligibility.check({**YES, "intimate": False}, "fr", "FR", HelpDirectory.from_config(page))
    assert refusal.help == [{"name": "Ma permanence", "phone": "01 23 45 67 89"}]
    # Take It Down stays, whatever the configuration: images of minors always have somewhere to go.
    refusal = eligibility.check({**YES, "adult": False}, "fr", "FR", HelpDirectory.from_config(page))
    assert refusal.help == [{"name": "Take It Down (NCMEC)", "url": "https://takeitdown.ncmec.org/"}]
    refusal = eligibility.check({**YES, "intimate": False}, "fr", "FR", HelpDirectory.from_config(
        PageSection(resources=[mine])))
    assert refusal.help[0]["name"] == "Ma permanence" and len(refusal.help) > 1


@pytest.mark.parametrize("answers", [None, [], {"in_image": True}, {**YES, "adult": "yes"}, {**YES, "extra": True},
                                     {**YES, "adult": 1}, {k: v for k, v in YES.items() if k != "adult_in_image"}])
def test_malformed_answers(answers):
    with pytest.raises(eligibility.EligibilityError):
        eligibility.check(answers, "en", "FR", HELP)


def test_language_and_country():
    assert eligibility.language(None) == "fr"
    for lang in LANGUAGES:
        assert eligibility.language(lang) == lang
    for bad in ("xx", "EN", 1, ""):
        with pytest.raises(eligibility.EligibilityError):
            eligibility.language(bad)
    assert eligibility.country(None, HELP) == "FR"
    assert eligibility.country("BE", HELP) == "BE"
    for bad in ("DE", "fr", "*", 7, ""):
        with pytest.raises(eligibility.EligibilityError):
            eligibility.country(bad, HELP)


def test_default_help_names_its_sources():
    for resource in DEFAULT_RESOURCES:
        assert resource.source.startswith("https://") and resource.url.startswith("https://"), resource
        assert resource.kind in KINDS and resource.country in (*DEFAULT_COUNTRIES, "*")
    for number in DEFAULT_EMERGENCY:
        assert number.source.startswith("https://") and number.kind in EMERGENCY_KINDS
    for country in DEFAULT_COUNTRIES:  # every country: an emergency number, a child-protection line
        assert any(n.country == country for n in DEFAULT_EMERGENCY), country
        assert HELP.for_country(country, ("child_helpline",)), country


# ---------------------------------------------------------------- fingerprints

def pdq(i: int, quality: int | None = 90) -> dict:
    """A PDQ hash like a picture's (about half its bits set; a nearly blank one is refused)."""
    import hashlib

    item = {"signal": "pdq", "fingerprint": hashlib.sha256(b"picture %d" % i).hexdigest()}
    if quality is not None:
        item["quality"] = quality
    return item


def test_fingerprints_become_submissions():
    vpdq = {"signal": "vpdq", "fingerprint": [{"pdq": "ab" * 32, "quality": 30, "timestamp": 0.0},
                                              {"pdq": "cd" * 32, "quality": 40, "timestamp": 1.0}]}
    items = [pdq(1), pdq(2, 20), {"signal": "md5", "fingerprint": "0f" * 16, "low_quality": False}, vpdq,
             pdq(1)]  # the same photo twice
    out = parse_fingerprints(items, caps=CasesSection(max_fingerprints=10), day=20000)
    assert len(out) == 4
    assert [f.low_quality for f in out] == [False, True, False, True]
    entries = [decode_entry(f.entry) for f in out]
    assert all(isinstance(e, Submission) and e.day == 20000 for e in entries)
    assert entries[0].labels == ("image",) and entries[2].labels == ("video",)
    assert entries[2].quality is None


def test_degenerate_fingerprints_are_refused_all_named():
    from node.cases.fingerprints import DegenerateFingerprints

    black = {"pdq": "00" * 32, "quality": 0, "timestamp": 0.0}
    items = [pdq(1), {"signal": "pdq", "fingerprint": "00" * 32, "quality": 0},
             {"signal": "pdq", "fingerprint": "ff" * 32},
             {"signal": "pdq", "fingerprint": "0" * 63 + "1", "quality": 90},  # within 31 bits of a blank
             {"signal": "md5", "fingerprint": "D41D8CD98F00B204E9800998ECF8427E"},  # the empty file
             {"signal": "vpdq", "fingerprint": [black, {**black, "timestamp": 1.0}]},
             {"signal": "vpdq", "fingerprint": [black, {"pdq": pdq(2)["fingerprint"], "quality": 90,
                                                         "timestamp": 1.0}]},  # a black opening: fine
             {"signal": "md5", "fingerprint": "0f" * 16}]
    with pytest.raises(DegenerateFingerprints) as caught:
        parse_fingerprints(items, caps=CasesSection(max_fingerprints=10), day=1)
    assert caught.value.positions == [2, 3, 4, 5, 6]
    message = str(caught.value)
    for fragment in ("Fingerprint 2: this pdq hash is all zeros", "Fingerprint 3: this pdq hash is all ones",
                     "Fingerprint 4: this pdq hash is only 1 of its 256 bits set",
                     "Fingerprint 5: this is the md5 of an empty file", "Fingerprint 6: every frame"):
        assert fragment in message, fragment
    assert "Fingerprint 7" not in message and "Fingerprint 1:" not in message
    # Without them the rest is accepted; quality 0 alone is not refused (see spec/parts/cases.md).
    accepted = parse_fingerprints([items[0], items[6], items[7], pdq(3, 0)], caps=CasesSection(max_fingerprints=10), day=1)
    assert len(accepted) == 4 and accepted[3].low_quality


@pytest.mark.parametrize("items, fragment", [
    ([], "non-empty"),
    ("x", "non-empty"),
    ([pdq(1)] * 11, "at most 10"),
    ([{**pdq(1), "path": "/home/alice/me.jpg"}], "file name"),
    ([{**pdq(1), "name": "alice"}], "unknown fields"),
    ([{"signal": "sha1", "fingerprint": "00"}], "signal must be"),
    ([{"signal": "pdq", "fingerprint": "zz"}], "fingerprint 1"),
    ([pdq(1), {"signal": "pdq", "fingerprint": "00" * 32, "quality": 101}], "fingerprint 2"),
    ([{"signal": "md5", "fingerprint": "00" * 16, "quality": 50}], "no quality"),
])
def test_bad_fingerprints(items, fragment):
    with pytest.raises(FingerprintError, match=fragment):
        parse_fingerprints(items, caps=CasesSection(max_fingerprints=10), day=1)


# ---------------------------------------------------------------- the failed-PIN policy

def test_case_policy_grows_then_locks():
    waits = [CASE_POLICY.block_after(k) for k in range(1, 12)]
    assert waits[:2] == [(0.0, False), (0.0, False)]
    assert [w for w, _ in waits[2:9]] == [2, 4, 8, 16, 32, 64, 128]
    assert waits[9] == (3600.0, True) and waits[10][1]  # every failure after the 10th locks again
    # Guesses a year at one per lock, out of 10^8 PINs: under one chance in 10,000.
    guesses_a_year = CASE_POLICY.lock_after + 365 * 86400 / CASE_POLICY.lock_duration
    assert guesses_a_year / 1e8 < 1e-4


def test_address_limiter_delays_then_locks():
    limiter = AddressLimiter()
    now = 1000.0
    slot = limiter.slot("192.0.2.1")
    for _ in range(ADDRESS_POLICY.free - 1):
        assert limiter.check(slot, now) is None
        assert limiter.failed(slot, now) is None
    assert limiter.failed(slot, now).retry_after == ADDRESS_POLICY.base_delay
    refused = limiter.check(slot, now + 0.5)
    assert refused is not None and not refused.locked
    # Other addresses are not affected; an IPv6 /64 counts as one address.
    assert limiter.check(limiter.slot("192.0.2.2"), now) is None
    assert limiter.slot("2001:db8::2") == limiter.slot("2001:db8::ffff")
    assert limiter.slot("2001:db8::2") != limiter.slot("2001:db8:0:1::2")
    assert limiter.slot("::ffff:192.0.2.1") == slot
    # Keep failing after each wait: lockout.
    t = now
    while True:
        t += 10_000
        assert limiter.check(slot, t) is None
        block = limiter.failed(slot, t)
        if block is not None and block.locked:
            break
    assert math.isclose(block.retry_after, ADDRESS_POLICY.lock_duration)
    assert limiter.check(slot, t + 1).locked
    assert limiter.check(slot, t + ADDRESS_POLICY.lock_duration + 1) is None


def test_addresses_are_never_kept_as_such():
    limiter = AddressLimiter()
    limiter.failed(limiter.slot("198.51.100.7"), 0.0)
    assert len(limiter) == 1
    keys = b"".join(limiter._counters)
    assert b"198.51.100.7" not in keys and b"\xc6\x33\x64\x07" not in keys
    # Forgotten a day after the last failure.
    limiter.check(limiter.slot("198.51.100.8"), 2 * 24 * 3600.0)
    assert len(limiter) == 0


def test_unknown_numbers_are_counted_like_real_cases(tmp_path):
    """The same attempts at the same times, on a real case (its row in a real database)
    and on a number that names no case (in memory): the same outcomes, waits, lockouts
    and forgetting."""
    from node.store import cases as store
    from node.store import open_db

    db = open_db(tmp_path / "node.db")
    store.insert_pending_case(db, b"K" * 32, b"s" * 16, b"h" * 32, "scrypt:n=1024,r=8,p=1", 1, [])
    store.publish_case(db, 1, [])
    counters = UnknownCaseCounters(CASE_POLICY)
    # now, then after each outcome: at once / when the wait ends / much later
    moments, now, known, unknown = [], 1000.0, [], []
    for step in range(40):
        case, a = store.begin_pin_attempt(db, b"K" * 32, now, CASE_POLICY, counters)
        assert case is not None and case.id == 1
        b = counters.attempt(b"U" * 32, now)
        known.append(a)
        unknown.append(b)
        moments.append(now)
        if step in (8, 25):
            now = max(now, a.not_before) + CASE_POLICY.forget_after + 1  # forgotten
        elif step % 3 == 0:
            now += 0.5  # too soon
        else:
            now = max(now, a.not_before)
    assert known == unknown
    assert any(a.refused and a.refused.locked for a in known) and any(a.failures > 10 for a in known)
    assert any(a.refused and not a.refused.locked for a in known)
    assert any(later.failures == 1 and earlier.failures > 1 for earlier, later in zip(known, known[1:]))
    assert store.unknown_attempts(db) == 0  # the counters above were called directly
    store.begin_pin_attempt(db, b"N" * 32, now, CASE_POLICY, counters)
    assert store.unknown_attempts(db) == 1
    assert len(counters) == 2 and all(len(key) == 16 for key in counters._counters)  # a part of the HMAC only


def test_unknown_case_counters_are_bounded_and_forgotten():
    counters = UnknownCaseCounters(CASE_POLICY, max_entries=50)
    for i in range(200):
        counters.attempt(i.to_bytes(32, "little"), 1000.0 + i)
    assert len(counters) <= 50
    # The newest are kept: still counting.
    assert counters.attempt((199).to_bytes(32, "little"), 1200.0).failures == 2
    counters.attempt(b"x" * 32, 1000.0 + 2 * CASE_POLICY.forget_after)
    assert len(counters) == 1


def test_client_address_behind_trusted_proxies():
    from node.cases.proxies import ClientAddresses, parse_address

    clients = ClientAddresses(["10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.7"])
    # The right-most address that is not a trusted proxy; the left of it is never believed.
    assert clients.client("10.1.1.1", ["203.0.113.9, 198.51.100.4, 10.2.2.2"]) == "198.51.100.4"
    assert clients.client("10.1.1.1", ["203.0.113.9", "198.51.100.4, 10.2.2.2"]) == "198.51.100.4"  # two headers
    assert clients.client("192.0.2.7", ["198.51.100.4:51234"]) == "198.51.100.4"  # a port is not an address
    assert clients.client("2001:db8:ffff::1", ["[2001:db8::5]:443"]) == "2001:db8::5"
    assert clients.client("::ffff:10.0.0.1", ["::ffff:198.51.100.4"]) == "198.51.100.4"  # IPv4-mapped
    # Only proxies in the header (a request made by a proxy itself): the left-most of them.
    assert clients.client("10.1.1.1", ["10.3.3.3, 10.2.2.2"]) == "10.3.3.3"
    # A proxy that wrote something else: counted under that proxy, not under what lies left of it.
    assert clients.client("10.1.1.1", ["198.51.100.4, unknown"]) == "10.1.1.1"
    assert clients.client("10.1.1.1", ["198.51.100.4, , 10.2.2.2"]) == "10.2.2.2"
    assert clients.client("10.1.1.1", []) == "10.1.1.1"
    # An untrusted peer: the header is never read.
    assert clients.client("198.51.100.50", ["203.0.113.9"]) == "198.51.100.50"
    assert clients.client("192.0.2.8", ["203.0.113.9"]) == "192.0.2.8"
    assert clients.client(None, ["203.0.113.9"]) is None
    assert ClientAddresses([]).client("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"
    assert parse_address("unknown") is None and parse_address("") is None and parse_address("1.2.3") is None


def test_trusted_proxies_setting():
    from node.config import Config, ConfigError

    base = {"node": {"origin": "helpline.example/log"}}
    assert Config.from_dict(base).http.trusted_proxies == []
    config = Config.from_dict({**base, "http": {"trusted_proxies": ["10.0.0.0/8", "::1", "192.0.2.7"]}})
    assert config.http.trusted_proxies == ["10.0.0.0/8", "::1", "192.0.2.7"]
    for bad in (["proxy.example"], [8], ["10.0.0.0/33"], "10.0.0.1"):
        with pytest.raises(ConfigError, match="trusted_proxies"):
            Config.from_dict({**base, "http": {"trusted_proxies": bad}})


def test_spec_vectors():
    """The examples of spec/parts/cases.md."""
    import hashlib

    assert check_symbol("7K2QM9XD4TPARW3") == "V"
    assert canonical_case_number("7k2q m9xd 4tpa rw3v") == "7K2QM9XD4TPARW3V"
    assert case_lookup(bytes(range(32)), "7K2QM9XD4TPARW3V").hex() == \
        "3ad3b174002d3de075c53677d060bd94e70b50f66051a20c0fd3f9d4c4c8cb7e"
    from node.cases import hashes

    digest = hashes._scrypt("7K2QM9XD4TPARW3V", "12345678", bytes(16), PRODUCTION)
    assert digest.hex() == "7e8ff8d047df76fd0abc9d85821ee96c5dcbc8803e66a4dad6e5585e43cb5080"
    assert digest == hashlib.scrypt(b"7K2QM9XD4TPARW3V:12345678", salt=bytes(16), n=2**15, r=8, p=1,
                                    maxmem=2**26, dklen=32)


def test_pin_scrypt_parameters_are_bounded():
    """A typo in [cases] must not make every PIN hash ask for gigabytes."""
    from node.config import Config, ConfigError

    base = {"node": {"origin": "helpline.example/log"}}
    assert Config.from_dict({**base, "cases": {"pin_scrypt_n": 2**15, "pin_scrypt_r": 8}}).cases.pin_scrypt_n == 2**15
    assert Config.from_dict({**base, "cases": {"pin_scrypt_n": 2**19, "pin_scrypt_r": 8}}).cases.pin_scrypt_r == 8
    for bad in ({"pin_scrypt_n": 2**23}, {"pin_scrypt_n": 3}, {"pin_scrypt_r": 0}, {"pin_scrypt_r": 65},
                {"pin_scrypt_p": 17}, {"pin_scrypt_n": 2**21, "pin_scrypt_r": 8}):
        with pytest.raises(ConfigError, match="pin_scrypt"):
            Config.from_dict({**base, "cases": bad})
