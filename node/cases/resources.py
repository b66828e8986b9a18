"""Where else a person can find help, per country: the help services and emergency
numbers a helpline's page shows, and those an eligibility refusal points to.

The defaults below ship for France, Belgium, Switzerland, Canada, the United Kingdom
and the United States. Each names its source, always the organisation's own site
(or, for emergency numbers, the official site that lists them). `check` marks what an
operator must confirm before going live: these were written without looking the
sites up, from what the organisations publish about themselves.

A helpline adds its own entries and may drop these defaults in `[page]` of its
configuration (node/config.py, spec/parts/webapp.md "Making the page your own"); the
page receives the merged list from GET /helpline.json. Descriptions come from the
page's translations, by `kind`, unless an entry carries its own `text` per language.

This module is data and pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: The page's languages (node/web/static/i18n/<lang>.json) and those of refusals.
LANGUAGES = ("fr", "en", "es", "de", "it", "pt", "ar")

#: What a help service is for. It decides where the page shows it and, unless the
#: entry has its own text, how the page describes it.
KINDS = (
    "minor_images",        # removes sexual images taken before 18 (Take It Down, Report Remove)
    "child_helpline",      # children and young people, or adults worried about a child
    "child_abuse_report",  # reporting sexual images of minors (a hotline, the national centre)
    "ncii_support",        # adults whose intimate images are shared or threatened
    "report_online",       # reporting illegal content online to the police
    "victim_support",      # free support for victims of crime, complaints included
    "violence_helpline",   # sexual, domestic or gender-based violence
)
#: The kinds shown to, and sent in a refusal to, someone under 18 or whose image was
#: taken before 18: such images must never enter an adults' log.
MINOR_KINDS = ("minor_images", "child_helpline", "child_abuse_report")
ADULT_KINDS = ("ncii_support", "report_online", "victim_support", "violence_helpline")

EMERGENCY_KINDS = ("emergency", "police", "ambulance", "text", "crisis", "police_non_emergency")

#: "*" marks a service for every country.
EVERYWHERE = "*"
DEFAULT_COUNTRIES = ("FR", "BE", "CH", "CA", "GB", "US")


@dataclass(frozen=True)
class Resource:
    country: str          # ISO 3166-1 alpha-2, or "*"
    kind: str             # one of KINDS
    name: str
    url: str = ""         # https:, or "" when only a phone number is given
    phone: str = ""
    text: dict = field(default_factory=dict)  # language -> description; {} = the kind's
    source: str = ""      # where the facts come from (defaults only)
    check: str = ""       # what the operator must confirm (defaults only)

    def for_page(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("source", "check") and v not in ("", {})}

    def for_refusal(self) -> dict:
        return {k: v for k, v in (("name", self.name), ("url", self.url), ("phone", self.phone)) if v}


@dataclass(frozen=True)
class EmergencyNumber:
    country: str
    number: str
    kind: str             # one of EMERGENCY_KINDS
    source: str = ""

    def for_page(self) -> dict:
        return {"country": self.country, "number": self.number, "kind": self.kind}


TAKE_IT_DOWN = Resource(EVERYWHERE, "minor_images", "Take It Down (NCMEC)", "https://takeitdown.ncmec.org/",
                        source="https://takeitdown.ncmec.org/")

DEFAULT_RESOURCES: tuple[Resource, ...] = (
    TAKE_IT_DOWN,
    # France
    Resource("FR", "child_helpline", "3018 (e-Enfance)", "https://e-enfance.org/numero-3018/", "3018",
             source="https://e-enfance.org/numero-3018/"),
    Resource("FR", "child_helpline", "119 – Allô Enfance en Danger", "https://www.allo119.gouv.fr/", "119",
             source="https://www.allo119.gouv.fr/", check="address of the site"),
    Resource("FR", "child_abuse_report", "Point de Contact", "https://www.pointdecontact.net/",
             source="https://www.pointdecontact.net/", check="address of the site"),
    Resource("FR", "report_online", "Pharos", "https://www.internet-signalement.gouv.fr/",
             source="https://www.internet-signalement.gouv.fr/"),
    Resource("FR", "violence_helpline", "3919 – Violences Femmes Info", "https://arretonslesviolences.gouv.fr/",
             "3919", source="https://arretonslesviolences.gouv.fr/"),
    Resource("FR", "victim_support", "France Victimes", "https://www.france-victimes.fr/", "116 006",
             source="https://www.france-victimes.fr/"),
    # Belgium
    Resource("BE", "child_abuse_report", "Child Focus", "https://childfocus.be/", "116 000",
             source="https://childfocus.be/"),
    Resource("BE", "child_helpline", "103 Écoute-Enfants", "https://www.103ecoute.be/", "103",
             source="https://www.103ecoute.be/", check="address of the site"),
    Resource("BE", "child_helpline", "Awel", "https://www.awel.be/", "102", source="https://www.awel.be/"),
    Resource("BE", "ncii_support", "Institut pour l'égalité des femmes et des hommes",
             "https://igvm-iefh.belgium.be/", source="https://igvm-iefh.belgium.be/",
             check="that the Institute still takes reports of intimate images shared without consent"),
    Resource("BE", "violence_helpline", "Écoute violences conjugales", "https://www.ecouteviolencesconjugales.be/",
             "0800 30 030", source="https://www.ecouteviolencesconjugales.be/", check="address of the site"),
    Resource("BE", "violence_helpline", "1712", "https://www.1712.be/", "1712", source="https://www.1712.be/"),
    # Switzerland
    Resource("CH", "child_helpline", "147 – Pro Juventute", "https://www.147.ch/", "147",
             source="https://www.147.ch/"),
    Resource("CH", "victim_support", "Aide aux victimes – Opferhilfe – Aiuto alle vittime",
             "https://www.aide-aux-victimes.ch/", source="https://www.aide-aux-victimes.ch/",
             check="address of the site"),
    # Canada
    Resource("CA", "minor_images", "NeedHelpNow.ca", "https://needhelpnow.ca/", source="https://needhelpnow.ca/"),
    Resource("CA", "child_abuse_report", "Cybertip.ca", "https://www.cybertip.ca/", source="https://www.cybertip.ca/"),
    Resource("CA", "child_helpline", "Kids Help Phone", "https://kidshelpphone.ca/", "1-800-668-6868",
             source="https://kidshelpphone.ca/"),
    # United Kingdom
    Resource("GB", "ncii_support", "Revenge Porn Helpline", "https://revengepornhelpline.org.uk/", "0345 6000 459",
             source="https://revengepornhelpline.org.uk/", check="phone number"),
    Resource("GB", "minor_images", "Report Remove (Childline and IWF)",
             "https://www.childline.org.uk/info-advice/bullying-abuse-safety/online-mobile-safety/remove-nude-image-shared-online/",
             source="https://www.childline.org.uk/", check="address of the Report Remove page"),
    Resource("GB", "child_helpline", "Childline", "https://www.childline.org.uk/", "0800 1111",
             source="https://www.childline.org.uk/"),
    Resource("GB", "child_helpline", "NSPCC Helpline", "https://www.nspcc.org.uk/", "0808 800 5000",
             source="https://www.nspcc.org.uk/"),
    Resource("GB", "child_abuse_report", "Internet Watch Foundation", "https://www.iwf.org.uk/",
             source="https://www.iwf.org.uk/"),
    Resource("GB", "victim_support", "Victim Support", "https://www.victimsupport.org.uk/", "0808 168 9111",
             source="https://www.victimsupport.org.uk/", check="phone number"),
    Resource("GB", "violence_helpline", "National Domestic Abuse Helpline", "https://www.nationaldahelpline.org.uk/",
             "0808 2000 247", source="https://www.nationaldahelpline.org.uk/"),
    # United States
    Resource("US", "ncii_support", "Cyber Civil Rights Initiative", "https://cybercivilrights.org/", "844-878-2274",
             source="https://cybercivilrights.org/", check="phone number of the crisis helpline"),
    Resource("US", "child_abuse_report", "NCMEC CyberTipline", "https://report.cybertip.org/", "1-800-843-5678",
             source="https://www.missingkids.org/"),
    Resource("US", "child_helpline", "Childhelp National Child Abuse Hotline", "https://www.childhelp.org/",
             "1-800-422-4453", source="https://www.childhelp.org/"),
    Resource("US", "violence_helpline", "RAINN National Sexual Assault Hotline", "https://www.rainn.org/",
             "800-656-4673", source="https://www.rainn.org/"),
)

DEFAULT_EMERGENCY: tuple[EmergencyNumber, ...] = (
    EmergencyNumber("FR", "17", "police", "https://www.service-public.fr/"),
    EmergencyNumber("FR", "112", "emergency", "https://www.service-public.fr/"),
    EmergencyNumber("FR", "114", "text", "https://www.service-public.fr/"),
    EmergencyNumber("BE", "112", "emergency", "https://www.112.be/"),
    EmergencyNumber("BE", "101", "police", "https://www.112.be/"),
    EmergencyNumber("CH", "117", "police", "https://www.ch.ch/"),
    EmergencyNumber("CH", "112", "emergency", "https://www.ch.ch/"),
    EmergencyNumber("CH", "144", "ambulance", "https://www.ch.ch/"),
    EmergencyNumber("CA", "911", "emergency", "https://www.canada.ca/"),
    EmergencyNumber("CA", "988", "crisis", "https://988.ca/"),
    EmergencyNumber("GB", "999", "emergency", "https://www.police.uk/"),
    EmergencyNumber("GB", "101", "police_non_emergency", "https://www.police.uk/"),
    EmergencyNumber("US", "911", "emergency", "https://www.911.gov/"),
    EmergencyNumber("US", "988", "crisis", "https://988lifeline.org/"),
)


@dataclass(frozen=True)
class HelpDirectory:
    """The help a helpline offers: its countries, their services and emergency numbers
    (configured entries first, then the defaults unless the operator dropped them)."""

    countries: tuple[str, ...]
    default_country: str
    resources: tuple[Resource, ...]
    emergency: tuple[EmergencyNumber, ...]

    @classmethod
    def from_config(cls, page) -> "HelpDirectory":
        """From a validated `[page]` section (node.config.PageSection)."""
        configured = tuple(Resource(**entry) for entry in page.resources)
        numbers = tuple(EmergencyNumber(**entry) for entry in page.emergency)
        if page.default_resources:
            configured += tuple(r for r in DEFAULT_RESOURCES if r.country in (EVERYWHERE, *page.countries))
            numbers += tuple(n for n in DEFAULT_EMERGENCY if n.country in page.countries)
        if not any(r.name == TAKE_IT_DOWN.name for r in configured):
            configured += (TAKE_IT_DOWN,)  # images of minors always have somewhere to go
        return cls(tuple(page.countries), page.default_country, _unique(configured, lambda r: (r.country, r.name)),
                   _unique(numbers, lambda n: (n.country, n.number)))

    def for_country(self, country: str, kinds: tuple[str, ...]) -> list[Resource]:
        """Services of these kinds for this country, then those for every country;
        Take It Down first (it removes images of minors wherever the person lives)."""
        found = [r for r in self.resources if r.kind in kinds and r.country == country]
        found += [r for r in self.resources if r.kind in kinds and r.country == EVERYWHERE]
        return sorted(found, key=lambda r: r.name != TAKE_IT_DOWN.name)

    def refusal_help(self, country: str, minor: bool) -> list[dict]:
        """The help an eligibility refusal names: for an image of a minor, Take It Down
        and the country's child-protection services, never an adults' service."""
        return [r.for_refusal() for r in self.for_country(country, MINOR_KINDS if minor else ADULT_KINDS)]


def _unique(items: tuple, key) -> tuple:
    seen, out = set(), []
    for item in items:
        if key(item) not in seen:
            seen.add(key(item))
            out.append(item)
    return tuple(out)
