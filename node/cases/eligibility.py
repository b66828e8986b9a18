"""The four questions asked before a case is opened, and where else to find help.

A case is opened only when the person answers yes to all four:

    in_image   the person asking is the person shown in the image
    adult      they are 18 or over today
    has_image  they still have the image (its fingerprints are computed on their device)
    intimate   it is nude, semi-nude or sexual

Otherwise no case is created, nothing is stored, and the answer points to other help.
The first unmet condition in the order below decides the message; `adult` comes
first because for anyone under 18 the right service is NCMEC's Take It Down (and, in
France, the 3018), not this one -- whatever the other answers are.

The links are to organisations' public pages; they are shown as given, in French or
in English.
"""

from __future__ import annotations

from dataclasses import dataclass

QUESTIONS = ("in_image", "adult", "has_image", "intimate")
LANGUAGES = ("fr", "en")

TAKE_IT_DOWN = {"name": "Take It Down (NCMEC)", "url": "https://takeitdown.ncmec.org/"}
E_ENFANCE_3018 = {"name": "3018 (e-Enfance)", "url": "https://e-enfance.org/numero-3018/"}
PHAROS = {"name": "Pharos", "url": "https://www.internet-signalement.gouv.fr/"}
REVENGE_PORN_HELPLINE = {"name": "Revenge Porn Helpline", "url": "https://revengepornhelpline.org.uk/"}

# Order of evaluation, and per unmet condition: the reason in each language and the help.
_RULES: tuple[tuple[str, dict[str, str], dict[str, list[dict[str, str]]]], ...] = (
    ("adult", {
        "fr": "Ce service est réservé aux personnes majeures. Si vous avez moins de 18 ans, ou si la "
              "personne sur l'image avait moins de 18 ans, Take It Down (NCMEC) peut faire retirer "
              "l'image, et le 3018 peut vous aider, gratuitement et en toute confidentialité.",
        "en": "This service is for adults. If you are under 18, or the person in the image was under "
              "18, Take It Down (NCMEC) can help remove it.",
    }, {"fr": [TAKE_IT_DOWN, E_ENFANCE_3018], "en": [TAKE_IT_DOWN]}),
    ("in_image", {
        "fr": "Seule la personne présente sur l'image peut ouvrir un dossier. Pour signaler un contenu "
              "qui concerne quelqu'un d'autre, utilisez Pharos ou le 3018.",
        "en": "Only the person shown in the image can open a case. To report content about someone "
              "else, contact the Revenge Porn Helpline.",
    }, {"fr": [PHAROS, E_ENFANCE_3018], "en": [REVENGE_PORN_HELPLINE]}),
    ("has_image", {
        "fr": "Les empreintes sont calculées sur votre appareil à partir de l'image : il faut donc "
              "l'avoir. Si quelqu'un menace de diffuser une image que vous n'avez pas, Pharos et le "
              "3018 peuvent vous aider.",
        "en": "Fingerprints are computed on your device from the image, so you need to have it. If "
              "someone threatens to share an image you do not have, the Revenge Porn Helpline can help.",
    }, {"fr": [PHAROS, E_ENFANCE_3018], "en": [REVENGE_PORN_HELPLINE]}),
    ("intimate", {
        "fr": "Ce service concerne uniquement les images intimes (nues, partiellement nues ou "
              "sexuelles). Pour d'autres contenus, signalez-les à la plateforme ou à Pharos.",
        "en": "This service is only for intimate images (nude, semi-nude or sexual). Report other "
              "content to the platform, or ask the Revenge Porn Helpline for advice.",
    }, {"fr": [PHAROS], "en": [REVENGE_PORN_HELPLINE]}),
)


class EligibilityError(ValueError):
    """The answers are missing or malformed (a 400, not a refusal)."""


@dataclass(frozen=True)
class Refusal:
    not_met: tuple[str, ...]
    reason: str
    help: list[dict[str, str]]

    def to_json(self) -> dict:
        return {"eligible": False, "not_met": list(self.not_met), "reason": self.reason,
                "help": [dict(item) for item in self.help]}


def language(value: object) -> str:
    """"fr" or "en" (default "fr" when absent); anything else is an error."""
    if value is None:
        return "fr"
    if value not in LANGUAGES:
        raise EligibilityError(f'lang must be "fr" or "en", not {value!r:.20}')
    return value  # type: ignore[return-value]


def check(answers: object, lang: str) -> Refusal | None:
    """None when all four answers are yes; else the refusal to send back."""
    if not isinstance(answers, dict):
        raise EligibilityError('eligibility must be an object {"in_image": true, "adult": true, '
                               '"has_image": true, "intimate": true}')
    unknown = sorted(set(map(str, answers)) - set(QUESTIONS))
    if unknown:
        raise EligibilityError(f"unknown eligibility questions: {', '.join(unknown)}")
    for question in QUESTIONS:
        if type(answers.get(question)) is not bool:
            raise EligibilityError(f"eligibility.{question} must be true or false")
    not_met = tuple(q for q in QUESTIONS if not answers[q])
    if not not_met:
        return None
    for question, reasons, help_by_lang in _RULES:
        if question in not_met:
            return Refusal(not_met, reasons[lang], help_by_lang[lang])
    raise AssertionError("unreachable")
