"""What makes the victim page a helpline's own: the [page] configuration (strictly
checked), GET /helpline.json (help per country, emergency numbers, questions and
answers, participating platforms named by the operator only), and the country of a
refusal of POST /v1/cases."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from node.config import Config, ConfigError, dump_config, load_config
from node.store import follow as follow_store
from node.store import log as log_store
from node.web.app import NODE, create_app

BASE = {"node": {"origin": "helpline.test/log"}}
YES = {"in_image": True, "adult": True, "adult_in_image": True, "has_image": True, "intimate": True}
MD5 = {"signal": "md5", "fingerprint": "0" * 31 + "1"}


def page(**values) -> dict:
    return {**BASE, "page": values}


# ---------------------------------------------------------------- configuration

def test_page_configuration_round_trips_through_toml(tmp_path):
    config = Config.from_dict(page(
        countries=["BE", "FR"], default_country="BE", quick_exit_url="https://www.example.org/",
        resources=[{"country": "BE", "kind": "ncii_support", "name": "Notre permanence", "phone": "+32 2 000 00 00",
                    "text": {"fr": "Écoute et conseils.\nDu lundi au vendredi.", "en": "Advice, weekdays."}}],
        emergency=[{"country": "BE", "number": "112", "kind": "emergency"}],
        faq=[{"question": {"fr": "Qui sommes-nous ?"}, "answer": {"fr": "Une association."}}],
        platforms=[{"name": "Example Social", "url": "https://social.example/safety"}, {"name": "Photos"}]))
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    assert tomllib.loads(path.read_text())["page"]["countries"] == ["BE", "FR"]
    assert Config.from_dict(BASE).page.countries == ["FR", "BE", "CH", "CA", "GB", "US"]


@pytest.mark.parametrize("values, message", [
    ({"countries": []}, "countries must be"),
    ({"countries": ["fr"]}, "countries must be"),
    ({"countries": ["FR", "FR"]}, "countries must be"),
    ({"default_country": "DE"}, "default_country must be one of"),
    ({"quick_exit_url": "http://example.org/"}, "quick_exit_url must be an https"),
    ({"quick_exit_url": "javascript:alert(1)"}, "quick_exit_url must be an https"),
    ({"resources": [{"country": "FR", "kind": "ncii_support", "name": "A"}]}, "needs a url or a phone"),
    ({"resources": [{"country": "DE", "kind": "ncii_support", "name": "A", "phone": "1"}]}, "country must be one of"),
    ({"resources": [{"country": "FR", "kind": "other", "name": "A", "phone": "1"}]}, "kind must be one of"),
    ({"resources": [{"country": "FR", "kind": "ncii_support", "name": "A", "url": "javascript:x"}]}, "url must be"),
    ({"resources": [{"country": "FR", "kind": "ncii_support", "name": "A\nB", "phone": "1"}]}, "name must be one line"),
    ({"resources": [{"country": "FR", "kind": "ncii_support", "name": "A", "phone": "call me"}]}, "phone must be"),
    ({"resources": [{"country": "FR", "kind": "ncii_support", "name": "A", "phone": "1", "texts": {}}]}, "may have"),
    ({"resources": [{"country": "FR", "kind": "ncii_support", "name": "A", "phone": "1", "text": {"xx": "a"}}]},
     "unknown language 'xx'"),
    ({"resources": [{"country": "FR", "kind": "ncii_support", "name": "A", "phone": "1", "text": {"fr": " "}}]},
     "text.fr must be a text"),
    ({"resources": ["A"]}, "must be a table"),
    ({"emergency": [{"country": "*", "number": "112", "kind": "emergency"}]}, "country must be one of"),
    ({"emergency": [{"country": "FR", "number": "17", "kind": "fire"}]}, "kind must be one of"),
    ({"faq": [{"question": {"fr": "Q ?"}}]}, "must have answer, question"),
    ({"faq": [{"question": "Q ?", "answer": {"fr": "R."}}]}, "must be a table of texts"),
    ({"faq": [{"question": {"fr": "Q ?"}, "answer": {"fr": "x" * 3001}}]}, "1 to 3000"),
    ({"platforms": [{"name": "", "url": "https://a.example/"}]}, "name must be one line"),
    ({"platforms": [{"name": "A", "url": "ftp://a.example/"}]}, "url must be an https"),
    ({"platforms": [{"name": "A"}] * 201}, "at most 200"),
])
def test_bad_page_configuration_is_refused_with_a_clear_message(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace("?", r"\?")):
        Config.from_dict(page(**values))


def test_contact_is_one_line():
    with pytest.raises(ConfigError, match="contact"):
        Config.from_dict({"node": {"origin": "a/b", "contact": "a\nb"}})


# ---------------------------------------------------------------- GET /helpline.json

@pytest.fixture
def helpline(tmp_path):
    from node.cli import main as cli_main
    from node.datadir import DataDir

    def make(**page_values):
        root = tmp_path / "helpline"
        assert cli_main(["init", "--dir", str(root), "--origin", "helpline.test/log", "--role", "helpline"]) == 0
        datadir = DataDir(root)
        config = Config.from_dict({"node": {"origin": "helpline.test/log", "display_name": "Écoute Images",
                                            "contact": "https://ecoute.example/contact"},
                                   "cases": {"pin_scrypt_n": 2**10}, "page": page_values})
        datadir.save_config(config)
        return DataDir(root)

    return make


async def test_helpline_json_gives_the_page_its_helpline(aiohttp_client, helpline, caplog):
    app = create_app(helpline(platforms=[{"name": "Example Social", "url": "https://social.example/"},
                                         {"name": "Photo Share"}, {"name": "Not Reading Us"}],
                              faq=[{"question": {"fr": "Qui ?", "en": "Who?"}, "answer": {"fr": "Nous.", "en": "Us."}}]))
    client = await aiohttp_client(app)
    db = app[NODE].db
    # The operator's names: a registered reader, a followed log -- and a followed log
    # that announces a flattering name about itself, which must never be shown.
    log_store.add_reader(db, "reader+00000000+AAAA", "Example Social", b"\0\0\0\0")
    follow_store.add_log(db, "photos.example/log", "https://photos.example", "photos+1+AAAA", name="Photo Share")
    follow_store.add_log(db, "self.example/log", "https://self.example", "self+1+AAAA", name="")
    follow_store.set_peer_metadata(db, "self.example/log", 0, "Not Reading Us", "https://self.example", "", )

    answer = await client.get("/helpline.json")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["Cache-Control"] == "no-cache" and "Set-Cookie" not in answer.headers
    data = await answer.json()
    assert data["name"] == "Écoute Images" and data["contact"] == "https://ecoute.example/contact"
    assert data["languages"] == ["fr", "en", "es", "de", "it", "pt", "ar"]
    assert data["countries"] == ["FR", "BE", "CH", "CA", "GB", "US"] and data["default_country"] == "FR"
    assert data["platforms"] == [{"name": "Example Social", "url": "https://social.example/"}, {"name": "Photo Share"}]
    assert data["faq"][0]["question"]["en"] == "Who?" and data["default_faq"] is True
    names = {(r["country"], r["name"]) for r in data["resources"]}
    assert {("*", "Take It Down (NCMEC)"), ("FR", "Pharos"), ("GB", "Childline"), ("US", "NCMEC CyberTipline"),
            ("BE", "Child Focus"), ("CH", "147 – Pro Juventute"), ("CA", "Cybertip.ca")} <= names
    assert all("source" not in r and "check" not in r for r in data["resources"])
    assert {"country": "FR", "number": "17", "kind": "police"} in data["emergency"]
    assert {"country": "US", "number": "911", "kind": "emergency"} in data["emergency"]
    # The operator is told why a configured platform does not appear (once).
    await client.get("/helpline.json")
    warnings = [r.getMessage() for r in caplog.records if "Not Reading Us" in r.getMessage()]
    assert len(warnings) == 1 and "readers add --name" in warnings[0]


async def test_operator_help_first_and_defaults_dropped(aiohttp_client, helpline):
    app = create_app(helpline(countries=["BE"], default_country="BE", default_resources=False,
                              resources=[{"country": "BE", "kind": "ncii_support", "name": "Notre ligne",
                                          "phone": "0800 00 000", "text": {"fr": "Gratuit."}}],
                              emergency=[{"country": "BE", "number": "112", "kind": "emergency"}]))
    client = await aiohttp_client(app)
    data = await (await client.get("/helpline.json")).json()
    assert data["resources"] == [
        {"country": "BE", "kind": "ncii_support", "name": "Notre ligne", "phone": "0800 00 000",
         "text": {"fr": "Gratuit."}},
        {"country": "*", "kind": "minor_images", "name": "Take It Down (NCMEC)", "url": "https://takeitdown.ncmec.org/"},
    ]
    assert data["emergency"] == [{"country": "BE", "number": "112", "kind": "emergency"}]


async def test_a_refusal_points_to_the_chosen_country(aiohttp_client, helpline):
    client = await aiohttp_client(create_app(helpline()))

    async def refuse(**body):
        answer = await client.post("/v1/cases", json={"fingerprints": [MD5], **body})
        return answer.status, await answer.json()

    # An adult today whose image was taken before 18: Take It Down and the country's child protection.
    status, data = await refuse(eligibility={**YES, "adult_in_image": False}, lang="en", country="GB")
    assert status == 422 and data["not_met"] == ["adult_in_image"]
    assert [h["name"] for h in data["help"]][:1] == ["Take It Down (NCMEC)"]
    assert {"name": "Childline", "url": "https://www.childline.org.uk/", "phone": "0800 1111"} in data["help"]
    assert not any(h["name"] == "Revenge Porn Helpline" for h in data["help"])
    status, data = await refuse(eligibility={**YES, "adult_in_image": False}, lang="de")
    assert status == 422 and "18.\u00a0Geburtstag" in data["reason"]
    assert any(h["name"].startswith("119") for h in data["help"])  # the helpline's default country: France
    status, data = await refuse(eligibility={**YES, "intimate": False}, lang="ar", country="US")
    assert status == 422 and any(h["name"] == "Cyber Civil Rights Initiative" for h in data["help"])
    # A country the helpline does not offer, or an unknown question set, is a 400.
    status, data = await refuse(eligibility=YES, country="DE")
    assert status == 400 and "country must be one of FR, BE, CH, CA, GB, US" in data["error"]
    status, data = await refuse(eligibility={k: v for k, v in YES.items() if k != "adult_in_image"})
    assert status == 400 and "adult_in_image" in data["error"]
    # All five answers yes: the case opens, whatever the country.
    answer = await client.post("/v1/cases", json={"eligibility": YES, "fingerprints": [MD5], "country": "CH"})
    assert answer.status == 201, await answer.text()
    assert json.dumps(await answer.json())


def test_the_readme_example_is_a_valid_configuration():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    section = readme[readme.index("### Making the victim page your own"):]
    example = tomllib.loads(section[section.index("```toml") + 7:section.index("```", section.index("```toml") + 7)])
    example["node"]["origin"] = "helpline.example/log"
    config = Config.from_dict(example)
    assert config.page.resources[0]["kind"] == "ncii_support" and config.node.display_name == "Écoute Images"
