"""The five questions asked before a case is opened, and where else to find help.

A case is opened only when the person answers yes to all five:

    in_image        the person asking is the person shown in the image
    adult           they are 18 or over today
    adult_in_image  they were 18 or over in the image (StopNCII asks the same)
    has_image       they still have the image (its fingerprints are computed on their device)
    intimate        it is nude, semi-nude or sexual

Otherwise no case is created, nothing is stored, and the answer points to other help,
in the request's language, for the person's country (node/cases/resources.py). The
first unmet condition in RULES decides the message; the two age questions come first
because an image of someone under 18 must never enter an adults' log: it goes to
NCMEC's Take It Down and the country's child-protection services, never to an adults'
helpline -- whatever the other answers are.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.cases.resources import LANGUAGES, HelpDirectory

QUESTIONS = ("in_image", "adult", "adult_in_image", "has_image", "intimate")
AGE_QUESTIONS = ("adult", "adult_in_image")
DEFAULT_LANGUAGE = "fr"

NBSP = "\u00a0"  # French: "18 ans" and before ":" stay on one line
NNBSP = "\u202f"  # French: before ";", "?" and "!"

#: Order of evaluation, and per unmet condition the reason in each language. Each
#: reason ends by pointing to the help listed with it.
RULES: tuple[tuple[str, dict[str, str]], ...] = (
    ("adult", {
        "fr": f"Ce service est réservé aux personnes majeures. Si vous avez moins de 18{NBSP}ans, Take It Down peut "
              "aider à faire retirer l'image, et les services ci-dessous peuvent vous aider, gratuitement et en "
              "toute confidentialité.",
        "en": "This service is for adults. If you are under 18, Take It Down can help remove the image, and the "
              "services below can help you, free and in confidence.",
        "es": "Este servicio es solo para personas adultas. Si tienes menos de 18 años, Take It Down puede ayudarte "
              "a retirar la imagen, y los servicios que aparecen abajo pueden ayudarte de forma gratuita y "
              "confidencial.",
        "de": "Dieser Dienst ist nur für Erwachsene. Wenn Sie unter 18 sind, kann Take It Down helfen, das Bild "
              "entfernen zu lassen, und die unten genannten Stellen helfen Ihnen kostenlos und vertraulich.",
        "it": "Questo servizio è riservato alle persone maggiorenni. Se hai meno di 18 anni, Take It Down può "
              "aiutarti a far rimuovere l'immagine, e i servizi qui sotto possono aiutarti gratuitamente e in modo "
              "riservato.",
        "pt": "Este serviço destina-se apenas a pessoas adultas. Se tem menos de 18 anos, o Take It Down pode "
              "ajudar a remover a imagem, e os serviços abaixo prestam apoio gratuito e confidencial.",
        "ar": "هذه الخدمة مخصّصة للبالغين فقط. إذا كان عمرك أقل من 18 عامًا، فيمكن لخدمة Take It Down المساعدة في "
              "إزالة الصورة، ويمكن للجهات المذكورة أدناه مساعدتك مجانًا وبسرية تامة.",
    }),
    ("adult_in_image", {
        "fr": f"Une image prise avant vos 18{NBSP}ans ne peut pas passer par ce service réservé aux adultes, même si "
              "vous êtes majeur ou majeure aujourd'hui. Take It Down est fait pour ces images, et les services "
              "ci-dessous peuvent vous aider.",
        "en": "An image taken before you were 18 cannot go through this service for adults, even though you are an "
              "adult now. Take It Down is made for these images, and the services below can help you.",
        "es": "Una imagen tomada antes de que cumplieras 18 años no puede pasar por este servicio para personas "
              "adultas, aunque hoy seas mayor de edad. Take It Down está pensado para estas imágenes, y los "
              "servicios que aparecen abajo pueden ayudarte.",
        "de": f"Ein Bild, das vor Ihrem 18.{NBSP}Geburtstag entstanden ist, kann nicht über diesen Dienst für Erwachsene "
              "laufen, auch wenn Sie heute volljährig sind. Take It Down ist für solche Bilder da, und die unten "
              "genannten Stellen können Ihnen helfen.",
        "it": "Un'immagine scattata prima dei tuoi 18 anni non può passare da questo servizio per adulti, anche se "
              "oggi sei maggiorenne. Take It Down è pensato proprio per queste immagini, e i servizi qui sotto "
              "possono aiutarti.",
        "pt": "Uma imagem captada antes dos seus 18 anos não pode passar por este serviço para adultos, mesmo que "
              "hoje seja maior de idade. O Take It Down foi criado para estas imagens, e os serviços abaixo podem "
              "ajudar.",
        "ar": "لا يمكن لهذه الخدمة المخصّصة للبالغين معالجة صورة التُقطت قبل بلوغك 18 عامًا، حتى لو تجاوزت هذا العمر "
              "اليوم. خدمة Take It Down مخصّصة لهذه الصور، ويمكن للجهات المذكورة أدناه مساعدتك.",
    }),
    ("in_image", {
        "fr": "Seule la personne qui apparaît sur l'image peut ouvrir un dossier. Si vous aidez quelqu'un, cette "
              f"personne peut faire la demande elle-même{NNBSP}; les services ci-dessous peuvent vous conseiller.",
        "en": "Only the person shown in the image can open a case. If you are helping someone, they can make the "
              "request themselves; the services below can advise you.",
        "es": "Solo la persona que aparece en la imagen puede abrir un caso. Si estás ayudando a alguien, esa "
              "persona puede hacer la solicitud; los servicios que aparecen abajo pueden orientarte.",
        "de": "Nur die Person, die auf dem Bild zu sehen ist, kann einen Fall eröffnen. Wenn Sie jemandem helfen, "
              "kann diese Person den Antrag selbst stellen; die unten genannten Stellen können Sie beraten.",
        "it": "Solo la persona che compare nell'immagine può aprire una pratica. Se stai aiutando qualcuno, può "
              "fare la richiesta in prima persona; i servizi qui sotto possono consigliarti.",
        "pt": "Só a pessoa que aparece na imagem pode abrir um processo. Se está a ajudar alguém, essa pessoa pode "
              "fazer o pedido; os serviços abaixo podem aconselhar.",
        "ar": "لا يمكن فتح ملف إلا للشخص الذي يظهر في الصورة. إذا كان طلبك لمساعدة شخص آخر، فيمكن لهذا الشخص تقديم "
              "الطلب بنفسه، ويمكن للجهات المذكورة أدناه تقديم المشورة لك.",
    }),
    ("has_image", {
        "fr": "Les empreintes sont calculées sur votre appareil à partir de l'image elle-même, il faut donc "
              "l'avoir. Si quelqu'un menace de diffuser une image que vous n'avez pas, les services ci-dessous "
              "peuvent vous aider.",
        "en": "Fingerprints are worked out on your device from the image itself, so you need to have it. If someone "
              "threatens to share an image you do not have, the services below can help.",
        "es": "Las huellas digitales se calculan en tu dispositivo a partir de la propia imagen, así que necesitas "
              "tenerla. Si alguien amenaza con difundir una imagen que no tienes, los servicios que aparecen abajo "
              "pueden ayudarte.",
        "de": "Die digitalen Fingerabdrücke werden auf Ihrem Gerät aus dem Bild selbst berechnet – Sie brauchen es "
              "also. Wenn jemand droht, ein Bild zu verbreiten, das Sie nicht haben, helfen Ihnen die unten "
              "genannten Stellen.",
        "it": "Le impronte digitali vengono calcolate sul tuo dispositivo a partire dall'immagine stessa: devi "
              "quindi averla. Se qualcuno minaccia di diffondere un'immagine che non hai, i servizi qui sotto "
              "possono aiutarti.",
        "pt": "As impressões digitais são calculadas no seu dispositivo a partir da própria imagem, por isso "
              "precisa de a ter. Se alguém ameaça divulgar uma imagem que não tem, os serviços abaixo podem ajudar.",
        "ar": "تُحسب البصمات الرقمية على جهازك انطلاقًا من الصورة نفسها، لذا يجب أن تكون الصورة لديك. إذا هدّدك أحد "
              "بنشر صورة ليست لديك، فيمكن للجهات المذكورة أدناه مساعدتك.",
    }),
    ("intimate", {
        "fr": "Ce service concerne uniquement les images intimes (nudité, nudité partielle ou situation à "
              "caractère sexuel). Les autres contenus peuvent être signalés à la plateforme qui les héberge, ou "
              "aux services ci-dessous.",
        "en": "This service is only for intimate images (nude, partly nude or sexual). Report other content to the "
              "platform that hosts it, or ask the services below for advice.",
        "es": "Este servicio es solo para imágenes íntimas (desnudos, semidesnudos o de contenido sexual). Denuncia "
              "cualquier otro contenido a la plataforma donde está publicado, o pide consejo a los servicios que "
              "aparecen abajo.",
        "de": "Dieser Dienst ist nur für intime Bilder (nackt, teilweise nackt oder sexuell). Melden Sie andere "
              "Inhalte der Plattform, auf der sie zu sehen sind, oder lassen Sie sich von den unten genannten "
              "Stellen beraten.",
        "it": "Questo servizio riguarda solo le immagini intime (nudo, seminudo o a contenuto sessuale). Segnala gli "
              "altri contenuti alla piattaforma che li ospita, oppure chiedi consiglio ai servizi qui sotto.",
        "pt": "Este serviço é apenas para imagens íntimas (nudez, nudez parcial ou conteúdo sexual). Denuncie "
              "outros conteúdos à plataforma onde estão publicados ou peça conselho aos serviços abaixo.",
        "ar": "هذه الخدمة مخصّصة للصور الحميمة فقط (عري كامل أو جزئي أو محتوى جنسي). يمكن الإبلاغ عن المحتويات "
              "الأخرى لدى المنصة التي تنشرها، أو طلب المشورة من الجهات المذكورة أدناه.",
    }),
)
assert [q for q, _ in RULES] == ["adult", "adult_in_image", "in_image", "has_image", "intimate"]
assert all(set(reasons) == set(LANGUAGES) for _, reasons in RULES)


class EligibilityError(ValueError):
    """The answers, language or country are missing or malformed (a 400, not a refusal)."""


@dataclass(frozen=True)
class Refusal:
    not_met: tuple[str, ...]
    reason: str
    help: list[dict[str, str]]

    def to_json(self) -> dict:
        return {"eligible": False, "not_met": list(self.not_met), "reason": self.reason,
                "help": [dict(item) for item in self.help]}


def language(value: object) -> str:
    """One of LANGUAGES (default "fr" when absent); anything else is an error."""
    if value is None:
        return DEFAULT_LANGUAGE
    if value not in LANGUAGES:
        raise EligibilityError(f"lang must be one of {', '.join(LANGUAGES)}, not {value!r:.20}")
    return value  # type: ignore[return-value]


def country(value: object, directory: HelpDirectory) -> str:
    """One of the helpline's countries (its default when absent); anything else is an error."""
    if value is None:
        return directory.default_country
    if value not in directory.countries:
        raise EligibilityError(f"country must be one of {', '.join(directory.countries)}, not {value!r:.20}")
    return value  # type: ignore[return-value]


def check(answers: object, lang: str, where: str, directory: HelpDirectory) -> Refusal | None:
    """None when all five answers are yes; else the refusal to send back, with the
    help of country `where`."""
    if not isinstance(answers, dict):
        raise EligibilityError("eligibility must be an object {" + ", ".join(f'"{q}": true' for q in QUESTIONS) + "}")
    unknown = sorted(set(map(str, answers)) - set(QUESTIONS))
    if unknown:
        raise EligibilityError(f"unknown eligibility questions: {', '.join(unknown)}")
    for question in QUESTIONS:
        if type(answers.get(question)) is not bool:
            raise EligibilityError(f"eligibility.{question} must be true or false")
    not_met = tuple(q for q in QUESTIONS if not answers[q])
    if not not_met:
        return None
    for question, reasons in RULES:
        if question in not_met:
            minor = question in AGE_QUESTIONS
            return Refusal(not_met, reasons[lang], directory.refusal_help(where, minor=minor))
    raise AssertionError("unreachable")
